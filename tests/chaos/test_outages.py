"""Outages of the servers everything depends on, while work keeps arriving.

The broker is cut two ways: through a TCP proxy between one worker and RabbitMQ (the network
fails, the server lives), and with ``rabbitmqctl stop_app`` (the server itself goes away, for
every client on the machine; ``start_app`` runs in ``finally``). PostgreSQL is cut through a
proxy in front of a second, in-process platform, never stopped (other runs share it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import pytest

from services.ingest.blobs import OrphanSweeper
from shared.analysis import ANALYSIS_COMPLETED
from shared.runtime import POOL, STORE
from shared.store_keys import blob_key
from tests.chaos.jobs_support import JOBS, _answers, _effects, _zero
from tests.clients_support import form
from tests.conftest import AMQP_URL, PG_ADMIN, start_platform
from tests.images_support import big_jpeg, random_png
from tests.tcp_proxy import TcpProxy
from tests.workers_support import Jobs, answer_key, start_worker, until

OUTAGE = 10.0


async def _jobs_through_an_outage(
    stack, jobs: Jobs, outage: contextlib.AbstractAsyncContextManager
):
    """Publish ``2 * JOBS`` jobs over ~8 s with the outage starting after the first third."""
    requested: list[tuple[str, str]] = []
    for n in range(JOBS):
        requested.append(await jobs.request(stack, big_jpeg(600, seed=200 + n)))
        await asyncio.sleep(0.3)
    async with outage:
        pass
    for n in range(JOBS, 2 * JOBS):
        requested.append(await jobs.request(stack, big_jpeg(600, seed=200 + n)))
        await asyncio.sleep(0.3)
    return requested


def _tally(answers: list[dict], keys: set[str], effects: dict[str, int]) -> tuple[int, int]:
    """(distinct computed events, duplicate effects) over ``keys``."""
    computed = {(answer_key(a), a["id"]) for a in answers if a["type"] == ANALYSIS_COMPLETED}
    assert {key for key, _id in computed} == keys, keys - {k for k, _ in computed}
    return len(computed), sum(n - 1 for n in effects.values())


async def test_a_broker_connection_cut_for_ten_seconds_loses_nothing(
    stack, http, workers_env, resilience
):
    target = urlsplit(AMQP_URL)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5672)
    await proxy.start()
    env = {**workers_env, "AMQP_URL": proxy.url_for(AMQP_URL, reconnect_interval="0.5")}
    worker = await start_worker(http, env, 20.0)

    @contextlib.asynccontextmanager
    async def cut() -> AsyncIterator[None]:
        connections = proxy.connections
        proxy.cut()
        await asyncio.sleep(OUTAGE)
        proxy.restore()
        yield
        cut.reconnected = connections  # type: ignore[attr-defined]

    try:
        async with Jobs.open(workers_env["DARKROOM_EXCHANGE"]) as jobs:
            requested = await _jobs_through_an_outage(stack, jobs, cut())
            keys = {key for _id, key in requested}
            answers = await _answers(jobs, keys, 120)
            effects = await _effects(workers_env, keys)
            copies = sum(a["type"] == ANALYSIS_COMPLETED for a in answers)
            distinct, duplicates = _tally(answers, keys, effects)
            resilience.row(
                "faults",
                "broker connection cut for 10 s (TCP proxy)",
                injected=f"{len(keys)} jobs published around a 10 s cut of the worker's "
                "broker connection (consumer and outbox relay both through the proxy)",
                observed=f"the worker reconnected by itself ({proxy.connections} broker "
                f"connections through the proxy); {distinct} results, {copies} copies "
                "published (repeats carry the same event id)",
                accepted=len(keys),
                effects=sum(effects.values()),
                duplicates=duplicates,
            )
            assert effects == {key: 1 for key in keys}, worker.stderr()[-3000:]
            assert distinct == len(keys)
            assert worker.popen.poll() is None, worker.stderr()[-3000:]
            await until(lambda: _zero(jobs.ready()), 10, "the queue to drain")
    finally:
        worker.kill()
        await proxy.stop()


@contextlib.asynccontextmanager
async def _rabbitmq_stopped() -> AsyncIterator[float]:
    """``rabbitmqctl stop_app`` for :data:`OUTAGE` seconds; ``start_app`` whatever happens."""
    started = time.monotonic()
    await asyncio.to_thread(
        subprocess.run, ["rabbitmqctl", "-q", "stop_app"], check=True, timeout=60
    )
    try:
        await asyncio.sleep(OUTAGE)
    finally:
        await asyncio.to_thread(
            subprocess.run, ["rabbitmqctl", "-q", "start_app"], check=True, timeout=120
        )
        await asyncio.to_thread(
            subprocess.run,
            ["rabbitmqctl", "-q", "await_startup", "--timeout", "60"],
            check=False,
            timeout=90,
        )
    yield time.monotonic() - started


async def test_rabbitmq_stopped_and_started_loses_nothing(stack, http, workers_env, resilience):
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not on PATH: the broker here is not this machine's")
    env = {**workers_env, "AMQP_URL": f"{AMQP_URL.rstrip('/')}/?reconnect_interval=0.5"}
    worker = await start_worker(http, env, 20.0)
    try:
        async with Jobs.open(workers_env["DARKROOM_EXCHANGE"]) as jobs:
            before = [await jobs.request(stack, big_jpeg(600, seed=300 + n)) for n in range(JOBS)]
            async with _rabbitmq_stopped() as _:
                pass
            # The test's own publisher reconnects too (robust connection) before publishing.
            after = []
            deadline = time.monotonic() + 30
            while len(after) < JOBS:
                try:
                    after.append(await jobs.request(stack, big_jpeg(600, seed=400 + len(after))))
                except Exception:
                    assert time.monotonic() < deadline, "the test's publisher never reconnected"
                    await asyncio.sleep(0.5)
            keys = {key for _id, key in before + after}

            async def all_done() -> bool:
                return set(await _effects(workers_env, keys)) == keys

            # The test's own answer queue is exclusive, so it vanished with the broker's stop:
            # the database (each job's row) is the record here, not the events heard.
            await until(all_done, 120, "every job's analysis row")
            effects = await _effects(workers_env, keys)
            distinct = len(effects)
            duplicates = sum(n - 1 for n in effects.values())
            resilience.row(
                "faults",
                "RabbitMQ stopped for 10 s (rabbitmqctl stop_app / start_app)",
                injected=f"{JOBS} jobs queued, the broker application stopped for 10 s and "
                f"started again, {JOBS} more jobs",
                observed=f"the worker reconnected by itself and finished all {distinct} jobs; "
                "durable quorum queues kept the queued ones",
                accepted=len(keys),
                effects=sum(effects.values()),
                duplicates=duplicates,
            )
            assert effects == {key: 1 for key in keys}, worker.stderr()[-3000:]
            assert worker.popen.poll() is None, worker.stderr()[-3000:]
    finally:
        worker.kill()


@pytest.fixture
async def platform_behind_a_db_proxy(exchange, secrets_env, tmp_path, inbox):
    """A second platform whose every PostgreSQL connection goes through a proxy."""
    target = urlsplit(PG_ADMIN)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    try:
        async for running in start_platform(
            f"{exchange}_{uuid.uuid4().hex[:8]}",
            secrets_env,
            tmp_path,
            inbox,
            via=proxy,
            DARKROOM_RATE_ANONYMOUS="1000000/1",
            DARKROOM_DB_TIMEOUT=str(DB_TIMEOUT),
        ):
            yield running, proxy
            proxy.restore()
    finally:
        await proxy.stop()


#: How the database goes away: (name, what the proxy does, the slowest 503 allowed in seconds).
#: A cut (reset, refused) is noticed at once; a stall (packets dropped) only by the database
#: timeout (DARKROOM_DB_TIMEOUT, 2 s here): a statement times out, then giving its connection
#: back does, so an answer may take twice that, but no longer.
DB_TIMEOUT = 2.0
HOW = {
    "cut": ("connections reset", "cut and refused", 3.0),
    "stall": ("packets dropped", "stalled, nothing forwarded either way", 2 * DB_TIMEOUT + 1.5),
}


@pytest.mark.parametrize("how", sorted(HOW))
async def test_postgres_unreachable_answers_503_quickly_and_the_pools_recover(
    platform_behind_a_db_proxy, resilience, how
):
    platform, proxy = platform_behind_a_db_proxy
    # The operator CLI reaches the database directly, as an operator's shell would.
    direct = platform.env["DATABASE_URL"].replace(
        f":{proxy.port}/", f":{urlsplit(PG_ADMIN).port or 5432}/"
    )
    account = dataclasses.replace(
        platform, env={**platform.env, "DATABASE_URL": direct}
    ).create_account()
    headers = {"Authorization": f"Bearer {account['token']}"}
    outcomes: list[tuple[float, int, float, str, str | None]] = []  # (at, status, took, code, RA)
    uploaded: dict[str, bytes] = {}
    refused: set[str] = set()
    window: list[float] = []

    async def one(http: aiohttp.ClientSession, n: int) -> None:
        data = random_png()
        started = time.monotonic()
        async with http.post(f"{platform.url}/api/upload", data=form(data)) as response:
            body = await response.json(content_type=None)
        took = time.monotonic() - started
        code = body.get("error", {}).get("code", "") if isinstance(body, dict) else ""
        if not isinstance(code, str):
            code = str(code)
        outcomes.append((started, response.status, took, code, response.headers.get("Retry-After")))
        if response.status == 200:
            uploaded[body["hash"]] = data
        elif response.status == 503:
            refused.add(hashlib.sha256(data).hexdigest())
        started = time.monotonic()
        async with http.get(f"{platform.url}/user", headers=headers) as response:
            body = await response.json(content_type=None)
        code = body.get("error", {}).get("code", "") if isinstance(body, dict) else ""
        outcomes.append(
            (
                started,
                response.status,
                time.monotonic() - started,
                str(code),
                response.headers.get("Retry-After"),
            )
        )

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        stop = time.monotonic() + 3 * OUTAGE

        async def load() -> None:
            n = 0
            while time.monotonic() < stop:
                await one(http, n)
                n += 1
                await asyncio.sleep(0.25)

        # Several clients, so that requests keep starting while others wait on the database.
        loader = asyncio.gather(*(load() for _ in range(4)))
        await asyncio.sleep(OUTAGE)
        window.append(time.monotonic())
        getattr(proxy, how)()
        await asyncio.sleep(OUTAGE)
        proxy.restore()
        window.append(time.monotonic())
        await loader
        # Every upload that was answered 200 is there, once, served by its hash.
        served, unserved = 0, []
        for sha256 in uploaded:
            while True:
                async with http.get(f"{platform.url}/f/{sha256}") as response:
                    body = await response.read()
                # As a polite client would: the read rate limit says when to come back.
                if response.status != 429:
                    break
                await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
            if response.status == 200 and hashlib.sha256(body).hexdigest() == sha256:
                served += 1
            else:
                unserved.append((sha256[:12], response.status, body[:200]))
    # An upload whose commit failed wrote its bytes first: orphans, which the sweeper removes
    # (with no grace here) while every accepted upload keeps its bytes.
    store = platform.apps["ingest"][STORE]
    orphaned = {sha for sha in refused if await store.exists(blob_key(sha))} - set(uploaded)
    sweeper = OrphanSweeper(platform.apps["ingest"][POOL], store, grace_seconds=0)
    # An upload its client gave up on during the stall may still be finishing on the server
    # (writing its bytes, or failing its commit after the restore): sweep again until the
    # platform has settled, for up to 10 s.
    # (Finished after all, it has its blob row: bytes with a record are no orphan.)
    swept = 0
    settle_by = time.monotonic() + 10
    while True:
        swept += await sweeper.sweep_once()
        recorded = set(
            await platform.apps["ingest"][POOL].fetchval(
                "SELECT coalesce(array_agg(sha256), '{}') FROM blobs WHERE sha256 = ANY($1)",
                list(orphaned),
            )
        )
        orphans_left = [sha for sha in orphaned - recorded if await store.exists(blob_key(sha))]
        if not orphans_left or time.monotonic() > settle_by:
            break
        await asyncio.sleep(0.5)
    kept = [sha for sha in uploaded if await store.exists(blob_key(sha))]
    cut_at, restored_at = window
    # Answered while the database was away (one that began then but was answered after the
    # restore may well succeed: it waited, within the timeout, for the database to return).
    began = [o for o in outcomes if cut_at + 0.5 < o[0] < restored_at - 0.5]
    during = [o for o in began if o[0] + o[2] < restored_at]
    # Answered before the cut, or begun well after the restore: nothing excuses a 5xx there.
    outside = [o for o in outcomes if o[0] + o[2] < cut_at or o[0] > restored_at + 5]
    unavailable = [o for o in during if o[1] == 503]
    recovered = min((o[0] for o in outcomes if o[0] > restored_at and o[1] == 200), default=None)
    slowest = max((o[2] for o in began), default=0.0)
    resilience.row(
        "faults",
        f"PostgreSQL unreachable for 10 s ({HOW[how][0]})",
        injected="uploads and GET /user in a loop; every database connection of a whole "
        f"platform {HOW[how][1]} for 10 s",
        observed=f"{len(unavailable)}/{len(during)} answers in the window were 503 "
        f"`unavailable` with Retry-After, the slowest in {slowest:.2f} s; first 200 "
        f"{(recovered - restored_at) if recovered else float('nan'):.2f} s after the restore, "
        f"no restart; {served}/{len(uploaded)} accepted uploads served; {len(orphaned)} "
        f"orphan blobs left by failed commits, {len(orphans_left)} after a sweep",
        accepted=len(uploaded),
        effects=served,
        duplicates=0,
        errors_5xx=sum(o[1] >= 500 for o in outside),
    )
    assert during and all(o[1] == 503 for o in during), " ".join(
        f"{o[0] - cut_at:.1f}:{o[1]}:{o[2]:.1f}" for o in outcomes if o[0] > cut_at - 1
    )
    assert all(o[4] for o in unavailable), "every 503 carries Retry-After"
    assert all(o[3] in {"", "unavailable"} for o in unavailable)
    assert slowest < HOW[how][2]
    assert recovered is not None and recovered - restored_at < 5.0
    assert not [o for o in outside if o[1] >= 500]
    assert served == len(uploaded) > 0, unserved
    assert orphans_left == [] and swept >= len(orphaned - recorded)
    assert len(kept) == len(uploaded)
