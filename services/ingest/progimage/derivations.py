"""Progimage's derivatives: asking processing for them and waiting for the answers, over the
event stream.

A request is a ``derivative.requested`` event written to ingest's outbox (so it survives a
crash of the relay or the broker); any processing replica takes it from the shared queue. The
answers, ``derivative.computed`` and ``derivative.failed``, reach every ingest process on a
private broadcast queue, and the process that waits on that key wakes up.

A derivative already in the store is never asked for: its key depends only on the original
and the transform (see :mod:`shared.derivatives`), so its presence is the answer. When the last
of this process's callers waiting for a key gives up (its client went away, or it timed out),
the request is withdrawn with ``derivative.abandoned``, so processing does not spend a core on
an image nobody will read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterable
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
        # Callers waiting on each key, and the id of the request event this process sent for
        # it: what an abandonment names.
        self._waiters: dict[str, int] = {}
        self._request_ids: dict[str, str] = {}
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
        A caller cancelled or timed out stops waiting; a key nobody here waits for any more
        is withdrawn (``derivative.abandoned``).
        """
        futures: dict[str, asyncio.Future[Outcome]] = {}
        to_ask: list[DerivativeRequest] = []
        loop = asyncio.get_running_loop()
        try:
            for request in requests:
                key = request.key
                if key in futures:
                    continue
                if key not in self._waiting:
                    # Registered before looking in the store, so an answer that lands in
                    # between still finds its waiter.
                    self._waiting[key] = loop.create_future()
                    self._asked[key] = request
                    to_ask.append(request)
                futures[key] = self._waiting[key]
                self._waiters[key] = self._waiters.get(key, 0) + 1
            unstored = []
            for request in to_ask:
                info = await self.store.stat(request.key)
                if info is None:
                    unstored.append(request)
                else:
                    self._settle(Outcome(request.key, size=info.size))
            to_ask = unstored
            if to_ask:
                try:
                    await self._ask(to_ask)
                except BaseException:
                    for request in to_ask:
                        self._abandon(request.key)
                    raise
            async with asyncio.timeout(timeout):
                outcomes = await asyncio.gather(*(asyncio.shield(f) for f in futures.values()))
        except TimeoutError:
            raise ProcessingTimedOut() from None
        finally:
            self._leave(futures)
        return {outcome.key: outcome for outcome in outcomes}

    def _leave(self, futures: dict[str, asyncio.Future[Outcome]]) -> None:
        """One caller stops waiting on ``futures``' keys; a key left unanswered with nobody
        waiting is withdrawn."""
        abandoned = []
        for key, future in futures.items():
            left = self._waiters.get(key, 1) - 1
            if left > 0:
                self._waiters[key] = left
                continue
            self._waiters.pop(key, None)
            if future.done() or self._waiting.get(key) is not future:
                continue
            request_id = self._request_ids.get(key)
            self._abandon(key)
            if request_id is not None:
                abandoned.append({"key": key, "request": request_id})
        if abandoned:
            # Not awaited here: the caller may be a cancelled task.
            self._spawn(self._withdraw(abandoned))

    async def _withdraw(self, abandoned: list[dict[str, str]]) -> None:
        with contextlib.suppress(Exception):
            async with self.pool.acquire() as conn, conn.transaction():
                for data in abandoned:
                    await record_event(conn, events.DERIVATIVE_ABANDONED, data)
            log.info("derivatives.abandoned", count=len(abandoned))

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ask(self, requests: list[DerivativeRequest]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            sent = [
                (
                    request.key,
                    await record_event(conn, events.DERIVATIVE_REQUESTED, request.event_data()),
                )
                for request in requests
            ]
        for key, envelope in sent:
            if key in self._waiting:
                self._request_ids[key] = envelope.id

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
        self._request_ids.pop(outcome.key, None)
        future = self._waiting.pop(outcome.key, None)
        if future is not None and not future.done():
            future.set_result(outcome)

    def _abandon(self, key: str) -> None:
        self._asked.pop(key, None)
        self._request_ids.pop(key, None)
        future = self._waiting.pop(key, None)
        if future is not None and not future.done():
            future.cancel()

    def _reconnected(self) -> None:
        # Answers published while the broadcast queue was gone are lost: ask again. Processing
        # answers a derivative it already stored at once, so this costs little.
        self._spawn(self._ask_again())

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
