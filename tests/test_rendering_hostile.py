"""Hostile static packages through the public API, each a RESILIENCE.md row.

A package is untrusted JavaScript that Darkroom runs (house rule 9). Each case here uploads
one through the assets endpoints and asks for renders with bulk snap requests, as happo 6
does, then checks four things from the outside: the request fails with a reason that says
why (polled like a client: ``GET /api/snap-requests/:id`` answers 422 with it; popups and
dialogs are the one exception: they are dismissed and the render completes); no connection
leaves (a loopback listener of the test's own counts every TCP connection, and the reason
names the guard's refusal of the addresses no listener can stand for); the renderer survives
(a good package renders correctly right after); and nothing else is affected (another
account's render, submitted at the same moment, completes with the right pixels).

The platform is one of this module's own with short limits (3 s per example, 50 examples,
5,000 elements) so the limits trip in seconds, and with external fetches **on**: a page's
requests outside its package then go to the SSRF guard (the one ``remote_file_url`` uses)
rather than being refused wholesale, which is the configuration where a connection could
leave. Archives that are hostile in themselves never get that far: they are refused at upload.
The hostile package, the listener and the client-side harness are rendering_hostile_support.py;
the fixtures stay here because the platform and the listener are this module's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pyvips

from services.rendering.chromium import find_chromium
from shared.runtime import POOL
from tests.conftest import free_port, start_platform
from tests.happo_packages import pixel, write_static_package, zip_folder
from tests.rendering_hostile_support import (
    EXAMPLE_SECONDS,
    HOSTILE_JS,
    HOSTILE_PAGE,
    MAX_DOM_NODES,
    MAX_ENTRIES,
    MAX_EXAMPLES,
    MAX_UNPACKED,
    Listener,
    Tenant,
    World,
    alongside,
    failed_with,
    hostile_case,
    md5,
    upload,
)
from tests.reports_support import jwt_auth

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(find_chromium(None) is None, reason="no Chromium on this machine"),
]


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return buffer.getvalue()


# --- the platform, the accounts, the listener ---------------------------------------------------


@pytest.fixture(scope="module")
async def listener() -> AsyncIterator[Listener]:
    found = Listener(free_port())
    hosts = ["127.0.0.1"]
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        hosts.append("::1")
    for host in hosts:
        found.servers.append(await asyncio.start_server(found.handle, host, found.port))
    # The control: a connection from here is counted, so a zero below means none came.
    reader, writer = await asyncio.open_connection("127.0.0.1", found.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"internal secret" in await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert found.connections == 1
    found.connections = 0
    try:
        yield found
    finally:
        for server in found.servers:
            server.close()
            await server.wait_closed()


@pytest.fixture(scope="module")
async def platform(run_id, secrets_env, tmp_path_factory, inbox) -> AsyncIterator:
    """A platform of this module's own: short render limits, small package limits, external
    fetches on (through the SSRF guard, nothing allowed beyond public addresses)."""
    async for running in start_platform(
        f"darkroom_test_{run_id}_hostile_render",
        secrets_env,
        tmp_path_factory.mktemp("hostile-render"),
        inbox,
        DARKROOM_RENDER_EXAMPLE_SECONDS=str(EXAMPLE_SECONDS),
        DARKROOM_MAX_RENDER_EXAMPLES=str(MAX_EXAMPLES),
        DARKROOM_MAX_DOM_NODES=str(MAX_DOM_NODES),
        DARKROOM_RENDER_EXTERNAL_FETCHES="true",
        DARKROOM_RENDER_CONCURRENCY="2",
        DARKROOM_MAX_PACKAGE_UNPACKED_BYTES=str(MAX_UNPACKED),
        DARKROOM_MAX_PACKAGE_ENTRIES=str(MAX_ENTRIES),
        DARKROOM_DB_POOL_MAX="4",  # the machine's Postgres is shared
    ):
        yield running


@pytest.fixture(scope="module")
async def world(platform, tmp_path_factory) -> World:
    folder = tmp_path_factory.mktemp("packages")
    good = zip_folder(write_static_package(folder / "good"))
    hostile = _zip({"iframe.html": HOSTILE_PAGE.encode(), "bundle.js": HOSTILE_JS.encode()})
    attacker = Tenant(platform.create_account("Mallory"))
    bystander = Tenant(platform.create_account("Bystander"))
    async with aiohttp.ClientSession() as client:
        attacker.path = await upload(client, platform, attacker.account, hostile)
        assert await upload(client, platform, attacker.account, good) == f"packages/{md5(good)}"
        bystander.path = await upload(client, platform, bystander.account, good)
    # Files on this machine a page might try to read through file: URLs.
    files = tmp_path_factory.mktemp("local-files")
    (files / "secret.txt").write_text("local secret")
    return World(platform, attacker, bystander, good, files)


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


# --- a page reaching inside ---------------------------------------------------------------------

VECTORS = ("fetch", "xhr", "img", "css", "websocket", "iframe")
WHERE = {
    "link-local 169.254.169.254": "169.254.169.254",
    "loopback": "127.0.0.1:{port}",
    "private 10/8": "10.0.0.1:{port}",
}


@pytest.mark.parametrize("where", list(WHERE))
async def test_a_page_reaching_an_internal_address_gets_nothing(
    client, world, listener, resilience, where
):
    host = WHERE[where].format(port=listener.port)
    http, ws = f"http://{host}/latest/meta-data/", f"ws://{host}/socket"
    plans = [(v, {"scenario": v, "url": ws if v == "websocket" else http}) for v in VECTORS]
    if where == "loopback":  # the other spellings of loopback and two more ways out
        plans += [
            ("localhost", {"scenario": "fetch", "url": f"http://localhost:{listener.port}/"}),
            ("ipv6", {"scenario": "fetch", "url": f"http://[::1]:{listener.port}/"}),
            ("beacon", {"scenario": "beacon", "url": http}),
            ("eventsource", {"scenario": "eventsource", "url": http}),
        ]
    names = [name for name, _ in plans]
    case = await hostile_case(client, world, plans)
    guarded = 0
    for (name, plan), outcome in zip(plans, case.outcomes, strict=True):
        reason = failed_with(outcome, f"probe {plan['scenario']} of {plan['url']}: ")
        assert "LEAKED" not in reason
        if name == "websocket":
            # Every WebSocket is closed by the renderer, never connected anywhere.
            failed_with(outcome, "blocked websocket closed")
            continue
        # The guard's own refusal, named in the reason: it refused before connecting.
        why = "only GET leaves a rendered page" if name == "beacon" else " is not allowed"
        failed_with(outcome, f"refused: {plan['url']} (", f"{why})")
        guarded += 1
    assert listener.connections == 0
    assert case.stored == 0 and case.fives == 0
    beacon = " ('only GET leaves a rendered page' for the POST beacon)" if "beacon" in names else ""
    resilience.row(
        "rendering",
        f"page reaches {where}",
        injected=f"a static package whose page asks for {http} by {len(plans)} ways"
        f" ({', '.join(names)}); external fetches on (SSRF guard),"
        " nothing allowed beyond public addresses",
        observed=f"all {len(plans)} requests failed 422, the reason carrying what the page saw"
        f" (errors only); {guarded} name the guard's refusal '(a request outside the package"
        f" was refused: <url> (address … is not allowed))'{beacon}; the WebSocket is closed by"
        " the renderer (the page sees close code 0; the reason names no refusal, nor does the"
        " log); the loopback listener"
        f" accepted {listener.connections} connections; {case.settled()}",
        accepted=len(plans),
        effects=listener.connections + case.stored,
        errors_5xx=case.fives,
    )


async def test_a_page_reading_local_files_gets_nothing(client, world, listener, resilience):
    secret = world.files / "secret.txt"
    image = world.files / "local.png"
    image.write_bytes(solid_png())
    font = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    urls = {
        "fetch": secret.as_uri(),
        "xhr": secret.as_uri(),
        "img": image.as_uri(),
        "css": font.as_uri(),
        "iframe": secret.as_uri(),
    }
    plans = [(vector, {"scenario": vector, "url": url}) for vector, url in urls.items()]
    case = await hostile_case(client, world, plans)
    for (_name, plan), outcome in zip(plans, case.outcomes, strict=True):
        reason = failed_with(outcome, f"probe {plan['scenario']} of {plan['url']}: ")
        assert "LEAKED" not in reason and "local secret" not in reason
    assert listener.connections == 0
    assert case.stored == 0 and case.fives == 0
    reasons = "; ".join(
        f"{name}: {o.reason.split(plan['url'] + ': ', 1)[1].split(' (a request')[0].strip()}"
        for (name, plan), o in zip(plans, case.outcomes, strict=True)
    )
    resilience.row(
        "rendering",
        "page reads file: URLs",
        injected=f"a static package whose page reads a local text file, PNG and font by"
        f" file: URL ({', '.join(urls)})",
        observed=f"all {len(plans)} requests failed 422; the page saw only errors ({reasons});"
        f" no byte of the files reached the page; {case.settled()}",
        accepted=len(plans),
        effects=case.stored,
        errors_5xx=case.fives,
    )


def solid_png() -> bytes:
    return (
        pyvips.Image.black(8, 8, bands=3).new_from_image([0, 255, 0]).cast("uchar").pngsave_buffer()
    )


# --- a page that will not stop --------------------------------------------------------------------


async def test_an_endless_loop_in_next_example_is_cut_off(client, world, listener, resilience):
    plans = [
        ("busy-loop", {"scenario": "busy-loop"}),
        ("never-resolves", {"scenario": "never-resolves"}),
        ("repeats", {"scenario": "repeats"}),
    ]
    case = await hostile_case(client, world, plans)
    busy, never, repeats = case.outcomes
    limit = f"took longer than the limit of {EXAMPLE_SECONDS} s per example"
    failed_with(busy, f"The example after Loop / first {limit}")
    failed_with(never, f"The first example {limit}")
    failed_with(repeats, "Stuck in loop processing examples")
    assert case.stored == 0 and case.fives == 0
    resilience.row(
        "rendering",
        "endless loop in nextExample",
        injected="a package whose nextExample (a) spins `for(;;){}` after one good example,"
        " (b) returns a promise that never settles, (c) hands out the same example forever;"
        f" example limit {EXAMPLE_SECONDS} s",
        observed=f"(a) 422 '…Loop / first {limit}' after {busy.seconds:.1f} s; (b) 422 'The"
        f" first example {limit}' after {never.seconds:.1f} s; (c) 422 'Stuck in loop"
        f" processing examples' after {repeats.seconds:.1f} s; nothing stored; {case.settled()}",
        accepted=len(plans),
        effects=case.stored,
        errors_5xx=case.fives,
    )


async def test_ten_thousand_examples_stop_at_the_limit(client, world, resilience):
    case = await hostile_case(client, world, [("many", {"scenario": "many"})])
    (many,) = case.outcomes
    failed_with(many, f"more than {MAX_EXAMPLES} examples, the limit per request")
    assert case.stored == 0 and case.fives == 0
    resilience.row(
        "rendering",
        "10,000 examples",
        injected=f"a package that hands out 10,000 examples; limit {MAX_EXAMPLES} per request",
        observed=f"422 '{many.reason.split(': ', 1)[-1]}' after {many.seconds:.1f} s (example"
        f" {MAX_EXAMPLES + 1}), nothing stored; {case.settled()}",
        accepted=1,
        effects=case.stored,
        errors_5xx=case.fives,
    )


async def test_a_huge_dom_is_refused_by_its_element_count(client, world, resilience):
    nodes = 100_000
    case = await hostile_case(
        client, world, [("huge-dom", {"scenario": "huge-dom", "nodes": nodes})]
    )
    (huge,) = case.outcomes
    failed_with(huge, "Huge / dom has ", f"more than the limit of {MAX_DOM_NODES} per example")
    assert case.stored == 0 and case.fives == 0
    resilience.row(
        "rendering",
        "huge DOM",
        injected=f"an example of {nodes:,} elements; limit {MAX_DOM_NODES} per example",
        observed=f"422 '{huge.reason.split(': ', 1)[-1]}' after {huge.seconds:.1f} s, nothing"
        f" stored; {case.settled()}",
        accepted=1,
        effects=case.stored,
        errors_5xx=case.fives,
    )


async def test_window_open_and_dialogs_neither_block_nor_leave(client, world, listener, resilience):
    popup = f"http://127.0.0.1:{listener.port}/popup"
    case = await hostile_case(client, world, [("dialogs", {"scenario": "dialogs", "url": popup})])
    (dialogs,) = case.outcomes
    assert dialogs.status == 200 and dialogs.body["status"] == "done", dialogs.reason
    (snap,) = dialogs.body["result"]
    # What the page saw, carried back in the variant: every dialog dismissed at once (confirm
    # false, prompt null), the popup already closed by the renderer.
    assert snap["variant"] == "confirm=false prompt=null popup=closed", snap
    async with client.get(snap["url"], headers=jwt_auth(world.attacker.account)) as r:
        png = await r.read()
    assert pixel(png, 20, 20) == (0, 0, 255)
    assert listener.connections == 0
    assert case.fives == 0
    resilience.row(
        "rendering",
        "window.open and dialogs",
        injected=f"an example that opens a popup to {popup}, calls alert() 5 times, confirm(),"
        " prompt() and sets onbeforeunload",
        observed=f"rendered, not failed (dialogs are the page's business): done in"
        f" {dialogs.seconds:.1f} s, the screenshot right; the page saw '{snap['variant']}';"
        f" the loopback listener accepted {listener.connections} connections; {case.settled()}",
        accepted=1,
        effects=listener.connections,
        errors_5xx=case.fives,
    )


# --- archives hostile in themselves ---------------------------------------------------------------


def _zeros_bomb(megabytes: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("iframe.html", "w") as entry:
            block = bytes(1 << 20)
            for _ in range(megabytes):
                entry.write(block)
    return buffer.getvalue()


def _symlink_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("iframe.html", b"<p>")
        info = zipfile.ZipInfo("bundle.js")
        info.external_attr = 0o120777 << 16
        archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def _bad_crc() -> bytes:
    data = bytearray(_zip({"iframe.html": b"<p>hello</p>" * 50}))
    data[data.index(b"iframe.html") + len("iframe.html") + 5] ^= 0xFF  # inside the deflate data
    return bytes(data)


def hostile_archives() -> dict[str, tuple[bytes, int, str]]:
    """name -> (archive, status, a phrase of the message)."""
    page = {"iframe.html": b"<p>"}
    return {
        "zip bomb (zeros)": (
            _zeros_bomb(MAX_UNPACKED // (1 << 20) + 16),
            413,
            f"unpacks to more than {MAX_UNPACKED} bytes",
        ),
        "entry-count bomb": (
            _zip({f"f{i}": b"" for i in range(MAX_ENTRIES + 1)}),
            413,
            f"more than {MAX_ENTRIES} entries",
        ),
        "zip-slip ../": (_zip({**page, "../escape.js": b"x"}), 422, "contains '..'"),
        "zip-slip nested": (_zip({**page, "a/../../escape.js": b"x"}), 422, "contains '..'"),
        "absolute path": (
            _zip({**page, "/etc/cron.d/escape.js": b"x"}),
            422,
            "is an absolute path",
        ),
        "backslash": (_zip({**page, "..\\escape.js": b"x"}), 422, "contains a backslash"),
        "drive": (_zip({**page, "C:/escape.js": b"x"}), 422, "Windows drive"),
        "symlink": (_symlink_zip(), 422, "is a symbolic link"),
        "truncated": (_zip({"iframe.html": b"<p>" * 1000})[:-40], 422, "The package"),
        "bad CRC": (_bad_crc(), 422, "The package"),
        "not an archive": (b"GIF89a" + bytes(100), 415, "zip archive or a zstd"),
    }


async def test_hostile_archives_are_refused_at_upload(client, world, resilience):
    platform, account = world.platform, world.attacker.account
    cases = await asyncio.to_thread(hostile_archives)
    blob_dir = Path(platform.env["DARKROOM_BLOB_DIR"])
    answers: dict[str, tuple[int, str]] = {}

    async def hostile() -> None:
        for name, (data, _status, _phrase) in cases.items():
            form = aiohttp.FormData()
            form.add_field("payload", data, filename="payload.zip", content_type="application/zip")
            async with client.post(
                f"{platform.url}/api/snap-requests/assets/{md5(data)}",
                data=form,
                headers=jwt_auth(account),
            ) as r:
                body = await r.json()
            answers[name] = (r.status, body.get("error", {}).get("message", ""))

    packages_before = sorted(p.name for p in (blob_dir / "packages").iterdir())
    by, survivor, _stored, relaunches = await alongside(client, world, hostile)
    for name, (_data, status, phrase) in cases.items():
        got, message = answers[name]
        assert got == status and phrase in message, (name, got, message)
    kept = await platform.apps["rendering"][POOL].fetchval(
        "SELECT count(*) FROM rendering.packages WHERE md5 = ANY($1::text[])",
        [md5(data) for data, _s, _p in cases.values()],
    )
    assert kept == 0
    assert sorted(p.name for p in (blob_dir / "packages").iterdir()) == packages_before
    assert list(blob_dir.parent.rglob("escape.js")) == []
    assert not Path("/etc/cron.d/escape.js").exists()
    fives = sum(status >= 500 for status, _ in answers.values())
    counts = {s: sum(got == s for got, _ in answers.values()) for s in (413, 415, 422)}
    bomb = cases["zip bomb (zeros)"][0]
    resilience.row(
        "rendering",
        "hostile package archives",
        injected=f"{len(cases)} archives to POST /api/snap-requests/assets/:md5"
        f" ({', '.join(cases)});"
        f" the zeros bomb is {len(bomb) // 1024} kB unpacking to"
        f" {MAX_UNPACKED // (1 << 20) + 16} MB (limit {MAX_UNPACKED // (1 << 20)} MB)",
        observed=f"{counts[413]} x 413 (the bombs: unpacked bytes / entries counted while"
        f" reading), {counts[422]} x 422 naming the entry and why (.., absolute, backslash,"
        f" drive, symlink, corrupt), {counts[415]} x 415 (not an archive); no package row, no"
        f" blob, no file written outside; another account's render at the same time: done in"
        f" {by.seconds:.1f} s, right pixels; afterwards a good package rendered correctly"
        f" ({survivor.seconds:.1f} s); browser relaunches: {relaunches}",
        accepted=0,
        effects=kept,
        errors_5xx=fives,
    )
