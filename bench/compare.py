# ruff: noqa: RUF001, RUF002, RUF003  (figures use ×)
"""Scenario 4, second half: a whole compare of two 500-snapshot reports with 10 changed,
through the API (goal: under 2 s; identical hashes never decoded).

The whole platform runs as ``make run`` starts it (:func:`bench.platform.start`). Untimed
setup, as the Happo clients do it: 500 distinct 320×200 PNG screenshots, and for every round
10 fresh "after" versions of 10 of them (a rectangle drawn on), uploaded through the Image API
(``GET /api/images/{md5}/upload-url``, then the multipart POST), 8 at once; then per round a
fresh pair of reports posted (``POST /api/reports/{sha}``): A with the 500 snapshots, B with
the same 490 URLs and the 10 changed ones.

Timed, with one ``aiohttp`` session and Basic ``api_key:api_secret``:

* **cold**: ``POST /api/reports/{A}/compare/{B}``, synchronous, so it covers matching the
  snapshots, the ``comparison.requested`` to processing, the 10 pixel diffs (decode, diff,
  diff PNG stored) and the ``comparison.diffed`` back, up to the answer. Every round has new
  shas and new changed images, so no comparison or pixel diff recorded earlier answers it.
* **reused**: the same compare posted again right after: the comparison is still current and
  is answered from what is recorded.

Each answer must report exactly 10 diffs (of the snapshots changed), 490 unchanged and nothing
added or deleted; processing's ``darkroom_processing_duration_seconds_count{operation="diff"}``
must grow by exactly 10 per cold compare (the 490 identical pairs are never decoded). What
does not hold is counted in ``errors``. One untimed warm-up round goes first
(``BENCH_COMPARE_WARMUP``); ``BENCH_COMPARE_ROUNDS`` (default 5) rounds are timed, whatever
``--rounds`` says (each costs two 500-snapshot reports). The peak RSS is processing's over the
timed rounds (reports's is in ``extra``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import statistics
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from bench import platform as bench_platform
from bench.stats import Row, Table, percentile

if TYPE_CHECKING:
    from bench.__main__ import Settings
    from bench.platform import Platform

SNAPSHOTS = 500
CHANGED = 10
WIDTH, HEIGHT = 320, 200
UPLOAD_CONCURRENCY = 8
GOAL_SECONDS = 2.0
COLD = f"compare {SNAPSHOTS} snaps, {CHANGED} changed (cold)"
REUSED = "compare again (reused)"


# --- the screenshots --------------------------------------------------------------------------


def _solid(width: int, height: int, colour: tuple[int, int, int]) -> Any:
    import pyvips

    return pyvips.Image.black(width, height, bands=3).new_from_image(list(colour)).cast("uchar")


def base_image(index: int) -> Any:
    """Snapshot ``index``'s screenshot: a page-like 320×200 picture (background, header bar,
    two content blocks) whose colours and block sizes are its own."""
    background = (236 - index % 20, 238 - (index // 20) % 25, 242)
    image = _solid(WIDTH, HEIGHT, background)
    image = image.insert(_solid(WIDTH, 24, (40 + index % 60, 60, 90)), 0, 0)
    image = image.insert(_solid(40 + index % 200, 40, (120, 130 + index % 90, 140)), 16, 40)
    return image.insert(_solid(240, 12 + index % 50, (90, 90, 100 + index % 120)), 40, 110)


def changed_image(index: int, round_number: int) -> Any:
    """Snapshot ``index``'s screenshot with a red 48×32 rectangle drawn on, where ``round``
    says (so each round's after-images are new bytes)."""
    left = 8 + 24 * (round_number % 10)
    top = 30 + 12 * ((round_number // 10) % 10)
    return base_image(index).insert(_solid(48, 32, (210, 40, 40)), left, top)


def png(image: Any) -> bytes:
    return image.pngsave_buffer(compression=6)


def changed_indices(round_number: int) -> list[int]:
    """The 10 snapshots (spread over the report) a round changes; each round its own."""
    step = SNAPSHOTS // CHANGED
    return [(round_number * 7 + k * step) % SNAPSHOTS for k in range(CHANGED)]


def component(index: int) -> str:
    return f"C{index:04d}"


# --- talking to the platform ------------------------------------------------------------------


@dataclass
class Client:
    """The bench's one session with the platform, as an account's Happo client."""

    session: aiohttp.ClientSession
    url: str
    auth: dict[str, str]

    async def call(self, method: str, path: str, json: dict | None = None) -> dict:
        async with self.session.request(
            method, self.url + path, json=json, headers=self.auth
        ) as answer:
            body = await answer.json(content_type=None)
            if answer.status != 200:
                raise RuntimeError(f"{method} {path} → {answer.status}: {body}")
            return body

    async def upload(self, data: bytes) -> str:
        """Upload a PNG through the Image API (unless already held); its ``url``."""
        md5 = hashlib.md5(data).hexdigest()  # noqa: S324 - what the Happo clients send
        answer = await self.call("GET", f"/api/images/{md5}/upload-url")
        if answer.get("uploadUrl"):
            form = aiohttp.FormData()
            form.add_field("file", data, filename="image.png", content_type="image/png")
            async with self.session.post(answer["uploadUrl"], data=form, headers=self.auth) as r:
                if r.status != 200:
                    raise RuntimeError(f"upload of {md5} → {r.status}: {await r.text()}")
                answer = await r.json()
        return answer["url"]

    async def upload_all(self, images: list[bytes]) -> list[str]:
        slots = asyncio.Semaphore(UPLOAD_CONCURRENCY)

        async def one(data: bytes) -> str:
            async with slots:
                return await self.upload(data)

        return await asyncio.gather(*(one(data) for data in images))

    async def post_report(self, sha: str, urls: list[str]) -> dict:
        snaps = [
            {
                "component": component(index),
                "variant": "default",
                "target": "chrome",
                "url": url,
                "width": WIDTH,
                "height": HEIGHT,
            }
            for index, url in enumerate(urls)
        ]
        return await self.call("POST", f"/api/reports/{sha}", {"snaps": snaps})

    async def compare(self, sha1: str, sha2: str) -> tuple[dict, float]:
        start = time.perf_counter()
        answer = await self.call("POST", f"/api/reports/{sha1}/compare/{sha2}", {})
        return answer, time.perf_counter() - start


async def decoded_diffs(session: aiohttp.ClientSession, processing_url: str) -> float | None:
    """Processing's count of pixel diffs computed so far (from its ``/metrics``)."""
    try:
        async with session.get(processing_url + "/metrics") as answer:
            text = await answer.text()
    except aiohttp.ClientError:
        return None
    pattern = r'^darkroom_processing_duration_seconds_count\{[^}]*operation="diff"[^}]*\} (\S+)$'
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total


async def settle(pids: list[int], timeout: float = 15.0) -> None:
    """Wait until the platform's processes are nearly idle (what setup set off is done)."""
    deadline = time.monotonic() + timeout
    last = _cpu_ticks(pids)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = _cpu_ticks(pids)
        if now - last <= 3:  # under ~6 % of one core over the half second
            return
        last = now


def check(answer: dict, changed: list[int], label: str) -> list[str]:
    """What is wrong with a compare answer (empty when it reports exactly the change)."""
    problems = []
    diffs = answer.get("diffs") or []
    if len(diffs) != CHANGED:
        problems.append(f"{label}: {len(diffs)} diffs reported, {CHANGED} expected")
    got = sorted(pair[1]["component"] for pair in diffs if len(pair) == 2)
    if len(diffs) == CHANGED and got != sorted(component(i) for i in changed):
        problems.append(f"{label}: diffs of {got}, expected those of {changed}")
    unchanged = len(answer.get("unchanged") or [])
    if unchanged != SNAPSHOTS - CHANGED:
        problems.append(f"{label}: {unchanged} unchanged, {SNAPSHOTS - CHANGED} expected")
    if answer.get("added") or answer.get("deleted"):
        problems.append(f"{label}: snapshots added or deleted")
    if answer.get("equal") is not False:
        problems.append(f"{label}: equal is {answer.get('equal')!r}")
    failed = [image for image in answer.get("diffImages") or [] if image.get("error")]
    if failed:
        problems.append(f"{label}: {len(failed)} diff errors: {failed[0]['error']}")
    return problems


# --- the scenario -----------------------------------------------------------------------------


@dataclass
class Tally:
    cold: list[float] = field(default_factory=list)
    reused: list[float] = field(default_factory=list)
    post_seconds: list[float] = field(default_factory=list)
    decoded: list[float | None] = field(default_factory=list)
    changed_pixels: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def bench(platform: Platform, rounds: int, warmup: int) -> tuple[Tally, dict[str, Any]]:
    """Set up, run ``warmup`` untimed and ``rounds`` timed rounds; the figures and setup."""
    account = platform.create_account()
    raw = f"{account['api_key']}:{account['api_secret']}".encode()
    auth = {"Authorization": "Basic " + base64.b64encode(raw).decode()}
    processing_url = f"http://127.0.0.1:{platform.env['DARKROOM_PROCESSING_PORT']}"
    pids = [platform.pid(name) for name in bench_platform.SERVICES]
    total = warmup + rounds

    started = time.perf_counter()
    base = [png(base_image(i)) for i in range(SNAPSHOTS)]
    after = {(r, i): png(changed_image(i, r)) for r in range(total) for i in changed_indices(r)}
    images = base + list(after.values())
    if len({hashlib.sha256(data).digest() for data in images}) != len(images):
        raise RuntimeError("the generated screenshots are not all distinct")
    made = time.perf_counter() - started

    tally = Tally()
    async with aiohttp.ClientSession() as session:
        client = Client(session, platform.url, auth)
        started = time.perf_counter()
        urls = await client.upload_all(images)
        uploaded = time.perf_counter() - started
        base_urls = urls[:SNAPSHOTS]
        after_urls = dict(zip(after, urls[SNAPSHOTS:], strict=True))
        await settle(pids)

        for r in range(total):
            timed = r >= warmup
            if r == warmup:
                await settle(pids)
                for name in ("processing", "reports"):
                    bench_platform.reset_peak_rss(platform.pid(name))
            changed = changed_indices(r)
            later = list(base_urls)
            for i in changed:
                later[i] = after_urls[(r, i)]
            sha1, sha2 = uuid.uuid4().hex[:12], uuid.uuid4().hex[:12]
            started = time.perf_counter()
            await client.post_report(sha1, base_urls)
            await client.post_report(sha2, later)
            posted = time.perf_counter() - started
            diffs_before = await decoded_diffs(session, processing_url)

            label = f"round {r - warmup + 1}" if timed else "warm-up"
            answer, cold = await client.compare(sha1, sha2)
            problems = check(answer, changed, f"{label} cold")
            again, reused = await client.compare(sha1, sha2)
            problems += check(again, changed, f"{label} reused")
            if again.get("id") != answer.get("id"):
                problems.append(f"{label} reused: a new comparison, not the one done")

            diffs_after = await decoded_diffs(session, processing_url)
            decoded = (
                diffs_after - diffs_before
                if diffs_before is not None and diffs_after is not None
                else None
            )
            if decoded is not None and decoded != CHANGED:
                problems.append(f"{label}: processing diffed {decoded:g} pairs, {CHANGED} wanted")
            if not timed:
                tally.errors += problems
                continue
            tally.cold.append(cold)
            tally.reused.append(reused)
            tally.post_seconds.append(posted)
            tally.decoded.append(decoded)
            tally.changed_pixels += [
                int(image.get("changedPixels") or 0) for image in answer.get("diffImages") or []
            ]
            tally.errors += problems

    setup = {
        "images_made": len(images),
        "make_images_s": round(made, 3),
        "upload_s": round(uploaded, 3),
        "upload_concurrency": UPLOAD_CONCURRENCY,
        "post_report_pair_s_median": round(statistics.median(tally.post_seconds), 3)
        if tally.post_seconds
        else None,
    }
    return tally, setup


def run(settings: Settings) -> list[Table]:
    """Start the platform, run the rounds, stop it; one table ``compare``."""
    rounds = max(1, int(os.environ.get("BENCH_COMPARE_ROUNDS", 5)))
    warmup = max(0, int(os.environ.get("BENCH_COMPARE_WARMUP", 1)))
    platform = bench_platform.start()
    try:
        tally, setup = asyncio.run(bench(platform, rounds, warmup))
        processing_peak = bench_platform.peak_rss_mb(platform.pid("processing"))
        reports_peak = bench_platform.peak_rss_mb(platform.pid("reports"))
    finally:
        platform.stop()

    cold_p50, cold_p99 = percentile(tally.cold, 0.5), percentile(tally.cold, 0.99)
    verdict = "meets" if cold_p99 < GOAL_SECONDS else "misses"
    reused_p50, reused_p99 = percentile(tally.reused, 0.5), percentile(tally.reused, 0.99)
    decoded = sorted({d for d in tally.decoded if d is not None})
    rows = [
        Row(
            COLD,
            tally.cold,
            peak_rss_mb=processing_peak,
            note=(
                f"p50 {cold_p50 * 1000:.0f} ms, p99 {cold_p99 * 1000:.0f} ms: {verdict} the"
                f" {GOAL_SECONDS:g} s goal; pairs diffed by processing per compare:"
                f" {', '.join(f'{d:g}' for d in decoded) or '?'} of {SNAPSHOTS}"
                f" (identical hashes not decoded); peak RSS is processing's"
            ),
        ),
        Row(
            REUSED,
            tally.reused,
            note=(
                f"p50 {reused_p50 * 1000:.0f} ms, p99 {reused_p99 * 1000:.0f} ms: the same"
                " comparison answered from what is recorded, nothing diffed"
            ),
        ),
    ]
    if tally.errors:
        rows[0].note += f"; {len(tally.errors)} ERRORS (see extra)"
    title = (
        f"4. Compare of two {SNAPSHOTS}-snapshot reports, {CHANGED} changed, through the API"
        f" ({rounds} rounds after {warmup} warm-up; goal < {GOAL_SECONDS:g} s)"
    )
    extra = {
        "snapshots_per_report": SNAPSHOTS,
        "changed_per_compare": CHANGED,
        "image_size": f"{WIDTH}×{HEIGHT}",
        "rounds": rounds,
        "warmup_rounds": warmup,
        "goal_s": GOAL_SECONDS,
        "pairs_diffed_per_cold_compare": tally.decoded,
        "changed_pixels_per_diff_median": statistics.median(tally.changed_pixels)
        if tally.changed_pixels
        else None,
        "setup": setup,
        "processing_peak_rss_mb": processing_peak,
        "reports_peak_rss_mb": reports_peak,
        "errors": tally.errors,
    }
    return [Table("compare", title, rows, COLD, extra)]
