"""All of ingest's SQL (the pool's search_path is the ``ingest`` schema)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.ingest.domain import Content


@dataclass(frozen=True)
class Blob:
    """A stored content: what serving needs to know about it."""

    sha256: str
    size: int
    media_type: str


@dataclass(frozen=True)
class FileRecord:
    """A hash-host file as the "my files" page shows it."""

    sha256: str
    filename: str
    media_type: str
    size: int
    created_at: datetime


async def lock_blob(conn: asyncpg.Connection, sha256: str) -> None:
    """Serialise, until the transaction ends, everything that creates or removes this blob."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"ingest.blob.{sha256}")


async def add_blob(conn: asyncpg.Connection, content: Content) -> bool:
    """Insert the blob row unless present; True when it was inserted now."""
    inserted = await conn.fetchval(
        "INSERT INTO blobs (sha256, size, media_type, width, height, frames)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (sha256) DO NOTHING RETURNING true",
        content.sha256,
        content.size,
        content.media_type,
        content.width,
        content.height,
        content.frames,
    )
    return bool(inserted)


async def blob_row_exists(conn: asyncpg.Connection, sha256: str) -> bool:
    """True while a blob row exists for ``sha256``."""
    return bool(await conn.fetchval("SELECT true FROM blobs WHERE sha256 = $1", sha256))


async def known_blobs(conn: asyncpg.Connection, digests: list[str]) -> set[str]:
    """Which of ``digests`` have a blob row."""
    rows = await conn.fetch("SELECT sha256 FROM blobs WHERE sha256 = ANY($1::text[])", digests)
    return {row["sha256"] for row in rows}


async def drop_blob_if_unreferenced(conn: asyncpg.Connection, sha256: str) -> bool:
    """Delete the blob row when no record (file, Happo or Progimage image) references it; True
    when deleted.

    Call it holding :func:`lock_blob`, so no record can be added between check and delete.
    """
    deleted = await conn.fetchval(
        "DELETE FROM blobs b WHERE b.sha256 = $1"
        " AND NOT EXISTS (SELECT 1 FROM files f WHERE f.sha256 = b.sha256)"
        " AND NOT EXISTS (SELECT 1 FROM happo_images h WHERE h.sha256 = b.sha256)"
        " AND NOT EXISTS (SELECT 1 FROM progimage_images p WHERE p.sha256 = b.sha256)"
        " RETURNING true",
        sha256,
    )
    return bool(deleted)


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


async def files_of(conn: asyncpg.Connection, account_id: uuid.UUID) -> list[FileRecord]:
    """An account's hash-host files, newest first."""
    rows = await conn.fetch(
        "SELECT f.sha256, f.filename, f.media_type, b.size, f.created_at"
        " FROM files f JOIN blobs b USING (sha256) WHERE f.account_id = $1"
        " ORDER BY f.created_at DESC LIMIT 1000",
        account_id,
    )
    return [FileRecord(**row) for row in rows]


async def happo_image(
    conn: asyncpg.Connection, account_id: uuid.UUID, happo_hash: str
) -> Blob | None:
    """The blob an account's Happo hash names, if it was uploaded."""
    row = await conn.fetchrow(
        "SELECT b.sha256, b.size, b.media_type FROM happo_images h JOIN blobs b USING (sha256)"
        " WHERE h.account_id = $1 AND h.hash = $2",
        account_id,
        happo_hash,
    )
    return Blob(**row) if row else None


async def add_happo_image(
    conn: asyncpg.Connection, account_id: uuid.UUID, happo_hash: str, sha256: str
) -> bool:
    """Name ``sha256`` by the client's hash in an account; False when the name was taken."""
    inserted = await conn.fetchval(
        "INSERT INTO happo_images (account_id, hash, sha256) VALUES ($1, $2, $3)"
        " ON CONFLICT (account_id, hash) DO NOTHING RETURNING true",
        account_id,
        happo_hash,
        sha256,
    )
    return bool(inserted)


async def upload_url_used(conn: asyncpg.Connection, jti: uuid.UUID) -> bool:
    """True when the signed upload URL ``jti`` was used already."""
    return bool(await conn.fetchval("SELECT true FROM used_upload_urls WHERE jti = $1", jti))


async def use_upload_url(conn: asyncpg.Connection, jti: uuid.UUID, expires_at: datetime) -> bool:
    """Mark the upload URL ``jti`` used; False when it already was."""
    inserted = await conn.fetchval(
        "INSERT INTO used_upload_urls (jti, expires_at) VALUES ($1, $2)"
        " ON CONFLICT (jti) DO NOTHING RETURNING true",
        jti,
        expires_at,
    )
    return bool(inserted)


async def forget_expired_upload_urls(conn: asyncpg.Connection) -> int:
    """Drop used-URL ids whose URLs have expired (they cannot be replayed any more)."""
    status = await conn.execute("DELETE FROM used_upload_urls WHERE expires_at < now()")
    return int(status.rsplit(" ", 1)[-1])


@dataclass(frozen=True)
class ProgimageImage:
    """A Progimage image: its original's hash and the stored derivatives of each variant."""

    id: uuid.UUID
    user_id: uuid.UUID
    sha256: str
    variants: dict
    extension: str
    created_at: datetime
    updated_at: datetime


_PROGIMAGE_COLUMNS = "id, user_id, sha256, variants, extension, created_at, updated_at"


async def progimage_original(
    conn: asyncpg.Connection, user_id: uuid.UUID, image_id: uuid.UUID
) -> Blob | None:
    """The original behind one of ``user_id``'s images (None for anyone else's)."""
    row = await conn.fetchrow(
        "SELECT b.sha256, b.size, b.media_type FROM progimage_images p JOIN blobs b USING (sha256)"
        " WHERE p.id = $1 AND p.user_id = $2",
        image_id,
        user_id,
    )
    return Blob(**row) if row else None


async def add_progimage_image(
    conn: asyncpg.Connection,
    *,
    image_id: uuid.UUID,
    account_id: uuid.UUID,
    user_id: uuid.UUID,
    sha256: str,
    options: dict,
    variants: dict,
    extension: str,
    order: int,
) -> ProgimageImage:
    """Record an image; ``order`` (its index in the request) keeps a bulk's items ordered
    newest-last within the one transaction time."""
    row = await conn.fetchrow(
        "INSERT INTO progimage_images"
        " (id, account_id, user_id, sha256, options, variants, extension, created_at, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7,"
        " now() + make_interval(secs => $8 / 1000.0), now() + make_interval(secs => $8 / 1000.0))"
        f" RETURNING {_PROGIMAGE_COLUMNS}",
        image_id,
        account_id,
        user_id,
        sha256,
        options,
        variants,
        extension,
        order,
    )
    return ProgimageImage(**row)


async def progimage_images_of(
    conn: asyncpg.Connection, user_id: uuid.UUID, offset: int, limit: int
) -> tuple[list[ProgimageImage], int]:
    """A page of ``user_id``'s images, newest first, and how many there are in all."""
    rows = await conn.fetch(
        f"SELECT {_PROGIMAGE_COLUMNS}, count(*) OVER () AS total FROM progimage_images"
        " WHERE user_id = $1 ORDER BY created_at DESC, id DESC OFFSET $2 LIMIT $3",
        user_id,
        offset,
        limit,
    )
    if not rows:
        total = await conn.fetchval(
            "SELECT count(*) FROM progimage_images WHERE user_id = $1", user_id
        )
        return [], int(total)
    total = int(rows[0]["total"])
    return [ProgimageImage(**{k: v for k, v in row.items() if k != "total"}) for row in rows], total


async def progimage_image(conn: asyncpg.Connection, image_id: uuid.UUID) -> ProgimageImage | None:
    """One image by id, for serving its public URLs."""
    row = await conn.fetchrow(
        f"SELECT {_PROGIMAGE_COLUMNS} FROM progimage_images WHERE id = $1", image_id
    )
    return ProgimageImage(**row) if row else None
