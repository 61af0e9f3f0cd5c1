"""The Haut.ai-style subjects API as use cases: datasets and subjects (deleted with everything
under them), signed uploads into batches, compute, the answers of processing's quality
analysis, and the deletion of images through the blob protocol.

An image's life: ``signed_upload_url`` creates it *pending* with a signed, single-use,
expiring upload URL; its ``PUT`` stores the original (content-addressed, through
:func:`blobs.store_content`, so the image is a reference of its blob) and makes it *uploaded*;
``compute`` closes the batch and asks processing for an analysis of each uploaded image
(``analysis.requested`` through the outbox, in the same transaction); processing's
``analysis.completed`` fills the quality fields and aux images in (*done*), or
``analysis.failed`` says why it could not run (*failed*). A pending image whose URL expired is
removed by the sweeper (:func:`repo.forget_abandoned_uploads`).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg

from services.ingest import blobs, domain, events, repo
from services.ingest.config import IngestConfig
from shared import errors
from shared.analysis import ANALYSIS_COMPLETED, PROBLEM_CODES
from shared.events import Envelope, record_event
from shared.faults import NO_FAULTS, Faults
from shared.logging import get_logger
from shared.storage import BlobStore

log = get_logger("darkroom.ingest.subjects")

#: What a Haut.ai upload may be: the four web image formats (a GIF is accepted and judged by
#: the analysis: ``unsupported_format``).
_IMAGE_KINDS = frozenset({domain.PNG, domain.JPEG, domain.GIF, domain.WEBP})
#: How often a cascading delete retries when images or subjects keep arriving meanwhile.
_CASCADE_ATTEMPTS = 5
_USED = "This upload URL was used already; ask for a new one"


class Subjects:
    """The use cases of the subjects API over the pool and the blob store."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        store: BlobStore,
        config: IngestConfig,
        faults: Faults = NO_FAULTS,
    ) -> None:
        self.pool = pool
        self.store = store
        self.config = config
        self.faults = faults
        self._limits = domain.Limits.of(config)

    # --- datasets and subjects ----------------------------------------------------------------

    async def dataset(self, account_id: uuid.UUID, dataset_id: uuid.UUID) -> repo.Dataset:
        """The company's dataset; 404 otherwise."""
        async with self.pool.acquire() as conn:
            found = await repo.dataset(conn, account_id, dataset_id)
        if found is None:
            raise errors.NotFound("No such dataset")
        return found

    async def subject(
        self, account_id: uuid.UUID, subject_id: uuid.UUID, dataset_id: uuid.UUID | None
    ) -> repo.Subject:
        """The company's subject (in ``dataset_id`` when given); 404 otherwise."""
        async with self.pool.acquire() as conn:
            found = await repo.subject(conn, account_id, subject_id, dataset_id)
        if found is None:
            raise errors.NotFound("No such subject")
        return found

    async def add_subject(
        self, account_id: uuid.UUID, dataset_id: uuid.UUID, values: dict
    ) -> repo.Subject:
        """Create a subject; the dataset is held (``FOR KEY SHARE``) so a concurrent delete of
        the dataset either waits for it or makes this a 404."""
        async with self.pool.acquire() as conn, conn.transaction():
            if await repo.dataset(conn, account_id, dataset_id, "FOR KEY SHARE") is None:
                raise errors.NotFound("No such dataset")
            return await repo.add_subject(conn, account_id, dataset_id, values)

    async def delete_dataset(self, account_id: uuid.UUID, dataset_id: uuid.UUID) -> None:
        """Delete a dataset with its subjects and their images (each image through the blob
        protocol, so bytes nothing else references go); 404 when there is no such dataset."""
        for _ in range(_CASCADE_ATTEMPTS):
            async with self.pool.acquire() as conn:
                subject_ids = await repo.subject_ids_of(conn, dataset_id)
            for subject_id in subject_ids:
                await self._purge_subject(account_id, subject_id)
            async with self.pool.acquire() as conn, conn.transaction():
                deleted = await repo.delete_dataset_if_empty(conn, account_id, dataset_id)
            if deleted is None:
                raise errors.NotFound("No such dataset")
            if deleted:
                return
        raise errors.Conflict("Subjects keep being added to this dataset; try again")

    async def delete_subject(
        self, account_id: uuid.UUID, dataset_id: uuid.UUID, subject_id: uuid.UUID
    ) -> None:
        """Delete a subject with its batches and images; 404 when there is no such subject."""
        await self.subject(account_id, subject_id, dataset_id)
        if not await self._purge_subject(account_id, subject_id):
            raise errors.NotFound("No such subject")

    async def _purge_subject(self, account_id: uuid.UUID, subject_id: uuid.UUID) -> bool:
        for _ in range(_CASCADE_ATTEMPTS):
            async with self.pool.acquire() as conn:
                image_ids = await repo.image_ids_of_subject(conn, subject_id)
            for image_id in image_ids:
                await self.delete_image(account_id, image_id)
            async with self.pool.acquire() as conn, conn.transaction():
                deleted = await repo.delete_subject_if_empty(conn, account_id, subject_id)
            if deleted is not None:
                if deleted:
                    return True
                continue
            return False
        raise errors.Conflict("Images keep being added to this subject; try again")

    # --- uploads ------------------------------------------------------------------------------

    async def request_upload(
        self, account_id: uuid.UUID, subject: repo.Subject, body: dict
    ) -> tuple[repo.HautImage, str]:
        """Create a pending image in the given batch (or a new one) and its signed upload
        token. A ``batch_id`` must name this subject's batch, not yet computed (404 / 409)."""
        async with self.pool.acquire() as conn, conn.transaction():
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
            expires_at = int(datetime.now(UTC).timestamp()) + self.config.upload_url_seconds
            image = await repo.add_haut_image(
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
        token = domain.sign_token(
            self.config.signing_key,
            {"use": domain.HAUT_UPLOAD, "image": str(image.id), "account": str(account_id)},
            expires_at,
        )
        return image, token

    def upload_grant(self, token: str) -> dict:
        """The claims of a signed upload URL; 403 when tampered with or expired."""
        claims = domain.verify_token(
            self.config.signing_key,
            token,
            datetime.now(UTC).timestamp(),
            domain.HAUT_UPLOAD,
            "upload URL",
        )
        if domain.parse_uuid(str(claims.get("image"))) is None:
            raise errors.Forbidden("The upload URL is not valid")
        return claims

    async def check_upload_target(self, claims: dict) -> None:
        """Before the body is read: the URL is unused (409), its image still exists (404) and
        is pending (409), its batch not computed (409)."""
        async with self.pool.acquire() as conn:
            await self._check_target(conn, claims, lock=False)

    async def accept_upload(self, claims: dict, data: bytes) -> repo.HautImage:
        """Validate ``data`` (an image: 415 for anything else, 422 for a broken one), store it
        and attach it to the pending image, spending the URL in the same transaction. On any
        refusal nothing stays: the bytes are released unless something else holds them."""
        content = await asyncio.to_thread(domain.examine, data, self._limits, accept=_IMAGE_KINDS)
        image_id = uuid.UUID(str(claims["image"]))
        expires_at = datetime.fromtimestamp(int(claims["exp"]), UTC)

        async def register(conn: asyncpg.Connection) -> bool:
            if not await repo.use_upload_url(conn, uuid.UUID(str(claims["jti"])), expires_at):
                raise errors.Conflict(_USED)
            await self._check_target(conn, claims, lock=True)
            if not await repo.attach_upload(conn, image_id, content):
                raise errors.Conflict("This image was uploaded already")
            return True

        event = {
            **domain.stored_event_data(content, str(claims.get("account")), "hautai"),
            "image_id": str(image_id),
        }
        try:
            await blobs.store_content(
                self.pool, self.store, content, data, register, event, self.faults
            )
        except Exception:
            await blobs.release_bytes(self.pool, self.store, content.sha256)
            raise
        async with self.pool.acquire() as conn:
            image = await repo.haut_image(conn, None, image_id)
        if image is None:
            raise errors.NotFound("The image was deleted meanwhile")
        return image

    async def _check_target(self, conn: asyncpg.Connection, claims: dict, *, lock: bool) -> None:
        if not lock and await repo.upload_url_used(conn, uuid.UUID(str(claims["jti"]))):
            raise errors.Conflict(_USED)
        image = await repo.haut_image(
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

    # --- compute and analysis -----------------------------------------------------------------

    async def compute(
        self, account_id: uuid.UUID, batch_id: uuid.UUID, app_args: dict | None
    ) -> None:
        """Send a batch's uploaded images to the analysis, once: ``analysis.requested`` per
        image commits with the batch's closing. 404 for another company's batch; 409 when the
        batch was computed already or has no uploaded image."""
        async with self.pool.acquire() as conn, conn.transaction():
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
                            "key": domain.blob_key(image.sha256 or ""),
                            "media_type": image.media_type,
                        },
                        "app_args": args,
                    },
                )

    # --- images -------------------------------------------------------------------------------

    async def delete_image(self, account_id: uuid.UUID, image_id: uuid.UUID) -> bool:
        """Delete an image and its aux images; the original's blob (and with it everything
        under its derivatives prefix, the aux images' bytes) goes when nothing else references
        it. False when the company has no such image."""
        for _ in range(_CASCADE_ATTEMPTS):
            async with self.pool.acquire() as conn:
                image = await repo.haut_image(conn, account_id, image_id)
            if image is None:
                return False
            sha256 = image.sha256

            async def unregister(conn: asyncpg.Connection, sha256: str | None = sha256) -> bool:
                return await repo.remove_haut_image(conn, image_id, sha256)

            if sha256 is None:
                # Pending: no blob to release; an upload that lands first makes this retry.
                async with self.pool.acquire() as conn:
                    if await unregister(conn):
                        return True
                continue
            if await blobs.remove_record(self.pool, self.store, sha256, unregister):
                return True
        raise errors.Conflict("The image keeps changing; try again")


async def analysis_answered(conn: asyncpg.Connection, envelope: Envelope) -> None:
    """The handler of ``analysis.completed`` and ``analysis.failed`` (run by the consumer in
    its transaction): fill the image's quality fields and aux images in. Answers about images
    that were deleted (or hold other bytes now) are ignored, and so is a malformed answer
    (logged): retrying it could not make it better."""
    data = envelope.data
    image_id = domain.parse_uuid(str(data.get("image_id")))
    sha256 = data.get("original_sha256")
    if image_id is None or not isinstance(sha256, str) or not domain.is_sha256(sha256):
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
