"""Derivatives made while the caller waits: processing's ``POST /internal/derivatives`` (the
contract in :mod:`shared.derivatives`), called as ingest calls it, with the real database, blob
store and outbox of the in-process stack."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random

import pytest
import pyvips

from shared.derivatives import DERIVATIVE_STORED, DERIVATIVES_PATH, Transform, derivative_key
from shared.http import ANONYMOUS, InternalClient
from shared.runtime import POOL, STORE
from tests.images_support import png_header_bomb
from tests.metrics_support import scrape, value
from tests.workers_support import store_original

THUMB = Transform(thumb_w=200, thumb_h=200, quality=80)


def photo(width: int, height: int) -> bytes:
    """A JPEG no other test has stored (random noise seed and tint)."""
    tint = [random.randint(0, 80) for _ in range(3)]
    xy = pyvips.Image.xyz(width, height)
    base = (xy[0] * 200 / width).bandjoin([xy[1] * 200 / height, xy[0] * 0 + 100]) + tint
    noise = pyvips.Image.gaussnoise(width, height, sigma=8, mean=0, seed=random.randint(1, 10**6))
    image = (base + noise).cast("uchar").copy(interpretation="srgb")
    return image.jpegsave_buffer(Q=90)


def body(original: dict[str, str], transform: Transform) -> dict:
    return {
        "key": derivative_key(original["sha256"], transform),
        "original": original,
        "transform": transform.as_dict(),
    }


async def ask(http, stack, data: dict) -> tuple[int, dict, bytes]:
    """One signed call, as ingest makes it."""
    client = InternalClient(http, stack.env["DARKROOM_INTERNAL_KEY"])
    status, headers, answer = await client.fetch(
        "POST", stack.service_urls["processing"], DERIVATIVES_PATH, ANONYMOUS, json_body=data
    )
    return status, dict(headers), answer


async def rows(stack, key: str) -> int:
    return await stack.apps["processing"][POOL].fetchval(
        "SELECT count(*) FROM derivatives WHERE key = $1", key
    )


async def facts(stack, key: str) -> list[dict]:
    """The ``derivative.stored`` events processing's outbox holds for ``key``."""
    found = await stack.apps["processing"][POOL].fetch(
        "SELECT envelope FROM outbox WHERE envelope->>'type' = $1"
        " AND envelope->'data'->>'key' = $2",
        DERIVATIVE_STORED,
        key,
    )
    return [row["envelope"] for row in found]


async def jobs(http, stack) -> float:
    samples = await scrape(http, stack.service_urls["processing"])
    return value(samples, "darkroom_processing_duration_seconds_count", operation="derive")


async def test_a_derivative_is_answered_stored_recorded_and_announced_once(stack, http) -> None:
    original = await store_original(stack, photo(800, 600))
    data = body(original, THUMB)
    status, headers, answer = await ask(http, stack, data)
    assert status == 200, answer
    assert headers["Content-Type"] == "image/jpeg"
    assert (headers["X-Image-Width"], headers["X-Image-Height"]) == ("200", "150")
    assert headers["X-Derivative-Cached"] == "0"
    image = pyvips.Image.new_from_buffer(answer, "")
    assert (image.width, image.height) == (200, 150)
    # The bytes in the answer are the bytes in the store: nobody needs to read them back.
    assert await stack.apps["processing"][STORE].read(data["key"]) == answer
    row = await stack.apps["processing"][POOL].fetchrow(
        "SELECT * FROM derivatives WHERE key = $1", data["key"]
    )
    assert row["canonical"] == THUMB.canonical() and row["bytes"] == len(answer)
    assert row["duration_ms"] >= 0 and ":" in row["worker"]
    [fact] = await facts(stack, data["key"])
    assert fact["data"] == {
        "key": data["key"],
        "original_sha256": original["sha256"],
        "media_type": "image/jpeg",
        "bytes": len(answer),
        "width": 200,
        "height": 150,
        "worker": row["worker"],
    }


async def test_the_same_request_again_is_answered_from_the_store(stack, http) -> None:
    original = await store_original(stack, photo(640, 480))
    data = body(original, THUMB.with_format("webp"))
    _, first_headers, first = await ask(http, stack, data)
    before = await jobs(http, stack)
    status, headers, again = await ask(http, stack, data)
    assert status == 200 and again == first
    assert first_headers["X-Derivative-Cached"] == "0" and headers["X-Derivative-Cached"] == "1"
    assert headers["Content-Type"] == "image/webp"
    assert await jobs(http, stack) == before  # not made again
    assert await rows(stack, data["key"]) == 1 and len(await facts(stack, data["key"])) == 1


async def test_callers_asking_for_one_key_at_once_share_one_job(stack, http) -> None:
    original = await store_original(stack, photo(1600, 1200))
    data = body(original, Transform(filter="lomo", rotation=30, round_corners=12))
    before = await jobs(http, stack)
    answers = await asyncio.gather(*(ask(http, stack, data) for _ in range(3)))
    assert [status for status, _, _ in answers] == [200, 200, 200]
    assert len({answer for _, _, answer in answers}) == 1
    assert await jobs(http, stack) == before + 1
    assert await rows(stack, data["key"]) == 1 and len(await facts(stack, data["key"])) == 1


async def test_a_garbage_original_is_refused_and_nothing_is_written(stack, http) -> None:
    original = await store_original(stack, b"\xff\xd8\xff not really a JPEG " * 50)
    data = body(original, THUMB)
    status, _, answer = await ask(http, stack, data)
    assert status == 422
    error = json.loads(answer)["error"]
    assert error["code"] == "invalid_request"
    assert "not a JPEG, PNG, WebP or GIF" in error["message"]
    assert not await stack.apps["processing"][STORE].exists(data["key"])
    assert await rows(stack, data["key"]) == 0 and await facts(stack, data["key"]) == []


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: photo(400, 300)[:6000], "truncated"),
        (lambda: png_header_bomb(20_000, 20_000), "20000x20000"),
    ],
)
async def test_a_broken_or_oversized_original_is_refused(stack, http, make, message) -> None:
    original = await store_original(stack, make())
    data = body(original, Transform(format="png", thumb_w=100))
    status, _, answer = await ask(http, stack, data)
    assert status == 422 and message in json.loads(answer)["error"]["message"]
    assert not await stack.apps["processing"][STORE].exists(data["key"])


async def test_a_missing_original_is_refused_with_a_message_a_person_can_act_on(
    stack, http
) -> None:
    sha256 = hashlib.sha256(random.randbytes(32)).hexdigest()
    original = {"sha256": sha256, "key": f"sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"}
    status, _, answer = await ask(http, stack, body(original, THUMB))
    assert status == 422
    assert json.loads(answer)["error"]["message"] == (
        "The original image is no longer stored; upload it again"
    )


async def test_a_request_cannot_write_outside_its_own_key(stack, http) -> None:
    """The key is where bytes are written: one that is not the original's and the transform's
    (here: the original's own key) is refused, and nothing is written."""
    data_bytes = photo(300, 200)
    original = await store_original(stack, data_bytes)
    status, _, answer = await ask(http, stack, {**body(original, THUMB), "key": original["key"]})
    assert status == 422 and "does not match" in json.loads(answer)["error"]["message"]
    assert await stack.apps["processing"][STORE].read(original["key"]) == data_bytes


async def test_an_original_named_by_another_key_than_its_hash_is_refused(stack, http) -> None:
    """Originals are trusted by their content key (hashed once, when ingest wrote them): a
    request naming a hash and another key could put other bytes under that hash's
    derivatives, so it is refused before anything is read."""
    stored = await store_original(stack, photo(300, 200))
    claimed = hashlib.sha256(b"some other content").hexdigest()
    data = body({**stored, "sha256": claimed}, THUMB)
    status, _, answer = await ask(http, stack, data)
    assert status == 422
    assert json.loads(answer)["error"]["message"] == (
        "The original's store key is not its content key"
    )
    assert not await stack.apps["processing"][STORE].exists(data["key"])


async def test_an_unsigned_call_is_refused(stack, http) -> None:
    original = await store_original(stack, photo(300, 200))
    data = body(original, THUMB)
    async with http.post(stack.service_urls["processing"] + DERIVATIVES_PATH, json=data) as answer:
        assert answer.status == 403, await answer.text()
    assert not await stack.apps["processing"][STORE].exists(data["key"])
