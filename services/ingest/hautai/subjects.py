"""The Haut.ai-style API's subjects as use cases: create (inside a dataset held against a
concurrent delete), read, update, and delete with their batches and images."""

from __future__ import annotations

import uuid

import asyncpg

from services.ingest.hautai import domain, images, repo
from shared import errors
from shared.storage import BlobStore


async def subject(
    pool: asyncpg.Pool,
    account_id: uuid.UUID,
    subject_id: uuid.UUID,
    dataset_id: uuid.UUID | None,
) -> repo.Subject:
    """The company's subject (in ``dataset_id`` when given); 404 otherwise."""
    async with pool.acquire() as conn:
        found = await repo.subject(conn, account_id, subject_id, dataset_id)
    if found is None:
        raise errors.NotFound("No such subject")
    return found


async def add_subject(
    pool: asyncpg.Pool, account_id: uuid.UUID, dataset_id: uuid.UUID, values: dict
) -> repo.Subject:
    """Create a subject; the dataset is held (``FOR KEY SHARE``) so a concurrent delete of
    the dataset either waits for it or makes this a 404."""
    async with pool.acquire() as conn, conn.transaction():
        if await repo.dataset(conn, account_id, dataset_id, "FOR KEY SHARE") is None:
            raise errors.NotFound("No such dataset")
        return await repo.add_subject(conn, account_id, dataset_id, values)


async def update_subject(
    pool: asyncpg.Pool,
    account_id: uuid.UUID,
    dataset_id: uuid.UUID,
    subject_id: uuid.UUID,
    changes: dict[str, object],
) -> repo.Subject:
    """Apply ``changes`` to the company's subject in ``dataset_id``; 404 when missing."""
    async with pool.acquire() as conn:
        found = await repo.update_subject(conn, account_id, dataset_id, subject_id, changes)
    if found is None:
        raise errors.NotFound("No such subject")
    return found


async def delete_subject(
    pool: asyncpg.Pool,
    store: BlobStore,
    account_id: uuid.UUID,
    dataset_id: uuid.UUID,
    subject_id: uuid.UUID,
) -> None:
    """Delete a subject with its batches and images; 404 when there is no such subject."""
    await subject(pool, account_id, subject_id, dataset_id)
    if not await purge_subject(pool, store, account_id, subject_id):
        raise errors.NotFound("No such subject")


async def purge_subject(
    pool: asyncpg.Pool, store: BlobStore, account_id: uuid.UUID, subject_id: uuid.UUID
) -> bool:
    """Delete a subject's images (through the blob protocol), then its batches and itself;
    False when there is no such subject. Retried while images keep arriving (409 past the
    attempts)."""
    for _ in range(domain.CASCADE_ATTEMPTS):
        async with pool.acquire() as conn:
            image_ids = await repo.image_ids_of_subject(conn, subject_id)
        for image_id in image_ids:
            await images.delete_image(pool, store, account_id, image_id)
        async with pool.acquire() as conn, conn.transaction():
            deleted = await repo.delete_subject_if_empty(conn, account_id, subject_id)
        if deleted is not None:
            if deleted:
                return True
            continue
        return False
    raise errors.Conflict("Images keep being added to this subject; try again")
