"""Endpoints: where an account's webhooks go (create, list, delete, enable), their delivery
log and manual redelivery. The secret is made here, sealed at rest bound to the endpoint's
id, and shown once, in the answer of :func:`create`."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg

from services.reports.webhooks import domain
from services.reports.webhooks import repo as webhooks_repo
from shared import errors, remote
from shared.sealing import SecretBox


def secret_context(endpoint_id: int) -> bytes:
    """What a secret is sealed bound to, so a sealed secret moved to another row does not open."""
    return f"webhook-endpoint:{endpoint_id}".encode()


async def create(
    conn: asyncpg.Connection,
    box: SecretBox,
    account_id: str,
    *,
    url: str,
    events: str | list[str],
    allowed_networks: tuple[remote.IPNetwork, ...],
) -> dict[str, Any]:
    """An enabled endpoint of the account, as JSON with its ``secret`` (the only time it is
    shown); 422 for a bad URL (one the SSRF guard refuses included) or event type."""
    url = domain.parse_url(url, allowed_networks)
    event_types = domain.parse_events(events)
    secret = domain.new_secret()
    async with conn.transaction():
        endpoint_id = await webhooks_repo.next_endpoint_id(conn)
        sealed = box.seal(secret, secret_context(endpoint_id))
        endpoint = await webhooks_repo.create_endpoint(
            conn, endpoint_id, account_id, url, event_types, sealed
        )
    return {**endpoint.to_api(), "secret": secret}


async def listed(conn: asyncpg.Connection, account_id: str) -> list[dict[str, Any]]:
    """The account's endpoints as JSON: enabled or why not, the newest attempt, how many
    deliveries wait; never a secret."""
    return [
        {**endpoint.to_api(), **extra}
        for endpoint, extra in await webhooks_repo.endpoints(conn, account_id)
    ]


async def delete(conn: asyncpg.Connection, account_id: str, endpoint_id: int) -> None:
    """Delete the account's endpoint; 404 for another account's or none."""
    if not await webhooks_repo.delete_endpoint(conn, account_id, endpoint_id):
        raise errors.NotFound(f"No webhook {endpoint_id}")


async def enable(conn: asyncpg.Connection, account_id: str, endpoint_id: int) -> dict[str, Any]:
    """Enable the account's endpoint again (its waiting deliveries go out at once); 404 for
    another account's or none."""
    async with conn.transaction():
        endpoint = await webhooks_repo.enable_endpoint(conn, account_id, endpoint_id)
    if endpoint is None:
        raise errors.NotFound(f"No webhook {endpoint_id}")
    return endpoint.to_api()


async def deliveries(
    conn: asyncpg.Connection, account_id: str, endpoint_id: int
) -> list[dict[str, Any]]:
    """The newest deliveries of the account's endpoint with every attempt; 404 for another
    account's or none."""
    found = await webhooks_repo.deliveries(conn, account_id, endpoint_id, domain.LISTED_DELIVERIES)
    if found is None:
        raise errors.NotFound(f"No webhook {endpoint_id}")
    return [_delivery_json(row) for row in found]


def _delivery_json(row: dict[str, Any]) -> dict[str, Any]:
    tries = row.pop("tries")
    shown = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}
    shown["event_id"] = str(row["event_id"])
    # json_agg arrives as text; its timestamps are already ISO 8601.
    shown["tries"] = json.loads(tries) if isinstance(tries, str) else tries
    return shown


async def redeliver(conn: asyncpg.Connection, account_id: str, delivery_id: int) -> dict[str, Any]:
    """Send the account's delivery again (same ``webhook-id``, a fresh retry schedule); 404 for
    another account's or none, 409 while its endpoint is disabled (enable it first)."""
    async with conn.transaction():
        found = await webhooks_repo.redeliver(conn, account_id, delivery_id)
    if found is None:
        raise errors.NotFound(f"No webhook delivery {delivery_id}")
    if found["disabled"] is not None:
        raise errors.Conflict(
            f"Webhook {found['endpoint_id']} is disabled ({found['disabled']}): enable it first"
        )
    return {"redelivering": delivery_id, "webhook": found["endpoint_id"]}
