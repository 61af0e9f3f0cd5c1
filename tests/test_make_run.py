"""The two-command promise: `make run` brings every process up from nothing (database created,
secrets generated, migrations applied), serves authenticated calls, and stops cleanly on Ctrl-C;
a missing server is named in one line within seconds."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
import uuid

import aiohttp
import asyncpg

from shared.config import SERVICES
from tests.conftest import AMQP_URL, PG_ADMIN, ROOT, delete_topology, free_port

PROCESSES = ("gateway", *SERVICES)


def run_env(tmp_path, database: str, exchange: str) -> tuple[dict[str, str], dict[str, int]]:
    ports = {name: free_port() for name in PROCESSES}
    env = {
        **os.environ,
        "DATABASE_URL": PG_ADMIN.rsplit("/", 1)[0] + f"/{database}",
        "AMQP_URL": AMQP_URL,
        "DARKROOM_EXCHANGE": exchange,
        "DARKROOM_SECRETS_DIR": str(tmp_path / "secrets"),
        "DARKROOM_PORT": str(ports["gateway"]),
        "DARKROOM_PUBLIC_URL": f"http://127.0.0.1:{ports['gateway']}",
        "DARKROOM_LOG_LEVEL": "warning",
    }
    for name in SERVICES:
        env[f"DARKROOM_{name.upper()}_PORT"] = str(ports[name])
    return env, ports


async def wait_healthy(http: aiohttp.ClientSession, port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                if r.status == 200 and (await r.json())["status"] == "ok":
                    return True
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.25)
    return False


async def test_make_run_from_nothing_to_authenticated_calls_and_clean_stop(tmp_path, run_id):
    database, exchange = f"darkroom_test_{run_id}_run", f"darkroom_test_{run_id}_run"
    env, ports = run_env(tmp_path, database, exchange)
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        started = time.monotonic()
        async with aiohttp.ClientSession() as http:
            for name in PROCESSES:
                assert await wait_healthy(http, ports[name], started + 60), f"{name} not healthy"
            assert sorted(p.name for p in (tmp_path / "secrets").iterdir()) == [
                "darkroom_internal_key",
                "darkroom_secrets_key",
                "darkroom_signing_key",
            ]
            created = subprocess.run(
                [
                    str(ROOT / ".venv/bin/darkroom"),
                    "account",
                    "create",
                    "--name",
                    "Run",
                    "--email",
                    "run@example.com",
                    "--password",
                    "make-run-works",
                ],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            account = json.loads(created.stdout)
            assert set(account) == {"account_id", "user_id", "api_key", "api_secret", "token"}
            gateway = f"http://127.0.0.1:{ports['gateway']}"
            basic = aiohttp.encode_basic_auth(account["api_key"], account["api_secret"])
            async with http.get(f"{gateway}/user", headers={"Authorization": basic}) as r:
                assert r.status == 200
                assert await r.json() == {
                    "id": account["user_id"],
                    "name": "Run",
                    "email": "run@example.com",
                }
            async with http.get(f"{gateway}/readyz") as r:
                assert r.status == 200
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        process.wait(timeout=20)
        for name in PROCESSES:
            with socket.socket() as sock:
                assert sock.connect_ex(("127.0.0.1", ports[name])) != 0, f"{name} still listening"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
        await delete_topology(exchange)


def make_run_until_exit(env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run `make run` in the foreground, as a newcomer would, until it gives up."""
    return subprocess.run(
        ["make", "--no-print-directory", "run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_a_missing_server_is_named_in_one_line_within_seconds(tmp_path):
    env, _ports = run_env(tmp_path, "darkroom_unused", f"darkroom_test_{uuid.uuid4().hex[:8]}")
    env["DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:{free_port()}/darkroom"
    started = time.monotonic()
    done = make_run_until_exit(env)
    assert done.returncode != 0
    assert time.monotonic() - started < 20
    lines = [line for line in done.stderr.splitlines() if line.startswith("darkroom:")]
    assert len(lines) == 1 and "PostgreSQL at" in lines[0] and "not answering" in lines[0]

    env["DATABASE_URL"] = PG_ADMIN
    env["AMQP_URL"] = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    done = make_run_until_exit(env)
    assert done.returncode != 0
    assert "RabbitMQ at" in done.stderr
