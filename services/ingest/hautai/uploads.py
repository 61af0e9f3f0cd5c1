"""The Haut.ai-style API's uploads as use cases.

An image's life: ``signed_upload_url`` creates it *pending* with a signed, single-use,
expiring upload URL (:func:`request_upload`); its ``PUT`` stores the original
(content-addressed, through :func:`blobs.store_content`, so the image is a reference of its
blob) and makes it *uploaded* (:func:`accept_upload`). Compute and the analysis follow
(:mod:`.analyses`). A pending image whose URL expired is removed by the sweeper
(:func:`repo.forget_abandoned_uploads`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg

from services.ingest import blobs
from services.ingest import repo as shared_repo
from services.ingest.config import IngestConfig
from services.ingest.content_checks import WEB_IMAGES, Limits, examine_off_loop
from services.ingest.domain import parse_uuid, stored_event_data
from services.ingest.hautai import domain, repo
from shared import errors
from shared.faults import Faults
from shared.signing import sign_token, verify_token
from shared.storage import BlobStore

_USED = "This upload URL was used already; ask for a new one"


async def request_upload(
    pool: asyncpg.Pool,
    config: IngestConfig,
    account_id: uuid.UUID,
    subject: repo.Subject,
    body: dict,
) -> tuple[repo.HautaiImage, str]:
    """Create a pending image in the given batch (or a new one) and its signed upload
    token. A ``batch_id`` must name this subject's batch, not yet computed (404 / 409)."""
    async with pool.acquire() as conn, conn.transaction():
        dataset = await repo.dataset(conn, account_id, subject.dataset_id)
        if dataset is None:
            raise errors.NotFound("No such subject")
        request = domain.parse_upload_request(body, domain.image_type_of(dataset.image_type_id))
        # Held until commit: a concurrent delete of the subject waits for this image, or
        # has already happened and makes this a 404.
        if await repo.subject(conn, account_id, subject.id, lock="FOR KEY SHARE") is None:
            raise errors.NotFound("No such subject")
        if request.batch_id is not None:
            batch = await repo.batch(conn, account_id, request.batch_id, "FOR SHARE")
            if batch is None or batch.subject_id != subject.id:
                raise errors.NotFound("batch_id: no such batch of this subject")
            if batch.computed_at is not None:
                raise errors.Conflict(
                    "batch_id: this batch was sent to compute already; omit batch_id to"
                    " start a new one"
                )
        else:
            batch = await repo.add_batch(
                conn, account_id, subject.id, request.creation_time, request.app_args
            )
        expires_at = int(datetime.now(UTC).timestamp()) + config.upload_url_seconds
        image = await repo.add_image(
            conn,
            account_id=account_id,
            subject_id=subject.id,
            batch_id=batch.id,
            image_type_id=dataset.image_type_id,
            side_id=request.side.id,
            light_id=request.light.id,
            name=request.name,
            meta=request.meta,
            upload_expires_at=datetime.fromtimestamp(expires_at, UTC),
        )
    token = sign_token(
        config.signing_key,
        {"use": domain.HAUTAI_UPLOAD, "image": str(image.id), "account": str(account_id)},
        expires_at,
    )
    return image, token


def upload_grant(signing_key: str, token: str) -> dict:
    """The claims of a signed upload URL; 403 when tampered with or expired."""
    claims = verify_token(
        signing_key, token, datetime.now(UTC).timestamp(), domain.HAUTAI_UPLOAD, "upload URL"
    )
    if parse_uuid(str(claims.get("image"))) is None:
        raise errors.Forbidden("The upload URL is not valid")
    return claims


async def check_upload_target(pool: asyncpg.Pool, claims: dict) -> None:
    """Before the body is read: the URL is unused (409), its image still exists (404) and
    is pending (409), its batch not computed (409)."""
    async with pool.acquire() as conn:
        await _check_target(conn, claims, lock=False)


async def accept_upload(
    pool: asyncpg.Pool,
    store: BlobStore,
    faults: Faults,
    limits: Limits,
    claims: dict,
    data: bytes,
) -> repo.HautaiImage:
    """Validate ``data`` (an image: 415 for anything else, 422 for a broken one), store it
    and attach it to the pending image, spending the URL in the same transaction. On any
    refusal nothing stays: the bytes are released unless something else holds them."""
    content = await examine_off_loop(data, limits, WEB_IMAGES)
    image_id = uuid.UUID(str(claims["image"]))
    expires_at = datetime.fromtimestamp(int(claims["exp"]), UTC)

    async def register(conn: asyncpg.Connection) -> bool:
        if not await shared_repo.use_upload_url(conn, uuid.UUID(str(claims["jti"])), expires_at):
            raise errors.Conflict(_USED)
        await _check_target(conn, claims, lock=True)
        if not await repo.attach_upload(conn, image_id, content):
            raise errors.Conflict("This image was uploaded already")
        return True

    event = {
        **stored_event_data(content, str(claims.get("account")), domain.SOURCE),
        "image_id": str(image_id),
    }
    try:
        await blobs.store_content(pool, store, content, data, register, event, faults)
    except Exception:
        await blobs.release_bytes(pool, store, content.sha256)
        raise
    async with pool.acquire() as conn:
        image = await repo.image(conn, None, image_id)
    if image is None:
        raise errors.NotFound("The image was deleted meanwhile")
    return image


async def _check_target(conn: asyncpg.Connection, claims: dict, *, lock: bool) -> None:
    if not lock and await shared_repo.upload_url_used(conn, uuid.UUID(str(claims["jti"]))):
        raise errors.Conflict(_USED)
    image = await repo.image(
        conn, None, uuid.UUID(str(claims["image"])), "FOR UPDATE" if lock else ""
    )
    if image is None:
        raise errors.NotFound("The image of this upload URL was deleted; ask for a new one")
    if image.status != domain.PENDING:
        raise errors.Conflict("This image was uploaded already")
    # Held until commit: compute either saw this image uploaded or waits for it.
    batch = await repo.batch(conn, None, image.batch_id, "FOR SHARE" if lock else "")
    if batch is None or batch.computed_at is not None:
        raise errors.Conflict(
            "The image's batch was sent to compute already; ask for a new upload URL"
        )
