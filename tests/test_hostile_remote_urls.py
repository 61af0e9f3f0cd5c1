"""Remote-fetch SSRF through the public API: Progimage's ``remote_file_url``, the platform's
only outbound fetch, aimed at internal addresses.

Every spelling of an internal address (decimal, hex, octal, IPv4-mapped, 6to4, NAT64, link-local,
names that resolve to loopback) is sent while a loopback server counts the TCP connections that
reach it, with a control showing the same server is reachable when allowed; then an allowed
stand-in server redirects inside, drips, sends an endless body or announces a gigabyte. Each
family writes its RESILIENCE.md row from the real answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import quote

from aiohttp import web

from services.ingest.progimage.handlers import PROGIMAGE
from shared.remote import RemoteFetcher, RemotePolicy
from tests.conftest import free_port
from tests.hostile_images_support import (
    Answer,
    bearer,
    fives,
    footprint,
    noise,
    read_body,
    refusal,
)
from tests.remote_support import Server, ipv6_loopback, make_app

# --- SSRF through the public API -----------------------------------------------------------------

PIXEL_PNG = noise(8, 8).pngsave_buffer()


@dataclass
class Internal:
    """A TCP server on loopback (IPv4 and, when there is one, IPv6) standing for everything
    inside the deployment. It counts connections, not requests: a refusal made after connect
    would still show. It answers a valid PNG, so that reaching it would make an upload work."""

    port: int
    connections: int = 0
    servers: list[asyncio.Server] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n"
                + f"Content-Length: {len(PIXEL_PNG)}\r\n\r\n".encode()
                + PIXEL_PNG
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def internal_server() -> AsyncIterator[Internal]:
    internal = Internal(free_port())
    hosts = ["127.0.0.1", *(["::1"] if ipv6_loopback() else [])]
    try:
        for host in hosts:
            internal.servers.append(
                await asyncio.start_server(internal.handle, host, internal.port)
            )
        yield internal
    finally:
        for server in internal.servers:
            server.close()
            await server.wait_closed()


def loopback_hostname() -> str | None:
    """A name other than ``localhost`` that this machine resolves to loopback (from
    /etc/hosts, or the host name): what an attacker's DNS record pointing inside looks like."""
    candidates: list[str] = []
    with contextlib.suppress(OSError), open("/etc/hosts") as hosts:
        for line in hosts:
            parts = line.split("#", 1)[0].split()
            if len(parts) > 1 and parts[0].startswith(("127.", "::1")):
                candidates += [name for name in parts[1:] if not name.startswith("localhost")]
    candidates.append(socket.gethostname())
    for name in candidates:
        try:
            answers = socket.getaddrinfo(name, 80, proto=socket.IPPROTO_TCP)
        except OSError:
            continue
        if answers and all(ipaddress.ip_address(a[4][0]).is_loopback for a in answers):
            return name
    return None


async def remote(http, stack, account, url: str) -> Answer:
    async with http.post(
        f"{stack.url}/user/images",
        json={"process": {"remote_file_url": url}},
        headers=bearer(account),
    ) as response:
        return Answer("progimage", url, response.status, await read_body(response))


@contextlib.asynccontextmanager
async def fetcher_allowing(stack, *networks: str, **limits: float) -> AsyncIterator[None]:
    """Progimage's fetcher swapped, for the block, for one that also reaches ``networks`` (the
    stack allows only public addresses, and a test has no public server): the way an operator
    allows a partner network with DARKROOM_REMOTE_ALLOW_NETWORKS."""
    uploads = stack.apps["ingest"][PROGIMAGE]
    default = uploads.fetcher
    policy = dataclasses.replace(
        RemotePolicy.from_config(uploads.config),
        allowed_networks=tuple(ipaddress.ip_network(n) for n in networks),
        **limits,
    )
    uploads.fetcher = RemoteFetcher(policy)
    try:
        yield
    finally:
        swapped, uploads.fetcher = uploads.fetcher, default
        await swapped.close()


async def test_remote_urls_to_internal_addresses_never_connect(stack, http, account, resilience):
    named = loopback_hostname()
    async with internal_server() as internal:
        port = internal.port
        urls = [
            f"http://127.0.0.1:{port}/",
            f"http://2130706433:{port}/",
            f"http://0x7f.1:{port}/",
            f"http://0177.0.0.1:{port}/",
            f"http://[::ffff:127.0.0.1]:{port}/",
            f"http://[::1]:{port}/",
            f"http://0.0.0.0:{port}/",
            f"http://10.0.0.1:{port}/",
            f"http://192.168.1.1:{port}/",
            f"http://100.64.0.1:{port}/",
            f"http://169.254.169.254:{port}/latest/meta-data/",
            "http://169.254.169.254/latest/meta-data/",
            f"http://[fe80::1]:{port}/",
            f"http://[2002:7f00:1::]:{port}/",
            f"http://[64:ff9b::7f00:1]:{port}/",
            f"http://localhost:{port}/",
            f"http://localhost.:{port}/",
            *([f"http://{named}:{port}/"] if named else []),
        ]
        before = await footprint(stack)
        answers = [await remote(http, stack, account, url) for url in urls]
        reached = internal.connections
        assert await footprint(stack) == before
        for answer in answers:
            message = refusal(answer, 422)
            assert message.startswith("process: remote_file_url: "), answer
            # Refused for where it leads; only the rooted "localhost." may simply not resolve.
            reasons = ["not allowed", "not a dotted-quad"]
            if "//localhost.:" in answer.case:
                reasons.append("cannot be resolved")
            assert any(reason in message for reason in reasons), answer
        assert reached == 0

        # The control: the same server is reachable, so zero above means refused, not missed.
        async with fetcher_allowing(stack, "127.0.0.0/8", "::1/128"):
            control = await remote(http, stack, account, f"http://127.0.0.1:{port}/x.png")
        assert control.status == 201, control
        assert internal.connections == 1
    resilience.row(
        "ssrf",
        "remote_file_url to internal addresses",
        injected=f"Progimage POST /user/images remote_file_url to {len(urls)} internal URLs on"
        " a counting loopback server's port (127.0.0.1, decimal/hex/octal spellings,"
        " ::ffff:127.0.0.1, ::1, 0.0.0.0, 10/8, 192.168/16, 100.64/10, 169.254.169.254, fe80::1,"
        " 6to4 and NAT64 of loopback, localhost, localhost., "
        f"{named or 'no other loopback name here'}). The only remote fetch: Happo, Haut.ai"
        " and the hash host take bytes only",
        observed=f"all {len(answers)} 422 'remote_file_url: … not allowed / not a dotted-quad /"
        f" cannot be resolved', {reached} TCP connections reached the server, nothing kept;"
        " control: with loopback allowed the same server serves the upload (1 connection)",
        accepted=sum(a.accepted for a in answers),
        effects=reached,
        errors_5xx=fives([*answers, control]),
    )


async def test_redirects_drips_and_endless_bodies_from_an_allowed_server(
    stack, http, account, resilience
):
    # 127.0.0.2 stands for a public server the fetcher may reach; 127.0.0.1 (the counting
    # server) stays internal. Both are real servers, so every refusal is the fetcher's.
    stand_in = Server("127.0.0.2", free_port())
    runner = web.AppRunner(make_app(stand_in), access_log=None, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, stand_in.host, stand_in.port).start()
    try:
        async with internal_server() as internal:
            port = internal.port
            targets = [
                f"http://127.0.0.1:{port}/x.png",
                f"http://localhost:{port}/x.png",
                f"http://2130706433:{port}/x.png",
                f"http://[::1]:{port}/x.png",
                "http://169.254.169.254/latest/meta-data/",
                "file:///etc/passwd",
            ]
            before = await footprint(stack)
            async with fetcher_allowing(
                stack, "127.0.0.2/32", timeout_seconds=1.5, max_bytes=100_000
            ):
                redirected = [
                    await remote(
                        http, stack, account, stand_in.url("/redirect?to=" + quote(target, safe=""))
                    )
                    for target in targets
                ]
                hops = len(stand_in.hits)
                started = time.monotonic()
                drip = await remote(http, stack, account, stand_in.url("/drip"))
                drip_seconds = time.monotonic() - started
                endless = await remote(http, stack, account, stand_in.url("/endless"))
                huge = await remote(http, stack, account, stand_in.url("/huge-length"))
            reached = internal.connections
    finally:
        stand_in.stop.set()
        await runner.cleanup()
    # Every first hop reached the allowed server, so each refusal is about where it pointed.
    assert hops == len(targets)
    for answer in redirected:
        message = refusal(answer, 422)
        assert "(redirected to " in message or "not file:" in message, answer
    assert reached == 0
    assert "timed out after 1.5 s" in refusal(drip, 422)
    assert drip_seconds < 4.0
    assert "larger than 100000 bytes" in refusal(endless, 422)
    assert "larger than 100000 bytes" in refusal(huge, 422)
    assert await footprint(stack) == before
    resilience.row(
        "ssrf",
        "redirect from an allowed server to internal addresses",
        injected=f"remote_file_url on an allowed stand-in (127.0.0.2) redirecting to {len(targets)}"
        " internal targets (127.0.0.1, localhost, 2130706433, ::1 on the counting server;"
        " 169.254.169.254; file:)",
        observed=f"all {len(redirected)} 422 '… not allowed (redirected to …)', the stand-in"
        f" saw {hops} first hops, {reached} connections reached the internal server",
        accepted=sum(a.accepted for a in redirected),
        effects=reached,
        errors_5xx=fives(redirected),
    )
    resilience.row(
        "ssrf",
        "slow drip, endless body, huge Content-Length",
        injected="remote_file_url on the allowed stand-in: 1 byte/s, an endless body, and a 1 GB"
        " Content-Length that stalls (fetch timeout 1.5 s, cap 100 kB)",
        observed=f"422 'timed out after 1.5 s' in {drip_seconds:.1f} s; 422 'larger than 100000"
        " bytes' for the endless body (cut while streaming) and the announced gigabyte (from"
        " the header); nothing kept",
        accepted=sum(a.accepted for a in (drip, endless, huge)),
        effects=0,
        errors_5xx=fives([drip, endless, huge]),
    )
