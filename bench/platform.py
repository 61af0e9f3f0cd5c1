# ruff: noqa: S603  (the bench starts the platform's own processes)
"""The whole platform as ``make run`` starts it (one process per service, then the gateway),
on free loopback ports, with a database and an exchange of the bench's own."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from shared.config import SERVICES

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Platform:
    env: dict[str, str]
    url: str
    database: str
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    scratch: tempfile.TemporaryDirectory | None = None

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", "from services.cli import main; main()", *args],
            env={**os.environ, **self.env},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"darkroom {' '.join(args[:2])} failed: {done.stderr.strip()}")
        return done.stdout

    def create_account(self) -> dict:
        email = f"bench-{secrets.token_hex(6)}@example.com"
        return json.loads(
            self.cli(
                "account", "create", "--name", "Bench", "--email", email, "--password", "x" * 16
            )
        )

    def pid(self, service: str) -> int:
        return self.processes[service].pid

    def stop(self) -> None:
        for name in reversed(list(self.processes)):
            process = self.processes[name]
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.scratch is not None:
            self.scratch.cleanup()
        _drop_database(self.database)


def _env(scratch: Path, database: str) -> dict[str, str]:
    ports = {name: free_port() for name in ("gateway", *SERVICES)}
    env = {
        "DARKROOM_INTERNAL_KEY": secrets.token_urlsafe(32),
        "DARKROOM_SECRETS_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "DARKROOM_SIGNING_KEY": secrets.token_urlsafe(32),
        "DATABASE_URL": PG_ADMIN.rsplit("/", 1)[0] + f"/{database}",
        "AMQP_URL": AMQP_URL,
        "DARKROOM_EXCHANGE": database,
        "DARKROOM_SECRETS_DIR": str(scratch / "no-secrets-here"),
        "DARKROOM_BLOB_DIR": str(scratch / "blobs"),
        "DARKROOM_MAIL_DIR": str(scratch / "mail"),
        "DARKROOM_LOG_LEVEL": "warning",
        "DARKROOM_LOG_FORMAT": "json",
        "DARKROOM_SHUTDOWN_GRACE": "2",
        "DARKROOM_PORT": str(ports["gateway"]),
        "DARKROOM_PUBLIC_URL": f"http://127.0.0.1:{ports['gateway']}",
    }
    for name in SERVICES:
        env[f"DARKROOM_{name.upper()}_PORT"] = str(ports[name])
    return env


def _drop_database(database: str) -> None:
    import asyncio

    import asyncpg

    async def drop() -> None:
        admin = await asyncpg.connect(PG_ADMIN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()

    asyncio.run(drop())


def start(timeout: float = 60.0, env: dict[str, str] | None = None) -> Platform:
    """A fresh database of its own (``darkroom_bench_<id>``, dropped at :meth:`Platform.stop`)
    and exchange, migrated; every service, then the gateway; ready when the gateway's
    ``/readyz`` says every service is. ``env`` adds or overrides settings."""
    scratch = tempfile.TemporaryDirectory(prefix="darkroom-bench-")
    database = f"darkroom_bench_{secrets.token_hex(4)}"
    platform_env = {**_env(Path(scratch.name), database), **(env or {})}
    platform = Platform(
        env=platform_env,
        url=platform_env["DARKROOM_PUBLIC_URL"],
        database=database,
        scratch=scratch,
    )
    env = platform_env
    try:
        _drop_database(database)
        platform.cli("migrate")
        for name in (*SERVICES, "gateway"):
            module = "gateway" if name == "gateway" else f"services.{name}"
            platform.processes[name] = subprocess.Popen(
                [sys.executable, "-m", module],
                env={**os.environ, **env},
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=open(Path(scratch.name) / f"{name}.log", "wb"),
            )
        deadline = time.monotonic() + timeout
        while True:
            for name, process in platform.processes.items():
                if process.poll() is not None:
                    log = (Path(scratch.name) / f"{name}.log").read_text()[-2000:]
                    raise RuntimeError(f"{name} exited ({process.returncode}): {log}")
            try:
                with urllib.request.urlopen(platform.url + "/readyz", timeout=3) as answer:  # noqa: S310
                    if answer.status == 200:
                        return platform
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the platform did not become ready in time")
            time.sleep(0.3)
    except BaseException:
        platform.stop()
        raise


def reset_peak_rss(pid: int | str) -> bool:
    """Reset the peak RSS (VmHWM) of ``pid`` (Linux ``clear_refs`` 5); False when refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb(pid: int | str) -> float | None:
    """The peak RSS (VmHWM) of ``pid`` in MB, or None where /proc does not say."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
