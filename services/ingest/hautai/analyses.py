"""The Haut.ai-style API's quality analysis as use cases: ``compute`` closes a batch and asks
processing for an analysis of each uploaded image (``analysis.requested`` through the outbox,
in the same transaction); processing's ``analysis.completed`` fills the quality fields and aux
images in (*done*), or ``analysis.failed`` says why it could not run (*failed*)."""

from __future__ import annotations

import uuid

import asyncpg

from services.ingest import events
from services.ingest.domain import parse_uuid
from services.ingest.hautai import domain, repo
from shared import errors
from shared.analysis import ANALYSIS_COMPLETED, PROBLEM_CODES
from shared.events import Envelope, record_event
from shared.logging import get_logger
from shared.store_keys import blob_key, is_sha256

log = get_logger("darkroom.ingest.hautai")


async def compute(
    pool: asyncpg.Pool, account_id: uuid.UUID, batch_id: uuid.UUID, app_args: dict | None
) -> None:
    """Send a batch's uploaded images to the analysis, once: ``analysis.requested`` per
    image commits with the batch's closing. 404 for another company's batch; 409 when the
    batch was computed already or has no uploaded image."""
    async with pool.acquire() as conn, conn.transaction():
        batch = await repo.batch(conn, account_id, batch_id, "FOR UPDATE")
        if batch is None:
            raise errors.NotFound("No such batch")
        if batch.computed_at is not None:
            raise errors.Conflict("This batch was sent to compute already")
        args = app_args if app_args is not None else batch.app_args
        images = await repo.mark_computed(conn, batch_id, args)
        if not images:
            raise errors.Conflict(
                "This batch has no uploaded image yet: PUT an image to its upload_url first"
            )
        for image in images:
            await record_event(
                conn,
                events.ANALYSIS_REQUESTED,
                {
                    "image_id": str(image.id),
                    "original": {
                        "sha256": image.sha256,
                        "key": blob_key(image.sha256 or ""),
                        "media_type": image.media_type,
                    },
                    "app_args": args,
                },
            )


async def analysis_answered(conn: asyncpg.Connection, envelope: Envelope) -> None:
    """The handler of ``analysis.completed`` and ``analysis.failed`` (run by the consumer in
    its transaction): fill the image's quality fields and aux images in. Answers about images
    that were deleted (or hold other bytes now) are ignored, and so is a malformed answer
    (logged): retrying it could not make it better."""
    data = envelope.data
    image_id = parse_uuid(str(data.get("image_id")))
    sha256 = data.get("original_sha256")
    if image_id is None or not isinstance(sha256, str) or not is_sha256(sha256):
        log.warning("analysis.malformed", event_id=envelope.id, reason="image id or hash")
        return
    if envelope.type == ANALYSIS_COMPLETED:
        try:
            outcome = domain.read_analysis(data, sha256)
        except ValueError as exc:
            log.warning("analysis.malformed", event_id=envelope.id, reason=str(exc))
            return
        recorded = await repo.record_analysis(conn, image_id, sha256, outcome)
    else:
        code = str(data.get("code") or "")
        recorded = await repo.record_analysis_failure(
            conn,
            image_id,
            sha256,
            str(data.get("message") or "The image could not be analysed"),
            [code] if code in PROBLEM_CODES else [],
        )
    if not recorded:
        log.info("analysis.ignored", image_id=str(image_id), reason="image gone or replaced")
