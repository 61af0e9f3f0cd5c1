"""The Haut.ai-style API's image deletion as a use case: the image and its aux images go, and
the original's bytes (with everything under its derivatives prefix) when nothing else
references them."""

from __future__ import annotations

import uuid

import asyncpg

from services.ingest import blobs
from services.ingest.hautai import domain, repo
from shared import errors
from shared.storage import BlobStore


async def delete_image(
    pool: asyncpg.Pool, store: BlobStore, account_id: uuid.UUID, image_id: uuid.UUID
) -> bool:
    """Delete an image and its aux images; the original's blob (and with it everything
    under its derivatives prefix, the aux images' bytes) goes when nothing else references
    it. False when the company has no such image."""
    for _ in range(domain.CASCADE_ATTEMPTS):
        async with pool.acquire() as conn:
            image = await repo.image(conn, account_id, image_id)
        if image is None:
            return False
        sha256 = image.sha256

        async def unregister(conn: asyncpg.Connection, sha256: str | None = sha256) -> bool:
            return await repo.remove_image(conn, image_id, sha256)

        if sha256 is None:
            # Pending: no blob to release; an upload that lands first makes this retry.
            async with pool.acquire() as conn:
                if await unregister(conn):
                    return True
            continue
        if await blobs.remove_record(pool, store, sha256, unregister):
            return True
    raise errors.Conflict("The image keeps changing; try again")
