"""All of processing's SQL (the pool's search_path is the ``processing`` schema): what was
computed, so that a repeated request is answered without computing it again."""

from __future__ import annotations

import asyncpg


async def advisory_xact_lock(conn: asyncpg.Connection, name: str) -> None:
    """Hold the advisory lock ``name`` until the transaction on ``conn`` ends (every process
    that takes the same name waits for it)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", name)


async def derivative(conn: asyncpg.Connection, key: str) -> dict | None:
    """``{media_type, bytes, width, height}`` of a recorded derivative, or None."""
    row = await conn.fetchrow(
        "SELECT media_type, bytes, width, height FROM derivatives WHERE key = $1", key
    )
    return dict(row) if row else None


async def record_derivative(
    conn: asyncpg.Connection,
    *,
    key: str,
    original_sha256: str,
    canonical: str,
    described: dict,
    worker: str,
    duration_ms: int,
) -> None:
    """Record (or re-record) a derivative just stored under ``key``."""
    await conn.execute(
        "INSERT INTO derivatives (key, original_sha256, canonical, media_type, bytes,"
        " width, height, worker, duration_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT (key) DO UPDATE SET media_type = EXCLUDED.media_type,"
        " bytes = EXCLUDED.bytes, width = EXCLUDED.width, height = EXCLUDED.height,"
        " worker = EXCLUDED.worker, duration_ms = EXCLUDED.duration_ms, created_at = now()",
        key,
        original_sha256,
        canonical,
        described["media_type"],
        described["bytes"],
        described["width"],
        described["height"],
        worker,
        duration_ms,
    )


async def analysis(conn: asyncpg.Connection, sha256: str, algorithm: str) -> dict | None:
    """``{result, aux}`` of a recorded analysis of ``sha256`` by ``algorithm``, or None."""
    row = await conn.fetchrow(
        "SELECT result, aux FROM analyses WHERE sha256 = $1 AND algorithm = $2",
        sha256,
        algorithm,
    )
    return dict(row) if row else None


async def record_analysis(
    conn: asyncpg.Connection,
    *,
    sha256: str,
    algorithm: str,
    result: dict,
    aux: list[dict],
    worker: str,
    duration_ms: int,
) -> None:
    """Record (or re-record) an analysis whose aux images were just stored."""
    await conn.execute(
        "INSERT INTO analyses (sha256, algorithm, result, aux, worker, duration_ms)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (sha256, algorithm) DO UPDATE SET"
        " result = EXCLUDED.result, aux = EXCLUDED.aux, worker = EXCLUDED.worker,"
        " duration_ms = EXCLUDED.duration_ms, created_at = now()",
        sha256,
        algorithm,
        result,
        aux,
        worker,
        duration_ms,
    )
