"""The hash file host's HTTP handlers (its API, ``/f/`` serving and its pages): parse, call one
use case (:mod:`.files`) or read, answer.

Upload errors are those of :mod:`services.ingest.upload_streaming` and
:mod:`services.ingest.content_checks`; the form's ``api=1`` answers them as plain text, and a
pomf-shaped upload (``files[]``, or several files) in pomf's error shape.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from services.ingest import content_checks
from services.ingest.config import CONFIG, IngestConfig
from services.ingest.content_checks import Limits
from services.ingest.derivations import Derivatives
from services.ingest.hashhost import domain, files, repo
from services.ingest.upload_streaming import Uploads, read_uploads
from shared import errors
from shared.delivery import serve_asset, serve_blob, serve_bytes
from shared.http import principal_of, read_form
from shared.image_urls import FILE_PREFIX, file_hash_of_path, file_paths
from shared.pages import Pages, page_user, redirect
from shared.pagination import page_answer, page_window
from shared.runtime import FAULTS, INTERNAL, POOL, STORE
from shared.store_keys import blob_key, entity_tag, is_sha256

#: The pages' renderer (the upload form and "my files").
PAGES = web.AppKey("ingest.pages", Pages)
#: The client of processing's replicas (every dialect's derivatives).
DERIVATIVES = web.AppKey("ingest.derivatives", Derivatives)
#: The usual extension of each sniffed type (a listed file's ``ext`` URL when its name has none).
_EXTENSIONS = {
    kind.media_type: kind.extension
    for kind in (
        *content_checks.WEB_IMAGES,
        content_checks.PDF,
        content_checks.ZIP,
        content_checks.HTML,
        content_checks.TEXT,
        content_checks.BINARY,
    )
}


async def api_upload(request: web.Request) -> web.Response:
    """``POST /api/upload``: one file in ``file`` → ``{hash, status, urls}``; pomf's
    ``files[]`` or several files (up to :data:`~.domain.MAX_FILES_PER_UPLOAD`) → pomf's
    ``{success, files: [{hash, name, url, size, urls}]}``, or when one is refused
    ``{success: false, errorcode, description, error}`` and nothing is kept.

    With credentials the files are registered to the caller's account; an anonymous upload's
    answer carries a ``delete_token`` per file (shown once).
    """
    uploads = Uploads()
    try:
        await _read(request, uploads)
        stored = await _store(request, uploads)
    except errors.DarkroomError as exc:
        if _pomf_shaped(uploads):
            return web.json_response(_pomf_error(exc), status=exc.status)
        raise
    config = request.app[CONFIG]
    if _pomf_shaped(uploads):
        return web.json_response(
            {"success": True, "files": [_pomf_file(config, s) for s in stored]}
        )
    return web.json_response(_answer(config, stored[0]))


async def _read(request: web.Request, uploads: Uploads) -> Uploads:
    limit = request.app[CONFIG].max_upload_bytes
    return await read_uploads(
        request, limit, domain.MAX_FILES_PER_UPLOAD, domain.FILE_FIELDS, uploads
    )


async def _store(request: web.Request, uploads: Uploads) -> list[files.StoredFile]:
    principal = principal_of(request)
    return await files.store_files(
        request.app[POOL],
        request.app[STORE],
        request.app[FAULTS],
        Limits.of(request.app[CONFIG]),
        principal.account_id if principal.authenticated else None,
        uploads.files,
    )


def _answer(config: IngestConfig, stored: files.StoredFile) -> dict:
    sha256 = stored.content.sha256
    extension = domain.extension_for(stored.filename, stored.content.extension)
    paths = file_paths(sha256, stored.filename, extension)
    answer: dict = {
        "hash": sha256,
        "status": True,
        "urls": {
            "base": config.public(FILE_PREFIX),
            "full": config.public(paths["full"]),
            "ext": config.public(paths["ext"]),
            "hash": config.public(paths["hash"]),
        },
    }
    if stored.delete_token is not None:
        answer["delete_token"] = stored.delete_token
    return answer


def _pomf_shaped(uploads: Uploads) -> bool:
    """Whether a request is answered in pomf's shape: it used ``files[]`` or sent several."""
    return domain.POMF_FIELD in uploads.file_fields or uploads.sent > 1


def _pomf_error(exc: errors.DarkroomError) -> dict:
    # pomf's error fields, and ours beside them for clients that read the house shape.
    return {"success": False, "errorcode": exc.status, "description": exc.message, **exc.body()}


def _pomf_file(config: IngestConfig, stored: files.StoredFile) -> dict:
    answer = _answer(config, stored)
    entry: dict = {
        "hash": answer["hash"],
        "name": stored.filename,
        "url": answer["urls"]["ext"],
        "size": stored.content.size,
        "urls": answer["urls"],
    }
    if "delete_token" in answer:
        entry["delete_token"] = answer["delete_token"]
    return entry


async def serve_file(request: web.Request) -> web.StreamResponse:
    """``GET|HEAD /f/{hash}``, ``/f/{hash}.{ext}``, ``/f/{hash}/{filename}``: the same bytes."""
    sha256 = file_hash_of_path(request.match_info["tail"])
    if sha256 is None:
        raise errors.NotFound("No such file")
    async with request.app[POOL].acquire() as conn:
        blob = await repo.served_file(conn, sha256)
    if blob is None:
        raise errors.NotFound("No such file")
    return await serve_blob(
        request, request.app[STORE], blob_key(blob.sha256), blob.sha256, blob.size, blob.media_type
    )


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
    if not is_sha256(sha256) or not await files.remove_file(
        request.app[POOL],
        request.app[STORE],
        sha256,
        account_id=principal.account_id,
        delete_token=token,
    ):
        raise errors.NotFound("No such file of yours")
    return web.json_response({"hash": sha256, "deleted": True})


async def api_files(request: web.Request) -> web.Response:
    """``GET /api/files?page=&page_size=``: the caller's files, newest first, in pages of
    :data:`~.domain.FILES_PER_PAGE` as ``{count, next, previous, results}``."""
    principal = principal_of(request)
    if not principal.authenticated:
        raise errors.BadCredentials("Send your API token to list your files")
    window = page_window(request.query, domain.FILES_PER_PAGE, domain.FILES_PER_PAGE)
    async with request.app[POOL].acquire() as conn:
        count = await repo.count_files(conn, uuid.UUID(principal.account_id))
        listed = await repo.files_of(
            conn, uuid.UUID(principal.account_id), window.offset, window.limit
        )
    config = request.app[CONFIG]
    results = [_listed(config, f) for f in listed]
    url = config.public("/api/files")
    return web.json_response(page_answer(url, request.query, window, count, results))


def _listed(config: IngestConfig, record: repo.FileRecord) -> dict:
    extension = domain.extension_for(record.filename, _EXTENSIONS.get(record.media_type, "bin"))
    paths = file_paths(record.sha256, record.filename, extension)
    return {
        "hash": record.sha256,
        "name": record.filename,
        "size": record.size,
        "media_type": record.media_type,
        "created_at": record.created_at.isoformat(),
        "url": config.public(paths["ext"]),
        "urls": {key: config.public(path) for key, path in paths.items()},
    }


# --- pages ------------------------------------------------------------------------------------


async def upload_page(request: web.Request) -> web.Response:
    """``GET /upload``: the upload form (works without JavaScript; with it, drag and drop and
    copy buttons) and how to use the API."""
    return await _render_upload(request, results=[], error=None)


async def upload_form(request: web.Request) -> web.StreamResponse:
    """``POST /upload`` (the form; anonymous or signed in; one file or several, all or none):
    a result page, or with ``api=1`` (query or a form field before the files) ``text/plain``
    ``OK <hash>`` (a line per file) / ``ERROR <message>`` with the error's status code."""
    uploads = Uploads()
    try:
        await _read(request, uploads)
        request.app[PAGES].check_form_token(principal_of(request), uploads.fields)
        stored = await _store(request, uploads)
    except errors.DarkroomError as exc:
        if _wants_plain_text(request, uploads):
            return web.Response(text=f"ERROR {exc.message}", status=exc.status)
        return await _render_upload(request, results=[], error=exc.message, status=exc.status)
    if _wants_plain_text(request, uploads):
        return web.Response(text="\n".join(f"OK {s.content.sha256}" for s in stored))
    config = request.app[CONFIG]
    results = [_pomf_file(config, s) for s in stored]
    return await _render_upload(request, results=results, error=None, status=201)


def _wants_plain_text(request: web.Request, uploads: Uploads) -> bool:
    return request.query.get("api") == "1" or uploads.fields.get("api") == "1"


async def _render_upload(
    request: web.Request, *, results: list[dict], error: str | None, status: int = 200
) -> web.Response:
    config = request.app[CONFIG]
    return request.app[PAGES].render(
        "upload.html",
        status=status,
        user=await _viewer(request),
        principal=principal_of(request),
        results=results,
        error=error,
        human_size=domain.human_size,
        api_url=config.public("/api/upload"),
        form_url=config.public("/upload"),
        file_base=config.public(FILE_PREFIX),
        delete_base=config.public(domain.DELETE_PREFIX),
        max_bytes=domain.human_size(config.max_upload_bytes),
        max_files=domain.MAX_FILES_PER_UPLOAD,
        token_placeholder=domain.TOKEN_PLACEHOLDER,
    )


async def files_page(request: web.Request) -> web.Response:
    """``GET /files?page=``: the signed-in user's files, newest first, a page at a time, with
    thumbnails, copy buttons and delete links (sign-in required)."""
    user = await _viewer(request)
    if user is None:
        return redirect("/signin?next=/files")
    window = page_window(request.query, domain.FILES_PER_PAGE, domain.FILES_PER_PAGE)
    account_id = uuid.UUID(principal_of(request).account_id)
    async with request.app[POOL].acquire() as conn:
        count = await repo.count_files(conn, account_id)
        listed = await repo.files_of(conn, account_id, window.offset, window.limit)
    page = window.offset // window.limit + 1
    pages = domain.page_count(count, window.limit)
    if page > pages:
        # Past the end (the last file of the last page deleted): the last page there is.
        return redirect(f"/files?page={pages}")
    config = request.app[CONFIG]
    return request.app[PAGES].render(
        "files.html",
        user=user,
        principal=principal_of(request),
        files=[_shown(config, f) for f in listed],
        count=count,
        page=page,
        pages=pages,
        per_page=domain.FILES_PER_PAGE,
    )


def _shown(config: IngestConfig, record: repo.FileRecord) -> dict:
    """What "my files" shows of a file: its links, human size and thumbnail (web images)."""
    paths = file_paths(record.sha256, record.filename, "")
    return {
        "record": record,
        # Each file links to its "full" URL, the one with its own name.
        "url": config.public(paths["full"]),
        "thumbnail": f"/files/{record.sha256}/thumbnail"
        if record.media_type in domain.THUMBNAIL_TYPES
        else None,
        "edge": domain.THUMBNAIL_EDGE,
        "size": domain.human_size(record.size),
    }


async def thumbnail(request: web.Request) -> web.StreamResponse:
    """``GET|HEAD /files/{hash}/thumbnail``: a small WebP of one of the caller's images, as
    "my files" shows it (made on the first request; ETag, 304, cached for good)."""
    principal = principal_of(request)
    if not principal.authenticated:
        raise errors.BadCredentials("Sign in, or send your API token, to see your thumbnails")
    sha256 = request.match_info["hash"].lower()
    if not is_sha256(sha256):
        raise errors.NotFound("No such image of yours")
    derivatives = request.app[DERIVATIVES]
    outcome = await files.thumbnail(
        request.app[POOL],
        derivatives,
        principal.account_id,
        sha256,
        request.app[CONFIG].processing_timeout_seconds,
    )
    media_type = domain.THUMBNAIL.media_type
    etag = entity_tag(outcome.key)
    if outcome.data is not None:  # made for this request: the answer carried the bytes
        return await serve_bytes(
            request, outcome.data, etag, media_type, cache_control=domain.THUMBNAIL_CACHE_CONTROL
        )
    try:
        return await serve_blob(
            request,
            request.app[STORE],
            outcome.key,
            etag,
            outcome.size,
            media_type,
            cache_control=domain.THUMBNAIL_CACHE_CONTROL,
        )
    except errors.NotFound:
        derivatives.forget(outcome.key)  # its bytes went missing: the next request makes it
        raise


async def files_delete_confirm(request: web.Request) -> web.Response:
    """``GET /files/{hash}/delete``: "Delete this file?", a form that posts the deletion (with
    the page's token) and a way back; nothing changes until it is posted."""
    user = await _viewer(request)
    sha256 = request.match_info["hash"].lower()
    if user is None:
        return redirect(f"/signin?next=/files/{sha256}/delete" if is_sha256(sha256) else "/files")
    record = None
    if is_sha256(sha256):
        async with request.app[POOL].acquire() as conn:
            record = await repo.file_of(conn, uuid.UUID(principal_of(request).account_id), sha256)
    if record is None:
        raise errors.NotFound("No such file of yours")
    return request.app[PAGES].render(
        "files_delete.html",
        user=user,
        principal=principal_of(request),
        file=_shown(request.app[CONFIG], record),
        page=request.query.get("page", ""),
        back=_back(request.query.get("page")),
    )


async def files_delete(request: web.Request) -> web.Response:
    """``POST /files/{hash}/delete`` (form): delete one of the user's files, back to the page
    of the list it was on (``page``)."""
    principal = principal_of(request)
    if not principal.authenticated:
        return redirect("/signin?next=/files")
    form = await read_form(request)
    request.app[PAGES].check_form_token(principal, form)
    sha256 = request.match_info["hash"].lower()
    if not is_sha256(sha256) or not await files.remove_file(
        request.app[POOL], request.app[STORE], sha256, account_id=principal.account_id
    ):
        raise errors.NotFound("No such file of yours")
    return redirect(_back(form.get("page")))


def _back(page: object) -> str:
    """The list page to go back to: ``/files?page=N`` for a sane page number, else ``/files``."""
    if isinstance(page, str) and page.isascii() and page.isdigit() and 1 < int(page) < 10**9:
        return f"/files?page={int(page)}"
    return "/files"


async def sharex_config(request: web.Request) -> web.Response:
    """``GET /files/sharex.sxcu``: a ShareX custom uploader for this host (a download)."""
    config = request.app[CONFIG]
    upload_url = config.public("/api/upload")
    body = domain.sharex_config(upload_url, urlsplit(upload_url).netloc)
    return web.json_response(
        body,
        dumps=lambda value: json.dumps(value, indent=2),
        headers={
            "Content-Disposition": 'attachment; filename="darkroom.sxcu"',
            "Cache-Control": "no-store",
        },
    )


#: The pages' scripts (same-origin files: the pages' policy allows no inline script).
_ASSETS = {"hashhost.js": "application/javascript; charset=utf-8"}
_STATIC = Path(__file__).resolve().parent.parent / "static"


async def asset(request: web.Request) -> web.StreamResponse:
    """``GET /files/assets/{name}``: the pages' static files (a fixed list)."""
    return serve_asset(_STATIC, request.match_info["name"], _ASSETS, "no-cache")


async def _viewer(request: web.Request) -> dict[str, str] | None:
    """The person a page is shown to (see :func:`shared.pages.page_user`)."""
    return await page_user(
        request.app[INTERNAL], request.app[CONFIG].service_url("auth"), principal_of(request)
    )
