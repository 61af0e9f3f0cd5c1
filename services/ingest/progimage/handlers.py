"""Progimage's HTTP handlers: parse, call one use case (:class:`.uploads.ProgimageUploads`) or
read, answer."""

from __future__ import annotations

import uuid

from aiohttp import web

from services.ingest.config import CONFIG, IngestConfig
from services.ingest.domain import iso_millis, parse_uuid
from services.ingest.progimage import domain, repo
from services.ingest.progimage.uploads import ProgimageUploads
from services.ingest.upload_streaming import CHUNK
from shared import errors, store_keys
from shared.delivery import serve_blob, serve_bytes
from shared.http import (
    KEEP_AT_EDGE,
    Principal,
    read_json_object,
    require_account,
    unless_disconnected,
)
from shared.image_urls import progimage_file_path, progimage_variant_of
from shared.pagination import offset_window
from shared.runtime import POOL, STORE

#: The app's Progimage use cases.
PROGIMAGE = web.AppKey("ingest.progimage", ProgimageUploads)


async def upload(request: web.Request) -> web.Response:
    """``POST /user/images {process: {...} | [{...}, ...]}`` → 201 with the seed's single
    shape (``data.file.url``, ``.thumb.url``, ``.mini.url``) or its array shape.

    Every URL in the answer serves its bytes already. One bad item → 422 naming its index,
    and nothing of the request is kept.
    """
    principal = require_account(request)
    account_id, user_id = _account_and_user(principal)
    config = request.app[CONFIG]
    # The base64 of one largest upload, plus room for the options around it.
    body = await read_json_object(request, max_bytes=config.max_upload_bytes * 4 // 3 + CHUNK)
    process = domain.parse_process_request(body, config.max_bulk_items)
    images = await request.app[PROGIMAGE].process(account_id, user_id, process)
    if process.bulk:
        data: object = [_listing(config, image) for image in images]
    else:
        data = _single(config, images[0])
    return web.json_response({"data": data}, status=201)


async def image_list(request: web.Request) -> web.Response:
    """``GET /user/images?offset&limit`` → the caller's images, newest first (array shape)."""
    principal = require_account(request)
    _account_id, user_id = _account_and_user(principal)
    config = request.app[CONFIG]
    window = offset_window(
        request.query, default_limit=domain.LIST_LIMIT, max_limit=domain.MAX_LIST_LIMIT
    )
    async with request.app[POOL].acquire() as conn:
        images, total = await repo.progimage_images_of(conn, user_id, window.offset, window.limit)
    return web.json_response(
        {
            "data": [_listing(config, image) for image in images],
            "meta": {"offset": window.offset, "limit": window.limit, "total": total},
        }
    )


async def derived(request: web.Request) -> web.StreamResponse:
    """``GET|HEAD /user/images/{image_id}/derived?thumb_w&thumb_h&quality&rotation&filter
    &round_corners&format``: one of the caller's images through those options, made on the
    first request and served from the store after (ETag, Range, immutable caching)."""
    principal = require_account(request)
    _account_id, user_id = _account_and_user(principal)
    image_id = parse_uuid(request.match_info["image_id"])
    if image_id is None:
        raise errors.NotFound("No such image")
    # A client that goes away (the gateway closes its upstream connection then) withdraws
    # its request, so a burst cut off leaves no queue of images nobody will read.
    derivative = await unless_disconnected(
        request,
        request.app[PROGIMAGE].derived(user_id, image_id, list(request.query.items())),
    )
    etag = store_keys.entity_tag(derivative.key)
    # The same bytes for their owner for good (the original is never replaced or deleted, and
    # the key names the transform): the gateway may keep and replay the answer (KEEP_AT_EDGE).
    if derivative.data is not None:
        # Made for this request: the answer carried the bytes, no need to read them back.
        return await serve_bytes(
            request,
            derivative.data,
            etag,
            derivative.media_type,
            cache_control=domain.DERIVED_CACHE_CONTROL,
            extra_headers=KEEP_AT_EDGE,
        )
    try:
        return await serve_blob(
            request,
            request.app[STORE],
            derivative.key,
            etag,
            derivative.size,
            derivative.media_type,
            cache_control=domain.DERIVED_CACHE_CONTROL,
            extra_headers=KEEP_AT_EDGE,
        )
    except errors.NotFound:
        # Its bytes went missing: the next request makes it again.
        request.app[PROGIMAGE].forget(derivative.key)
        raise


async def serve_file(request: web.Request) -> web.StreamResponse:
    """``GET|HEAD /uploads/image/file/{image_id}/{name}``: a variant of a Progimage image."""
    image_id = parse_uuid(request.match_info["image_id"])
    if image_id is None:
        raise errors.NotFound("No such image")
    variant = progimage_variant_of(str(image_id), request.match_info["name"])
    if variant is None:
        raise errors.NotFound("No such image")
    async with request.app[POOL].acquire() as conn:
        image = await repo.progimage_image(conn, image_id)
    if image is None or request.match_info["name"].rsplit(".", 1)[-1] != image.extension:
        raise errors.NotFound("No such image")
    stored = image.variants[variant]
    return await serve_blob(
        request,
        request.app[STORE],
        stored["key"],
        store_keys.entity_tag(stored["key"]),
        stored["bytes"],
        stored["media_type"],
    )


def _account_and_user(principal: Principal) -> tuple[uuid.UUID, uuid.UUID]:
    if not principal.user_id:
        raise errors.Forbidden("Images belong to a user; use a user's credentials")
    return uuid.UUID(principal.account_id), uuid.UUID(principal.user_id)


def _urls(config: IngestConfig, image: repo.ProgimageImage) -> dict[str, str]:
    return {
        name: config.public(progimage_file_path(str(image.id), name, image.extension))
        for name in ("file", "thumb", "mini")
    }


def _single(config: IngestConfig, image: repo.ProgimageImage) -> dict:
    urls = _urls(config, image)
    return {
        "id": str(image.id),
        "user_id": str(image.user_id),
        "file": {
            "url": urls["file"],
            "mini": {"url": urls["mini"]},
            "thumb": {"url": urls["thumb"]},
        },
        "created_at": iso_millis(image.created_at),
        "updated_at": iso_millis(image.updated_at),
    }


def _listing(config: IngestConfig, image: repo.ProgimageImage) -> dict:
    urls = _urls(config, image)
    # Every URL we hand out is on DARKROOM_PUBLIC_URL: the "secure" ones are the same URLs
    # (https whenever the platform is served over TLS).
    return {
        "id": str(image.id),
        "created_at": iso_millis(image.created_at),
        "url": urls["file"],
        "secure_url": urls["file"],
        "thumbnail_url": urls["thumb"],
        "secure_thumbnail_url": urls["thumb"],
    }
