"""What every kind of image job in processing shares: the blob store, the worker threads
libvips runs in, the limits on originals and this process's name."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from services.processing.transforms import Limits
from shared.metrics import Metrics
from shared.storage import BlobStore

T = TypeVar("T")

#: What a request for an original the store no longer has is told.
MISSING_ORIGINAL = "The original image is no longer stored; upload it again"


class Works:
    """The shared equipment of one kind of job. Originals are read by their content key and
    trusted: bytes under ``sha256/<hash>`` were hashed by ingest when it wrote them
    (:mod:`shared.store_keys`), so no job hashes them again."""

    #: The ``operation`` label of this kind of job's durations.
    operation = "job"

    def __init__(
        self,
        store: BlobStore,
        executor: ThreadPoolExecutor,
        limits: Limits,
        worker: str,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.executor = executor
        self.limits = limits
        self.worker = worker
        self.metrics = metrics

    async def run(self, job: Callable[..., T], *args: Any) -> tuple[T, float]:
        """``job(*args)`` in a worker thread; its result and how many seconds it took there.

        Cancelled while it still waits for a thread, the job never runs (nobody wants it any
        more); once running, it finishes in its thread and its result is dropped.
        """

        def timed() -> tuple[T, float]:
            start = time.perf_counter()
            result = job(*args)
            return result, time.perf_counter() - start

        running = self.executor.submit(timed)
        try:
            result, seconds = await asyncio.wrap_future(running)
        except asyncio.CancelledError:
            # Still waiting for a thread: it never starts (counted as skipped).
            if running.cancel() and self.metrics is not None:
                self.metrics.job_skipped(self.operation)
            raise
        if self.metrics is not None:
            self.metrics.job_done(self.operation, seconds)
        return result, seconds
