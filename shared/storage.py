"""Blob storage behind one interface: a local directory or an S3-compatible bucket.

Everything that stores bytes goes through :class:`BlobStore`; :func:`open_blob_store` picks the
backend from configuration. Both backends promise the same semantics, and the test suite runs
against both:

* keys match ``[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*``, at most 1024 characters, with no ``.`` or
  ``..`` segment, and do not start with the reserved ``.tmp/`` segment; anything else raises
  :class:`ValueError` before any I/O;
* :meth:`BlobStore.put` is atomic: a reader sees the old blob, the new blob or nothing, never a
  partial one, and a failed put leaves nothing behind;
* ranges behave like ``data[start:end]`` for non-negative bounds: an ``end`` past the size is
  clamped and a ``start`` at or past the size gives no bytes;
* a key that is only a prefix of other keys (a "directory") is not a blob.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import stat as stat_mod
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

__all__ = [
    "CHUNK_SIZE",
    "MAX_PRESIGN_SECONDS",
    "S3_PART_SIZE",
    "BlobInfo",
    "BlobNotFound",
    "BlobStore",
    "LocalBlobStore",
    "S3BlobStore",
    "open_blob_store",
    "validate_key",
]

#: Size of the pieces the local backend reads and writes in one worker-thread call, and of the
#: chunks both backends yield from :meth:`BlobStore.open`.
CHUNK_SIZE = 256 * 1024
#: Above this size the S3 backend switches to a multipart upload with parts of this size.
S3_PART_SIZE = 8 * 1024 * 1024
#: The longest validity SigV4 accepts for a presigned URL (seven days).
MAX_PRESIGN_SECONDS = 7 * 24 * 3600

_KEY_RE = re.compile(r"[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*")
_PREFIX_TAIL_RE = re.compile(r"[A-Za-z0-9._-]*")
_MAX_KEY_LENGTH = 1024  # S3's limit; enforced everywhere so a local store can move to S3.
_MAX_SEGMENT_LENGTH = 255  # NAME_MAX of common filesystems.
_TMP_DIR = ".tmp"


#: ``counted(backend, direction, count)``: told of the bytes a store wrote (``"write"``) or
#: read (``"read"``); a store's ``counted`` attribute (a no-op by default) is how metrics see
#: its traffic.
Counted = Callable[[str, str, int], None]


def _not_counted(_backend: str, _direction: str, _count: int) -> None:
    return None


@dataclass(frozen=True)
class BlobInfo:
    """What the store knows about a blob: its key and its size in bytes."""

    key: str
    size: int


class BlobNotFound(Exception):
    """Raised by :meth:`BlobStore.open` and :meth:`BlobStore.read` when the key has no blob."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no blob at {key!r}")
        self.key = key


@runtime_checkable
class BlobStore(Protocol):
    """The storage interface of the platform; see the module docstring for the semantics.

    ``open`` and ``keys`` are plain methods returning async iterators (the backends implement
    them as async generators): argument errors raise at the call, I/O errors on iteration.
    """

    async def put(self, key: str, chunks: AsyncIterable[bytes] | bytes) -> BlobInfo:
        """Store ``chunks`` (bytes or an async iterable of bytes) under ``key``, atomically."""
        ...

    def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Iterate over the bytes ``[start, end)`` of the blob; ``end=None`` means to the end."""
        ...

    async def read(self, key: str) -> bytes:
        """Return the whole blob; raises :class:`BlobNotFound` when missing."""
        ...

    async def stat(self, key: str) -> BlobInfo | None:
        """Return the blob's :class:`BlobInfo`, or ``None`` when missing."""
        ...

    async def exists(self, key: str) -> bool:
        """Tell whether a blob is stored under ``key``."""
        ...

    async def delete(self, key: str) -> bool:
        """Delete the blob; ``True`` when there was one, ``False`` when it was already missing."""
        ...

    def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Iterate over every key starting with ``prefix`` (a string prefix), in no set order."""
        ...

    async def presigned_url(self, key: str, expires_in: int) -> str | None:
        """A URL that GETs the blob for ``expires_in`` seconds, or ``None`` if unsupported."""
        ...

    async def close(self) -> None:
        """Release the store's resources; the store is unusable afterwards."""
        ...


def validate_key(key: str) -> str:
    """Return ``key`` unchanged if it is a valid blob key, else raise :class:`ValueError`."""
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key) or len(key) > _MAX_KEY_LENGTH:
        raise ValueError(f"invalid blob key: {key!r}")
    segments = key.split("/")
    if segments[0] == _TMP_DIR:
        raise ValueError(f"invalid blob key (reserved {_TMP_DIR}/ prefix): {key!r}")
    for segment in segments:
        if segment in {".", ".."} or len(segment) > _MAX_SEGMENT_LENGTH:
            raise ValueError(f"invalid blob key: {key!r}")
    return key


def _validate_prefix(prefix: str) -> str:
    """Validate a listing prefix and return its directory part (``""`` for the root).

    The part after the last ``/`` is only compared as a string, so it may be partial (``"ab"``
    lists ``"abc/d"``); the part before must be a valid key because it becomes a path.
    """
    if not isinstance(prefix, str):
        raise ValueError(f"invalid key prefix: {prefix!r}")
    directory, _, tail = prefix.rpartition("/")
    if not _PREFIX_TAIL_RE.fullmatch(tail) or len(prefix) > _MAX_KEY_LENGTH:
        raise ValueError(f"invalid key prefix: {prefix!r}")
    if directory or prefix.startswith("/"):
        try:
            validate_key(directory)
        except ValueError:
            raise ValueError(f"invalid key prefix: {prefix!r}") from None
    return directory


def _validate_range(start: int, end: int | None) -> None:
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"invalid byte range [{start}, {end})")


def _validate_expiry(expires_in: int) -> None:
    if not 0 < expires_in <= MAX_PRESIGN_SECONDS:
        raise ValueError(f"expires_in must be in 1..{MAX_PRESIGN_SECONDS} seconds")


async def _iter_chunks(
    data: AsyncIterable[bytes] | bytes, size: int
) -> AsyncIterator[bytes | memoryview]:
    """Present ``bytes`` and async iterables alike, slicing bytes without copying them."""
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data)
        for offset in range(0, len(view), size):
            yield view[offset : offset + size]
        return
    async for chunk in data:
        yield chunk


class LocalBlobStore:
    """Blobs as files under ``root``; the key is the path relative to ``root``.

    Puts are written to ``root/.tmp/`` and renamed into place, so the temp folder must stay on
    the same filesystem as the blobs. Blocking file I/O runs in worker threads, one
    :data:`CHUNK_SIZE` piece at a time, so a big blob never stalls the event loop.
    """

    backend = "local"

    def __init__(self, root: Path) -> None:
        """Use ``root`` (created on the first put if missing) as the store's directory."""
        self.root = Path(root)
        self.counted: Counted = _not_counted

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    async def put(self, key: str, chunks: AsyncIterable[bytes] | bytes) -> BlobInfo:
        """Write the blob to a temp file, fsync it and rename it over ``key`` atomically."""
        path = self._path(key)
        tmp_path, file = await asyncio.to_thread(self._create_temp)
        size = 0
        try:
            pending = bytearray()
            async for chunk in _iter_chunks(chunks, CHUNK_SIZE):
                size += len(chunk)
                pending += chunk
                # Coalescing keeps tiny chunks from costing one thread hop each.
                if len(pending) >= CHUNK_SIZE:
                    await asyncio.to_thread(file.write, pending)
                    pending = bytearray()
            await asyncio.to_thread(self._commit, file, pending, tmp_path, path)
        except BaseException:
            # Synchronous on purpose: this also runs on cancellation, when awaiting a thread
            # could be interrupted again and leak the temp file; both calls are quick.
            file.close()
            tmp_path.unlink(missing_ok=True)
            raise
        self.counted(self.backend, "write", size)
        return BlobInfo(key, size)

    def _create_temp(self) -> tuple[Path, IO[bytes]]:
        tmp_dir = self.root / _TMP_DIR
        tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp_path = tmp_dir / uuid.uuid4().hex
        return tmp_path, tmp_path.open("xb")

    @staticmethod
    def _commit(file: IO[bytes], rest: bytes | bytearray, tmp_path: Path, path: Path) -> None:
        with file:
            file.write(rest)
            file.flush()
            os.fsync(file.fileno())
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_path, path)
        # The rename itself is only durable once the directory entry reaches the disk.
        with contextlib.suppress(OSError):
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Iterate over the bytes ``[start, end)`` in chunks of at most :data:`CHUNK_SIZE`.

        Invalid arguments raise :class:`ValueError` here; a missing blob raises
        :class:`BlobNotFound` from the first iteration, before any bytes. Close a partially
        consumed iterator (``contextlib.aclosing``) to release the file promptly.
        """
        path = self._path(key)
        _validate_range(start, end)
        return self._read_range(key, path, start, end)

    async def _read_range(
        self, key: str, path: Path, start: int, end: int | None
    ) -> AsyncIterator[bytes]:
        file = await asyncio.to_thread(self._open_file, key, path)
        try:
            if start:
                await asyncio.to_thread(file.seek, start)
            remaining = end - start if end is not None else None
            while remaining is None or remaining > 0:
                want = CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)
                chunk = await asyncio.to_thread(file.read, want)
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                self.counted(self.backend, "read", len(chunk))
                yield chunk
        finally:
            file.close()

    @staticmethod
    def _open_file(key: str, path: Path) -> IO[bytes]:
        try:
            file = path.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise BlobNotFound(key) from None
        if not stat_mod.S_ISREG(os.fstat(file.fileno()).st_mode):
            file.close()
            raise BlobNotFound(key)
        return file

    async def read(self, key: str) -> bytes:
        """Return the whole blob; raises :class:`BlobNotFound` when missing."""
        return b"".join([chunk async for chunk in self.open(key)])

    async def stat(self, key: str) -> BlobInfo | None:
        """Return the blob's size, or ``None`` when there is no regular file at ``key``."""
        path = self._path(key)
        try:
            st = await asyncio.to_thread(path.stat)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat_mod.S_ISREG(st.st_mode):
            return None
        return BlobInfo(key, st.st_size)

    async def exists(self, key: str) -> bool:
        """Tell whether a blob is stored under ``key``."""
        return await self.stat(key) is not None

    async def delete(self, key: str) -> bool:
        """Remove the file; ``True`` when it existed.

        Emptied directories are left in place: removing them would race with a concurrent put
        that has just created its parent directory and is about to rename into it.
        """
        path = self._path(key)
        return await asyncio.to_thread(self._delete_file, path)

    @staticmethod
    def _delete_file(path: Path) -> bool:
        try:
            if not stat_mod.S_ISREG(path.lstat().st_mode):
                return False
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return False
        return True

    def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Iterate over the keys starting with ``prefix``, skipping the temp folder.

        Files whose names are not valid keys (dropped in by hand) are skipped too, so every key
        yielded can be passed back to the store.
        """
        directory = _validate_prefix(prefix)
        return self._walk(directory, prefix)

    async def _walk(self, directory: str, prefix: str) -> AsyncIterator[str]:
        stack = [directory]
        while stack:
            rel = stack.pop()
            base = self.root.joinpath(*rel.split("/")) if rel else self.root
            files, dirs = await asyncio.to_thread(self._scan, base)
            for name in files:
                key = f"{rel}/{name}" if rel else name
                if key.startswith(prefix) and _is_valid_key(key):
                    yield key
            for name in dirs:
                sub = f"{rel}/{name}" if rel else name
                # The reserved temp folder is not a valid key, so this also skips it.
                if not _is_valid_key(sub):
                    continue
                if (sub + "/").startswith(prefix) or prefix.startswith(sub + "/"):
                    stack.append(sub)

    @staticmethod
    def _scan(directory: Path) -> tuple[list[str], list[str]]:
        files: list[str] = []
        dirs: list[str] = []
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        dirs.append(entry.name)
                    elif entry.is_file(follow_symlinks=False):
                        files.append(entry.name)
        except (FileNotFoundError, NotADirectoryError):
            pass
        return files, dirs

    async def presigned_url(self, key: str, expires_in: int) -> str | None:
        """Always ``None``: local blobs are served by the caller itself."""
        validate_key(key)
        _validate_expiry(expires_in)
        return None

    async def close(self) -> None:
        """Nothing to release; present for the interface."""


def _is_valid_key(key: str) -> bool:
    try:
        validate_key(key)
    except ValueError:
        return False
    return True


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _is_missing(exc: ClientError) -> bool:
    # HEAD answers have no body, so botocore reports the bare status "404" as the code.
    return _error_code(exc) in {"404", "NoSuchKey", "NotFound"}


class S3BlobStore:
    """Blobs as objects of one bucket of an S3-compatible service, through aiobotocore.

    Construct it, then ``await start()`` (or use :meth:`connect`); ``await close()`` when done.
    S3 makes single and multipart puts atomic by itself, so no temp object is needed.
    """

    def __init__(
        self,
        endpoint_url: str | None,
        bucket: str,
        region: str,
        access_key: str | None,
        secret_key: str | None,
    ) -> None:
        """Remember the settings; no connection is made until :meth:`start`.

        ``endpoint_url=None`` means AWS itself; ``access_key=None`` uses botocore's default
        credential chain.
        """
        self.endpoint_url = endpoint_url
        self.bucket = bucket
        self.region = region
        self._access_key = access_key
        self._secret_key = secret_key
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self.counted: Counted = _not_counted

    backend = "s3"

    @classmethod
    async def connect(
        cls,
        endpoint_url: str | None,
        bucket: str,
        region: str,
        access_key: str | None,
        secret_key: str | None,
    ) -> S3BlobStore:
        """Construct and :meth:`start` a store in one step."""
        store = cls(endpoint_url, bucket, region, access_key, secret_key)
        await store.start()
        return store

    async def start(self) -> None:
        """Create the client and make sure the bucket exists, creating it if missing."""
        if self._client is not None:
            return
        config = AioConfig(
            # botocore >= 1.36 adds CRC32 checksums to every request by default, which several
            # S3-compatible servers (older MinIO, Ceph, ...) reject.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # Virtual-host addressing needs wildcard DNS that self-hosted servers rarely have.
            s3={"addressing_style": "path"},
        )
        client = await self._stack.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=self.region,
                aws_access_key_id=self._access_key,
                aws_secret_access_key=self._secret_key,
                config=config,
            )
        )
        try:
            await self._ensure_bucket(client)
        except BaseException:
            await self._stack.aclose()
            raise
        self._client = client

    async def _ensure_bucket(self, client: Any) -> None:
        try:
            await client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if _error_code(exc) not in {"404", "NoSuchBucket", "NotFound"}:
                raise
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":
            # us-east-1 is the default location and AWS rejects it as an explicit constraint.
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            await client.create_bucket(**kwargs)
        except ClientError as exc:
            # Another process starting at the same time may have won the race.
            if _error_code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise

    @property
    def _s3(self) -> Any:
        if self._client is None:
            raise RuntimeError("S3BlobStore is not started (or already closed)")
        return self._client

    async def put(self, key: str, chunks: AsyncIterable[bytes] | bytes) -> BlobInfo:
        """Upload the blob: one ``PutObject`` up to 8 MiB, a multipart upload above.

        Streamed input is buffered one 8 MiB part at a time; a failure aborts the multipart
        upload so no parts are left billed and no object appears.
        """
        validate_key(key)
        client = self._s3
        if isinstance(chunks, bytes | bytearray | memoryview) and len(chunks) <= S3_PART_SIZE:
            await client.put_object(Bucket=self.bucket, Key=key, Body=bytes(chunks))
            self.counted(self.backend, "write", len(chunks))
            return BlobInfo(key, len(chunks))
        buffer = bytearray()
        size = 0
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            async for chunk in _iter_chunks(chunks, S3_PART_SIZE):
                size += len(chunk)
                buffer += chunk
                # Strictly greater: the last part must not be empty, and a blob of exactly one
                # part size is cheaper as a single PutObject.
                while len(buffer) > S3_PART_SIZE:
                    if upload_id is None:
                        created = await client.create_multipart_upload(Bucket=self.bucket, Key=key)
                        upload_id = created["UploadId"]
                    await self._upload_part(key, upload_id, parts, bytes(buffer[:S3_PART_SIZE]))
                    del buffer[:S3_PART_SIZE]
            if upload_id is None:
                await client.put_object(Bucket=self.bucket, Key=key, Body=bytes(buffer))
            else:
                await self._upload_part(key, upload_id, parts, bytes(buffer))
                await client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            if upload_id is not None:
                with contextlib.suppress(Exception):
                    await client.abort_multipart_upload(
                        Bucket=self.bucket, Key=key, UploadId=upload_id
                    )
            raise
        self.counted(self.backend, "write", size)
        return BlobInfo(key, size)

    async def _upload_part(
        self, key: str, upload_id: str, parts: list[dict[str, Any]], body: bytes
    ) -> None:
        number = len(parts) + 1
        answer = await self._s3.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
        )
        parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Iterate over the bytes ``[start, end)``, with a ranged ``GetObject`` when needed.

        Invalid arguments raise :class:`ValueError` here; a missing blob raises
        :class:`BlobNotFound` from the first iteration, before any bytes. Close a partially
        consumed iterator (``contextlib.aclosing``) to return the connection promptly.
        """
        validate_key(key)
        _validate_range(start, end)
        return self._get_range(key, start, end)

    async def _get_range(self, key: str, start: int, end: int | None) -> AsyncIterator[bytes]:
        client = self._s3
        if end == start:
            # HTTP ranges cannot express an empty range, but a missing blob must still raise.
            if not await self.exists(key):
                raise BlobNotFound(key)
            return
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if start or end is not None:
            kwargs["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            answer = await client.get_object(**kwargs)
        except ClientError as exc:
            if _is_missing(exc):
                raise BlobNotFound(key) from None
            if _error_code(exc) == "InvalidRange":
                # 416: the blob exists but ``start`` is at or past its end.
                return
            raise
        async with answer["Body"] as body:
            async for chunk in body.iter_chunks(CHUNK_SIZE):
                self.counted(self.backend, "read", len(chunk))
                yield chunk

    async def read(self, key: str) -> bytes:
        """Return the whole blob; raises :class:`BlobNotFound` when missing."""
        return b"".join([chunk async for chunk in self.open(key)])

    async def stat(self, key: str) -> BlobInfo | None:
        """``HeadObject``: the blob's size, or ``None`` when missing."""
        validate_key(key)
        try:
            answer = await self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise
        return BlobInfo(key, int(answer["ContentLength"]))

    async def exists(self, key: str) -> bool:
        """Tell whether a blob is stored under ``key``."""
        return await self.stat(key) is not None

    async def delete(self, key: str) -> bool:
        """Delete the object; ``True`` when it existed.

        S3's ``DeleteObject`` succeeds either way, hence the ``HeadObject`` first; two
        concurrent deletes may therefore both answer ``True``.
        """
        if await self.stat(key) is None:
            return False
        await self._s3.delete_object(Bucket=self.bucket, Key=key)
        return True

    def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Iterate over the keys starting with ``prefix`` (``ListObjectsV2``, paginated)."""
        _validate_prefix(prefix)
        return self._list(prefix)

    async def _list(self, prefix: str) -> AsyncIterator[str]:
        paginator = self._s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"]

    async def presigned_url(self, key: str, expires_in: int) -> str | None:
        """A presigned ``GetObject`` URL valid for ``expires_in`` seconds (at most 7 days).

        Signing is local: the URL is returned even if the blob does not exist.
        """
        validate_key(key)
        _validate_expiry(expires_in)
        url: str = await self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
        )
        return url

    async def close(self) -> None:
        """Close the client and its connection pool; calling it twice is harmless."""
        self._client = None
        await self._stack.aclose()


async def open_blob_store(
    *,
    blob_dir: Path,
    s3_endpoint_url: str | None,
    s3_bucket: str | None,
    s3_region: str = "us-east-1",
    s3_access_key: str | None = None,
    s3_secret_key: str | None = None,
) -> BlobStore:
    """Return the configured store: S3 when ``s3_bucket`` is set, else ``blob_dir`` on disk.

    The local directory is created here so a misconfigured path fails at start-up rather than
    on the first upload; the S3 bucket is created if missing.
    """
    if s3_bucket:
        return await S3BlobStore.connect(
            s3_endpoint_url, s3_bucket, s3_region, s3_access_key, s3_secret_key
        )
    await asyncio.to_thread(Path(blob_dir).mkdir, parents=True, exist_ok=True)
    return LocalBlobStore(blob_dir)
