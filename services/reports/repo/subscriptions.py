"""SQL of subscriptions to components, and the record of the e-mails sent."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg


async def subscribe(
    conn: asyncpg.Connection, account_id: str, component: str, emails: Sequence[str]
) -> list[str]:
    """Add subscribers; an address that unsubscribed stays so. The addresses now subscribed."""
    await conn.execute(
        "INSERT INTO subscriptions (account_id, component, email)"
        " SELECT $1, $2, unnest($3::text[]) ON CONFLICT DO NOTHING",
        uuid.UUID(account_id),
        component,
        list(emails),
    )
    return await subscribers(conn, account_id, [component])


async def unsubscribe_many(
    conn: asyncpg.Connection, account_id: str, component: str, emails: Sequence[str]
) -> list[str]:
    """Remove subscribers (the unsubscribed ones are kept, to stay unsubscribed)."""
    await conn.execute(
        "DELETE FROM subscriptions WHERE account_id = $1 AND component = $2"
        " AND email = ANY($3::text[]) AND unsubscribed_at IS NULL",
        uuid.UUID(account_id),
        component,
        list(emails),
    )
    return await subscribers(conn, account_id, [component])


async def opt_out(conn: asyncpg.Connection, account_id: str, component: str, email: str) -> None:
    """The person behind ``email`` left the component's subscription (from a mail's link)."""
    await conn.execute(
        "INSERT INTO subscriptions (account_id, component, email, unsubscribed_at)"
        " VALUES ($1, $2, $3, now()) ON CONFLICT (account_id, component, email)"
        " DO UPDATE SET unsubscribed_at = coalesce(subscriptions.unsubscribed_at, now())",
        uuid.UUID(account_id),
        component,
        email,
    )


async def subscribers(
    conn: asyncpg.Connection, account_id: str, components: Sequence[str]
) -> list[str]:
    """Addresses subscribed (and not unsubscribed) to any of ``components``."""
    rows = await conn.fetch(
        "SELECT DISTINCT email FROM subscriptions WHERE account_id = $1"
        " AND component = ANY($2::text[]) AND unsubscribed_at IS NULL ORDER BY email",
        uuid.UUID(account_id),
        list(components),
    )
    return [row["email"] for row in rows]


async def subscriptions_of(
    conn: asyncpg.Connection, account_id: str, emails: Sequence[str], components: Sequence[str]
) -> dict[str, list[str]]:
    """For each address, the components among ``components`` it is subscribed to."""
    rows = await conn.fetch(
        "SELECT email, array_agg(component ORDER BY component) AS components FROM subscriptions"
        " WHERE account_id = $1 AND email = ANY($2::text[]) AND component = ANY($3::text[])"
        " AND unsubscribed_at IS NULL GROUP BY email",
        uuid.UUID(account_id),
        list(emails),
        list(components),
    )
    return {row["email"]: list(row["components"]) for row in rows}


async def delivered(conn: asyncpg.Connection, event_id: str) -> set[str]:
    """Addresses already mailed for a ``comparison.completed`` event."""
    rows = await conn.fetch(
        "SELECT email FROM mail_deliveries WHERE completed_event = $1", uuid.UUID(event_id)
    )
    return {row["email"] for row in rows}


async def record_delivery(
    conn: asyncpg.Connection, comparison_id: int, event_id: str, email: str, outcome: str
) -> None:
    """Note that an address was mailed (or refused) for an event."""
    await conn.execute(
        "INSERT INTO mail_deliveries (comparison_id, completed_event, email, outcome)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        comparison_id,
        uuid.UUID(event_id),
        email,
        outcome,
    )
