"""The Haut.ai-style API's HTTP handlers: parse, call one use case (:mod:`.datasets`,
:mod:`.subjects`, :mod:`.uploads`, :mod:`.analyses`, :mod:`.images`) or read, answer.

Every path under /api/v1/companies/{company_id}/ answers 404 ``not_found`` for a company id
that is not the caller's, as if it did not exist, and so does any dataset, subject, batch or
image id that is not the company's. Lists answer DRF's ``{count, next, previous, results}``
with ``page`` (from 1), ``page_size`` (default 20, at most 100), ``ordering`` (fields of the
list; ``-`` for descending; another field → 400) and ``search`` (a case-insensitive part of
the name); a page past the last → 404. Unknown or invalid body fields → 422
``invalid_request``.
"""

from __future__ import annotations

import hashlib
import time
import uuid

from aiohttp import web

from services.ingest.config import CONFIG, IngestConfig
from services.ingest.content_checks import Limits
from services.ingest.domain import iso_millis, parse_uuid
from services.ingest.hautai import analyses, datasets, domain, images, repo, subjects, uploads
from services.ingest.upload_streaming import read_body
from shared import errors
from shared.delivery import serve_blob
from shared.http import read_json_object, require_account
from shared.pagination import Window, page_answer, page_window
from shared.runtime import FAULTS, POOL, STORE
from shared.signing import sign_token, verify_token
from shared.store_keys import blob_key


def _company(request: web.Request) -> uuid.UUID:
    principal = require_account(request)
    wanted = parse_uuid(request.match_info["company_id"])
    if wanted is None or wanted != uuid.UUID(principal.account_id):
        raise errors.NotFound("No such company")
    return wanted


def _path_id(request: web.Request, name: str, what: str) -> uuid.UUID:
    found = parse_uuid(request.match_info[name])
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
        "creation_time": iso_millis(dataset.created_at),
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
        "creation_time": iso_millis(subject.created_at),
    }


def _signed_file_url(
    config: IngestConfig, image_id: uuid.UUID, aux_id: uuid.UUID | None, seconds: int
) -> str:
    claims = {"use": domain.HAUTAI_FILE, "image": str(image_id)}
    if aux_id is not None:
        claims["aux"] = str(aux_id)
    token = sign_token(config.signing_key, claims, int(time.time()) + seconds)
    return config.public(domain.FILE_PATH + token)


def _image_listing(
    config: IngestConfig, image: repo.HautaiImage, aux: list[repo.AuxImage], seconds: int | None
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
        "created_at": iso_millis(image.created_at),
        "signed_url": _signed_file_url(config, image.id, None, seconds) if signed else None,
        "image_batch_id": str(image.batch_id),
        "meta": image.meta,
        "aux_images": [
            {
                "id": str(item.id),
                "aux_image_type": item.aux_image_type,
                "creation_time": iso_millis(item.created_at),
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


def _image_object(config: IngestConfig, image: repo.HautaiImage, upload_url: str) -> dict:
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
        "creation_time": iso_millis(image.created_at),
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


async def image_types(request: web.Request) -> web.Response:
    """``GET /api/v1/dicts/image_types/`` → the image types with their sides and lights."""
    require_account(request)
    window = page_window(request.query, domain.PAGE_SIZE, domain.MAX_PAGE_SIZE)
    types = list(domain.IMAGE_TYPES.values())
    shown = types[window.offset : window.offset + window.limit]
    return _page(request, window, len(types), [_image_type_json(t) for t in shown])


async def dataset_create(request: web.Request) -> web.Response:
    """``POST …/datasets/ {name, image_type_id?}`` → 201 with the dataset (type 1 by default)."""
    account_id = _company(request)
    values = domain.parse_dataset(await _json_body(request), partial=False)
    dataset = await datasets.add_dataset(request.app[POOL], account_id, values)
    return web.json_response(_dataset_json(dataset), status=201)


async def dataset_list(request: web.Request) -> web.Response:
    """``GET …/datasets/`` (ordering: name, creation_time, id; default -creation_time)."""
    account_id = _company(request)
    query, window = _list_query(request, domain.DATASET_ORDERING)
    async with request.app[POOL].acquire() as conn:
        found, count = await repo.datasets_of(conn, account_id, query)
    return _page(request, window, count, [_dataset_json(d) for d in found])


async def dataset_get(request: web.Request) -> web.Response:
    """``GET …/datasets/{dataset_id}/``."""
    account_id = _company(request)
    dataset_id = _path_id(request, "dataset_id", "dataset")
    return web.json_response(
        _dataset_json(await datasets.dataset(request.app[POOL], account_id, dataset_id))
    )


async def dataset_update(request: web.Request) -> web.Response:
    """``PATCH …/datasets/{dataset_id}/`` (the fields sent) or ``PUT`` (``name`` required)."""
    account_id = _company(request)
    dataset_id = _path_id(request, "dataset_id", "dataset")
    changes = domain.parse_dataset(await _json_body(request), partial=request.method == "PATCH")
    dataset = await datasets.update_dataset(request.app[POOL], account_id, dataset_id, changes)
    return web.json_response(_dataset_json(dataset))


async def dataset_delete(request: web.Request) -> web.Response:
    """``DELETE …/datasets/{dataset_id}/`` → 204; its subjects and their images go too."""
    account_id = _company(request)
    dataset_id = _path_id(request, "dataset_id", "dataset")
    await datasets.delete_dataset(request.app[POOL], request.app[STORE], account_id, dataset_id)
    return web.Response(status=204)


async def subject_create(request: web.Request) -> web.Response:
    """``POST …/datasets/{dataset_id}/subjects/ {name, birth_date?, biological_sex?, meta?}``
    → 201 with the subject."""
    account_id = _company(request)
    dataset_id = _path_id(request, "dataset_id", "dataset")
    values = domain.parse_subject(await _json_body(request), partial=False)
    subject = await subjects.add_subject(request.app[POOL], account_id, dataset_id, values)
    return web.json_response(_subject_json(subject), status=201)


async def subject_list(request: web.Request) -> web.Response:
    """``GET …/datasets/{dataset_id}/subjects/`` (ordering: name, creation_time, birth_date,
    id; default -creation_time)."""
    account_id = _company(request)
    dataset = await datasets.dataset(
        request.app[POOL], account_id, _path_id(request, "dataset_id", "dataset")
    )
    query, window = _list_query(request, domain.SUBJECT_ORDERING)
    async with request.app[POOL].acquire() as conn:
        found, count = await repo.subjects_of(conn, account_id, dataset.id, query)
    return _page(request, window, count, [_subject_json(s) for s in found])


async def subject_get(request: web.Request) -> web.Response:
    """``GET …/datasets/{dataset_id}/subjects/{subject_id}/``."""
    account_id = _company(request)
    subject = await subjects.subject(
        request.app[POOL],
        account_id,
        _path_id(request, "subject_id", "subject"),
        _dataset_in_path(request),
    )
    return web.json_response(_subject_json(subject))


async def subject_update(request: web.Request) -> web.Response:
    """``PATCH …/subjects/{subject_id}/`` (the fields sent) or ``PUT`` (``name`` required)."""
    account_id = _company(request)
    dataset_id = _path_id(request, "dataset_id", "dataset")
    subject_id = _path_id(request, "subject_id", "subject")
    changes = domain.parse_subject(await _json_body(request), partial=request.method == "PATCH")
    subject = await subjects.update_subject(
        request.app[POOL], account_id, dataset_id, subject_id, changes
    )
    return web.json_response(_subject_json(subject))


async def subject_delete(request: web.Request) -> web.Response:
    """``DELETE …/datasets/{dataset_id}/subjects/{subject_id}/`` → 204; its batches and
    images go too."""
    account_id = _company(request)
    await subjects.delete_subject(
        request.app[POOL],
        request.app[STORE],
        account_id,
        _path_id(request, "dataset_id", "dataset"),
        _path_id(request, "subject_id", "subject"),
    )
    return web.Response(status=204)


async def signed_upload_url(request: web.Request) -> web.Response:
    """``POST …/subjects/{subject_id}/signed_upload_url/`` with the seed's body (every field
    optional, the body too) → 201 with the seed's image object and its ``upload_url``: ``PUT``
    the bytes there with the listed headers before it expires.

    Without ``batch_id`` a batch is made (with ``creation_time`` and ``app_args``, which
    belong to a batch and are ignored with a ``batch_id``); a ``batch_id`` must be this
    subject's (404) and not computed yet (409). ``side_id``/``light_id`` default to front and
    regular; unknown ids → 422.
    """
    account_id = _company(request)
    subject = await subjects.subject(
        request.app[POOL],
        account_id,
        _path_id(request, "subject_id", "subject"),
        _dataset_in_path(request),
    )
    body = await _json_body(request, optional=True)
    config = request.app[CONFIG]
    image, token = await uploads.request_upload(
        request.app[POOL], config, account_id, subject, body
    )
    answer = _image_object(config, image, config.public(domain.UPLOAD_PATH + token))
    return web.json_response(answer, status=201)


async def upload(request: web.Request) -> web.Response:
    """``PUT /api/v1/uploads/{token}`` (the signed upload URL; the signature is the authority)
    with the bytes as ``application/octet-stream`` and ``X-Goog-Content-Length-Range``.

    Tampered or expired → 403; used → 409; the image deleted → 404; its batch computed → 409;
    another content type → 415, a missing or different range header → 400, a body over the
    limit → 413 (while streaming); not an image → 415, a broken image → 422. A refused upload
    keeps nothing and leaves the URL unused.
    """
    config = request.app[CONFIG]
    claims = uploads.upload_grant(config.signing_key, request.match_info["token"])
    await uploads.check_upload_target(request.app[POOL], claims)
    domain.check_upload_request(
        request.headers.get("Content-Type"),
        request.headers.get(domain.LENGTH_RANGE_HEADER),
        request.content_length,
        config.max_upload_bytes,
    )
    data = await read_body(request, config.max_upload_bytes)
    image = await uploads.accept_upload(
        request.app[POOL],
        request.app[STORE],
        request.app[FAULTS],
        Limits.of(config),
        claims,
        data,
    )
    return web.json_response(
        {"id": str(image.id), "status": image.status, "image_batch_id": str(image.batch_id)}
    )


async def compute(request: web.Request) -> web.Response:
    """``POST …/batches/{batch_id}/compute/ {app_args?}`` → ``{"ok": true}``; the analysis runs
    on the processing workers and fills the images' fields in. Twice, or on a batch with no
    uploaded image → 409 ``conflict``."""
    account_id = _company(request)
    batch_id = _path_id(request, "batch_id", "batch")
    app_args = domain.parse_compute(await _json_body(request, optional=True))
    await analyses.compute(request.app[POOL], account_id, batch_id, app_args)
    return web.json_response({"ok": True})


async def subject_images(request: web.Request) -> web.Response:
    """``GET …/subjects/{subject_id}/images/`` (ordering: created_at, creation_time, name,
    quality_score, id; default -created_at; ``signed_url_expiration`` seconds, default 60):
    each uploaded image and aux image with a signed URL."""
    account_id = _company(request)
    subject = await subjects.subject(
        request.app[POOL],
        account_id,
        _path_id(request, "subject_id", "subject"),
        _dataset_in_path(request),
    )
    seconds = domain.signed_url_seconds(request.query.get("signed_url_expiration"))
    query, window = _list_query(request, domain.IMAGE_ORDERING)
    async with request.app[POOL].acquire() as conn:
        found, count = await repo.images_of_subject(conn, account_id, subject.id, query)
        aux = await repo.aux_images_of(conn, [image.id for image in found])
    config = request.app[CONFIG]
    results = [_image_listing(config, image, aux[image.id], seconds) for image in found]
    return _page(request, window, count, results)


async def image_get(request: web.Request) -> web.Response:
    """``GET …/images/{image_id}/?generate_signed_url=true&signed_url_expiration=60`` → the
    image (signed URLs of it and its aux images only with ``generate_signed_url``)."""
    account_id = _company(request)
    image_id = _path_id(request, "image_id", "image")
    generate = domain.query_flag(request.query.get("generate_signed_url"), "generate_signed_url")
    seconds = domain.signed_url_seconds(request.query.get("signed_url_expiration"))
    async with request.app[POOL].acquire() as conn:
        image = await repo.image(conn, account_id, image_id)
        if image is None:
            raise errors.NotFound("No such image")
        aux = (await repo.aux_images_of(conn, [image.id]))[image.id]
    return web.json_response(
        _image_listing(request.app[CONFIG], image, aux, seconds if generate else None)
    )


async def image_delete(request: web.Request) -> web.Response:
    """``DELETE …/images/{image_id}/`` → 204: the image and its aux images go, and their bytes
    when nothing else references the original."""
    account_id = _company(request)
    image_id = _path_id(request, "image_id", "image")
    if not await images.delete_image(request.app[POOL], request.app[STORE], account_id, image_id):
        raise errors.NotFound("No such image")
    return web.Response(status=204)


async def serve_file(request: web.Request) -> web.StreamResponse:
    """``GET|HEAD /api/v1/files/{token}``: a signed URL's original or aux image, until it
    expires (403 then, or when tampered with; 404 once the image is deleted)."""
    config = request.app[CONFIG]
    now = time.time()
    claims = verify_token(
        config.signing_key, request.match_info["token"], now, domain.HAUTAI_FILE, "signed URL"
    )
    image_id = parse_uuid(str(claims.get("image")))
    aux_id = parse_uuid(str(claims["aux"])) if "aux" in claims else None
    if image_id is None or ("aux" in claims and aux_id is None):
        raise errors.Forbidden("The signed URL is not valid")
    cache_control = f"private, max-age={max(1, int(claims['exp'] - now))}"
    async with request.app[POOL].acquire() as conn:
        if aux_id is None:
            blob = await repo.original(conn, image_id)
            aux = None
        else:
            blob, aux = None, await repo.aux_image(conn, image_id, aux_id)
    if blob is not None:
        key, tag, size, media_type = (
            blob_key(blob.sha256),
            blob.sha256,
            blob.size,
            blob.media_type,
        )
    elif aux is not None:
        tag = hashlib.sha256(aux.key.encode()).hexdigest()
        key, size, media_type = aux.key, aux.bytes, aux.media_type
    else:
        raise errors.NotFound("The image was deleted")
    return await serve_blob(request, request.app[STORE], key, tag, size, media_type, cache_control)
