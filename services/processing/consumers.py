"""Processing's event consumers: derivatives computed on request, once per key, and quality
analyses of originals, once per original and algorithm.

Replicas compete for ``derivative.requested`` on one queue and for ``analysis.requested`` on
another. On each, a replica takes at most as many deliveries as it has worker threads (the
prefetch), so a busy replica leaves the rest of the queue to the others; both kinds of job share
the replica's worker threads. A transaction-scoped advisory lock on what is computed (the
derivative's key; the original's hash and the algorithm) makes two deliveries of the same job —
on any replicas — compute it once: the second finds it recorded and answers ``cached``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import asyncpg
from aiohttp import web

from services.processing import domain, repo
from services.processing.config import ProcessingConfig
from services.processing.quality import Analysis, analyse
from services.processing.transforms import Derived, Limits, derive
from shared.analysis import (
    ALGORITHM,
    ANALYSIS_COMPLETED,
    ANALYSIS_FAILED,
    ANALYSIS_REQUESTED,
    aux_image_key,
)
from shared.derivatives import DERIVATIVE_COMPUTED, DERIVATIVE_FAILED, DERIVATIVE_REQUESTED
from shared.errors import InvalidRequest
from shared.events import Envelope, Subscription, record_event
from shared.logging import get_logger
from shared.storage import BlobNotFound, BlobStore

log = get_logger("darkroom.processing.consumers")
T = TypeVar("T")

#: The competing consumer (and queue) of derivative requests.
DERIVATIVES_CONSUMER = "processing.derivatives"
#: The competing consumer (and queue) of analysis requests.
ANALYSES_CONSUMER = "processing.analyses"


class Works:
    """What every kind of image job shares: the blob store, the worker threads libvips runs
    in, the limits on originals and this process's name."""

    def __init__(
        self, store: BlobStore, executor: ThreadPoolExecutor, limits: Limits, worker: str
    ) -> None:
        self.store = store
        self.executor = executor
        self.limits = limits
        self.worker = worker

    async def run(self, job: Callable[..., T], *args: Any) -> tuple[T, float]:
        """``job(*args)`` in a worker thread; its result and how many seconds it took there."""

        def timed() -> tuple[T, float]:
            start = time.perf_counter()
            result = job(*args)
            return result, time.perf_counter() - start

        return await asyncio.get_running_loop().run_in_executor(self.executor, timed)


def check_original(original: bytes, sha256: str) -> None:
    """Refuse bytes that are not the original named: what is computed is stored under names
    made of that hash, so bytes of other content must never land there."""
    if hashlib.sha256(original).hexdigest() != sha256:
        raise InvalidRequest("The stored original does not match its SHA-256")


#: What a request for an original the store no longer has is told.
MISSING_ORIGINAL = "The original image is no longer stored; upload it again"


class DerivativeWorks(Works):
    """Answers ``derivative.requested``: computes the derivative into the store and records
    it, or says why it cannot be made. Transient trouble (store or database down) raises, so
    the event is retried; a fact about the input is answered with ``derivative.failed``."""

    async def on_requested(self, conn: asyncpg.Connection, envelope: Envelope) -> None:
        """Handle one ``derivative.requested`` inside the consumer's transaction on ``conn``."""
        data = envelope.data
        key = domain.requested_key(data)
        try:
            request = domain.read_request(data)
        except InvalidRequest as exc:
            await self._failed(conn, key, domain.claimed_sha256(data), exc.message)
            return
        await repo.advisory_xact_lock(conn, domain.lock_name(key))
        row = await repo.derivative(conn, key)
        if row is not None and await self.store.exists(key):
            await self._computed(conn, request, row, cached=True)
            return
        try:
            original = await self.store.read(request.original_key)
        except BlobNotFound:
            await self._failed(conn, key, request.original_sha256, MISSING_ORIGINAL)
            return
        try:
            derived, seconds = await self.run(self._compute, original, request)
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
        await repo.record_derivative(
            conn,
            key=key,
            original_sha256=request.original_sha256,
            canonical=request.transform.canonical(),
            described=described,
            worker=self.worker,
            duration_ms=round(seconds * 1000),
        )
        log.info(
            "derivative.computed",
            key=key,
            bytes=len(derived.data),
            duration_ms=round(seconds * 1000, 1),
        )
        await self._computed(conn, request, described, cached=False)

    def _compute(self, original: bytes, request: domain.DerivativeRequest) -> Derived:
        """The CPU part, in a worker thread: check the bytes are the original named, derive."""
        check_original(original, request.original_sha256)
        return derive(original, request.transform, self.limits)

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


class AnalysisWorks(Works):
    """Answers ``analysis.requested``: analyses the original (:mod:`services.processing.quality`),
    stores its aux images and records the analysis, or says why it cannot be analysed at all.

    An analysis depends only on the original's bytes and :data:`ALGORITHM`, so one recorded
    earlier (for any image with the same bytes) answers the request while its aux images are
    still stored. An unreadable original is a completed analysis with the ``undecodable``
    problem; ``analysis.failed`` is for a missing original or a malformed request. Transient
    trouble (store or database down) raises, so the event is retried.
    """

    async def on_requested(self, conn: asyncpg.Connection, envelope: Envelope) -> None:
        """Handle one ``analysis.requested`` inside the consumer's transaction on ``conn``."""
        data = envelope.data
        image_id = domain.requested_image_id(data)
        try:
            request = domain.read_analysis_request(data)
        except InvalidRequest as exc:
            await self._failed(conn, image_id, domain.claimed_sha256(data), exc.message)
            return
        sha256 = request.original_sha256
        await repo.advisory_xact_lock(conn, domain.analysis_lock_name(sha256, ALGORITHM))
        row = await repo.analysis(conn, sha256, ALGORITHM)
        if row is not None and await self._all_stored(row["aux"]):
            await self._completed(conn, request, row["result"], row["aux"], cached=True)
            return
        try:
            original = await self.store.read(request.original_key)
        except BlobNotFound:
            await self._failed(conn, image_id, sha256, MISSING_ORIGINAL)
            return
        try:
            analysis, seconds = await self.run(self._compute, original, sha256)
        except InvalidRequest as exc:
            await self._failed(conn, image_id, sha256, exc.message)
            return
        # Stored before the row commits: a crash in between leaves bytes the next delivery
        # overwrites with the same bytes, never a row without its bytes.
        aux = []
        for image in analysis.aux_images:
            key = aux_image_key(sha256, image.aux_image_type)
            await self.store.put(key, image.data)
            aux.append(
                {
                    "aux_image_type": image.aux_image_type,
                    "algo_app": ALGORITHM,
                    "key": key,
                    "media_type": image.media_type,
                    "bytes": len(image.data),
                    "width": image.width,
                    "height": image.height,
                }
            )
        result = analysis.summary()
        await repo.record_analysis(
            conn,
            sha256=sha256,
            algorithm=ALGORITHM,
            result=result,
            aux=aux,
            worker=self.worker,
            duration_ms=round(seconds * 1000),
        )
        log.info(
            "analysis.completed",
            sha256=sha256,
            score=analysis.quality_score,
            problems=analysis.problems,
            issues=analysis.quality_issues,
            duration_ms=round(seconds * 1000, 1),
        )
        await self._completed(conn, request, result, aux, cached=False)

    def _compute(self, original: bytes, sha256: str) -> Analysis:
        """The CPU part, in a worker thread: check the bytes are the original named, analyse."""
        check_original(original, sha256)
        return analyse(original, self.limits)

    async def _all_stored(self, aux: list[dict[str, Any]]) -> bool:
        for image in aux:
            if not await self.store.exists(image["key"]):
                return False
        return True

    async def _completed(
        self,
        conn: asyncpg.Connection,
        request: domain.AnalysisRequest,
        result: dict[str, Any],
        aux: list[dict[str, Any]],
        *,
        cached: bool,
    ) -> None:
        await record_event(
            conn,
            ANALYSIS_COMPLETED,
            {
                "image_id": request.image_id,
                "original_sha256": request.original_sha256,
                "algorithm": ALGORITHM,
                **result,
                "aux_images": aux,
                "worker": self.worker,
                "cached": cached,
            },
        )

    async def _failed(
        self, conn: asyncpg.Connection, image_id: str, sha256: str | None, message: str
    ) -> None:
        log.info("analysis.failed", image_id=image_id, sha256=sha256, reason=message)
        await record_event(
            conn,
            ANALYSIS_FAILED,
            {
                "image_id": image_id,
                "original_sha256": sha256,
                "code": InvalidRequest.code,
                "message": message,
            },
        )


#: The derivative and analysis works of a running app (set while its worker pool is open).
DERIVATIVES = web.AppKey("processing.derivatives", DerivativeWorks)
ANALYSES = web.AppKey("processing.analyses", AnalysisWorks)


def worker_name() -> str:
    """``<hostname>:<pid>`` of this process, as events and rows name who computed."""
    return f"{socket.gethostname()}:{os.getpid()}"


def subscriptions(app: web.Application, config: ProcessingConfig) -> tuple[Subscription, ...]:
    """Processing's subscriptions for ``app``; handlers find the app's state when they run
    (it is opened before the consumers start)."""

    async def derivative_requested(conn: asyncpg.Connection, envelope: Envelope) -> None:
        await app[DERIVATIVES].on_requested(conn, envelope)

    async def analysis_requested(conn: asyncpg.Connection, envelope: Envelope) -> None:
        await app[ANALYSES].on_requested(conn, envelope)

    return (
        Subscription(
            DERIVATIVES_CONSUMER,
            (DERIVATIVE_REQUESTED,),
            derivative_requested,
            prefetch=config.workers,
        ),
        Subscription(
            ANALYSES_CONSUMER,
            (ANALYSIS_REQUESTED,),
            analysis_requested,
            prefetch=config.workers,
        ),
    )
