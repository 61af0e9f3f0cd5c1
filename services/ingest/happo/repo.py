"""The Happo Image API's SQL: an account's images by the client's hash."""

from __future__ import annotations

import uuid

import asyncpg

from services.ingest.domain import Blob


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


async def has_happo_image(
    db: asyncpg.Pool | asyncpg.Connection, account_id: uuid.UUID, happo_hash: str
) -> bool:
    """True when the account holds an image under its Happo hash: one primary-key lookup (the
    foreign key vouches for the blob, so no join)."""
    found = await db.fetchval(
        "SELECT true FROM happo_images WHERE account_id = $1 AND hash = $2",
        account_id,
        happo_hash,
    )
    return bool(found)


async def happo_images(
    conn: asyncpg.Connection, account_id: uuid.UUID, hashes: list[str]
) -> list[asyncpg.Record]:
    """The account's Happo images among ``hashes``: hash, sha256, media type, width, height."""
    return await conn.fetch(
        "SELECT h.hash, b.sha256, b.media_type, b.width, b.height"
        " FROM happo_images h JOIN blobs b USING (sha256)"
        " WHERE h.account_id = $1 AND h.hash = ANY($2::text[])",
        account_id,
        hashes,
    )


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
