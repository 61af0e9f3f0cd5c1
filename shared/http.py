"""HTTP plumbing every process shares: request ids, the error middleware, the signed
principal on internal calls, the internal client, health routes and JSON helpers.

The gateway authenticates; services authorise. The gateway forwards who is calling as a
:class:`Principal` in ``X-Darkroom-Principal``, signed with the internal key over the method,
the path, a timestamp and the request id. Services refuse internal calls whose signature does
not verify, so nobody who reaches a service port directly can claim to be anyone.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from yarl import URL

from shared import errors, layout
from shared.db import CONNECTION_ERRORS, UNSTORABLE_TEXT
from shared.logging import get_logger, new_request_id, request_id_var

T = TypeVar("T")

log = get_logger("darkroom.http")

REQUEST_ID_HEADER = "X-Request-Id"
PRINCIPAL_HEADER = "X-Darkroom-Principal"
TIMESTAMP_HEADER = "X-Darkroom-Timestamp"
SIGNATURE_HEADER = "X-Darkroom-Signature"
SIGNED_HEADERS = (PRINCIPAL_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)
#: Set by auth on a response that revoked a credential, so the gateway that carried the request
#: evicts it before answering; other gateways learn it from ``credential.revoked``.
REVOKED_HEADER = "X-Darkroom-Revoked"
#: Set by a service on an answer that is the same bytes for the same caller and URL for as long
#: as the caller may see it (a derivative of an image that is never replaced): the gateway may
#: keep it and replay it to that caller without asking again. Never returned to clients.
EDGE_CACHE_HEADER = "X-Darkroom-Edge-Cache"
#: The headers that mark an answer so (pass them with it).
KEEP_AT_EDGE = MappingProxyType({EDGE_CACHE_HEADER: "caller"})
#: Paths every process answers without a signed principal.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
MAX_CLOCK_SKEW = 60


@dataclass(frozen=True)
class Principal:
    """Who is calling, as resolved by auth: an account and user, through which credential.

    ``kind`` is ``anonymous``, ``basic``, ``jwt``, ``token``, ``session``, ``oauth`` or
    ``operator``. ``client_address`` is the caller's address as the gateway saw it.
    """

    kind: str
    account_id: str | None = None
    user_id: str | None = None
    credential_id: str | None = None
    client_address: str | None = None

    @property
    def authenticated(self) -> bool:
        """True for every kind but ``anonymous``."""
        return self.kind != "anonymous" and self.account_id is not None

    def encode(self) -> str:
        """The principal as the header value (base64url of its JSON)."""
        return _encode_principal(self)

    @classmethod
    def decode(cls, value: str) -> Principal:
        """Parse a header value made by :meth:`encode`; raises ``ValueError`` when malformed."""
        return _decode_principal(value)


# Every internal call encodes (gateway) and decodes (service) a principal; the same few
# principals recur call after call, and both are pure functions of immutable values.
@functools.lru_cache(maxsize=4096)
def _encode_principal(principal: Principal) -> str:
    raw = json.dumps(asdict(principal), separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@functools.lru_cache(maxsize=4096)
def _decode_principal(value: str) -> Principal:
    try:
        raw = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        return Principal(**raw)
    except (ValueError, TypeError) as exc:
        raise ValueError("malformed principal header") from exc


ANONYMOUS = Principal(kind="anonymous")
PRINCIPAL_KEY = web.RequestKey("darkroom.principal", Principal)


def _signature(key: str, method: str, path_qs: str, timestamp: str, rid: str, encoded: str) -> str:
    message = "\n".join((method.upper(), path_qs, timestamp, rid, encoded)).encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def sign_principal(
    key: str, method: str, path_qs: str, principal: Principal, request_id: str
) -> dict[str, str]:
    """The headers that carry ``principal`` on an internal call to ``method path_qs``.

    ``path_qs`` is the raw request target as sent on the wire (path and query, not decoded).
    """
    encoded = principal.encode()
    timestamp = str(int(time.time()))
    return {
        PRINCIPAL_HEADER: encoded,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: _signature(key, method, path_qs, timestamp, request_id, encoded),
        REQUEST_ID_HEADER: request_id,
    }


def verify_principal(key: str, request: web.Request) -> Principal:
    """The principal a signed internal request carries; :class:`errors.Forbidden` otherwise."""
    encoded = request.headers.get(PRINCIPAL_HEADER)
    timestamp = request.headers.get(TIMESTAMP_HEADER, "")
    signature = request.headers.get(SIGNATURE_HEADER, "")
    # isascii: "²".isdigit() is true, and int() would refuse it with a ValueError (a 500).
    if not encoded or not (timestamp.isascii() and timestamp.isdigit()):
        raise errors.Forbidden("Internal endpoint: call it through the gateway")
    if abs(time.time() - int(timestamp)) > MAX_CLOCK_SKEW:
        raise errors.Forbidden("Internal call signature expired")
    rid = request.headers.get(REQUEST_ID_HEADER, "")
    expected = _signature(key, request.method, request.raw_path, timestamp, rid, encoded)
    if not hmac.compare_digest(expected, signature):
        raise errors.Forbidden("Internal call signature does not verify")
    try:
        return Principal.decode(encoded)
    except ValueError as exc:
        raise errors.Forbidden(str(exc)) from exc


def principal_of(request: web.Request) -> Principal:
    """The verified principal of a request (anonymous when none was forwarded)."""
    return request.get(PRINCIPAL_KEY, ANONYMOUS)


def require_account(request: web.Request) -> Principal:
    """The principal of a request that must be authenticated; 401 otherwise."""
    principal = principal_of(request)
    if not principal.authenticated:
        raise errors.BadCredentials("Authentication required")
    return principal


def error_response(error: errors.DarkroomError, request: web.Request | None = None) -> web.Response:
    """The answer to ``error`` (with ``Retry-After`` when it carries one): the JSON error shape,
    or, when ``request`` is a browser's for a page (:func:`shared.layout.wants_page`), the same
    status as an HTML page in the shared layout. The one place that choice is made."""
    if request is not None and layout.wants_page(request):
        response = layout.error_page(error)
    else:
        response = web.json_response(error.body(), status=error.status)
    if error.retry_after is not None:
        response.headers["Retry-After"] = str(max(1, int(error.retry_after + 0.999)))
    return response


@web.middleware
async def request_id_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Bind the caller's ``X-Request-Id`` (or a new one) for logs and hops; echo it back."""
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    rid = incoming if 0 < len(incoming) <= 128 and incoming.isprintable() else new_request_id()
    token = request_id_var.set(rid)
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers[REQUEST_ID_HEADER] = rid
        raise
    finally:
        request_id_var.reset(token)
    if not response.prepared:
        response.headers[REQUEST_ID_HEADER] = rid
    log.info(
        "http.request",
        request_id=rid,
        method=request.method,
        path=request.path,
        status=response.status,
        ms=round((time.perf_counter() - started) * 1000, 1),
    )
    return response


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Map every failure to the error shape: client errors to 4xx, outages to 503, bugs to 500."""
    try:
        return await handler(request)
    except errors.DarkroomError as exc:
        return error_response(exc, request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(errors.for_status(exc.status, exc.reason), request)
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except CONNECTION_ERRORS as exc:
        log.warning("dependency.unavailable", error=repr(exc))
        return error_response(errors.Unavailable(retry_after=2), request)
    except UNSTORABLE_TEXT:
        # PostgreSQL text cannot hold NUL: whatever field carried one, the client sent it.
        return error_response(errors.BadRequest("Text must not contain NUL characters"), request)
    except Exception:
        log.exception("http.unhandled", method=request.method, path=request.path)
        return error_response(errors.DarkroomError(), request)


def internal_auth_middleware(key: str) -> Callable:
    """Middleware that verifies the signed principal on every path but health and metrics."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path not in OPEN_PATHS:
            request[PRINCIPAL_KEY] = verify_principal(key, request)
        return await handler(request)

    return middleware


def service_middlewares(internal_key: str) -> list:
    """The middleware stack of a service behind the gateway, outermost first."""
    return [request_id_middleware, error_middleware, internal_auth_middleware(internal_key)]


class InternalClient:
    """HTTP client for service-to-service calls: signs the principal, carries the request id."""

    def __init__(self, session: aiohttp.ClientSession, key: str) -> None:
        self.session = session
        self.key = key

    async def call(
        self,
        method: str,
        base_url: str,
        path_qs: str,
        principal: Principal,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10,
    ) -> tuple[int, Any]:
        """Send one call (a JSON body, or raw ``data``) and return ``(status, decoded JSON body
        or None)``."""
        status, _headers, body = await self.fetch(
            method,
            base_url,
            path_qs,
            principal,
            json_body=json_body,
            data=data,
            headers=headers,
            timeout=timeout,
        )
        return status, json.loads(body) if body else None

    async def fetch(
        self,
        method: str,
        base_url: str,
        path_qs: str,
        principal: Principal,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = 10,
        connect_timeout: float | None = None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """Send one call and return ``(status, headers, body bytes)``: for answers that are
        not JSON (an image). ``timeout=None``: the caller bounds the wait; ``connect_timeout``
        bounds opening a new connection alone (a host that is gone answers no SYN). Connection
        trouble raises :class:`aiohttp.ClientError`, :class:`OSError` or
        :class:`TimeoutError`."""
        rid = request_id_var.get() or new_request_id()
        signed = sign_principal(self.key, method, path_qs, principal, rid)
        async with self.session.request(
            method,
            URL(base_url + path_qs, encoded=True),
            json=json_body,
            data=data,
            headers={**(headers or {}), **signed},
            timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout),
        ) as response:
            return response.status, response.headers, await response.read()


async def unless_disconnected(request: web.Request, work: Awaitable[T], every: float = 0.05) -> T:
    """The result of ``work``, unless the client closes its connection first: then ``work``
    is cancelled and :class:`errors.ClientGone` raised.

    For handlers that wait long for work nobody else needs (an image made on request): aiohttp
    only cancels handlers on disconnect when the whole server is told to, which would also
    interrupt state changes halfway; this looks at the connection every ``every`` seconds.
    """
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=every)
            if done:
                return task.result()
            transport = request.transport
            if transport is None or transport.is_closing():
                raise errors.ClientGone()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def read_form(request: web.Request) -> Mapping[str, Any]:
    """The request's form fields (urlencoded or multipart); 400 ``bad_request`` when the body
    cannot be parsed as one (a multipart type without a boundary, a broken part)."""
    try:
        return await request.post()
    except (ValueError, AssertionError, UnicodeDecodeError) as exc:
        raise errors.BadRequest("Body must be a form (urlencoded or multipart)") from exc


async def read_json_object(request: web.Request, max_bytes: int | None = None) -> dict[str, Any]:
    """The request body as a JSON object; 400 ``bad_request`` when it is not one.

    ``max_bytes`` raises the app's body limit for this request (413 beyond it), for bodies
    that carry base64 images.
    """
    try:
        if max_bytes is None:
            body = await request.json(loads=json.loads)
        else:
            body = json.loads(await _read_at_most(request, max_bytes))
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.BadRequest("Body must be valid JSON") from exc
    if not isinstance(body, dict):
        raise errors.BadRequest("Body must be a JSON object")
    return body


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The raw request body; 413 ``payload_too_large`` past ``max_bytes`` (counted while
    streaming, never buffered past it), 400 when the body is cut off."""
    try:
        return await _read_at_most(request, max_bytes)
    except (HttpProcessingError, aiohttp.ClientPayloadError) as exc:
        raise errors.BadRequest(f"Malformed body: {exc}") from exc


@dataclass
class MultipartBody:
    """A multipart form: its file (one field) and its small text fields."""

    file: bytes | None = None
    filename: str | None = None
    fields: dict[str, str] = field(default_factory=dict)


async def read_multipart(
    request: web.Request, file_field: str, file_limit: int, field_limit: int = 1024
) -> MultipartBody:
    """A ``multipart/form-data`` body whose file is in ``file_field`` (up to ``file_limit``
    bytes) beside text fields (up to ``field_limit`` bytes each): 415 when it is not
    multipart, 413 past a limit, 400 when malformed or the file is in another field."""
    if request.content_type != "multipart/form-data":
        raise errors.UnsupportedMediaType(f"Send multipart/form-data with `{file_field}`")
    body = MultipartBody()
    try:
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, aiohttp.BodyPartReader):
                raise errors.BadRequest("Nested multipart bodies are not accepted")
            if part.name == file_field and body.file is None:
                body.filename = part.filename
                body.file = await _read_part(part, file_limit, f"The `{file_field}` file")
            elif part.filename is not None:
                raise errors.BadRequest(f"Send the file in `{file_field}`, not `{part.name}`")
            elif part.name and part.name not in body.fields:
                raw = await _read_part(part, field_limit, f"The field `{part.name}`")
                body.fields[part.name] = raw.decode("utf-8", "replace")
    except (ValueError, HttpProcessingError, aiohttp.ClientPayloadError) as exc:
        raise errors.BadRequest(f"Malformed multipart body: {exc}") from exc
    return body


async def _read_part(part: aiohttp.BodyPartReader, limit: int, what: str) -> bytes:
    buffer = bytearray()
    while chunk := await part.read_chunk(64 * 1024):
        buffer += chunk
        if len(buffer) > limit:
            raise errors.PayloadTooLarge(f"{what} exceeds {limit} bytes")
    return bytes(buffer)


async def _read_at_most(request: web.Request, max_bytes: int) -> bytes:
    if request.content_length is not None and request.content_length > max_bytes:
        raise errors.PayloadTooLarge(f"Request body exceeds {max_bytes} bytes")
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > max_bytes:
            raise errors.PayloadTooLarge(f"Request body exceeds {max_bytes} bytes")
    return bytes(body)


def health_routes(ready: Callable[[], Awaitable[dict[str, bool]]]) -> list[web.RouteDef]:
    """``/healthz`` (the process answers) and ``/readyz`` (its dependencies answer too)."""

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        checks = await ready()
        status = 200 if all(checks.values()) else 503
        return web.json_response(
            {"status": "ok" if status == 200 else "unavailable", "checks": checks}, status=status
        )

    return [web.get("/healthz", healthz), web.get("/readyz", readyz)]
