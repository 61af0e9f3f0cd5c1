"""Quality analyses through the real broker, database and blob store of the in-process stack:
``analysis.requested`` published on the run's exchange, the answers heard the way ingest hears
them (a broadcast listener), the aux images read back from the store."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections import defaultdict
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest
import pyvips

from services.processing.config import ProcessingConfig
from services.processing.consumers import ANALYSES, ANALYSES_CONSUMER
from shared.analysis import (
    ALGORITHM,
    ANALYSIS_COMPLETED,
    ANALYSIS_FAILED,
    ANALYSIS_REQUESTED,
    AUX_IMAGE_TYPES,
    aux_image_key,
)
from shared.config import load
from shared.events import BroadcastListener, Envelope, new_event
from shared.runtime import BROKER, CONSUMERS, POOL, STORE
from shared.store_keys import derivatives_prefix
from tests.images_support import scene
from tests.workers_support import eventually, store_original


class Answers:
    """Every ``analysis.completed`` / ``analysis.failed`` heard, by image id."""

    def __init__(self) -> None:
        self.by_image: dict[str, list[Envelope]] = defaultdict(list)

    async def hear(self, envelope: Envelope) -> None:
        self.by_image[envelope.data["image_id"]].append(envelope)

    async def wait(self, image_id: str, count: int = 1, timeout: float = 30) -> list[Envelope]:
        """The first ``count`` answers for ``image_id``; fails the test when they do not come."""
        await eventually(
            lambda: len(self.by_image[image_id]) >= count, timeout, f"{count} on {image_id}"
        )
        return self.by_image[image_id][:count]


@pytest.fixture
async def answers(stack) -> AsyncIterator[Answers]:
    heard = Answers()
    listener = BroadcastListener(
        stack.apps["processing"][BROKER],
        "test.analyses",
        (ANALYSIS_COMPLETED, ANALYSIS_FAILED),
        heard.hear,
    )
    await listener.start()
    yield heard
    await listener.stop()


def photo() -> bytes:
    """A photo-like JPEG no other test has stored (a random texture seed)."""
    return scene(seed=random.randint(1, 10**6)).jpegsave_buffer(Q=90)


async def request(stack, original: dict[str, str], image_id: str | None = None) -> str:
    """Publish ``analysis.requested`` for ``original``; the image id it is for."""
    image_id = image_id or str(uuid4())
    data = {"image_id": image_id, "original": original, "app_args": None}
    await stack.apps["processing"][BROKER].publish(new_event(ANALYSIS_REQUESTED, data))
    return image_id


async def rows(stack, sha256: str) -> list[dict]:
    found = await stack.apps["processing"][POOL].fetch(
        "SELECT * FROM analyses WHERE sha256 = $1", sha256
    )
    return [dict(row) for row in found]


async def test_an_analysis_is_computed_and_its_aux_images_stored(stack, answers) -> None:
    original = await store_original(stack, photo())
    image_id = await request(stack, original)
    [answer] = await answers.wait(image_id)
    assert answer.type == ANALYSIS_COMPLETED
    data = answer.data
    assert data["image_id"] == image_id
    assert data["original_sha256"] == original["sha256"]
    assert data["algorithm"] == ALGORITHM
    assert data["problems"] == [] and data["quality_issues"] == []
    assert data["quality_score"] >= 80 and data["quality_feedback"] == "Good photo."
    assert data["quality_result"]["width"] == 800 and data["quality_result"]["format"] == "jpeg"
    assert data["cached"] is False and data["worker"] == stack.apps["processing"][ANALYSES].worker
    store = stack.apps["processing"][STORE]
    assert [aux["aux_image_type"] for aux in data["aux_images"]] == list(AUX_IMAGE_TYPES)
    for aux in data["aux_images"]:
        assert aux["key"] == aux_image_key(original["sha256"], aux["aux_image_type"])
        assert aux["key"].startswith(derivatives_prefix(original["sha256"]))
        assert aux["algo_app"] == ALGORITHM and aux["media_type"] == "image/png"
        stored = await store.read(aux["key"])
        assert len(stored) == aux["bytes"]
        image = pyvips.Image.new_from_buffer(stored, "")
        assert (image.width, image.height) == (aux["width"], aux["height"]) == (512, 384)
    [row] = await rows(stack, original["sha256"])
    assert row["algorithm"] == ALGORITHM and row["aux"] == data["aux_images"]
    assert row["result"]["quality_score"] == data["quality_score"]
    assert row["duration_ms"] >= 0 and ":" in row["worker"]


async def test_the_same_original_again_is_answered_from_the_analyses_table(stack, answers) -> None:
    """Another image with the same bytes (a re-upload, another subject) gets the analysis
    recorded the first time: the same findings, one row."""
    original = await store_original(stack, photo())
    first_id = await request(stack, original)
    [first] = await answers.wait(first_id)
    [before] = await rows(stack, original["sha256"])
    again_id = await request(stack, original)
    [again] = await answers.wait(again_id)
    assert first.data["cached"] is False and again.data["cached"] is True
    same = {"image_id", "cached"}
    assert {k: v for k, v in again.data.items() if k not in same} == {
        k: v for k, v in first.data.items() if k not in same
    }
    [after] = await rows(stack, original["sha256"])
    assert after["created_at"] == before["created_at"]


async def test_two_requests_at_once_analyse_once(stack, answers) -> None:
    original = await store_original(stack, photo())
    ids = [str(uuid4()) for _ in range(3)]
    await asyncio.gather(*(request(stack, original, image_id) for image_id in ids))
    heard = [(await answers.wait(image_id))[0] for image_id in ids]
    assert sorted(answer.data["cached"] for answer in heard) == [False, True, True]
    assert len(await rows(stack, original["sha256"])) == 1


async def test_lost_aux_images_are_made_again(stack, answers) -> None:
    original = await store_original(stack, photo())
    [first] = await answers.wait(await request(stack, original))
    store = stack.apps["processing"][STORE]
    await store.delete(first.data["aux_images"][1]["key"])
    [again] = await answers.wait(await request(stack, original))
    assert again.data["cached"] is False
    assert again.data["aux_images"] == first.data["aux_images"]
    for aux in again.data["aux_images"]:
        assert await store.exists(aux["key"])
    assert len(await rows(stack, original["sha256"])) == 1


async def test_garbage_is_a_completed_analysis_with_the_undecodable_problem(stack, answers) -> None:
    garbage = b"\xff\xd8\xff not really a JPEG " * 50 + random.randbytes(16)
    original = await store_original(stack, garbage)
    image_id = await request(stack, original)
    [answer] = await answers.wait(image_id)
    assert answer.type == ANALYSIS_COMPLETED
    assert answer.data["problems"] == ["undecodable"]
    assert answer.data["quality_score"] == 0 and answer.data["aux_images"] == []
    assert answer.data["quality_feedback"].startswith("The file is not a readable image")
    keys = [
        key
        async for key in stack.apps["processing"][STORE].keys(
            derivatives_prefix(original["sha256"])
        )
    ]
    assert keys == []
    assert len(await rows(stack, original["sha256"])) == 1
    await asyncio.sleep(0.5)
    assert len(answers.by_image[image_id]) == 1  # answered once: not retried


async def test_a_low_resolution_photo_is_completed_with_its_problem(stack, answers) -> None:
    small = scene(200, 150, seed=random.randint(1, 10**6)).jpegsave_buffer(Q=90)
    original = await store_original(stack, small)
    [answer] = await answers.wait(await request(stack, original))
    assert answer.type == ANALYSIS_COMPLETED
    assert answer.data["problems"] == ["low_resolution"]
    assert answer.data["quality_score"] <= 20
    assert len(answer.data["aux_images"]) == 2


async def test_a_missing_original_fails(stack, answers) -> None:
    sha256 = hashlib.sha256(random.randbytes(32)).hexdigest()
    original = {
        "sha256": sha256,
        "key": f"sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}",
        "media_type": "image/jpeg",
    }
    image_id = await request(stack, original)
    [answer] = await answers.wait(image_id)
    assert answer.type == ANALYSIS_FAILED
    assert answer.data == {
        "image_id": image_id,
        "original_sha256": sha256,
        "code": "invalid_request",
        "message": "The original image is no longer stored; upload it again",
    }
    assert await rows(stack, sha256) == []


async def test_an_original_named_by_another_key_than_its_hash_is_refused(stack, answers) -> None:
    """Originals are trusted by their content key (hashed once, when written): a request that
    names a hash and some other key is refused before anything is read or written."""
    stored = await store_original(stack, photo())
    claimed = hashlib.sha256(random.randbytes(32)).hexdigest()
    [answer] = await answers.wait(await request(stack, {**stored, "sha256": claimed}))
    assert answer.type == ANALYSIS_FAILED
    assert answer.data["message"] == "The original's store key is not its content key"
    keys = [key async for key in stack.apps["processing"][STORE].keys(derivatives_prefix(claimed))]
    assert keys == [] and await rows(stack, claimed) == []


@pytest.mark.parametrize(
    "original",
    [None, {"sha256": "not-a-hash", "key": "sha256/x"}, {"sha256": "ab" * 32}],
    ids=["no original", "bad hash", "no key"],
)
async def test_a_malformed_request_fails(stack, answers, original) -> None:
    [answer] = await answers.wait(await request(stack, original))
    assert answer.type == ANALYSIS_FAILED and answer.data["code"] == "invalid_request"


async def test_each_replica_takes_as_many_analyses_as_it_has_workers(stack) -> None:
    workers = load(ProcessingConfig, stack.env).workers
    [consumer] = [
        c
        for c in stack.apps["processing"][CONSUMERS]
        if c.subscription.consumer == ANALYSES_CONSUMER
    ]
    assert consumer.prefetch == workers
    assert consumer.subscription.routing_keys == (ANALYSIS_REQUESTED,)
