"""All of rendering's SQL (schema ``rendering``)."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from services.rendering.domain import Package

_PACKAGE_COLUMNS = "md5, sha256, format, bytes, entries, unpacked_bytes, uploaded_at"


def _package(row: asyncpg.Record | None) -> Package | None:
    return None if row is None else Package(**dict(row))


async def package(conn: asyncpg.Connection, account_id: uuid.UUID, md5: str) -> Package | None:
    """The account's package named ``md5``, or None."""
    row = await conn.fetchrow(
        f"SELECT {_PACKAGE_COLUMNS} FROM packages WHERE account_id = $1 AND md5 = $2",
        account_id,
        md5,
    )
    return _package(row)


async def add_package(
    conn: asyncpg.Connection,
    account_id: uuid.UUID,
    md5: str,
    sha256: str,
    format: str,
    size: int,
    entries: int,
    unpacked_bytes: int,
) -> Package:
    """Record a stored package (the same name again keeps the first record) and return it."""
    await conn.execute(
        "INSERT INTO packages (account_id, md5, sha256, format, bytes, entries, unpacked_bytes)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (account_id, md5) DO NOTHING",
        account_id,
        md5,
        sha256,
        format,
        size,
        entries,
        unpacked_bytes,
    )
    found = await package(conn, account_id, md5)
    assert found is not None
    return found


async def spend_upload_url(conn: asyncpg.Connection, jti: uuid.UUID, expires_at: datetime) -> bool:
    """Mark a package upload URL used; False when it already was."""
    inserted = await conn.fetchval(
        "INSERT INTO used_package_urls (jti, expires_at) VALUES ($1, $2)"
        " ON CONFLICT DO NOTHING RETURNING true",
        jti,
        expires_at,
    )
    return bool(inserted)


async def upload_url_spent(conn: asyncpg.Connection, jti: uuid.UUID) -> bool:
    """True when the package upload URL ``jti`` was used already."""
    return bool(await conn.fetchval("SELECT true FROM used_package_urls WHERE jti = $1", jti))


async def lock_package_bytes(conn: asyncpg.Connection, sha256: str) -> None:
    """Serialise, until the transaction ends, everything that writes or sweeps the bytes of
    ``sha256`` (a package being recorded, the orphan sweeper)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"package-bytes:{sha256}")


async def recorded_packages(conn: asyncpg.Connection, sha256s: list[str]) -> set[str]:
    """Which of ``sha256s`` some account's package record points at."""
    rows = await conn.fetch(
        "SELECT DISTINCT sha256 FROM packages WHERE sha256 = ANY($1::text[])", sha256s
    )
    return {row["sha256"] for row in rows}
