"""What the rendering fault tests share: the package they render (one slow example, three
quick ones), a renderer subprocess and the processes it started (told from everyone else's
by a marker in their environment or their browser's process group), a platform without the
rendering service, the snap requests and async report submitted to it, and what the
platform recorded for them, read straight from the database and the queues."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import re
import signal
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import AMQP_URL, Stack, start_platform
from tests.reports_support import jwt_auth
from tests.workers_support import Process, wait_healthy

#: Snap requests per test: one target each, all of the same package.
TARGETS = 4
#: Deliveries (and browser contexts) one renderer holds at once.
CONCURRENCY = 2
#: How long the slow example's ``render()`` waits, in ms.
SLOW_MS = 3000
#: Seconds into the slow example (of every request the renderer holds) before the kill.
INTO_THE_EXAMPLE = 1.0
#: Where the slow example reports that it began: a request outside the package, which the
#: renderer refuses and logs (``render.request_refused``), so the test sees it in the log.
STARTED = "https://started.darkroom-chaos.invalid/"
#: ``(component, variant)`` → the size of its screenshot.
EXAMPLES = {
    ("Slow", "timer"): (80, 40),
    ("Box", "red"): (40, 30),
    ("Box", "blue"): (30, 40),
    ("Bar", "green"): (100, 10),
}
#: The environment variable that marks a renderer's processes.
MARKER = "DARKROOM_CHAOS_RENDERER"
RENDERS_QUEUE = "rendering.renders"

_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8">
<style>html, body { margin: 0; padding: 0; background: #fff; }</style>
</head><body><script src="/bundle.js"></script></body></html>
"""

_BUNDLE = """
(function () {
  function box(width, height, colour) {
    return function (root) {
      root.innerHTML = '<div style="display:inline-block;width:' + width + 'px;height:'
        + height + 'px;background:' + colour + '"></div>';
    };
  }
  var examples = [
    { component: 'Slow', variant: 'timer', render: function (root) {
        fetch('STARTED' + target).catch(function () {});
        return new Promise(function (resolve) {
          setTimeout(function () { box(80, 40, 'rgb(128,0,128)')(root); resolve(); }, SLOW_MS);
        });
    } },
    { component: 'Box', variant: 'red', render: box(40, 30, 'rgb(255,0,0)') },
    { component: 'Box', variant: 'blue', render: box(30, 40, 'rgb(0,0,255)') },
    { component: 'Bar', variant: 'green', render: box(100, 10, 'rgb(0,128,0)') },
  ];
  var queue = [];
  var target = '';
  window.happo = {
    init: function (options) { queue = examples.slice(); target = options.targetName; },
    nextExample: async function () {
      var example = queue.shift();
      if (!example) { return undefined; }
      Array.from(document.body.children).forEach(function (node) {
        if (node.tagName !== 'SCRIPT') { node.remove(); }
      });
      var root = document.createElement('div');
      root.style.display = 'contents';
      document.body.appendChild(root);
      await example.render(root);
      return { component: example.component, variant: example.variant };
    },
  };
})();
""".replace("SLOW_MS", str(SLOW_MS)).replace("STARTED", STARTED)


def _package() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in (("iframe.html", _PAGE), ("bundle.js", _BUNDLE)):
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, text)
    return buffer.getvalue()


# --- the processes a renderer started -----------------------------------------------------------


@dataclass(frozen=True)
class _Proc:
    pid: int
    pgid: int
    state: str
    #: The executable's name (Chromium's helpers rewrite their command line, not this).
    exe: str
    args: tuple[str, ...]

    @property
    def kind(self) -> str:
        """``node``, ``chromium``, ``chromium --type=renderer``, ``chrome_crashpad_handler``…"""
        found = re.search(r"(?:^|\s)(--type=\S+)", " ".join(self.args))
        return f"{self.exe} {found[1]}" if found else self.exe

    @property
    def chromium(self) -> bool:
        return "chrom" in self.exe


def _processes() -> dict[int, _Proc]:
    found: dict[int, _Proc] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            raw = (entry / "cmdline").read_bytes()
            exe = Path(os.readlink(entry / "exe")).name
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        args = tuple(a.decode(errors="replace") for a in raw.split(b"\0") if a)
        found[int(entry.name)] = _Proc(int(entry.name), int(fields[2]), fields[0], exe, args)
    return found


def _marked(pid: int, marker: str) -> bool:
    try:
        return marker.encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


class Family:
    """The live processes one renderer started: those carrying its marker (itself, the node
    driver, Chromium, the crash handlers) and every member of its browsers' process groups,
    remembered from the moment they were first seen (a helper outliving its browser is still
    found). Zombies count as gone."""

    def __init__(self, tag: str) -> None:
        self.marker = f"{MARKER}={tag}"
        self.groups: set[int] = set()
        self.browsers_seen: set[int] = set()

    def alive(self) -> dict[int, _Proc]:
        procs = {pid: p for pid, p in _processes().items() if p.state not in {"Z", "X"}}
        marked = {pid for pid in procs if _marked(pid, self.marker)}
        for pid in marked:
            if procs[pid].pgid == pid and procs[pid].chromium:
                self.groups.add(pid)
                self.browsers_seen.add(pid)
        members = marked | {pid for pid, p in procs.items() if p.pgid in self.groups and p.chromium}
        return {pid: procs[pid] for pid in members}

    def browsers(self) -> list[int]:
        """The running browser processes (the one playwright launched, not its helpers)."""
        return sorted(
            pid
            for pid, p in self.alive().items()
            if p.chromium
            and any(a.startswith("--darkroom-browser=") for a in p.args)
            and "--type=" not in p.kind
        )

    async def gone(self, seconds: float) -> tuple[dict[int, _Proc], float]:
        """Wait up to ``seconds`` for every process to exit: what is left, and how long it
        took."""
        started = time.monotonic()
        while (left := self.alive()) and time.monotonic() - started < seconds:
            await asyncio.sleep(0.1)
        return left, time.monotonic() - started

    def kill(self) -> int:
        """SIGKILL what is left (each by its pid); how many there were."""
        left = self.alive()
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        return len(left)


#: Log events of a renderer that mean a render was begun again or given up.
INCIDENTS = (
    "render.browser_lost",
    "rendering.browser_relaunch",
    "rendering.browser_killed",
    "rendering.context_close_hung",
    "render.example_timeout",
    "event.failed",
)


def _incidents(log: str) -> str:
    """``"event.failed x2, render.browser_lost x1"`` (empty when none happened)."""
    counted = {name: log.count(f'"{name}"') for name in INCIDENTS}
    return ", ".join(f"{name} x{n}" for name, n in counted.items() if n)


def _notable(log: str) -> str:
    """A renderer's log without its HTTP access lines (what to show when a count is off)."""
    return "\n".join(line for line in log.splitlines() if '"http.request"' not in line)[-6000:]


def _describe(procs: dict[int, _Proc]) -> str:
    return ", ".join(f"{pid} {p.kind}" for pid, p in procs.items())


def _kinds(procs: dict[int, _Proc]) -> str:
    """``3 chromium --type=renderer, 1 node, …``"""
    counted = Counter(p.kind for p in procs.values())
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counted.items()))


# --- a renderer, its platform and its work ----------------------------------------------------


@dataclass
class Renderer:
    """A ``python -m services.rendering`` process and the processes it started."""

    process: Process
    family: Family
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def stderr(self) -> str:
        return self.process.stderr()

    async def launched(self, seconds: float) -> float:
        """Wait until its Chromium runs (launched by its first render); when that was."""
        deadline = time.monotonic() + seconds
        while not ("rendering.browser_launched" in self.stderr() and self.family.browsers()):
            assert self.process.popen.poll() is None, self.stderr()[-3000:]
            assert time.monotonic() < deadline, f"no render began: {self.stderr()[-3000:]}"
            await asyncio.sleep(0.05)
        return time.monotonic()

    async def in_slow_example(self, requests: int, seconds: float) -> float:
        """Wait until ``requests`` of its renders have begun the slow example; when."""
        deadline = time.monotonic() + seconds
        while self.stderr().count(STARTED) < requests:
            assert self.process.popen.poll() is None, self.stderr()[-3000:]
            assert time.monotonic() < deadline, f"no slow example began: {self.stderr()[-3000:]}"
            await asyncio.sleep(0.05)
        return time.monotonic()

    async def metric(self, http: aiohttp.ClientSession, name: str, **labels: str) -> float:
        async with http.get(f"http://127.0.0.1:{self.port}/metrics") as answer:
            text = await answer.text()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and labels.items() <= sample.labels.items():
                    return sample.value
        return 0.0

    async def stop(self) -> int | None:
        """SIGTERM (a graceful stop closes its browser); its exit code."""
        if self.process.popen.poll() is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.process.terminate(), 30)
        return self.process.popen.poll()

    def close(self) -> None:
        """SIGKILL whatever of it is still running; its log goes."""
        self.process.kill()
        self.family.kill()


async def _start_renderer(
    http: aiohttp.ClientSession, env: dict[str, str], **extra: str
) -> Renderer:
    tag = uuid.uuid4().hex
    port = int(env["DARKROOM_RENDERING_PORT"])
    process = Process(
        "services.rendering",
        {
            **env,
            MARKER: tag,
            "DARKROOM_LOG_LEVEL": "info",
            "DARKROOM_LOG_FORMAT": "json",
            "DARKROOM_RENDER_CONCURRENCY": str(CONCURRENCY),
            "DARKROOM_SHUTDOWN_GRACE": "5",
            **extra,
        },
    )
    renderer = Renderer(process, Family(tag), port)
    if not await wait_healthy(http, port, 30):
        stderr = process.stderr()
        process.kill()
        pytest.fail(f"the renderer did not start: {stderr[-3000:]}")
    return renderer


@contextlib.asynccontextmanager
async def _platform(name: str, secrets_env, tmp_path, inbox) -> AsyncIterator[Stack]:
    running = start_platform(name, secrets_env, tmp_path, inbox, without=("rendering",))
    platform = await anext(running)
    try:
        yield platform
    finally:
        await running.aclose()


@dataclass
class Work:
    """The snap requests of one test and the async report waiting for them."""

    account: dict
    ids: list[int]
    sha: str


async def _submit(http: aiohttp.ClientSession, platform: Stack) -> Work:
    """Upload the package, ask for one snap request per target and an async report."""
    account = platform.create_account("Chaos Renderer")
    headers = jwt_auth(account)
    data = _package()
    md5 = hashlib.md5(data).hexdigest()  # noqa: S324 - the Happo clients name packages by MD5
    form = aiohttp.FormData()
    form.add_field("payload", data, filename="payload.zip", content_type="application/zip")
    async with http.post(
        f"{platform.url}/api/snap-requests/assets/{md5}", data=form, headers=headers
    ) as answer:
        assert answer.status == 200, await answer.text()
        path = (await answer.json())["path"]
    payload = json.dumps({"viewport": "640x480", "staticPackage": path})
    items = [
        {
            "type": "browser-chrome",
            "targetName": f"chrome-{n}",
            "payloadString": payload,
            "payloadHash": "h",
        }
        for n in range(TARGETS)
    ]
    async with http.post(
        f"{platform.url}/api/snap-requests/bulk", json={"items": items}, headers=headers
    ) as answer:
        assert answer.status == 200, await answer.text()
        ids = [result["requestId"] for result in (await answer.json())["results"]]
    assert len(set(ids)) == TARGETS, ids
    sha = uuid.uuid4().hex
    async with http.post(
        f"{platform.url}/api/async-reports/{sha}", json={"requestIds": ids}, headers=headers
    ) as answer:
        assert answer.status == 200, await answer.text()
    return Work(account, ids, sha)


async def _completed(
    http: aiohttp.ClientSession, platform: Stack, work: Work, seconds: float
) -> dict:
    """The report's status once it completed."""
    deadline = time.monotonic() + seconds
    while True:
        async with http.get(
            f"{platform.url}/api/reports/{work.sha}/status", headers=jwt_auth(work.account)
        ) as answer:
            status = await answer.json()
        if status.get("completedAt"):
            return status
        assert time.monotonic() < deadline, f"the report did not complete: {status}"
        await asyncio.sleep(0.2)


async def _snapshots(http: aiohttp.ClientSession, platform: Stack, work: Work) -> list[dict]:
    async with http.get(
        f"{platform.url}/api/reports/{work.sha}", headers=jwt_auth(work.account)
    ) as answer:
        assert answer.status == 200
        return await answer.json()


async def _queue_depths(exchange: str) -> tuple[int, int]:
    """Messages ready in the render queue and in its dead-letter queue."""
    connection = await aio_pika.connect(AMQP_URL)
    try:
        depths = []
        for name in (f"{exchange}.{RENDERS_QUEUE}", f"{exchange}.{RENDERS_QUEUE}.dead"):
            channel = await connection.channel()
            queue = await channel.declare_queue(name, passive=True)
            depths.append(queue.declaration_result.message_count or 0)
            await channel.close()
        return depths[0], depths[1]
    finally:
        await connection.close()


async def _drained(exchange: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while (await _queue_depths(exchange))[0]:
        assert time.monotonic() < deadline, "the render queue did not drain"
        await asyncio.sleep(0.1)


@dataclass
class Effects:
    """What the platform recorded for one test's requests (read once no renderer runs)."""

    states: dict[int, str]
    #: request id → ``render.completed`` events recorded by the renderers.
    completed: dict[int, int]
    failed: int
    #: Deliveries of ``render.requested`` the renderers applied (their inbox).
    applied: int
    #: ``render.*`` events reports applied (its inbox).
    consumed: int
    #: Snapshot rows of the report, and how many (component, variant, target) repeat.
    snapshot_rows: int
    snapshot_repeats: int
    report_completed_events: int
    #: Happo images the account holds, and distinct images the report shows.
    images: int
    report_images: int


async def _effects(platform: Stack, work: Work) -> Effects:
    conn = await asyncpg.connect(platform.env["DATABASE_URL"])
    try:
        rows = await conn.fetch(
            "SELECT id, state FROM reports.snap_requests WHERE id = ANY($1::bigint[])", work.ids
        )
        outcomes = await conn.fetch(
            "SELECT type, (envelope->'data'->>'request_id')::bigint AS request_id, count(*) AS n"
            " FROM rendering.outbox WHERE type LIKE 'render.%' GROUP BY 1, 2"
        )
        snaps = await conn.fetch(
            "SELECT s.component, s.variant, s.target, count(*) AS n, min(s.image_hash) AS image"
            " FROM reports.snapshots s JOIN reports.reports r ON r.id = s.report_id"
            " WHERE r.sha = $1 GROUP BY 1, 2, 3",
            work.sha,
        )
        return Effects(
            states={row["id"]: row["state"] for row in rows},
            completed={
                row["request_id"]: row["n"] for row in outcomes if row["type"] == "render.completed"
            },
            failed=sum(row["n"] for row in outcomes if row["type"] == "render.failed"),
            applied=await conn.fetchval(
                "SELECT count(*) FROM rendering.processed_events WHERE consumer = $1",
                RENDERS_QUEUE,
            ),
            consumed=await conn.fetchval(
                "SELECT count(*) FROM reports.processed_events WHERE consumer = 'reports.rendered'"
            ),
            snapshot_rows=sum(row["n"] for row in snaps),
            snapshot_repeats=sum(row["n"] - 1 for row in snaps),
            report_completed_events=await conn.fetchval(
                "SELECT count(*) FROM reports.outbox WHERE type = 'report.completed'"
                " AND envelope->'data'->>'sha' = $1",
                work.sha,
            ),
            images=await conn.fetchval(
                "SELECT count(*) FROM ingest.happo_images WHERE account_id = $1",
                uuid.UUID(work.account["account_id"]),
            ),
            report_images=len({row["image"] for row in snaps}),
        )
    finally:
        await conn.close()


async def _committed_by_now(platform: Stack) -> tuple[int, int]:
    """``render.*`` outcomes the renderers recorded so far, and screenshots ingest stored."""
    conn = await asyncpg.connect(platform.env["DATABASE_URL"])
    try:
        outcomes = await conn.fetchval(
            "SELECT count(*) FROM rendering.outbox WHERE type LIKE 'render.%'"
        )
        images = await conn.fetchval("SELECT count(*) FROM ingest.happo_images")
        return outcomes, images
    finally:
        await conn.close()


def _assert_once(effects: Effects, work: Work, snapshots: list[dict], status: dict) -> None:
    expected = TARGETS * len(EXAMPLES)
    assert effects.states == {rid: "done" for rid in work.ids}, effects
    assert effects.completed == {rid: 1 for rid in work.ids}, effects
    assert effects.failed == 0, effects
    assert effects.applied == TARGETS, effects
    assert effects.consumed == TARGETS, effects
    assert effects.snapshot_rows == expected and effects.snapshot_repeats == 0, effects
    assert effects.report_completed_events == 1, effects
    # Every target renders the same pixels: one stored image per example, none left over.
    assert effects.images == effects.report_images == len(EXAMPLES), effects
    assert status["snapshotCount"] == expected, status
    keys = {(s["component"], s["variant"], s["target"]) for s in snapshots}
    assert len(snapshots) == len(keys) == expected, snapshots
    for snap in snapshots:
        assert (snap["width"], snap["height"]) == EXAMPLES[(snap["component"], snap["variant"])]


def _duplicates(effects: Effects) -> int:
    return (
        sum(n - 1 for n in effects.completed.values())
        + effects.snapshot_repeats
        + max(effects.consumed - TARGETS, 0)
        + max(effects.report_completed_events - 1, 0)
    )
