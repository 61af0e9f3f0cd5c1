"""The durable sender of commit statuses: claims due statuses (any replica, none twice), posts
each to its provider through the SSRF guard, keeps every attempt, and settles it: delivered;
retried after the wait the provider asked for, or an exponential back-off with jitter;
rejected (the provider refused this status); or refused (the provider refused the token, or
the address is not allowed), which marks the integration failing and stops its statuses until
someone fixes it, instead of retrying a dead token for ever."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg

from services.reports import outbound
from services.reports.statuses import domain
from services.reports.statuses import repo as statuses_repo
from services.reports.statuses.domain import Integration, Status
from services.reports.statuses.integrations import token_context
from shared.logging import get_logger
from shared.sealing import SecretBox

log = get_logger("darkroom.reports.statuses")


class StatusDelivery:
    """Posts the recorded statuses; :meth:`deliver_due` is one round of the delivery loop."""

    def __init__(self, pool: asyncpg.Pool, box: SecretBox, sender: outbound.Sender) -> None:
        self.pool = pool
        self.box = box
        self.sender = sender

    async def deliver_due(self) -> float | None:
        """Post one batch of due statuses; seconds until the next is due (None: none waits)."""
        async with self.pool.acquire() as conn, conn.transaction():
            claimed = await statuses_repo.claim_due(
                conn, domain.CLAIM_BATCH, domain.CLAIM_LEASE_SECONDS
            )
        if claimed:
            await asyncio.gather(*(self._deliver(row) for row in claimed))
            if len(claimed) == domain.CLAIM_BATCH:
                return 0.0
        async with self.pool.acquire() as conn:
            return await statuses_repo.seconds_until_due(conn)

    async def _deliver(self, row: dict) -> None:
        integration = Integration(
            id=row["integration_id"],
            account_id=str(row["account_id"]),
            project=row["project"],
            provider=row["provider"],
            base_url=row["base_url"],
            name=row["name"],
            failing=row["failing"],
            failing_since=row["failing_since"],
            created_at=row["integration_created_at"],
        )
        status = Status(row["state"], row["description"], row["target_url"])
        try:
            token = self.box.open(row["token_sealed"], token_context(integration.id))
        except ValueError:
            await self._settle(
                row["id"], integration.id, None, "the sealed token does not open", "refused"
            )
            return
        url, headers, body = domain.request_of(
            integration, token, row["repository"], row["sha"], row["context"], status
        )
        answer = await self.sender.post_json(url, headers, body)
        verdict = domain.judge(integration.provider, answer, row["attempts"], datetime.now(UTC))
        log.info(
            "status.attempt",
            status_id=row["id"],
            integration_id=integration.id,
            http_status=answer.status,
            outcome=verdict.outcome,
            error=verdict.error,
        )
        outcome = None if verdict.outcome == "retry" else verdict.outcome
        await self._settle(
            row["id"], integration.id, answer.status, verdict.error, outcome, verdict.wait
        )

    async def _settle(
        self,
        status_id: int,
        integration_id: int,
        http_status: int | None,
        error: str | None,
        outcome: str | None,
        retry_in: float | None = None,
    ) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await statuses_repo.record_attempt(
                conn, status_id, http_status, error, outcome=outcome, retry_in=retry_in
            )
            if outcome == "refused":
                await statuses_repo.mark_failing(conn, integration_id, error or "refused")
