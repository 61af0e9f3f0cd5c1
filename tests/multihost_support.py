"""The platform spread over network hosts: one network namespace per process, each with its
own address on one bridge, the services reaching each other by those addresses.

Every name this module makes starts with ``drmh-`` (namespaces, veth ends, the bridge), so
what a killed earlier run left behind is found and removed before a new run starts. The
servers the machine shares (PostgreSQL, RabbitMQ, Redis) and the S3 and SMTP servers the test
starts listen on loopback in the root namespace; the hosts reach them through TCP forwarders
the test runs on the bridge's address, as they would reach servers on another machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
from moto.server import ThreadedMotoServer

from tests.conftest import AMQP_URL, PG_ADMIN, ROOT, Stack, delete_topology
from tests.tcp_proxy import TcpProxy

PREFIX = "drmh-"
BRIDGE = f"{PREFIX}br0"
#: The bridge's address in the root namespace: where the forwarders to the servers listen
#: and where the test's client comes from.
BRIDGE_ADDRESS = "10.77.0.1"
NETMASK = 24
REDIS = ("127.0.0.1", 6379)
#: Rate limits lifted: this measures where work goes, not budgets.
UNLIMITED = "1000000/1"
STARTUP_SECONDS = 90


@dataclass(frozen=True)
class Host:
    """One machine of the platform: its namespace, address and the process it runs."""

    name: str
    address: str
    module: str
    service: str  # the settings' name: gateway, auth, ingest, processing, reports
    port: int

    @property
    def namespace(self) -> str:
        return PREFIX + self.name

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"


#: Rendering has a host too (its Chromium starts only with a first render, which no flow here
#: asks for), so every service the gateways route to is there and their /readyz passes.
HOSTS = (
    Host("gw1", "10.77.0.11", "gateway", "gateway", 8080),
    Host("gw2", "10.77.0.12", "gateway", "gateway", 8080),
    Host("auth", "10.77.0.21", "services.auth", "auth", 8081),
    Host("ingest", "10.77.0.22", "services.ingest", "ingest", 8082),
    Host("proc1", "10.77.0.31", "services.processing", "processing", 8083),
    Host("proc2", "10.77.0.32", "services.processing", "processing", 8083),
    Host("reports", "10.77.0.41", "services.reports", "reports", 8084),
    Host("render", "10.77.0.51", "services.rendering", "rendering", 8085),
)


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``ip <args>``; raise with its stderr when ``check`` and it fails."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def netns_refusal() -> str | None:
    """Why this machine cannot run the test (None when it can): ``ip`` missing, not root, or
    namespaces not permitted (an unprivileged container)."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    probe = f"{PREFIX}probe-{os.getpid()}"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` is not permitted here: {made.stderr.strip()}"
    ip("netns", "delete", probe, check=False)
    return None


def leftovers() -> tuple[list[str], list[str]]:
    """The ``drmh-`` namespaces and the ``drmh-`` links of the root namespace that exist."""
    namespaces = [
        line.split(" ")[0]
        for line in ip("netns", "list", check=False).stdout.splitlines()
        if line.startswith(PREFIX)
    ]
    links = []
    for line in ip("-o", "link", "show", check=False).stdout.splitlines():
        link = line.split(": ")[1].split("@")[0] if ": " in line else ""
        if link.startswith(PREFIX):
            links.append(link)
    return namespaces, links


def remove_leftovers() -> list[str]:
    """Remove every ``drmh-`` namespace (killing the processes still in it, which an earlier
    run of this test started) and every ``drmh-`` link (the bridge, veth ends); the names
    removed."""
    namespaces, links = leftovers()
    for name in namespaces:
        for pid in ip("netns", "pids", name, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        ip("netns", "delete", name, check=False)
    # A deleted namespace lives on, unnamed, while its sockets still retransmit to a peer that
    # is gone, and its veth pair with it unless one end is deleted here.
    for link in links:
        ip("link", "delete", link, check=False)
    return namespaces + links


class Network:
    """The bridge and one namespace per host, each joined to the bridge by a veth pair."""

    def __init__(self) -> None:
        self.namespaces: list[str] = []
        self.bridge = False

    def build(self, hosts: tuple[Host, ...]) -> None:
        ip("link", "add", BRIDGE, "type", "bridge")
        self.bridge = True
        ip("addr", "add", f"{BRIDGE_ADDRESS}/{NETMASK}", "dev", BRIDGE)
        ip("link", "set", BRIDGE, "up")
        for host in hosts:
            ns = host.namespace
            ip("netns", "add", ns)
            self.namespaces.append(ns)
            outside, inside = f"{ns}-h", f"{ns}-n"
            ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            ip("link", "set", inside, "netns", ns)
            ip("link", "set", outside, "master", BRIDGE)
            ip("link", "set", outside, "up")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", inside, "name", "eth0")
            ip("-n", ns, "addr", "add", f"{host.address}/{NETMASK}", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")

    @staticmethod
    def cut(host: Host) -> None:
        """Unplug ``host``: its end of the link goes down, packets to and from it are lost
        (no reset: peers only learn by timing out or failing to resolve its address)."""
        ip("-n", host.namespace, "link", "set", "eth0", "down")

    @staticmethod
    def restore(host: Host) -> None:
        """Plug ``host`` back in (its address and route come back with the link)."""
        ip("-n", host.namespace, "link", "set", "eth0", "up")

    def close(self) -> None:
        """Delete every namespace (their veth pairs go with them) and the bridge."""
        for ns in reversed(self.namespaces):
            ip("link", "delete", f"{ns}-h", check=False)  # its peer too: see remove_leftovers
            ip("netns", "delete", ns, check=False)
        self.namespaces.clear()
        if self.bridge:
            ip("link", "delete", BRIDGE, check=False)
            self.bridge = False


class BridgeProxy(TcpProxy):
    """A :class:`TcpProxy` listening on the bridge's address, so the hosts reach a loopback
    server of the root namespace through it."""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, BRIDGE_ADDRESS, 0)

    def url_for(self, url: str, **query: str) -> str:
        """``url`` pointed at this forwarder (credentials, path and query kept)."""
        parts = urlsplit(super().url_for(url, **query))
        netloc = parts.netloc.replace(f"127.0.0.1:{self.port}", f"{BRIDGE_ADDRESS}:{self.port}")
        return urlunsplit(parts._replace(netloc=netloc))


class HostProcess:
    """``python -m <module>`` run inside a host's namespace, its stderr kept in a file."""

    def __init__(self, host: Host, env: dict[str, str]) -> None:
        self.host = host
        self.log = tempfile.TemporaryFile()
        # `ip netns exec` execs the command: the pid is the Python process's own.
        self.popen = subprocess.Popen(
            ["ip", "netns", "exec", host.namespace, sys.executable, "-m", host.module],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(30)
        self.log.close()


@dataclass
class MultiHost:
    """The platform on its hosts, and what the test made to run it."""

    env: dict[str, str]
    admin_env: dict[str, str]  # the same settings as seen from the root namespace (CLI)
    network: Network
    processes: dict[str, HostProcess] = field(default_factory=dict)
    proxies: dict[str, TcpProxy] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The public URL (the first gateway's): what the API's absolute URLs start with."""
        return self.env["DARKROOM_PUBLIC_URL"]

    @property
    def gateways(self) -> list[str]:
        return [h.url for h in HOSTS if h.service == "gateway"]

    def host(self, name: str) -> Host:
        return next(h for h in HOSTS if h.name == name)

    def create_account(self, name: str = "Multi Host") -> dict:
        """A new account through the operator CLI, run in the root namespace."""
        return Stack(env=self.admin_env, url=self.url, service_urls={}).create_account(name)

    async def database(self) -> asyncpg.Connection:
        """A connection to the platform's database on the ingest schema (from the root)."""
        return await asyncpg.connect(
            self.admin_env["DATABASE_URL"], server_settings={"search_path": "ingest"}
        )


def host_env(host: Host) -> dict[str, str]:
    """What differs from host to host: where it listens."""
    port_var = (
        "DARKROOM_PORT" if host.service == "gateway" else f"DARKROOM_{host.service.upper()}_PORT"
    )
    return {"DARKROOM_HOST": host.address, port_var: str(host.port)}


async def readyz(http: aiohttp.ClientSession, host: Host) -> tuple[int, dict]:
    """A host's ``/readyz`` status and body."""
    async with http.get(f"{host.url}/readyz") as response:
        return response.status, await response.json(content_type=None)


async def _ready(http: aiohttp.ClientSession, process: HostProcess, deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            break
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
            status, _body = await readyz(http, process.host)
            if status == 200:
                return
        await asyncio.sleep(0.3)
    raise RuntimeError(
        f"{process.host.name} ({process.host.module}) did not become ready: "
        f"{process.stderr()[-3000:]}"
    )


@contextlib.asynccontextmanager
async def multihost_platform(
    secrets_env: dict[str, str], smtp_port: int, tmp_path
) -> AsyncIterator[MultiHost]:
    """Build the network, the forwarders and a database and an exchange of the run's own,
    start every host's process and wait until each is ready; remove all of it on the way out,
    whatever happened."""
    remove_leftovers()
    name = f"darkroom_test_mh_{uuid.uuid4().hex[:8]}"
    database_url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    network = Network()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    _, moto_port = moto.get_host_and_port()
    platform: MultiHost | None = None
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    try:
        network.build(HOSTS)
        servers = {
            "postgres": _host_port(PG_ADMIN),
            "rabbitmq": _host_port(AMQP_URL),
            "s3": ("127.0.0.1", moto_port),
            "smtp": ("127.0.0.1", smtp_port),
        }
        if _listening(*REDIS):
            servers["redis"] = REDIS
        proxies = {key: BridgeProxy(*target) for key, target in servers.items()}
        for proxy in proxies.values():
            await proxy.start()
        by_service = {h.service: h for h in HOSTS}
        processing = ",".join(h.url for h in HOSTS if h.service == "processing")
        env = {
            **secrets_env,
            "DATABASE_URL": proxies["postgres"].url_for(database_url),
            "AMQP_URL": proxies["rabbitmq"].url_for(AMQP_URL),
            "DARKROOM_EXCHANGE": name,
            "S3_ENDPOINT_URL": f"http://{BRIDGE_ADDRESS}:{proxies['s3'].port}",
            "S3_BUCKET": "darkroom-blobs",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "SMTP_URL": f"smtp://{BRIDGE_ADDRESS}:{proxies['smtp'].port}",
            "DARKROOM_SECRETS_DIR": str(tmp_path / "no-secrets-here"),
            "DARKROOM_MAIL_DIR": str(tmp_path / "mail"),
            "DARKROOM_PUBLIC_URL": by_service["gateway"].url,
            "DARKROOM_AUTH_URL": by_service["auth"].url,
            "DARKROOM_INGEST_URL": by_service["ingest"].url,
            "DARKROOM_REPORTS_URL": by_service["reports"].url,
            "DARKROOM_RENDERING_URL": by_service["rendering"].url,
            "DARKROOM_PROCESSING_URL": processing,
            "DARKROOM_PROCESSING_WORKERS": "1",
            # An upload waiting on an unplugged replica answers 503 within this, not 60 s.
            "DARKROOM_PROCESSING_TIMEOUT_SECONDS": "10",
            "DARKROOM_LOG_LEVEL": "info",
            "DARKROOM_LOG_FORMAT": "json",
            "DARKROOM_OUTBOX_POLL": "0.2",
            "DARKROOM_EVENT_RETRY_BASE": "0.05",
            **{
                f"DARKROOM_RATE_{kind}": UNLIMITED
                for kind in ("OAUTH", "API_KEY", "SESSION", "ANONYMOUS")
            },
        }
        if "redis" in proxies:
            env["REDIS_URL"] = f"redis://{BRIDGE_ADDRESS}:{proxies['redis'].port}/0"
            env["DARKROOM_REDIS_PREFIX"] = name
        admin_env = {**env, "DATABASE_URL": database_url, "AMQP_URL": AMQP_URL}
        platform = MultiHost(env, admin_env, network, proxies=proxies)
        # auth first: the others' first calls go to it, and migrations run one schema each.
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http:
            deadline = time.monotonic() + STARTUP_SECONDS
            for group in (
                ("auth",),
                ("ingest", "proc1", "proc2", "reports", "render"),
                ("gw1", "gw2"),
            ):
                for host_name in group:
                    host = platform.host(host_name)
                    platform.processes[host_name] = HostProcess(host, {**env, **host_env(host)})
                for host_name in group:
                    await _ready(http, platform.processes[host_name], deadline)
        yield platform
    finally:
        if platform is not None:
            for process in platform.processes.values():
                process.kill()
            for proxy in platform.proxies.values():
                await proxy.stop()
        network.close()
        remove_leftovers()
        moto.stop()
        with contextlib.suppress(Exception):
            await delete_topology(name)
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 0


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False
