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
import hashlib
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
from services.ingest.subjects import Subjects
from shared import errors
from shared.http import (
    Principal,
    principal_of,
    read_form,
    read_json_object,
    require_account,
    unless_disconnected,
)
from shared.logging import get_logger
from shared.pages import Pages, redirect
from shared.pagination import Window, offset_window, page_answer, page_window
from shared.runtime import FAULTS, INTERNAL, POOL, STORE
from shared.storage import BlobNotFound

CONFIG = web.AppKey("ingest.config", IngestConfig)
PAGES = web.AppKey("ingest.pages", Pages)
SWEEPER = web.AppKey("ingest.sweeper", blobs.OrphanSweeper)
PROGIMAGE = web.AppKey("ingest.progimage", ProgimageUploads)
SUBJECTS = web.AppKey("ingest.subjects", Subjects)

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


async def _examine(
    config: IngestConfig, data: bytes, accept: frozenset[domain.Kind] | None = None
) -> domain.Content:
    # Hashing and decoding are CPU work: keep them off the event loop.
    return await asyncio.to_thread(domain.examine, data, domain.Limits.of(config), accept=accept)


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


async def happo_images_lookup(request: web.Request) -> web.Response:
    """Internal ``POST /internal/happo-images`` ``{hashes: [...]}`` → ``{images: {hash:
    {sha256, key, media_type, width, height}}}`` for the calling account's own images.

    Reports asks it to check that a snapshot's ``url`` names an image the account stored;
    hashes the account does not hold are simply absent from the answer.
    """
    principal = require_account(request)
    body = await read_json_object(request)
    hashes = body.get("hashes")
    if not isinstance(hashes, list) or not all(isinstance(h, str) for h in hashes):
        raise errors.BadRequest("`hashes` must be a list of strings")
    wanted = sorted({h for h in hashes if domain.HAPPO_HASH.match(h)})
    async with request.app[POOL].acquire() as conn:
        rows = await repo.happo_images(conn, uuid.UUID(principal.account_id), wanted)
    images = {
        row["hash"]: {
            "sha256": row["sha256"],
            "key": domain.blob_key(row["sha256"]),
            "media_type": row["media_type"],
            "width": row["width"],
            "height": row["height"],
        }
        for row in rows
    }
    return web.json_response({"images": images})


async def happo_rendered_image(request: web.Request) -> web.Response:
    """Internal ``POST /internal/happo-images/rendered`` (a PNG as the body) → ``{hash, url,
    sha256, key, width, height}``: a screenshot the renderer took, stored as a Happo image of
    the calling account exactly as an uploaded one (named by the md5 of its bytes, as the Image
    API names uploads), so reports, diffs and pages treat both alike. Storing the same bytes
    again changes nothing (renders are retried after a crash)."""
    principal = require_account(request)
    config = request.app[CONFIG]
    data = await _read_body(request, config.max_upload_bytes)
    content = await _examine(config, data, frozenset({domain.PNG}))
    happo_hash = hashlib.md5(data).hexdigest()  # noqa: S324 - the Happo clients' image name
    account_id = uuid.UUID(principal.account_id)

    async def register(conn) -> bool:
        return await repo.add_happo_image(conn, account_id, happo_hash, content.sha256)

    event = {
        **domain.stored_event_data(content, str(account_id), "happo"),
        "happo_hash": happo_hash,
    }
    await blobs.store_content(
        request.app[POOL],
        request.app[STORE],
        content,
        data,
        register,
        event,
        request.app[FAULTS],
    )
    return web.json_response(
        {
            "hash": happo_hash,
            "url": config.public(f"/img/{account_id}/{happo_hash}"),
            "sha256": content.sha256,
            "key": domain.blob_key(content.sha256),
            "width": content.width,
            "height": content.height,
        }
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
        request.app[POOL],
        request.app[STORE],
        content,
        upload.data,
        register,
        event,
        request.app[FAULTS],
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
        request.app[POOL],
        request.app[STORE],
        content,
        upload.data,
        register,
        event,
        request.app[FAULTS],
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
        request.app[PAGES].check_form_token(principal_of(request), upload.fields)
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
        principal=principal_of(request),
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
        "files.html",
        user=user,
        principal=principal_of(request),
        files=files,
        file_base=request.app[CONFIG].public("/f/"),
    )


async def files_delete(request: web.Request) -> web.Response:
    """``POST /files/{hash}/delete`` (form): delete one of the user's files, back to the list."""
    principal = principal_of(request)
    if not principal.authenticated:
        return redirect("/signin?next=/files")
    request.app[PAGES].check_form_token(principal, await read_form(request))
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


async def progimage_derived(request: web.Request) -> web.StreamResponse:
    """``GET|HEAD /user/images/{image_id}/derived?thumb_w&thumb_h&quality&rotation&filter
    &round_corners&format``: one of the caller's images through those options, made on the
    first request and served from the store after (ETag, Range, immutable caching)."""
    principal = require_account(request)
    _account_id, user_id = _account_and_user(principal)
    image_id = _path_id(request, "image_id", "image")
    # A client that goes away (the gateway closes its upstream connection then) withdraws
    # its request, so a burst cut off leaves no queue of images nobody will read.
    derivative = await unless_disconnected(
        request,
        request.app[PROGIMAGE].derived(user_id, image_id, list(request.query.items())),
    )
    return await _stream(
        request,
        derivative.key,
        _derivative_tag(derivative.key),
        derivative.size,
        derivative.media_type,
        # The URL names one immutable image, but only for this caller's credentials.
        cache_control="private, max-age=31536000, immutable",
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
    return await _stream(
        request,
        stored["key"],
        _derivative_tag(stored["key"]),
        stored["bytes"],
        stored["media_type"],
    )


def _derivative_tag(key: str) -> str:
    """A derivative's ETag: the transform digest its key ends with (the URL names the
    original)."""
    return key.rsplit("/", 1)[-1].split(".", 1)[0]


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


# --- Haut.ai-style subjects API ----------------------------------------------------------------
#
# Every path under /api/v1/companies/{company_id}/ answers 404 ``not_found`` for a company id
# that is not the caller's, as if it did not exist, and so does any dataset, subject, batch or
# image id that is not the company's. Lists answer DRF's ``{count, next, previous, results}``
# with ``page`` (from 1), ``page_size`` (default 20, at most 100), ``ordering`` (fields of the
# list; ``-`` for descending; another field → 400) and ``search`` (a case-insensitive part of
# the name); a page past the last → 404. Unknown or invalid body fields → 422
# ``invalid_request``.


def _company(request: web.Request) -> uuid.UUID:
    principal = require_account(request)
    wanted = domain.parse_uuid(request.match_info["company_id"])
    if wanted is None or wanted != uuid.UUID(principal.account_id):
        raise errors.NotFound("No such company")
    return wanted


def _path_id(request: web.Request, name: str, what: str) -> uuid.UUID:
    found = domain.parse_uuid(request.match_info[name])
    if found is None:
        raise errors.NotFound(f"No such {what}")
    return found


def _dataset_in_path(request: web.Request) -> uuid.UUID | None:
    return (
        _path_id(request, "dataset_id", "dataset") if "dataset_id" in request.match_info else None
    )


def _list_query(
    request: web.Request, spec: tuple[dict[str, str], str]
) -> tuple[repo.ListQuery, Window]:
    window = page_window(request.query, domain.PAGE_SIZE, domain.MAX_PAGE_SIZE)
    query = repo.ListQuery(
        search=domain.search_term(request.query.get("search")),
        order=domain.parse_ordering(request.query.get("ordering"), spec),
        offset=window.offset,
        limit=window.limit,
    )
    return query, window


def _page(request: web.Request, window: Window, count: int, results: list) -> web.Response:
    url = request.app[CONFIG].public(request.path)
    return web.json_response(page_answer(url, request.query, window, count, results))


async def _json_body(request: web.Request, *, optional: bool = False) -> dict:
    if optional and (not request.body_exists or request.content_length == 0):
        return {}
    return await read_json_object(request)


def _image_type_json(image_type: domain.ImageType) -> dict:
    return {
        **image_type.as_dict(),
        "sides": [side.as_dict() for side in image_type.sides],
        "lights": [light.as_dict() for light in image_type.lights],
    }


def _dataset_json(dataset: repo.Dataset) -> dict:
    image_type = domain.image_type_of(dataset.image_type_id)
    return {
        "id": str(dataset.id),
        "name": dataset.name,
        "company": str(dataset.account_id),
        "image_type_id": image_type.id,
        "image_type": image_type.as_dict(),
        "creation_time": domain.iso_millis(dataset.created_at),
    }


def _subject_json(subject: repo.Subject) -> dict:
    return {
        "id": str(subject.id),
        "name": subject.name,
        "company": str(subject.account_id),
        "dataset": str(subject.dataset_id),
        "birth_date": subject.birth_date.isoformat() if subject.birth_date else None,
        "biological_sex": subject.biological_sex,
        "meta": subject.meta,
        "creation_time": domain.iso_millis(subject.created_at),
    }


def _signed_file_url(
    config: IngestConfig, image_id: uuid.UUID, aux_id: uuid.UUID | None, seconds: int
) -> str:
    claims = {"use": domain.HAUT_FILE, "image": str(image_id)}
    if aux_id is not None:
        claims["aux"] = str(aux_id)
    token = domain.sign_token(config.signing_key, claims, int(time.time()) + seconds)
    return config.public(f"/api/v1/files/{token}")


def _image_listing(
    config: IngestConfig, image: repo.HautImage, aux: list[repo.AuxImage], seconds: int | None
) -> dict:
    """The seed's list/get shape, plus ``light``, ``status`` and the quality fields the list
    shape leaves out (``quality_feedback``, ``quality_issues``, ``quality_result``).
    ``seconds`` None: no signed URLs."""
    image_type = domain.image_type_of(image.image_type_id)
    signed = seconds is not None and image.sha256 is not None
    return {
        "id": str(image.id),
        "name": image.name,
        "side": image_type.side(image.side_id).tech_name,
        "quality_score": image.quality_score,
        "problems": image.problems,
        "created_at": domain.iso_millis(image.created_at),
        "signed_url": _signed_file_url(config, image.id, None, seconds) if signed else None,
        "image_batch_id": str(image.batch_id),
        "meta": image.meta,
        "aux_images": [
            {
                "id": str(item.id),
                "aux_image_type": item.aux_image_type,
                "creation_time": domain.iso_millis(item.created_at),
                "algo_app": item.algo_app,
                "signed_url": (
                    _signed_file_url(config, image.id, item.id, seconds) if signed else None
                ),
                "meta": {"media_type": item.media_type, "width": item.width, "height": item.height},
            }
            for item in aux
        ],
        "light": image_type.light(image.light_id).tech_name,
        "status": image.status,
        "quality_feedback": image.quality_feedback,
        "quality_issues": image.quality_issues,
        "quality_result": image.quality_result,
    }


def _image_object(config: IngestConfig, image: repo.HautImage, upload_url: str) -> dict:
    """The seed's whole image object of ``signed_upload_url`` (nulls where nothing is known
    yet) with its ``upload_url``."""
    image_type = domain.image_type_of(image.image_type_id)
    side, light = image_type.side(image.side_id), image_type.light(image.light_id)
    return {
        "id": str(image.id),
        "name": image.name,
        "side": side.as_dict(),
        "light": light.as_dict(),
        "image_type": image_type.as_dict(),
        "side_name": side.name,
        "side_tech_name": side.tech_name,
        "light_name": light.name,
        "light_tech_name": light.tech_name,
        "image_type_name": image_type.name,
        "image_type_tech_name": image_type.tech_name,
        "creation_time": domain.iso_millis(image.created_at),
        "quality_score": image.quality_score,
        "quality_feedback": image.quality_feedback,
        "quality_result": image.quality_result,
        "quality_issues": image.quality_issues,
        "problems": image.problems,
        "stage_step_number": None,
        "stage_number": None,
        "urls": {},
        "signed_url": None,
        "original_image_id": None,
        "image_batch_id": str(image.batch_id),
        "meta": image.meta,
        "application_run_id": None,
        "upload_url": {
            "url": upload_url,
            "method": domain.UPLOAD_METHOD,
            "headers": domain.upload_headers(config.max_upload_bytes),
            "content_type": domain.UPLOAD_CONTENT_TYPE,
        },
    }


async def hautai_image_types(request: web.Request) -> web.Response:
    """``GET /api/v1/dicts/image_types/`` → the image types with their sides and lights."""
    require_account(request)
    window = page_window(request.query, domain.PAGE_SIZE, domain.MAX_PAGE_SIZE)
    types = list(domain.IMAGE_TYPES.values())
    shown = types[window.offset : window.offset + window.limit]
    return _page(request, window, len(types), [_image_type_json(t) for t in shown])


async def hautai_dataset_create(request: web.Request) -> web.Response:
    """``POST …/datasets/ {name, image_type_id?}`` → 201 with the dataset (type 1 by default)."""
    account_id = _company(request)
    values = domain.parse_dataset(await _json_body(request), partial=False)
    async with request.app[POOL].acquire() as conn:
        dataset = await repo.add_dataset(conn, account_id, **values)
    return web.json_response(_dataset_json(dataset), status=201)


async def hautai_dataset_list(request: web.Request) -> web.Response:
    """``GET …/datasets/`` (ordering: name, creation_time, id; default -creation_time)."""
    account_id = _company(request)
    query, window = _list_query(request, domain.DATASET_ORDERING)
    async with request.app[POOL].acquire() as conn:
        datasets, count = await repo.datasets_of(conn, account_id, query)
    return _page(request, window, count, [_dataset_json(d) for d in datasets])


async def hautai_dataset_get(request: web.Request) -> web.Response:
    """``GET …/datasets/{dataset_id}/``."""
    account_id = _company(request)
    dataset_id = _path_id(request, "dataset_id", "dataset")
    return web.json_response(
        _dataset_json(await request.app[SUBJECTS].dataset(account_id, dataset_id))
    )


async def hautai_dataset_update(request: web.Request) -> web.Response:
    """``PATCH …/datasets/{dataset_id}/`` (the fields sent) or ``PUT`` (``name`` required)."""
    account_id = _company(request)
    dataset_id = _path_id(request, "dataset_id", "dataset")
    changes = domain.parse_dataset(await _json_body(request), partial=request.method == "PATCH")
    async with request.app[POOL].acquire() as conn:
        dataset = await repo.update_dataset(conn, account_id, dataset_id, changes)
    if dataset is None:
        raise errors.NotFound("No such dataset")
    return web.json_response(_dataset_json(dataset))


async def hautai_dataset_delete(request: web.Request) -> web.Response:
    """``DELETE …/datasets/{dataset_id}/`` → 204; its subjects and their images go too."""
    account_id = _company(request)
    dataset_id = _path_id(request, "dataset_id", "dataset")
    await request.app[SUBJECTS].delete_dataset(account_id, dataset_id)
    return web.Response(status=204)


async def hautai_subject_create(request: web.Request) -> web.Response:
    """``POST …/datasets/{dataset_id}/subjects/ {name, birth_date?, biological_sex?, meta?}``
    → 201 with the subject."""
    account_id = _company(request)
    dataset_id = _path_id(request, "dataset_id", "dataset")
    values = domain.parse_subject(await _json_body(request), partial=False)
    subject = await request.app[SUBJECTS].add_subject(account_id, dataset_id, values)
    return web.json_response(_subject_json(subject), status=201)


async def hautai_subject_list(request: web.Request) -> web.Response:
    """``GET …/datasets/{dataset_id}/subjects/`` (ordering: name, creation_time, birth_date,
    id; default -creation_time)."""
    account_id = _company(request)
    dataset = await request.app[SUBJECTS].dataset(
        account_id, _path_id(request, "dataset_id", "dataset")
    )
    query, window = _list_query(request, domain.SUBJECT_ORDERING)
    async with request.app[POOL].acquire() as conn:
        subjects, count = await repo.subjects_of(conn, account_id, dataset.id, query)
    return _page(request, window, count, [_subject_json(s) for s in subjects])


async def hautai_subject_get(request: web.Request) -> web.Response:
    """``GET …/datasets/{dataset_id}/subjects/{subject_id}/``."""
    account_id = _company(request)
    subject = await request.app[SUBJECTS].subject(
        account_id, _path_id(request, "subject_id", "subject"), _dataset_in_path(request)
    )
    return web.json_response(_subject_json(subject))


async def hautai_subject_update(request: web.Request) -> web.Response:
    """``PATCH …/subjects/{subject_id}/`` (the fields sent) or ``PUT`` (``name`` required)."""
    account_id = _company(request)
    dataset_id = _path_id(request, "dataset_id", "dataset")
    subject_id = _path_id(request, "subject_id", "subject")
    changes = domain.parse_subject(await _json_body(request), partial=request.method == "PATCH")
    async with request.app[POOL].acquire() as conn:
        subject = await repo.update_subject(conn, account_id, dataset_id, subject_id, changes)
    if subject is None:
        raise errors.NotFound("No such subject")
    return web.json_response(_subject_json(subject))


async def hautai_subject_delete(request: web.Request) -> web.Response:
    """``DELETE …/datasets/{dataset_id}/subjects/{subject_id}/`` → 204; its batches and
    images go too."""
    account_id = _company(request)
    await request.app[SUBJECTS].delete_subject(
        account_id,
        _path_id(request, "dataset_id", "dataset"),
        _path_id(request, "subject_id", "subject"),
    )
    return web.Response(status=204)


async def hautai_signed_upload_url(request: web.Request) -> web.Response:
    """``POST …/subjects/{subject_id}/signed_upload_url/`` with the seed's body (every field
    optional, the body too) → 201 with the seed's image object and its ``upload_url``: ``PUT``
    the bytes there with the listed headers before it expires.

    Without ``batch_id`` a batch is made (with ``creation_time`` and ``app_args``, which
    belong to a batch and are ignored with a ``batch_id``); a ``batch_id`` must be this
    subject's (404) and not computed yet (409). ``side_id``/``light_id`` default to front and
    regular; unknown ids → 422.
    """
    account_id = _company(request)
    subject = await request.app[SUBJECTS].subject(
        account_id, _path_id(request, "subject_id", "subject"), _dataset_in_path(request)
    )
    body = await _json_body(request, optional=True)
    image, token = await request.app[SUBJECTS].request_upload(account_id, subject, body)
    config = request.app[CONFIG]
    answer = _image_object(config, image, config.public(f"/api/v1/uploads/{token}"))
    return web.json_response(answer, status=201)


async def hautai_upload(request: web.Request) -> web.Response:
    """``PUT /api/v1/uploads/{token}`` (the signed upload URL; the signature is the authority)
    with the bytes as ``application/octet-stream`` and ``X-Goog-Content-Length-Range``.

    Tampered or expired → 403; used → 409; the image deleted → 404; its batch computed → 409;
    another content type → 415, a missing or different range header → 400, a body over the
    limit → 413 (while streaming); not an image → 415, a broken image → 422. A refused upload
    keeps nothing and leaves the URL unused.
    """
    subjects, config = request.app[SUBJECTS], request.app[CONFIG]
    claims = subjects.upload_grant(request.match_info["token"])
    await subjects.check_upload_target(claims)
    domain.check_upload_request(
        request.headers.get("Content-Type"),
        request.headers.get(domain.LENGTH_RANGE_HEADER),
        request.content_length,
        config.max_upload_bytes,
    )
    data = await _read_body(request, config.max_upload_bytes)
    image = await subjects.accept_upload(claims, data)
    return web.json_response(
        {"id": str(image.id), "status": image.status, "image_batch_id": str(image.batch_id)}
    )


async def _read_body(request: web.Request, limit: int) -> bytes:
    # Counted while streaming: the body is never buffered past the limit.
    buffer = bytearray()
    try:
        async for chunk in request.content.iter_chunked(_CHUNK):
            buffer += chunk
            if len(buffer) > limit:
                raise errors.PayloadTooLarge(f"The image exceeds {limit} bytes")
    except (HttpProcessingError, aiohttp.ClientPayloadError) as exc:
        raise errors.BadRequest(f"Malformed body: {exc}") from exc
    if not buffer:
        raise errors.BadRequest("The body is empty: send the image's bytes")
    return bytes(buffer)


async def hautai_compute(request: web.Request) -> web.Response:
    """``POST …/batches/{batch_id}/compute/ {app_args?}`` → ``{"ok": true}``; the analysis runs
    on the processing workers and fills the images' fields in. Twice, or on a batch with no
    uploaded image → 409 ``conflict``."""
    account_id = _company(request)
    batch_id = _path_id(request, "batch_id", "batch")
    app_args = domain.parse_compute(await _json_body(request, optional=True))
    await request.app[SUBJECTS].compute(account_id, batch_id, app_args)
    return web.json_response({"ok": True})


async def hautai_subject_images(request: web.Request) -> web.Response:
    """``GET …/subjects/{subject_id}/images/`` (ordering: created_at, creation_time, name,
    quality_score, id; default -created_at; ``signed_url_expiration`` seconds, default 60):
    each uploaded image and aux image with a signed URL."""
    account_id = _company(request)
    subject = await request.app[SUBJECTS].subject(
        account_id, _path_id(request, "subject_id", "subject"), _dataset_in_path(request)
    )
    seconds = domain.signed_url_seconds(request.query.get("signed_url_expiration"))
    query, window = _list_query(request, domain.IMAGE_ORDERING)
    async with request.app[POOL].acquire() as conn:
        images, count = await repo.images_of_subject(conn, account_id, subject.id, query)
        aux = await repo.aux_images_of(conn, [image.id for image in images])
    config = request.app[CONFIG]
    results = [_image_listing(config, image, aux[image.id], seconds) for image in images]
    return _page(request, window, count, results)


async def hautai_image(request: web.Request) -> web.Response:
    """``GET …/images/{image_id}/?generate_signed_url=true&signed_url_expiration=60`` → the
    image (signed URLs of it and its aux images only with ``generate_signed_url``)."""
    account_id = _company(request)
    image_id = _path_id(request, "image_id", "image")
    generate = domain.query_flag(request.query.get("generate_signed_url"), "generate_signed_url")
    seconds = domain.signed_url_seconds(request.query.get("signed_url_expiration"))
    async with request.app[POOL].acquire() as conn:
        image = await repo.haut_image(conn, account_id, image_id)
        if image is None:
            raise errors.NotFound("No such image")
        aux = (await repo.aux_images_of(conn, [image.id]))[image.id]
    return web.json_response(
        _image_listing(request.app[CONFIG], image, aux, seconds if generate else None)
    )


async def hautai_image_delete(request: web.Request) -> web.Response:
    """``DELETE …/images/{image_id}/`` → 204: the image and its aux images go, and their bytes
    when nothing else references the original."""
    account_id = _company(request)
    image_id = _path_id(request, "image_id", "image")
    if not await request.app[SUBJECTS].delete_image(account_id, image_id):
        raise errors.NotFound("No such image")
    return web.Response(status=204)


async def hautai_file(request: web.Request) -> web.StreamResponse:
    """``GET|HEAD /api/v1/files/{token}``: a signed URL's original or aux image, until it
    expires (403 then, or when tampered with; 404 once the image is deleted)."""
    config = request.app[CONFIG]
    now = time.time()
    claims = domain.verify_token(
        config.signing_key, request.match_info["token"], now, domain.HAUT_FILE, "signed URL"
    )
    image_id = domain.parse_uuid(str(claims.get("image")))
    aux_id = domain.parse_uuid(str(claims["aux"])) if "aux" in claims else None
    if image_id is None or ("aux" in claims and aux_id is None):
        raise errors.Forbidden("The signed URL is not valid")
    cache_control = f"private, max-age={max(1, int(claims['exp'] - now))}"
    async with request.app[POOL].acquire() as conn:
        if aux_id is None:
            blob = await repo.haut_original(conn, image_id)
            aux = None
        else:
            blob, aux = None, await repo.aux_image(conn, image_id, aux_id)
    if blob is not None:
        key, tag, size, media_type = (
            domain.blob_key(blob.sha256),
            blob.sha256,
            blob.size,
            blob.media_type,
        )
    elif aux is not None:
        tag = hashlib.sha256(aux.key.encode()).hexdigest()
        key, size, media_type = aux.key, aux.bytes, aux.media_type
    else:
        raise errors.NotFound("The image was deleted")
    return await _stream(request, key, tag, size, media_type, cache_control)


# --- delivery ---------------------------------------------------------------------------------


async def _deliver(request: web.Request, blob: repo.Blob) -> web.StreamResponse:
    """Stream a content-addressed blob (never read whole)."""
    return await _stream(
        request, domain.blob_key(blob.sha256), blob.sha256, blob.size, blob.media_type
    )


async def _stream(
    request: web.Request,
    key: str,
    tag: str,
    size: int,
    media_type: str,
    cache_control: str | None = None,
) -> web.StreamResponse:
    """Stream immutable bytes under ``key`` with the ETag ``tag``, caching (``cache_control``
    instead of a year when given), range and safety headers."""
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
    headers = (
        plan.headers if cache_control is None else {**plan.headers, "Cache-Control": cache_control}
    )
    if plan.status == 304:
        return web.Response(status=304, headers=headers)
    response = web.StreamResponse(status=plan.status, headers=headers)
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
