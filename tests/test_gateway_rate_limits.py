"""Rate limits across gateway replicas (gateway/limiting.py): two gateways sharing one Redis give
each credential exactly its budget between them, as one gateway without Redis does alone; with
Redis cut off mid-load each gateway counts by itself (fail open), nothing answers 5xx, and the
shared budgets come back by themselves with Redis.

Redis is the machine's (127.0.0.1:6379), shared with other runs: the gateways here keep their
keys under a prefix of this run's own, and only those keys are deleted afterwards. The outage is
a TcpProxy between the gateways and Redis, cut and restored; the server itself is never touched.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import Counter

import aiohttp
import pytest

from gateway import handlers
from gateway.config import GatewayConfig
from shared.config import load
from tests import oauth_support
from tests.gateway_support import running_gateway
from tests.oauth_support import bearer, exchange, get_code
from tests.tcp_proxy import TcpProxy

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
#: The budgets a gateway has unless told otherwise (gateway/config.py).
BUDGETS = load(GatewayConfig, {"DARKROOM_INTERNAL_KEY": "unused"})

developer = oauth_support.developer
app_client = oauth_support.app_client


@pytest.fixture(scope="module")
async def redis_prefix(run_id) -> str:
    """This module's key prefix; its keys (and only they) are deleted afterwards."""
    prefix = f"darkroom-test-{run_id}-{uuid.uuid4().hex[:6]}"
    yield prefix
    await redis_keys(prefix, delete=True)


async def redis_keys(prefix: str, *, delete: bool = False) -> int:
    """How many keys under ``prefix`` the machine's Redis holds (deleting them if asked)."""
    import coredis

    client = coredis.Redis(host=REDIS_HOST, port=REDIS_PORT, decode_responses=True)
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
    if delete and keys:
        await client.delete(keys)
    client.connection_pool.disconnect()
    return len(keys)


@pytest.fixture(params=["two gateways, one Redis", "one gateway, no Redis"])
async def gateways(request, stack, redis_prefix):
    """The gateways a test spends through, each given as (url, app)."""
    if request.param.startswith("one"):
        async with running_gateway(stack) as one:
            yield request.param, [one]
        return
    # Exact counts need every check to reach Redis: here the whole platform shares one event
    # loop, whose lag under a 64-wide burst reached 0.16 s (the outage test keeps the default).
    shared = {"REDIS_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/0", "DARKROOM_REDIS_TIMEOUT": "2"}
    async with (
        running_gateway(stack, DARKROOM_REDIS_PREFIX=redis_prefix, **shared) as first,
        running_gateway(stack, DARKROOM_REDIS_PREFIX=redis_prefix, **shared) as second,
    ):
        yield request.param, [first, second]


async def oauth_token(stack, http: aiohttp.ClientSession, app_client: dict) -> str:
    """A fresh Progimage access token (the OAuth code flow, consented by a new person)."""
    person = stack.create_account("Budgeted Person")
    code = await get_code(stack, person, app_client)
    status, answer, _ = await exchange(http, stack, app_client, code=code)
    assert status == 200, answer
    return answer["access_token"]


async def burst(http, urls: list[str], path: str, headers: dict, count: int, width: int = 32):
    """``count`` GETs of ``path`` at once, spread over ``urls`` in turn; returns (status,
    Retry-After, error code) per request, in sending order, and the seconds it took."""
    gate = asyncio.Semaphore(width)

    async def one(n: int) -> tuple[int, str | None, str | None]:
        async with gate, http.get(urls[n % len(urls)] + path, headers=headers) as r:
            body = await r.json(content_type=None) if r.status != 200 else {}
            code = body.get("error", {}).get("code") if isinstance(body, dict) else None
            return r.status, r.headers.get("Retry-After"), code

    started = time.monotonic()
    answers = await asyncio.gather(*(one(n) for n in range(count)))
    return answers, time.monotonic() - started


def assert_budget(answers, elapsed: float, budget: tuple[int, float], ok: int) -> list[int]:
    """Exactly the budget answered ``ok`` and the rest 429 in the documented shape, with a
    Retry-After no longer than the period; returns the Retry-After values."""
    count, period = budget
    assert elapsed < period, f"the burst took {elapsed:.1f} s, longer than the {period} s window"
    statuses = Counter(status for status, _, _ in answers)
    assert statuses == {ok: count, 429: len(answers) - count}, statuses
    refusals = [(after, code) for status, after, code in answers if status == 429]
    assert {code for _, code in refusals} == {"rate_limit_exceeded"}
    waits = [int(after) for after, _ in refusals]
    # The window frees its oldest slot `period` after the burst began: never sooner than what
    # is left of it, never later than the period.
    assert all(math.floor(period - elapsed) <= w <= period for w in waits), (waits, elapsed)
    return waits


async def test_one_progimage_token_gets_exactly_20_requests_per_5_seconds(
    stack, http, app_client, gateways, resilience
):
    setup, pairs = gateways
    urls = [url for url, _ in pairs]
    token = await oauth_token(stack, http, app_client)
    answers, elapsed = await burst(http, urls, "/user", bearer(token), 30)
    refused_at = time.monotonic()
    waits = assert_budget(answers, elapsed, BUDGETS.rate_oauth, 200)
    # Right, not just plausible: refused until just before Retry-After, admitted right after.
    wait = waits[0]
    await asyncio.sleep(max(0.0, wait - 1.2 - (time.monotonic() - refused_at)))
    (early,), _ = await burst(http, urls[::-1], "/user", bearer(token), 1)
    await asyncio.sleep(max(0.0, wait + 0.1 - (time.monotonic() - refused_at)))
    (late,), _ = await burst(http, urls[::-1], "/user", bearer(token), 1)
    assert (early[0], late[0]) == (429, 200), (early, late, wait)
    if len(pairs) == 2:
        assert all(app[handlers.LIMITER].shared for _, app in pairs)
    resilience.row(
        "gateway",
        f"Progimage token budget 20/5 s: {setup}",
        injected=f"30 requests at once with one OAuth token, alternating over {len(urls)}"
        " gateway(s)",
        observed=f"{sum(s == 200 for s, _, _ in answers)} answered 200 and"
        f" {sum(s == 429 for s, _, _ in answers)} 429 rate_limit_exceeded in {elapsed:.2f} s;"
        f" Retry-After {sorted(set(waits))} s; still 429 {wait - 1.2:.1f} s after,"
        f" 200 at {wait + 0.1:.1f} s",
        accepted=sum(s == 200 for s, _, _ in answers),
        errors_5xx=sum(s >= 500 for s, _, _ in answers),
    )


async def test_an_api_key_and_an_anonymous_address_get_their_budgets(
    stack, http, client, gateways, resilience
):
    setup, pairs = gateways
    urls = [url for url, _ in pairs]
    owner = stack.create_account("Budgeted Key")
    keyed, key_elapsed = await burst(
        http, urls, "/user", bearer(owner["token"]), BUDGETS.rate_api_key[0] + 20, width=64
    )
    key_waits = assert_budget(keyed, key_elapsed, BUDGETS.rate_api_key, 200)
    # Callers without valid credentials are charged per address (the `client` fixture has a
    # loopback address of its own): each refused sign-in is a 401 until the budget is spent.
    anonymous, anon_elapsed = await burst(client, urls, "/user", {}, BUDGETS.rate_anonymous[0] + 10)
    anon_waits = assert_budget(anonymous, anon_elapsed, BUDGETS.rate_anonymous, 401)
    resilience.row(
        "gateway",
        f"API key 2000/10 s and anonymous 120/60 s budgets: {setup}",
        injected=f"{len(keyed)} requests at once with one API key and {len(anonymous)} without"
        f" credentials from one address, alternating over {len(urls)} gateway(s)",
        observed=f"API key: {sum(s == 200 for s, _, _ in keyed)} answered 200, the rest 429 in"
        f" {key_elapsed:.2f} s, Retry-After {sorted(set(key_waits))} s; anonymous:"
        f" {sum(s == 401 for s, _, _ in anonymous)} answered 401, the rest 429,"
        f" Retry-After {sorted(set(anon_waits))} s",
        accepted=sum(s == 200 for s, _, _ in keyed),
        errors_5xx=sum(s >= 500 for s, _, _ in [*keyed, *anonymous]),
    )


async def test_redis_cut_mid_load_fails_open_to_each_gateway_and_recovers(
    stack, http, redis_prefix, resilience
):
    """Budget 10 per 30 s per API key, so each phase's count is exact whatever its timing."""
    proxy = TcpProxy(REDIS_HOST, REDIS_PORT)
    await proxy.start()
    env = {
        "REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0",
        "DARKROOM_REDIS_PREFIX": f"{redis_prefix}-outage",
        "DARKROOM_RATE_API_KEY": "10/30",
    }
    tokens = [stack.create_account(f"Outage {n}")["token"] for n in range(5)]
    background: list[int] = []
    phases: dict[str, Counter] = {}
    slowest: dict[str, float] = {}
    try:
        async with running_gateway(stack, **env) as one, running_gateway(stack, **env) as two:
            urls, apps = [one[0], two[0]], [one[1], two[1]]
            limiters = [app[handlers.LIMITER] for app in apps]
            stop = asyncio.Event()

            async def load() -> None:
                # The load: a steady trickle of another key's requests through both gateways.
                n = 0
                while not stop.is_set():
                    (answer,), _ = await burst(http, urls[n % 2 :], "/user", bearer(tokens[4]), 1)
                    background.append(answer[0])
                    n += 1
                    await asyncio.sleep(0.02)

            async def phase(name: str, token: str) -> Counter:
                started = time.monotonic()
                answers = []
                for n in range(30):  # one by one, so each request's time is its own; over
                    # 1.5 s, so that each gateway tries a failed Redis again during the phase
                    sent = time.monotonic()
                    (answer,), _ = await burst(http, urls[n % 2 :], "/user", bearer(token), 1)
                    slowest[name] = max(slowest.get(name, 0.0), time.monotonic() - sent)
                    answers.append(answer)
                    await asyncio.sleep(0.05)
                assert time.monotonic() - started < 30
                assert all(c == "rate_limit_exceeded" for s, _, c in answers if s == 429)
                phases[name] = Counter(s for s, _, _ in answers)
                return phases[name]

            loader = asyncio.create_task(load())
            assert await phase("up", tokens[0]) == {200: 10, 429: 20}  # shared: 10 in all
            assert await redis_keys(f"{redis_prefix}-outage") >= 1
            proxy.cut()  # Redis gone: connections reset, new ones refused
            assert await phase("cut", tokens[1]) == {200: 20, 429: 10}  # 10 per gateway
            assert not any(limiter.shared for limiter in limiters)
            proxy.restore()
            proxy.stall()  # Redis hung: bytes go nowhere, nothing is refused
            assert await phase("hung", tokens[2]) == {200: 20, 429: 10}
            proxy.restore()
            deadline = time.monotonic() + 10
            while not all(limiter.shared for limiter in limiters):
                assert time.monotonic() < deadline, "the gateways never went back to Redis"
                await burst(http, urls, "/user", bearer(tokens[4]), 2)
                await asyncio.sleep(0.2)
            recovered_in = 10 - (deadline - time.monotonic())
            assert await phase("back", tokens[3]) == {200: 10, 429: 20}  # shared again
            stop.set()
            await loader
    finally:
        await proxy.stop()
        await redis_keys(f"{redis_prefix}-outage", delete=True)
    fives = sum(s >= 500 for s in background) + sum(
        n for counts in phases.values() for s, n in counts.items() if s >= 500
    )
    assert fives == 0
    # A hung Redis costs the request that tries it the 0.25 s timeout (one a second), no more.
    assert 0.2 < slowest["hung"] < 1.0 and slowest["cut"] < 1.0, slowest
    resilience.row(
        "gateway",
        "Redis cut, then hung, mid-load under two gateways (fail open)",
        injected="TcpProxy between both gateways and Redis: cut (connections reset, new ones"
        " refused), then stalled (nothing answers), then restored; a steady load on another"
        " key throughout; 30 requests per phase with a fresh key of budget 10/30 s",
        observed=f"up: {dict(phases['up'])}; cut: {dict(phases['cut'])} (each gateway its own"
        f" 10); hung: {dict(phases['hung'])}; back: {dict(phases['back'])} (shared again,"
        f" {recovered_in:.1f} s after restore); slowest request {max(slowest.values()):.2f} s;"
        f" background load {len(background)} requests, {Counter(background)}",
        accepted=sum(counts[200] for counts in phases.values()),
        errors_5xx=fives,
    )
