# ruff: noqa: RUF001, RUF002, RUF003  (figures use ×)
"""Scenario 7: render speed — examples rendered per second, Darkroom against a bare
playwright-python loop screenshotting the same examples with the same Chromium and the same
concurrency (the ceiling), at concurrency 1 and 2; goal: Darkroom ≥ 0.7× the loop.

The package is a static Happo package of :data:`EXAMPLES` small cards (a heading, a line of
text and a badge on a coloured card of its own width, in the system sans-serif), whose
``window.happo`` is what happo's custom integration builds: ``init({chunk})`` keeps its share
of the examples, ``nextExample()`` renders the next card into ``#root`` and resolves.

* **Darkroom c=N**: the platform started as ``make run`` starts it (one process per service,
  ``DARKROOM_RENDER_CONCURRENCY`` = the highest N) renders through its public API, as happo 6
  drives it: the package uploaded once (``POST /api/snap-requests/assets/:md5``, untimed), then
  per round one ``POST /api/snap-requests/bulk`` of N requests — ``chunk`` ``{index, total:
  N}`` each (none at N = 1), a fresh ``targetName`` per round so no earlier result is reused —
  timed from the POST until polling ``GET /api/snap-requests/:id`` (every
  :data:`POLL_SECONDS`) finds every request done. That covers the event to the renderer, a
  fresh browser context per request, the page and its examples, settling and clipping each,
  every screenshot stored through ingest as a Happo image, and the outcome back in reports.
  Each answer must list every example once, with a size.
* **bare playwright c=N (ceiling)**: in this process, ``/usr/bin/chromium`` (the renderer's
  own choice, launched with the renderer's flags) driven by playwright-python: per round N
  fresh contexts at once, each with the same viewport, its requests answered from the
  package's files in memory, ``/iframe.html`` opened and waited for ``load`` and
  ``window.happo``, ``init`` with the same chunk, then per example one ``evaluate`` (render
  the example, return the card's box) and ``page.screenshot(clip=box)``. No settling, no
  storing: the least a correct loop does.
* **bare CDP capture c=N**: the same loop capturing each box with one DevTools
  ``Page.captureScreenshot`` call (what the renderer itself does) instead of
  ``page.screenshot``, which costs playwright several protocol calls per shot: the stricter
  reference, printed as ``req/s vs`` beside the ceiling.

Rounds alternate (Darkroom, then the two loops) after one untimed warm-up of each per
concurrency (``BENCH_RENDER_ROUNDS`` timed rounds, default 5). ``n`` is examples rendered,
``req/s`` is examples per second, p50/p99 are a round's wall time per example (amortised).
The Darkroom row's note gives its throughput over the ceiling's against the goal, from each
side's median round (robust to a round slowed by other work on a shared machine; the table's
``req/s ratio`` is of the totals), and how long the renderer was busy per request (its
``darkroom_render_example_seconds`` sum: render and store); the rest of a round is the way
there and back (events, polling).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import re
import statistics
import time
import zipfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from bench import platform as darkroom
from bench.stats import Row, Table

if TYPE_CHECKING:
    from playwright.async_api import Browser, Route

    from bench.__main__ import Settings
    from bench.platform import Platform

EXAMPLES = 40
CONCURRENCIES = (1, 2)
VIEWPORT = (1024, 768)
GOAL = 0.7
POLL_SECONDS = 0.1
ORIGIN = "https://bench-package.invalid"

_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8">
<style>
  html, body { margin: 0; padding: 0; background: #fff; }
  .card { display: inline-block; box-sizing: border-box; padding: 12px 16px; margin: 8px;
          border: 1px solid #8a8f98; border-radius: 8px; font: 14px/1.4 sans-serif;
          color: #1d2330; }
  .card h3 { margin: 0 0 6px; font-size: 16px; }
  .card p { margin: 0 0 8px; }
  .badge { display: inline-block; padding: 2px 8px; border-radius: 10px; background: #1d2330;
           color: #fff; font-size: 12px; }
</style>
<script src="/bundle.js"></script>
</head><body><div id="root" style="display: contents"></div></body></html>
"""

_BUNDLE = """
(function () {
  var TOTAL = %d;
  var all = [];
  for (var i = 0; i < TOTAL; i++) all.push(i);
  var queue = [];
  function card(i) {
    return '<div class="card" style="width:' + (180 + (i %% 5) * 30) + 'px;background:hsl('
      + (i * 37 %% 360) + ',60%%,86%%)"><h3>Card ' + i + '</h3><p>Example number ' + i
      + ' of the bench package</p><span class="badge">#' + i + '</span></div>';
  }
  window.happo = {
    init: function (options) {
      var chunk = options && options.chunk;
      queue = all.slice();
      if (chunk && chunk.total > 1) {
        var per = Math.ceil(queue.length / chunk.total);
        queue = queue.slice(chunk.index * per, chunk.index * per + per);
      }
    },
    nextExample: function () {
      if (!queue.length) return undefined;
      var i = queue.shift();
      document.getElementById('root').innerHTML = card(i);
      return { component: 'Card ' + (i < 10 ? '0' : '') + i, variant: 'default' };
    },
  };
})();
"""

#: The ceiling's one call per example: render the next one, return the card's box (or null).
_NEXT_AND_BOX = """async () => {
    const item = await window.happo.nextExample();
    if (!item) return null;
    const box = document.querySelector('#root > .card').getBoundingClientRect();
    const x = Math.floor(box.left), y = Math.floor(box.top);
    return {x, y, width: Math.ceil(box.right) - x, height: Math.ceil(box.bottom) - y};
}"""
_HAPPO_READY = "() => !!(window.happo && typeof window.happo.nextExample === 'function')"


def package_files(examples: int = EXAMPLES) -> dict[str, bytes]:
    """The static package: its URL paths and their bytes."""
    return {
        "/iframe.html": _PAGE.encode(),
        "/bundle.js": (_BUNDLE % examples).encode(),
    }


def zipped(files: dict[str, bytes]) -> bytes:
    """The package as the zip a Happo client uploads."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in sorted(files.items()):
            archive.writestr(zipfile.ZipInfo(path.lstrip("/"), (2020, 1, 1, 0, 0, 0)), data)
    return buffer.getvalue()


def chunks(concurrency: int) -> list[dict[str, int] | None]:
    """The ``chunk`` of each of ``concurrency`` requests (none when there is one, as happo 6)."""
    if concurrency == 1:
        return [None]
    return [{"index": index, "total": concurrency} for index in range(concurrency)]


def per_example(name: str, rounds: list[float], examples: int, note: str = "") -> Row:
    """A row whose ``n`` is the examples rendered and ``req/s`` examples per second: each
    round's wall time spread evenly over its examples."""
    latencies = [seconds / examples for seconds in rounds for _ in range(examples)]
    return Row(name, latencies, wall=sum(rounds), note=note)


def median_ratio(ours: list[float], reference: list[float]) -> float:
    """Our throughput over the reference's from the median round of each (the same examples
    per round): a round slowed by other work on a shared machine does not swing it."""
    return statistics.median(reference) / statistics.median(ours)


# --- Darkroom, through its public API ---------------------------------------------------------


@dataclass
class Api:
    """The bench's session with the platform, as an account's happo client."""

    session: aiohttp.ClientSession
    url: str
    auth: dict[str, str]

    async def upload(self, data: bytes) -> str:
        md5 = hashlib.md5(data).hexdigest()  # noqa: S324 - the clients' package name
        form = aiohttp.FormData()
        form.add_field("payload", data, filename="payload.zip", content_type="application/zip")
        async with self.session.post(
            f"{self.url}/api/snap-requests/assets/{md5}", data=form, headers=self.auth
        ) as answer:
            body = await answer.json(content_type=None)
            if answer.status != 200:
                raise RuntimeError(f"package upload → {answer.status}: {body}")
        return body["path"]

    async def render(self, path: str, target: str, concurrency: int) -> tuple[float, list[str]]:
        """Post one round's requests and poll them to the end: its seconds and problems."""
        items = []
        for chunk in chunks(concurrency):
            payload: dict[str, Any] = {
                "viewport": f"{VIEWPORT[0]}x{VIEWPORT[1]}",
                "staticPackage": path,
                "freezeAnimations": "last-frame",
                "prefersReducedMotion": True,
                "allowPointerEvents": True,
                "failOnWaitForTimeout": True,
            }
            if chunk is not None:
                payload["chunk"] = chunk
            text = json.dumps(payload)
            items.append(
                {
                    "type": "browser-chrome",
                    "targetName": target,
                    "payloadString": text,
                    "payloadHash": hashlib.md5(text.encode()).hexdigest(),  # noqa: S324
                }
            )
        started = time.perf_counter()
        async with self.session.post(
            f"{self.url}/api/snap-requests/bulk", json={"items": items}, headers=self.auth
        ) as answer:
            results = (await answer.json(content_type=None))["results"]
        ids = [result.get("requestId") for result in results]
        if not all(isinstance(i, int) for i in ids):
            return time.perf_counter() - started, [f"bulk answered {results}"]
        done = await asyncio.gather(*(self._poll(i) for i in ids))
        seconds = time.perf_counter() - started
        return seconds, check([snap for snaps in done for snap in snaps])

    async def _poll(self, request_id: int) -> list[dict]:
        while True:
            async with self.session.get(
                f"{self.url}/api/snap-requests/{request_id}", headers=self.auth
            ) as answer:
                body = await answer.json(content_type=None)
            if answer.status != 200:
                raise RuntimeError(f"snap request {request_id} → {answer.status}: {body}")
            if body.get("status") == "done":
                return body["result"]
            await asyncio.sleep(POLL_SECONDS)


def check(snaps: list[dict]) -> list[str]:
    """What is wrong with a round's results (empty when every example is there once)."""
    names = sorted(snap.get("component", "") for snap in snaps)
    problems = []
    if len(names) != EXAMPLES or len(set(names)) != EXAMPLES:
        problems.append(f"{len(names)} snaps ({len(set(names))} distinct), {EXAMPLES} expected")
    if any(not snap.get("width") or not snap.get("height") for snap in snaps):
        problems.append("a snap without a size")
    return problems


async def renderer_seconds(session: aiohttp.ClientSession, url: str) -> float | None:
    """The renderer's ``darkroom_render_example_seconds`` sum: seconds spent on requests."""
    try:
        async with session.get(url + "/metrics") as answer:
            text = await answer.text()
    except aiohttp.ClientError:
        return None
    match = re.search(r"^darkroom_render_example_seconds_sum\{[^}]*\} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


# --- the ceiling: a bare playwright loop ------------------------------------------------------


async def bare_round(
    browser: Browser, files: dict[str, bytes], concurrency: int, *, cdp: bool = False
) -> float:
    """``concurrency`` fresh contexts at once, each screenshotting its chunk; the seconds.
    ``cdp``: capture with one DevTools ``Page.captureScreenshot`` call per example instead of
    ``page.screenshot``."""
    width, height = VIEWPORT

    async def serve(route: Route) -> None:
        path = route.request.url.removeprefix(ORIGIN).split("?", 1)[0]
        data = files.get(path)
        if data is None:
            await route.fulfill(status=404, body=b"")
            return
        kind = "text/html" if path.endswith(".html") else "text/javascript"
        await route.fulfill(status=200, body=data, headers={"content-type": kind})

    async def one(chunk: dict[str, int] | None) -> int:
        context = await browser.new_context(
            viewport={"width": width, "height": height}, device_scale_factor=1
        )
        try:
            await context.route("**/*", serve)
            page = await context.new_page()
            session = await context.new_cdp_session(page) if cdp else None
            if session is not None:  # a clipped capture restores the session's own metrics
                metrics = {"width": width, "height": height, "deviceScaleFactor": 1}
                await session.send(
                    "Emulation.setDeviceMetricsOverride", {**metrics, "mobile": False}
                )
            await page.goto(ORIGIN + "/iframe.html", wait_until="load")
            await page.wait_for_function(_HAPPO_READY, polling=50)
            await page.evaluate("chunk => window.happo.init({chunk})", chunk)
            shots = 0
            while (box := await page.evaluate(_NEXT_AND_BOX)) is not None:
                if session is not None:
                    shot = await session.send(
                        "Page.captureScreenshot", {"format": "png", "clip": {**box, "scale": 1}}
                    )
                    png = base64.b64decode(shot["data"])
                else:
                    png = await page.screenshot(clip=box, type="png")
                shots += png.startswith(b"\x89PNG")
            return shots
        finally:
            await context.close()

    started = time.perf_counter()
    shots = await asyncio.gather(*(one(chunk) for chunk in chunks(concurrency)))
    seconds = time.perf_counter() - started
    if sum(shots) != EXAMPLES:
        raise RuntimeError(f"the bare loop shot {sum(shots)} examples, {EXAMPLES} expected")
    return seconds


# --- the scenario -----------------------------------------------------------------------------


@dataclass
class Tally:
    darkroom: dict[int, list[float]] = field(default_factory=dict)
    bare: dict[int, list[float]] = field(default_factory=dict)
    cdp: dict[int, list[float]] = field(default_factory=dict)
    renderer: dict[int, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


async def bench(platform: Platform, chromium: str, rounds: int) -> Tally:
    from playwright.async_api import async_playwright

    from services.rendering.chromium import CHROMIUM_ARGS

    account = platform.create_account()
    files = package_files()
    rendering_url = f"http://127.0.0.1:{platform.env['DARKROOM_RENDERING_PORT']}"
    tally = Tally()
    async with aiohttp.ClientSession() as session, async_playwright() as playwright:
        token = account["token"]
        api = Api(session, platform.url, {"Authorization": f"Bearer {token}"})
        path = await api.upload(zipped(files))
        browser = await playwright.chromium.launch(
            executable_path=chromium, args=list(CHROMIUM_ARGS), headless=True
        )
        try:
            for concurrency in CONCURRENCIES:
                ours, bare, cdp, busy = [], [], [], []
                for r in range(rounds + 1):  # round 0 is the warm-up
                    before = await renderer_seconds(session, rendering_url)
                    target = f"bench-c{concurrency}-r{r}-{time.time_ns()}"
                    seconds, problems = await api.render(path, target, concurrency)
                    after = await renderer_seconds(session, rendering_url)
                    tally.errors += [f"c={concurrency} round {r}: {p}" for p in problems]
                    bare_seconds = await bare_round(browser, files, concurrency)
                    cdp_seconds = await bare_round(browser, files, concurrency, cdp=True)
                    if r == 0:
                        continue
                    ours.append(seconds)
                    bare.append(bare_seconds)
                    cdp.append(cdp_seconds)
                    if before is not None and after is not None:
                        busy.append(after - before)
                tally.darkroom[concurrency] = ours
                tally.bare[concurrency] = bare
                tally.cdp[concurrency] = cdp
                tally.renderer[concurrency] = busy
        finally:
            await browser.close()
    return tally


def run(settings: Settings) -> list[Table]:
    """Start the platform, run the rounds, stop it; one table per concurrency."""
    from services.rendering.chromium import find_chromium

    rounds = max(1, int(os.environ.get("BENCH_RENDER_ROUNDS", 5)))
    chromium = find_chromium(None)
    if chromium is None:
        print("bench: rendering skipped: no Chromium (apt-get install chromium)", flush=True)
        return []
    platform = darkroom.start(env={"DARKROOM_RENDER_CONCURRENCY": str(max(CONCURRENCIES))})
    try:
        tally = asyncio.run(bench(platform, chromium, rounds))
    finally:
        platform.stop()

    tables = []
    for concurrency in CONCURRENCIES:
        ours, bare, cdp = (t[concurrency] for t in (tally.darkroom, tally.bare, tally.cdp))
        ceiling = f"bare playwright c={concurrency} (ceiling)"
        capture = f"bare CDP capture c={concurrency}"
        ratio, versus_cdp = median_ratio(ours, bare), median_ratio(ours, cdp)
        verdict = "meets" if ratio >= GOAL else "misses"
        busy = tally.renderer[concurrency]
        note = (
            f"{ratio:.2f}× the bare loop's examples/s (median rounds): {verdict}"
            f" the {GOAL:g}× goal ({versus_cdp:.2f}× the CDP loop's); a round"
            f" {statistics.median(ours):.2f} s (median)"
        )
        if busy:
            note += (
                f", the renderer busy {statistics.median(busy) / concurrency:.2f} s per request"
                " (render and store)"
            )
        if tally.errors:
            note += f"; {len(tally.errors)} ERRORS (see extra)"
        rows = [
            per_example(f"Darkroom c={concurrency}", ours, EXAMPLES, note),
            per_example(
                ceiling,
                bare,
                EXAMPLES,
                f"a round {statistics.median(bare):.2f} s (median): {concurrency} fresh"
                " context(s), open, then evaluate + page.screenshot(clip) per example",
            ),
            per_example(
                capture,
                cdp,
                EXAMPLES,
                f"a round {statistics.median(cdp):.2f} s (median): the same loop capturing"
                " with one Page.captureScreenshot per example (as the renderer does)",
            ),
        ]
        title = (
            f"7. Render speed at concurrency {concurrency}: {EXAMPLES} examples per round"
            f" ({rounds} rounds after 1 warm-up; req/s = examples/s, p50/p99 = a round's time"
            f" per example; goal ≥ {GOAL:g}× the bare playwright loop)"
        )
        extra = {
            "examples_per_round": EXAMPLES,
            "concurrency": concurrency,
            "viewport": f"{VIEWPORT[0]}x{VIEWPORT[1]}",
            "rounds": rounds,
            "goal_ratio": GOAL,
            "ratio_of_medians": ratio,
            "ratio_of_medians_vs_cdp": versus_cdp,
            "darkroom_round_s": ours,
            "bare_round_s": bare,
            "cdp_round_s": cdp,
            "renderer_busy_s_per_round": busy,
            "poll_s": POLL_SECONDS,
            "chromium": chromium,
            "errors": tally.errors,
        }
        tables.append(
            Table(f"rendering-c{concurrency}", title, rows, ceiling, extra, versus=(capture,))
        )
    return tables
