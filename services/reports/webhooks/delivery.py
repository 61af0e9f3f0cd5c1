"""The durable sender of webhooks: claims due deliveries (any replica, none twice, one at a
time per endpoint and in order), signs each attempt afresh (Standard Webhooks: the event id,
the send time, the body), posts it through the SSRF guard, keeps every attempt, and settles
it: delivered on a 2xx; retried on anything else after ``Retry-After`` or the schedule's next
step; failed for good past the schedule, on 410 Gone or a refused address, which disables the
endpoint (its owner enables it again) instead of sending to a dead receiver for ever."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import asyncpg

from services.reports import outbound
from services.reports.webhooks import domain
from services.reports.webhooks import repo as webhooks_repo
from services.reports.webhooks.endpoints import secret_context
from shared.logging import get_logger
from shared.sealing import SecretBox

log = get_logger("darkroom.reports.webhooks")


class WebhookDelivery:
    """Sends the recorded deliveries; :meth:`deliver_due` is one round of the delivery loop.
    ``schedule`` is the retry schedule in seconds (``DARKROOM_WEBHOOK_RETRY_SCHEDULE``)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        box: SecretBox,
        sender: outbound.Sender,
        schedule: tuple[float, ...] = domain.DEFAULT_SCHEDULE,
    ) -> None:
        self.pool = pool
        self.box = box
        self.sender = sender
        self.schedule = schedule

    async def deliver_due(self) -> float | None:
        """Send one batch of due deliveries; seconds until the next is due (None: none waits)."""
        async with self.pool.acquire() as conn, conn.transaction():
            claimed = await webhooks_repo.claim_due(
                conn, domain.CLAIM_BATCH, domain.CLAIM_LEASE_SECONDS
            )
        if claimed:
            await asyncio.gather(*(self._deliver(row) for row in claimed))
            # The next of each endpoint became due as its predecessor settled.
            return 0.0
        async with self.pool.acquire() as conn:
            return await webhooks_repo.seconds_until_due(conn)

    async def _deliver(self, row: dict) -> None:
        try:
            secret = self.box.open(row["secret_sealed"], secret_context(row["endpoint_id"]))
        except ValueError:
            await self._settle(row, None, "the sealed secret does not open", "failed")
            return
        message_id = str(row["event_id"])
        body = row["body"]
        headers = domain.headers_of(secret, message_id, int(time.time()), body)
        answer = await self.sender.post(row["url"], headers, body.encode())
        verdict = domain.judge(answer, row["attempts"], self.schedule, datetime.now(UTC))
        log.info(
            "webhook.attempt",
            delivery_id=row["id"],
            endpoint_id=row["endpoint_id"],
            http_status=answer.status,
            outcome=verdict.outcome,
            error=verdict.error,
        )
        outcome = None if verdict.outcome == "retry" else verdict.outcome
        await self._settle(row, answer.status, verdict.error, outcome, verdict.wait)

    async def _settle(
        self,
        row: dict,
        http_status: int | None,
        error: str | None,
        outcome: str | None,
        retry_in: float | None = None,
    ) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await webhooks_repo.record_attempt(
                conn, row["id"], http_status, error, outcome=outcome, retry_in=retry_in
            )
            if outcome == "failed":
                await webhooks_repo.disable_endpoint(
                    conn, row["endpoint_id"], f"delivery {row['id']} failed: {error}"
                )
