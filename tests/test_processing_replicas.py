"""Processing replicas behind ingest's derivative client: a second processing *process* listed
beside the test stack's takes its share of the calls, and a replica that dies is replaced by the
other without the caller noticing; with none left, the caller gets a 503 at once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from services.ingest.derivations import DerivativeRequest, Derivatives, ProcessingTimedOut
from shared import errors
from shared.derivatives import Transform
from shared.runtime import INTERNAL, POOL, STORE
from tests.conftest import ROOT, free_port
from tests.images_support import photo
from tests.workers_support import store_original, wait_healthy


def start_replica(stack, port: int) -> subprocess.Popen:
    env = {**os.environ, **stack.env, "DARKROOM_PROCESSING_PORT": str(port)}
    return subprocess.Popen(
        [sys.executable, "-m", "services.processing"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def stop(replica: subprocess.Popen) -> None:
    replica.send_signal(signal.SIGTERM)
    try:
        replica.wait(timeout=20)
    except subprocess.TimeoutExpired:
        replica.kill()
        replica.wait()


def client(stack, replicas: list[str]) -> Derivatives:
    """Ingest's derivative client, over ``replicas`` instead of the stack's one."""
    return Derivatives(stack.apps["ingest"][INTERNAL], replicas, stack.apps["ingest"][STORE])


async def originals(
    stack, count: int, seed: int, size: tuple[int, int] = (480, 360), transform=None
) -> list[DerivativeRequest]:
    """``count`` new originals in the store, each asked through ``transform`` (default a
    120 px thumbnail)."""
    wanted = []
    for n in range(count):
        stored = await store_original(stack, photo(*size, ".jpg", seed=seed + n))
        wanted.append(
            DerivativeRequest(stored["sha256"], "image/jpeg", transform or Transform(thumb_w=120))
        )
    return wanted


async def test_two_processing_processes_share_the_calls(stack, http):
    port = free_port()
    replica = start_replica(stack, port)
    try:
        assert await wait_healthy(http, port, 30), "the second processing process did not start"
        both = client(stack, [stack.service_urls["processing"], f"http://127.0.0.1:{port}"])
        wanted = await originals(stack, 20, seed=1000)
        outcomes = await both.obtain(wanted, timeout=60)
        assert all(outcome.ok and outcome.data for outcome in outcomes.values())
        rows = await stack.apps["processing"][POOL].fetch(
            "SELECT worker FROM derivatives WHERE key = ANY($1::text[])", list(outcomes)
        )
    finally:
        stop(replica)
    assert len(rows) == 20  # each derivative made once
    by_worker = Counter(row["worker"] for row in rows)
    assert len(by_worker) == 2, by_worker
    assert min(by_worker.values()) >= 4, by_worker
    assert any(worker.endswith(f":{replica.pid}") for worker in by_worker), by_worker
    assert replica.returncode == 0, replica.stderr.read().decode() if replica.stderr else ""


async def test_a_replica_killed_mid_call_is_replaced_by_the_other(stack, http):
    port = free_port()
    replica = start_replica(stack, port)
    try:
        assert await wait_healthy(http, port, 30), "the second processing process did not start"
        # The dead-to-be replica first in the list, so the first calls go to it.
        both = client(stack, [f"http://127.0.0.1:{port}", stack.service_urls["processing"]])
        # Full-size work (a few hundred ms each), so the kill lands while calls are in flight.
        wanted = await originals(
            stack, 6, seed=2000, size=(2400, 1800), transform=Transform(rotation=90)
        )
        calls = asyncio.ensure_future(both.obtain(wanted, timeout=60))
        await asyncio.sleep(0.3)
        replica.kill()
        outcomes = await calls
    finally:
        replica.kill()
        replica.wait()
    assert sorted(outcomes) == sorted(request.key for request in wanted)
    assert all(outcome.ok and outcome.data for outcome in outcomes.values())
    for request in wanted:
        assert await stack.apps["ingest"][STORE].read(request.key) == outcomes[request.key].data
    rows = await stack.apps["processing"][POOL].fetch(
        "SELECT worker FROM derivatives WHERE key = ANY($1::text[])", list(outcomes)
    )
    assert len(rows) == 6  # each recorded once, by whichever replica finished it
    assert any(not row["worker"].endswith(f":{replica.pid}") for row in rows)


async def test_with_no_replica_answering_the_caller_gets_a_503_at_once(stack):
    nobody = client(stack, [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"])
    [wanted] = await originals(stack, 1, seed=3000)
    started = time.monotonic()
    with pytest.raises(errors.Unavailable) as raised:
        await nobody.obtain([wanted], timeout=60)
    assert time.monotonic() - started < 5
    assert raised.value.status == 503 and raised.value.retry_after == 5
    assert not await stack.apps["ingest"][STORE].exists(wanted.key)


async def test_a_replica_that_holds_calls_unanswered_is_set_aside(stack):
    """A replica whose host is gone answers nothing: the call that finds it out costs its
    caller's deadline, and then the replica is set aside, so the calls after it go to the one
    that answers instead of every other one waiting out its deadline there."""
    from aiohttp import web

    held: list[float] = []

    async def never_answers(request: web.Request) -> web.Response:
        held.append(time.monotonic())
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    app = web.Application()
    app.router.add_post("/{tail:.*}", never_answers)
    runner = web.AppRunner(app, shutdown_timeout=0.5)  # its handlers never end by themselves
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        silent = f"http://127.0.0.1:{port}"
        both = client(stack, [silent, stack.service_urls["processing"]])
        wanted = await originals(stack, 8, seed=3000)
        answered, timed_out = 0, 0
        for request in wanted:  # one caller after another, each with a 6 s deadline
            try:
                outcome = (await both.obtain([request], timeout=6))[request.key]
            except ProcessingTimedOut:
                timed_out += 1
                continue
            assert outcome.ok and outcome.data
            answered += 1
    finally:
        await both.close()
        await runner.cleanup()
    # The first call may find the silent replica (calls are taken in turn): it waits out its
    # deadline, and the replica is set aside; it is probed on /readyz (which it does not
    # answer as ready), never with a caller's request again.
    assert len(held) <= 1, held
    assert timed_out == len(held) and answered == 8 - timed_out
