"""The hash file host's HTTP handlers (its API, ``/f/`` serving and its pages): parse, call one
use case (:mod:`.files`) or read, answer.

Upload errors are those of :mod:`services.ingest.upload_streaming` and
:mod:`services.ingest.content_checks`; the form's ``api=1`` answers them as plain text.
"""

from __future__ import annotations

import uuid

from aiohttp import web

from services.ingest.config import CONFIG, IngestConfig
from services.ingest.content_checks import Limits
from services.ingest.hashhost import domain, files, repo
from services.ingest.upload_streaming import Upload, read_upload
from shared import errors
from shared.delivery import serve_blob
from shared.http import principal_of, read_form
from shared.image_urls import FILE_PREFIX, file_hash_of_path, file_paths
from shared.pages import Pages, page_user, redirect
from shared.runtime import FAULTS, INTERNAL, POOL, STORE
from shared.store_keys import blob_key, is_sha256

#: The pages' renderer (the upload form and "my files").
PAGES = web.AppKey("ingest.pages", Pages)


async def api_upload(request: web.Request) -> web.Response:
    """``POST /api/upload`` (multipart ``file``, any type) → ``{hash, status, urls}``.

    With credentials the file is registered to the caller's account; an anonymous upload's
    answer carries a ``delete_token`` (shown once).
    """
    upload = await read_upload(request, request.app[CONFIG].max_upload_bytes, Upload())
    return web.json_response(await _store(request, upload))


async def _store(request: web.Request, upload: Upload) -> dict:
    config = request.app[CONFIG]
    principal = principal_of(request)
    stored = await files.store_file(
        request.app[POOL],
        request.app[STORE],
        request.app[FAULTS],
        Limits.of(config),
        principal.account_id if principal.authenticated else None,
        upload,
    )
    return _answer(config, stored)


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
        await read_upload(request, request.app[CONFIG].max_upload_bytes, upload)
        request.app[PAGES].check_form_token(principal_of(request), upload.fields)
        result = await _store(request, upload)
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
        user=await _viewer(request),
        principal=principal_of(request),
        result=result,
        error=error,
        api_url=config.public("/api/upload"),
        form_url=config.public("/upload"),
        file_base=config.public(FILE_PREFIX),
        delete_base=config.public(domain.DELETE_PREFIX),
        max_bytes=config.max_upload_bytes,
    )


async def files_page(request: web.Request) -> web.Response:
    """``GET /files``: the signed-in user's files, with delete buttons (sign-in required)."""
    user = await _viewer(request)
    if user is None:
        return redirect("/signin?next=/files")
    account_id = uuid.UUID(principal_of(request).account_id)
    async with request.app[POOL].acquire() as conn:
        listed = await repo.files_of(conn, account_id, domain.MAX_LISTED_FILES)
    config = request.app[CONFIG]
    # Each file links to its "full" URL, the one with its own name.
    urls = {f.sha256: config.public(file_paths(f.sha256, f.filename, "")["full"]) for f in listed}
    return request.app[PAGES].render(
        "files.html", user=user, principal=principal_of(request), files=listed, urls=urls
    )


async def files_delete(request: web.Request) -> web.Response:
    """``POST /files/{hash}/delete`` (form): delete one of the user's files, back to the list."""
    principal = principal_of(request)
    if not principal.authenticated:
        return redirect("/signin?next=/files")
    request.app[PAGES].check_form_token(principal, await read_form(request))
    sha256 = request.match_info["hash"].lower()
    if not is_sha256(sha256) or not await files.remove_file(
        request.app[POOL], request.app[STORE], sha256, account_id=principal.account_id
    ):
        raise errors.NotFound("No such file of yours")
    return redirect("/files")


async def _viewer(request: web.Request) -> dict[str, str] | None:
    """The person a page is shown to (see :func:`shared.pages.page_user`)."""
    return await page_user(
        request.app[INTERNAL], request.app[CONFIG].service_url("auth"), principal_of(request)
    )
