"""The write and delete protocol of content-addressed blobs across the store and the database,
and the sweeper that removes bytes a crash left behind.

Invariants, whatever process dies when:

* a record (file, Happo, Progimage or Haut.ai image) never points at missing bytes: the bytes
  are written first (idempotent, content-addressed), and the transaction that adds the blob
  row and the record checks, under the blob's advisory lock, that they are still there;
* bytes without a blob row do not stay: a deletion removes the bytes after its commit, under
  the same lock, only if the row is still absent; bytes orphaned by a crash between write and
  commit (or commit and delete) are removed by :class:`OrphanSweeper` after a grace period.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp import web

from services.ingest import events, repo
from services.ingest.content_checks import Content
from services.ingest.hautai import repo as hautai_repo
from shared.events import record_event
from shared.faults import NO_FAULTS, Faults
from shared.logging import get_logger
from shared.storage import BlobStore
from shared.store_keys import (
    BLOB_PREFIX,
    DERIVATIVE_PREFIX,
    blob_key,
    derivatives_prefix,
    sha256_of_blob_key,
    sha256_of_derivative_key,
)

log = get_logger("darkroom.ingest.blobs")

#: Adds the record that references the content; True when it is new (not already there).
Register = Callable[[asyncpg.Connection], Awaitable[bool]]
#: Removes one record of the content; True when there was one.
Unregister = Callable[[asyncpg.Connection], Awaitable[bool]]


async def store_content(
    pool: asyncpg.Pool,
    store: BlobStore,
    content: Content,
    data: bytes,
    register: Register,
    event_data: dict[str, Any],
    faults: Faults = NO_FAULTS,
) -> bool:
    """Store ``data`` once and add its record with ``register``; True when the record is new.

    The stored event (``image.stored`` or ``file.stored``) commits with the new record.
    """
    key = blob_key(content.sha256)
    if not await store.exists(key):
        await store.put(key, data)
    faults.reach("blob.after_put")
    async with pool.acquire() as conn, conn.transaction():
        await repo.lock_blob(conn, content.sha256)
        inserted = await repo.add_blob(conn, content)
        # A sweep may have removed the bytes, unreferenced then, between our put and this lock.
        if not await store.exists(key):
            await store.put(key, data)
        created = await register(conn)
        if created:
            event_type = events.IMAGE_STORED if content.image else events.FILE_STORED
            await record_event(conn, event_type, event_data)
        elif inserted:
            # The record existed already (under another content): leave no row nobody uses.
            await repo.drop_blob_if_unreferenced(conn, content.sha256)
    if inserted and not created:
        await release_bytes(pool, store, content.sha256)
    return created


async def remove_record(
    pool: asyncpg.Pool, store: BlobStore, sha256: str, unregister: Unregister
) -> bool:
    """Remove one record of ``sha256`` and, when nothing references it any more, the blob.

    Returns False when ``unregister`` found no record (nothing changed).
    """
    async with pool.acquire() as conn, conn.transaction():
        await repo.lock_blob(conn, sha256)
        if not await unregister(conn):
            return False
        dropped = await repo.drop_blob_if_unreferenced(conn, sha256)
        if dropped:
            await record_event(conn, events.BLOB_DELETED, {"hash": sha256})
    if dropped:
        await release_bytes(pool, store, sha256)
    return True


async def release_bytes(pool: asyncpg.Pool, store: BlobStore, sha256: str) -> bool:
    """Delete the bytes of ``sha256`` and its derivatives if no blob row exists (checked
    under the blob's lock); True when the original's bytes were there."""
    async with pool.acquire() as conn, conn.transaction():
        await repo.lock_blob(conn, sha256)
        if await repo.blob_row_exists(conn, sha256):
            return False
        deleted = await store.delete(blob_key(sha256))
        for key in [key async for key in store.keys(derivatives_prefix(sha256))]:
            await store.delete(key)
        return deleted


class OrphanSweeper:
    """Deletes stored bytes that have had no blob row for ``grace_seconds``, and Haut.ai images
    whose signed upload URL expired ``grace_seconds`` ago without an upload.

    The store does not tell a blob's age, so the sweeper remembers when it first saw each
    orphan (a restart only delays deletion). The decision is re-checked under the blob's lock,
    and uploads re-check their bytes under that lock, so even a grace of 0 loses nothing.
    """

    _BATCH = 500

    def __init__(self, pool: asyncpg.Pool, store: BlobStore, grace_seconds: float) -> None:
        self.pool = pool
        self.store = store
        self.grace_seconds = grace_seconds
        self._first_seen: dict[str, float] = {}

    async def sweep_once(self) -> int:
        """One pass over the store; returns how many orphaned blobs were deleted."""
        now = time.monotonic()
        seen: dict[str, float] = {}
        deleted = 0
        batch: list[str] = []
        # Derivatives count as the original's bytes: whatever is stored under a hash that has
        # no blob row (an original, or a derivative that finished after its request gave up)
        # goes once the grace has passed.
        for prefix, original_of in (
            (BLOB_PREFIX, sha256_of_blob_key),
            (DERIVATIVE_PREFIX, sha256_of_derivative_key),
        ):
            async for key in self.store.keys(prefix):
                sha256 = original_of(key)
                if sha256 is not None and sha256 not in seen:
                    batch.append(sha256)
                if len(batch) >= self._BATCH:
                    deleted += await self._sweep_batch(batch, now, seen)
                    batch = []
        if batch:
            deleted += await self._sweep_batch(batch, now, seen)
        self._first_seen = seen
        async with self.pool.acquire() as conn:
            await repo.forget_expired_upload_urls(conn)
            abandoned = await hautai_repo.forget_abandoned_uploads(conn, self.grace_seconds)
        if abandoned:
            log.info("uploads.abandoned_deleted", count=abandoned)
        if deleted:
            log.info("blobs.orphans_deleted", count=deleted)
        return deleted

    async def _sweep_batch(self, batch: list[str], now: float, seen: dict[str, float]) -> int:
        async with self.pool.acquire() as conn:
            known = await repo.known_blobs(conn, batch)
        deleted = 0
        for sha256 in batch:
            if sha256 in known:
                continue
            first = seen[sha256] = self._first_seen.get(sha256, now)
            if now - first >= self.grace_seconds and await release_bytes(
                self.pool, self.store, sha256
            ):
                deleted += 1
                seen.pop(sha256, None)
        return deleted


#: The app's sweeper (tests run a pass at will).
SWEEPER = web.AppKey("ingest.sweeper", OrphanSweeper)
