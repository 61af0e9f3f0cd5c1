"""Derivatives made while someone waits: the use case behind ``POST /internal/derivatives``.

Rule 2 of the design: a question someone waits on is answered directly. Ingest calls this
for an on-demand derivative and for an upload's variants; the bytes go back in the answer. One
computation per key at a time in this process, however many callers ask
(:class:`shared.flights.SingleFlight`), at most ``most_in_flight`` keys at once (more is a 503,
not a queue), and dropped when the last caller stops waiting. Nothing durable is written for
the question itself; the fact that follows is: the bytes go to the store, then one transaction
records the ``derivatives`` row and, the first time only, ``derivative.stored`` in the outbox.

Two replicas asked for the same key at once both compute it: the bytes are deterministic, so
both write the same bytes and the row and the event are recorded once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from services.processing import domain, repo
from services.processing.transforms import Derived, derive
from services.processing.works import MISSING_ORIGINAL, Works
from shared.db import short_transaction
from shared.derivatives import DERIVATIVE_STORED
from shared.errors import InvalidRequest
from shared.events import record_event
from shared.flights import SingleFlight
from shared.logging import get_logger
from shared.storage import BlobNotFound

log = get_logger("darkroom.processing.deriving")


@dataclass(frozen=True)
class Answer:
    """A derivative's bytes and what they are; ``cached`` when it had been made before."""

    data: bytes
    media_type: str
    width: int
    height: int
    cached: bool


class Derivations(Works):
    """Makes derivatives on request (see the module's docstring)."""

    operation = "derive"

    def __init__(self, *args: Any, pool: asyncpg.Pool, most_in_flight: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.pool = pool
        self.flights: SingleFlight[str, Answer] = SingleFlight(most_in_flight)

    async def obtain(self, request: domain.DerivativeRequest) -> Answer:
        """The derivative ``request`` asks for, made now unless it was before.

        Raises :class:`InvalidRequest` when the original cannot become it (undecodable, over a
        limit, no longer stored) and :class:`shared.errors.Unavailable` when this process
        already has ``most_in_flight`` other keys in hand.
        """
        return await self.flights.run(request.key, lambda: self._make(request))

    async def _make(self, request: domain.DerivativeRequest) -> Answer:
        async with self.pool.acquire() as conn:
            row = await repo.derivative(conn, request.key)
        if row is not None:
            try:
                data = await self.store.read(request.key)
            except BlobNotFound:
                pass  # the row outlived its bytes (a store restored from backup): make it again
            else:
                return Answer(data, row["media_type"], row["width"], row["height"], cached=True)
        try:
            derived, seconds = await self.run(
                derive, request.transform, self.limits, reading=(request.original_key,)
            )
        except BlobNotFound:
            raise InvalidRequest(MISSING_ORIGINAL) from None
        # Stored before the row commits: a crash in between leaves bytes the next request
        # overwrites with the same bytes, never a row without its bytes.
        await self.store.put(request.key, derived.data)
        async with self.pool.acquire() as conn, short_transaction(conn):
            await self._record(conn, request, derived, seconds)
        log.info(
            "derivative.stored",
            key=request.key,
            bytes=len(derived.data),
            duration_ms=round(seconds * 1000, 1),
        )
        return Answer(derived.data, derived.media_type, derived.width, derived.height, False)

    async def _record(
        self,
        conn: asyncpg.Connection,
        request: domain.DerivativeRequest,
        derived: Derived,
        seconds: float,
    ) -> None:
        described = {
            "media_type": derived.media_type,
            "bytes": len(derived.data),
            "width": derived.width,
            "height": derived.height,
        }
        first = await repo.record_derivative(
            conn,
            key=request.key,
            original_sha256=request.original_sha256,
            canonical=request.transform.canonical(),
            described=described,
            worker=self.worker,
            duration_ms=round(seconds * 1000),
        )
        if first:
            await record_event(
                conn,
                DERIVATIVE_STORED,
                {
                    "key": request.key,
                    "original_sha256": request.original_sha256,
                    **described,
                    "worker": self.worker,
                },
            )
