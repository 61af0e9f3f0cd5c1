"""Processing's event consumers: derivatives computed on request, once per key.

Replicas compete for ``derivative.requested`` on one queue. Each takes at most as many
deliveries as it has worker threads (the prefetch), so a busy replica leaves the rest of the
queue to the others; a transaction-scoped advisory lock on the key makes two deliveries of the
same key — on any replicas — compute it once: the second finds it recorded and answers
``cached``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
from aiohttp import web

from services.processing import domain
from services.processing.config import ProcessingConfig
from services.processing.transforms import Derived, Limits, derive
from shared.derivatives import DERIVATIVE_COMPUTED, DERIVATIVE_FAILED, DERIVATIVE_REQUESTED
from shared.errors import InvalidRequest
from shared.events import Envelope, Subscription, record_event
from shared.logging import get_logger
from shared.storage import BlobNotFound, BlobStore

log = get_logger("darkroom.processing.derivatives")

#: The competing consumer (and queue) of derivative requests.
DERIVATIVES_CONSUMER = "processing.derivatives"


class DerivativeWorks:
    """Answers ``derivative.requested``: computes the derivative into the store and records
    it, or says why it cannot be made. Transient trouble (store or database down) raises, so
    the event is retried; a fact about the input is answered with ``derivative.failed``."""

    def __init__(
        self, store: BlobStore, executor: ThreadPoolExecutor, limits: Limits, worker: str
    ) -> None:
        self.store = store
        self.executor = executor
        self.limits = limits
        self.worker = worker

    async def on_requested(self, conn: asyncpg.Connection, envelope: Envelope) -> None:
        """Handle one ``derivative.requested`` inside the consumer's transaction on ``conn``."""
        data = envelope.data
        key = domain.requested_key(data)
        try:
            request = domain.read_request(data)
        except InvalidRequest as exc:
            await self._failed(conn, key, domain.claimed_sha256(data), exc.message)
            return
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", domain.lock_name(key)
        )
        row = await conn.fetchrow(
            "SELECT media_type, bytes, width, height FROM derivatives WHERE key = $1", key
        )
        if row is not None and await self.store.exists(key):
            await self._computed(conn, request, dict(row), cached=True)
            return
        try:
            original = await self.store.read(request.original_key)
        except BlobNotFound:
            await self._failed(
                conn,
                key,
                request.original_sha256,
                "The original image is no longer stored; upload it again",
            )
            return
        loop = asyncio.get_running_loop()
        try:
            derived, seconds = await loop.run_in_executor(
                self.executor, self._compute, original, request
            )
        except InvalidRequest as exc:
            await self._failed(conn, key, request.original_sha256, exc.message)
            return
        # Stored before the row commits: a crash in between leaves bytes the next delivery
        # overwrites with the same bytes, never a row without its bytes.
        await self.store.put(key, derived.data)
        described = {
            "media_type": derived.media_type,
            "bytes": len(derived.data),
            "width": derived.width,
            "height": derived.height,
        }
        await conn.execute(
            "INSERT INTO derivatives (key, original_sha256, canonical, media_type, bytes,"
            " width, height, worker, duration_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            " ON CONFLICT (key) DO UPDATE SET media_type = EXCLUDED.media_type,"
            " bytes = EXCLUDED.bytes, width = EXCLUDED.width, height = EXCLUDED.height,"
            " worker = EXCLUDED.worker, duration_ms = EXCLUDED.duration_ms, created_at = now()",
            key,
            request.original_sha256,
            request.transform.canonical(),
            derived.media_type,
            len(derived.data),
            derived.width,
            derived.height,
            self.worker,
            round(seconds * 1000),
        )
        log.info(
            "derivative.computed",
            key=key,
            bytes=len(derived.data),
            duration_ms=round(seconds * 1000, 1),
        )
        await self._computed(conn, request, described, cached=False)

    def _compute(self, original: bytes, request: domain.DerivativeRequest) -> tuple[Derived, float]:
        """The CPU part, in a worker thread: check the bytes are the original named, derive."""
        start = time.perf_counter()
        if hashlib.sha256(original).hexdigest() != request.original_sha256:
            # The key is named after this hash: bytes of other content must never land there.
            raise InvalidRequest("The stored original does not match its SHA-256")
        derived = derive(original, request.transform, self.limits)
        return derived, time.perf_counter() - start

    async def _computed(
        self,
        conn: asyncpg.Connection,
        request: domain.DerivativeRequest,
        described: dict[str, Any],
        *,
        cached: bool,
    ) -> None:
        await record_event(
            conn,
            DERIVATIVE_COMPUTED,
            {
                "key": request.key,
                "original_sha256": request.original_sha256,
                **described,
                "worker": self.worker,
                "cached": cached,
            },
        )

    async def _failed(
        self, conn: asyncpg.Connection, key: str, sha256: str | None, message: str
    ) -> None:
        log.info("derivative.failed", key=key, reason=message)
        await record_event(
            conn,
            DERIVATIVE_FAILED,
            {
                "key": key,
                "original_sha256": sha256,
                "code": InvalidRequest.code,
                "message": message,
            },
        )


#: The derivative works of a running app (set while its worker pool is open).
DERIVATIVES = web.AppKey("processing.derivatives", DerivativeWorks)


def worker_name() -> str:
    """``<hostname>:<pid>`` of this process, as events and rows name who computed."""
    return f"{socket.gethostname()}:{os.getpid()}"


def subscriptions(app: web.Application, config: ProcessingConfig) -> tuple[Subscription, ...]:
    """Processing's subscriptions for ``app``; handlers find the app's state when they run
    (it is opened before the consumers start)."""

    async def derivative_requested(conn: asyncpg.Connection, envelope: Envelope) -> None:
        await app[DERIVATIVES].on_requested(conn, envelope)

    return (
        Subscription(
            DERIVATIVES_CONSUMER,
            (DERIVATIVE_REQUESTED,),
            derivative_requested,
            prefetch=config.workers,
        ),
    )
