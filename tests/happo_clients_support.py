"""What the tests of the real Happo npm clients share: the pinned clients installed once per
machine (the ``happo_modules`` fixture), running a client as a subprocess with a clean
environment, recording what reached the gateway (the ``gateway_calls`` fixture), and the Happo
API driven from Python to set up and check reports."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pyvips
from aiohttp import web

from services.auth.domain import sign_jwt
from tests.npm_support import npm_modules

CLIENTS = Path(__file__).resolve().parent / "happo_clients"
NODE = shutil.which("node") or "/usr/bin/node"
RUN_TIMEOUT = 150  # seconds per client subprocess (happo.io retries failures for up to ~31 s)


# --- the npm install, once per machine -------------------------------------------------------


@pytest.fixture(scope="session")
def happo_modules() -> Path:
    """``node_modules`` with the pinned clients, installed with ``npm ci`` into the user's cache
    (keyed by the manifest and lockfile), reused by later sessions."""
    modules = npm_modules(CLIENTS, "happo-clients")
    assert (modules / ".bin" / "happo").exists()
    return modules


# --- running a client ------------------------------------------------------------------------


@dataclass
class Ran:
    """A finished client subprocess."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (
            f"\n$ {' '.join(self.argv)}\n-> exit {self.returncode}\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )


async def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = RUN_TIMEOUT) -> Ran:
    """Run ``argv`` without blocking the event loop the platform serves on, stdin closed (a
    client must never wait for a person: happo 6 would open its browser login on a terminal);
    the whole process group is killed when it outlives ``timeout`` seconds."""
    cwd.mkdir(parents=True, exist_ok=True)
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = await process.communicate()
        ran = Ran(argv, -1, stdout.decode(errors="replace"), stderr.decode(errors="replace"))
        pytest.fail(f"timed out after {timeout} s:{ran}")
    code = process.returncode if process.returncode is not None else -1
    return Ran(argv, code, stdout.decode(errors="replace"), stderr.decode(errors="replace"))


def client_env(modules: Path, home: Path, **extra: str) -> dict[str, str]:
    """A CI-like environment with nothing of the developer's (no CI, GitHub or proxy
    variables); ``NODE_PATH`` lets ``.happo.js`` and the driver require the cached clients."""
    return {
        "PATH": os.pathsep.join([str(Path(NODE).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "NODE_PATH": str(modules),
        **extra,
    }


def write_config(directory: Path, stack, account: dict, **extra: Any) -> Path:
    """The client's ``.happo.js``: endpoint, credentials and one target (plus ``extra``)."""
    lines = [
        "const { RemoteBrowserTarget } = require('happo.io');",
        "module.exports = {",
        f"  endpoint: {json.dumps(stack.url)},",
        f"  apiKey: {json.dumps(account['api_key'])},",
        f"  apiSecret: {json.dumps(account['api_secret'])},",
        "  targets: { chrome: new RemoteBrowserTarget('chrome', { viewport: '1024x768' }) },",
        *(f"  {key}: {json.dumps(value)}," for key, value in extra.items()),
        "};",
    ]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ".happo.js").write_text("\n".join(lines) + "\n")
    return directory


async def happo(modules: Path, cwd: Path, *args: str) -> Ran:
    """happo.io's CLI, as CI scripts call it."""
    return await run([str(modules / ".bin" / "happo"), *args], cwd, client_env(modules, cwd))


# --- what reached the gateway ----------------------------------------------------------------


@dataclass
class Call:
    method: str
    path: str
    status: int
    user_agent: str
    authorization: str

    def line(self, labels: dict[str, str]) -> str:
        """``METHOD path status`` with known values replaced by their labels."""
        path = re.sub(r"/api/images/upload/[^/?]+", "/api/images/upload/<token>", self.path)
        for value, label in labels.items():
            path = path.replace(value, label)
        status = "2xx" if 200 <= self.status < 300 else str(self.status)
        return f"{self.method} {path} {status}"


@dataclass
class Recorder:
    """Every request the gateway served to a client that is not this test's own aiohttp."""

    calls: list[Call] = field(default_factory=list)

    def lines(self, **labels: str) -> list[str]:
        table = {value: f"<{name}>" for name, value in labels.items()}
        return [call.line(table) for call in self.calls]

    def clear(self) -> None:
        self.calls.clear()


@pytest.fixture
def gateway_calls(stack) -> Iterator[Recorder]:
    """Wraps the gateway server's request handler (new connections pick it up) for one test."""
    runner = next(r for r in stack.runners if r.app is stack.apps["gateway"])
    server = runner.server
    original = server.request_handler
    recorder = Recorder()

    async def recording(request: web.BaseRequest) -> web.StreamResponse:
        status = 500
        try:
            response = await original(request)
            status = response.status
            return response
        except web.HTTPException as error:
            status = error.status
            raise
        finally:
            agent = request.headers.get("User-Agent", "")
            if not agent.startswith("Python/"):
                recorder.calls.append(
                    Call(
                        request.method,
                        request.path_qs,
                        status,
                        agent,
                        request.headers.get("Authorization", ""),
                    )
                )

    server.request_handler = recording
    try:
        yield recorder
    finally:
        server.request_handler = original


# --- the Happo API from Python ---------------------------------------------------------------


def auth(account: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {sign_jwt(account['api_key'], account['api_secret'])}"}


async def api(http, method: str, url: str, account: dict, body: Any = None) -> tuple[int, Any]:
    async with http.request(method, url, json=body, headers=auth(account)) as response:
        text = await response.text()
    try:
        return response.status, json.loads(text)
    except ValueError:
        return response.status, text


async def upload_png(http, stack, account: dict, data: bytes) -> str:
    """The Image API's three steps; returns the image's url."""
    md5 = hashlib.md5(data).hexdigest()  # noqa: S324 - what the Happo clients send
    status, grant = await api(http, "GET", f"{stack.url}/api/images/{md5}/upload-url", account)
    assert status == 200, grant
    if not grant["uploadUrl"]:
        return grant["url"]
    form = aiohttp.FormData()
    form.add_field("file", data, filename="image.png", content_type="image/png")
    async with http.post(grant["uploadUrl"], data=form, headers=auth(account)) as response:
        assert response.status == 200, await response.text()
        return (await response.json())["url"]


async def post_report(http, stack, account: dict, sha: str, shots: list[tuple]) -> None:
    """``POST /api/reports/:sha`` of ``(component, variant, png bytes)`` snapshots."""
    snaps = []
    for component, variant, data in shots:
        image = pyvips.Image.new_from_buffer(data, "")
        snaps.append(
            {
                "component": component,
                "variant": variant,
                "target": "chrome",
                "url": await upload_png(http, stack, account, data),
                "width": image.width,
                "height": image.height,
            }
        )
    status, answer = await api(
        http, "POST", f"{stack.url}/api/reports/{sha}", account, {"snaps": snaps}
    )
    assert 200 <= status < 300, answer


async def compare(http, stack, account: dict, sha1: str, sha2: str) -> dict:
    url = f"{stack.url}/api/reports/{sha1}/compare/{sha2}"
    status, answer = await api(http, "POST", url, account, {})
    assert status == 200, answer
    return answer


async def report_status(http, stack, account: dict, sha: str) -> dict:
    status, answer = await api(http, "GET", f"{stack.url}/api/reports/{sha}/status", account)
    assert status == 200, answer
    return answer


async def completed_status(http, stack, account: dict, sha: str, within: float = 20) -> dict:
    """The report's status once ``completedAt`` is set (async reports may finish a moment
    after the last call); the last status seen when it never is."""
    deadline = time.monotonic() + within
    while True:
        answer = await report_status(http, stack, account, sha)
        if answer.get("completedAt") or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.25)


def new_sha() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex[:8]  # 40 hex digits, like a commit
