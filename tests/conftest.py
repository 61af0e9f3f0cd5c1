"""Fixtures: a database and an exchange of this run's own on the real local servers, and the
whole platform (every service and the gateway) started in-process on free loopback ports."""

from __future__ import annotations

import base64
import email.policy
import json
import os
import random
import secrets
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import aio_pika
import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from moto.server import ThreadedMotoServer

from shared import logging as darkroom_logging
from shared.config import SERVICES, load

# The support modules hold asserts that are part of the tests: pytest explains their failures as
# it does a test's only when it rewrites them, which must be asked for before they are imported.
pytest.register_assert_rewrite(
    *(f"tests.{path.stem}" for path in Path(__file__).parent.glob("*_support.py")),
    *(f"tests.chaos.{path.stem}" for path in Path(__file__).parent.glob("chaos/*_support.py")),
    "tests.happo_packages",
)

pytest_plugins = ["tests.resilience"]

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")

darkroom_logging.configure("warning", "console", process="tests")


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def run_id() -> str:
    """Names this run's database, exchange and queues so runs never collide."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
async def database_url(run_id: str) -> AsyncIterator[str]:
    """A fresh database of this run's own, dropped at the end."""
    name = f"darkroom_test_{run_id}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture(scope="session")
async def exchange(run_id: str) -> AsyncIterator[str]:
    """This run's exchange name; its exchanges and queues are deleted at the end."""
    name = f"darkroom_test_{run_id}"
    yield name
    await delete_topology(name)


async def delete_topology(exchange_name: str) -> None:
    """Delete the exchanges and every queue named after ``exchange_name`` (via rabbitmqctl's
    list, falling back to the names the platform is known to declare)."""
    queues: set[str] = set()
    try:
        listed = subprocess.run(
            ["rabbitmqctl", "-q", "list_queues", "name"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        queues = {q.strip() for q in listed.stdout.splitlines() if q.startswith(exchange_name)}
    except (OSError, subprocess.TimeoutExpired):
        pass
    connection = await aio_pika.connect(AMQP_URL)
    try:
        for queue in queues:
            channel = await connection.channel()
            try:
                await channel.queue_delete(queue)
            except Exception:  # noqa: S110 - best-effort cleanup of a shared broker
                pass
        channel = await connection.channel()
        for suffix in ("", ".unrouted", ".dead"):
            try:
                await channel.exchange_delete(exchange_name + suffix)
            except Exception:
                channel = await connection.channel()
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def secrets_env() -> dict[str, str]:
    """Secrets of this run (none is built in)."""
    return {
        "DARKROOM_INTERNAL_KEY": secrets.token_urlsafe(32),
        "DARKROOM_SECRETS_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "DARKROOM_SIGNING_KEY": secrets.token_urlsafe(32),
    }


class Inbox:
    """An aiosmtpd handler that keeps every message the platform sends, parsed."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.port = 0

    async def handle_DATA(self, server, session, envelope) -> str:
        message = BytesParser(policy=email.policy.default).parsebytes(envelope.content)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 Message accepted"

    def to(self, address: str) -> list[EmailMessage]:
        """The messages delivered to ``address``."""
        return [m for m in self.messages if address in m["X-Envelope-To"].split(", ")]


@pytest.fixture(scope="session")
def inbox() -> Iterator[Inbox]:
    """A real SMTP server (aiosmtpd) on loopback that every test stack sends its e-mail to."""
    handler = Inbox()
    handler.port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=handler.port)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()


@dataclass
class Stack:
    """The platform running in-process: where it listens and how it is configured."""

    env: dict[str, str]
    url: str
    service_urls: dict[str, str]
    apps: dict[str, web.Application] = field(default_factory=dict)
    runners: list[web.AppRunner] = field(default_factory=list)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run the ``darkroom`` CLI against this stack's database."""
        return subprocess.run(
            [sys.executable, "-c", "from services.cli import main; main()", *args],
            env={**os.environ, **self.env},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
        )

    def create_account(self, name: str = "Ada Lovelace") -> dict:
        """A new account through the operator CLI; returns its JSON."""
        email = f"{uuid.uuid4().hex[:12]}@example.com"
        done = self.cli(
            "account", "create", "--name", name, "--email", email, "--password", "hunter2hunter2"
        )
        return {**json.loads(done.stdout), "email": email, "name": name}


def stack_env(
    database_url: str, exchange: str, secrets_env: dict[str, str], tmp: Path, smtp_port: int
) -> dict[str, str]:
    """The environment of a platform on free ports with this run's servers and names."""
    ports = {name: free_port() for name in ("gateway", *SERVICES)}
    return {
        **secrets_env,
        "DATABASE_URL": database_url,
        "AMQP_URL": AMQP_URL,
        "DARKROOM_EXCHANGE": exchange,
        "DARKROOM_SECRETS_DIR": str(tmp / "no-secrets-here"),
        "DARKROOM_BLOB_DIR": str(tmp / "blobs"),
        "DARKROOM_MAIL_DIR": str(tmp / "mail"),
        "SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "DARKROOM_PORT": str(ports["gateway"]),
        "DARKROOM_AUTH_PORT": str(ports["auth"]),
        "DARKROOM_INGEST_PORT": str(ports["ingest"]),
        "DARKROOM_PROCESSING_PORT": str(ports["processing"]),
        "DARKROOM_REPORTS_PORT": str(ports["reports"]),
        "DARKROOM_RENDERING_PORT": str(ports["rendering"]),
        "DARKROOM_PUBLIC_URL": f"http://127.0.0.1:{ports['gateway']}",
        "DARKROOM_LOG_LEVEL": "warning",
        "DARKROOM_OUTBOX_POLL": "0.2",
        "DARKROOM_EVENT_RETRY_BASE": "0.05",
        "DARKROOM_MAX_BODY_BYTES": str(4 * 1024 * 1024),
        # Below the gateway's body limit, so ingest's streaming upload limit is what refuses.
        "DARKROOM_MAX_UPLOAD_BYTES": str(3 * 1024 * 1024),
    }


async def start_stack(env: dict[str, str], without: tuple[str, ...] = ()) -> Stack:
    """Start every service (but those named in ``without``, which a test runs as processes of
    their own), then the gateway, in this event loop."""
    from gateway.app import create_app as gateway_app
    from gateway.app import server_limits
    from gateway.config import GatewayConfig
    from services.auth.app import create_app as auth_app
    from services.auth.config import AuthConfig
    from services.ingest.app import create_app as ingest_app
    from services.ingest.config import IngestConfig
    from services.processing.app import create_app as processing_app
    from services.processing.config import ProcessingConfig
    from services.rendering.app import create_app as rendering_app
    from services.rendering.config import RenderingConfig
    from services.reports.app import create_app as reports_app
    from services.reports.config import ReportsConfig

    plan = [
        ("auth", auth_app, AuthConfig),
        ("ingest", ingest_app, IngestConfig),
        ("processing", processing_app, ProcessingConfig),
        ("reports", reports_app, ReportsConfig),
        ("rendering", rendering_app, RenderingConfig),
        ("gateway", gateway_app, GatewayConfig),
    ]
    stack = Stack(
        env=env,
        url=env["DARKROOM_PUBLIC_URL"],
        service_urls={
            name: f"http://127.0.0.1:{env['DARKROOM_' + name.upper() + '_PORT']}"
            for name in SERVICES
        },
    )
    for name, create_app, config_cls in plan:
        if name in without:
            continue
        config = load(config_cls, env)
        app = create_app(config)
        limits = server_limits(config) if name == "gateway" else {}
        # As the gateway's __main__ runs it: a client gone cancels its request.
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=name == "gateway", **limits
        )
        await runner.setup()
        port = int(env["DARKROOM_PORT" if name == "gateway" else f"DARKROOM_{name.upper()}_PORT"])
        await web.TCPSite(runner, "127.0.0.1", port).start()
        stack.apps[name] = app
        stack.runners.append(runner)
    return stack


async def stop_stack(stack: Stack) -> None:
    """Stop the gateway first, then the services."""
    for runner in reversed(stack.runners):
        await runner.cleanup()


@pytest.fixture(scope="session")
async def stack(
    database_url: str, exchange: str, secrets_env: dict[str, str], tmp_path_factory, inbox
) -> AsyncIterator[Stack]:
    """The whole platform, shared by the session's tests (its e-mail goes to ``inbox``)."""
    env = stack_env(
        database_url, exchange, secrets_env, tmp_path_factory.mktemp("stack"), inbox.port
    )
    running = await start_stack(env)
    yield running
    await stop_stack(running)


def fresh_loopback() -> str:
    """A loopback address of its own (127.x.y.z): a client bound to it is a new anonymous
    caller to the gateway, with a full rate-limit budget."""
    return f"127.{random.randint(1, 250)}.{random.randint(1, 250)}.{random.randint(2, 250)}"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client that, like curl, keeps no cookies unless a test asks for them, on its own
    loopback address, so its anonymous rate budget is fresh."""
    connector = aiohttp.TCPConnector(local_addr=(fresh_loopback(), 0))
    async with aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        yield session


@pytest.fixture(scope="session")
def account(stack: Stack) -> dict:
    """An account made with the operator CLI (account_id, user_id, api_key, api_secret, token)."""
    return stack.create_account()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    """A curl-like client on its own loopback address, so its anonymous rate budget is fresh."""
    connector = aiohttp.TCPConnector(local_addr=(fresh_loopback(), 0))
    async with aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        yield session


@pytest.fixture(scope="module")
def other_account(stack: Stack) -> dict:
    """A second tenant, for checks that one account cannot see or touch another's data."""
    return stack.create_account("Katherine Johnson")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real moto S3 server on loopback, on a free port picked by the OS, for the session.

    Under ``python -X dev`` or ``PYTHONASYNCIODEBUG=1`` aiohttp parses strictly and rejects
    moto's answers, which carry two ``Server`` headers (Werkzeug's and moto's ``amazon.com``).
    """
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
async def s3_stack(
    run_id, secrets_env, moto_endpoint, tmp_path_factory, inbox
) -> AsyncIterator[Stack]:
    """The whole platform again, its blobs in a bucket of the moto S3 server, in a database and
    exchange of its own; shared by the session's tests that run on both storage backends."""
    async for running in start_platform(
        f"darkroom_test_{run_id}_s3",
        secrets_env,
        tmp_path_factory.mktemp("s3"),
        inbox,
        S3_ENDPOINT_URL=moto_endpoint,
        S3_BUCKET="darkroom-blobs",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
    ):
        yield running


async def start_platform(
    name: str, secrets_env: dict[str, str], tmp_path, inbox, *, via=None, without=(), **env
) -> AsyncIterator[Stack]:
    """Another platform on a database and an exchange of its own, both named ``name`` and
    dropped afterwards (sharing the session's database would let the session's outbox relays
    publish this platform's events to the session's exchange). ``via`` (a TcpProxy) carries
    its database connections; ``env`` overrides settings; ``without`` names services the test
    runs as processes of its own."""
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    database_url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    if via is not None:
        database_url = via.url_for(database_url)
    platform_env = stack_env(database_url, name, secrets_env, tmp_path, inbox.port) | env
    running = await start_stack(platform_env, without=without)
    try:
        yield running
    finally:
        await stop_stack(running)
        await delete_topology(name)
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
