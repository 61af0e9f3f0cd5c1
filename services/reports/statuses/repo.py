"""SQL of commit statuses: integrations (tokens sealed), the statuses to post, and every
attempt to post one."""

from __future__ import annotations

import uuid

import asyncpg

from services.reports.statuses.domain import (
    CHANNEL,
    MAX_ATTEMPTS,
    Integration,
    Status,
)

_INTEGRATION_COLUMNS = (
    "id, account_id, project, provider, base_url, name, failing, failing_since, created_at"
)


def integration_of(row: asyncpg.Record) -> Integration:
    """A status_integrations row as an Integration (its token left out)."""
    values = {name: row[name] for name in Integration.__dataclass_fields__}
    values["account_id"] = str(values["account_id"])
    return Integration(**values)


# --- integrations ------------------------------------------------------------------------------


async def next_integration_id(conn: asyncpg.Connection) -> int:
    """The id the next integration will have (its token is sealed bound to it)."""
    return await conn.fetchval(
        "SELECT nextval(pg_get_serial_sequence('status_integrations', 'id'))"
    )


async def create_integration(
    conn: asyncpg.Connection,
    integration_id: int,
    account_id: str,
    project: str | None,
    provider: str,
    base_url: str,
    name: str,
    token_sealed: bytes,
) -> Integration:
    """Store an integration."""
    row = await conn.fetchrow(
        "INSERT INTO status_integrations"
        " (id, account_id, project, provider, base_url, name, token_sealed)"
        f" VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_INTEGRATION_COLUMNS}",
        integration_id,
        uuid.UUID(account_id),
        project,
        provider,
        base_url,
        name,
        token_sealed,
    )
    return integration_of(row)


async def integrations(conn: asyncpg.Connection, account_id: str) -> list[Integration]:
    """The account's integrations, oldest first."""
    rows = await conn.fetch(
        f"SELECT {_INTEGRATION_COLUMNS} FROM status_integrations WHERE account_id = $1 ORDER BY id",
        uuid.UUID(account_id),
    )
    return [integration_of(row) for row in rows]


async def integrations_for(
    conn: asyncpg.Connection, account_id: str, project: str | None
) -> list[Integration]:
    """The integrations a status of ``project`` goes through: the account-wide ones and that
    project's own (an orchestration's combined status, project None: the account-wide ones)."""
    rows = await conn.fetch(
        f"SELECT {_INTEGRATION_COLUMNS} FROM status_integrations"
        " WHERE account_id = $1 AND (project IS NULL OR project = $2) ORDER BY id",
        uuid.UUID(account_id),
        project,
    )
    return [integration_of(row) for row in rows]


async def delete_integration(
    conn: asyncpg.Connection, account_id: str, integration_id: int
) -> bool:
    """Delete the account's integration (its statuses and their attempts go with it)."""
    done = await conn.execute(
        "DELETE FROM status_integrations WHERE id = $1 AND account_id = $2",
        integration_id,
        uuid.UUID(account_id),
    )
    return done != "DELETE 0"


async def mark_failing(conn: asyncpg.Connection, integration_id: int, why: str) -> None:
    """The provider refused the integration's token (or its address is not allowed)."""
    await conn.execute(
        "UPDATE status_integrations SET failing = $2, failing_since = now() WHERE id = $1",
        integration_id,
        why,
    )


# --- statuses to post --------------------------------------------------------------------------


async def record_status(
    conn: asyncpg.Connection,
    integration: Integration,
    repository: str,
    sha: str,
    context: str,
    status: Status,
) -> int | None:
    """Record a status to post, unless the newest one of the same commit and context already
    says the same; wakes the senders at commit. Its id, or None when nothing was recorded."""
    status_id = await conn.fetchval(
        "WITH newest AS ("
        "  SELECT state, description, target_url FROM commit_statuses"
        "  WHERE integration_id = $1 AND repository = $3 AND sha = $4 AND context = $5"
        "  ORDER BY id DESC LIMIT 1)"
        " INSERT INTO commit_statuses (integration_id, account_id, repository, sha, context,"
        "  state, description, target_url, job_id, comparison_id)"
        " SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10"
        " WHERE NOT EXISTS (SELECT 1 FROM newest"
        "  WHERE (state, description, target_url) = ($6, $7, $8))"
        " RETURNING id",
        integration.id,
        uuid.UUID(integration.account_id),
        repository,
        sha,
        context,
        status.state,
        status.description,
        status.target_url,
        status.job_id,
        status.comparison_id,
    )
    if status_id is not None:
        await conn.execute(f"SELECT pg_notify('{CHANNEL}_' || current_schema(), '')")
    return status_id


_SAME_KEY = (
    "o.integration_id = s.integration_id AND o.repository = s.repository AND o.sha = s.sha"
    " AND o.context = s.context"
)


async def claim_due(conn: asyncpg.Connection, limit: int, lease_seconds: float) -> list[dict]:
    """Claim up to ``limit`` due statuses for this replica for ``lease_seconds`` (with their
    integration's provider, address and sealed token), counting the attempt. Older statuses
    of a commit and context that a newer one supersedes are settled as superseded first; a
    status is not claimed while another of its commit and context is in flight, so the
    provider always ends with the newest. Run it in a transaction."""
    # Claims are serialised (one short statement each) so two replicas never both see a
    # commit and context free; the rows themselves are still taken FOR UPDATE SKIP LOCKED.
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.commit_statuses'))"
    )
    await conn.execute(
        "UPDATE commit_statuses s SET outcome = 'superseded', claimed_until = NULL"
        " WHERE s.outcome IS NULL AND (s.claimed_until IS NULL OR s.claimed_until < now())"
        f" AND EXISTS (SELECT 1 FROM commit_statuses o WHERE {_SAME_KEY} AND o.id > s.id)"
    )
    rows = await conn.fetch(
        "WITH due AS ("
        "  SELECT s.id FROM commit_statuses s"
        "  JOIN status_integrations i ON i.id = s.integration_id"
        "  WHERE s.outcome IS NULL AND i.failing IS NULL AND s.next_attempt_at <= now()"
        "  AND (s.claimed_until IS NULL OR s.claimed_until < now())"
        f" AND NOT EXISTS (SELECT 1 FROM commit_statuses o WHERE {_SAME_KEY} AND o.id <> s.id"
        "   AND o.outcome IS NULL AND o.claimed_until >= now())"
        "  ORDER BY s.next_attempt_at, s.id LIMIT $1 FOR UPDATE OF s SKIP LOCKED)"
        " UPDATE commit_statuses s"
        " SET claimed_until = now() + make_interval(secs => $2), attempts = s.attempts + 1"
        " FROM due, status_integrations i"
        " WHERE s.id = due.id AND i.id = s.integration_id"
        " RETURNING s.*, i.provider, i.base_url, i.name, i.project, i.token_sealed,"
        "  i.failing, i.failing_since, i.created_at AS integration_created_at",
        limit,
        lease_seconds,
    )
    return [dict(row) for row in rows]


async def seconds_until_due(conn: asyncpg.Connection) -> float | None:
    """Seconds until the next status (of an integration that is not failing) is due."""
    value = await conn.fetchval(
        "SELECT EXTRACT(EPOCH FROM min(greatest(s.next_attempt_at, s.claimed_until)) - now())"
        " FROM commit_statuses s JOIN status_integrations i ON i.id = s.integration_id"
        " WHERE s.outcome IS NULL AND i.failing IS NULL"
    )
    return None if value is None else max(0.0, float(value))


async def record_attempt(
    conn: asyncpg.Connection,
    status_id: int,
    http_status: int | None,
    error: str | None,
    *,
    outcome: str | None,
    retry_in: float | None = None,
) -> None:
    """Keep one attempt and settle the status: ``outcome`` (delivered, rejected, refused), or
    None to retry in ``retry_in`` seconds (abandoned once out of attempts)."""
    if outcome is None:
        row = await conn.fetchrow(
            "UPDATE commit_statuses SET claimed_until = NULL, last_error = $2,"
            " next_attempt_at = now() + make_interval(secs => $3),"
            " outcome = CASE WHEN attempts >= $4 THEN 'abandoned' END"
            " WHERE id = $1 RETURNING outcome, next_attempt_at",
            status_id,
            error,
            retry_in or 0.0,
            MAX_ATTEMPTS,
        )
        retry_at = row["next_attempt_at"] if row and row["outcome"] is None else None
    else:
        await conn.execute(
            "UPDATE commit_statuses SET claimed_until = NULL, outcome = $2, last_error = $3,"
            " delivered_at = CASE WHEN $2 = 'delivered' THEN now() END WHERE id = $1",
            status_id,
            outcome,
            error,
        )
        retry_at = None
    await conn.execute(
        "INSERT INTO commit_status_attempts (status_id, http_status, error, retry_at)"
        " VALUES ($1, $2, $3, $4)",
        status_id,
        http_status,
        error,
        retry_at,
    )


async def statuses_of_commit(
    conn: asyncpg.Connection, account_id: str, sha: str, limit: int
) -> list[asyncpg.Record]:
    """The account's statuses for one commit, newest first, each with its integration's
    provider and its latest attempt: the delivery log a comparison page shows."""
    return await conn.fetch(
        "SELECT s.id, i.provider, s.repository, s.context, s.state, s.description,"
        " s.outcome, s.attempts, s.last_error, s.created_at, s.delivered_at,"
        " a.http_status, a.attempted_at, a.retry_at"
        " FROM commit_statuses s JOIN status_integrations i ON i.id = s.integration_id"
        " LEFT JOIN LATERAL (SELECT http_status, attempted_at, retry_at"
        " FROM commit_status_attempts WHERE status_id = s.id ORDER BY id DESC LIMIT 1) a ON true"
        " WHERE s.account_id = $1 AND s.sha = $2 ORDER BY s.id DESC LIMIT $3",
        uuid.UUID(account_id),
        sha,
        limit,
    )
