"""happo.io 13 ``happo run``, the REAL client, rendering a static package in Darkroom's own
Chromium: synchronously (it polls ``GET /api/snap-requests/:id`` every 5 s, then posts the
report) and with ``--async`` (an async report that completes when the render does), with the
package uploaded by multipart and, with ``HAPPO_SIGNED_URL``, through the signed-URL PUT.

Its ``.happo.js`` is a custom integration's: ``generateStaticPackage`` returns the folder the
test wrote (``tests/happo_packages.py``), which happo.io zips deterministically and uploads::

    module.exports = {
      endpoint, apiKey, apiSecret,
      targets: { chrome: new RemoteBrowserTarget('chrome', { viewport: '640x480' }) },
      generateStaticPackage: async () => ({ path: '<folder>' }),
    };

Each test checks what was rendered (sizes and colours of the examples), not only the exit code,
and the requests the client made, as recorded at the gateway.
"""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from tests import happo_clients_support as clients
from tests.happo_clients_support import api, client_env, completed_status, new_sha, run
from tests.happo_packages import EXPECTED, pixel, write_static_package
from tests.rendering_support import needs_chromium

pytestmark = [pytest.mark.timeout(600), needs_chromium]

# The real clients' npm install and the gateway's request recorder, shared with those tests.
happo_modules = clients.happo_modules
gateway_calls = clients.gateway_calls

TARGET = "chrome"
VIEWPORT = (640, 480)


def write_render_config(directory: Path, stack, account: dict, package: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ".happo.js").write_text(
        "\n".join(
            [
                "const { RemoteBrowserTarget } = require('happo.io');",
                "module.exports = {",
                f"  endpoint: {json.dumps(stack.url)},",
                f"  apiKey: {json.dumps(account['api_key'])},",
                f"  apiSecret: {json.dumps(account['api_secret'])},",
                f"  targets: {{ {TARGET}: new RemoteBrowserTarget('chrome',"
                f" {{ viewport: '{VIEWPORT[0]}x{VIEWPORT[1]}' }}) }},",
                f"  generateStaticPackage: async () => ({{ path: {json.dumps(str(package))} }}),",
                "};",
            ]
        )
        + "\n"
    )
    return directory


@pytest.fixture(scope="module")
def renderer_account(stack) -> dict:
    return stack.create_account("happo.io Renderer")


#: happo.io 13's targets send no ``freezeAnimations``: the renderer's default for older clients
#: is the first frame, so the fading example is still red (happo 6 asks for the last frame).
HAPPO_IO_EXPECTED = {**EXPECTED, ("Fade", "last-frame"): {"size": (90, 90), "colour": (255, 0, 0)}}


async def _check_report(http, stack, account: dict, sha: str) -> None:
    status, snaps = await api(http, "GET", f"{stack.url}/api/reports/{sha}", account)
    assert status == 200, snaps
    got = {(s["component"], s["variant"]): s for s in snaps}
    assert set(got) == set(HAPPO_IO_EXPECTED)
    for key, want in HAPPO_IO_EXPECTED.items():
        snap = got[key]
        assert snap["target"] == TARGET
        if "size" in want:
            assert (snap["width"], snap["height"]) == want["size"], key
        if want.get("width") == "viewport":
            assert (snap["width"], snap["height"]) == (VIEWPORT[0], want["height"]), key
        if want.get("colour") is not None:
            async with http.get(snap["url"]) as response:
                png = await response.read()
            assert pixel(png, snap["width"] // 2, snap["height"] // 2) == want["colour"], key


async def test_happo_run_renders_the_static_package_and_posts_the_report(
    happo_modules,
    stack,
    renderer_account,
    gateway_calls,
    tmp_path,
):
    package = write_static_package(tmp_path / "site")
    cwd = write_render_config(tmp_path / "project", stack, renderer_account, package)
    sha = new_sha()
    ran = await run(
        [str(happo_modules / ".bin" / "happo"), "run", sha],
        cwd,
        client_env(happo_modules, cwd),
    )
    assert ran.returncode == 0, ran
    lines = gateway_calls.lines(sha=sha)
    assert lines[0].startswith("GET /api/snap-requests/assets-data/") and lines[0].endswith("404")
    assert lines[1].startswith("POST /api/snap-requests/assets/") and lines[1].endswith("2xx")
    assert lines[2].startswith("POST /api/snap-requests?payloadHash=") and lines[2].endswith("2xx")
    polls = [line for line in lines if line.startswith("GET /api/snap-requests/")][1:]
    assert polls and all(line.endswith("2xx") for line in polls)
    assert lines[-1] == "POST /api/reports/<sha> 2xx", lines
    async with aiohttp.ClientSession() as http:
        await _check_report(http, stack, renderer_account, sha)


async def test_happo_run_async_with_a_signed_url_upload(
    happo_modules,
    stack,
    renderer_account,
    gateway_calls,
    tmp_path,
):
    package = write_static_package(tmp_path / "site")
    (package / "notes.txt").write_text("another package than the synchronous test's")
    cwd = write_render_config(tmp_path / "project", stack, renderer_account, package)
    sha = new_sha()
    env = client_env(happo_modules, cwd, HAPPO_SIGNED_URL="true")
    ran = await run([str(happo_modules / ".bin" / "happo"), "run", sha, "--async"], cwd, env)
    assert ran.returncode == 0, ran
    assert "Async report (id=" in ran.stdout + ran.stderr, ran
    lines = gateway_calls.lines(sha=sha)
    assert [line.split(" ", 2)[:2] for line in lines[:3]] == [
        ["GET", lines[0].split(" ")[1]],
        ["PUT", lines[1].split(" ")[1]],
        ["POST", lines[2].split(" ")[1]],
    ]
    assert "/signed-url" in lines[0] and lines[1].startswith("PUT /api/package-uploads/")
    assert lines[2].endswith("/signed-url/finalize 2xx")
    assert lines[-1] == "POST /api/async-reports/<sha> 2xx", lines
    async with aiohttp.ClientSession() as http:
        status = await completed_status(http, stack, renderer_account, sha, within=120)
        assert status["completedAt"], status
        await _check_report(http, stack, renderer_account, sha)
        # the same package again is reused, not uploaded
        gateway_calls.clear()
        second = new_sha()
        again = await run(
            [str(happo_modules / ".bin" / "happo"), "run", second, "--async"], cwd, env
        )
        assert again.returncode == 0, again
        assert gateway_calls.lines()[0].endswith("/signed-url 2xx")
        assert not any(line.startswith("PUT ") for line in gateway_calls.lines())
        # its identical request reused the first render: complete at once, nothing left running
        status = await completed_status(http, stack, renderer_account, second, within=120)
        assert status["completedAt"] and status["snapshotCount"] == len(HAPPO_IO_EXPECTED)
