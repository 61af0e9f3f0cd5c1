"""SQL of the account-wide lists: an account's reports and comparisons newest first, a page at
a time, their projects, its latest jobs, and how many entries of each kind a page of
comparisons has. Records are the aggregates' own (built by their modules' row readers), so a
list shows a report or comparison exactly as its own page does."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from services.reports.domain import Comparison, Job, Report
from services.reports.repo.comparisons import comparison_of
from services.reports.repo.jobs import job_of
from services.reports.repo.reports import REPORT_COLUMNS, report_of

#: The comparisons awaiting review, as SQL: finished, not equal, nobody's decision yet (the
#: condition under which domain.comparison_status says ``awaiting review``).
AWAITING_REVIEW_SQL = "state = 'done' AND equal IS NOT TRUE AND review IS NULL"


async def count_reports(conn: asyncpg.Connection, account_id: str) -> int:
    """How many reports the account has."""
    return await conn.fetchval(
        "SELECT count(*)::int FROM reports WHERE account_id = $1", uuid.UUID(account_id)
    )


async def reports(
    conn: asyncpg.Connection, account_id: str, *, limit: int, offset: int = 0
) -> list[Report]:
    """The account's reports, newest first."""
    rows = await conn.fetch(
        f"SELECT {REPORT_COLUMNS} FROM reports r WHERE r.account_id = $1"
        " ORDER BY r.created_at DESC, r.id DESC LIMIT $2 OFFSET $3",
        uuid.UUID(account_id),
        limit,
        offset,
    )
    return [r for r in map(report_of, rows) if r is not None]


def _comparisons_where(awaiting: bool) -> str:
    return "account_id = $1" + (f" AND {AWAITING_REVIEW_SQL}" if awaiting else "")


async def count_comparisons(
    conn: asyncpg.Connection, account_id: str, *, awaiting: bool = False
) -> int:
    """How many comparisons the account has (``awaiting``: only those awaiting review)."""
    return await conn.fetchval(
        f"SELECT count(*)::int FROM comparisons WHERE {_comparisons_where(awaiting)}",
        uuid.UUID(account_id),
    )


async def comparisons(
    conn: asyncpg.Connection,
    account_id: str,
    *,
    awaiting: bool = False,
    limit: int,
    offset: int = 0,
) -> list[Comparison]:
    """The account's comparisons newest first (``awaiting``: only those awaiting review)."""
    rows = await conn.fetch(
        f"SELECT * FROM comparisons WHERE {_comparisons_where(awaiting)}"
        " ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
        uuid.UUID(account_id),
        limit,
        offset,
    )
    return [c for c in map(comparison_of, rows) if c is not None]


async def kind_counts(
    conn: asyncpg.Connection, comparison_ids: Sequence[int]
) -> dict[int, dict[str, int]]:
    """How many entries of each kind each of ``comparison_ids`` has (one query for a page)."""
    rows = await conn.fetch(
        "SELECT comparison_id, kind, count(*)::int AS n FROM comparison_entries"
        " WHERE comparison_id = ANY($1::bigint[]) GROUP BY comparison_id, kind",
        list(comparison_ids),
    )
    counts: dict[int, dict[str, int]] = {i: {} for i in comparison_ids}
    for row in rows:
        counts[row["comparison_id"]][row["kind"]] = row["n"]
    return counts


async def projects(conn: asyncpg.Connection, account_id: str) -> list[asyncpg.Record]:
    """The account's projects (``""`` is the default one): ``project``, ``reports`` (how
    many), ``latest`` (when the newest was posted), most recently active first."""
    return await conn.fetch(
        "SELECT project, count(*)::int AS reports, max(created_at) AS latest FROM reports"
        " WHERE account_id = $1 GROUP BY project ORDER BY latest DESC, project",
        uuid.UUID(account_id),
    )


async def jobs(conn: asyncpg.Connection, account_id: str, *, limit: int) -> list[Job]:
    """The account's newest jobs: orchestration jobs and single projects' ones, not the
    projects of an orchestration (its page lists them)."""
    rows = await conn.fetch(
        "SELECT * FROM jobs WHERE account_id = $1 AND parent_id IS NULL"
        " ORDER BY created_at DESC, id DESC LIMIT $2",
        uuid.UUID(account_id),
        limit,
    )
    return [j for j in map(job_of, rows) if j is not None]
