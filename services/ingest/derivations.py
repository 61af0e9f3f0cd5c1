"""Asking processing for derivatives and waiting for the answers, over the event stream.

A request is a ``derivative.requested`` event written to ingest's outbox (so it survives a
crash of the relay or the broker); any processing replica takes it from the shared queue. The
answers, ``derivative.computed`` and ``derivative.failed``, reach every ingest process on a
private broadcast queue, and the process that waits on that key wakes up.

A derivative already in the store is never asked for: its key depends only on the original
and the transform (see :mod:`shared.derivatives`), so its presence is the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg

from services.ingest import events
from shared.derivatives import DERIVATIVE_COMPUTED, Transform, derivative_key
from shared.events import BroadcastListener, Broker, Envelope, record_event
from shared.logging import get_logger
from shared.storage import BlobStore

log = get_logger("darkroom.ingest.derivations")


@dataclass(frozen=True)
class DerivativeRequest:
    """One derivative wanted: an original (by hash, store key and type) through a transform."""

    original_sha256: str
    original_key: str
    original_media_type: str
    transform: Transform

    @property
    def key(self) -> str:
        """Where the derivative is (or will be) stored."""
        return derivative_key(self.original_sha256, self.transform)

    def event_data(self) -> dict:
        """The ``derivative.requested`` payload."""
        return {
            "key": self.key,
            "original": {
                "sha256": self.original_sha256,
                "key": self.original_key,
                "media_type": self.original_media_type,
            },
            "transform": self.transform.as_dict(),
        }


@dataclass(frozen=True)
class Outcome:
    """Processing's answer for one key: stored (``size`` bytes) or refused (``message``)."""

    key: str
    size: int = 0
    message: str | None = None

    @property
    def ok(self) -> bool:
        """True when the derivative is in the store."""
        return self.message is None


class ProcessingTimedOut(Exception):
    """Processing did not answer every request within the time allowed."""


class PendingDerivatives:
    """The derivatives this process has asked for and not yet heard back about."""

    def __init__(self, pool: asyncpg.Pool, broker: Broker, store: BlobStore) -> None:
        self.pool = pool
        self.store = store
        self._waiting: dict[str, asyncio.Future[Outcome]] = {}
        self._asked: dict[str, DerivativeRequest] = {}
        self._tasks: set[asyncio.Task] = set()
        self._listener = BroadcastListener(
            broker,
            "ingest.derivatives",
            events.BROADCAST,
            self._answered,
            on_reconnect=self._reconnected,
        )

    async def start(self) -> None:
        """Begin listening for answers."""
        await self._listener.start()

    async def stop(self) -> None:
        """Stop listening; whoever still waits times out."""
        await self._listener.stop()
        for task in list(self._tasks):
            task.cancel()

    async def obtain(
        self, requests: Iterable[DerivativeRequest], timeout: float
    ) -> dict[str, Outcome]:
        """Make sure every requested derivative is stored; the outcome of each key.

        Raises :class:`ProcessingTimedOut` when some answer takes longer than ``timeout``.
        """
        futures: dict[str, asyncio.Future[Outcome]] = {}
        to_ask: list[DerivativeRequest] = []
        loop = asyncio.get_running_loop()
        for request in requests:
            key = request.key
            if key in futures:
                continue
            if key in self._waiting:
                futures[key] = self._waiting[key]
                continue
            # Registered before looking in the store, so an answer that lands in between
            # still finds its waiter.
            futures[key] = self._waiting[key] = loop.create_future()
            self._asked[key] = request
            info = await self.store.stat(key)
            if info is not None:
                self._settle(Outcome(key, size=info.size))
            else:
                to_ask.append(request)
        if to_ask:
            try:
                await self._ask(to_ask)
            except BaseException:
                for request in to_ask:
                    self._abandon(request.key)
                raise
        try:
            async with asyncio.timeout(timeout):
                outcomes = await asyncio.gather(*(asyncio.shield(f) for f in futures.values()))
        except TimeoutError:
            raise ProcessingTimedOut() from None
        return {outcome.key: outcome for outcome in outcomes}

    async def _ask(self, requests: list[DerivativeRequest]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            for request in requests:
                await record_event(conn, events.DERIVATIVE_REQUESTED, request.event_data())

    async def _answered(self, envelope: Envelope) -> None:
        key = envelope.data.get("key")
        if not isinstance(key, str) or key not in self._waiting:
            return
        if envelope.type == DERIVATIVE_COMPUTED:
            self._settle(Outcome(key, size=int(envelope.data.get("bytes") or 0)))
        else:
            message = str(envelope.data.get("message") or "The image cannot be processed")
            self._settle(Outcome(key, message=message))

    def _settle(self, outcome: Outcome) -> None:
        self._asked.pop(outcome.key, None)
        future = self._waiting.pop(outcome.key, None)
        if future is not None and not future.done():
            future.set_result(outcome)

    def _abandon(self, key: str) -> None:
        self._asked.pop(key, None)
        future = self._waiting.pop(key, None)
        if future is not None and not future.done():
            future.cancel()

    def _reconnected(self) -> None:
        # Answers published while the broadcast queue was gone are lost: ask again. Processing
        # answers a derivative it already stored at once, so this costs little.
        task = asyncio.get_running_loop().create_task(self._ask_again())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ask_again(self) -> None:
        pending = list(self._asked.values())
        if not pending:
            return
        with contextlib.suppress(Exception):
            still = []
            for request in pending:
                info = await self.store.stat(request.key)
                if info is not None:
                    self._settle(Outcome(request.key, size=info.size))
                else:
                    still.append(request)
            if still:
                await self._ask(still)
                log.info("derivatives.asked_again", count=len(still))
