"""Fetching a URL a client names (ingest's ``remote_file_url``, the requests of a page rendering
loads) without becoming a proxy into our own network (SSRF).

Threat model: any client may name any URL, and we fetch it from inside the deployment, where
the cloud metadata service (169.254.169.254), the database, RabbitMQ, the internal service
ports and the admin interfaces of other machines are reachable while the client cannot reach
them. A fetch must therefore only ever open a TCP connection to a public address (or to one
the operator explicitly allows), must not be turned into a slow or endless download that
ties up a worker, and must not carry anything of ours (cookies, credentials) to the remote.

Why the checks sit at connect time and not (only) on the URL: a hostname is just a pointer.
Looking it up, approving the answer and then letting the HTTP client look it up again is a
time-of-check/time-of-use hole: a DNS server under the attacker's control answers a public
address the first time and 127.0.0.1 the second (DNS rebinding), and every redirect is a new
URL with a new host. So our resolver is the only one the client session has: it resolves,
refuses the host when any of its addresses is denied, and hands aiohttp exactly the addresses
it checked, which are the ones aiohttp connects to. aiohttp never asks the resolver about
literal IP hosts, and yarl keeps legacy spellings (``2130706433``, ``0x7f.1``, ``0177.0.0.1``,
``127.1``) as they are, which ``getaddrinfo`` would still map onto loopback; literal hosts are
therefore checked before each request (legacy spellings refused outright), and as a last line
the socket factory refuses to create a socket for any address that is not allowed, whichever
path it came from.

The deny list is explicit data rather than ``ipaddress``'s ``is_private``/``is_global``, which
are wrong for several ranges in the Python we run (CVE-2024-4032). IPv6 forms that carry an
IPv4 address (IPv4-mapped, NAT64, 6to4) take the verdict of the address they carry, so
``::ffff:127.0.0.1`` is loopback while a NAT64-synthesised public address still works.

Every failure is an :class:`~shared.errors.InvalidRequest` whose message starts with
``remote_file_url:`` and says what to change.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from shared.errors import InvalidRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

USER_AGENT = "Darkroom/0.1 (+remote fetch)"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_SCHEMES = frozenset({"http", "https"})

# (range, where an embedded IPv4 address sits) — refused unless inside an allowed network. With
# a shift, the range is not refused as such: the IPv4 address ``(int(ip) >> shift) & 0xFFFFFFFF``
# is what the packets really reach, so it is checked in its place.
_DENY_TABLE: tuple[tuple[str, int | None], ...] = (
    ("0.0.0.0/8", None),  # "this network"; 0.0.0.0 reaches the local host on Linux
    ("10.0.0.0/8", None),
    ("100.64.0.0/10", None),  # carrier-grade NAT
    ("127.0.0.0/8", None),
    ("169.254.0.0/16", None),  # link-local, incl. the cloud metadata service 169.254.169.254
    ("172.16.0.0/12", None),
    ("192.0.0.0/24", None),  # IETF protocol assignments
    ("192.0.2.0/24", None),  # TEST-NET-1
    ("192.168.0.0/16", None),
    ("198.18.0.0/15", None),  # benchmarking
    ("198.51.100.0/24", None),  # TEST-NET-2
    ("203.0.113.0/24", None),  # TEST-NET-3
    ("224.0.0.0/4", None),  # multicast
    ("240.0.0.0/4", None),  # reserved
    ("255.255.255.255/32", None),  # broadcast
    ("::/128", None),
    ("::1/128", None),
    ("::/96", None),  # IPv4-compatible (deprecated): never a legitimate destination
    ("::ffff:0:0/96", 0),  # IPv4-mapped
    ("64:ff9b::/96", 0),  # NAT64 well-known prefix
    ("64:ff9b:1::/48", None),  # NAT64 local-use prefix: translated inside our own network
    ("100::/64", None),  # discard-only
    ("2001::/32", None),  # Teredo: the embedded addresses are obfuscated, refuse the lot
    ("2001:db8::/32", None),  # documentation
    ("2002::/16", 80),  # 6to4
    ("fc00::/7", None),  # unique local
    ("fe80::/10", None),  # link-local
    ("fec0::/10", None),  # site-local (deprecated)
    ("ff00::/8", None),  # multicast
)
DENY_LIST: tuple[tuple[IPNetwork, int | None], ...] = tuple(
    (ipaddress.ip_network(cidr), shift) for cidr, shift in _DENY_TABLE
)


def address_allowed(address: str | IPAddress, allowed_networks: tuple[IPNetwork, ...]) -> bool:
    """Whether a connection to ``address`` is allowed: off the deny list, or inside an allowed
    network. Checks the address only; nothing is resolved or fetched."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        ip = ipaddress.IPv6Address(int(ip))  # the zone does not change where the range is
    if any(ip.version == net.version and ip in net for net in allowed_networks):
        return True
    for network, shift in DENY_LIST:
        if ip.version == network.version and ip in network:
            if shift is None:
                return False
            embedded = ipaddress.IPv4Address((int(ip) >> shift) & 0xFFFFFFFF)
            return address_allowed(embedded, allowed_networks)
    return True


class AddressRefused(OSError):
    """Raised inside aiohttp's connector; an ``OSError`` so aiohttp wraps it as a connector
    error (keeping it as ``os_error``) instead of letting it escape half-handled."""

    def __init__(self, address: str) -> None:
        super().__init__(f"address {address} is not allowed")
        self.address = address


class GuardedResolver(AbstractResolver):
    """The session's only resolver: every address of the answer must pass, and the answer
    is handed to aiohttp as checked (numeric), so aiohttp connects to exactly those."""

    def __init__(self, allowed_networks: tuple[IPNetwork, ...]) -> None:
        self._allowed = allowed_networks
        # getaddrinfo, like the rest of the host, so /etc/hosts names (localhost) are caught too.
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        for answer in answers:
            # One bad address refuses the host: a name that points inside is an attack, and
            # dropping just that address would leave the choice to the attacker's DNS server.
            if not address_allowed(answer["host"], self._allowed):
                raise AddressRefused(answer["host"])
        return answers

    async def close(self) -> None:
        await self._inner.close()


def guarded_socket_factory(
    allowed_networks: tuple[IPNetwork, ...],
) -> Callable[[tuple], socket.socket]:
    """A socket factory that refuses addresses off the policy: the last check before connect(),
    whichever way (resolver or literal host) the address arrived."""

    def factory(addr_info: tuple) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        if not address_allowed(sockaddr[0], allowed_networks):
            raise AddressRefused(sockaddr[0])
        return socket.socket(family=family, type=type_, proto=proto)

    return factory


class RemoteSettings(Protocol):
    """The settings a remote-fetch policy is read from (ingest's and rendering's configs)."""

    remote_allow_networks: tuple[IPNetwork, ...]
    max_upload_bytes: int
    remote_timeout_seconds: float
    remote_max_redirects: int


@dataclass(frozen=True)
class RemotePolicy:
    """What a remote fetch may reach and how much it may take."""

    allowed_networks: tuple[IPNetwork, ...]  # exceptions to the deny list
    max_bytes: int
    timeout_seconds: float  # whole fetch incl. redirects
    max_redirects: int = 3

    @classmethod
    def from_config(cls, config: RemoteSettings) -> RemotePolicy:
        """The policy a process's configuration sets."""
        return cls(
            allowed_networks=tuple(config.remote_allow_networks),
            max_bytes=config.max_upload_bytes,
            timeout_seconds=config.remote_timeout_seconds,
            max_redirects=config.remote_max_redirects,
        )


@dataclass(frozen=True)
class RemoteFile:
    """The downloaded bytes and where they finally came from."""

    data: bytes
    url: str  # final URL after redirects
    media_type: str | None  # the server's Content-Type, informative only


def _refuse(message: str) -> InvalidRequest:
    return InvalidRequest(f"remote_file_url: {message}")


def _shown(url: URL | str) -> str:
    text = str(url)
    return text if len(text) <= 200 else text[:197] + "..."


def check_url(url: URL, allowed_networks: tuple[IPNetwork, ...]) -> None:
    """Refuse what is wrong with ``url`` before any connection: scheme, userinfo, a missing
    host, and literal IP hosts (which aiohttp does not pass to the resolver)."""
    if not url.scheme:
        raise _refuse("the URL has no scheme; only http and https URLs are fetched")
    if url.scheme not in _SCHEMES:
        raise _refuse(f"only http and https URLs are fetched, not {url.scheme}:")
    if url.raw_user is not None or url.raw_password is not None:
        # We would send them as Basic credentials on every hop, redirects to others included.
        raise _refuse("user name or password in the URL is not allowed")
    host = url.host
    if not host:
        raise _refuse("the URL has no host")
    bare = host[:-1] if host.endswith(".") else host
    try:
        literal = ipaddress.ip_address(bare)
    except ValueError:
        literal = None
    if literal is not None:
        if not address_allowed(literal, allowed_networks):
            raise _refuse(f"address {literal} is not allowed")
        return
    if _legacy_ipv4(bare):
        # getaddrinfo still reads these (0x7f.1 is 127.0.0.1); nobody writes a real host so.
        try:
            meant = f" (it means {ipaddress.IPv4Address(socket.inet_aton(bare))})"
        except OSError:
            meant = ""
        raise _refuse(f"host {host} is not a dotted-quad IPv4 address{meant}; write it as one")


def _legacy_ipv4(host: str) -> bool:
    """Whether ``host`` looks like a number-based IPv4 spelling (decimal, octal or hex parts)."""
    parts = host.lower().split(".")
    return 1 <= len(parts) <= 4 and all(
        part.isdigit() or (part.startswith("0x") and all(c in "0123456789abcdef" for c in part[2:]))
        for part in parts
    )


def guarded_session(
    allowed_networks: tuple[IPNetwork, ...], timeout_seconds: float, headers: dict[str, str]
) -> aiohttp.ClientSession:
    """A ClientSession that connects only where the policy allows (the guarded resolver and
    socket factory), keeps no cookies, reads no proxy or credentials from the environment and
    never decompresses; every connection Darkroom opens to an address a customer chose (remote
    fetches, commit statuses) uses one. Call it inside the running loop; check each URL with
    :func:`check_url` before its request (literal IP hosts skip the resolver)."""
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(allowed_networks),
        socket_factory=guarded_socket_factory(allowed_networks),
        # A cached answer would outlive its check's context; resolving each time is cheap.
        use_dns_cache=False,
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),  # no cookies kept, so none sent on
        trust_env=False,  # no proxy from the environment, no ~/.netrc credentials
        # A compressed body could expand far past a cap inside one decompression; we ask for
        # identity and refuse anything else.
        auto_decompress=False,
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **headers},
        timeout=aiohttp.ClientTimeout(total=timeout_seconds),
    )


class RemoteFetcher:
    """Holds one aiohttp ClientSession with the guarded resolver/connector; one per process.

    The session is created on the first fetch (it needs the running loop), so the fetcher can
    be built anywhere, e.g. in the app factory.
    """

    def __init__(self, policy: RemotePolicy) -> None:
        self.policy = policy
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = guarded_session(
                self.policy.allowed_networks,
                self.policy.timeout_seconds,
                {"Accept": "image/*, */*;q=0.5"},
            )
        return self._session

    async def fetch(self, url: str) -> RemoteFile:
        """Download ``url`` under the policy; raises :class:`InvalidRequest` on every failure."""
        try:
            current = URL(url)
        except (ValueError, TypeError):
            raise _refuse("not a valid URL") from None
        session = self._client()
        try:
            # One deadline for everything, so redirects and a slow drip cannot add up.
            async with asyncio.timeout(self.policy.timeout_seconds):
                return await self._follow(session, current)
        except TimeoutError:
            raise _refuse(f"timed out after {self.policy.timeout_seconds:g} s") from None

    async def _follow(self, session: aiohttp.ClientSession, current: URL) -> RemoteFile:
        policy = self.policy
        for hop in range(max(policy.max_redirects, 0) + 1):
            redirected = f" (redirected to {_shown(current)})" if hop else ""
            try:
                check_url(current, policy.allowed_networks)
            except InvalidRequest as exc:
                raise InvalidRequest(exc.message + redirected) from None
            try:
                async with session.get(current, allow_redirects=False) as response:
                    if response.status in _REDIRECTS:
                        location = response.headers.get("Location")
                        if not location:
                            raise _refuse(f"redirect {response.status} without a Location")
                        if hop == policy.max_redirects:
                            raise _refuse(f"more than {policy.max_redirects} redirects")
                        try:
                            current = current.join(URL(location)).with_fragment(None)
                        except ValueError:
                            raise _refuse(
                                f"redirect to an invalid URL {location[:200]!r}"
                            ) from None
                        continue
                    return await self._read(response, current)
            except (InvalidRequest, TimeoutError):
                raise  # a timeout (ours or aiohttp's copy of it) is worded by fetch()
            except aiohttp.ClientConnectorError as exc:
                raise _connect_error(exc, current, redirected) from None
            except aiohttp.InvalidURL:
                raise _refuse(f"not a valid URL: {_shown(current)}") from None
            except aiohttp.ClientError as exc:
                # Reset, malformed headers, truncated body: the remote end's fault, not ours.
                raise _refuse(
                    f"the server at {current.host} broke off or answered malformed HTTP"
                    f" ({type(exc).__name__}){redirected}"
                ) from None
        raise AssertionError("unreachable: the last hop returns or raises")

    async def _read(self, response: aiohttp.ClientResponse, url: URL) -> RemoteFile:
        policy = self.policy
        if not 200 <= response.status < 300:
            raise _refuse(
                f"the server answered {response.status} {response.reason or ''}".rstrip()
                + f" for {_shown(url)}"
            )
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in {"", "identity"}:
            raise _refuse(f"the server sent a {encoding}-encoded body; only identity is accepted")
        too_large = _refuse(f"larger than {policy.max_bytes} bytes")
        if response.content_length is not None and response.content_length > policy.max_bytes:
            raise too_large  # before reading a byte of it
        body = bytearray()
        async for chunk in response.content.iter_any():
            body += chunk
            if len(body) > policy.max_bytes:
                raise too_large
        media_type = response.content_type if "Content-Type" in response.headers else None
        return RemoteFile(data=bytes(body), url=str(url), media_type=media_type)

    async def close(self) -> None:
        """Close the session and its connections; the fetcher is not used after this."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def _connect_error(exc: aiohttp.ClientConnectorError, url: URL, redirected: str) -> InvalidRequest:
    cause = exc.os_error
    if isinstance(cause, AddressRefused):
        named = "" if cause.address == url.host else f" of host {url.host}"
        return _refuse(f"address {cause.address}{named} is not allowed{redirected}")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return _refuse(f"host {url.host} cannot be resolved{redirected}")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return _refuse(f"the TLS certificate of {url.host} is not valid{redirected}")
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        return _refuse(f"the TLS handshake with {url.host} failed{redirected}")
    return _refuse(f"cannot connect to {url.host} port {url.port}{redirected}")
