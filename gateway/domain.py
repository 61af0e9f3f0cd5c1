"""The gateway's rules as plain values: the routing table, the rate-limit classes, the
credential cache, the edge cache and CORS (the limiter itself is gateway/limiting.py). Time is
passed in, so every rule is testable without waiting."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

from cachetools import LRUCache

from shared.http import Principal

#: Auth modes of a route.
PUBLIC = "public"  # never authenticated (health, signed URLs)
OPTIONAL = "optional"  # authenticated when credentials are sent; anonymous otherwise
REQUIRED = "required"  # 401 without valid credentials


@dataclass(frozen=True)
class Route:
    """Public paths equal to ``path`` or below it (``path/…``) go to ``service``.

    ``pass_authorization`` forwards the caller's ``Authorization`` header untouched, for a
    PUBLIC path whose service reads it itself (OAuth client authentication by HTTP Basic).
    """

    path: str
    service: str
    auth: str
    exact: bool = False
    pass_authorization: bool = False

    def matches(self, request_path: str) -> bool:
        """True when ``request_path`` falls under this route."""
        if request_path == self.path:
            return True
        if self.exact:
            return False
        prefix = self.path if self.path.endswith("/") else self.path + "/"
        return request_path.startswith(prefix)


class RoutingTable:
    """Finds the most specific route for a path."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = sorted(routes, key=lambda r: (len(r.path), r.exact), reverse=True)
        # Every request is matched: by dictionary, not by trying each route in turn. A route
        # matches its own path (the exact one first where two share it); a prefix route also
        # the paths below it, found by looking up each of the path's leading segments.
        self._by_path: dict[str, Route] = {}
        self._by_prefix: dict[str, Route] = {}
        for route in self.routes:
            self._by_path.setdefault(route.path, route)
            if not route.exact:
                self._by_prefix.setdefault(route.path, route)

    def match(self, path: str) -> Route | None:
        """The longest route that matches ``path``, or None."""
        route = self._by_path.get(path)
        if route is not None:
            return route
        # Longest first: "/a/b/" (a prefix route spelt with its slash), then "/a/b", then "/a/"…
        end = path.rfind("/")
        while end >= 0:
            route = self._by_prefix.get(path[: end + 1]) or self._by_prefix.get(path[:end])
            if route is not None:
                return route
            end = path.rfind("/", 0, end)
        return None


def limit_class(principal: Principal) -> str:
    """Which rate limit applies to a principal."""
    if principal.kind == "oauth":
        return "oauth"
    if principal.kind in {"basic", "jwt", "token"}:
        return "api_key"
    if principal.kind == "session":
        return "session"
    return "anonymous"


def cache_key(authorization: str | None, session: str | None) -> str:
    """The cache key of a set of credentials (a digest: raw secrets are not kept as keys)."""
    material = f"{authorization or ''}\0{session or ''}".encode()
    return hashlib.sha256(material).hexdigest()


class PrincipalCache:
    """Resolved credentials, trusted for ``ttl`` seconds or until their credential is revoked."""

    def __init__(self, ttl: float, max_entries: int = 50_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._by_credential: dict[str, set[str]] = {}

    def get(self, key: str, now: float) -> Principal | None:
        """The cached principal for ``key`` if still fresh."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        principal, expires = entry
        if now >= expires:
            self._drop(key)
            return None
        return principal

    def put(self, key: str, principal: Principal, now: float) -> None:
        """Remember ``principal`` for ``key``."""
        if self.ttl <= 0:
            return
        self._drop(key)
        self._entries[key] = (principal, now + self.ttl)
        if principal.credential_id:
            self._by_credential.setdefault(principal.credential_id, set()).add(key)
        while len(self._entries) > self.max_entries:
            self._drop(next(iter(self._entries)))

    def evict_credential(self, credential_id: str) -> int:
        """Forget every entry resolved through ``credential_id``; returns how many."""
        keys = self._by_credential.pop(credential_id, set())
        for key in keys:
            self._entries.pop(key, None)
        return len(keys)

    def clear(self) -> None:
        """Forget everything (after missing events, e.g. a broker reconnect)."""
        self._entries.clear()
        self._by_credential.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry and entry[0].credential_id:
            keys = self._by_credential.get(entry[0].credential_id)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_credential[entry[0].credential_id]


#: Largest answer the edge cache keeps (a thumbnail, a JSON answer; a full-size derivative is
#: streamed each time).
EDGE_MAX_ANSWER = 256 * 1024
#: What an entry costs beyond its body (key, headers, bookkeeping), for the byte budget.
_EDGE_OVERHEAD = 1024


@dataclass(frozen=True)
class KeptAnswer:
    """A 200 answer kept by the edge cache, as its service gave it: headers (those a client
    sees, less the ones every answer gets anew) and body."""

    headers: tuple[tuple[str, str], ...]
    body: bytes


class EdgeCache:
    """Answers a service marked as the same for the same caller and URL for good
    (``shared.http.EDGE_CACHE_HEADER``: a derived image, a Happo image already uploaded), kept
    in memory up to ``max_bytes`` (least recently used first out) and replayed as they were
    given, without asking the service again.

    Entries are per caller: the key is the principal (without its address) and the path with
    its query, so a hit never shows anyone an answer the service did not give them. A hit is
    looked up after authentication and the rate limit, so it changes neither.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._kept: LRUCache[tuple, KeptAnswer] = LRUCache(
            maxsize=max(1, max_bytes), getsizeof=lambda answer: len(answer.body) + _EDGE_OVERHEAD
        )

    @staticmethod
    def key(principal: Principal, path_qs: str) -> tuple:
        """The entry of ``principal`` asking for ``path_qs``."""
        return (
            principal.kind,
            principal.account_id,
            principal.user_id,
            principal.credential_id,
            path_qs,
        )

    def get(self, key: tuple) -> KeptAnswer | None:
        """The answer kept under ``key``, if any."""
        return self._kept.get(key)

    def fits(self, body_bytes: int) -> bool:
        """Whether an answer of ``body_bytes`` may be kept (the caller reads it whole if so)."""
        return body_bytes <= EDGE_MAX_ANSWER and body_bytes + _EDGE_OVERHEAD <= self.max_bytes

    def keep(self, key: tuple, answer: KeptAnswer) -> bool:
        """Keep ``answer`` under ``key`` when it fits; False when it is too large to keep."""
        if not self.fits(len(answer.body)):
            return False
        self._kept[key] = answer
        return True

    def __len__(self) -> int:
        return len(self._kept)


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Forms that open a session: posted from another site they would sign the visitor in to the
#: other site's account (login CSRF), so a foreign Origin is refused there without a session too.
SESSION_OPENERS = frozenset({"/signin", "/signup"})
CORS_ALLOW_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
CORS_DEFAULT_HEADERS = "Authorization, Content-Type, X-Request-Id"
CORS_EXPOSE_HEADERS = (
    "X-Request-Id, Retry-After, ETag, Content-Length, Content-Range, Location, Link"
)


def cors_headers(origin: str | None) -> dict[str, str]:
    """CORS headers for a response: any origin, without cookies (credentials travel in
    ``Authorization``, so no other site can ride on a signed-in browser)."""
    if not origin:
        return {}
    return {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Expose-Headers": CORS_EXPOSE_HEADERS,
        "Vary": "Origin",
    }


def preflight_headers(requested_headers: str | None) -> dict[str, str]:
    """Headers of the answer to a CORS preflight."""
    return {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": CORS_ALLOW_METHODS,
        "Access-Control-Allow-Headers": requested_headers or CORS_DEFAULT_HEADERS,
        "Access-Control-Max-Age": "86400",
        "Vary": "Origin, Access-Control-Request-Headers",
    }


def same_origin(origin: str | None, allowed: set[str]) -> bool:
    """True when a cookie-authenticated unsafe request comes from one of our own origins."""
    return origin is not None and origin.rstrip("/") in allowed
