"""The hash file host's writes as use cases: storing a file (registered to an account, or
anonymous with a delete token shown once) and removing one record of a file through the blob
protocol (its bytes go when nothing references them any more)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from services.ingest import blobs
from services.ingest.content_checks import Content, Limits, examine_off_loop
from services.ingest.domain import stored_event_data
from services.ingest.hashhost import domain, repo
from services.ingest.upload_streaming import Upload
from shared.faults import Faults
from shared.storage import BlobStore


@dataclass(frozen=True)
class StoredFile:
    """A stored upload: its content, display name and, when anonymous, its delete token."""

    content: Content
    filename: str
    delete_token: str | None


async def store_file(
    pool: asyncpg.Pool,
    store: BlobStore,
    faults: Faults,
    limits: Limits,
    account_id: str | None,
    upload: Upload,
) -> StoredFile:
    """Validate and store an upload of any type; registered to ``account_id`` (once per
    content), or anonymous (``account_id`` None) with a fresh delete token."""
    content = await examine_off_loop(upload.data, limits)
    filename = domain.clean_filename(upload.filename)
    delete_token = None
    if account_id is not None:
        owner = uuid.UUID(account_id)

        async def register(conn: asyncpg.Connection) -> bool:
            return await repo.add_account_file(conn, owner, content, filename)

    else:
        delete_token = domain.new_delete_token()
        digest = domain.token_digest(delete_token)

        async def register(conn: asyncpg.Connection) -> bool:
            await repo.add_anonymous_file(conn, content, filename, digest)
            return True

    event = stored_event_data(content, account_id, domain.SOURCE)
    await blobs.store_content(pool, store, content, upload.data, register, event, faults)
    return StoredFile(content, filename, delete_token)


async def remove_file(
    pool: asyncpg.Pool,
    store: BlobStore,
    sha256: str,
    *,
    account_id: str | None = None,
    delete_token: str | None = None,
) -> bool:
    """Remove the anonymous upload ``delete_token`` was issued for or, without a token,
    ``account_id``'s record of ``sha256``; False when there is no such record."""
    if delete_token:
        digest = domain.token_digest(delete_token)

        async def unregister(conn: asyncpg.Connection) -> bool:
            return await repo.remove_anonymous_file(conn, sha256, digest)

    else:
        owner = uuid.UUID(account_id)

        async def unregister(conn: asyncpg.Connection) -> bool:
            return await repo.remove_account_file(conn, owner, sha256)

    return await blobs.remove_record(pool, store, sha256, unregister)
