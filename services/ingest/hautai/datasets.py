"""The Haut.ai-style API's datasets as use cases: create, read, update, and delete with
everything under them (each image through the blob protocol)."""

from __future__ import annotations

import uuid

import asyncpg

from services.ingest.hautai import domain, repo, subjects
from shared import errors
from shared.storage import BlobStore


async def dataset(pool: asyncpg.Pool, account_id: uuid.UUID, dataset_id: uuid.UUID) -> repo.Dataset:
    """The company's dataset; 404 otherwise."""
    async with pool.acquire() as conn:
        found = await repo.dataset(conn, account_id, dataset_id)
    if found is None:
        raise errors.NotFound("No such dataset")
    return found


async def add_dataset(
    pool: asyncpg.Pool, account_id: uuid.UUID, values: dict[str, object]
) -> repo.Dataset:
    """Create a dataset with ``values`` (:func:`domain.parse_dataset`'s)."""
    async with pool.acquire() as conn:
        return await repo.add_dataset(conn, account_id, **values)


async def update_dataset(
    pool: asyncpg.Pool, account_id: uuid.UUID, dataset_id: uuid.UUID, changes: dict[str, object]
) -> repo.Dataset:
    """Apply ``changes`` to the company's dataset; 404 when there is no such dataset."""
    async with pool.acquire() as conn:
        found = await repo.update_dataset(conn, account_id, dataset_id, changes)
    if found is None:
        raise errors.NotFound("No such dataset")
    return found


async def delete_dataset(
    pool: asyncpg.Pool, store: BlobStore, account_id: uuid.UUID, dataset_id: uuid.UUID
) -> None:
    """Delete a dataset with its subjects and their images (each image through the blob
    protocol, so bytes nothing else references go); 404 when there is no such dataset."""
    for _ in range(domain.CASCADE_ATTEMPTS):
        async with pool.acquire() as conn:
            subject_ids = await repo.subject_ids_of(conn, dataset_id)
        for subject_id in subject_ids:
            await subjects.purge_subject(pool, store, account_id, subject_id)
        async with pool.acquire() as conn, conn.transaction():
            deleted = await repo.delete_dataset_if_empty(conn, account_id, dataset_id)
        if deleted is None:
            raise errors.NotFound("No such dataset")
        if deleted:
            return
    raise errors.Conflict("Subjects keep being added to this dataset; try again")
