"""SQL of webhooks: endpoints (secrets sealed), the deliveries to send, and every attempt to
send one."""

from __future__ import annotations

import uuid

import asyncpg

from services.reports.webhooks.domain import CHANNEL, Endpoint

_ENDPOINT_COLUMNS = "id, account_id, url, event_types, disabled, disabled_since, created_at"


def endpoint_of(row: asyncpg.Record) -> Endpoint:
    """A webhook_endpoints row as an Endpoint (its secret left out)."""
    values = {name: row[name] for name in Endpoint.__dataclass_fields__}
    values["account_id"] = str(values["account_id"])
    values["event_types"] = tuple(values["event_types"])
    return Endpoint(**values)


# --- endpoints ---------------------------------------------------------------------------------


async def next_endpoint_id(conn: asyncpg.Connection) -> int:
    """The id the next endpoint will have (its secret is sealed bound to it)."""
    return await conn.fetchval("SELECT nextval(pg_get_serial_sequence('webhook_endpoints', 'id'))")


async def create_endpoint(
    conn: asyncpg.Connection,
    endpoint_id: int,
    account_id: str,
    url: str,
    event_types: tuple[str, ...],
    secret_sealed: bytes,
) -> Endpoint:
    """Store an endpoint, enabled."""
    row = await conn.fetchrow(
        "INSERT INTO webhook_endpoints (id, account_id, url, event_types, secret_sealed)"
        f" VALUES ($1, $2, $3, $4, $5) RETURNING {_ENDPOINT_COLUMNS}",
        endpoint_id,
        uuid.UUID(account_id),
        url,
        list(event_types),
        secret_sealed,
    )
    return endpoint_of(row)


async def endpoints(conn: asyncpg.Connection, account_id: str) -> list[tuple[Endpoint, dict]]:
    """The account's endpoints, oldest first, each with its newest attempt (``at``,
    ``http_status``, ``error``; empty when none was made) and its deliveries still to send."""
    rows = await conn.fetch(
        f"SELECT {', '.join('e.' + c for c in _ENDPOINT_COLUMNS.split(', '))},"
        "  a.attempted_at, a.http_status, a.error,"
        "  (SELECT count(*) FROM webhook_deliveries d"
        "   WHERE d.endpoint_id = e.id AND d.outcome IS NULL) AS waiting"
        " FROM webhook_endpoints e"
        " LEFT JOIN LATERAL (SELECT a.attempted_at, a.http_status, a.error"
        "  FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id"
        "  WHERE d.endpoint_id = e.id ORDER BY a.id DESC LIMIT 1) a ON true"
        " WHERE e.account_id = $1 ORDER BY e.id",
        uuid.UUID(account_id),
    )
    return [
        (
            endpoint_of(row),
            {
                "last_attempt": {
                    "at": row["attempted_at"].isoformat(),
                    "http_status": row["http_status"],
                    "error": row["error"],
                }
                if row["attempted_at"]
                else None,
                "waiting": row["waiting"],
            },
        )
        for row in rows
    ]


async def endpoints_for(
    conn: asyncpg.Connection, account_id: str, event_type: str
) -> list[Endpoint]:
    """The account's enabled endpoints subscribed to ``event_type``."""
    rows = await conn.fetch(
        f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints"
        " WHERE account_id = $1 AND disabled IS NULL AND $2 = ANY (event_types) ORDER BY id",
        uuid.UUID(account_id),
        event_type,
    )
    return [endpoint_of(row) for row in rows]


async def delete_endpoint(conn: asyncpg.Connection, account_id: str, endpoint_id: int) -> bool:
    """Delete the account's endpoint (its deliveries and their attempts go with it)."""
    done = await conn.execute(
        "DELETE FROM webhook_endpoints WHERE id = $1 AND account_id = $2",
        endpoint_id,
        uuid.UUID(account_id),
    )
    return done != "DELETE 0"


async def enable_endpoint(
    conn: asyncpg.Connection, account_id: str, endpoint_id: int
) -> Endpoint | None:
    """Enable the account's endpoint (its waiting deliveries go out from now); wakes the
    senders at commit. None for another account's or none."""
    row = await conn.fetchrow(
        "UPDATE webhook_endpoints SET disabled = NULL, disabled_since = NULL"
        f" WHERE id = $1 AND account_id = $2 RETURNING {_ENDPOINT_COLUMNS}",
        endpoint_id,
        uuid.UUID(account_id),
    )
    if row is None:
        return None
    await conn.execute(
        "UPDATE webhook_deliveries SET next_attempt_at = now()"
        " WHERE endpoint_id = $1 AND outcome IS NULL",
        endpoint_id,
    )
    await _wake(conn)
    return endpoint_of(row)


async def disable_endpoint(conn: asyncpg.Connection, endpoint_id: int, why: str) -> None:
    """Disable an endpoint that kept failing (or is gone, or whose address is refused)."""
    await conn.execute(
        "UPDATE webhook_endpoints SET disabled = $2, disabled_since = now()"
        " WHERE id = $1 AND disabled IS NULL",
        endpoint_id,
        why,
    )


# --- deliveries --------------------------------------------------------------------------------


async def record_delivery(
    conn: asyncpg.Connection, endpoint: Endpoint, event_id: str, event_type: str, body: str
) -> int | None:
    """Record a delivery of an event to an endpoint, once (a second one of the same event adds
    nothing); wakes the senders at commit. Its id, or None when it was there already."""
    delivery_id = await conn.fetchval(
        "INSERT INTO webhook_deliveries (endpoint_id, account_id, event_id, event_type, body)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (endpoint_id, event_id) DO NOTHING RETURNING id",
        endpoint.id,
        uuid.UUID(endpoint.account_id),
        uuid.UUID(event_id),
        event_type,
        body,
    )
    if delivery_id is not None:
        await _wake(conn)
    return delivery_id


async def _wake(conn: asyncpg.Connection) -> None:
    await conn.execute(f"SELECT pg_notify('{CHANNEL}_' || current_schema(), '')")


async def deliveries(conn: asyncpg.Connection, account_id: str, endpoint_id: int, limit: int):
    """The newest ``limit`` deliveries of the account's endpoint, each with its attempts
    (oldest first); None when the endpoint is not the account's."""
    owned = await conn.fetchval(
        "SELECT true FROM webhook_endpoints WHERE id = $1 AND account_id = $2",
        endpoint_id,
        uuid.UUID(account_id),
    )
    if not owned:
        return None
    rows = await conn.fetch(
        "SELECT d.id, d.event_id, d.event_type, d.outcome, d.attempts, d.next_attempt_at,"
        "  d.last_error, d.delivered_at, d.created_at,"
        "  coalesce((SELECT json_agg(json_build_object('at', a.attempted_at,"
        "    'http_status', a.http_status, 'error', a.error, 'retry_at', a.retry_at)"
        "    ORDER BY a.id) FROM webhook_attempts a WHERE a.delivery_id = d.id), '[]') AS tries"
        " FROM webhook_deliveries d WHERE d.endpoint_id = $1 ORDER BY d.id DESC LIMIT $2",
        endpoint_id,
        limit,
    )
    return [dict(row) for row in rows]


async def redeliver(conn: asyncpg.Connection, account_id: str, delivery_id: int) -> dict | None:
    """Send the account's delivery again from now, with a fresh schedule (its attempts are
    kept); the delivery with its endpoint's ``disabled``, or None for another account's."""
    row = await conn.fetchrow(
        "SELECT d.id, d.endpoint_id, e.disabled FROM webhook_deliveries d"
        " JOIN webhook_endpoints e ON e.id = d.endpoint_id"
        " WHERE d.id = $1 AND d.account_id = $2 FOR UPDATE OF d",
        delivery_id,
        uuid.UUID(account_id),
    )
    if row is None:
        return None
    if row["disabled"] is None:
        await conn.execute(
            "UPDATE webhook_deliveries SET outcome = NULL, attempts = 0, next_attempt_at = now(),"
            " delivered_at = NULL WHERE id = $1",
            delivery_id,
        )
        await _wake(conn)
    return dict(row)


async def claim_due(conn: asyncpg.Connection, limit: int, lease_seconds: float) -> list[dict]:
    """Claim up to ``limit`` due deliveries for this replica for ``lease_seconds`` (with their
    endpoint's URL and sealed secret), counting the attempt. Only the oldest waiting delivery
    of each enabled endpoint is due, and none while another of its endpoint is in flight, so
    an endpoint receives its events one at a time, in order. Run it in a transaction."""
    # Claims are serialised (one short statement each) so two replicas never both see an
    # endpoint free; the rows themselves are still taken FOR UPDATE SKIP LOCKED.
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.webhook_deliveries'))"
    )
    rows = await conn.fetch(
        "WITH due AS ("
        "  SELECT d.id FROM webhook_deliveries d"
        "  JOIN webhook_endpoints e ON e.id = d.endpoint_id"
        "  WHERE d.outcome IS NULL AND e.disabled IS NULL AND d.next_attempt_at <= now()"
        "  AND (d.claimed_until IS NULL OR d.claimed_until < now())"
        "  AND NOT EXISTS (SELECT 1 FROM webhook_deliveries o WHERE o.endpoint_id = d.endpoint_id"
        "   AND o.outcome IS NULL AND (o.id < d.id OR o.claimed_until >= now()))"
        "  ORDER BY d.next_attempt_at, d.id LIMIT $1 FOR UPDATE OF d SKIP LOCKED)"
        " UPDATE webhook_deliveries d"
        " SET claimed_until = now() + make_interval(secs => $2), attempts = d.attempts + 1"
        " FROM due, webhook_endpoints e"
        " WHERE d.id = due.id AND e.id = d.endpoint_id"
        " RETURNING d.id, d.endpoint_id, d.event_id, d.body, d.attempts, e.url, e.secret_sealed",
        limit,
        lease_seconds,
    )
    return [dict(row) for row in rows]


async def seconds_until_due(conn: asyncpg.Connection) -> float | None:
    """Seconds until the next delivery (of an enabled endpoint) is due."""
    value = await conn.fetchval(
        "SELECT EXTRACT(EPOCH FROM min(greatest(d.next_attempt_at, d.claimed_until)) - now())"
        " FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id"
        " WHERE d.outcome IS NULL AND e.disabled IS NULL"
    )
    return None if value is None else max(0.0, float(value))


async def record_attempt(
    conn: asyncpg.Connection,
    delivery_id: int,
    http_status: int | None,
    error: str | None,
    *,
    outcome: str | None,
    retry_in: float | None = None,
) -> None:
    """Keep one attempt and settle the delivery: ``outcome`` (delivered, failed), or None to
    retry in ``retry_in`` seconds."""
    retry_at = await conn.fetchval(
        "UPDATE webhook_deliveries SET claimed_until = NULL, outcome = $2, last_error = $3,"
        " delivered_at = CASE WHEN $2 = 'delivered' THEN now() END,"
        " next_attempt_at = CASE WHEN $2::text IS NULL"
        "  THEN now() + make_interval(secs => $4) ELSE next_attempt_at END"
        " WHERE id = $1 RETURNING CASE WHEN $2::text IS NULL THEN next_attempt_at END",
        delivery_id,
        outcome,
        error,
        retry_in or 0.0,
    )
    await conn.execute(
        "INSERT INTO webhook_attempts (delivery_id, http_status, error, retry_at)"
        " VALUES ($1, $2, $3, $4)",
        delivery_id,
        http_status,
        error,
        retry_at,
    )
