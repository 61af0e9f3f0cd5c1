"""The deliveries an event makes: reports's webhooks consumer calls :func:`record` in the
transaction that marks the event processed, so each event is recorded once per endpoint
(and a delivery row is unique per endpoint and event besides); :mod:`delivery` sends them."""

from __future__ import annotations

import uuid

import asyncpg

from services.reports.webhooks import domain
from services.reports.webhooks import repo as webhooks_repo
from shared.events import Envelope
from shared.logging import get_logger

log = get_logger("darkroom.reports.webhooks")


async def record(conn: asyncpg.Connection, envelope: Envelope) -> int:
    """One delivery of ``envelope`` per enabled endpoint of its account subscribed to its
    type; how many were recorded. An event without a valid ``account_id`` goes nowhere."""
    if envelope.type not in domain.PUBLIC_FIELDS:
        return 0
    try:
        account_id = str(uuid.UUID(str(envelope.data.get("account_id"))))
    except ValueError:
        log.warning("webhook.no_account", event_id=envelope.id, event_type=envelope.type)
        return 0
    endpoints = await webhooks_repo.endpoints_for(conn, account_id, envelope.type)
    if not endpoints:
        return 0
    body = domain.body_of(envelope)
    recorded = 0
    for endpoint in endpoints:
        if await webhooks_repo.record_delivery(conn, endpoint, envelope.id, envelope.type, body):
            recorded += 1
    return recorded
