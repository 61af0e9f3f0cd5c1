"""The Happo Image API's HTTP handlers: parse, call one use case (:mod:`.uploads`) or read,
answer."""

from __future__ import annotations

import uuid

from aiohttp import web

from services.ingest.config import CONFIG
from services.ingest.content_checks import Limits
from services.ingest.happo import domain, repo, uploads
from services.ingest.upload_streaming import Upload, read_body, read_upload
from shared import errors
from shared.delivery import serve_blob
from shared.http import KEEP_AT_EDGE, read_json_object, require_account
from shared.image_urls import HAPPO_HASH, happo_image_path
from shared.runtime import FAULTS, POOL, STORE
from shared.store_keys import blob_key

#: The names this process found taken (see :func:`uploads.offer_upload`).
KNOWN = web.AppKey("happo.known", uploads.Known)


async def upload_url(request: web.Request) -> web.Response:
    """``GET /api/images/{hash}/upload-url`` → ``{uploadUrl, url}``, or ``uploadUrl: null``
    with a message when this account already holds an image under ``hash``.

    Only the caller's own account is consulted. A hash outside ``[A-Za-z0-9_-]{1,128}`` is
    400 ``bad_request``.
    """
    principal = require_account(request)
    config = request.app[CONFIG]
    happo_hash = request.match_info["hash"]
    if not HAPPO_HASH.match(happo_hash):
        raise errors.BadRequest("An image hash is 1 to 128 letters, digits, `-` or `_`")
    account_id = uuid.UUID(principal.account_id)
    token = await uploads.offer_upload(
        request.app[POOL], config, request.app[KNOWN], account_id, happo_hash
    )
    url = config.public(happo_image_path(str(account_id), happo_hash))
    if token is None:
        # Happo images are never deleted: for this caller the answer stays the same, so the
        # gateway may keep and replay it (a run asks this for every snapshot it uploaded).
        return web.json_response(
            {"message": domain.ALREADY_UPLOADED, "uploadUrl": None, "url": url},
            headers=KEEP_AT_EDGE,
        )
    return web.json_response({"uploadUrl": config.public(domain.UPLOAD_PATH + token), "url": url})


async def images_lookup(request: web.Request) -> web.Response:
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
    wanted = sorted({h for h in hashes if HAPPO_HASH.match(h)})
    async with request.app[POOL].acquire() as conn:
        rows = await repo.happo_images(conn, uuid.UUID(principal.account_id), wanted)
    images = {
        row["hash"]: {
            "sha256": row["sha256"],
            "key": blob_key(row["sha256"]),
            "media_type": row["media_type"],
            "width": row["width"],
            "height": row["height"],
        }
        for row in rows
    }
    return web.json_response({"images": images})


async def rendered_image(request: web.Request) -> web.Response:
    """Internal ``POST /internal/happo-images/rendered`` (a PNG as the body) → ``{hash, url,
    sha256, key, width, height}``: a screenshot the renderer took, stored as a Happo image of
    the calling account exactly as an uploaded one (named by the md5 of its bytes, as the Image
    API names uploads), so reports, diffs and pages treat both alike. Storing the same bytes
    again changes nothing (renders are retried after a crash)."""
    principal = require_account(request)
    config = request.app[CONFIG]
    data = await read_body(request, config.max_upload_bytes)
    account_id = uuid.UUID(principal.account_id)
    happo_hash, content = await uploads.store_rendered(
        request.app[POOL],
        request.app[STORE],
        request.app[FAULTS],
        Limits.of(config),
        account_id,
        data,
    )
    return web.json_response(
        {
            "hash": happo_hash,
            "url": config.public(happo_image_path(str(account_id), happo_hash)),
            "sha256": content.sha256,
            "key": blob_key(content.sha256),
            "width": content.width,
            "height": content.height,
        }
    )


async def upload(request: web.Request) -> web.Response:
    """``POST /api/images/upload/{token}`` (multipart PNG in ``file``) → ``{url}``.

    The signed token is the authority (whoever carries it): tampered or expired → 403
    ``forbidden``, already used → 409 ``conflict``, both before the body is read. A 32- or
    64-hex hash must be the md5 or SHA-256 of the file (422 ``invalid_request`` otherwise);
    anything but a PNG is 415.
    """
    config = request.app[CONFIG]
    grant = await uploads.grant_of(
        request.app[POOL], config.signing_key, request.match_info["token"]
    )
    sent = await read_upload(request, config.max_upload_bytes, Upload())
    await uploads.store_upload(
        request.app[POOL],
        request.app[STORE],
        request.app[FAULTS],
        Limits.of(config),
        grant,
        sent.data,
    )
    account_id = str(uuid.UUID(grant.account_id))
    return web.json_response({"url": config.public(happo_image_path(account_id, grant.hash))})


async def serve_image(request: web.Request) -> web.StreamResponse:
    """``GET|HEAD /img/{account_id}/{hash}``: the image an account uploaded under ``hash``."""
    happo_hash = request.match_info["hash"]
    try:
        account_id = uuid.UUID(request.match_info["account_id"])
    except ValueError:
        raise errors.NotFound("No such image") from None
    if not HAPPO_HASH.match(happo_hash):
        raise errors.NotFound("No such image")
    async with request.app[POOL].acquire() as conn:
        blob = await repo.happo_image(conn, account_id, happo_hash)
    if blob is None:
        raise errors.NotFound("No such image")
    return await serve_blob(
        request, request.app[STORE], blob_key(blob.sha256), blob.sha256, blob.size, blob.media_type
    )
