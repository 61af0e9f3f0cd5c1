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
) -> bool:
    """Record a derivative just stored under ``key``; False when it was recorded already (by
    another replica, or before its bytes went missing and were made again)."""
    inserted = await conn.fetchval(
        "INSERT INTO derivatives (key, original_sha256, canonical, media_type, bytes,"
        " width, height, worker, duration_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT (key) DO NOTHING RETURNING true",
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
    return bool(inserted)


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


#: The figures of a pixel diff, as :func:`pixel_diffs` answers and :func:`record_pixel_diffs`
#: takes them.
PIXEL_DIFF_FIGURES = (
    "changed_pixels",
    "total_pixels",
    "width",
    "height",
    "bbox",
    "anti_aliased_pixels",
    "size_mismatch",
    "diff_key",
    "diff_bytes",
)


async def pixel_diffs(
    conn: asyncpg.Connection,
    pairs: list[tuple[str, str]],
    threshold: float,
    include_anti_aliasing: bool,
) -> dict[tuple[str, str], dict]:
    """The recorded diffs of ``pairs`` (``(before_sha256, after_sha256)``) under the options,
    by pair: ``{changed_pixels, total_pixels, width, height, bbox, anti_aliased_pixels,
    size_mismatch, diff_key, diff_bytes}``. Pairs never diffed are absent."""
    if not pairs:
        return {}
    rows = await conn.fetch(
        f"SELECT before_sha256, after_sha256, {', '.join(PIXEL_DIFF_FIGURES)} FROM pixel_diffs"
        " WHERE threshold = $3 AND include_anti_aliasing = $4"
        " AND (before_sha256, after_sha256) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
        [before for before, _ in pairs],
        [after for _, after in pairs],
        threshold,
        include_anti_aliasing,
    )
    return {
        (row["before_sha256"], row["after_sha256"]): {
            name: row[name] for name in PIXEL_DIFF_FIGURES
        }
        for row in rows
    }


async def record_pixel_diffs(
    conn: asyncpg.Connection,
    threshold: float,
    include_anti_aliasing: bool,
    diffs: list[dict],
) -> None:
    """Record (or re-record) pixel diffs whose images were just stored; each of ``diffs`` has
    ``before_sha256``, ``after_sha256``, the :data:`PIXEL_DIFF_FIGURES`, ``worker`` and
    ``duration_ms``."""
    columns = ("before_sha256", "after_sha256", *PIXEL_DIFF_FIGURES, "worker", "duration_ms")
    placeholders = ", ".join(f"${n}" for n in range(3, len(columns) + 3))
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in columns[2:])
    await conn.executemany(
        f"INSERT INTO pixel_diffs (threshold, include_anti_aliasing, {', '.join(columns)})"
        f" VALUES ($1, $2, {placeholders})"
        " ON CONFLICT (before_sha256, after_sha256, threshold, include_anti_aliasing)"
        f" DO UPDATE SET {updates}, created_at = now()",
        [(threshold, include_anti_aliasing, *(diff[name] for name in columns)) for diff in diffs],
    )
