"""What every kind of image job in processing shares: the blob store, the worker threads
libvips runs in, the limits on originals and this process's name."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from services.processing import memory
from services.processing.transforms import Limits
from shared.metrics import Metrics
from shared.storage import BlobStore

T = TypeVar("T")

#: What a request for an original the store no longer has is told.
MISSING_ORIGINAL = "The original image is no longer stored; upload it again"


class WorkerThreads:
    """The threads image jobs run in, with a slot for each.

    A job takes a slot before its inputs are read and gives it back when its thread is done
    with it, so jobs waiting for a thread wait with nothing read: at most ``count`` jobs' inputs
    are in memory, however many callers wait. (Read first, 16 callers of 12 MP thumbnails on 2
    threads held up to 16 originals of 4 MB: the bench's peak RSS at 16 callers went from
    181-200 to 126-134 MB with this change.) When the last running job ends, the allocator's
    free pages may go back to the system (:class:`services.processing.memory.Trimmer`).
    """

    def __init__(self, count: int) -> None:
        self.executor = ThreadPoolExecutor(max_workers=count, thread_name_prefix="vips")
        self.slots = asyncio.Semaphore(count)
        self._trimmer = memory.Trimmer()
        self._lock = threading.Lock()
        self._running = 0

    def submit(self, job: Callable[[], T]) -> Future[T]:
        """Start ``job`` in a thread for a caller that holds a slot; the slot is given back when
        the job has run (or was cancelled before it started)."""
        loop = asyncio.get_running_loop()

        def done(future: Future[T]) -> None:
            # In the job's thread (or the loop's, for a job cancelled before it started).
            with self._lock:
                self._running -= 1
                idle = self._running == 0
            try:
                loop.call_soon_threadsafe(self.slots.release)
                if idle and not future.cancelled():
                    # A job of its own, so that the result this callback runs beside is
                    # delivered at once rather than after the trim.
                    self.executor.submit(self._trimmer)
            except RuntimeError:
                pass  # shutting down: the loop is closed or the threads take no more jobs

        running = self.executor.submit(job)
        with self._lock:
            self._running += 1
        running.add_done_callback(done)
        return running

    def shutdown(self) -> None:
        """Wait for the running jobs to finish, then end the threads."""
        self.executor.shutdown(wait=True)


def _timed(job: Callable[..., T], blobs: list[bytes], args: tuple[Any, ...]) -> tuple[T, float]:
    start = time.perf_counter()
    result = job(*blobs, *args)
    seconds = time.perf_counter() - start
    # Dropped here, before the thread gives back its slot (and trims), rather than whenever the
    # waiting coroutine next runs.
    blobs.clear()
    return result, seconds


class Works:
    """The shared equipment of one kind of job. Originals are read by their content key and
    trusted: bytes under ``sha256/<hash>`` were hashed by ingest when it wrote them
    (:mod:`shared.store_keys`), so no job hashes them again."""

    #: The ``operation`` label of this kind of job's durations.
    operation = "job"

    def __init__(
        self,
        store: BlobStore,
        threads: WorkerThreads,
        limits: Limits,
        worker: str,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.threads = threads
        self.limits = limits
        self.worker = worker
        self.metrics = metrics

    async def run(
        self, job: Callable[..., T], *args: Any, reading: Sequence[str] = ()
    ) -> tuple[T, float]:
        """``job(*blobs, *args)`` in a worker thread, where ``blobs`` are the bytes stored at
        the keys ``reading``; its result and how many seconds it took there.

        The blobs are read once a thread is free for the job (:class:`WorkerThreads`); a key
        with no blob raises :class:`shared.storage.BlobNotFound`. Cancelled while it still
        waits for a thread or its blobs, the job never runs (nobody wants it any more); once
        running, it finishes in its thread and its result is dropped.
        """
        slots = self.threads.slots
        try:
            await slots.acquire()
        except asyncio.CancelledError:
            self._skipped()
            raise
        try:
            blobs = [await self.store.read(key) for key in reading]
            running = self.threads.submit(partial(_timed, job, blobs, args))
        except BaseException as exc:
            slots.release()
            if isinstance(exc, asyncio.CancelledError):
                self._skipped()
            raise
        try:
            result, seconds = await asyncio.wrap_future(running)
        except asyncio.CancelledError:
            # Still waiting for its thread to pick it up: it never starts.
            if running.cancel():
                self._skipped()
            raise
        if self.metrics is not None:
            self.metrics.job_done(self.operation, seconds)
        return result, seconds

    def _skipped(self) -> None:
        if self.metrics is not None:
            self.metrics.job_skipped(self.operation)
