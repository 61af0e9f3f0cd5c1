"""Processing's worker threads (:class:`services.processing.works.WorkerThreads`): a job reads
its inputs only once a thread is free for it, so however many callers wait, at most ``workers``
originals are held; a caller gone before its turn leaves no job run and no slot taken."""

from __future__ import annotations

import asyncio
import threading

from services.processing.transforms import Limits
from services.processing.works import WorkerThreads, Works
from shared.metrics import Metrics
from shared.storage import LocalBlobStore

WORKERS = 2


class CountingStore(LocalBlobStore):
    """The local store, counting the blobs it has handed out."""

    reads = 0

    async def read(self, key: str) -> bytes:
        data = await super().read(key)
        self.reads += 1
        return data


class Gate:
    """A job that holds its thread until the test opens the gate, noting what it got."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.started: list[bytes] = []
        self._lock = threading.Lock()

    def __call__(self, original: bytes, tag: str) -> str:
        with self._lock:
            self.started.append(original)
        self.opened.wait(10)
        return tag


async def until(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def skipped(metrics: Metrics) -> float:
    return metrics.jobs_skipped.labels("processing", "job")._value.get()


async def works_on(tmp_path) -> tuple[Works, CountingStore, WorkerThreads, Metrics]:
    store = CountingStore(tmp_path)
    for index in range(8):
        await store.put(f"sha256/{index:064x}", bytes([index]) * 1000)
    threads = WorkerThreads(WORKERS)
    metrics = Metrics("processing")
    return Works(store, threads, Limits(max_pixels=10**8), "test", metrics), store, threads, metrics


def start(works: Works, gate: Gate, indexes) -> list[asyncio.Future]:
    """One job per index, each reading the blob of that index."""
    return [
        asyncio.ensure_future(works.run(gate, str(i), reading=(f"sha256/{i:064x}",)))
        for i in indexes
    ]


async def test_waiting_jobs_hold_nothing_read_until_a_thread_is_free(tmp_path):
    works, store, threads, _ = await works_on(tmp_path)
    gate = Gate()
    try:
        jobs = start(works, gate, range(8))
        await until(lambda: len(gate.started) == WORKERS)
        await asyncio.sleep(0.2)  # time for any read that would run ahead of its thread
        assert store.reads == WORKERS
        gate.opened.set()
        results = await asyncio.gather(*jobs)
    finally:
        gate.opened.set()
        threads.shutdown()
    assert [tag for tag, _seconds in results] == [str(i) for i in range(8)]
    assert store.reads == 8
    # Each job got its own original.
    assert sorted(original[0] for original in gate.started) == list(range(8))


async def test_a_caller_gone_before_its_turn_leaves_no_job_and_no_slot_taken(tmp_path):
    works, store, threads, metrics = await works_on(tmp_path)
    gate = Gate()
    try:
        running = start(works, gate, range(WORKERS))
        await until(lambda: len(gate.started) == WORKERS)
        (waiting,) = start(works, gate, (7,))
        await asyncio.sleep(0.1)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        assert skipped(metrics) == 1
        gate.opened.set()
        await asyncio.gather(*running)
        # Both slots came back: two more jobs run side by side.
        later = Gate()
        more = start(works, later, (2, 3))
        await until(lambda: len(later.started) == WORKERS)
        later.opened.set()
        await asyncio.gather(*more)
    finally:
        gate.opened.set()
        threads.shutdown()
    assert bytes([7]) * 1000 not in gate.started  # the job of the caller who left never ran
    assert store.reads == 4
