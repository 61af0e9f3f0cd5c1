"""A bounded load test of all four dialects with a processing worker killed midway.

The platform runs in-process except processing, which runs as two ``python -m
services.processing`` workers (ingest lists both in ``DARKROOM_PROCESSING_URL``); halfway
through, one is killed with SIGKILL and restarted a few seconds later on the same port. Every
accepted upload must be served afterwards, and no answer may be a 5xx: a derivative call the
killed worker held is made again by the other.
``CHAOS_LOAD_SECONDS`` (default 60) bounds the run.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import time
import uuid

import aiohttp
import pytest

from bench.stats import percentile
from tests.clients_support import form, happo
from tests.conftest import free_port, start_platform
from tests.hautai_support import login
from tests.images_support import photo, random_png
from tests.progimage_support import b64
from tests.workers_support import Process, wait_healthy

SECONDS = float(os.environ.get("CHAOS_LOAD_SECONDS", "60"))
CONCURRENCY = 8
UNLIMITED = "1000000/1"


@pytest.fixture
def worker_ports() -> list[int]:
    """Where the two processing workers listen (the same port again after a restart)."""
    return [free_port(), free_port()]


@pytest.fixture
async def platform(exchange, secrets_env, tmp_path, inbox, worker_ports):
    """The platform, rate limits lifted (this measures capacity), processing left to worker
    processes."""
    limits = {
        f"DARKROOM_RATE_{kind}": UNLIMITED for kind in ("OAUTH", "API_KEY", "SESSION", "ANONYMOUS")
    }
    replicas = ",".join(f"http://127.0.0.1:{port}" for port in worker_ports)
    async for running in start_platform(
        f"{exchange}_{uuid.uuid4().hex[:8]}",
        secrets_env,
        tmp_path,
        inbox,
        without=("processing",),
        DARKROOM_PROCESSING_URL=replicas,
        **limits,
    ):
        yield running


async def _worker(http: aiohttp.ClientSession, env: dict[str, str], port: int) -> Process:
    worker = Process(
        "services.processing",
        {**env, "DARKROOM_PROCESSING_PORT": str(port), "DARKROOM_PROCESSING_WORKERS": "1"},
    )
    if not await wait_healthy(http, port, 30):
        worker.kill()
        pytest.fail(f"processing worker did not start: {worker.stderr()}")
    return worker


async def test_mixed_load_with_a_processing_worker_killed_midway(
    platform, worker_ports, resilience
):
    account = platform.create_account()
    # (started, dialect, status, seconds)
    outcomes: list[tuple[float, str, int, float]] = []
    accepted: dict[str, tuple[str, str]] = {}  # what → (url to read it back, sha256 or "")
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(), timeout=aiohttp.ClientTimeout(total=60)
    ) as http:
        workers = [await _worker(http, platform.env, port) for port in worker_ports]
        company = await login(http, platform, account)
        progimage = {"Authorization": f"Bearer {account['token']}"}

        async def hash_host() -> int:
            data = random_png(48, 32)
            async with http.post(f"{platform.url}/api/upload", data=form(data)) as r:
                body = await r.json(content_type=None)
            if r.status == 200:
                accepted[body["hash"]] = (f"{platform.url}/f/{body['hash']}", body["hash"])
            return r.status

        async def happo_api() -> int:
            data = random_png(40, 30)
            md5 = hashlib.md5(data).hexdigest()  # noqa: S324 - Happo names images by MD5
            url = f"{platform.url}/api/images/{md5}/upload-url"
            async with http.get(url, headers=happo(account)) as r:
                if r.status != 200:
                    return r.status
                upload = (await r.json())["uploadUrl"]
            body = aiohttp.FormData()
            body.add_field("file", data, filename="image.png", content_type="image/png")
            async with http.post(upload, data=body, headers=happo(account)) as r:
                if r.status == 200:
                    accepted[md5] = ((await r.json())["url"], hashlib.sha256(data).hexdigest())
                return r.status

        async def progimage_api() -> int:
            process = {"file": b64(photo(160, 100, seed=random.randrange(1 << 30)))}
            process["thumb_w"] = "40"
            async with http.post(
                f"{platform.url}/user/images", json={"process": process}, headers=progimage
            ) as r:
                body = await r.json(content_type=None)
                if r.status == 201:
                    accepted[body["data"]["id"]] = (body["data"]["file"]["thumb"]["url"], "")
                return r.status

        async def hautai_api() -> int:
            headers = {"Authorization": f"Bearer {company.token}"}
            async with http.get(company.url("/datasets/"), headers=headers) as r:
                await r.read()
                return r.status

        dialects = {
            "hash host": hash_host,
            "happo": happo_api,
            "progimage": progimage_api,
            "haut.ai": hautai_api,
        }
        stop = time.monotonic() + SECONDS

        async def client(n: int) -> None:
            names = list(dialects)
            while time.monotonic() < stop:
                name = names[n % len(names)]
                n += 1
                started = time.monotonic()
                try:
                    status = await dialects[name]()
                except aiohttp.ClientError:
                    status = 599  # the connection itself failed: counted with the 5xx
                outcomes.append((started, name, status, time.monotonic() - started))

        clients = [asyncio.create_task(client(n)) for n in range(CONCURRENCY)]
        try:
            await asyncio.sleep(SECONDS / 2)
            killed_at = time.monotonic()
            workers[0].popen.kill()
            workers[0].popen.wait()
            await asyncio.sleep(3)
            workers[0] = await _worker(http, platform.env, worker_ports[0])
            await asyncio.gather(*clients)
            # Every accepted upload is there (a thumbnail may still be on its way: wait for it).
            lost = []
            for what, (url, sha256) in accepted.items():
                deadline = time.monotonic() + 30
                while True:
                    async with http.get(url) as r:
                        data = await r.read()
                    if r.status == 200 or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.2)
                if r.status != 200 or (sha256 and hashlib.sha256(data).hexdigest() != sha256):
                    lost.append((what, url, r.status))
        finally:
            for task in clients:
                task.cancel()
            for worker in workers:
                worker.kill()
    latencies = [o[3] for o in outcomes]
    errors = [o for o in outcomes if o[2] >= 500]
    by_dialect = {name: sum(o[1] == name for o in outcomes) for name in dialects}
    p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
    resilience.row(
        "load",
        f"{SECONDS:.0f} s mixed load, a processing worker killed midway",
        injected=f"{CONCURRENCY} clients over the four dialects ({by_dialect}); SIGKILL of one "
        f"of two processing workers at {SECONDS / 2:.0f} s, restarted 3 s later",
        observed=f"{len(outcomes) / SECONDS:.1f} req/s, p50 {p50:.0f} ms, p99 {p99:.0f} ms; "
        f"{len(accepted) - len(lost)}/{len(accepted)} accepted uploads served afterwards; "
        f"5xx at {[round(o[0] - killed_at, 1) for o in errors][:10]} s from the kill",
        accepted=len(accepted),
        effects=len(accepted) - len(lost),
        duplicates=0,
        errors_5xx=len(errors),
    )
    assert all(count > 0 for count in by_dialect.values()), by_dialect
    assert not lost, lost[:10]
    assert not errors, errors[:10]
    unexpected = [o for o in outcomes if o[2] not in {200, 201}]
    assert not unexpected, unexpected[:10]
