"""Pixel diffs of comparisons through the real broker, database and blob store of the
in-process stack: ``comparison.requested`` recorded through reports' outbox (as reports asks),
the ``comparison.diffed`` answers heard on a broadcast queue, the diff PNGs read back from the
store and decoded."""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import numpy as np
import pytest
import pyvips

from services.processing import consumers, domain
from services.processing.config import ProcessingConfig
from services.processing.consumers import COMPARISONS_CONSUMER
from services.processing.domain import UnanswerableRequest
from shared.comparisons import (
    COMPARISON_DIFFED,
    COMPARISON_REQUESTED,
    diff_key,
)
from shared.config import load
from shared.errors import InvalidRequest
from shared.events import BroadcastListener, Envelope, new_event, record_event
from shared.runtime import BROKER, CONSUMERS, POOL, STORE
from shared.store_keys import DIFF_PREFIX, blob_key
from tests.conftest import AMQP_URL
from tests.workers_support import eventually


class Answers:
    """Every ``comparison.diffed`` heard, by comparison id."""

    def __init__(self) -> None:
        self.by_comparison: dict[Any, list[Envelope]] = defaultdict(list)

    async def hear(self, envelope: Envelope) -> None:
        self.by_comparison[envelope.data["comparison_id"]].append(envelope)

    async def wait(self, comparison_id: Any, count: int = 1, timeout: float = 30) -> list[Envelope]:
        """The first ``count`` answers for ``comparison_id``; fails the test when they do not
        come."""
        await eventually(
            lambda: len(self.by_comparison[comparison_id]) >= count,
            timeout,
            f"{count} on comparison {comparison_id}",
        )
        return self.by_comparison[comparison_id][:count]


async def listen(platform) -> tuple[Answers, BroadcastListener]:
    heard = Answers()
    listener = BroadcastListener(
        platform.apps["processing"][BROKER], "test.comparisons", (COMPARISON_DIFFED,), heard.hear
    )
    await listener.start()
    return heard, listener


@pytest.fixture
async def answers(stack) -> AsyncIterator[Answers]:
    heard, listener = await listen(stack)
    yield heard
    await listener.stop()


def png(pixels: np.ndarray) -> bytes:
    """An RGB PNG of ``pixels`` (height x width x 3, uint8)."""
    height, width, _ = pixels.shape
    image = pyvips.Image.new_from_memory(
        np.ascontiguousarray(pixels, dtype=np.uint8).tobytes(), width, height, 3, "uchar"
    )
    return image.copy(interpretation="srgb").pngsave_buffer()


def flat(width: int = 64, height: int = 64) -> np.ndarray:
    """A flat light colour no other test uses (so no earlier diff answers for it)."""
    colour = [random.randint(150, 250) for _ in range(3)]
    return np.full((height, width, 3), colour, dtype=np.uint8)


def with_patch(pixels: np.ndarray, x: int, y: int, size: int = 10) -> np.ndarray:
    """``pixels`` with a dark blue ``size`` x ``size`` square at (``x``, ``y``)."""
    changed = pixels.copy()
    changed[y : y + size, x : x + size] = (20, 40, 160)
    return changed


async def store_image(platform, data: bytes) -> dict[str, str]:
    """Put ``data`` where ingest keeps originals; a side of a pair."""
    sha256 = hashlib.sha256(data).hexdigest()
    await platform.apps["processing"][STORE].put(blob_key(sha256), data)
    return {"sha256": sha256, "key": blob_key(sha256)}


async def request(
    platform,
    pairs: Any,
    *,
    threshold: Any = 0.1,
    include_anti_aliasing: Any = False,
    comparison_id: Any = None,
    **fields: Any,
) -> Any:
    """Record ``comparison.requested`` through reports' outbox, as reports asks; the id of the
    comparison it is for."""
    comparison_id = comparison_id or random.randint(1, 2**62)
    data = {
        "comparison_id": comparison_id,
        "account_id": "00000000-0000-0000-0000-000000000001",
        "threshold": threshold,
        "include_anti_aliasing": include_anti_aliasing,
        "pairs": pairs,
        **fields,
    }
    async with platform.apps["reports"][POOL].acquire() as conn, conn.transaction():
        await record_event(conn, COMPARISON_REQUESTED, data)
    return comparison_id


def red_mask(data: bytes) -> np.ndarray:
    """Where a decoded diff PNG is pure red (a changed pixel)."""
    image = pyvips.Image.new_from_buffer(data, "")
    assert image.bands == 3 and image.format == "uchar"
    pixels = np.ndarray(
        buffer=image.write_to_memory(),
        dtype=np.uint8,
        shape=(image.height, image.width, image.bands),
    )
    return (pixels[..., 0] == 255) & (pixels[..., 1] == 0) & (pixels[..., 2] == 0)


async def rows(platform, before: str, after: str) -> list[dict]:
    found = await platform.apps["processing"][POOL].fetch(
        "SELECT * FROM pixel_diffs WHERE before_sha256 = $1 AND after_sha256 = $2 ORDER BY 3, 4",
        before,
        after,
    )
    return [dict(row) for row in found]


async def test_a_10x10_change_is_counted_boxed_and_drawn(stack, answers) -> None:
    base = flat()
    before = await store_image(stack, png(base))
    after = await store_image(stack, png(with_patch(base, 20, 30)))
    comparison_id = await request(stack, [{"before": before, "after": after}])
    [answer] = await answers.wait(comparison_id)
    key = diff_key(before["sha256"], after["sha256"], 0.1, False)
    stored = await stack.apps["processing"][STORE].read(key)
    assert answer.data == {
        "comparison_id": comparison_id,
        "threshold": 0.1,
        "include_anti_aliasing": False,
        "results": [
            {
                "before_sha256": before["sha256"],
                "after_sha256": after["sha256"],
                "changed_pixels": 100,
                "total_pixels": 64 * 64,
                "width": 64,
                "height": 64,
                "bbox": [20, 30, 10, 10],
                "anti_aliased_pixels": 0,
                "size_mismatch": False,
                "diff_key": key,
                "diff_bytes": len(stored),
                "error": None,
                "cached": False,
            }
        ],
        "error": None,
        "worker": stack.apps["processing"][consumers.COMPARISONS].worker,
    }
    assert key.startswith(DIFF_PREFIX)
    expected = np.zeros((64, 64), dtype=bool)
    expected[30:40, 20:30] = True
    assert np.array_equal(red_mask(stored), expected)
    # Published through processing's outbox, in the transaction that recorded the diff.
    outbox = await stack.apps["processing"][POOL].fetchval(
        "SELECT envelope FROM outbox WHERE id = $1::uuid", answer.id
    )
    assert outbox == answer.to_dict()
    [row] = await rows(stack, before["sha256"], after["sha256"])
    assert (row["threshold"], row["include_anti_aliasing"]) == (0.1, False)
    assert row["changed_pixels"] == 100 and row["bbox"] == [20, 30, 10, 10]
    assert row["diff_key"] == key and row["diff_bytes"] == len(stored)
    assert row["duration_ms"] >= 0 and ":" in row["worker"]


def anti_aliased_edge(grey: int, corner: int) -> np.ndarray:
    """White on the left, black on the right, one column of ``grey`` between: an edge drawn
    with anti-aliasing, the blend differing from one rendering to the next. The top-left
    pixel is ``corner``, so that no other test's diff answers for these images."""
    pixels = np.full((64, 64, 3), 255, dtype=np.uint8)
    pixels[:, 32:] = 0
    pixels[:, 31] = grey
    pixels[0, 0] = corner
    return pixels


def jittered(pixels: np.ndarray, count: int) -> tuple[np.ndarray, list[int]]:
    """``pixels`` with ``count`` random pixels' red raised by one (invisible); and the bbox
    of those pixels."""
    changed = pixels.copy()
    spots = random.sample(range(64 * 64), count)
    ys, xs = np.divmod(np.array(spots), 64)
    changed[ys, xs, 0] += 1
    left, top = int(xs.min()), int(ys.min())
    return changed, [left, top, int(xs.max()) - left + 1, int(ys.max()) - top + 1]


async def test_anti_aliasing_and_jitter_under_the_threshold_change_nothing(stack, answers) -> None:
    corner = random.randint(0, 250)
    edge_before = await store_image(stack, png(anti_aliased_edge(160, corner)))
    edge_after = await store_image(stack, png(anti_aliased_edge(96, corner)))
    base = flat()
    noisy, _ = jittered(base, 37)
    jitter_before, jitter_after = (
        await store_image(stack, png(base)),
        await store_image(stack, png(noisy)),
    )
    pairs = [
        {"before": edge_before, "after": edge_after},
        {"before": jitter_before, "after": jitter_after},
    ]
    comparison_id = await request(stack, pairs)
    [answer] = await answers.wait(comparison_id)
    edge, jitter = answer.data["results"]
    assert (edge["changed_pixels"], edge["anti_aliased_pixels"], edge["bbox"]) == (0, 64, None)
    assert (jitter["changed_pixels"], jitter["anti_aliased_pixels"], jitter["bbox"]) == (0, 0, None)
    store = stack.apps["processing"][STORE]
    for pair, result in zip(pairs, (edge, jitter), strict=True):
        assert result["diff_key"] is None and result["diff_bytes"] is None
        assert result["error"] is None and result["total_pixels"] == 4096
        key = diff_key(pair["before"]["sha256"], pair["after"]["sha256"], 0.1, False)
        assert not await store.exists(key)
    # Counting anti-aliasing too, the blended column is the change.
    comparison_id = await request(stack, pairs[:1], include_anti_aliasing=True)
    [counted] = (await answers.wait(comparison_id))[0].data["results"]
    assert (counted["changed_pixels"], counted["bbox"]) == (64, [31, 0, 1, 64])
    assert counted["anti_aliased_pixels"] == 0 and counted["cached"] is False


async def test_threshold_0_counts_every_changed_value_exactly(stack, answers) -> None:
    base = flat()
    noisy, bbox = jittered(base, 53)
    before, after = await store_image(stack, png(base)), await store_image(stack, png(noisy))
    pairs = [{"before": before, "after": after}]
    loose = await request(stack, pairs, threshold=0.1)
    exact = await request(stack, pairs, threshold=0)
    [loose_answer] = await answers.wait(loose)
    [exact_answer] = await answers.wait(exact)
    assert loose_answer.data["results"][0]["changed_pixels"] == 0
    [result] = exact_answer.data["results"]
    assert exact_answer.data["threshold"] == 0
    assert (result["changed_pixels"], result["bbox"]) == (53, bbox)
    assert result["diff_key"] == diff_key(before["sha256"], after["sha256"], 0, False)
    stored = await stack.apps["processing"][STORE].read(result["diff_key"])
    assert red_mask(stored).sum() == 53
    # One row per set of options.
    recorded = await rows(stack, before["sha256"], after["sha256"])
    assert [(row["threshold"], row["changed_pixels"]) for row in recorded] == [(0, 53), (0.1, 0)]


async def test_undiffable_pairs_carry_an_error_and_the_others_are_diffed(stack, answers) -> None:
    base = flat()
    good_before = await store_image(stack, png(base))
    good_after = await store_image(stack, png(with_patch(base, 0, 0)))
    # Noise, so that half of the file is past its header, well into the pixels.
    noise = png(np.random.default_rng().integers(0, 256, (64, 64, 3), dtype=np.uint8))
    truncated = await store_image(stack, noise[: len(noise) // 2])
    missing_sha = hashlib.sha256(random.randbytes(32)).hexdigest()
    missing = {"sha256": missing_sha, "key": blob_key(missing_sha)}
    impostor = {**good_after, "sha256": hashlib.sha256(random.randbytes(32)).hexdigest()}
    good = {"before": good_before, "after": good_after}
    pairs = [
        {"before": good_before, "after": truncated},
        good,
        {"before": missing, "after": good_after},
        {"before": good_before, "after": impostor},
        {"before": {"sha256": "NOT-A-HASH", "key": good_before["key"]}, "after": good_after},
        {"before": good_before, "after": {"sha256": good_after["sha256"], "key": "../etc"}},
        "not a pair",
        good,
    ]
    comparison_id = await request(stack, pairs)
    [answer] = await answers.wait(comparison_id)
    results = answer.data["results"]
    assert [result["error"] for result in results] == [
        "The after PNG image is truncated or corrupt",
        None,
        "The before image is no longer stored; upload it again",
        "The pair gives no content key for the after image",
        "The before image's sha256 is not a SHA-256 hex digest",
        "The pair gives no content key for the after image",
        "A pair is not an object",
        None,
    ]
    assert results[1]["changed_pixels"] == 100 and results[1]["bbox"] == [0, 0, 10, 10]
    assert results[7] == results[1]  # a pair named twice is answered twice, diffed once
    assert (results[0]["before_sha256"], results[0]["after_sha256"]) == (
        good_before["sha256"],
        truncated["sha256"],
    )
    assert results[4]["before_sha256"] == "NOT-A-HASH" and results[6]["before_sha256"] is None
    for failed in (results[0], results[2], results[3], results[6]):
        assert failed["changed_pixels"] is None and failed["diff_key"] is None
        assert failed["cached"] is False and failed["size_mismatch"] is None
    assert answer.data["error"] is None
    # Errors are not recorded (the image may be stored again), nor their diffs stored.
    assert await rows(stack, good_before["sha256"], truncated["sha256"]) == []
    assert len(await rows(stack, good_before["sha256"], good_after["sha256"])) == 1
    keys = [key async for key in stack.apps["processing"][STORE].keys(DIFF_PREFIX)]
    assert diff_key(good_before["sha256"], truncated["sha256"], 0.1, False) not in keys
    # A fact about the input: answered once, not retried.
    await asyncio.sleep(0.5)
    assert len(answers.by_comparison[comparison_id]) == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"threshold": 1.5}, "The diff threshold must be a number from 0 to 1"),
        ({"threshold": True}, "The diff threshold must be a number from 0 to 1"),
        ({"threshold": None}, "The diff threshold must be a number from 0 to 1"),
        ({"include_anti_aliasing": "yes"}, "include_anti_aliasing must be true or false"),
    ],
    ids=["over 1", "a boolean", "missing", "not a boolean"],
)
async def test_bad_options_are_answered_with_an_error_on_every_pair(
    stack, answers, fields, message
) -> None:
    base = flat()
    before = await store_image(stack, png(base))
    after = await store_image(stack, png(with_patch(base, 5, 5)))
    pairs = [{"before": before, "after": after}, {"before": after, "after": before}]
    comparison_id = await request(stack, pairs, **fields)
    [answer] = await answers.wait(comparison_id)
    assert answer.data["error"] == message
    assert [result["error"] for result in answer.data["results"]] == [message, message]
    assert answer.data["results"][1]["before_sha256"] == after["sha256"]
    assert await rows(stack, before["sha256"], after["sha256"]) == []


async def test_a_nan_threshold_is_answered_not_echoed(stack, answers) -> None:
    """Python's JSON reads NaN, PostgreSQL's jsonb refuses it: echoed, the answer could never
    be recorded and the request would go round until dead-lettered."""
    comparison_id = random.randint(1, 2**62)
    envelope = new_event(
        COMPARISON_REQUESTED,
        {"comparison_id": comparison_id, "threshold": float("nan"), "pairs": [], "x": [1]},
    ).to_dict()
    await stack.apps["processing"][BROKER].publish(envelope)
    [answer] = await answers.wait(comparison_id)
    assert answer.data["threshold"] is None and answer.data["results"] == []
    assert answer.data["error"] == "The diff threshold must be a number from 0 to 1"


async def test_pairs_that_are_not_a_list_are_answered_with_an_error(stack, answers) -> None:
    comparison_id = await request(stack, {"before": "x"})
    [answer] = await answers.wait(comparison_id)
    assert answer.data["results"] == []
    assert answer.data["error"] == "The request's pairs are not a list"


async def test_a_request_without_a_comparison_id_is_dead_lettered_unanswered(stack) -> None:
    pool = stack.apps["processing"][POOL]
    diffed_before = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE type = $1", COMPARISON_DIFFED
    )
    async with stack.apps["reports"][POOL].acquire() as conn, conn.transaction():
        poison = await record_event(
            conn, COMPARISON_REQUESTED, {"threshold": 0.1, "pairs": [], "nonce": random.random()}
        )
    dead_queue = stack.apps["processing"][BROKER].queue_name(COMPARISONS_CONSUMER) + ".dead"
    connection = await aio_pika.connect(AMQP_URL)
    found: list[dict] = []
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(dead_queue, passive=True)

        async def dead_lettered() -> bool:
            message = await queue.get(no_ack=True, fail=False)
            if message is not None:
                found.append({"id": message.message_id, "reason": message.headers})
            return any(item["id"] == poison.id for item in found)

        deadline = time.monotonic() + 30
        while not await dead_lettered():
            assert time.monotonic() < deadline, "the request never reached the dead queue"
            await asyncio.sleep(0.1)
    finally:
        await connection.close()
    [dead] = [item for item in found if item["id"] == poison.id]
    assert dead["reason"]["x-first-death-reason"] == "delivery_limit"
    assert (
        await pool.fetchval("SELECT count(*) FROM outbox WHERE type = $1", COMPARISON_DIFFED)
        == diffed_before
    )
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM processed_events WHERE event_id = $1::uuid", poison.id
        )
        == 0
    )


async def test_a_repeated_request_is_answered_from_the_cache(stack, answers) -> None:
    base = flat()
    before = await store_image(stack, png(base))
    after = await store_image(stack, png(with_patch(base, 50, 3)))
    quiet = await store_image(stack, png(jittered(base, 5)[0]))
    pairs = [{"before": before, "after": after}, {"before": before, "after": quiet}]
    [first] = await answers.wait(await request(stack, pairs))
    [recorded] = await rows(stack, before["sha256"], after["sha256"])
    # Any failure to decode again would show: the originals are gone from the store.
    store = stack.apps["processing"][STORE]
    await store.delete(after["key"])
    await store.delete(quiet["key"])
    [again] = await answers.wait(await request(stack, pairs))
    assert [result["cached"] for result in first.data["results"]] == [False, False]
    assert [result["cached"] for result in again.data["results"]] == [True, True]

    def figures(answer: Envelope) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "cached"} for r in answer.data["results"]]

    assert figures(again) == figures(first)
    assert again.data["results"][0]["changed_pixels"] == 100
    [still] = await rows(stack, before["sha256"], after["sha256"])
    assert still["created_at"] == recorded["created_at"]


async def test_a_lost_diff_image_is_made_again(stack, answers) -> None:
    base = flat()
    before = await store_image(stack, png(base))
    after = await store_image(stack, png(with_patch(base, 7, 11)))
    pairs = [{"before": before, "after": after}]
    [first] = await answers.wait(await request(stack, pairs))
    key = first.data["results"][0]["diff_key"]
    store = stack.apps["processing"][STORE]
    drawn = await store.read(key)
    await store.delete(key)
    [again] = await answers.wait(await request(stack, pairs))
    assert again.data["results"][0]["cached"] is False
    assert again.data["results"][0]["diff_key"] == key
    assert await store.read(key) == drawn
    assert len(await rows(stack, before["sha256"], after["sha256"])) == 1


async def test_a_storage_outage_is_retried_not_answered(stack, answers, monkeypatch) -> None:
    base = flat()
    before = await store_image(stack, png(base))
    after = await store_image(stack, png(with_patch(base, 33, 44)))
    store = stack.apps["processing"][STORE]
    real_put = store.put
    attempts: list[str] = []

    async def flaky_put(key: str, chunks: Any) -> Any:
        if key.startswith(DIFF_PREFIX):
            attempts.append(key)
            if len(attempts) == 1:
                raise OSError("the disk is not answering")
        return await real_put(key, chunks)

    monkeypatch.setattr(store, "put", flaky_put)
    comparison_id = await request(stack, [{"before": before, "after": after}])
    [answer] = await answers.wait(comparison_id)
    [result] = answer.data["results"]
    assert result["error"] is None and result["changed_pixels"] == 100
    assert result["bbox"] == [33, 44, 10, 10] and result["cached"] is False
    key = diff_key(before["sha256"], after["sha256"], 0.1, False)
    assert attempts == [key, key]  # failed once, then the redelivery stored it
    assert await store.exists(key)
    await asyncio.sleep(0.5)
    assert len(answers.by_comparison[comparison_id]) == 1


async def test_pairs_of_one_comparison_are_diffed_concurrently_up_to_the_workers(
    stack, answers, monkeypatch
) -> None:
    workers = load(ProcessingConfig, stack.env).workers
    real_diff = consumers.diff_images
    lock = threading.Lock()
    running, peak = [0], [0]

    def slow_diff(*args: Any) -> Any:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            time.sleep(0.15)
            return real_diff(*args)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(consumers, "diff_images", slow_diff)
    base = flat()
    before = await store_image(stack, png(base))
    pairs = []
    for n in range(2 * workers + 1):
        after = await store_image(stack, png(with_patch(base, n, n, size=3)))
        pairs.append({"before": before, "after": after})
    [answer] = await answers.wait(await request(stack, pairs))
    assert [result["changed_pixels"] for result in answer.data["results"]] == [9] * len(pairs)
    assert [result["bbox"][:2] for result in answer.data["results"]] == [
        [n, n] for n in range(len(pairs))
    ]
    assert peak[0] == workers


async def test_each_replica_takes_as_many_comparisons_as_it_has_workers(stack) -> None:
    workers = load(ProcessingConfig, stack.env).workers
    [consumer] = [
        c
        for c in stack.apps["processing"][CONSUMERS]
        if c.subscription.consumer == COMPARISONS_CONSUMER
    ]
    assert consumer.prefetch == workers
    assert consumer.subscription.routing_keys == (COMPARISON_REQUESTED,)


async def test_a_comparison_on_s3_stores_its_diff_in_the_bucket(s3_stack) -> None:
    heard, listener = await listen(s3_stack)
    try:
        base = flat(80, 48)
        before = await store_image(s3_stack, png(base))
        after = await store_image(s3_stack, png(with_patch(base, 60, 20)))
        pairs = [{"before": before, "after": after}]
        [first] = await heard.wait(await request(s3_stack, pairs))
        [again] = await heard.wait(await request(s3_stack, pairs))
    finally:
        await listener.stop()
    [result] = first.data["results"]
    assert (result["changed_pixels"], result["bbox"]) == (100, [60, 20, 10, 10])
    assert (result["width"], result["height"], result["total_pixels"]) == (80, 48, 80 * 48)
    stored = await s3_stack.apps["processing"][STORE].read(result["diff_key"])
    assert len(stored) == result["diff_bytes"]
    expected = np.zeros((48, 80), dtype=bool)
    expected[20:30, 60:70] = True
    assert np.array_equal(red_mask(stored), expected)
    assert again.data["results"][0]["cached"] is True


# --- the request's rules, without the stack ---------------------------------------------------


def test_thresholds_are_rounded_as_the_diff_key_names_them() -> None:
    assert domain.diff_threshold(0.1000000004) == 0.1
    assert domain.diff_threshold(1) == 1.0 and domain.diff_threshold(0) == 0.0
    assert diff_key("a" * 64, "b" * 64, 0.1000000004, False) == diff_key(
        "a" * 64, "b" * 64, domain.diff_threshold(0.1000000004), False
    )
    for bad in (-0.01, 1.01, float("nan"), float("inf"), True, "0.1", None):
        with pytest.raises(InvalidRequest):
            domain.diff_threshold(bad)


@pytest.mark.parametrize("comparison_id", [None, "", True, 1.5, ["1"]])
def test_a_request_names_its_comparison(comparison_id) -> None:
    with pytest.raises(UnanswerableRequest):
        domain.read_comparison_request({"comparison_id": comparison_id, "pairs": []})
