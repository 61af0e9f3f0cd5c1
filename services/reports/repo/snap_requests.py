"""SQL of snap requests: batches of snapshots taken by the client, and requests to render."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from services.reports.domain import SnapRequest


async def create_snap_request(
    conn: asyncpg.Connection, account_id: str, snaps: list[dict[str, Any]]
) -> int:
    """Store a batch of resolved snapshots; its request id."""
    return await conn.fetchval(
        "INSERT INTO snap_requests (account_id, snaps) VALUES ($1, $2) RETURNING id",
        uuid.UUID(account_id),
        snaps,
    )


async def snap_requests(
    conn: asyncpg.Connection, account_id: str, ids: Sequence[int]
) -> dict[int, SnapRequest]:
    """The account's snap requests among ``ids``: id → request."""
    rows = await conn.fetch(
        "SELECT id, state, snaps, request_type, target_name, error FROM snap_requests"
        " WHERE account_id = $1 AND id = ANY($2::bigint[])",
        uuid.UUID(account_id),
        list(ids),
    )
    return {row["id"]: SnapRequest(**dict(row)) for row in rows}


async def create_render_request(
    conn: asyncpg.Connection,
    account_id: str,
    request_type: str,
    target_name: str,
    payload_md5: str,
    payload: Any,
    error: str | None = None,
    reuse: bool = True,
) -> tuple[int, bool]:
    """A pending snap request to render, or (with ``reuse``) the earlier one of the same type,
    target and payload that did not fail; ``(id, created)``. With ``error`` it is failed at
    once (a target no engine here renders)."""
    account = uuid.UUID(account_id)
    # One at a time per (account, type, target, payload), so two identical requests racing
    # end on one row.
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        f"snap-request:{account}:{request_type}:{target_name}:{payload_md5}",
    )
    earlier = await conn.fetchval(
        "SELECT id FROM snap_requests WHERE account_id = $1 AND request_type = $2"
        " AND target_name = $3 AND payload_md5 = $4 AND state <> 'failed'"
        " ORDER BY id DESC LIMIT 1",
        account,
        request_type,
        target_name,
        payload_md5,
    )
    if earlier is not None and error is None and reuse:
        return earlier, False
    created = await conn.fetchval(
        "INSERT INTO snap_requests (account_id, snaps, state, request_type, target_name,"
        " payload_md5, payload, error, finished_at)"
        " VALUES ($1, '[]', CASE WHEN $6::text IS NULL THEN 'pending' ELSE 'failed' END,"
        " $2, $3, $4, $5, $6, CASE WHEN $6::text IS NULL THEN NULL ELSE now() END) RETURNING id",
        account,
        request_type,
        target_name,
        payload_md5,
        payload,
        error,
    )
    return created, True


async def render_request(
    conn: asyncpg.Connection, account_id: str, request_id: int
) -> asyncpg.Record | None:
    """What a renderer needs of a request: its state, type, target and payload."""
    return await conn.fetchrow(
        "SELECT state, request_type, target_name, payload FROM snap_requests"
        " WHERE account_id = $1 AND id = $2 AND request_type IS NOT NULL",
        uuid.UUID(account_id),
        request_id,
    )


async def finish_render_request(
    conn: asyncpg.Connection,
    account_id: str,
    request_id: int,
    snaps: list[dict[str, Any]] | None,
    error: str | None,
) -> asyncpg.Record | None:
    """Record a pending request's outcome (its snaps, each tagged with the request's target,
    or an error); ``(target_name, snaps)`` as stored, or None when it was not pending (a
    repeated outcome changes nothing)."""
    return await conn.fetchrow(
        "UPDATE snap_requests SET state = CASE WHEN $4::text IS NULL THEN 'done' ELSE 'failed'"
        " END, snaps = CASE WHEN $3::jsonb IS NULL THEN snaps ELSE coalesce((SELECT"
        " jsonb_agg(e || jsonb_build_object('target', target_name))"
        " FROM jsonb_array_elements($3::jsonb) AS e), '[]'::jsonb) END,"
        " error = $4, finished_at = now()"
        " WHERE account_id = $1 AND id = $2 AND state = 'pending' RETURNING target_name, snaps",
        uuid.UUID(account_id),
        request_id,
        snaps,
        error,
    )


async def stale_render_requests(
    conn: asyncpg.Connection, older_than_seconds: float, limit: int = 100
) -> list[asyncpg.Record]:
    """Requests pending longer than ``older_than_seconds`` (no renderer finished them: a poison
    request dead-lettered, renderers gone), locked for the caller's transaction."""
    return await conn.fetch(
        "SELECT id, account_id FROM snap_requests WHERE state = 'pending'"
        " AND created_at < now() - make_interval(secs => $1) ORDER BY id LIMIT $2"
        " FOR UPDATE SKIP LOCKED",
        older_than_seconds,
        limit,
    )
