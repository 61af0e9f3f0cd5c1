"""Ingest's HTTP handlers: parse the request, call the domain, the repo and the blob protocol,
answer.

Upload bodies are ``multipart/form-data`` with the file in the ``file`` field, read while
streaming and refused as soon as the file passes ``max_upload_bytes``. Errors of the upload's
shape, the same on every upload path: no body, no ``file`` field, a file in another field or
an empty file → 400 ``bad_request``; a body that is not multipart → 415
``unsupported_media_type``; too big → 413 ``payload_too_large``; a fake, truncated or too
large (pixels, frames) image → 422 ``invalid_request``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from services.ingest import blobs, domain, repo
from services.ingest.config import IngestConfig
from services.ingest.progimage import ProgimageUploads
from shared import errors
from shared.http import Principal, principal_of, read_json_object, require_account
from shared.logging import get_logger
from shared.pages import Pages, redirect
from shared.pagination import offset_window
from shared.runtime import INTERNAL, POOL, STORE
from shared.storage import BlobNotFound

CONFIG = web.AppKey("ingest.config", IngestConfig)
PAGES = web.AppKey("ingest.pages", Pages)
SWEEPER = web.AppKey("ingest.sweeper", blobs.OrphanSweeper)
PROGIMAGE = web.AppKey("ingest.progimage", ProgimageUploads)

log = get_logger("darkroom.ingest")

_CHUNK = 64 * 1024
#: Room for the multipart framing and small fields around the file: a body longer than the
#: file limit plus this is refused from its Content-Length, before reading anything.
_FORM_OVERHEAD = 64 * 1024
_FIELD_LIMIT = 1024
_ALREADY_UPLOADED = "This image has already been uploaded"


# --- reading uploads --------------------------------------------------------------------------


@dataclass
class Upload:
    """The file of a multipart upload and the small text fields sent with it."""

    data: bytes = b""
    filename: str | None = None
    fields: dict[str, str] = field(default_factory=dict)


async def _read_upload(request: web.Request, limit: int, upload: Upload) -> Upload:
    """Fill ``upload`` from the multipart body (fields read before an error stay in it)."""
    if not request.body_exists or request.content_length == 0:
        raise errors.BadRequest("No file: send multipart/form-data with the file in `file`")
    if request.content_type != "multipart/form-data":
        raise errors.UnsupportedMediaType("Send multipart/form-data with the file in `file`")
    if request.content_length is not None and request.content_length > limit + _FORM_OVERHEAD:
        raise errors.PayloadTooLarge(f"The file exceeds {limit} bytes")
    found = False
    try:
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, aiohttp.BodyPartReader):
                raise errors.BadRequest("Nested multipart bodies are not accepted")
            if part.name == "file" and not found:
                found = True
                upload.filename = part.filename
                upload.data = await _read_part(part, limit)
            elif part.filename is not None:
                raise errors.BadRequest(
                    f"The file must be sent in the `file` field, not `{part.name}`"
                )
            elif part.name and part.name not in upload.fields:
                raw = await _read_part(part, _FIELD_LIMIT, field_name=part.name)
                upload.fields[part.name] = raw.decode("utf-8", "replace")
    except (ValueError, HttpProcessingError, aiohttp.ClientPayloadError) as exc:
        raise errors.BadRequest(f"Malformed multipart body: {exc}") from exc
    if not found:
        raise errors.BadRequest("No `file` field in the multipart body")
    if not upload.data:
        raise errors.BadRequest("The file is empty")
    return upload


async def _read_part(part: aiohttp.BodyPartReader, limit: int, field_name: str = "") -> bytes:
    # Counted while streaming: a body part is never buffered past the limit.
    buffer = bytearray()
    while chunk := await part.read_chunk(_CHUNK):
        buffer += chunk
        if len(buffer) > limit:
            if field_name:
                raise errors.BadRequest(f"The field `{field_name}` is too long")
            raise errors.PayloadTooLarge(f"The file exceeds {limit} bytes")
    return bytes(buffer)


def _limits(config: IngestConfig) -> domain.Limits:
    return domain.Limits(config.max_upload_bytes, config.max_pixels, config.max_frames)


async def _examine(
    config: IngestConfig, data: bytes, accept: frozenset[domain.Kind] | None = None
) -> domain.Content:
    # Hashing and decoding are CPU work: keep them off the event loop.
    return await asyncio.to_thread(domain.examine, data, _limits(config), accept=accept)


# --- Happo Image API --------------------------------------------------------------------------


async def happo_upload_url(request: web.Request) -> web.Response:
    """``GET /api/images/{hash}/upload-url`` → ``{uploadUrl, url}``, or ``uploadUrl: null``
    with a message when this account already holds an image under ``hash``.

    Only the caller's own account is consulted. A hash outside ``[A-Za-z0-9_-]{1,128}`` is
    400 ``bad_request``.
    """
    principal = require_account(request)
    config = request.app[CONFIG]
    happo_hash = request.match_info["hash"]
    if not domain.HAPPO_HASH.match(happo_hash):
        raise errors.BadRequest("An image hash is 1 to 128 letters, digits, `-` or `_`")
    account_id = uuid.UUID(principal.account_id)
    async with request.app[POOL].acquire() as conn:
        found = await repo.happo_image(conn, account_id, happo_hash)
    url = config.public(f"/img/{account_id}/{happo_hash}")
    if found is not None:
        return web.json_response({"message": _ALREADY_UPLOADED, "uploadUrl": None, "url": url})
    token = domain.sign_upload_token(
        config.signing_key,
        str(account_id),
        happo_hash,
        int(time.time()) + config.upload_url_seconds,
    )
    return web.json_response(
        {"uploadUrl": config.public(f"/api/images/upload/{token}"), "url": url}
    )


async def happo_upload(request: web.Request) -> web.Response:
    """``POST /api/images/upload/{token}`` (multipart PNG in ``file``) → ``{url}``.

    The signed token is the authority (whoever carries it): tampered or expired → 403
    ``forbidden``, already used → 409 ``conflict``, both before the body is read. A 32- or
    64-hex hash must be the md5 or SHA-256 of the file (422 ``invalid_request`` otherwise);
    anything but a PNG is 415.
    """
    config = request.app[CONFIG]
    grant = domain.verify_upload_token(config.signing_key, request.match_info["token"], time.time())
    jti, account_id = uuid.UUID(grant.jti), uuid.UUID(grant.account_id)
    async with request.app[POOL].acquire() as conn:
        if await repo.upload_url_used(conn, jti):
            raise errors.Conflict("This upload URL was used already; ask for a new one")
    upload = await _read_upload(request, config.max_upload_bytes, Upload())
    content = await _examine(config, upload.data, frozenset({domain.PNG}))
    domain.check_client_hash(grant.hash, upload.data)
    expires_at = datetime.fromtimestamp(grant.expires_at, UTC)

    async def register(conn) -> bool:
        # The URL is spent in the same transaction that records the image.
        if not await repo.use_upload_url(conn, jti, expires_at):
            raise errors.Conflict("This upload URL was used already; ask for a new one")
        return await repo.add_happo_image(conn, account_id, grant.hash, content.sha256)

    event = {
        **domain.stored_event_data(content, str(account_id), "happo"),
        "happo_hash": grant.hash,
    }
    await blobs.store_content(
        request.app[POOL], request.app[STORE], content, upload.data, register, event
    )
    return web.json_response({"url": config.public(f"/img/{account_id}/{grant.hash}")})


async def serve_happo_image(request: web.Request) -> web.StreamResponse:
    """``GET|HEAD /img/{account_id}/{hash}``: the image an account uploaded under ``hash``."""
    happo_hash = request.match_info["hash"]
    try:
        account_id = uuid.UUID(request.match_info["account_id"])
    except ValueError:
        raise errors.NotFound("No such image") from None
    if not domain.HAPPO_HASH.match(happo_hash):
        raise errors.NotFound("No such image")
    async with request.app[POOL].acquire() as conn:
        blob = await repo.happo_image(conn, account_id, happo_hash)
    if blob is None:
        raise errors.NotFound("No such image")
    return await _deliver(request, blob)


# --- hash file host ---------------------------------------------------------------------------


async def api_upload(request: web.Request) -> web.Response:
    """``POST /api/upload`` (multipart ``file``, any type) → ``{hash, status, urls}``.

    With credentials the file is registered to the caller's account; an anonymous upload's
    answer carries a ``delete_token`` (shown once).
    """
    upload = await _read_upload(request, request.app[CONFIG].max_upload_bytes, Upload())
    return web.json_response(await _store_hashhost_file(request, upload))


async def _store_hashhost_file(request: web.Request, upload: Upload) -> dict:
    config = request.app[CONFIG]
    principal = principal_of(request)
    content = await _examine(config, upload.data)
    filename = domain.clean_filename(upload.filename)
    delete_token = None
    if principal.authenticated:
        account_id = uuid.UUID(principal.account_id)

        async def register(conn) -> bool:
            return await repo.add_account_file(conn, account_id, content, filename)

    else:
        delete_token = domain.new_delete_token()

        async def register(conn) -> bool:
            digest = domain.token_digest(delete_token)
            await repo.add_anonymous_file(conn, content, filename, digest)
            return True

    event = domain.stored_event_data(
        content, principal.account_id if principal.authenticated else None, "hashhost"
    )
    await blobs.store_content(
        request.app[POOL], request.app[STORE], content, upload.data, register, event
    )
    return _hashhost_answer(config, content, filename, delete_token)


def _hashhost_answer(
    config: IngestConfig, content: domain.Content, filename: str, delete_token: str | None
) -> dict:
    sha256 = content.sha256
    extension = domain.extension_for(filename, content.extension)
    answer: dict = {
        "hash": sha256,
        "status": True,
        "urls": {
            "base": config.public("/f/"),
            "full": config.public(f"/f/{sha256}/{quote(filename, safe='')}"),
            "ext": config.public(f"/f/{sha256}.{extension}"),
            "hash": config.public(f"/f/{sha256}"),
        },
    }
    if delete_token is not None:
        answer["delete_token"] = delete_token
    return answer


async def serve_file(request: web.Request) -> web.StreamResponse:
    """``GET|HEAD /f/{hash}``, ``/f/{hash}.{ext}``, ``/f/{hash}/{filename}``: the same bytes."""
    sha256 = domain.file_hash_of_path(request.match_info["tail"])
    if sha256 is None:
        raise errors.NotFound("No such file")
    async with request.app[POOL].acquire() as conn:
        blob = await repo.served_file(conn, sha256)
    if blob is None:
        raise errors.NotFound("No such file")
    return await _deliver(request, blob)


async def delete_file(request: web.Request) -> web.Response:
    """``DELETE /api/files/{hash}[?delete_token=…]`` → ``{hash, deleted: true}``.

    Removes the caller's account's record of the file or, with ``delete_token``, the anonymous
    upload it was issued for; the bytes go when nothing else references them. 404 when there
    is no such record (or the token does not match); 401 with neither credentials nor token.
    """
    sha256 = request.match_info["hash"].lower()
    token = request.query.get("delete_token")
    principal = principal_of(request)
    if not token and not principal.authenticated:
        raise errors.BadCredentials("Sign in, or pass the upload's delete_token")
    if not domain.is_sha256(sha256) or not await _remove_file(request, principal, sha256, token):
        raise errors.NotFound("No such file of yours")
    return web.json_response({"hash": sha256, "deleted": True})


async def _remove_file(
    request: web.Request, principal: Principal, sha256: str, token: str | None
) -> bool:
    if token:

        async def unregister(conn) -> bool:
            return await repo.remove_anonymous_file(conn, sha256, domain.token_digest(token))

    else:
        account_id = uuid.UUID(principal.account_id)

        async def unregister(conn) -> bool:
            return await repo.remove_account_file(conn, account_id, sha256)

    return await blobs.remove_record(request.app[POOL], request.app[STORE], sha256, unregister)


# --- pages ------------------------------------------------------------------------------------


async def upload_page(request: web.Request) -> web.Response:
    """``GET /upload``: the upload form (no JavaScript) and how to use the API."""
    return await _render_upload(request, result=None, error=None)


async def upload_form(request: web.Request) -> web.StreamResponse:
    """``POST /upload`` (the form; anonymous or signed in): a result page, or with ``api=1``
    (query or a form field before the file) ``text/plain`` ``OK <hash>`` / ``ERROR <message>``
    with the error's status code."""
    upload = Upload()
    try:
        await _read_upload(request, request.app[CONFIG].max_upload_bytes, upload)
        result = await _store_hashhost_file(request, upload)
    except errors.DarkroomError as exc:
        if _wants_plain_text(request, upload):
            return web.Response(text=f"ERROR {exc.message}", status=exc.status)
        return await _render_upload(request, result=None, error=exc.message, status=exc.status)
    if _wants_plain_text(request, upload):
        return web.Response(text=f"OK {result['hash']}")
    return await _render_upload(request, result=result, error=None, status=201)


def _wants_plain_text(request: web.Request, upload: Upload) -> bool:
    return request.query.get("api") == "1" or upload.fields.get("api") == "1"


async def _render_upload(
    request: web.Request, *, result: dict | None, error: str | None, status: int = 200
) -> web.Response:
    config = request.app[CONFIG]
    return request.app[PAGES].render(
        "upload.html",
        status=status,
        user=await _page_user(request),
        result=result,
        error=error,
        api_url=config.public("/api/upload"),
        form_url=config.public("/upload"),
        file_base=config.public("/f/"),
        max_bytes=config.max_upload_bytes,
    )


async def files_page(request: web.Request) -> web.Response:
    """``GET /files``: the signed-in user's files, with delete buttons (sign-in required)."""
    user = await _page_user(request)
    if user is None:
        return redirect("/signin?next=/files")
    account_id = uuid.UUID(principal_of(request).account_id)
    async with request.app[POOL].acquire() as conn:
        files = await repo.files_of(conn, account_id)
    return request.app[PAGES].render(
        "files.html", user=user, files=files, file_base=request.app[CONFIG].public("/f/")
    )


async def files_delete(request: web.Request) -> web.Response:
    """``POST /files/{hash}/delete`` (form): delete one of the user's files, back to the list."""
    principal = principal_of(request)
    if not principal.authenticated:
        return redirect("/signin?next=/files")
    sha256 = request.match_info["hash"].lower()
    if not domain.is_sha256(sha256) or not await _remove_file(request, principal, sha256, None):
        raise errors.NotFound("No such file of yours")
    return redirect("/files")


async def _page_user(request: web.Request) -> dict | None:
    """The signed-in user (``{id, name, email}``) for the layout, asked of auth; else None."""
    principal = principal_of(request)
    if not principal.authenticated:
        return None
    config = request.app[CONFIG]
    try:
        status, body = await request.app[INTERNAL].call(
            "GET", config.service_url("auth"), "/user", principal, timeout=5
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise errors.Unavailable("Accounts are unavailable", retry_after=2) from exc
    return body if status == 200 and isinstance(body, dict) else None


# --- Progimage ------------------------------------------------------------------------------


async def progimage_upload(request: web.Request) -> web.Response:
    """``POST /user/images {process: {...} | [{...}, ...]}`` → 201 with the seed's single
    shape (``data.file.url``, ``.thumb.url``, ``.mini.url``) or its array shape.

    Every URL in the answer serves its bytes already. One bad item → 422 naming its index,
    and nothing of the request is kept.
    """
    principal = require_account(request)
    account_id, user_id = _account_and_user(principal)
    config = request.app[CONFIG]
    # The base64 of one largest upload, plus room for the options around it.
    body = await read_json_object(request, max_bytes=config.max_upload_bytes * 4 // 3 + _CHUNK)
    process = domain.parse_process_request(body, config.max_bulk_items)
    images = await request.app[PROGIMAGE].process(account_id, user_id, process)
    if process.bulk:
        data: object = [_progimage_listing(config, image) for image in images]
    else:
        data = _progimage_single(config, images[0])
    return web.json_response({"data": data}, status=201)


async def progimage_list(request: web.Request) -> web.Response:
    """``GET /user/images?offset&limit`` → the caller's images, newest first (array shape)."""
    principal = require_account(request)
    _account_id, user_id = _account_and_user(principal)
    config = request.app[CONFIG]
    window = offset_window(request.query, default_limit=10, max_limit=100)
    async with request.app[POOL].acquire() as conn:
        images, total = await repo.progimage_images_of(conn, user_id, window.offset, window.limit)
    return web.json_response(
        {
            "data": [_progimage_listing(config, image) for image in images],
            "meta": {"offset": window.offset, "limit": window.limit, "total": total},
        }
    )


async def serve_upload(request: web.Request) -> web.StreamResponse:
    """``GET|HEAD /uploads/image/file/{image_id}/{name}``: a variant of a Progimage image."""
    image_id = request.match_info["image_id"]
    try:
        parsed = uuid.UUID(image_id)
    except ValueError:
        raise errors.NotFound("No such image") from None
    variant = domain.parse_upload_path(str(parsed), request.match_info["name"])
    if variant is None:
        raise errors.NotFound("No such image")
    async with request.app[POOL].acquire() as conn:
        image = await repo.progimage_image(conn, parsed)
    if image is None or request.match_info["name"].rsplit(".", 1)[-1] != image.extension:
        raise errors.NotFound("No such image")
    stored = image.variants[variant]
    tag = stored["key"].rsplit("/", 1)[-1].split(".", 1)[0]
    return await _stream(request, stored["key"], tag, stored["bytes"], stored["media_type"])


def _account_and_user(principal: Principal) -> tuple[uuid.UUID, uuid.UUID]:
    if not principal.user_id:
        raise errors.Forbidden("Images belong to a user; use a user's credentials")
    return uuid.UUID(principal.account_id), uuid.UUID(principal.user_id)


def _progimage_urls(config: IngestConfig, image: repo.ProgimageImage) -> dict[str, str]:
    return {
        name: config.public(domain.upload_path(str(image.id), name, image.extension))
        for name in ("file", "thumb", "mini")
    }


def _progimage_single(config: IngestConfig, image: repo.ProgimageImage) -> dict:
    urls = _progimage_urls(config, image)
    return {
        "id": str(image.id),
        "user_id": str(image.user_id),
        "file": {
            "url": urls["file"],
            "mini": {"url": urls["mini"]},
            "thumb": {"url": urls["thumb"]},
        },
        "created_at": domain.iso_millis(image.created_at),
        "updated_at": domain.iso_millis(image.updated_at),
    }


def _progimage_listing(config: IngestConfig, image: repo.ProgimageImage) -> dict:
    urls = _progimage_urls(config, image)
    # Every URL we hand out is on DARKROOM_PUBLIC_URL: the "secure" ones are the same URLs
    # (https whenever the platform is served over TLS).
    return {
        "id": str(image.id),
        "created_at": domain.iso_millis(image.created_at),
        "url": urls["file"],
        "secure_url": urls["file"],
        "thumbnail_url": urls["thumb"],
        "secure_thumbnail_url": urls["thumb"],
    }


# --- delivery ---------------------------------------------------------------------------------


async def _deliver(request: web.Request, blob: repo.Blob) -> web.StreamResponse:
    """Stream a content-addressed blob (never read whole)."""
    return await _stream(
        request, domain.blob_key(blob.sha256), blob.sha256, blob.size, blob.media_type
    )


async def _stream(
    request: web.Request, key: str, tag: str, size: int, media_type: str
) -> web.StreamResponse:
    """Stream immutable bytes under ``key`` with the ETag ``tag``, caching, range and safety
    headers."""
    try:
        plan = domain.plan_delivery(
            tag,
            size,
            media_type,
            if_none_match=request.headers.get("If-None-Match"),
            range_header=request.headers.get("Range"),
            if_range=request.headers.get("If-Range"),
        )
    except domain.RangeNotSatisfiable as exc:
        return web.json_response(
            exc.body(),
            status=exc.status,
            headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"},
        )
    if plan.status == 304:
        return web.Response(status=304, headers=plan.headers)
    response = web.StreamResponse(status=plan.status, headers=plan.headers)
    response.content_length = plan.end - plan.start
    if request.method == "HEAD":
        await response.prepare(request)
        await response.write_eof()
        return response
    chunks = request.app[STORE].open(key, plan.start, plan.end)
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
