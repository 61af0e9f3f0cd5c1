"""The platform spread over eight network hosts, driven through both of its gateways.

Each process (two gateways, auth, ingest, two processing replicas, reports, rendering) runs in
a network namespace of its own with its own address on one bridge; they reach each other by
those addresses and the servers (PostgreSQL, RabbitMQ, Redis, S3, SMTP) through forwarders on
the bridge, never by loopback (tests/multihost_support.py). Rendering runs but renders nothing
(no flow here asks it to). Skipped where network namespaces cannot be made.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import SimpleNamespace

import aiohttp
import pytest

from shared.derivatives import DERIVATIVES_PATH
from tests.clients_support import bearer, form
from tests.hautai_support import Company, analysed, compute, login, new_subject, put, signed_upload
from tests.hautai_support import photo as face_photo
from tests.images_support import photo
from tests.metrics_support import scrape, value
from tests.multihost_support import (
    HOSTS,
    MultiHost,
    Network,
    leftovers,
    multihost_platform,
    netns_refusal,
    readyz,
)
from tests.progimage_support import b64
from tests.reports_support import compare, jwt_auth, post_report, screenshot, sha, snap
from tests.reports_support import upload as happo_upload

REFUSAL = netns_refusal()
pytestmark = pytest.mark.skipif(REFUSAL is not None, reason=f"multi-host test: {REFUSAL}")

CONCURRENCY = 6
BEFORE_CUT, DURING_CUT, AFTER_RESTORE = 6.0, 35.0, 6.0
ATTEMPTS = 6  # a client's tries of one upload (503 and lost connections are retried)
#: What a client pays for a call in flight on the host when it is unplugged: the host drops
#: packets without a reset, so ingest learns of it only when the call outlasts
#: DARKROOM_PROCESSING_TIMEOUT_SECONDS (10 s here) and answers 503 with Retry-After. Ingest
#: then sets the replica aside (probing its /readyz in the background), so no later call
#: lands there: at most one such wait per client, all within this long of the cut.
PROCESSING_TIMEOUT = 10.0


@pytest.fixture(scope="module")
async def multihost(secrets_env, inbox, tmp_path_factory) -> AsyncIterator[MultiHost]:
    async with multihost_platform(
        secrets_env, inbox.port, tmp_path_factory.mktemp("multihost")
    ) as platform:
        yield platform
    assert leftovers() == ([], []), "the multi-host test left namespaces or links behind"


@pytest.fixture(scope="module")
async def mh_account(multihost: MultiHost) -> dict:
    return await asyncio.to_thread(multihost.create_account)


@pytest.fixture
async def mh_http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(), timeout=aiohttp.ClientTimeout(total=60)
    ) as session:
        yield session


async def _gateway_requests(http, platform: MultiHost) -> list[float]:
    return [
        value(await scrape(http, url), "darkroom_http_requests_total") for url in platform.gateways
    ]


async def _derivatives_made(http, platform: MultiHost) -> dict[str, float]:
    """Derivative calls each processing replica answered 200, from its own /metrics."""
    made = {}
    for host in HOSTS:
        if host.service == "processing":
            samples = await scrape(http, host.url)
            made[host.name] = value(
                samples, "darkroom_http_requests_total", route=DERIVATIVES_PATH, status="200"
            )
    return made


async def test_every_dialect_through_both_gateways_across_hosts(
    multihost, mh_account, mh_http, resilience
):
    http, account = mh_http, mh_account
    gw1, gw2 = (SimpleNamespace(url=url, env=multihost.env) for url in multihost.gateways)
    before = await _gateway_requests(http, multihost)
    started = time.monotonic()

    # Hash host: upload through one gateway, fetch by hash through the other.
    data = photo(96, 64, seed=random.randrange(1 << 30))
    async with http.post(
        f"{gw1.url}/api/upload", data=form(data), headers=bearer(account["token"])
    ) as r:
        assert r.status == 200, await r.text()
        file_hash = (await r.json())["hash"]
    async with http.get(f"{gw2.url}/f/{file_hash}.png") as r:
        assert r.status == 200 and await r.read() == data

    # Progimage: upload and process through one, derive on request through the other.
    body = {
        "process": {"file": b64(photo(160, 100, seed=random.randrange(1 << 30))), "thumb_w": "40"}
    }
    async with http.post(
        f"{gw2.url}/user/images", json=body, headers=bearer(account["token"])
    ) as r:
        assert r.status == 201, await r.text()
        image = (await r.json())["data"]
    async with http.get(image["file"]["thumb"]["url"], headers=bearer(account["token"])) as r:
        assert r.status == 200, await r.text()
    derived = f"{gw1.url}/user/images/{image['id']}/derived?thumb_w=30&format=png"
    async with http.get(derived, headers=bearer(account["token"])) as r:
        assert r.status == 200 and r.content_type == "image/png", await r.text()

    # Haut.ai-style: company → dataset → subject → signed upload → compute → analysis.
    company = await login(http, gw1, account)
    other_side = Company(gw2, company.token, company.id, company.user_id)
    _dataset, subject = await new_subject(http, other_side, meta={"hosts": 8})
    front = await signed_upload(http, company, subject)
    await put(http, front["upload_url"], face_photo())
    assert await compute(http, company, front["image_batch_id"]) == {"ok": True}
    analyses = await analysed(http, company, [front["id"]])
    assert analyses[front["id"]]["status"] == "done", analyses

    # Happo: upload-url + upload, a report per sha through each gateway, compare.
    plain = await happo_upload(http, gw2, account, screenshot(64, 48))
    changed = await happo_upload(http, gw2, account, screenshot(64, 48, patch=(8, 8, 16, 16)))
    first, second = sha(), sha()
    await post_report(http, gw1, account, first, [snap(plain, "Button")])
    await post_report(http, gw2, account, second, [snap(changed, "Button")])
    result = await compare(http, gw1.url, jwt_auth(account), first, second)
    assert len(result["diffs"]) == 1 and result["equal"] is False, result

    seconds = time.monotonic() - started
    after = await _gateway_requests(http, multihost)
    through = [round(a - b) for a, b in zip(after, before, strict=True)]
    resilience.row(
        "multi-host",
        "every dialect's main flow across 8 hosts, through both gateways",
        injected="two gateways, auth, ingest, two processing replicas, reports, rendering, each "
        "in a network namespace with its own address; servers reached through forwarders on "
        "the bridge; hash host, Progimage, Haut.ai and Happo flows alternating gateways",
        observed=f"all four flows complete in {seconds:.1f} s; requests per gateway {through}; "
        "Haut.ai analysis done, Happo compare found its 1 diff",
        accepted=4,
        effects=4,
        errors_5xx=0,
    )
    assert all(count > 0 for count in through), through


@dataclass
class Attempt:
    """One request a client sent: when (monotonic), how long, what came back."""

    sent: float
    seconds: float
    status: int  # 599: the connection failed, counted with the 5xx
    retry_after: str | None


class ProgimageLoad:
    """Clients uploading photos (three derivatives each) through both gateways in turn, each
    retrying a 5xx or a lost connection as a real client does, after ``Retry-After``."""

    def __init__(self, http: aiohttp.ClientSession, gateways: list[str], token: str) -> None:
        self.http = http
        self.gateways = gateways
        self.headers = bearer(token)
        self.attempts: list[Attempt] = []
        #: sha256 of each photo a client started uploading → the id it was stored as (None:
        #: not accepted after every try).
        self.uploads: dict[str, str | None] = {}
        self.thumbs: dict[str, str] = {}
        self.tries: Counter[str] = Counter()
        #: Each photo's answers in order: (status, Retry-After, seconds), for a failure's story.
        self.history: dict[str, list[tuple[int, str | None, float]]] = {}

    async def upload(self, n: int) -> None:
        data = photo(160, 100, seed=random.randrange(1 << 30))
        sha256 = hashlib.sha256(data).hexdigest()
        self.uploads[sha256] = None
        body = {"process": {"file": b64(data), "thumb_w": "40"}}
        for attempt in range(ATTEMPTS):
            url = f"{self.gateways[(n + attempt) % len(self.gateways)]}/user/images"
            sent = time.monotonic()
            retry_after = None
            try:
                async with self.http.post(url, json=body, headers=self.headers) as r:
                    status, answer = r.status, await r.json(content_type=None)
                    retry_after = r.headers.get("Retry-After")
            except (aiohttp.ClientError, TimeoutError):
                status, answer = 599, None
            self.attempts.append(Attempt(sent, time.monotonic() - sent, status, retry_after))
            self.history.setdefault(sha256, []).append(
                (status, retry_after, round(time.monotonic() - sent, 2))
            )
            self.tries[sha256] += 1
            if status == 201:
                self.uploads[sha256] = answer["data"]["id"]
                self.thumbs[sha256] = answer["data"]["file"]["thumb"]["url"]
                return
            if status < 500:
                return
            await asyncio.sleep(float(retry_after) if retry_after else 1.0)

    async def run(self, client: int, until: float) -> None:
        n = client
        while time.monotonic() < until:
            await self.upload(n)
            n += CONCURRENCY

    async def for_seconds(self, seconds: float) -> list[asyncio.Task]:
        until = time.monotonic() + seconds
        return [asyncio.create_task(self.run(c, until)) for c in range(CONCURRENCY)]


async def test_derivative_work_spreads_over_both_processing_hosts(
    multihost, mh_account, mh_http, resilience
):
    before = await _derivatives_made(mh_http, multihost)
    load = ProgimageLoad(mh_http, multihost.gateways, mh_account["token"])
    await asyncio.gather(*await load.for_seconds(5.0))
    after = await _derivatives_made(mh_http, multihost)
    made = {name: round(after[name] - before[name]) for name in after}
    accepted = sum(image is not None for image in load.uploads.values())
    statuses = Counter(a.status for a in load.attempts)
    resilience.row(
        "multi-host",
        "derivative calls spread over two processing hosts",
        injected=f"{CONCURRENCY} clients uploading Progimage photos for 5 s through both "
        "gateways; ingest lists both processing hosts in DARKROOM_PROCESSING_URL",
        observed=f"{len(load.uploads)} uploads, answers {dict(statuses)}; derivative calls "
        f"answered per processing host (its own /metrics): {made}",
        accepted=accepted,
        effects=sum(made.values()),
        errors_5xx=sum(a.status >= 500 for a in load.attempts),
    )
    assert accepted == len(load.uploads) > 0, statuses
    assert all(count > 0 for count in made.values()), made
    assert statuses == {201: len(load.uploads)}, statuses


async def test_a_processing_host_unplugged_mid_load_loses_no_upload(multihost, mh_http, resilience):
    http = mh_http
    account = await asyncio.to_thread(multihost.create_account, "Unplugged")
    proc1, proc2 = multihost.host("proc1"), multihost.host("proc2")
    load = ProgimageLoad(http, multihost.gateways, account["token"])
    started = await _derivatives_made(http, multihost)
    clients = await load.for_seconds(BEFORE_CUT + DURING_CUT + AFTER_RESTORE)
    try:
        await asyncio.sleep(BEFORE_CUT)
        at_cut = await _derivatives_made(http, multihost)
        cut_at = time.monotonic()
        Network.cut(proc2)
        await asyncio.sleep(DURING_CUT)
        Network.restore(proc2)
        restored_at = time.monotonic()
        async with asyncio.timeout(30):
            while True:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                    if (await readyz(http, proc2))[0] == 200:
                        break
                await asyncio.sleep(0.2)
        back_at = time.monotonic()
        at_restore = await _derivatives_made(http, multihost)
        await asyncio.gather(*clients)
    finally:
        Network.restore(proc2)
        for task in clients:
            task.cancel()
    ended = await _derivatives_made(http, multihost)

    conn = await multihost.database()
    try:
        rows = await conn.fetch(
            "SELECT sha256, count(*) AS n FROM progimage_images WHERE account_id = $1"
            " GROUP BY sha256",
            uuid.UUID(account["account_id"]),
        )
        blobs = await conn.fetchval(
            "SELECT count(*) FROM blobs WHERE sha256 = ANY($1::text[])", list(load.uploads)
        )
    finally:
        await conn.close()
    stored = {row["sha256"]: row["n"] for row in rows}
    unserved = []
    for sha256, url in load.thumbs.items():
        async with http.get(url, headers=bearer(account["token"])) as r:
            if r.status != 200:
                unserved.append((sha256, r.status, load.tries[sha256]))

    accepted = [sha for sha, image in load.uploads.items() if image is not None]
    errors = [a for a in load.attempts if a.status >= 500]
    during = [a for a in load.attempts if cut_at <= a.sent < restored_at]
    outside = [a for a in errors if not cut_at - 1 < a.sent < restored_at]
    bound = CONCURRENCY  # one call in flight per client when the link goes down
    recovery = max((a.sent + a.seconds for a in errors), default=cut_at) - cut_at
    made_during = {n: round(at_restore[n] - at_cut[n]) for n in at_cut}
    made_after = {n: round(ended[n] - at_restore[n]) for n in ended}
    before_p50 = _p50([a for a in load.attempts if a.sent < cut_at])
    during_p50 = _p50(during)
    resilience.row(
        "multi-host",
        "a processing host unplugged mid-load",
        injected=f"{CONCURRENCY} clients uploading Progimage photos through both gateways; "
        f"after {BEFORE_CUT:.0f} s the link of {proc2.name} ({proc2.address}) goes down for "
        f"{DURING_CUT:.0f} s (packets lost, no reset), then back up",
        observed=f"{len(load.attempts)} requests, {len(load.uploads)} uploads, "
        f"{len(accepted)} accepted; answers {dict(Counter(a.status for a in load.attempts))}; "
        f"5xx answered at {[round(a.sent + a.seconds - cut_at, 1) for a in errors]} s after "
        f"the cut (the last {recovery:.1f} s after; bound {bound}), each retried and stored; p50 "
        f"{before_p50:.0f} ms before, {during_p50:.0f} ms during; derivatives while cut "
        f"{made_during}, after restore {made_after}; {proc2.name} ready "
        f"{back_at - restored_at:.1f} s after its link came back. Only the calls in flight at "
        "the cut wait out the 10 s processing timeout; ingest then sets the replica aside and "
        "puts it back on its first ready /readyz",
        accepted=len(accepted),
        effects=sum(stored.values()),
        duplicates=sum(n - 1 for n in stored.values()),
        errors_5xx=len(errors),
    )
    refused = {sha: load.history.get(sha) for sha, image in load.uploads.items() if image is None}
    assert len(accepted) == len(load.uploads) > 0, f"not accepted (sha256: tries): {refused}"
    assert stored == dict.fromkeys(accepted, 1), stored
    assert blobs == len(accepted)
    assert not unserved, unserved[:5]
    # The cut host's own count may grow too: it finishes the calls it held and answers into
    # the void (those uploads are among the 503s).
    assert made_during[proc1.name] > 0, made_during
    assert made_after[proc2.name] > 0, made_after
    assert all(a.status == 503 and a.retry_after for a in errors), errors
    assert not outside, outside
    assert len(errors) <= bound, errors
    assert recovery < PROCESSING_TIMEOUT + 3, recovery  # set aside after the first wave
    assert started[proc2.name] < at_cut[proc2.name]


def _p50(attempts: list[Attempt]) -> float:
    """The median latency of ``attempts`` in milliseconds (0 when there are none)."""
    seconds = sorted(a.seconds for a in attempts)
    return seconds[len(seconds) // 2] * 1000 if seconds else 0.0
