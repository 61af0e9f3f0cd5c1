"""SQL of jobs (one project's, or an orchestration over projects) and skipped shas."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from services.reports.domain import Job


def job_of(row: asyncpg.Record | None) -> Job | None:
    """A jobs row as a Job (None for no row)."""
    if row is None:
        return None
    values = dict(row)
    values["account_id"] = str(values["account_id"])
    return Job(**values)


async def job(
    conn: asyncpg.Connection, account_id: str, sha1: str, sha2: str, project: str | None
) -> Job | None:
    """The job of two shas for a project (``None``: the orchestration job)."""
    row = await conn.fetchrow(
        "SELECT * FROM jobs WHERE account_id = $1 AND sha1 = $2 AND sha2 = $3"
        " AND project IS NOT DISTINCT FROM $4",
        uuid.UUID(account_id),
        sha1,
        sha2,
        project,
    )
    return job_of(row)


async def job_by_id(conn: asyncpg.Connection, job_id: int) -> Job | None:
    """A job by id."""
    return job_of(await conn.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id))


async def children(conn: asyncpg.Connection, job_id: int) -> list[Job]:
    """The per-project jobs of an orchestration job."""
    rows = await conn.fetch("SELECT * FROM jobs WHERE parent_id = $1 ORDER BY id", job_id)
    return [j for j in map(job_of, rows) if j is not None]


async def create_job(
    conn: asyncpg.Connection,
    account_id: str,
    sha1: str,
    sha2: str,
    project: str | None,
    *,
    parent_id: int | None,
    link: str | None,
    message: str | None,
) -> Job:
    """Create a job, or return the existing one of the same shas and project (clients retry)."""
    row = await conn.fetchrow(
        "INSERT INTO jobs (account_id, sha1, sha2, project, parent_id, link, message)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING *",
        uuid.UUID(account_id),
        sha1,
        sha2,
        project,
        parent_id,
        link,
        message,
    )
    if row is None:
        existing = await job(conn, account_id, sha1, sha2, project)
        assert existing is not None  # the conflict was with it
        if parent_id is not None and existing.parent_id is None:
            await conn.execute(
                "UPDATE jobs SET parent_id = $2 WHERE id = $1", existing.id, parent_id
            )
            existing = await job_by_id(conn, existing.id)
            assert existing is not None
        return existing
    created = job_of(row)
    assert created is not None
    return created


async def cancel_job(
    conn: asyncpg.Connection, job_id: int, status: str, message: str | None
) -> None:
    """Settle a job as cancelled with the status the caller chose."""
    await conn.execute(
        "UPDATE jobs SET cancelled_status = $2, cancel_message = $3, updated_at = now()"
        " WHERE id = $1",
        job_id,
        status,
        message,
    )


async def skipped_shas(
    conn: asyncpg.Connection, account_id: str, project: str, shas: Sequence[str]
) -> set[str]:
    """Which of ``shas`` were skipped in a project."""
    rows = await conn.fetch(
        "SELECT sha FROM skips WHERE account_id = $1 AND project = $2 AND sha = ANY($3::text[])",
        uuid.UUID(account_id),
        project,
        list(shas),
    )
    return {row["sha"] for row in rows}


async def skip(
    conn: asyncpg.Connection, account_id: str, project: str, sha: str, label: str
) -> Any:
    """Record a skipped sha; when it was recorded."""
    return await conn.fetchval(
        "INSERT INTO skips (account_id, project, sha, label) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (account_id, project, sha) DO UPDATE SET label = EXCLUDED.label"
        " RETURNING created_at",
        uuid.UUID(account_id),
        project,
        sha,
        label,
    )


async def skip_label(
    conn: asyncpg.Connection, account_id: str, project: str, sha: str
) -> str | None:
    """The label a skipped sha was skipped with (None: not skipped)."""
    return await conn.fetchval(
        "SELECT label FROM skips WHERE account_id = $1 AND project = $2 AND sha = $3",
        uuid.UUID(account_id),
        project,
        sha,
    )


async def jobs_of_after(
    conn: asyncpg.Connection, account_id: str, project: str, sha2: str
) -> list[Job]:
    """A project's jobs whose after sha is ``sha2`` (what skipping that sha settles)."""
    rows = await conn.fetch(
        "SELECT * FROM jobs WHERE account_id = $1 AND project = $2 AND sha2 = $3 ORDER BY id",
        uuid.UUID(account_id),
        project,
        sha2,
    )
    return [j for j in map(job_of, rows) if j is not None]
