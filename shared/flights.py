"""Concurrent work a caller waits on. Single-flight: one computation per key at a time, shared
by every caller that asks for that key while it runs, and shed when the last of them stops
waiting; and :func:`gather_all`, all of several jobs or none.

Used wherever a caller holds a connection open for something expensive that others may ask for
at the same moment (a derivative: ingest's callers share one call to processing, processing's
callers share one libvips job).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Generic, TypeVar

from shared import errors

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class _Flight(Generic[T]):
    __slots__ = ("task", "waiters")

    def __init__(self, task: asyncio.Task[T]) -> None:
        self.task = task
        self.waiters = 0


class SingleFlight(Generic[K, T]):
    """The computations in flight, by key.

    ``most`` bounds how many distinct keys may be in flight at once: a caller asking for a new
    key past it gets :class:`shared.errors.Unavailable` (503, ``retry_after`` seconds) at once,
    so a burst is shed instead of queued past its callers' patience. A caller joining a key
    already in flight is never refused.
    """

    def __init__(self, most: int | None = None, *, retry_after: int = 1) -> None:
        self.most = most
        self.retry_after = retry_after
        self._flights: dict[K, _Flight[T]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def __contains__(self, key: object) -> bool:
        return key in self._flights

    async def run(self, key: K, start: Callable[[], Awaitable[T]]) -> T:
        """The result of the computation of ``key``: the one in flight, or ``start()`` begun now.

        The computation runs in its own task: a caller cancelled (its client went away, it timed
        out) stops waiting without disturbing the others; when the last caller stops waiting
        before it is done, it is cancelled. Its exception, if any, reaches every caller.
        """
        flight = self._flights.get(key)
        if flight is None:
            if self.most is not None and len(self._flights) >= self.most:
                raise errors.Unavailable(
                    "Too much image work in flight; try again", retry_after=self.retry_after
                )
            flight = _Flight(asyncio.ensure_future(start()))
            self._flights[key] = flight
            flight.task.add_done_callback(lambda _task, f=flight: self._landed(key, f))
        flight.waiters += 1
        try:
            return await asyncio.shield(flight.task)
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                flight.task.cancel()
                self._landed(key, flight)

    def _landed(self, key: K, flight: _Flight[T]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if flight.task.done() and not flight.task.cancelled():
            # Retrieved here so that a failure nobody awaited any more is not logged as lost.
            flight.task.exception()

    async def close(self) -> None:
        """Cancel every computation in flight and wait for them to end."""
        tasks = [flight.task for flight in self._flights.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def gather_all(jobs: Iterable[Awaitable[T]]) -> list[T]:
    """Every job's result, run concurrently; when one fails, the others are cancelled (and
    awaited, so none outlives the caller's transaction or request) and its exception raised as
    it is."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
