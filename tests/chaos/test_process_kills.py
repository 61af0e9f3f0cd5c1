"""A processing worker killed with SIGKILL at the worst moments, with jobs queued behind it.

The killed worker arms one fault point (``DARKROOM_FAULTS``, see shared/faults.py), so the kill
lands exactly where it hurts most; a second, clean worker must finish every job, and each job's
effect — its ``analyses`` row, its stored aux images, its ``analysis.completed`` event — must
exist exactly once. A job is an ``analysis.requested`` of an original of its own.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import pytest

from shared.analysis import ANALYSIS_COMPLETED
from shared.events import Broker, Envelope, EventConsumer, Subscription
from shared.runtime import STORE
from tests.chaos.jobs_support import JOBS, _answers, _effects, _stored, _zero
from tests.conftest import AMQP_URL
from tests.images_support import big_jpeg
from tests.workers_support import Jobs, Process, answer_key, start_worker, until


async def _exited(process: Process, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while process.popen.poll() is None:
        assert time.monotonic() < deadline, "the armed worker never reached its fault point"
        await asyncio.sleep(0.05)
    return process.popen.returncode


@pytest.mark.parametrize(
    "point",
    ["consumer.before_commit", "consumer.after_commit"],
)
async def test_a_worker_killed_around_its_commit_loses_and_repeats_nothing(
    stack, http, workers_env, resilience, point
):
    armed = await start_worker(http, {**workers_env, "DARKROOM_FAULTS": point}, 20.0)
    survivor: Process | None = None
    try:
        async with Jobs.open(workers_env["DARKROOM_EXCHANGE"]) as jobs:
            requested = [await jobs.request(stack, big_jpeg(900, seed=n)) for n in range(JOBS)]
            keys = {key for _id, key in requested}
            code = await _exited(armed, 60)
            survivor = await start_worker(http, workers_env, 20.0)
            answers = await _answers(jobs, keys, 90)
            computed = {
                (answer_key(a), a["id"]) for a in answers if a["type"] == ANALYSIS_COMPLETED
            }
            effects = await _effects(workers_env, keys)
            stored = await _stored(stack.apps["processing"][STORE], keys)
            duplicates_absorbed = survivor.stderr().count("event.duplicate")
            resilience.row(
                "faults",
                f"kill -9 processing at {point}",
                injected=f"{JOBS} analysis jobs queued; the worker holding one kills itself "
                f"with SIGKILL at `{point}`; a clean worker starts",
                observed=f"killed (exit {code}); every job's analysis exists once; "
                f"{stored}/{JOBS} jobs' aux images stored; redeliveries absorbed by event id: "
                f"{duplicates_absorbed}",
                accepted=JOBS,
                effects=sum(effects.values()),
                duplicates=sum(n - 1 for n in effects.values()) + len(computed) - len(keys),
            )
            assert code == -9, armed.stderr()[-2000:]
            assert effects == {key: 1 for key in keys}, (effects, survivor.stderr()[-3000:])
            assert {key for key, _id in computed} == keys
            assert len(computed) == JOBS, computed
            assert stored == JOBS
            if point == "consumer.after_commit":
                # Its commit stood: the redelivered copy found the event id and did nothing.
                assert duplicates_absorbed >= 1, survivor.stderr()[-3000:]
            await until(lambda: _zero(jobs.ready()), 10, "the queue to drain")
    finally:
        armed.kill()
        if survivor is not None:
            survivor.kill()


async def test_the_relay_killed_after_the_confirm_publishes_twice_and_consumers_absorb_it(
    stack, http, workers_env, resilience
):
    """The outbox row is published, confirmed, and the process dies before marking it: the
    next relay publishes it again, and a consumer's inbox absorbs the second copy."""
    consumer_name = f"chaos.listener_{uuid.uuid4().hex[:6]}"
    effects: list[str] = []
    broker = await Broker.connect(AMQP_URL, workers_env["DARKROOM_EXCHANGE"])
    pool = await asyncpg.create_pool(
        workers_env["DATABASE_URL"], server_settings={"search_path": "processing"}
    )

    async def handler(_conn: asyncpg.Connection, envelope: Envelope) -> None:
        effects.append(envelope.id)

    armed = await start_worker(
        http, {**workers_env, "DARKROOM_FAULTS": "relay.after_confirm"}, 20.0
    )
    listener = EventConsumer(
        broker, pool, Subscription(consumer_name, (ANALYSIS_COMPLETED,), handler)
    )
    await listener.start()
    survivor: Process | None = None
    try:
        async with Jobs.open(workers_env["DARKROOM_EXCHANGE"]) as jobs:
            _id, key = await jobs.request(stack, big_jpeg(300, seed=99))
            code = await _exited(armed, 60)
            survivor = await start_worker(http, workers_env, 20.0)
            answers = await _answers(jobs, {key}, 30)
            copies = [a["id"] for a in answers if a["type"] == ANALYSIS_COMPLETED]
            await until(lambda: _drained(listener, effects), 10, "the listener to drain")
            resilience.row(
                "faults",
                "kill -9 the outbox relay after the broker's confirm",
                injected="an analysis job; the worker kills itself with SIGKILL after the "
                "confirm of `analysis.completed` and before marking its outbox row",
                observed=f"killed (exit {code}); the next relay published the row again "
                f"({len(copies)} copies of one event id); a consumer applied it "
                f"{len(effects)} time(s)",
                accepted=1,
                effects=len(effects),
                duplicates=len(effects) - 1,
            )
            assert code == -9, armed.stderr()[-2000:]
            assert len(copies) == 2 and len(set(copies)) == 1, answers
            assert effects == copies[:1]
    finally:
        await listener.stop()
        await pool.close()
        await broker.close()
        armed.kill()
        if survivor is not None:
            survivor.kill()


async def _drained(listener: EventConsumer, effects: list[str]) -> bool:
    depths = await listener.depths()
    return bool(effects) and not any(depths.values())
