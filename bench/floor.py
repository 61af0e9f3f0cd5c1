# ruff: noqa: RUF003, S603  (figures use ×; the bench starts its own server)
"""Scenario 5: the gateway's floor, at concurrency 1 and 16, three contenders measured in
interleaved chunks (A, B, C, A, B, C …) with one keep-alive client session per concurrency:

* **bare aiohttp hello** (the baseline): the smallest aiohttp server there is (one handler
  answering ``ok``, access log off, the same event loop and aiohttp as the platform), in a
  process of its own on a free loopback port: what any aiohttp process costs per request.
* **gateway /healthz**: ``GET /healthz`` through the gateway of the platform started as
  ``make run`` does: its middlewares (request id, errors, CORS and header limits), no
  authentication and no upstream.
* **gateway upload-url dedupe hit (JWT)**: ``GET /api/images/{sha256}/upload-url`` with a
  Happo-style HS256 JWT, for an image uploaded once beforehand through the Happo Image API, so
  every answer is ``uploadUrl: null``: the gateway authenticates (the credential cache answers
  after the first call), rate-limits, signs the principal and proxies to ingest, which checks
  the signature and asks Postgres for the image. This is the call a Happo run makes for every
  snapshot it already uploaded.

Each table's ``added_p50_ms`` is a gateway row's p50 less the bare server's, and ``rps_ratio``
its throughput over the bare server's. ``cpu`` says how busy each side was (CPU seconds over
wall seconds, 1.0 = one core): the load generator is in this process on the same 2 cores, so
where ``client`` nears 1.0 the figure is the client's ceiling, not the server's; ``machine``
is every process on the machine (Postgres included), out of 2.0 on 2 cores.

Requests per contender: 500 at concurrency 1, 2000 at 16; ``BENCH_FLOOR_REQUESTS`` sets both.
The platform's API-key rate limit is raised for the run (``DARKROOM_RATE_API_KEY``), so the
JWT row measures the limiter's bookkeeping, not its 429s.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

import aiohttp
import pyvips

from bench import platform as darkroom
from bench.load import Tally, interleave, load
from bench.stats import Row, Table, percentile

if TYPE_CHECKING:
    from bench.__main__ import Settings

CONCURRENCIES = (1, 16)
#: Requests per contender at each concurrency (``BENCH_FLOOR_REQUESTS`` overrides both).
REQUESTS = {1: 500, 16: 2000}
WARMUP = 50  # un-timed calls per contender before each concurrency (opens every connection)
RATE_LIMIT = "1000000/10"

HELLO = "bare aiohttp hello"
HEALTHZ = "gateway /healthz"
DEDUPE = "gateway upload-url dedupe hit (JWT)"

#: The baseline server: one handler, access log off, nothing else; on uvloop, as every process
#: of the platform runs (``shared.runtime.run``).
HELLO_SOURCE = """
import sys
import uvloop
from aiohttp import web

async def hello(request):
    return web.Response(text="ok")

app = web.Application()
app.router.add_get("/", hello)
web.run_app(
    app,
    host="127.0.0.1",
    port=int(sys.argv[1]),
    access_log=None,
    print=None,
    loop=uvloop.new_event_loop(),
)
"""

_TICK = os.sysconf("SC_CLK_TCK")


# --- what the other bench modules share with this one ------------------------------------------


def happo_jwt(api_key: str, api_secret: str) -> str:
    """The HS256 JWT the Happo clients send: ``kid`` = payload ``key`` = the API key, signed
    with the API secret, no ``exp``."""

    def part(value: dict) -> str:
        raw = json.dumps(value, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = (
        part({"alg": "HS256", "typ": "JWT", "kid": api_key}) + "." + part({"key": api_key})
    )
    signature = hmac.new(api_secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


def cpu_seconds(pid: int | str) -> float:
    """User + system CPU seconds ``pid`` has used so far (0.0 where /proc does not say);
    ``"self"`` is this process, ``"machine"`` every process on the machine (Postgres, the
    broker, other users' work) from ``/proc/stat``."""
    if pid == "self":
        return time.process_time()
    if pid == "machine":
        try:
            with open("/proc/stat") as stat:
                ticks = [int(value) for value in stat.readline().split()[1:]]
        except OSError:
            return 0.0
        return (sum(ticks[:8]) - ticks[3] - ticks[4]) / _TICK  # all but idle and iowait
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


class Meter:
    """``interleave``'s chunk hooks: per contender, reset and read one process's peak RSS and
    add up the CPU seconds of the processes that serve it and of this process (the client)."""

    def __init__(self, rss: dict[str, int | str], cpu: dict[str, dict[str, int | str]]):
        self.rss = rss  # contender → the pid whose peak RSS its row shows
        self.cpu = cpu  # contender → {label: pid} whose CPU its chunks are charged
        self.used: dict[str, Counter] = {name: Counter() for name in cpu}
        self._started: dict[str, float] = {}

    def _pids(self, name: str) -> dict[str, int | str]:
        return {"client": "self", **self.cpu.get(name, {}), "machine": "machine"}

    def before(self, name: str) -> None:
        if name in self.rss:
            darkroom.reset_peak_rss(self.rss[name])
        for label, pid in self._pids(name).items():
            self._started[label] = cpu_seconds(pid)

    def after(self, name: str) -> float | None:
        used = self.used.setdefault(name, Counter())
        for label, pid in self._pids(name).items():
            used[label] += cpu_seconds(pid) - self._started[label]
        return darkroom.peak_rss_mb(self.rss[name]) if name in self.rss else None

    def shares(self, name: str, wall: float) -> dict[str, float]:
        """CPU seconds over wall seconds, per process, for ``name``'s chunks."""
        return {label: round(used / wall, 2) for label, used in self.used[name].items() if wall}


def cpu_note(shares: dict[str, float]) -> str:
    return "cpu " + " ".join(f"{label} {share:.2f}" for label, share in shares.items())


async def check(
    errors: dict[str, Counter], name: str, answer: aiohttp.ClientResponse, ok: Iterable[int]
) -> bytes:
    """Read ``answer``; count its status in ``errors[name]`` when it is not one of ``ok``."""
    body = await answer.read()
    if answer.status not in ok:
        errors.setdefault(name, Counter())[str(answer.status)] += 1
    return body


# --- the baseline server -----------------------------------------------------------------------


class Hello:
    """The bare aiohttp server, in a process of its own."""

    def __init__(self) -> None:
        self.port = darkroom.free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.process = subprocess.Popen(
            [sys.executable, "-c", HELLO_SOURCE, str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the hello server exited: {self.process.stderr.read()!r}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as answer:  # noqa: S310
                    if answer.read() == b"ok":
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the hello server did not answer in time")
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- the scenario ------------------------------------------------------------------------------


def _requests() -> dict[int, int]:
    override = os.environ.get("BENCH_FLOOR_REQUESTS")
    if override:
        return dict.fromkeys(CONCURRENCIES, int(override))
    return dict(REQUESTS)


def _png() -> bytes:
    """A small PNG of noise, unique to this run (so the upload is a new image)."""
    noise = pyvips.Image.gaussnoise(64, 64, sigma=40, mean=128, seed=secrets.randbelow(2**31))
    image = noise.bandjoin([noise.flip("horizontal"), noise.flip("vertical")]).cast("uchar")
    return image.copy(interpretation="srgb").pngsave_buffer()


async def _happo_upload(
    http: aiohttp.ClientSession, base: str, headers: dict[str, str], data: bytes
) -> str:
    """Upload ``data`` as the Happo clients do (ask for an upload URL, POST the PNG in
    ``file``) under its SHA-256; the hash."""
    sha256 = hashlib.sha256(data).hexdigest()
    async with http.get(f"{base}/api/images/{sha256}/upload-url", headers=headers) as answer:
        if answer.status != 200:
            raise RuntimeError(f"upload-url: {answer.status} {await answer.text()}")
        upload_url = (await answer.json())["uploadUrl"]
    if upload_url is None:
        raise RuntimeError("upload-url: a fresh image is already stored")
    form = aiohttp.FormData()
    form.add_field("file", data, filename="bench.png", content_type="image/png")
    async with http.post(upload_url, data=form, headers=headers) as answer:
        if answer.status != 200:
            raise RuntimeError(f"Happo upload: {answer.status} {await answer.text()}")
    return sha256


def _contenders(
    http: aiohttp.ClientSession,
    hello: Hello,
    base: str,
    dedupe_url: str,
    headers: dict[str, str],
    errors: dict[str, Counter],
) -> dict[str, Callable[[], Awaitable[object]]]:
    async def hello_call() -> None:
        async with http.get(hello.url) as answer:
            await check(errors, HELLO, answer, (200,))

    async def healthz_call() -> None:
        async with http.get(base + "/healthz") as answer:
            await check(errors, HEALTHZ, answer, (200,))

    async def dedupe_call() -> None:
        async with http.get(dedupe_url, headers=headers) as answer:
            await check(errors, DEDUPE, answer, (200,))

    return {HELLO: hello_call, HEALTHZ: healthz_call, DEDUPE: dedupe_call}


async def _warm_up(
    http: aiohttp.ClientSession,
    calls: dict[str, Callable[[], Awaitable[object]]],
    dedupe_url: str,
    headers: dict[str, str],
    concurrency: int,
) -> None:
    """Un-timed calls (every connection opened, the credential cached), and the proof that the
    dedupe row really is a hit."""
    async with http.get(dedupe_url, headers=headers) as answer:
        body = await answer.json()
        if answer.status != 200 or body.get("uploadUrl") is not None:
            raise RuntimeError(f"upload-url is no dedupe hit: {answer.status} {body}")
    for call in calls.values():
        await load(call, max(WARMUP, concurrency * 2), concurrency)


def _table(
    concurrency: int,
    requests: int,
    tallies: dict[str, Tally],
    meter: Meter,
    errors: dict[str, Counter],
) -> Table:
    notes = {
        HELLO: "aiohttp alone, 1 handler, access log off; RSS of its process",
        HEALTHZ: "the gateway's own route, middlewares only; RSS of the gateway",
        DEDUPE: "JWT → cached principal → limiter → ingest → Postgres; RSS of the gateway",
    }
    rows = []
    for name, tally in tallies.items():
        shares = meter.shares(name, tally.wall)
        rows.append(
            Row(
                name,
                tally.latencies,
                wall=tally.wall,
                peak_rss_mb=tally.peak_rss_mb,
                note=f"{notes[name]}; {cpu_note(shares)}",
                extra={"cpu": shares},
            )
        )
    base = rows[0]
    added = {row.name: round(row.p50_ms - base.p50_ms, 3) for row in rows if row.name != HELLO}
    added_p99 = {row.name: round(row.p99_ms - base.p99_ms, 3) for row in rows if row.name != HELLO}
    throughput = {
        row.name: round(row.rps / base.rps, 3)
        for row in rows
        if row.name != HELLO and row.rps and base.rps
    }
    for row in rows[1:]:
        row.extra.update(added_p50_ms=added[row.name], rps_ratio=throughput.get(row.name))
        row.note += f"; +{added[row.name]:.2f} ms p50 over bare"
    return Table(
        f"gateway-c{concurrency}",
        f"5. Gateway floor, concurrency {concurrency}, {requests} requests each",
        rows,
        HELLO,
        {
            "concurrency": concurrency,
            "requests": requests,
            "added_p50_ms": added,
            "added_p99_ms": added_p99,
            "rps_ratio": throughput,
            "p90_ms": {row.name: round(percentile(row.latencies, 0.9) * 1000, 3) for row in rows},
            "cpu": {row.name: row.extra["cpu"] for row in rows},
            "errors": {name: dict(counts) for name, counts in errors.items()},
            "generator": "aiohttp.ClientSession, one keep-alive connection per worker",
            "rate_limit_api_key": RATE_LIMIT,
        },
    )


async def _run() -> list[Table]:
    results: list[Table] = []
    hello = await asyncio.to_thread(Hello)
    platform = None
    try:
        platform = await asyncio.to_thread(
            darkroom.start, env={"DARKROOM_RATE_API_KEY": RATE_LIMIT}
        )
        account = await asyncio.to_thread(platform.create_account)
        headers = {
            "Authorization": f"Bearer {happo_jwt(account['api_key'], account['api_secret'])}"
        }
        base = platform.url
        async with aiohttp.ClientSession() as setup:
            sha256 = await _happo_upload(setup, base, headers, _png())
        dedupe_url = f"{base}/api/images/{sha256}/upload-url"
        gateway = platform.pid("gateway")
        for concurrency, requests in _requests().items():
            errors: dict[str, Counter] = {}
            connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=60)
            async with aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=30),
            ) as http:
                calls = _contenders(http, hello, base, dedupe_url, headers, errors)
                await _warm_up(http, calls, dedupe_url, headers, concurrency)
                errors.clear()
                meter = Meter(
                    rss={HELLO: hello.pid, HEALTHZ: gateway, DEDUPE: gateway},
                    cpu={
                        HELLO: {"hello": hello.pid},
                        HEALTHZ: {"gateway": gateway},
                        DEDUPE: {
                            "gateway": gateway,
                            "auth": platform.pid("auth"),
                            "ingest": platform.pid("ingest"),
                        },
                    },
                )
                tallies = await interleave(
                    calls,
                    requests,
                    concurrency,
                    chunk=max(concurrency * 4, requests // 5),
                    before_chunk=meter.before,
                    after_chunk=meter.after,
                )
            results.append(_table(concurrency, requests, tallies, meter, errors))
    finally:
        if platform is not None:
            await asyncio.to_thread(platform.stop)
        await asyncio.to_thread(hello.stop)
    return results


def run(settings: Settings) -> list[Table]:  # settings.requests is for the image scenarios
    """The gateway floor's tables, one per concurrency."""
    return asyncio.run(_run())
