"""The transactional outbox's relay: events written by :func:`shared.events.record_event` in the
same transaction as the state change they announce are published from here, at least once,
with publisher confirms, and marked published only after the broker confirmed them."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

from shared.events import OUTBOX_CHANNEL, Broker
from shared.faults import NO_FAULTS, Faults
from shared.logging import get_logger
from shared.metrics import Metrics

log = get_logger("darkroom.events")


class OutboxRelay:
    """Publishes committed outbox rows in order, with confirms, and marks them published.

    Several processes of one service may relay at once: ``FOR UPDATE SKIP LOCKED`` gives each
    row to one of them. A crash after the confirm and before the mark publishes the row again,
    which consumers absorb by event id.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        broker: Broker,
        *,
        dsn: str,
        poll_interval: float = 1.0,
        batch_size: int = 100,
        metrics: Metrics | None = None,
        faults: Faults = NO_FAULTS,
    ) -> None:
        self.metrics = metrics
        self.faults = faults
        self.pool = pool
        self.broker = broker
        self.dsn = dsn
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task | None = None
        self._listener: asyncpg.Connection | None = None

    async def publish_pending(self) -> int:
        """Publish one batch of pending rows; returns how many were published."""
        published: list[int] = []
        failure: BaseException | None = None
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT seq, envelope FROM outbox WHERE published_at IS NULL"
                " ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
                self.batch_size,
            )
            for row in rows:
                try:
                    await self.broker.publish(row["envelope"])
                except Exception as exc:
                    failure = exc
                    break
                published.append(row["seq"])
                if self.metrics is not None:
                    self.metrics.published(str(row["envelope"].get("type")))
            if published:
                self.faults.reach("relay.after_confirm")
                await conn.execute(
                    "UPDATE outbox SET published_at = now() WHERE seq = ANY($1::bigint[])",
                    published,
                )
        if failure is not None:
            raise failure
        return len(published)

    async def start(self) -> None:
        """Start relaying in the background."""
        with contextlib.suppress(*_LISTEN_ERRORS):
            async with self.pool.acquire() as conn:
                schema = await conn.fetchval("SELECT current_schema()")
            self._listener = await asyncpg.connect(
                self.dsn, server_settings={"application_name": "darkroom-outbox-listener"}
            )
            await self._listener.add_listener(f"{OUTBOX_CHANNEL}_{schema}", self._notified)
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    def _notified(self, *_args: object) -> None:
        self._wake.set()

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                count = await self.publish_pending()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay = min(0.2 * 2**failures, 10.0)
                log.warning("outbox.publish_failed", error=repr(exc), retry_in=delay)
                await asyncio.sleep(delay)
                continue
            if count == self.batch_size:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    async def stop(self, flush_timeout: float = 5.0) -> None:
        """Stop relaying after one last batch (bounded by ``flush_timeout``), so events the
        consumers committed while draining leave with this process; rows still pending stay
        for the next start or another process of the service."""
        if self._task is not None:
            # Let a batch being published finish (so its rows are marked, not sent twice).
            self._stopping = True
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), flush_timeout)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if flush_timeout > 0:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(flush_timeout):
                    await self.publish_pending()
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()


_LISTEN_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
