"""The one way every service serves a stored blob over HTTP.

Stored bytes never change under their URL, so each answer carries a strong ETag (``If-None-Match``
→ 304), a long ``Cache-Control`` (or the caller's), and honours a single ``Range`` (206, or 416
with ``Content-Range: bytes */<size>``), ``If-Range`` included. Anything that is not one of the
inline image types is served as an attachment inside a CSP sandbox, so an uploaded HTML or SVG
file can never run in our origin. The bytes are streamed from the :class:`BlobStore`; only a
small blob is read whole.

One call serves a blob: ``await serve_blob(request, store, key, etag, size, media_type)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from shared import errors
from shared.logging import get_logger
from shared.storage import BlobNotFound, BlobStore

log = get_logger("darkroom.delivery")

#: The caching of content-addressed bytes: a year, never revalidated.
CACHE_FOREVER = "public, max-age=31536000, immutable"
#: Media types served inline; everything else is an attachment in a sandbox.
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
_SANDBOX = "sandbox; default-src 'none'"


class RangeNotSatisfiable(errors.DarkroomError):
    """The requested byte range lies outside the blob (416)."""

    status, code, default_message = 416, "range_not_satisfiable", "Range not satisfiable"


@dataclass(frozen=True)
class Delivery:
    """How to answer a GET of a blob: status, headers, and the bytes ``[start, end)``."""

    status: int
    headers: dict[str, str]
    start: int = 0
    end: int = 0


def plan_delivery(
    etag: str,
    size: int,
    media_type: str,
    *,
    if_none_match: str | None,
    range_header: str | None,
    if_range: str | None,
) -> Delivery:
    """Decide the answer for immutable bytes whose entity tag is ``etag`` (unquoted: a
    SHA-256, a transform digest): 304, 206, 416 (raises :class:`RangeNotSatisfiable`) or 200.

    Content never changes under its URL, hence the strong ETag and the year-long cache.
    Anything that is not one of :data:`INLINE_TYPES` is an attachment in a CSP sandbox.
    """
    quoted = f'"{etag}"'
    headers = {
        "ETag": quoted,
        "Cache-Control": CACHE_FOREVER,
        "Accept-Ranges": "bytes",
        "X-Content-Type-Options": "nosniff",
        "Content-Type": media_type,
    }
    if media_type not in INLINE_TYPES:
        headers["Content-Disposition"] = "attachment"
        headers["Content-Security-Policy"] = _SANDBOX
    if if_none_match is not None and _etag_listed(if_none_match, etag):
        return Delivery(304, {k: v for k, v in headers.items() if k != "Content-Type"})
    byte_range = None
    if range_header is not None and (if_range is None or if_range.strip() == quoted):
        byte_range = parse_range(range_header, size)
    if byte_range is None:
        return Delivery(200, headers, 0, size)
    start, end = byte_range
    headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    return Delivery(206, headers, start, end)


def _etag_listed(header: str, etag: str) -> bool:
    for candidate in header.split(","):
        tag = candidate.strip().removeprefix("W/")
        if tag == "*" or tag == f'"{etag}"':
            return True
    return False


def _digits(text: str) -> bool:
    # str.isdigit() is true of "²" and of non-Latin digits, which int() refuses or misreads:
    # numbers in HTTP are ASCII.
    return text.isascii() and text.isdigit()


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``[start, end)`` of a single ``bytes=`` range; ``None`` to answer the whole body.

    Malformed or multi-range headers are ignored (RFC 9110 allows serving the whole body);
    a well-formed range outside the blob raises :class:`RangeNotSatisfiable`.
    """
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (_digits(first) or _digits(last)):
        return None
    if (first and not _digits(first)) or (last and not _digits(last)):
        return None
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable()
        return max(0, size - suffix), size
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if last and int(last) < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable()
    return start, end


#: Largest blob read whole rather than streamed (a thumbnail, an icon): one read beats a stream.
SMALL_BLOB = 256 * 1024


def _planned(
    request: web.Request,
    etag: str,
    size: int,
    media_type: str,
    cache_control: str | None,
    extra_headers: Mapping[str, str] | None = None,
) -> tuple[Delivery, dict[str, str]] | web.Response:
    """The delivery plan of a GET or HEAD and its headers (``extra_headers`` added), or the
    whole answer when it carries no bytes (416, 304)."""
    try:
        plan = plan_delivery(
            etag,
            size,
            media_type,
            if_none_match=request.headers.get("If-None-Match"),
            range_header=request.headers.get("Range"),
            if_range=request.headers.get("If-Range"),
        )
    except RangeNotSatisfiable as exc:
        return web.json_response(
            exc.body(),
            status=exc.status,
            headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"},
        )
    headers = plan.headers
    if cache_control is not None:
        headers["Cache-Control"] = cache_control
    if extra_headers:
        headers.update(extra_headers)
    if plan.status == 304:
        return web.Response(status=304, headers=headers)
    return plan, headers


async def _head(
    request: web.Request, plan: Delivery, headers: dict[str, str]
) -> web.StreamResponse:
    response = web.StreamResponse(status=plan.status, headers=headers)
    response.content_length = plan.end - plan.start
    await response.prepare(request)
    await response.write_eof()
    return response


async def serve_blob(
    request: web.Request,
    store: BlobStore,
    key: str,
    etag: str,
    size: int,
    media_type: str,
    cache_control: str | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    """Answer a GET or HEAD of the immutable bytes under ``key`` in ``store`` (``size`` bytes of
    ``media_type``, entity tag ``etag`` unquoted): 200, 206, 304 or 416 as the request's
    ``If-None-Match``, ``Range`` and ``If-Range`` say, with the caching (``cache_control``
    instead of :data:`CACHE_FOREVER` when given) and safety headers of :func:`plan_delivery`,
    and ``extra_headers`` on every answer but a 416.

    The bytes are streamed from the store (read whole when at most :data:`SMALL_BLOB`). A key
    with no bytes behind it breaks the storage invariant: it is logged as an error and answered
    404 ``not_found``.
    """
    planned = _planned(request, etag, size, media_type, cache_control, extra_headers)
    if isinstance(planned, web.Response):
        return planned
    plan, headers = planned
    if request.method == "HEAD":
        return await _head(request, plan, headers)
    if size <= SMALL_BLOB:
        # One read instead of a stream: a thumbnail costs one thread hop (or one GET).
        try:
            data = await store.read(key)
        except BlobNotFound:
            log.error("blob.missing", key=key)
            raise errors.NotFound("The file's content is missing") from None
        return web.Response(status=plan.status, headers=headers, body=data[plan.start : plan.end])
    response = web.StreamResponse(status=plan.status, headers=headers)
    response.content_length = plan.end - plan.start
    chunks = store.open(key, plan.start, plan.end)
    async with contextlib.aclosing(chunks):
        try:
            first = await anext(chunks, b"")
        except BlobNotFound:
            # A record without bytes breaks the storage invariant: say so loudly.
            log.error("blob.missing", key=key)
            raise errors.NotFound("The file's content is missing") from None
        await response.prepare(request)
        await response.write(first)
        async for chunk in chunks:
            await response.write(chunk)
    await response.write_eof()
    return response


async def serve_bytes(
    request: web.Request,
    data: bytes,
    etag: str,
    media_type: str,
    cache_control: str | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    """Answer a GET or HEAD as :func:`serve_blob` does, from ``data`` already in memory (a
    derivative just made: the same bytes the store now holds under the key ``etag`` names;
    an answer the gateway kept)."""
    planned = _planned(request, etag, len(data), media_type, cache_control, extra_headers)
    if isinstance(planned, web.Response):
        return planned
    plan, headers = planned
    if request.method == "HEAD":
        return await _head(request, plan, headers)
    return web.Response(status=plan.status, headers=headers, body=data[plan.start : plan.end])


def serve_asset(
    folder: Path, name: str, assets: Mapping[str, str], cache_control: str
) -> web.FileResponse:
    """A page's static file: ``name`` from ``folder`` when it is a key of ``assets`` (file name
    -> media type), else 404. The list is fixed, so no part of a request's path ever reaches
    the file system; ``nosniff`` keeps a browser to the type given."""
    media_type = assets.get(name)
    if media_type is None:
        raise errors.NotFound(f"No such file: {name[:100]}")
    return web.FileResponse(
        folder / name,
        headers={
            "Content-Type": media_type,
            "Cache-Control": cache_control,
            "X-Content-Type-Options": "nosniff",
        },
    )
