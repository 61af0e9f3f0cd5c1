"""SQL of ignored diffs: image pairs an account counts as equal (the flaky snapshots)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import asyncpg

from services.reports.domain import Comparison, Snapshot
from services.reports.matching import ignored_pair


async def ignore_diff(
    conn: asyncpg.Connection, account_id: str, first: Snapshot, second: Snapshot
) -> bool:
    """Ignore the diff between two snapshots' images from now on; False when it already was."""
    low, high = ignored_pair(first.sha256, second.sha256)
    inserted = await conn.fetchval(
        "INSERT INTO ignored_diffs (account_id, first_sha256, second_sha256, component, variant,"
        " target, snapshot1_id, snapshot2_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " ON CONFLICT DO NOTHING RETURNING true",
        uuid.UUID(account_id),
        low,
        high,
        second.component,
        second.variant,
        second.target,
        first.id,
        second.id,
    )
    return bool(inserted)


async def ignored_pairs(
    conn: asyncpg.Connection, account_id: str, pairs: Iterable[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Which of ``pairs`` (in either order) the account ignores."""
    keys = list({ignored_pair(a, b) for a, b in pairs})
    if not keys:
        return set()
    rows = await conn.fetch(
        "SELECT first_sha256, second_sha256 FROM ignored_diffs"
        " JOIN unnest($2::text[], $3::text[]) AS p(f, s)"
        " ON first_sha256 = p.f AND second_sha256 = p.s WHERE account_id = $1",
        uuid.UUID(account_id),
        [f for f, _ in keys],
        [s for _, s in keys],
    )
    return {(row["first_sha256"], row["second_sha256"]) for row in rows}


async def ignores_a_diff_of(conn: asyncpg.Connection, comparison: Comparison) -> bool:
    """True when an ignored diff now covers one of a comparison's diffs (it is out of date).
    A diff ignored on the comparison's own page does not count: its decision already says so,
    and re-running would throw away the other decisions made there."""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM comparison_entries e JOIN ignored_diffs i"
            " ON i.account_id = $2 AND i.first_sha256 = least(e.before->>'sha256' COLLATE \"C\","
            " e.after->>'sha256') AND i.second_sha256 = greatest(e.before->>'sha256' COLLATE"
            " \"C\", e.after->>'sha256') WHERE e.comparison_id = $1 AND e.kind = 'diff'"
            " AND e.decision IS DISTINCT FROM 'ignored')",
            comparison.id,
            uuid.UUID(comparison.account_id),
        )
    )


async def flaky_snapshots(
    conn: asyncpg.Connection,
    account_id: str,
    *,
    component: str | None,
    variant: str | None,
    target: str | None,
    limit: int,
    offset: int,
) -> list[asyncpg.Record]:
    """Ignored diffs, newest first: the snapshots a team judged flaky."""
    return await conn.fetch(
        "SELECT component, variant, target, snapshot1_id, snapshot2_id, created_at"
        " FROM ignored_diffs WHERE account_id = $1"
        " AND ($2::text IS NULL OR component = $2) AND ($3::text IS NULL OR variant = $3)"
        " AND ($4::text IS NULL OR target = $4)"
        " ORDER BY created_at DESC, snapshot2_id DESC LIMIT $5 OFFSET $6",
        uuid.UUID(account_id),
        component,
        variant,
        target,
        limit,
        offset,
    )
