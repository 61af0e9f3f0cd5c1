"""Processing's event consumers: the work that must survive a crash with nobody waiting —
quality analyses of originals, once per original and algorithm, and pixel diffs of the pairs of
a comparison, once per pair and options. (Derivatives, which someone waits on, are answered
directly: :mod:`services.processing.deriving`.)

Replicas compete for ``analysis.requested`` on one queue and for ``comparison.requested`` on
another. On each, a replica takes at most as many deliveries as it has worker threads (the
prefetch), so a busy replica leaves the rest of the queue to the others; every kind of job
shares the replica's worker threads. A transaction-scoped advisory lock on what is computed
(the original's hash and the algorithm) makes two deliveries of the same analysis — on any
replicas — compute it once: the second finds it recorded and answers ``cached``. Pixel diffs
take no lock (see :class:`ComparisonWorks`).
"""

from __future__ import annotations

import asyncio
import time
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
from aiohttp import web

from services.processing import domain, repo
from services.processing.config import ProcessingConfig
from services.processing.quality import analyse
from services.processing.works import MISSING_ORIGINAL, Works
from shared.analysis import (
    ALGORITHM,
    ANALYSIS_COMPLETED,
    ANALYSIS_FAILED,
    ANALYSIS_REQUESTED,
    aux_image_key,
)
from shared.comparisons import COMPARISON_DIFFED, COMPARISON_REQUESTED, diff_key
from shared.errors import InvalidRequest
from shared.events import Envelope, Subscription, record_event
from shared.flights import gather_all
from shared.logging import get_logger
from shared.storage import BlobNotFound

if TYPE_CHECKING:
    from services.processing.diffs import DiffOptions, PixelDiff
    from services.processing.transforms import Limits

log = get_logger("darkroom.processing.consumers")
T = TypeVar("T")


def _diffs() -> ModuleType:
    """:mod:`services.processing.diffs`, imported with the first comparison: it needs numpy,
    ~14 MB of resident memory a process that only makes derivatives never uses."""
    from services.processing import diffs

    return diffs


def diff_images(before: bytes, after: bytes, options: DiffOptions, limits: Limits) -> PixelDiff:
    """:func:`services.processing.diffs.diff_images` (imported by :func:`_diffs`)."""
    return _diffs().diff_images(before, after, options, limits)


#: The competing consumer (and queue) of analysis requests.
ANALYSES_CONSUMER = "processing.analyses"
#: The competing consumer (and queue) of comparison requests.
COMPARISONS_CONSUMER = "processing.comparisons"


class AnalysisWorks(Works):
    """Answers ``analysis.requested``: analyses the original (:mod:`services.processing.quality`),
    stores its aux images and records the analysis, or says why it cannot be analysed at all.

    An analysis depends only on the original's bytes and :data:`ALGORITHM`, so one recorded
    earlier (for any image with the same bytes) answers the request while its aux images are
    still stored. An unreadable original is a completed analysis with the ``undecodable``
    problem; ``analysis.failed`` is for a missing original or a malformed request. Transient
    trouble (store or database down) raises, so the event is retried.
    """

    operation = "analyse"

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
            analysis, seconds = await self.run(
                analyse, self.limits, reading=(request.original_key,)
            )
        except BlobNotFound:
            await self._failed(conn, image_id, sha256, MISSING_ORIGINAL)
            return
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


#: What a pair whose image the store no longer has is told (``side``: before or after).
MISSING_IMAGE = "The {side} image is no longer stored; upload it again"


class ComparisonWorks(Works):
    """Answers ``comparison.requested`` (contract in :mod:`shared.comparisons`): diffs every
    pair, stores each diff PNG with a change at :func:`shared.comparisons.diff_key`, records the
    figures and announces them all in one ``comparison.diffed``.

    The pairs of one comparison are diffed concurrently, at most ``concurrency`` at a time
    (their bytes are held in memory meanwhile), in the worker threads shared with the other
    jobs. A diff depends only on the two images' bytes and the options, so one recorded earlier
    answers a pair while its diff PNG is still stored (``cached``). A pair that cannot be
    diffed — malformed, an image missing from the store, or an image
    :func:`services.processing.diffs.diff_images` refuses — carries an ``error`` and is not
    recorded. Transient trouble (store or database down) raises, so the whole
    request is retried.

    No advisory lock: a comparison may hold thousands of pairs, and a lock each would fill
    PostgreSQL's shared lock table. Two comparisons diffing the same pair at once both compute
    it, which costs CPU only: the diff is deterministic, so both write the same bytes and the
    same row.
    """

    operation = "diff"

    def __init__(self, *args: Any, concurrency: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.concurrency = concurrency

    async def on_requested(self, conn: asyncpg.Connection, envelope: Envelope) -> None:
        """Handle one ``comparison.requested`` inside the consumer's transaction on ``conn``."""
        started = time.perf_counter()
        request = domain.read_comparison_request(envelope.data)
        if request.options is None:
            results = [
                domain.error_result(pair.before_sha256, pair.after_sha256, pair.message)
                for pair in request.pairs
                if isinstance(pair, domain.MalformedPair)
            ]
            await self._diffed(conn, request, results, started)
            return
        threshold, include_anti_aliasing = request.options
        # A pair asked twice is diffed once; dict keeps the request's order.
        wanted = list(dict.fromkeys(p for p in request.pairs if isinstance(p, domain.DiffPair)))
        known = await repo.pixel_diffs(
            conn,
            [(pair.before.sha256, pair.after.sha256) for pair in wanted],
            threshold,
            include_anti_aliasing,
        )
        slots = asyncio.Semaphore(self.concurrency)
        # In a thread: importing numpy takes ~0.1-0.2 s the event loop would otherwise stall for.
        diffs = await asyncio.to_thread(_diffs)
        options = diffs.DiffOptions(threshold, include_anti_aliasing)

        async def answer(pair: domain.DiffPair) -> tuple[dict[str, Any], dict[str, Any] | None]:
            async with slots:
                return await self._answer(
                    pair, known.get((pair.before.sha256, pair.after.sha256)), options
                )

        answers = dict(zip(wanted, await gather_all(answer(pair) for pair in wanted), strict=True))
        computed = [row for _result, row in answers.values() if row is not None]
        if computed:
            await repo.record_pixel_diffs(conn, threshold, include_anti_aliasing, computed)
        results = [
            answers[pair][0]
            if isinstance(pair, domain.DiffPair)
            else domain.error_result(pair.before_sha256, pair.after_sha256, pair.message)
            for pair in request.pairs
        ]
        await self._diffed(conn, request, results, started)

    async def _answer(
        self, pair: domain.DiffPair, known: dict[str, Any] | None, options: DiffOptions
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The result of one pair, and the row to record when it was computed now."""
        if known is not None and (
            known["diff_key"] is None or await self.store.exists(known["diff_key"])
        ):
            return domain.diff_result(pair, known, cached=True), None
        try:
            diff, seconds = await self.run(
                diff_images,
                options,
                self.limits,
                reading=(pair.before.key, pair.after.key),
            )
        except BlobNotFound as exc:
            # Read before the after image: when both are missing, the message names it.
            name = "before" if exc.key == pair.before.key else "after"
            message = MISSING_IMAGE.format(side=name)
            return domain.error_result(pair.before.sha256, pair.after.sha256, message), None
        except InvalidRequest as exc:
            return domain.error_result(pair.before.sha256, pair.after.sha256, exc.message), None
        key = None
        if diff.changed_pixels:
            key = diff_key(
                pair.before.sha256,
                pair.after.sha256,
                options.threshold,
                options.include_anti_aliasing,
            )
            # Stored before the row commits: a crash in between leaves bytes the next delivery
            # overwrites with the same bytes, never a row without its bytes.
            await self.store.put(key, diff.diff_png)
        figures = {
            "changed_pixels": diff.changed_pixels,
            "total_pixels": diff.total_pixels,
            "width": diff.width,
            "height": diff.height,
            "bbox": list(diff.bbox) if diff.bbox is not None else None,
            "anti_aliased_pixels": diff.anti_aliased_pixels,
            "size_mismatch": diff.size_mismatch,
            "diff_key": key,
            "diff_bytes": len(diff.diff_png) if key is not None else None,
        }
        row = {
            "before_sha256": pair.before.sha256,
            "after_sha256": pair.after.sha256,
            **figures,
            "worker": self.worker,
            "duration_ms": round(seconds * 1000),
        }
        return domain.diff_result(pair, figures, cached=False), row

    async def _diffed(
        self,
        conn: asyncpg.Connection,
        request: domain.ComparisonRequest,
        results: list[dict[str, Any]],
        started: float,
    ) -> None:
        log.info(
            "comparison.diffed",
            comparison_id=request.comparison_id,
            pairs=len(results),
            cached=sum(1 for result in results if result["cached"]),
            errors=sum(1 for result in results if result["error"] is not None),
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        await record_event(
            conn,
            COMPARISON_DIFFED,
            {
                "comparison_id": request.comparison_id,
                "threshold": request.threshold,
                "include_anti_aliasing": request.include_anti_aliasing,
                "results": results,
                "error": request.error,
                "worker": self.worker,
            },
        )


#: The works of a running app (set while its worker pool is open).
ANALYSES = web.AppKey("processing.analyses", AnalysisWorks)
#: One per process, so its bound on pairs in flight holds across concurrent deliveries.
COMPARISONS = web.AppKey("processing.comparisons", ComparisonWorks)


def subscriptions(app: web.Application, config: ProcessingConfig) -> tuple[Subscription, ...]:
    """Processing's subscriptions for ``app``; handlers find the app's state when they run
    (it is opened before the consumers start)."""

    async def analysis_requested(conn: asyncpg.Connection, envelope: Envelope) -> None:
        await app[ANALYSES].on_requested(conn, envelope)

    async def comparison_requested(conn: asyncpg.Connection, envelope: Envelope) -> None:
        await app[COMPARISONS].on_requested(conn, envelope)

    return (
        Subscription(
            ANALYSES_CONSUMER,
            (ANALYSIS_REQUESTED,),
            analysis_requested,
            prefetch=config.workers,
        ),
        Subscription(
            COMPARISONS_CONSUMER,
            (COMPARISON_REQUESTED,),
            comparison_requested,
            prefetch=config.workers,
        ),
    )
