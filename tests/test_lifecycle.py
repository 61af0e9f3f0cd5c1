"""Graceful life-cycle: a process sent SIGTERM stops taking work, finishes or hands back what
it holds within ``DARKROOM_SHUTDOWN_GRACE`` and exits 0.

The processing workers here are real ``python -m services.processing`` subprocesses on an
exchange and a database of their own (so the in-process stack's processing neither competes
for their jobs nor relays their outbox to its exchange), sharing the stack's blob folder.
A job is a ``comparison.requested`` of a pair of large JPEGs (a pixel diff at full size: a few
seconds of libvips work in one call), published straight to the exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from services.processing.consumers import COMPARISONS_CONSUMER
from shared.comparisons import COMPARISON_DIFFED
from tests import workers_support
from tests.conftest import free_port
from tests.images_support import big_jpeg
from tests.workers_support import Jobs, Process, start_worker, until

workers_env = workers_support.workers_env


async def test_a_worker_stopped_mid_job_hands_it_to_the_other_and_exits_0(stack, http, workers_env):
    # A short grace, so the job (seconds of libvips) is still running when it ends: a job that
    # finishes within the grace is finished by the worker being stopped, which is right too,
    # but not what this test is about.
    grace = 0.2
    first = await start_worker(http, workers_env, grace)
    second: Process | None = None
    try:
        async with Jobs.open(workers_env["DARKROOM_EXCHANGE"]) as jobs:
            event_id, key = await jobs.compare(
                stack, big_jpeg(5500, seed=1), big_jpeg(5500, seed=4)
            )
            # Taken by the only worker there is: nothing ready in the queue any more.
            await until(
                lambda: _is(jobs.ready(COMPARISONS_CONSUMER), 0),
                10,
                "the first worker to take the job",
            )
            second = await start_worker(http, workers_env, 20.0)
            pool = await asyncpg.connect(
                workers_env["DATABASE_URL"], server_settings={"search_path": "processing"}
            )
            # The database is this test's own: every pixel_diffs row is this job's.
            done_early = await pool.fetchval("SELECT count(*) FROM pixel_diffs")
            assert done_early == 0, "the job was over before the worker could be stopped mid-job"
            took = await first.terminate()
            # It hands the delivery back after the grace period, then waits only for the
            # libvips call already running in its thread (not interruptible) to return.
            assert first.popen.returncode == 0, first.stderr()
            # That call is several seconds of libvips on an idle machine, and up to twice that
            # when the machine is busy (measured 19-20 s beside another suite): bound it loosely.
            assert took < grace + 30, took
            answers = await jobs.answers_for(key, 30)
            # The relay publishes at least once; consumers absorb repeats by event id.
            computed = list(
                {a["id"]: a for a in answers if a["type"] == COMPARISON_DIFFED}.values()
            )
            assert len(computed) == 1, (answers, first.stderr()[-3000:], second.stderr()[-3000:])
            assert computed[0]["data"]["worker"].endswith(f":{second.pid}"), computed
            assert [r["error"] for r in computed[0]["data"]["results"]] == [None], computed
            rows = await pool.fetch("SELECT worker FROM pixel_diffs")
            assert [row["worker"] for row in rows] == [computed[0]["data"]["worker"]]
            applied = await pool.fetchval(
                "SELECT count(*) FROM processed_events WHERE consumer = $1 AND event_id = $2",
                COMPARISONS_CONSUMER,
                uuid.UUID(event_id),
            )
            assert applied == 1
            assert await jobs.ready(COMPARISONS_CONSUMER) == 0
            assert "consumer.abandoned" in first.stderr()
            await pool.close()
    finally:
        first.kill()
        if second is not None:
            took = await second.terminate()
            assert second.popen.returncode == 0, second.stderr()
            assert took < 10, took
            second.kill()


async def test_a_worker_stopped_mid_job_finishes_it_takes_no_more_and_exits_0(
    stack, http, workers_env
):
    worker = await start_worker(http, workers_env, 20.0)
    try:
        async with Jobs.open(workers_env["DARKROOM_EXCHANGE"]) as jobs:
            _event_id, key = await jobs.compare(
                stack, big_jpeg(5000, seed=2), big_jpeg(5000, seed=5)
            )
            await until(
                lambda: _is(jobs.ready(COMPARISONS_CONSUMER), 0), 10, "the worker to take the job"
            )
            await asyncio.sleep(0.5)
            stopping = asyncio.create_task(worker.terminate())
            await asyncio.sleep(0.5)
            # Published while it drains: no longer its to take.
            _later_id, later_key = await jobs.compare(
                stack, big_jpeg(64, seed=3), big_jpeg(64, seed=6)
            )
            took = await stopping
            assert worker.popen.returncode == 0, worker.stderr()
            assert took < 20, took
            answers = await jobs.answers_for(key, 3)
            # The relay publishes at least once; consumers absorb repeats by event id.
            computed = list(
                {a["id"]: a for a in answers if a["type"] == COMPARISON_DIFFED}.values()
            )
            assert len(computed) == 1, answers
            assert computed[0]["data"]["worker"].endswith(f":{worker.pid}")
            # Diffed, not answered with an error (an error is answered at once, never recorded).
            assert [r["error"] for r in computed[0]["data"]["results"]] == [None], computed
            assert await jobs.ready(COMPARISONS_CONSUMER) == 1
            assert await jobs.answers_for(later_key, 0.5) == []
    finally:
        worker.kill()


async def _is(value, expected) -> bool:
    return await value == expected


@contextlib.asynccontextmanager
async def slow_upstream(delay: float) -> AsyncIterator[tuple[str, asyncio.Event]]:
    """An HTTP server standing in for ingest that answers ``/f/...`` after ``delay`` s."""
    arrived = asyncio.Event()

    async def handler(_request: web.Request) -> web.Response:
        arrived.set()
        await asyncio.sleep(delay)
        return web.Response(text="slow but sure")

    app = web.Application()
    app.router.add_get("/f/{tail:.+}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", arrived
    finally:
        await runner.cleanup()


async def answering(http, port: int, process: Process, seconds: float = 30) -> None:
    """Wait until the process on ``port`` answers ``/healthz`` (failing with its stderr)."""
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                if r.status == 200:
                    return
        assert time.monotonic() < deadline, process.stderr()
        await asyncio.sleep(0.2)


async def test_a_gateway_stopped_mid_request_answers_it_and_refuses_new_ones(stack, http):
    async with slow_upstream(2.0) as (upstream, arrived):
        port = free_port()
        gateway = Process(
            "gateway",
            {**stack.env, "DARKROOM_PORT": str(port), "DARKROOM_INGEST_URL": upstream},
        )
        try:
            await answering(http, port, gateway)
            async with aiohttp.ClientSession() as other:
                in_flight = asyncio.create_task(other.get(f"http://127.0.0.1:{port}/f/abc.png"))
                await asyncio.wait_for(arrived.wait(), 10)
                stopping = asyncio.create_task(gateway.terminate())
                await asyncio.sleep(0.5)
                assert gateway.popen.poll() is None  # still answering the request in flight
                with pytest.raises(aiohttp.ClientConnectionError):
                    async with http.get(f"http://127.0.0.1:{port}/healthz"):
                        pass
                response = await in_flight
                assert response.status == 200
                assert await response.text() == "slow but sure"
                took = await stopping
            assert gateway.popen.returncode == 0, gateway.stderr()
            assert took < 10, took
        finally:
            gateway.kill()


async def test_a_gateway_process_keeps_its_header_limits(stack, http):
    """``python -m gateway`` builds its protocol handler with the gateway's own limits: an
    oversized header reaches the edge middleware (a JSON 431), not aiohttp's plain-text 400
    at its 8 KB default (run_app once silently dropped every custom handler argument)."""
    port = free_port()
    gateway = Process("gateway", {**stack.env, "DARKROOM_PORT": str(port)})
    try:
        await answering(http, port, gateway)
        huge = {"X-Padding": "x" * 20_000}
        async with http.get(f"http://127.0.0.1:{port}/user", headers=huge) as answer:
            assert answer.status == 431, await answer.text()
            assert (await answer.json())["error"]["code"] == "headers_too_large"
        assert "Failed to create request handler" not in gateway.stderr()
    finally:
        gateway.kill()
