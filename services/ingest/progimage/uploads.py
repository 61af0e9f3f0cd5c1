"""Progimage's ``POST /user/images`` as one all-or-nothing step.

1. Every item's source is obtained (base64 decoded, remote URL fetched through the SSRF guard,
   or an existing image of the same user looked up) and validated like any upload.
2. New originals are written to the blob store (content-addressed, so a repeat costs nothing).
3. Each item's three derivatives (file, thumb, mini) are asked of processing at once, by
   direct calls (:mod:`services.ingest.derivations`), so a bulk request spreads over every
   replica; ingest waits for all of them.
4. Only when every derivative is stored does one transaction record the blob rows and the
   images. A bad item fails the whole request with a 422 naming its index; the originals that
   request wrote and their derivatives are released, so nothing of it is kept.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import asyncpg
from cachetools import LRUCache

from services.ingest import blobs, events
from services.ingest import repo as shared_repo
from services.ingest.config import IngestConfig
from services.ingest.content_checks import WEB_IMAGES, Content, Limits, examine_off_loop
from services.ingest.derivations import (
    DerivativeRequest,
    Derivatives,
    Outcome,
)
from services.ingest.domain import Blob, stored_event_data
from services.ingest.progimage import domain, repo
from shared import errors
from shared.events import record_event
from shared.logging import get_logger
from shared.remote import RemoteFetcher
from shared.storage import BlobStore
from shared.store_keys import blob_key

log = get_logger("darkroom.ingest.progimage")


@dataclass(frozen=True)
class Original:
    """An item's original image: its content description and, when new, its bytes."""

    sha256: str
    media_type: str
    content: Content | None = None
    data: bytes | None = None


@dataclass(frozen=True)
class Plan:
    """An item ready to record: its original and the derivative behind each variant."""

    item: domain.ProcessItem
    original: Original
    variants: domain.Variants


@dataclass(frozen=True)
class Derivative:
    """A stored derivative: where it is, how many bytes, what type, and its bytes when they
    were made for this request (None: read them from the store)."""

    key: str
    size: int
    media_type: str
    data: bytes | None = None


class ProgimageUploads:
    """Runs ``POST /user/images`` requests against the pool, the store and processing."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        store: BlobStore,
        derivatives: Derivatives,
        fetcher: RemoteFetcher,
        config: IngestConfig,
    ) -> None:
        self.pool = pool
        self.store = store
        self.derivatives = derivatives
        self.fetcher = fetcher
        self.config = config
        self._limits = Limits.of(config)
        self._originals: LRUCache[tuple[uuid.UUID, uuid.UUID], Blob] = LRUCache(
            maxsize=domain.ORIGINALS_CACHED
        )

    async def process(
        self, account_id: uuid.UUID, user_id: uuid.UUID, request: domain.ProcessRequest
    ) -> list[repo.ProgimageImage]:
        """Create one image per item, in order, or none (raising the first item's error)."""
        fetching = asyncio.Semaphore(self.config.remote_fetch_concurrency)
        originals = await asyncio.gather(
            *(self._original(user_id, item, request.bulk, fetching) for item in request.items),
            return_exceptions=True,
        )
        for outcome in originals:
            if isinstance(outcome, BaseException):
                raise outcome
        plans = [
            Plan(item, original, domain.variants_of(item.transform, original.media_type))
            for item, original in zip(request.items, originals, strict=True)
        ]
        written = await self._write_originals(plans)
        try:
            sizes = await self._derive(plans, request.bulk)
            return await self._record(account_id, user_id, plans, sizes)
        except BaseException:
            await self._release(written, plans)
            raise

    async def derived(
        self, user_id: uuid.UUID, image_id: uuid.UUID, pairs: list[tuple[str, str]]
    ) -> Derivative:
        """One of ``user_id``'s images through the transform ``pairs`` name, computed now
        unless it was before (by anyone: derivatives are keyed by content and transform).

        Raises :class:`errors.NotFound` for an image that is not the user's,
        :class:`errors.InvalidRequest` for bad options or an original that cannot be
        processed and :class:`errors.Unavailable` when processing does not answer in time.
        """
        original = self._originals.get((user_id, image_id))
        if original is None:
            async with self.pool.acquire() as conn:
                original = await repo.progimage_original(conn, user_id, image_id)
            if original is None:
                raise errors.NotFound("No such image")
            self._originals[(user_id, image_id)] = original
        transform = domain.parse_derived_query(pairs, original.media_type)
        wanted = DerivativeRequest(original.sha256, original.media_type, transform)
        outcome = (await self._obtain([wanted]))[wanted.key]
        if not outcome.ok:
            raise errors.InvalidRequest(outcome.message or "The image cannot be processed")
        return Derivative(wanted.key, outcome.size, transform.media_type, outcome.data)

    def forget(self, key: str) -> None:
        """Stop taking the derivative ``key`` as stored (its bytes were found missing)."""
        self.derivatives.forget(key)

    async def _original(
        self,
        user_id: uuid.UUID,
        item: domain.ProcessItem,
        bulk: bool,
        fetching: asyncio.Semaphore,
    ) -> Original:
        label = domain.item_label(item.index, bulk)
        if item.source == "image_id":
            async with self.pool.acquire() as conn:
                blob = await repo.progimage_original(conn, user_id, uuid.UUID(item.value))
            if blob is None:
                raise domain.ItemRefused(f"{label}.image_id: no such image")
            return Original(blob.sha256, blob.media_type)
        try:
            if item.source == "file":
                data = domain.decode_base64_image(item.value, self.config.max_upload_bytes)
            else:
                async with fetching:
                    data = (await self.fetcher.fetch(item.value)).data
            content = await examine_off_loop(data, self._limits, WEB_IMAGES)
        except errors.DarkroomError as exc:
            if exc.status >= 500:
                raise
            raise domain.ItemRefused(f"{label}: {exc.message}") from None
        return Original(content.sha256, content.media_type, content, data)

    async def _write_originals(self, plans: list[Plan]) -> list[str]:
        """Put the new originals' bytes in the store; the hashes written (to release on
        failure: they have no blob row until the final transaction)."""
        written: dict[str, None] = {}
        for plan in plans:
            original = plan.original
            if original.data is None or original.sha256 in written:
                continue
            key = blob_key(original.sha256)
            if not await self.store.exists(key):
                await self.store.put(key, original.data)
                written[original.sha256] = None
        return list(written)

    async def _derive(self, plans: list[Plan], bulk: bool) -> dict[str, int]:
        """Have every variant computed (or found); the stored size of each derivative key."""
        requests = [
            DerivativeRequest(plan.original.sha256, plan.original.media_type, transform)
            for plan in plans
            for _name, transform in plan.variants.items()
        ]
        outcomes = await self._obtain(requests)
        for plan in plans:
            for _name, transform in plan.variants.items():
                outcome = outcomes[DerivativeRequest(plan.original.sha256, "", transform).key]
                if not outcome.ok:
                    label = domain.item_label(plan.item.index, bulk)
                    raise domain.ItemRefused(f"{label}: {outcome.message}")
        return {key: outcome.size for key, outcome in outcomes.items()}

    async def _obtain(self, requests: list[DerivativeRequest]) -> dict[str, Outcome]:
        """Every derivative stored (or refused) within the processing timeout; 503 past it."""
        return await self.derivatives.obtain_for_caller(
            requests, self.config.processing_timeout_seconds
        )

    async def _record(
        self,
        account_id: uuid.UUID,
        user_id: uuid.UUID,
        plans: list[Plan],
        sizes: dict[str, int],
    ) -> list[repo.ProgimageImage]:
        images = []
        async with self.pool.acquire() as conn, conn.transaction():
            for order, plan in enumerate(plans):
                original = plan.original
                await shared_repo.lock_blob(conn, original.sha256)
                if original.content is not None:
                    await shared_repo.add_blob(conn, original.content)
                    key = blob_key(original.sha256)
                    # Another request may have released these bytes since we wrote them.
                    if not await self.store.exists(key):
                        await self.store.put(key, original.data or b"")
                elif not await shared_repo.blob_row_exists(conn, original.sha256):
                    raise domain.ItemRefused("process: the image was deleted meanwhile")
                variants = {}
                for name, transform in plan.variants.items():
                    key = DerivativeRequest(original.sha256, "", transform).key
                    variants[name] = {
                        "key": key,
                        "bytes": sizes[key],
                        "media_type": transform.media_type,
                    }
                image = await repo.add_progimage_image(
                    conn,
                    image_id=uuid.uuid4(),
                    account_id=account_id,
                    user_id=user_id,
                    sha256=original.sha256,
                    options=plan.item.transform.as_dict(),
                    variants=variants,
                    extension=plan.variants.file.extension,
                    order=order,
                )
                await record_event(
                    conn, events.IMAGE_STORED, _stored_event(plan, account_id, image)
                )
                images.append(image)
        return images

    async def _release(self, written: list[str], plans: list[Plan]) -> None:
        for sha256 in written:
            try:
                await blobs.release_bytes(self.pool, self.store, sha256)
            except Exception:
                # The orphan sweeper removes what this could not.
                log.warning("progimage.release_failed", hash=sha256, exc_info=True)
        # Releasing deletes the originals' derivatives too: a retry that still took them as
        # stored would record variants whose bytes are gone (404 for good).
        for plan in plans:
            if plan.original.sha256 in written:
                for _name, transform in plan.variants.items():
                    self.forget(DerivativeRequest(plan.original.sha256, "", transform).key)


def _stored_event(plan: Plan, account_id: uuid.UUID, image: repo.ProgimageImage) -> dict:
    original = plan.original
    if original.content is not None:
        data = stored_event_data(original.content, str(account_id), domain.SOURCE)
    else:
        data = {
            "hash": original.sha256,
            "account_id": str(account_id),
            "media_type": original.media_type,
            "source": domain.SOURCE,
        }
    return {**data, "image_id": str(image.id)}
