"""Ingest's shared SQL: the blob rows every dialect's records reference, and the used signed
upload URLs (Happo and Haut.ai). Each dialect's own SQL is in its package's ``repo.py``; the
pool's search_path is the ``ingest`` schema.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from services.ingest.content_checks import Content


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
    """Delete the blob row when no record (file, Happo, Progimage or Haut.ai image) references
    it; True when deleted.

    Call it holding :func:`lock_blob`, so no record can be added between check and delete.
    """
    deleted = await conn.fetchval(
        "DELETE FROM blobs b WHERE b.sha256 = $1"
        " AND NOT EXISTS (SELECT 1 FROM files f WHERE f.sha256 = b.sha256)"
        " AND NOT EXISTS (SELECT 1 FROM happo_images h WHERE h.sha256 = b.sha256)"
        " AND NOT EXISTS (SELECT 1 FROM progimage_images p WHERE p.sha256 = b.sha256)"
        " AND NOT EXISTS (SELECT 1 FROM haut_images i WHERE i.sha256 = b.sha256)"
        " RETURNING true",
        sha256,
    )
    return bool(deleted)


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
