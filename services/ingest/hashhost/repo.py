"""The hash file host's SQL: files by account (once per content) or anonymous (with the digest
of a delete token)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.ingest.content_checks import Content
from services.ingest.domain import Blob


@dataclass(frozen=True)
class FileRecord:
    """A hash-host file as the "my files" page shows it."""

    sha256: str
    filename: str
    media_type: str
    size: int
    created_at: datetime


async def add_account_file(
    conn: asyncpg.Connection, account_id: uuid.UUID, content: Content, filename: str
) -> bool:
    """Register ``content`` to an account (once per content); True when it is new there."""
    inserted = await conn.fetchval(
        "INSERT INTO files (id, account_id, sha256, filename, media_type)"
        " VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (account_id, sha256) WHERE account_id IS NOT NULL DO NOTHING"
        " RETURNING true",
        uuid.uuid4(),
        account_id,
        content.sha256,
        filename,
        content.media_type,
    )
    return bool(inserted)


async def add_anonymous_file(
    conn: asyncpg.Connection, content: Content, filename: str, delete_token_hash: bytes
) -> None:
    """Record an anonymous upload with the digest of its delete token."""
    await conn.execute(
        "INSERT INTO files (id, sha256, filename, media_type, delete_token_hash)"
        " VALUES ($1, $2, $3, $4, $5)",
        uuid.uuid4(),
        content.sha256,
        filename,
        content.media_type,
        delete_token_hash,
    )


async def remove_account_file(conn: asyncpg.Connection, account_id: uuid.UUID, sha256: str) -> bool:
    """Delete an account's record of ``sha256``; True when there was one."""
    deleted = await conn.fetchval(
        "DELETE FROM files WHERE account_id = $1 AND sha256 = $2 RETURNING true",
        account_id,
        sha256,
    )
    return bool(deleted)


async def remove_anonymous_file(
    conn: asyncpg.Connection, sha256: str, delete_token_hash: bytes
) -> bool:
    """Delete the anonymous record of ``sha256`` holding this delete token; True when found."""
    deleted = await conn.fetchval(
        "DELETE FROM files WHERE id = (SELECT id FROM files WHERE account_id IS NULL"
        " AND sha256 = $1 AND delete_token_hash = $2 LIMIT 1) RETURNING true",
        sha256,
        delete_token_hash,
    )
    return bool(deleted)


async def served_file(conn: asyncpg.Connection, sha256: str) -> Blob | None:
    """The blob behind ``/f/<sha256>``: only content some hash-host file record holds."""
    row = await conn.fetchrow(
        "SELECT b.sha256, b.size, b.media_type FROM blobs b WHERE b.sha256 = $1"
        " AND EXISTS (SELECT 1 FROM files f WHERE f.sha256 = b.sha256)",
        sha256,
    )
    return Blob(**row) if row else None


async def files_of(
    conn: asyncpg.Connection, account_id: uuid.UUID, offset: int, limit: int
) -> list[FileRecord]:
    """One page of an account's hash-host files, newest first: skip ``offset``, at most
    ``limit`` (ties broken by hash, so pages never repeat or skip a file)."""
    rows = await conn.fetch(
        "SELECT f.sha256, f.filename, f.media_type, b.size, f.created_at"
        " FROM files f JOIN blobs b USING (sha256) WHERE f.account_id = $1"
        " ORDER BY f.created_at DESC, f.sha256 LIMIT $2 OFFSET $3",
        account_id,
        limit,
        offset,
    )
    return [FileRecord(**row) for row in rows]


async def count_files(conn: asyncpg.Connection, account_id: uuid.UUID) -> int:
    """How many hash-host files an account holds."""
    return await conn.fetchval("SELECT count(*) FROM files WHERE account_id = $1", account_id)


async def file_of(
    conn: asyncpg.Connection, account_id: uuid.UUID, sha256: str
) -> FileRecord | None:
    """An account's record of ``sha256`` (for the page that confirms its deletion)."""
    row = await conn.fetchrow(
        "SELECT f.sha256, f.filename, f.media_type, b.size, f.created_at"
        " FROM files f JOIN blobs b USING (sha256) WHERE f.account_id = $1 AND f.sha256 = $2",
        account_id,
        sha256,
    )
    return FileRecord(**row) if row else None
