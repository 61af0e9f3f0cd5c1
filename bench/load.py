"""The bounded load generator every load scenario uses: a fixed number of calls, at most
``concurrency`` in flight, each call timed; and interleaving of contenders in chunks so machine
drift lands on all of them alike."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


async def load(
    call: Callable[[], Awaitable[object]], requests: int, concurrency: int
) -> tuple[list[float], float]:
    """``requests`` calls of ``call``, at most ``concurrency`` at once; each call's latency
    (seconds) and the wall time of the whole batch."""
    latencies: list[float] = []
    remaining = iter(range(requests))

    async def worker() -> None:
        for _ in remaining:
            start = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - start


@dataclass
class Tally:
    """What one contender accumulated over its chunks."""

    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    peak_rss_mb: float | None = None


async def interleave(
    contenders: dict[str, Callable[[], Awaitable[object]]],
    requests: int,
    concurrency: int,
    *,
    chunk: int | None = None,
    before_chunk: Callable[[str], None] | None = None,
    after_chunk: Callable[[str], float | None] | None = None,
) -> dict[str, Tally]:
    """Each contender ``requests`` calls at ``concurrency``, in chunks taken in turn (A, B, C,
    A, B, C …). ``before_chunk``/``after_chunk`` are told the contender's name around each
    chunk (to reset and read a peak RSS, say); what ``after_chunk`` returns is kept as the
    contender's peak (the largest seen)."""
    size = chunk or max(concurrency * 2, requests // 3)
    tallies = {name: Tally() for name in contenders}
    done = 0
    while done < requests:
        step = min(size, requests - done)
        for name, call in contenders.items():
            if before_chunk is not None:
                before_chunk(name)
            latencies, wall = await load(call, step, concurrency)
            tally = tallies[name]
            tally.latencies += latencies
            tally.wall += wall
            if after_chunk is not None:
                peak = after_chunk(name)
                if peak is not None:
                    tally.peak_rss_mb = max(tally.peak_rss_mb or 0.0, peak)
        done += step
    return tallies
