"""The harness of the hostile-render tests (test_rendering_hostile.py): the platform's short
limits, a hostile static package whose ``window.happo`` does what each request's ``only``
asks (probe the network one of nine ways, spin, never resolve, repeat, hand out 10,000
examples, build a huge DOM, open dialogs and a popup), a loopback listener that counts the
TCP connections a page manages to make, and the public API driven as happo 6 drives it:
upload a package, submit bulk snap requests, poll them to the end, and run a hostile case next
to another account's render and before the attacker's own good one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from services.rendering.app import BROWSERS
from shared.runtime import POOL
from tests.conftest import Stack
from tests.happo_packages import EXPECTED, pixel
from tests.reports_support import jwt_auth

EXAMPLE_SECONDS = 3
MAX_EXAMPLES = 50
MAX_DOM_NODES = 5000
MAX_UNPACKED = 64 * 1024 * 1024
MAX_ENTRIES = 1000
VIEWPORT = "640x480"

# --- the hostile package ------------------------------------------------------------------------

#: ``window.happo`` of a package that does what the payload's ``only`` (handed to ``init``
#: untouched) asks: ``{scenario, url}``. A network probe tries ``url`` one way, then throws
#: what it saw, so the reason the client gets carries it: ``LEAKED …`` would mean the page
#: read an answer; ``blocked …`` that it could not.
HOSTILE_JS = r"""
let plan = {};
let calls = 0;
const root = () => document.getElementById('root');
const box = colour => {
  root().innerHTML = `<div style="width:40px;height:40px;background:${colour}"></div>`;
};
const within = (promise, ms) =>
  Promise.race([promise, new Promise(r => setTimeout(() => r(`no answer in ${ms} ms`), ms))]);

const PROBES = {
  async fetch(url) {
    try {
      const r = await fetch(url);
      return `LEAKED ${r.status} ${(await r.text()).slice(0, 80)}`;
    } catch (e) { return `blocked ${e}`; }
  },
  xhr: url => new Promise(resolve => {
    const x = new XMLHttpRequest();
    x.open('GET', url);
    x.onload = () => resolve(`LEAKED ${x.status} ${x.responseText.slice(0, 80)}`);
    x.onerror = () => resolve('blocked xhr error event');
    x.send();
  }),
  img: url => new Promise(resolve => {
    const img = new Image();
    img.onload = () => resolve(`LEAKED image ${img.naturalWidth}x${img.naturalHeight}`);
    img.onerror = () => resolve('blocked img error event');
    img.src = url;
    root().appendChild(img);
  }),
  async css(url) {
    // CSS url() twice: a background image and a web font, whose load says how it went.
    const style = document.createElement('style');
    style.textContent = `@font-face { font-family: Probe; src: url("${url}"); }`;
    document.head.appendChild(style);
    root().innerHTML = `<div style="width:40px;height:40px;font:16px Probe;`
      + `background-image:url('${url}')">x</div>`;
    try { await document.fonts.load('16px Probe'); } catch (e) { /* status below */ }
    const face = [...document.fonts].find(f => f.family === 'Probe');
    const status = face ? face.status : 'missing';
    return status === 'loaded' ? 'LEAKED font loaded' : `blocked font ${status}`;
  },
  websocket: url => new Promise(resolve => {
    const ws = new WebSocket(url);
    ws.onopen = () => resolve('LEAKED websocket open');
    ws.onmessage = e => resolve(`LEAKED websocket message ${e.data}`);
    ws.onclose = e => resolve(`blocked websocket closed ${e.code}`);
  }),
  iframe: url => new Promise(resolve => {
    const frame = document.createElement('iframe');
    frame.onload = () => {
      let text = 'opaque';
      try { text = frame.contentDocument.body.innerText.slice(0, 80); } catch (e) { /* x-origin */ }
      resolve(text === 'opaque' ? 'blocked iframe error page' : `LEAKED iframe ${text}`);
    };
    frame.src = url;
    root().appendChild(frame);
  }),
  async beacon(url) {
    const queued = navigator.sendBeacon(url, 'beacon');
    await new Promise(r => setTimeout(r, 1000));  // fire and forget: give it time to go
    return `sent, queued=${queued}`;
  },
  eventsource: url => new Promise(resolve => {
    const source = new EventSource(url);
    source.onopen = () => resolve('LEAKED eventsource open');
    source.onerror = () => { source.close(); resolve('blocked eventsource error event'); };
  }),
};

async function dialogs() {
  const popup = window.open(plan.url, '_blank');
  const answers = [];
  for (let i = 0; i < 5; i++) alert(`alert ${i}`);
  answers.push(`confirm=${confirm('really?')}`);
  answers.push(`prompt=${prompt('name?', 'default')}`);
  window.onbeforeunload = e => { e.preventDefault(); e.returnValue = 'stay'; return 'stay'; };
  for (let i = 0; i < 20 && popup && !popup.closed; i++) await new Promise(r => setTimeout(r, 50));
  answers.push(`popup=${popup === null ? 'null' : popup.closed ? 'closed' : 'open'}`);
  return answers.join(' ');
}

window.happo = {
  init({only} = {}) { plan = only || {}; calls = 0; },
  async nextExample() {
    calls += 1;
    const scenario = plan.scenario;
    if (PROBES[scenario]) {
      const seen = await within(PROBES[scenario](plan.url), 2000);
      throw new Error(`probe ${scenario} of ${plan.url}: ${seen}`);
    }
    if (scenario === 'busy-loop') {
      if (calls === 1) { box('#0a0'); return {component: 'Loop', variant: 'first'}; }
      for (;;) { /* never yields: the renderer's main thread is taken */ }
    }
    if (scenario === 'never-resolves') return new Promise(() => {});
    if (scenario === 'repeats') { box('#0a0'); return {component: 'Same', variant: 'again'}; }
    if (scenario === 'many') {
      if (calls > 10000) return undefined;
      box(`hsl(${calls % 360}, 80%, 50%)`);
      return {component: 'Many', variant: `v${calls}`};
    }
    if (scenario === 'huge-dom') {
      if (calls > 1) return undefined;
      root().innerHTML = '<i></i>'.repeat(plan.nodes);
      return {component: 'Huge', variant: 'dom'};
    }
    if (scenario === 'dialogs') {
      if (calls > 1) return undefined;
      const seen = await dialogs();
      box('rgb(0, 0, 255)');
      return {component: 'Dialogs', variant: seen};
    }
    throw new Error(`unknown scenario ${scenario}`);
  },
};
"""

HOSTILE_PAGE = (
    "<!DOCTYPE html><html><head><meta charset='utf-8'><script src='/bundle.js'></script>"
    "</head><body style='margin:0;background:#fff'><div id='root'></div></body></html>"
)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 - the Happo clients' package names


# --- the platform, the accounts, the listener ---------------------------------------------------


@dataclass
class Listener:
    """TCP listeners on loopback (IPv4, and IPv6 when there is one) on one port, standing for
    everything inside the deployment; they count connections, not requests, so a refusal after
    connect would still show."""

    port: int
    connections: int = 0
    servers: list[asyncio.Server] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            body = b"internal secret"
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                b"Access-Control-Allow-Origin: *\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        writer.close()


@dataclass
class Tenant:
    """An account and the package path it uploaded."""

    account: dict
    path: str = ""


@dataclass
class World:
    """The module's platform, its two accounts, the good package and local files."""

    platform: Stack
    attacker: Tenant
    bystander: Tenant
    good: bytes
    files: Path
    targets: itertools.count = field(default_factory=itertools.count)


# --- the public API, as a client drives it ------------------------------------------------------


async def upload(client, platform, account: dict, data: bytes) -> str:
    form = aiohttp.FormData()
    form.add_field("payload", data, filename="payload.zip", content_type="application/zip")
    async with client.post(
        f"{platform.url}/api/snap-requests/assets/{md5(data)}",
        data=form,
        headers=jwt_auth(account),
    ) as r:
        assert r.status == 200, await r.text()
        return (await r.json())["path"]


def payload(path: str, **extra) -> str:
    return json.dumps(
        {
            "viewport": VIEWPORT,
            "freezeAnimations": "last-frame",
            "prefersReducedMotion": True,
            "allowPointerEvents": True,
            "failOnWaitForTimeout": True,
            "staticPackage": path,
            **extra,
        }
    )


@dataclass
class Outcome:
    """What polling one snap request ended on."""

    request_id: int
    status: int
    body: dict
    seconds: float

    @property
    def reason(self) -> str:
        return self.body.get("error", {}).get("message", "")


async def submit(client, platform, account: dict, payloads: list[tuple[str, str]]) -> list[int]:
    """Bulk snap requests ``(targetName, payloadString)``; their ids."""
    items = [
        {
            "type": "browser-chrome",
            "targetName": t,
            "payloadString": p,
            "payloadHash": md5(p.encode()),
        }
        for t, p in payloads
    ]
    async with client.post(
        f"{platform.url}/api/snap-requests/bulk", json={"items": items}, headers=jwt_auth(account)
    ) as r:
        assert r.status == 200, await r.text()
        results = (await r.json())["results"]
    ids = [result.get("requestId") for result in results]
    assert all(isinstance(i, int) for i in ids), results
    return ids


async def finished(client, platform, account: dict, request_id: int, seconds=90) -> Outcome:
    """Poll like happo.io until the request is done or answers an error."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        async with client.get(
            f"{platform.url}/api/snap-requests/{request_id}", headers=jwt_auth(account)
        ) as r:
            body = await r.json()
        if r.status != 200 or body.get("status") == "done":
            return Outcome(request_id, r.status, body, time.monotonic() - started)
        await asyncio.sleep(0.2)
    raise AssertionError(f"snap request {request_id} still pending after {seconds} s")


async def renders_correctly(client, world: World, tenant: Tenant, outcome: Outcome) -> None:
    """The good package's request is done and each screenshot is what the package draws."""
    assert outcome.status == 200 and outcome.body["status"] == "done", outcome
    snaps = {(s["component"], s["variant"]): s for s in outcome.body["result"]}
    assert set(snaps) == set(EXPECTED), sorted(snaps)
    for key, want in EXPECTED.items():
        snap = snaps[key]
        if "size" in want:
            assert (snap["width"], snap["height"]) == want["size"], (key, snap)
        if want.get("colour") is not None:
            async with client.get(snap["url"], headers=jwt_auth(tenant.account)) as r:
                assert r.status == 200
                png = await r.read()
            centre = pixel(png, snap["width"] // 2, snap["height"] // 2)
            assert centre == want["colour"], (key, centre)


@dataclass
class Case:
    """One hostile case's measurements: the hostile outcomes, the bystander's render submitted
    at the same moment, the attacker's good render afterwards, the attacker's screenshots
    stored meanwhile (a failed request stores none) and the browser's relaunches."""

    outcomes: list[Outcome]
    bystander: Outcome
    survivor: Outcome
    stored: int
    restarts: int

    @property
    def fives(self) -> int:
        everything = [*self.outcomes, self.bystander, self.survivor]
        return sum(o.status >= 500 for o in everything)

    def settled(self) -> str:
        return (
            f"another account's render submitted at the same moment: done in"
            f" {self.bystander.seconds:.1f} s, right pixels; afterwards the attacker's good"
            f" package: done in {self.survivor.seconds:.1f} s, right pixels; browser relaunches:"
            f" {self.restarts}"
        )


async def images_of(platform, account: dict) -> int:
    # The platform's own pool: the machine's Postgres is shared and has few connections spare.
    return await platform.apps["rendering"][POOL].fetchval(
        "SELECT count(*) FROM ingest.happo_images WHERE account_id = $1",
        uuid.UUID(account["account_id"]),
    )


def restarts(platform) -> int:
    pool = platform.apps["rendering"][BROWSERS]
    return pool.restarts if pool is not None else 0


async def alongside(client, world: World, hostile) -> tuple[Outcome, Outcome, int, int]:
    """Run the coroutine function ``hostile`` while the bystander's good render goes on, then
    the attacker's good render: ``(bystander, survivor, stored, restarts)``."""
    platform = world.platform
    n = next(world.targets)
    images = await images_of(platform, world.attacker.account)
    relaunches = restarts(platform)

    async def bystander() -> Outcome:
        (request_id,) = await submit(
            client,
            platform,
            world.bystander.account,
            [(f"bystander-{n}", payload(world.bystander.path))],
        )
        return await finished(client, platform, world.bystander.account, request_id)

    by, _ = await asyncio.gather(bystander(), hostile())
    stored = await images_of(platform, world.attacker.account) - images
    (survivor_id,) = await submit(
        client,
        platform,
        world.attacker.account,
        [(f"survivor-{n}", payload(f"packages/{md5(world.good)}"))],
    )
    survivor = await finished(client, platform, world.attacker.account, survivor_id)
    await renders_correctly(client, world, world.bystander, by)
    await renders_correctly(client, world, world.attacker, survivor)
    return by, survivor, stored, restarts(platform) - relaunches


async def hostile_case(client, world: World, plans: list[tuple[str, dict]]) -> Case:
    """The attacker's hostile requests (``(name, plan)``: ``plan`` is the payload's ``only``)
    next to the bystander's good one, then the attacker's good one."""
    outcomes: list[Outcome] = []
    n = next(world.targets)

    async def hostile() -> None:
        account = world.attacker.account
        ids = await submit(
            client,
            world.platform,
            account,
            [(f"{name}-{n}", payload(world.attacker.path, only=plan)) for name, plan in plans],
        )
        polls = (finished(client, world.platform, account, i) for i in ids)
        outcomes.extend(await asyncio.gather(*polls))

    by, survivor, stored, relaunches = await alongside(client, world, hostile)
    return Case(outcomes, by, survivor, stored, relaunches)


def failed_with(outcome: Outcome, *needles: str) -> str:
    """The request failed (422, invalid_request) with a reason holding every needle."""
    assert outcome.status == 422, outcome
    assert outcome.body["error"]["code"] == "invalid_request", outcome
    for needle in needles:
        assert needle in outcome.reason, (needle, outcome.reason)
    return outcome.reason
