"""The SSRF-hardened remote fetch: the address rules as data, then real fetches against aiohttp
servers on loopback addresses, counting the requests they receive to prove a refusal happened
before anything reached them."""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from services.ingest.config import IngestConfig
from shared.config import ConfigError, load
from shared.errors import InvalidRequest
from shared.remote import (
    USER_AGENT,
    AddressRefused,
    GuardedResolver,
    RemoteFetcher,
    RemoteFile,
    RemotePolicy,
    address_allowed,
    guarded_socket_factory,
)
from tests.conftest import free_port
from tests.remote_support import PNG, Server, ipv6_loopback, make_app

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


def policy(*allowed: str, max_bytes: int = 100_000, timeout: float = 5.0) -> RemotePolicy:
    return RemotePolicy(
        allowed_networks=tuple(ipaddress.ip_network(n) for n in allowed),
        max_bytes=max_bytes,
        timeout_seconds=timeout,
        max_redirects=3,
    )


# --- the address rules, without any network --------------------------------------------------

DENIED = [
    "0.0.0.0",
    "0.1.2.3",
    "10.0.0.1",
    "100.64.0.1",
    "100.127.255.254",
    "127.0.0.1",
    "127.255.255.254",
    "169.254.169.254",
    "172.16.0.1",
    "172.31.255.255",
    "192.0.0.8",
    "192.0.2.1",
    "192.168.1.1",
    "198.18.0.1",
    "198.19.255.255",
    "198.51.100.7",
    "203.0.113.9",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "::127.0.0.1",  # IPv4-compatible
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "64:ff9b::7f00:1",
    "64:ff9b::a9fe:a9fe",  # NAT64 of the metadata address
    "64:ff9b:1::1",
    "64:ff9b:1::808:808",  # local-use NAT64 is refused whatever it carries
    "2002:7f00:1::",
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "100::1",
    "2001::1",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "2001:db8::1",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fe80::1%eth0",
    "fec0::1",
    "ff02::1",
]
ALLOWED = [
    "93.184.216.34",
    "8.8.8.8",
    "1.1.1.1",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above it
    "172.32.0.1",
    "2606:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:93.184.216.34",  # IPv4-mapped public
    "64:ff9b::5db8:d822",  # NAT64 of 93.184.216.34, as DNS64 synthesises it
    "2002:5db8:d822::1",  # 6to4 of 93.184.216.34
]


@pytest.mark.parametrize("address", DENIED)
def test_denied_addresses(address: str) -> None:
    assert not address_allowed(address, ())


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses(address: str) -> None:
    assert address_allowed(address, ())


def test_allowed_networks_are_exceptions_and_apply_to_embedded_ipv4() -> None:
    allowed = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))
    assert address_allowed("10.1.2.3", allowed)
    assert address_allowed("::ffff:10.1.2.3", allowed)
    assert address_allowed("64:ff9b::a01:203", allowed)
    assert address_allowed("fd00::5", allowed)
    assert not address_allowed("127.0.0.1", allowed)
    assert not address_allowed("fc00::1", allowed)
    assert not address_allowed("::ffff:192.168.0.1", allowed)


async def test_resolver_refuses_a_name_with_a_denied_address() -> None:
    with pytest.raises(AddressRefused, match=r"127\.0\.0\.1"):
        await GuardedResolver(()).resolve("localhost", 80, socket.AF_INET)
    answers = await GuardedResolver(LOOPBACK).resolve("localhost", 80, socket.AF_INET)
    assert [a["host"] for a in answers] == ["127.0.0.1"]


def test_socket_factory_refuses_unchecked_addresses() -> None:
    """The last line: whatever path an address took, no socket is made for a denied one."""
    stream = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
    with pytest.raises(AddressRefused):
        guarded_socket_factory(())((*stream, ("127.0.0.1", 80)))
    with pytest.raises(AddressRefused):
        guarded_socket_factory(())((*stream, ("169.254.169.254", 80)))
    guarded_socket_factory(LOOPBACK)((*stream, ("127.0.0.1", 80))).close()
    guarded_socket_factory(())((*stream, ("93.184.216.34", 80))).close()


def test_policy_from_config() -> None:
    secrets = {"DARKROOM_INTERNAL_KEY": "k" * 32, "DARKROOM_SIGNING_KEY": "s" * 32}
    default = RemotePolicy.from_config(load(IngestConfig, secrets))
    assert default.allowed_networks == ()
    assert (default.timeout_seconds, default.max_redirects) == (10.0, 3)
    assert default.max_bytes == 30 * 1024 * 1024
    config = load(
        IngestConfig,
        {
            **secrets,
            "DARKROOM_REMOTE_ALLOW_NETWORKS": " 10.0.0.0/8, fd00::/8 ,",
            "DARKROOM_REMOTE_TIMEOUT_SECONDS": "2.5",
            "DARKROOM_REMOTE_MAX_REDIRECTS": "1",
            "DARKROOM_MAX_UPLOAD_BYTES": "1234",
        },
    )
    assert RemotePolicy.from_config(config) == RemotePolicy(
        allowed_networks=(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")),
        max_bytes=1234,
        timeout_seconds=2.5,
        max_redirects=1,
    )
    with pytest.raises(ConfigError, match="DARKROOM_REMOTE_ALLOW_NETWORKS"):
        load(IngestConfig, {**secrets, "DARKROOM_REMOTE_ALLOW_NETWORKS": "10.1.2.3/8"})
    with pytest.raises(ConfigError, match="DARKROOM_REMOTE_ALLOW_NETWORKS"):
        load(IngestConfig, {**secrets, "DARKROOM_REMOTE_ALLOW_NETWORKS": "localhost"})


# --- real servers on loopback ----------------------------------------------------------------


@pytest.fixture(scope="module")
async def servers() -> AsyncIterator[dict[str, Server]]:
    """Servers on 127.0.0.1, 127.0.0.2 and, when the machine has IPv6 loopback, ::1."""
    started: dict[str, Server] = {}
    runners: list[web.AppRunner] = []
    hosts = ["127.0.0.1", "127.0.0.2"]
    if ipv6_loopback():
        hosts.append("::1")
    try:
        for host in hosts:
            server = Server(host, free_port())
            runner = web.AppRunner(make_app(server), access_log=None, shutdown_timeout=1)
            await runner.setup()
            runners.append(runner)
            await web.TCPSite(runner, host, server.port).start()
            started[host] = server
        yield started
    finally:
        for server in started.values():
            server.stop.set()
        for runner in runners:
            await runner.cleanup()


@pytest.fixture
async def fetcher_for():
    """Build fetchers for policies; every one is closed after the test."""
    made: list[RemoteFetcher] = []

    def build(remote_policy: RemotePolicy) -> RemoteFetcher:
        made.append(RemoteFetcher(remote_policy))
        return made[-1]

    yield build
    for fetcher in made:
        await fetcher.close()


async def refused(fetcher: RemoteFetcher, url: str, match: str) -> str:
    with pytest.raises(InvalidRequest, match=match) as caught:
        await fetcher.fetch(url)
    assert caught.value.status == 422
    assert caught.value.message.startswith("remote_file_url: ")
    return caught.value.message


async def test_allowed_network_fetch_returns_the_bytes(servers, fetcher_for) -> None:
    server = servers["127.0.0.1"]
    got = await fetcher_for(policy("127.0.0.0/8")).fetch(server.url("/x.png"))
    assert got == RemoteFile(data=PNG, url=server.url("/x.png"), media_type="image/png")
    assert server.user_agents[-1] == USER_AGENT


async def test_no_cookies_or_credentials_are_sent(servers, fetcher_for) -> None:
    server = servers["127.0.0.1"]
    fetcher = fetcher_for(policy("127.0.0.0/8"))
    before = len(server.hits)
    for _ in range(2):  # the first answer sets a cookie; the second request must not carry it
        await fetcher.fetch(server.url("/x.png"))
    assert len(server.hits) == before + 2
    assert server.leaked_headers == []


@pytest.mark.parametrize(
    ("spelling", "match"),
    [
        ("127.0.0.1", "address 127.0.0.1 is not allowed"),
        ("2130706433", r"host 2130706433 is not a dotted-quad.*127\.0\.0\.1"),
        ("0x7f.1", r"host 0x7f\.1 is not a dotted-quad.*127\.0\.0\.1"),
        ("0177.0.0.1", r"host 0177\.0\.0\.1 is not a dotted-quad.*127\.0\.0\.1"),
        ("127.1", r"host 127\.1 is not a dotted-quad.*127\.0\.0\.1"),
        ("0x7f000001", "is not a dotted-quad"),
        ("127.0.0.1.", "address 127.0.0.1 is not allowed"),
        ("[::ffff:127.0.0.1]", "address ::ffff:7f00:1 is not allowed"),
        ("localhost", "address 127.0.0.1 of host localhost is not allowed"),
        # Resolves to loopback where the resolver knows the rooted name, else does not resolve.
        ("LocalHost.", r"host localhost\. (is not allowed|cannot be resolved)"),
    ],
)
async def test_loopback_spellings_are_refused_before_any_request(
    servers, fetcher_for, spelling: str, match: str
) -> None:
    server = servers["127.0.0.1"]
    before = len(server.hits)
    await refused(fetcher_for(policy()), f"http://{spelling}:{server.port}/x.png", match)
    assert len(server.hits) == before


async def test_legacy_spellings_stay_refused_even_when_loopback_is_allowed(
    servers, fetcher_for
) -> None:
    server = servers["127.0.0.1"]
    before = len(server.hits)
    for spelling in ("2130706433", "0x7f.1", "0177.0.0.1", "127.1"):
        await refused(
            fetcher_for(policy("127.0.0.0/8")),
            f"http://{spelling}:{server.port}/x.png",
            "not a dotted-quad",
        )
    assert len(server.hits) == before


async def test_ipv6_loopback_is_refused_and_allowed_when_listed(servers, fetcher_for) -> None:
    if "::1" not in servers:
        pytest.skip("no IPv6 loopback on this machine")
    server = servers["::1"]
    before = len(server.hits)
    await refused(fetcher_for(policy()), server.url("/x.png"), "address ::1 is not allowed")
    assert len(server.hits) == before
    # The server was there to be reached: listing ::1 lets the same URL through.
    got = await fetcher_for(policy("::1/128")).fetch(server.url("/x.png"))
    assert got.data == PNG
    assert len(server.hits) == before + 1


async def test_redirect_to_a_forbidden_address_is_refused_without_reaching_it(
    servers, fetcher_for
) -> None:
    first, target = servers["127.0.0.2"], servers["127.0.0.1"]
    fetcher = fetcher_for(policy("127.0.0.2/32"))
    assert (await fetcher.fetch(first.url("/x.png"))).data == PNG  # the first hop is allowed
    target_before, first_before = len(target.hits), len(first.hits)
    for to in (target.url("/x.png"), f"http://localhost:{target.port}/x.png"):
        message = await refused(
            fetcher,
            first.url(f"/redirect?to={to}"),
            r"127\.0\.0\.1.* is not allowed \(redirected to http://",
        )
        assert to in message
    assert len(target.hits) == target_before
    assert len(first.hits) == first_before + 2


async def test_redirects_are_followed_up_to_the_limit(servers, fetcher_for) -> None:
    server = servers["127.0.0.1"]
    fetcher = fetcher_for(policy("127.0.0.0/8"))
    got = await fetcher.fetch(server.url("/chain/8"))  # 8 → 9 → 10 → /x.png: three redirects
    assert got.data == PNG
    assert got.url == server.url("/x.png")
    before = len(server.hits)
    await refused(fetcher, server.url("/chain/7"), "more than 3 redirects")
    assert len(server.hits) == before + 4  # the fourth redirect is not followed


async def test_redirect_to_another_scheme_is_refused(servers, fetcher_for) -> None:
    server = servers["127.0.0.1"]
    fetcher = fetcher_for(policy("127.0.0.0/8"))
    for to, match in (
        ("file:///etc/passwd", "not file:"),
        ("ftp://127.0.0.1/x.png", "not ftp:"),
        (f"http://user:pw@127.0.0.1:{server.port}/x.png", "user name or password"),
    ):
        await refused(fetcher, server.url(f"/redirect?to={to}"), match)


async def test_slow_drip_is_cut_by_the_whole_fetch_timeout(servers, fetcher_for) -> None:
    server = servers["127.0.0.1"]
    started = time.monotonic()
    await refused(
        fetcher_for(policy("127.0.0.0/8", timeout=1.5)),
        server.url("/drip"),
        r"timed out after 1\.5 s",
    )
    assert 1.4 < time.monotonic() - started < 3.0


async def test_endless_body_is_cut_at_max_bytes(servers, fetcher_for) -> None:
    server = servers["127.0.0.1"]
    started = time.monotonic()
    await refused(
        fetcher_for(policy("127.0.0.0/8", max_bytes=100_000)),
        server.url("/endless"),
        "larger than 100000 bytes",
    )
    assert time.monotonic() - started < 3.0


async def test_content_length_above_the_cap_is_refused_before_reading(servers, fetcher_for) -> None:
    server = servers["127.0.0.1"]
    started = time.monotonic()
    await refused(
        fetcher_for(policy("127.0.0.0/8", max_bytes=100_000, timeout=5.0)),
        server.url("/huge-length"),
        "larger than 100000 bytes",
    )
    assert time.monotonic() - started < 2.0  # the body never came; the header was enough


async def test_a_body_exactly_at_the_cap_is_accepted(servers, fetcher_for) -> None:
    server = servers["127.0.0.1"]
    fetcher = fetcher_for(policy("127.0.0.0/8", max_bytes=len(PNG)))
    assert (await fetcher.fetch(server.url("/x.png"))).data == PNG
    small = fetcher_for(policy("127.0.0.0/8", max_bytes=len(PNG) - 1))
    await refused(small, server.url("/x.png"), f"larger than {len(PNG) - 1} bytes")


async def test_error_status_is_named(servers, fetcher_for) -> None:
    server = servers["127.0.0.1"]
    await refused(
        fetcher_for(policy("127.0.0.0/8")), server.url("/missing"), "answered 404 Not Found"
    )


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("ftp://example.com/x.png", "not ftp:"),
        ("file:///etc/passwd", "not file:"),
        ("gopher://127.0.0.1:6379/_FLUSHALL", "not gopher:"),
        ("http://user:pw@example.com/x.png", "user name or password"),
        ("http://user@example.com/x.png", "user name or password"),
        ("http:///x.png", "no host"),
        ("/x.png", "no scheme"),
        ("//example.com/x.png", "no scheme"),
        ("http://[::1/", "not a valid URL"),
        ("http://169.254.169.254/latest/meta-data/", "address 169.254.169.254 is not allowed"),
        ("http://[fe80::1%25eth0]/", "is not allowed"),
        ("http://0/", "not a dotted-quad"),
    ],
)
async def test_bad_urls_are_refused_without_network(fetcher_for, url: str, match: str) -> None:
    await refused(fetcher_for(policy()), url, match)


async def test_userinfo_refused_even_for_an_allowed_host(servers, fetcher_for) -> None:
    server = servers["127.0.0.1"]
    before = len(server.hits)
    url = f"http://user:pw@127.0.0.1:{server.port}/x.png"
    await refused(fetcher_for(policy("127.0.0.0/8")), url, "user name or password")
    assert len(server.hits) == before


async def test_unresolvable_host_is_a_clear_422(fetcher_for) -> None:
    await refused(fetcher_for(policy()), "http://no-such-host.invalid/x.png", "cannot be resolved")
