"""The gateway's handlers: health, readiness, and the authenticating, limiting proxy."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway import domain, limiting
from gateway.config import GatewayConfig
from shared import errors, layout
from shared.config import SERVICES
from shared.delivery import serve_asset
from shared.http import (
    ANONYMOUS,
    EDGE_CACHE_HEADER,
    REQUEST_ID_HEADER,
    REVOKED_HEADER,
    SIGNED_HEADERS,
    InternalClient,
    Principal,
    error_response,
    sign_principal,
)
from shared.logging import get_logger, request_id_var
from shared.metrics import ROUTE_LABEL

log = get_logger("darkroom.gateway")

CONFIG = web.AppKey("gateway.config", GatewayConfig)
UPSTREAM = web.AppKey("gateway.upstream", aiohttp.ClientSession)
RESOLVER = web.AppKey("gateway.resolver", InternalClient)
CACHE = web.AppKey("gateway.cache", domain.PrincipalCache)
LIMITER = web.AppKey("gateway.limiter", limiting.Limiter)
TABLE = web.AppKey("gateway.table", domain.RoutingTable)
EDGE = web.AppKey("gateway.edge", domain.EdgeCache)

SESSION_COOKIE = "darkroom_session"
_HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Host",
    )
)
_NOT_FORWARDED = _HOP_BY_HOP | {h.lower() for h in (*SIGNED_HEADERS, "Authorization", "Cookie")}
_NOT_RETURNED = _HOP_BY_HOP | {
    REVOKED_HEADER.lower(),
    EDGE_CACHE_HEADER.lower(),
    "content-length",
}
#: Methods an edge-cached answer is replayed to (it is kept from a GET).
_REPLAYED = frozenset({"GET", "HEAD"})
#: Request headers that ask for something other than the whole answer: such requests go to
#: the service, which knows how to answer them.
_CONDITIONAL = ("If-None-Match", "If-Modified-Since", "Range", "If-Range")
#: Headers every answer gets anew, never kept with an edge-cached one.
_PER_ANSWER = frozenset({REQUEST_ID_HEADER.lower(), "date", "server"})
_CHUNK = 64 * 1024
#: Upstream answers up to this size are read whole and answered in one write (not streamed).
_SMALL_BODY = _CHUNK
#: Statuses whose answers carry no body whatever their headers say.
_EMPTY_STATUSES = frozenset({204, 304})


async def healthz(_request: web.Request) -> web.Response:
    """``GET /healthz``: the gateway process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """``GET /readyz``: every service answers its own ``/readyz`` (a service listed with
    several replicas: at least one of them)."""
    config = request.app[CONFIG]

    async def replica_ready(url: str) -> bool:
        try:
            async with request.app[UPSTREAM].get(
                url + "/readyz",
                headers={REQUEST_ID_HEADER: request_id_var.get() or ""},
                timeout=aiohttp.ClientTimeout(total=3),
            ) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def ready(service: str) -> bool:
        urls = config.service_urls(service)
        return any(await asyncio.gather(*map(replica_ready, urls)))

    checks = dict(zip(SERVICES, await asyncio.gather(*map(ready, SERVICES)), strict=True))
    status = 200 if all(checks.values()) else 503
    return web.json_response(
        {"status": "ok" if status == 200 else "unavailable", "checks": checks}, status=status
    )


@web.middleware
async def edge_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """CORS for any origin (preflights answered here) and the header-size limit."""
    origin = request.headers.get("Origin")
    if (
        request.method == "OPTIONS"
        and origin
        and "Access-Control-Request-Method" in request.headers
    ):
        return web.Response(
            status=204,
            headers=domain.preflight_headers(request.headers.get("Access-Control-Request-Headers")),
        )
    header_bytes = sum(len(k) + len(v) + 4 for k, v in request.raw_headers)
    try:
        if header_bytes > request.app[CONFIG].max_header_bytes:
            raise errors.HeadersTooLarge()
        response = await handler(request)
    except errors.DarkroomError as exc:
        # Answered here rather than by the outer error middleware so errors carry CORS too:
        # a browser client must be able to read a 401 or a 429.
        response = error_response(exc, request)
    if not response.prepared:
        response.headers.update(domain.cors_headers(origin))
    return response


async def proxy(request: web.Request) -> web.StreamResponse:
    """Every public path but health: route, authenticate, rate-limit, forward, stream back."""
    route = request.app[TABLE].match(request.path)
    if route is None or request.path.startswith("/internal"):
        raise errors.NotFound(f"No route for {request.path}")
    request[ROUTE_LABEL] = route.path
    config = request.app[CONFIG]
    now = time.monotonic()
    address = _client_address(request, config)
    principal = await _authenticate(request, route, address, now)
    await _check_rate(request, principal, address)
    _check_origin(request, principal, config)
    length = request.content_length
    if length is not None and length > config.max_body_bytes:
        raise errors.PayloadTooLarge(f"Request body exceeds {config.max_body_bytes} bytes")
    edge = request.app[EDGE]
    edge_key = None
    if (
        edge.max_bytes
        and request.method in _REPLAYED
        and not any(name in request.headers for name in _CONDITIONAL)
    ):
        # After authentication and the rate limit: a replay is charged and refused alike.
        edge_key = edge.key(principal, request.raw_path)
        kept = edge.get(edge_key)
        if kept is not None:
            return web.Response(headers=CIMultiDict(kept.headers), body=kept.body)
    return await _forward(request, route, principal, config, edge_key)


async def _authenticate(
    request: web.Request, route: domain.Route, address: str, now: float
) -> Principal:
    anonymous = Principal(kind="anonymous", client_address=address)
    if route.auth == domain.PUBLIC:
        return anonymous
    authorization = request.headers.get("Authorization")
    session = request.cookies.get(SESSION_COOKIE)
    if not authorization and not session:
        if route.auth == domain.REQUIRED:
            await _charge_anonymous(request, address)
            raise errors.BadCredentials("Authentication required")
        return anonymous
    key = domain.cache_key(authorization, session)
    cached = request.app[CACHE].get(key, now)
    if cached is not None:
        return _at(cached, address)
    try:
        resolved = await _resolve(request.app, authorization, session)
    except errors.BadCredentials:
        await _charge_anonymous(request, address)
        # A stale cookie on a page that works signed out is no error: treat it as signed out.
        if not authorization and route.auth == domain.OPTIONAL:
            return anonymous
        raise
    request.app[CACHE].put(key, resolved, now)
    return _at(resolved, address)


@functools.lru_cache(maxsize=4096)
def _at(principal: Principal, address: str) -> Principal:
    # A frozen dataclass is slow to build; a client calls from one address call after call.
    return dataclasses.replace(principal, client_address=address)


async def _resolve(
    app: web.Application, authorization: str | None, session: str | None
) -> Principal:
    config = app[CONFIG]
    try:
        status, body = await app[RESOLVER].call(
            "POST",
            config.service_url("auth"),
            "/internal/resolve",
            ANONYMOUS,
            json_body={"authorization": authorization, "session": session},
            timeout=5,
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise errors.Unavailable("Authentication is unavailable", retry_after=2) from exc
    if status == 200 and isinstance(body, dict):
        return Principal(**body["principal"])
    if status in {400, 401} and isinstance(body, dict):
        raise errors.BadCredentials(body.get("error", {}).get("message"))
    raise errors.Unavailable("Authentication is unavailable", retry_after=2)


async def _charge_anonymous(request: web.Request, address: str) -> None:
    count, period = request.app[CONFIG].rate_anonymous
    wait = await request.app[LIMITER].take(f"anonymous:{address}", count, period)
    if wait:
        raise errors.RateLimitExceeded(retry_after=wait)


async def _check_rate(request: web.Request, principal: Principal, address: str) -> None:
    if not principal.authenticated:
        await _charge_anonymous(request, address)
        return
    kind = domain.limit_class(principal)
    count, period = getattr(request.app[CONFIG], f"rate_{kind}")
    wait = await request.app[LIMITER].take(f"{kind}:{principal.credential_id}", count, period)
    if wait:
        raise errors.RateLimitExceeded(retry_after=wait)


def _check_origin(request: web.Request, principal: Principal, config: GatewayConfig) -> None:
    # Cookies ride along on cross-site form posts; a session may only change state from here.
    # Without a session only the forms that open one are held to it (login CSRF).
    session = principal.kind == "session"
    if request.method in domain.SAFE_METHODS or not (
        session or request.path in domain.SESSION_OPENERS
    ):
        return
    origin = request.headers.get("Origin")
    if origin is None:
        referer = URL(request.headers.get("Referer", ""))
        origin = str(referer.origin()) if referer.is_absolute() else None
    if origin is None and not session:
        return  # a script or curl signing in: no browser, so no other site behind it
    allowed = {config.public_url.rstrip("/"), f"{request.scheme}://{request.host}"}
    if not domain.same_origin(origin, allowed):
        raise errors.Forbidden("Cross-site request refused")


def _client_address(request: web.Request, config: GatewayConfig) -> str:
    if config.trust_forwarded and "X-Forwarded-For" in request.headers:
        return request.headers["X-Forwarded-For"].split(",")[0].strip()
    return request.remote or "unknown"


async def _forward(
    request: web.Request,
    route: domain.Route,
    principal: Principal,
    config: GatewayConfig,
    edge_key: tuple | None,
) -> web.StreamResponse:
    rid = request_id_var.get() or ""
    service = route.service
    headers = _without(request.headers, _NOT_FORWARDED)
    if route.pass_authorization and "Authorization" in request.headers:
        headers["Authorization"] = request.headers["Authorization"]
    headers.update(
        sign_principal(config.internal_key, request.method, request.raw_path, principal, rid)
    )
    headers["X-Forwarded-For"] = principal.client_address or ""
    headers["X-Forwarded-Proto"] = request.scheme
    headers["X-Forwarded-Host"] = request.host
    overflow: list[int] = []
    body = _limited_body(request, config.max_body_bytes, overflow) if request.body_exists else None
    url = URL(config.service_url(service) + request.raw_path, encoded=True)
    try:
        async with request.app[UPSTREAM].request(
            request.method,
            url,
            headers=headers,
            data=body,
            allow_redirects=False,
            timeout=_upstream_timeout(config.upstream_timeout),
        ) as upstream:
            return await _stream_back(request, upstream, edge_key)
    except (aiohttp.ClientError, TimeoutError) as exc:
        if overflow:
            raise errors.PayloadTooLarge(
                f"Request body exceeds {config.max_body_bytes} bytes"
            ) from exc
        log.warning("upstream.failed", service=service, error=repr(exc))
        raise errors.Unavailable(f"The {service} service is unavailable", retry_after=2) from exc


def _without(
    headers: CIMultiDictProxy[str] | CIMultiDict[str], names: frozenset[str]
) -> CIMultiDict[str]:
    """A copy of ``headers`` without any of ``names`` (lower-cased)."""
    copied = headers.copy()
    for name in names:
        if name in copied:
            del copied[name]
    return copied


@functools.cache
def _upstream_timeout(total: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=total, sock_connect=5)


async def _limited_body(
    request: web.Request, limit: int, overflow: list[int]
) -> AsyncIterator[bytes]:
    seen = 0
    async for chunk in request.content.iter_chunked(_CHUNK):
        seen += len(chunk)
        if seen > limit:
            overflow.append(seen)
            raise errors.PayloadTooLarge(f"Request body exceeds {limit} bytes")
        yield chunk


async def _stream_back(
    request: web.Request, upstream: aiohttp.ClientResponse, edge_key: tuple | None
) -> web.StreamResponse:
    revoked = upstream.headers.get(REVOKED_HEADER)
    if revoked:
        request.app[CACHE].evict_credential(revoked)
    headers = _without(upstream.headers, _NOT_RETURNED)
    length = upstream.content_length
    kept = (
        edge_key is not None
        and request.method == "GET"
        and upstream.status == 200
        and EDGE_CACHE_HEADER in upstream.headers
        and length is not None
        and request.app[EDGE].fits(length)
    )
    if kept:
        # As the service gave it, before this answer's own request id and CORS.
        returned = tuple((k, v) for k, v in headers.items() if k.lower() not in _PER_ANSWER)
    headers[REQUEST_ID_HEADER] = request_id_var.get() or ""
    headers.update(domain.cors_headers(request.headers.get("Origin")))
    if kept or (
        length is not None
        and 0 < length <= _SMALL_BODY
        and request.method != "HEAD"
        and upstream.status not in _EMPTY_STATUSES
    ):
        # A small answer (JSON, mostly) is read whole and sent with its headers in one write:
        # streamed, the headers and the body cost a send each.
        body = await upstream.read()
        if kept:
            request.app[EDGE].keep(edge_key, domain.KeptAnswer(returned, body))
        return web.Response(
            status=upstream.status, reason=upstream.reason, headers=headers, body=body
        )
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
    if length is not None:
        response.content_length = length
    await response.prepare(request)
    async for chunk in upstream.content.iter_chunked(_CHUNK):
        await response.write(chunk)
    await response.write_eof()
    return response


# -- the API reference: /openapi.json and /docs (Swagger UI served from gateway/static) --------

_STATIC = Path(__file__).resolve().parent / "static"
_SWAGGER = _STATIC / "swagger-ui"
_DOCS_ASSETS = {
    "swagger-ui-bundle.js": "application/javascript",
    "swagger-ui.css": "text/css",
    "docs-init.js": "application/javascript",
    "favicon-32x32.png": "image/png",
    "LICENSE": "text/plain",
    "NOTICE": "text/plain",
    "swagger-ui-bundle.js.LICENSE.txt": "text/plain",
}
#: No inline script; Swagger UI sets style attributes, so inline styles are allowed.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


@functools.cache
def _openapi_body(public_url: str) -> bytes:
    from gateway import openapi

    return json.dumps(openapi.build(public_url), separators=(",", ":")).encode()


async def openapi_json(request: web.Request) -> web.Response:
    """``GET /openapi.json``: the OpenAPI 3.1 document of every public route."""
    return web.Response(
        body=_openapi_body(request.app[CONFIG].public_url),
        content_type="application/json",
        headers={"Cache-Control": "no-cache"},
    )


@functools.cache
def _docs_html() -> str:
    # The gateway's own page: no viewer known here, so the header's account links are left out.
    return (
        layout.environment(_STATIC)
        .get_template("docs.html")
        .render(nav=layout.navigation("docs.html"), user=None, account=False, csrf="")
    )


async def docs_page(_request: web.Request) -> web.Response:
    """``GET /docs``: the document rendered by Swagger UI, every asset served from here, under
    the site header."""
    return web.Response(
        text=_docs_html(),
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": DOCS_CSP, "X-Content-Type-Options": "nosniff"},
    )


async def docs_static(request: web.Request) -> web.StreamResponse:
    """``GET /docs/static/{name}``: the vendored Swagger UI files (a fixed list)."""
    return serve_asset(_SWAGGER, request.match_info["name"], _DOCS_ASSETS, "public, max-age=3600")
