"""Progimage's SQL: a user's images, each an original blob and the stored derivatives of its
variants."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.ingest.domain import Blob


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
