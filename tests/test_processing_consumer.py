"""Derivatives through the real broker, database and blob store of the in-process stack:
``derivative.requested`` published on the run's exchange, the answers heard the way ingest
hears them (a broadcast listener), the bytes read back from the store."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections import defaultdict
from collections.abc import AsyncIterator

import pytest
import pyvips

from services.processing.config import ProcessingConfig
from services.processing.consumers import DERIVATIVES, DERIVATIVES_CONSUMER
from shared.config import load
from shared.derivatives import (
    DERIVATIVE_COMPUTED,
    DERIVATIVE_FAILED,
    DERIVATIVE_REQUESTED,
    Transform,
    derivative_key,
)
from shared.events import BroadcastListener, Envelope, new_event
from shared.runtime import BROKER, CONSUMERS, POOL, STORE
from tests.images_support import png_header_bomb
from tests.workers_support import eventually, store_original


class Answers:
    """Every ``derivative.computed`` / ``derivative.failed`` heard, by key."""

    def __init__(self) -> None:
        self.by_key: dict[str, list[Envelope]] = defaultdict(list)

    async def hear(self, envelope: Envelope) -> None:
        self.by_key[envelope.data["key"]].append(envelope)

    async def wait(self, key: str, count: int = 1, timeout: float = 30) -> list[Envelope]:
        """The first ``count`` answers for ``key``; fails the test when they do not come."""
        await eventually(lambda: len(self.by_key[key]) >= count, timeout, f"{count} on {key}")
        return self.by_key[key][:count]


@pytest.fixture
async def answers(stack) -> AsyncIterator[Answers]:
    heard = Answers()
    listener = BroadcastListener(
        stack.apps["processing"][BROKER],
        "test.derivatives",
        (DERIVATIVE_COMPUTED, DERIVATIVE_FAILED),
        heard.hear,
    )
    await listener.start()
    yield heard
    await listener.stop()


def photo(width: int, height: int) -> bytes:
    """A JPEG no other test has stored (random noise seed and tint)."""
    tint = [random.randint(0, 80) for _ in range(3)]
    xy = pyvips.Image.xyz(width, height)
    base = (xy[0] * 200 / width).bandjoin([xy[1] * 200 / height, xy[0] * 0 + 100]) + tint
    noise = pyvips.Image.gaussnoise(width, height, sigma=8, mean=0, seed=random.randint(1, 10**6))
    image = (base + noise).cast("uchar").copy(interpretation="srgb")
    return image.jpegsave_buffer(Q=90)


def request_data(original: dict[str, str], transform: Transform) -> dict:
    return {
        "key": derivative_key(original["sha256"], transform),
        "original": original,
        "transform": transform.as_dict(),
    }


async def publish(stack, data: dict) -> None:
    await stack.apps["processing"][BROKER].publish(new_event(DERIVATIVE_REQUESTED, data))


async def rows(stack, key: str) -> int:
    return await stack.apps["processing"][POOL].fetchval(
        "SELECT count(*) FROM derivatives WHERE key = $1", key
    )


THUMB = Transform(thumb_w=200, thumb_h=200, quality=80)


async def test_a_request_is_computed_into_the_store_and_recorded(stack, answers) -> None:
    original = await store_original(stack, photo(800, 600))
    data = request_data(original, THUMB)
    await publish(stack, data)
    [answer] = await answers.wait(data["key"])
    assert answer.type == DERIVATIVE_COMPUTED
    store = stack.apps["processing"][STORE]
    stored = await store.read(data["key"])
    image = pyvips.Image.new_from_buffer(stored, "")
    assert (image.width, image.height) == (200, 150)
    assert image.get("vips-loader") == "jpegload_buffer"
    assert answer.data == {
        "key": data["key"],
        "original_sha256": original["sha256"],
        "media_type": "image/jpeg",
        "bytes": len(stored),
        "width": 200,
        "height": 150,
        "worker": stack.apps["processing"][DERIVATIVES].worker,
        "cached": False,
    }
    row = await stack.apps["processing"][POOL].fetchrow(
        "SELECT * FROM derivatives WHERE key = $1", data["key"]
    )
    assert row["canonical"] == THUMB.canonical() and row["bytes"] == len(stored)
    assert row["duration_ms"] >= 0 and ":" in row["worker"]


async def test_the_same_request_again_is_answered_from_the_store(stack, answers) -> None:
    original = await store_original(stack, photo(640, 480))
    data = request_data(original, THUMB.with_format("webp"))
    await publish(stack, data)
    [first] = await answers.wait(data["key"])
    await publish(stack, data)
    [_, again] = await answers.wait(data["key"], 2)
    assert first.data["cached"] is False and again.data["cached"] is True
    assert {k: v for k, v in again.data.items() if k != "cached"} == {
        k: v for k, v in first.data.items() if k != "cached"
    }
    assert first.data["media_type"] == "image/webp"
    assert await rows(stack, data["key"]) == 1


async def test_two_identical_requests_at_once_compute_once(stack, answers) -> None:
    original = await store_original(stack, photo(1600, 1200))
    data = request_data(original, Transform(filter="lomo", rotation=30, round_corners=12))
    await asyncio.gather(publish(stack, data), publish(stack, data), publish(stack, data))
    heard = await answers.wait(data["key"], 3)
    assert sorted(answer.data["cached"] for answer in heard) == [False, True, True]
    assert await rows(stack, data["key"]) == 1


async def test_a_garbage_original_fails_without_a_retry_or_a_blob(stack, answers) -> None:
    original = await store_original(stack, b"\xff\xd8\xff not really a JPEG " * 50)
    data = request_data(original, THUMB)
    await publish(stack, data)
    [answer] = await answers.wait(data["key"])
    assert answer.type == DERIVATIVE_FAILED
    assert answer.data["code"] == "invalid_request"
    assert "not a JPEG, PNG, WebP or GIF" in answer.data["message"]
    assert answer.data["original_sha256"] == original["sha256"]
    assert not await stack.apps["processing"][STORE].exists(data["key"])
    assert await rows(stack, data["key"]) == 0
    await asyncio.sleep(0.5)
    assert len(answers.by_key[data["key"]]) == 1  # answered once: not retried


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: photo(400, 300)[:6000], "truncated"),
        (lambda: png_header_bomb(20_000, 20_000), "20000x20000"),
    ],
)
async def test_a_broken_or_oversized_original_fails(stack, answers, make, message) -> None:
    original = await store_original(stack, make())
    data = request_data(original, Transform(format="png", thumb_w=100))
    await publish(stack, data)
    [answer] = await answers.wait(data["key"])
    assert answer.type == DERIVATIVE_FAILED and message in answer.data["message"]
    assert not await stack.apps["processing"][STORE].exists(data["key"])


async def test_a_missing_original_fails_with_a_message_a_person_can_act_on(stack, answers) -> None:
    sha256 = hashlib.sha256(random.randbytes(32)).hexdigest()
    original = {"sha256": sha256, "key": f"sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"}
    data = request_data(original, THUMB)
    await publish(stack, data)
    [answer] = await answers.wait(data["key"])
    assert answer.type == DERIVATIVE_FAILED
    assert answer.data["message"] == "The original image is no longer stored; upload it again"


async def test_a_request_cannot_write_outside_its_own_key(stack, answers) -> None:
    """The key is where bytes are written: one that is not the original's and the transform's
    (here: the original's own key) is refused, and nothing is written."""
    data_bytes = photo(300, 200)
    original = await store_original(stack, data_bytes)
    data = {**request_data(original, THUMB), "key": original["key"]}
    await publish(stack, data)
    [answer] = await answers.wait(original["key"])
    assert answer.type == DERIVATIVE_FAILED
    assert "does not match" in answer.data["message"]
    assert await stack.apps["processing"][STORE].read(original["key"]) == data_bytes


async def test_bytes_that_are_not_the_named_original_are_refused(stack, answers) -> None:
    stored = await store_original(stack, photo(300, 200))
    claimed = hashlib.sha256(b"some other content").hexdigest()
    data = request_data({**stored, "sha256": claimed}, THUMB)
    await publish(stack, data)
    [answer] = await answers.wait(data["key"])
    assert answer.type == DERIVATIVE_FAILED and "SHA-256" in answer.data["message"]
    assert not await stack.apps["processing"][STORE].exists(data["key"])


async def test_each_replica_takes_as_many_requests_as_it_has_workers(stack) -> None:
    workers = load(ProcessingConfig, stack.env).workers
    [consumer] = [
        c
        for c in stack.apps["processing"][CONSUMERS]
        if c.subscription.consumer == DERIVATIVES_CONSUMER
    ]
    assert consumer.prefetch == workers
    assert consumer.subscription.routing_keys == (DERIVATIVE_REQUESTED,)
