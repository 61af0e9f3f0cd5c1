"""The REAL ``happo`` 6.13 npm client, unchanged, against Darkroom: its custom integration with a
static package, ``--skip`` (find-baseline + extends-report), ``happo -- <cmd>`` with DOM
snapshots (the Cypress task driven by ``tests/happo6/cypress_run.mjs``) alone and as parallel
runs sharing a ``--nonce`` closed by ``happo finalize``, and its Storybook integration building
a real Storybook 10 itself. Every render runs in the stack's own rendering service (Chromium);
each test checks what was rendered (sizes and colours of the screenshots), the requests the
client made (recorded at the gateway) and the report's readiness (its ``completedAt``, the
only sign happo 6 leaves).

The client, its Node 22 and Storybook come from npm through ``tests/happo6/harness.py``
(installed once per machine under ``~/.cache/darkroom/happo6/``); every flow is run as
``node happo/dist/cli/main.js --config <tests/happo6/...> --afterSha A --beforeSha B ...``
with a clean environment (``harness.clean_env``: no CI variables, no git, NODE_ENV=test,
credentials from HAPPO_API_KEY / HAPPO_API_SECRET; stdin /dev/null, so no browser login).
What happo 6.13 sends for its default command (custom and Storybook integrations)::

    POST /api/jobs/B/A
    [--skip: POST /api/reports/A/find-baseline]
    GET  /api/snap-requests/assets/<md5>/signed-url      → {path} (reuse) | {signedUrl}
    PUT  <signedUrl> (no Authorization), POST .../signed-url/finalize
    POST /api/snap-requests/bulk
    [--skip: POST /api/snap-requests/extends-report]
    POST /api/async-reports/A, POST /api/reports/B/compare/A (when B != A)

and for ``happo -- <cmd>`` the job first, the package + bulk per spec from inside the command,
then async-reports and compare from the wrapper (with ``--nonce``: async-reports per batch,
no compare; ``happo finalize`` posts ``async-reports/A/finalize`` and the compare).

The module is skipped when npm's registry cannot be reached or there is no Chromium.
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web

from tests import happo_clients_support as clients
from tests.conftest import free_port
from tests.happo6 import harness
from tests.happo_clients_support import Ran, api, completed_status, new_sha, post_report
from tests.happo_packages import EXPECTED, colours, pixel, write_static_package
from tests.rendering_support import needs_chromium, pixels
from tests.reports_support import jwt_auth, screenshot

pytestmark = [needs_chromium]

# The gateway's request recorder, shared with the other client tests.
gateway_calls = clients.gateway_calls

TARGET = "chrome"  # the configs' one target: {chrome: {type: 'chrome', viewport: '800x600'}}
VIEWPORT = (800, 600)
RUN_TIMEOUT = 240  # seconds per happo subprocess (a cold Storybook build under load ≈ 30 s)
RENDER_WITHIN = 120  # seconds for an async report's renders to complete


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def modules() -> Path:
    """happo 6 + Node 22 + Storybook, from the machine's cache (``npm ci`` on first use)."""
    try:
        return await asyncio.to_thread(harness.install)
    except harness.Happo6Unavailable as error:
        pytest.skip(f"happo 6 cannot be installed: {error}")


@pytest.fixture(scope="module")
def account(stack) -> dict:
    """This module's own account: its reports, packages and requests are all it holds."""
    return stack.create_account("happo 6 Runner")


@dataclass
class AppServer:
    """tests/happo6/e2e_app served on loopback, and the requests it got (path, User-Agent)."""

    url: str = ""
    requests: list[tuple[str, str]] = field(default_factory=list)


@pytest.fixture
async def app_server(modules):
    """``tests/happo6/e2e_app`` at ``/app/`` and happo's browser bundle at /happo-browser.js:
    capture_dom.mjs snapshots the page from here, and happo's Controller downloads the page's
    assets and its stylesheet from here (the renderer must never need it)."""
    bundle = modules / "happo" / "dist" / "browser" / "main.js"
    server = AppServer()

    @web.middleware
    async def log(request: web.Request, handler):
        server.requests.append((request.path_qs, request.headers.get("User-Agent", "")))
        return await handler(request)

    async def browser_js(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(bundle, headers={"Content-Type": "text/javascript"})

    app = web.Application(middlewares=[log])
    app.router.add_get("/happo-browser.js", browser_js)
    app.router.add_static("/app/", harness.E2E_APP)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


# --- running happo 6 -------------------------------------------------------------------------


async def run(argv: list[str], cwd: Path, env: dict[str, str]) -> Ran:
    """A happo 6 subprocess, given :data:`RUN_TIMEOUT` (a Storybook build is slow)."""
    return await clients.run(argv, cwd, env, RUN_TIMEOUT)


def env_for(modules: Path, stack, account: dict, tmp: Path, **extra: str) -> dict[str, str]:
    tmp.mkdir(parents=True, exist_ok=True)
    return harness.clean_env(
        modules, stack.url, account["api_key"], account["api_secret"], tmp, **extra
    )


async def happo6(
    modules: Path, config: Path, args: list[str], cwd: Path, env: dict[str, str]
) -> Ran:
    """``happo --config CONFIG ARGS...``, asserted to exit 0."""
    ran = await run(harness.happo_argv(modules, config, *args), cwd, env)
    assert ran.returncode == 0, ran
    return ran


def calls(recorder, **labels: str) -> list[str]:
    """The recorded ``METHOD path status`` lines, shas labelled, package hashes and upload
    tokens replaced by ``<md5>`` / ``<token>``."""
    lines = []
    for line in recorder.lines(**labels):
        line = re.sub(r"/assets/[0-9a-f]{32}/", "/assets/<md5>/", line)
        lines.append(re.sub(r"/api/package-uploads/\S+", "/api/package-uploads/<token>", line))
    return lines


def package_md5(recorder) -> str:
    """The hash of the package the client asked a signed URL for."""
    (md5,) = {
        m.group(1)
        for call in recorder.calls
        if (m := re.search(r"/api/snap-requests/assets/([0-9a-f]{32})/signed-url$", call.path))
    }
    return md5


def upload_sequence(before: str, after: str) -> list[str]:
    return [
        f"POST /api/jobs/{before}/{after} 2xx",
        "GET /api/snap-requests/assets/<md5>/signed-url 2xx",
        "PUT /api/package-uploads/<token> 2xx",
        "POST /api/snap-requests/assets/<md5>/signed-url/finalize 2xx",
        "POST /api/snap-requests/bulk 2xx",
    ]


# --- reading what was rendered ---------------------------------------------------------------


async def report(http, stack, account: dict, sha: str) -> dict[tuple[str, str], dict]:
    """The report's snapshots by (component, variant); one each, all of TARGET."""
    status, snaps = await api(http, "GET", f"{stack.url}/api/reports/{sha}", account)
    assert status == 200, snaps
    got = {(s["component"], s["variant"]): s for s in snaps}
    assert len(got) == len(snaps), snaps  # no example twice
    assert {s["target"] for s in snaps} == {TARGET}, snaps
    return got


async def png_of(http, account: dict, snap: dict) -> bytes:
    async with http.get(snap["url"], headers=jwt_auth(account)) as response:
        assert response.status == 200, snap
        assert response.content_type == "image/png"
        data = await response.read()
    return data


async def complete(http, stack, account: dict, sha: str) -> dict:
    """The report's status once its ``completedAt`` is set (asserted within RENDER_WITHIN)."""
    status = await completed_status(http, stack, account, sha, within=RENDER_WITHIN)
    assert status["completedAt"], status
    return status


async def comparison_decided(http, stack, account: dict, sha1: str, sha2: str) -> dict:
    """The async comparison's status once it has run (no longer ``pending``)."""
    url = f"{stack.url}/api/reports/{sha1}/compare/{sha2}/status"
    deadline = time.monotonic() + RENDER_WITHIN
    while True:
        code, answer = await api(http, "GET", url, account)
        assert code == 200, answer
        if answer["status"] != "pending" or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.25)


def check_example(component: str, variant: str, want: dict, snap: dict, png: bytes) -> None:
    """One snapshot of ``tests/happo_packages``' package against its EXPECTED entry."""
    where = f"{component}/{variant}"
    if "size" in want:
        assert (snap["width"], snap["height"]) == want["size"], (where, snap)
    if want.get("width") == "viewport":
        assert (snap["width"], snap["height"]) == (VIEWPORT[0], want["height"]), (where, snap)
    if want.get("colour") is not None:
        centre = pixel(png, snap["width"] // 2, snap["height"] // 2)
        assert centre == want["colour"], (where, centre)
    if "absent" in want:
        assert want["absent"] not in colours(png), where
    if component == "Text":  # the packaged web font, one line of 24 px text
        assert snap["width"] > 100 and 20 <= snap["height"] <= 40, (where, snap)
        assert min(sum(colour) for colour in colours(png)) < 150, where  # dark glyphs drawn


def has_text_right_of(png: bytes, x: int) -> bool:
    """Whether dark glyphs are drawn right of column ``x`` (the cards' late text, where
    nothing else is darker than their #999 border)."""
    return bool((pixels(png)[:, x:].astype(int).sum(axis=2) < 200).any())


# --- 1. custom integration -------------------------------------------------------------------


@pytest.mark.timeout(420)
async def test_custom_integration_renders_the_static_package_and_reuses_it(
    modules, stack, account, gateway_calls, http, tmp_path
):
    site = write_static_package(tmp_path / "site")
    env = env_for(modules, stack, account, tmp_path / "tmp", HAPPO6_STATIC_DIR=str(site))
    before, after, again = new_sha(), new_sha(), new_sha()
    # the before sha's report, posted through the API (one snapshot that will differ)
    await post_report(http, stack, account, before, [("Button", "red", screenshot(20, 10))])

    ran = await happo6(modules, harness.CUSTOM_CONFIG, harness.shas(after, before), tmp_path, env)
    assert "Async report URL" in ran.stdout + ran.stderr, ran
    assert calls(gateway_calls, before=before, after=after) == [
        *upload_sequence("<before>", "<after>"),
        "POST /api/async-reports/<after> 2xx",
        "POST /api/reports/<before>/compare/<after> 2xx",
    ], ran
    md5 = package_md5(gateway_calls)
    for call in gateway_calls.calls:  # the PUT to the signed URL is S3-style: no credentials
        if call.method == "PUT":
            assert (call.user_agent, call.authorization) == ("node", ""), call
        else:
            assert call.user_agent == "happo@6.13.0", call
            assert call.authorization.startswith("Bearer "), call

    status = await complete(http, stack, account, after)
    assert status["snapshotCount"] == len(EXPECTED), status
    got = await report(http, stack, account, after)
    assert set(got) == set(EXPECTED)
    for (component, variant), want in EXPECTED.items():
        snap = got[(component, variant)]
        check_example(component, variant, want, snap, await png_of(http, account, snap))
    # the async comparison ran once the report was complete: Button/red differs from B's
    compared = await comparison_decided(http, stack, account, before, after)
    assert compared["status"] in {"failure", "awaiting review"}, compared

    # The same package again: signed-url answers {path}, so no PUT and no finalize.
    code, grant = await api(
        http, "GET", f"{stack.url}/api/snap-requests/assets/{md5}/signed-url", account
    )
    assert code == 200 and set(grant) == {"path"}, grant
    gateway_calls.clear()
    await happo6(modules, harness.CUSTOM_CONFIG, harness.shas(again, after), tmp_path, env)
    assert calls(gateway_calls, after=after, again=again) == [
        "POST /api/jobs/<after>/<again> 2xx",
        "GET /api/snap-requests/assets/<md5>/signed-url 2xx",
        "POST /api/snap-requests/bulk 2xx",
        "POST /api/async-reports/<again> 2xx",
        "POST /api/reports/<after>/compare/<again> 2xx",
    ]
    assert package_md5(gateway_calls) == md5
    status = await complete(http, stack, account, again)
    assert status["snapshotCount"] == len(EXPECTED), status
    second = await report(http, stack, account, again)
    assert {k: (s["width"], s["height"]) for k, s in second.items()} == {
        k: (s["width"], s["height"]) for k, s in got.items()
    }
    compared = await comparison_decided(http, stack, account, after, again)
    assert compared["status"] == "success", compared  # the same package renders the same


# --- 2. --skip: find-baseline + extends-report -----------------------------------------------

#: The harness' own custom page (tests/happo6/custom/static/entry.js): its examples, and
#: what the baseline report (posted through the API) holds for each: a flat PNG of a colour
#: and size no render of the page could give.
CUSTOM_EXAMPLES = {
    ("Button", "primary"): screenshot(31, 17, (255, 0, 255)),
    ("Button", "secondary"): screenshot(29, 13, (0, 255, 255)),
    ("Card", "with image"): screenshot(11, 7, (128, 128, 128)),
}


@pytest.mark.timeout(300)
async def test_skip_takes_the_skipped_examples_from_the_baseline(
    modules, stack, account, gateway_calls, http, tmp_path
):
    env = env_for(modules, stack, account, tmp_path / "tmp")
    baseline, after = new_sha(), new_sha()
    shots = [(component, variant, png) for (component, variant), png in CUSTOM_EXAMPLES.items()]
    await post_report(http, stack, account, baseline, shots)
    base = await report(http, stack, account, baseline)

    skip = json.dumps([{"component": "Button"}])
    args = [*harness.shas(after, baseline), "--skip", skip]
    ran = await happo6(modules, harness.CUSTOM_CONFIG, args, tmp_path, env)
    lines = calls(gateway_calls, baseline=baseline, after=after)
    assert lines == [
        "POST /api/jobs/<baseline>/<after> 2xx",
        "POST /api/reports/<after>/find-baseline 2xx",
        *upload_sequence("<baseline>", "<after>")[1:],
        "POST /api/snap-requests/extends-report 2xx",
        "POST /api/async-reports/<after> 2xx",
        "POST /api/reports/<baseline>/compare/<after> 2xx",
    ], (lines, ran)

    status = await complete(http, stack, account, after)
    assert status["snapshotCount"] == len(CUSTOM_EXAMPLES), status
    got = await report(http, stack, account, after)
    assert set(got) == set(CUSTOM_EXAMPLES)
    for key in [("Button", "primary"), ("Button", "secondary")]:  # copied from the baseline
        assert got[key]["url"] == base[key]["url"], (key, got[key], base[key])
        assert (got[key]["width"], got[key]["height"]) == (base[key]["width"], base[key]["height"])
    card = got[("Card", "with image")]  # rendered: 160 px + 2 x 8 px padding + 2 x 1 px border
    assert card["url"] != base[("Card", "with image")]["url"]
    assert card["width"] == 178 and card["height"] >= 40, card
    png = await png_of(http, account, card)
    # img/dots.png (red | green, scaled pixelated to 32 px) loaded from the package
    assert (255, 0, 0) in colours(png) and (0, 255, 0) in colours(png), card
    assert has_text_right_of(png, 50), "waitForContent's 'Loaded later' missing"


# --- 3. happo -- <cmd>: DOM snapshots, then --nonce + finalize -------------------------------


async def capture_plan(modules: Path, app_server: AppServer, tmp: Path) -> dict:
    """A cypress_run plan holding a REAL takeDOMSnapshot of e2e_app/page.html's ``.card``,
    taken in headless Chromium by capture_dom.mjs."""
    page = f"{app_server.url}/app/page.html"
    argv = [str(harness.node(modules)), str(harness.CAPTURE_DOM), page]
    # A short TMPDIR: under pytest's long tmp_path Chromium's singleton socket path does not
    # fit (FATAL "Socket path too long", SIGABRT); and its leftovers go with the folder.
    with tempfile.TemporaryDirectory(prefix="happo6-") as short:
        env = {"PATH": f"{modules / '.bin'}:/usr/bin:/bin", "HOME": str(tmp), "TMPDIR": short}
        ran = await run(argv, tmp, env)
    assert ran.returncode == 0, ran
    plan = json.loads(ran.stdout)
    (spec,) = plan["specs"]
    (snapshot,) = spec["snapshots"]
    assert {block.get("href") for block in snapshot["cssBlocks"]} >= {
        f"{app_server.url}/app/app.css",
        None,  # the page's <style>
    }, snapshot["cssBlocks"]
    assert "logo.png" in {asset["url"] for asset in snapshot["assetUrls"]}, snapshot
    assert len(spec["base64Images"]) == 1  # the inlined canvas
    return plan


def plan_file(plan: dict, path: Path, **rename: str) -> Path:
    """Write ``plan`` (its snapshots' component / variant replaced by ``rename``)."""
    specs = [
        {**spec, "snapshots": [{**snap, **rename} for snap in spec["snapshots"]]}
        for spec in plan["specs"]
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"specs": specs}))
    return path


def e2e_args(modules: Path, after: str, before: str, plan: Path, *extra: str) -> list[str]:
    cypress = [str(harness.node(modules)), str(harness.CYPRESS_RUN), str(plan)]
    return [*harness.shas(after, before), *extra, "--", *cypress]


def check_card(snap: dict, png: bytes) -> None:
    """The rendered ``.card`` of e2e_app/page.html: its stylesheets and its assets."""
    assert 40 < snap["width"] < VIEWPORT[0] and 20 < snap["height"] < 200, snap
    found = colours(png)
    # app.css (a <link>: a css block with href): the card's background url(bg.png), which
    # happo packaged as /_external/<md5>.png, and its 1 px #333 border
    assert (250, 240, 200) in found, "bg.png (app.css background) missing"
    assert (51, 51, 51) in found, "app.css border missing"
    # the page's <style> block: .badge's background url('dot.png') from the assets package
    assert (0, 128, 0) in found, "dot.png (<style> block background) missing"
    # the inlined canvas (uploaded as .happo-tmp/_inlined/<md5>.png)
    assert (255, 0, 0) in found, "canvas (inlined PNG) missing"
    # logo.png (an <img>, packaged at its path): red | green over blue | white, 16 px
    assert has_logo(png), "logo.png missing"


def has_logo(png: bytes) -> bool:
    """Whether e2e_app/logo.png (2 x 2 px: red, green / blue, white) is in the screenshot,
    drawn 16 x 16 (smoothly scaled: its four corner pixels keep their colours)."""
    image = pixels(png)
    height = image.shape[0]
    ys, xs = np.nonzero(np.all(image == (0, 255, 0), axis=2))  # its top-right corner
    for y, x in zip(ys.tolist(), xs.tolist(), strict=True):
        if x >= 15 and y + 15 < height:
            corners = [image[y, x - 15], image[y + 15, x - 15], image[y + 15, x]]
            if [tuple(int(v) for v in c) for c in corners] == [
                (255, 0, 0),
                (0, 0, 255),
                (255, 255, 255),
            ]:
                return True
    return False


@pytest.mark.timeout(420)
async def test_e2e_dom_snapshots_then_parallel_nonce_runs_and_finalize(
    modules, stack, account, gateway_calls, http, app_server, tmp_path
):
    plan = await capture_plan(modules, app_server, tmp_path / "capture")
    app_server.requests.clear()
    env = env_for(modules, stack, account, tmp_path / "tmp")
    before, after = new_sha(), new_sha()
    await post_report(http, stack, account, before, [("Card", "default", screenshot(20, 10))])

    # One run: the job, then from inside the command the package and the bulk, then the
    # wrapper's async report and comparison.
    single = plan_file(plan, tmp_path / "single" / "plan.json")
    args = e2e_args(modules, after, before, single)
    ran = await happo6(modules, harness.E2E_CONFIG, args, tmp_path / "single", env)
    assert "[cypress_run] captured.cy.js: 1 snapshot(s)" in ran.stdout, ran
    assert calls(gateway_calls, before=before, after=after) == [
        *upload_sequence("<before>", "<after>"),
        "POST /api/async-reports/<after> 2xx",
        "POST /api/reports/<before>/compare/<after> 2xx",
    ], ran
    status = await complete(http, stack, account, after)
    assert status["snapshotCount"] == 1, status
    got = await report(http, stack, account, after)
    assert set(got) == {("Card", "default")}
    snap = got[("Card", "default")]
    check_card(snap, await png_of(http, account, snap))
    # The page's files reached the renderer in the assets package: only happo's Controller
    # (packaging them) asked the app for anything, never the renderer's browser.
    fetched = {path for path, _agent in app_server.requests}
    assert fetched >= {"/app/app.css", "/app/bg.png", "/app/logo.png", "/app/dot.png"}, fetched
    assert {agent for _path, agent in app_server.requests} == {"happo@6.13.0"}, app_server

    # Two parallel runs under one nonce, then `happo finalize`: one report with both.
    gateway_calls.clear()
    nonce, merged = uuid.uuid4().hex, new_sha()
    runs = []
    for n in (1, 2):
        folder = tmp_path / f"parallel-{n}"
        planned = plan_file(plan, folder / "plan.json", variant=f"run {n}")
        args = e2e_args(modules, merged, before, planned, "--nonce", nonce)
        runs.append(happo6(modules, harness.E2E_CONFIG, args, folder, env))
    await asyncio.gather(*runs)
    lines = calls(gateway_calls, before=before, merged=merged)
    assert lines.count("POST /api/jobs/<before>/<merged> 2xx") == 2, lines
    assert lines.count("POST /api/snap-requests/bulk 2xx") == 2, lines
    # each run: its batch's ids at once, then all its ids again (the same ones)
    assert lines.count("POST /api/async-reports/<merged> 2xx") == 4, lines
    assert not [line for line in lines if "/compare/" in line], lines
    assert all(line.endswith(" 2xx") for line in lines), lines
    # Both runs' snapshots rendered into the report, yet it waits for `happo finalize`.
    deadline = time.monotonic() + RENDER_WITHIN
    while True:
        status = await clients.report_status(http, stack, account, merged)
        if status["snapshotCount"] >= 2 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
    assert status["snapshotCount"] == 2 and status["completedAt"] is None, status

    gateway_calls.clear()
    finalize = ["finalize", "--nonce", nonce, *harness.shas(merged, before)]
    await happo6(modules, harness.E2E_CONFIG, finalize, tmp_path / "finalize", env)
    assert calls(gateway_calls, before=before, merged=merged) == [
        "POST /api/async-reports/<merged>/finalize 2xx",
        "POST /api/reports/<before>/compare/<merged> 2xx",
    ]
    status = await complete(http, stack, account, merged)
    assert status["snapshotCount"] == 2, status
    got = await report(http, stack, account, merged)
    assert set(got) == {("Card", "run 1"), ("Card", "run 2")}
    for snap in got.values():
        check_card(snap, await png_of(http, account, snap))


# --- 4. Storybook ----------------------------------------------------------------------------

#: The stories happo renders (tests/happo6/storybook/stories; NotInHappo has happo: false).
STORIES = {("Button", "Primary"), ("Button", "Secondary"), ("Card", "With Image")}


@pytest.mark.timeout(480)
async def test_storybook_built_by_happo_is_rendered(
    modules, stack, account, gateway_calls, http, tmp_path
):
    workdir = harness.storybook_workdir(tmp_path / "sb", modules)
    env = env_for(modules, stack, account, tmp_path / "tmp")
    sha = new_sha()
    ran = await happo6(modules, harness.STORYBOOK_CONFIG, harness.shas(sha, sha), workdir, env)
    assert (workdir / ".out" / "index.json").exists(), ran  # happo ran `storybook build`
    assert calls(gateway_calls, sha=sha) == [
        *upload_sequence("<sha>", "<sha>"),
        "POST /api/async-reports/<sha> 2xx",
    ], ran

    status = await complete(http, stack, account, sha)
    assert status["snapshotCount"] == len(STORIES), status
    got = await report(http, stack, account, sha)
    assert set(got) == STORIES
    for key in [("Button", "Primary"), ("Button", "Secondary")]:
        snap = got[key]  # one button: ~100 x 40 px, not the viewport
        assert 50 <= snap["width"] <= 200 and 25 <= snap["height"] <= 60, (key, snap)
    primary = colours(await png_of(http, account, got[("Button", "Primary")]))
    assert (42, 109, 244) in primary  # .btn.primary background #2a6df4 (preview.css)
    secondary = colours(await png_of(http, account, got[("Button", "Secondary")]))
    assert (34, 34, 68) in secondary and (42, 109, 244) not in secondary  # #224 border
    card = got[("Card", "With Image")]
    assert card["width"] == 178 and card["height"] >= 40, card
    png = await png_of(http, account, card)
    assert (255, 0, 0) in colours(png) and (0, 255, 0) in colours(png), "dots.png missing"
    assert has_text_right_of(png, 50), "waitForContent's 'Loaded later' missing"
