"""One suite for both blob-store backends: the local directory and S3 (moto's real server)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest

from shared.storage import (
    CHUNK_SIZE,
    S3_PART_SIZE,
    BlobInfo,
    BlobNotFound,
    BlobStore,
    LocalBlobStore,
    S3BlobStore,
    open_blob_store,
)

MiB = 1024 * 1024
CREDENTIALS = {"access_key": "testing", "secret_key": "testing"}
INVALID_KEYS = [
    "",
    "../x",
    "/abs",
    "a//b",
    "a/../b",
    "..",
    ".",
    "./a",
    "a/",
    "a b",
    "a\\b",
    "a\x00b",
    "é",
    ".tmp/x",
    "x" * 256,
    "a/" * 512 + "a",
]


def s3_admin(store: S3BlobStore) -> Any:
    """A plain boto3 client on the store's server, to look behind the interface."""
    return boto3.client(
        "s3",
        endpoint_url=store.endpoint_url,
        region_name=store.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    """A fresh, empty store of each backend (a new S3 bucket per test)."""
    backend: BlobStore
    if request.param == "local":
        backend = LocalBlobStore(tmp_path / "blobs")
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        backend = await S3BlobStore.connect(
            endpoint, f"darkroom-test-{uuid.uuid4().hex}", "us-east-1", **CREDENTIALS
        )
    try:
        yield backend
    finally:
        await backend.close()


async def stream(
    *chunks: bytes, delay: float = 0, fail_after: int | None = None
) -> AsyncIterator[bytes]:
    """Yield ``chunks``, optionally sleeping between them or raising after ``fail_after``."""
    for index, chunk in enumerate(chunks):
        if fail_after is not None and index == fail_after:
            raise RuntimeError("upstream broke")
        if delay:
            await asyncio.sleep(delay)
        yield chunk
    if fail_after is not None and fail_after >= len(chunks):
        raise RuntimeError("upstream broke")


async def collect(store: BlobStore, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.open(key, start, end)])


async def all_keys(store: BlobStore, prefix: str = "") -> list[str]:
    return sorted([key async for key in store.keys(prefix)])


def temp_files(store: BlobStore) -> list[Path]:
    """Leftover temp files of a local store (always empty for S3)."""
    if isinstance(store, LocalBlobStore) and (store.root / ".tmp").exists():
        return list((store.root / ".tmp").iterdir())
    return []


def pending_uploads(store: BlobStore) -> list[dict]:
    """Unfinished multipart uploads of an S3 store (always empty for local)."""
    if isinstance(store, S3BlobStore):
        return s3_admin(store).list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
    return []


async def test_backends_implement_the_protocol(store: BlobStore) -> None:
    assert isinstance(store, BlobStore)


async def test_round_trip_bytes(store: BlobStore) -> None:
    data = os.urandom(1000)
    assert await store.put("images/ab/cd/original.jpg", data) == BlobInfo(
        "images/ab/cd/original.jpg", 1000
    )
    assert await store.read("images/ab/cd/original.jpg") == data
    assert await store.stat("images/ab/cd/original.jpg") == BlobInfo(
        "images/ab/cd/original.jpg", 1000
    )
    assert await store.exists("images/ab/cd/original.jpg")
    assert await all_keys(store) == ["images/ab/cd/original.jpg"]


async def test_round_trip_async_iterable(store: BlobStore) -> None:
    # Sizes straddle the local chunk size so both coalescing and direct writes are exercised.
    chunks = [b"a", b"", os.urandom(CHUNK_SIZE - 1), os.urandom(CHUNK_SIZE + 7), b"z" * 10]
    info = await store.put("k/streamed", stream(*chunks))
    expected = b"".join(chunks)
    assert info == BlobInfo("k/streamed", len(expected))
    assert await store.read("k/streamed") == expected
    # open() yields bounded chunks rather than one huge buffer.
    sizes = [len(chunk) async for chunk in store.open("k/streamed")]
    assert sum(sizes) == len(expected)
    assert max(sizes) <= CHUNK_SIZE


async def test_empty_blob(store: BlobStore) -> None:
    assert await store.put("empty", b"") == BlobInfo("empty", 0)
    assert await store.read("empty") == b""
    assert await store.stat("empty") == BlobInfo("empty", 0)
    assert await collect(store, "empty", 0, 10) == b""
    assert await collect(store, "empty", 5) == b""


async def test_overwrite_replaces_content(store: BlobStore) -> None:
    await store.put("k", b"first version")
    assert await store.put("k", b"second") == BlobInfo("k", 6)
    assert await store.read("k") == b"second"
    assert await store.put("k", b"second") == BlobInfo("k", 6)
    assert await all_keys(store) == ["k"]


async def test_large_streamed_put_reads_back_identical(store: BlobStore) -> None:
    chunks = [os.urandom(MiB) for _ in range(20)]
    expected = hashlib.sha256(b"".join(chunks)).hexdigest()
    assert await store.put("big/blob", stream(*chunks)) == BlobInfo("big/blob", 20 * MiB)
    digest = hashlib.sha256()
    async for chunk in store.open("big/blob"):
        digest.update(chunk)
    assert digest.hexdigest() == expected
    assert await store.stat("big/blob") == BlobInfo("big/blob", 20 * MiB)
    if isinstance(store, S3BlobStore):
        etag = s3_admin(store).head_object(Bucket=store.bucket, Key="big/blob")["ETag"]
        assert etag.strip('"').endswith("-3"), "20 MiB in 8 MiB parts is a 3-part upload"


@pytest.mark.parametrize(
    ("size", "as_bytes"),
    [
        (S3_PART_SIZE, True),
        (S3_PART_SIZE, False),
        (S3_PART_SIZE + 1, True),
        (S3_PART_SIZE + 1, False),
    ],
)
async def test_multipart_threshold(store: BlobStore, size: int, as_bytes: bool) -> None:
    data = os.urandom(size)
    source = data if as_bytes else stream(*(data[i : i + MiB] for i in range(0, size, MiB)))
    assert await store.put("edge", source) == BlobInfo("edge", size)
    assert await store.read("edge") == data
    if isinstance(store, S3BlobStore):
        etag = s3_admin(store).head_object(Bucket=store.bucket, Key="edge")["ETag"].strip('"')
        # Exactly one part size is a single PutObject; one byte more is a 2-part upload.
        assert etag.endswith("-2") if size > S3_PART_SIZE else "-" not in etag


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (0, None),
        (100, None),
        (100, 200),
        (0, 1),
        (1023, 1024),
        (500, 500),  # empty range
        (1000, 2000),  # end past the size is clamped
        (1024, None),  # start at the size: nothing
        (5000, None),  # start past the size: nothing
        (5000, 6000),
    ],
)
async def test_ranges_behave_like_slices(store: BlobStore, start: int, end: int | None) -> None:
    data = bytes(range(256)) * 4
    await store.put("ranged", data)
    assert await collect(store, "ranged", start, end) == data[start:end]


async def test_range_across_chunk_boundaries(store: BlobStore) -> None:
    data = os.urandom(3 * CHUNK_SIZE + 123)
    await store.put("ranged", stream(data[:1000], data[1000:]))
    start, end = CHUNK_SIZE - 10, 2 * CHUNK_SIZE + 10
    assert await collect(store, "ranged", start, end) == data[start:end]
    assert await collect(store, "ranged", start) == data[start:]


@pytest.mark.parametrize(("start", "end"), [(-1, None), (10, 5), (0, -1)])
async def test_invalid_ranges_raise(store: BlobStore, start: int, end: int | None) -> None:
    await store.put("ranged", b"0123456789")
    with pytest.raises(ValueError):
        await collect(store, "ranged", start, end)


async def test_missing_key(store: BlobStore) -> None:
    await store.put("present", b"x")
    assert await store.stat("absent") is None
    assert not await store.exists("absent")
    assert await store.delete("absent") is False
    with pytest.raises(BlobNotFound):
        await store.read("absent")
    for start, end in [(0, None), (3, None), (0, 10), (4, 4)]:
        received: list[bytes] = []
        with pytest.raises(BlobNotFound) as caught:
            async for chunk in store.open("absent", start, end):
                received.append(chunk)
        assert received == []
        assert caught.value.key == "absent"
    assert await all_keys(store) == ["present"]


async def test_prefix_of_keys_is_not_a_blob(store: BlobStore) -> None:
    await store.put("dir/blob", b"x")
    assert await store.stat("dir") is None
    assert not await store.exists("dir")
    assert await store.delete("dir") is False
    with pytest.raises(BlobNotFound):
        await store.read("dir")
    # Neither is a path under a blob.
    assert await store.stat("dir/blob/deeper") is None
    with pytest.raises(BlobNotFound):
        await store.read("dir/blob/deeper")
    assert await store.read("dir/blob") == b"x"


async def test_delete(store: BlobStore) -> None:
    await store.put("a/1", b"one")
    await store.put("a/2", b"two")
    assert await store.delete("a/1") is True
    assert not await store.exists("a/1")
    assert await store.stat("a/1") is None
    assert await store.delete("a/1") is False
    assert await all_keys(store) == ["a/2"]
    assert await store.read("a/2") == b"two"
    # A deleted key can be written again.
    await store.put("a/1", b"again")
    assert await store.read("a/1") == b"again"


@pytest.mark.parametrize("key", INVALID_KEYS)
async def test_invalid_keys_raise(store: BlobStore, tmp_path: Path, key: str) -> None:
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(ValueError):
        await store.put(key, b"x")
    with pytest.raises(ValueError):
        await store.put(key, stream(b"x"))
    with pytest.raises(ValueError):
        store.open(key)  # argument errors surface at the call, not on iteration
    with pytest.raises(ValueError):
        await store.read(key)
    with pytest.raises(ValueError):
        await store.stat(key)
    with pytest.raises(ValueError):
        await store.exists(key)
    with pytest.raises(ValueError):
        await store.delete(key)
    with pytest.raises(ValueError):
        await store.presigned_url(key, 60)
    assert sorted(tmp_path.rglob("*")) == before
    assert await all_keys(store) == []


@pytest.mark.parametrize("prefix", ["/x", "../", "a//", "a/../", ".tmp/", "a b", "x/é"])
async def test_invalid_prefixes_raise(store: BlobStore, prefix: str) -> None:
    with pytest.raises(ValueError):
        store.keys(prefix)


async def test_dotted_names_are_valid_keys(store: BlobStore) -> None:
    keys = ["..x", "a/.hidden", "a/b..c", "x.tmp/y", "a/.tmp/b", "-_.0"]
    for key in keys:
        await store.put(key, key.encode())
    for key in keys:
        assert await store.read(key) == key.encode()
    assert await all_keys(store) == sorted(keys)


@pytest.mark.parametrize("fail_size", [300 * 1024, 9 * MiB], ids=["small", "multipart"])
async def test_failed_put_leaves_nothing(store: BlobStore, fail_size: int) -> None:
    await store.put("other", b"unrelated")
    await store.put("kept", b"old version")
    count = len(await all_keys(store))
    chunks = [os.urandom(MiB)] * (fail_size // MiB) + [os.urandom(fail_size % MiB)]
    for key in ["fresh", "kept"]:
        with pytest.raises(RuntimeError, match="upstream broke"):
            await store.put(key, stream(*chunks, fail_after=len(chunks)))
    assert not await store.exists("fresh")
    assert await store.read("kept") == b"old version"
    assert len(await all_keys(store)) == count
    assert temp_files(store) == []
    assert pending_uploads(store) == []


async def test_cancelled_put_leaves_nothing(store: BlobStore) -> None:
    started = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield os.urandom(CHUNK_SIZE * 2)
        started.set()
        await asyncio.sleep(3600)
        yield b"never"

    task = asyncio.create_task(store.put("cancelled", slow()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not await store.exists("cancelled")
    assert await all_keys(store) == []
    assert temp_files(store) == []


async def test_readers_never_see_a_partial_blob(store: BlobStore) -> None:
    halfway = asyncio.Event()
    release = asyncio.Event()
    data = os.urandom(2 * CHUNK_SIZE)

    async def gated() -> AsyncIterator[bytes]:
        yield data[:CHUNK_SIZE]
        halfway.set()
        await release.wait()
        yield data[CHUNK_SIZE:]

    task = asyncio.create_task(store.put("atomic", gated()))
    await halfway.wait()
    await asyncio.sleep(0.05)  # let the first chunk reach the disk
    assert await store.stat("atomic") is None
    assert await all_keys(store) == []
    release.set()
    assert await task == BlobInfo("atomic", len(data))
    assert await store.read("atomic") == data


async def test_keys_lists_exactly_what_was_put(store: BlobStore) -> None:
    keys = ["a/1", "a/2", "a/b/3", "ab/4", "b/5", "a.txt", "top"]
    for key in keys:
        await store.put(key, b"x")
    assert await all_keys(store) == sorted(keys)
    assert await all_keys(store, "a/") == ["a/1", "a/2", "a/b/3"]
    assert await all_keys(store, "a") == ["a.txt", "a/1", "a/2", "a/b/3", "ab/4"]
    assert await all_keys(store, "a/b") == ["a/b/3"]
    assert await all_keys(store, "a/b/3") == ["a/b/3"]
    assert await all_keys(store, "a/b/3/") == []
    assert await all_keys(store, "t") == ["top"]
    assert await all_keys(store, "zzz") == []
    assert await all_keys(store, "zzz/") == []


async def test_keys_paginates(store: BlobStore) -> None:
    # More than one ListObjectsV2 page (1000 keys) on S3.
    keys = [f"many/{i:04d}" for i in range(1005)]
    for batch in range(0, len(keys), 100):
        await asyncio.gather(*(store.put(key, b"") for key in keys[batch : batch + 100]))
    assert await all_keys(store, "many/") == keys


async def test_local_keys_skip_temp_files_and_foreign_names(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    await store.put("real", b"x")
    (tmp_path / ".tmp" / "leftover").write_bytes(b"partial")
    (tmp_path / "not a key").write_bytes(b"dropped by hand")
    (tmp_path / "odd dir").mkdir()
    (tmp_path / "odd dir" / "inner").write_bytes(b"y")
    assert await all_keys(store) == ["real"]
    assert await all_keys(store, ".t") == []


async def test_concurrent_puts_of_the_same_key(store: BlobStore) -> None:
    data = os.urandom(MiB + 17)
    pieces = [data[i : i + 100_000] for i in range(0, len(data), 100_000)]
    infos = await asyncio.gather(
        *(store.put("same/key", stream(*pieces, delay=0.001)) for _ in range(8)),
        store.put("same/key", data),
    )
    assert set(infos) == {BlobInfo("same/key", len(data))}
    assert await store.read("same/key") == data
    assert await all_keys(store) == ["same/key"]
    assert temp_files(store) == []


async def test_presigned_url(store: BlobStore) -> None:
    data = os.urandom(5000)
    await store.put("shared/photo.webp", data)
    url = await store.presigned_url("shared/photo.webp", 300)
    if isinstance(store, LocalBlobStore):
        assert url is None
    else:
        assert url is not None and "Signature" in url
        async with aiohttp.ClientSession() as http, http.get(url) as answer:
            assert answer.status == 200
            assert await answer.read() == data
    for bad in [0, -5, 7 * 24 * 3600 + 1]:
        with pytest.raises(ValueError):
            await store.presigned_url("shared/photo.webp", bad)


async def test_open_blob_store_picks_local(tmp_path: Path) -> None:
    blob_dir = tmp_path / "deep" / "blobs"
    store = await open_blob_store(blob_dir=blob_dir, s3_endpoint_url=None, s3_bucket=None)
    try:
        assert isinstance(store, LocalBlobStore)
        assert blob_dir.is_dir()
        await store.put("k", b"v")
        assert (blob_dir / "k").read_bytes() == b"v"
    finally:
        await store.close()


async def test_open_blob_store_picks_s3_and_creates_the_bucket(
    tmp_path: Path, moto_endpoint: str
) -> None:
    bucket = f"darkroom-test-{uuid.uuid4().hex}"
    settings: dict[str, Any] = {
        "blob_dir": tmp_path / "unused",
        "s3_endpoint_url": moto_endpoint,
        "s3_bucket": bucket,
        "s3_access_key": "testing",
        "s3_secret_key": "testing",
    }
    store = await open_blob_store(**settings)
    try:
        assert isinstance(store, S3BlobStore)
        assert not (tmp_path / "unused").exists()
        await store.put("k", b"v")
    finally:
        await store.close()
    s3_admin(store).head_bucket(Bucket=bucket)
    # Starting against an existing bucket reuses it and keeps its content.
    again = await open_blob_store(**settings)
    try:
        assert await again.read("k") == b"v"
    finally:
        await again.close()


async def test_s3_bucket_in_another_region(moto_endpoint: str) -> None:
    store = await S3BlobStore.connect(
        moto_endpoint, f"darkroom-test-{uuid.uuid4().hex}", "eu-west-3", **CREDENTIALS
    )
    try:
        await store.put("k", b"v")
        assert await store.read("k") == b"v"
    finally:
        await store.close()


async def test_s3_store_must_be_started(moto_endpoint: str) -> None:
    store = S3BlobStore(moto_endpoint, "never-created", "us-east-1", **CREDENTIALS)
    with pytest.raises(RuntimeError):
        await store.stat("k")
    await store.close()
