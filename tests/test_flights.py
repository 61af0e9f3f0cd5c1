"""shared.flights.SingleFlight: one computation per key, shared, shed when nobody waits."""

from __future__ import annotations

import asyncio

import pytest

from shared import errors
from shared.flights import SingleFlight


async def test_callers_of_one_key_share_one_computation() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    started = 0
    release = asyncio.Event()

    async def compute() -> int:
        nonlocal started
        started += 1
        await release.wait()
        return 42

    waiting = [asyncio.ensure_future(flights.run("k", compute)) for _ in range(5)]
    await asyncio.sleep(0)
    assert "k" in flights and len(flights) == 1
    release.set()
    assert await asyncio.gather(*waiting) == [42] * 5
    assert started == 1 and len(flights) == 0
    # Done and forgotten: the next caller computes again.
    assert await flights.run("k", compute) == 42 and started == 2


async def test_a_caller_leaving_does_not_cancel_the_others_but_the_last_one_does() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    cancelled = asyncio.Event()
    release = asyncio.Event()

    async def compute() -> str:
        try:
            await release.wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "done"

    first = asyncio.ensure_future(flights.run("k", compute))
    second = asyncio.ensure_future(flights.run("k", compute))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    assert not cancelled.is_set() and "k" in flights
    second.cancel()
    await asyncio.wait_for(cancelled.wait(), 1)
    assert "k" not in flights
    with pytest.raises(asyncio.CancelledError):
        await second


async def test_a_failure_reaches_every_caller() -> None:
    flights: SingleFlight[str, int] = SingleFlight()

    async def compute() -> int:
        await asyncio.sleep(0.01)
        raise errors.InvalidRequest("not an image")

    outcomes = await asyncio.gather(
        *(flights.run("k", compute) for _ in range(3)), return_exceptions=True
    )
    assert [type(o) for o in outcomes] == [errors.InvalidRequest] * 3
    assert all(o.message == "not an image" for o in outcomes)


async def test_past_the_bound_a_new_key_is_refused_but_a_joining_caller_is_not() -> None:
    flights: SingleFlight[str, str] = SingleFlight(most=2, retry_after=3)
    release = asyncio.Event()

    async def compute() -> str:
        await release.wait()
        return "ok"

    held = [asyncio.ensure_future(flights.run(key, compute)) for key in ("a", "b")]
    await asyncio.sleep(0)
    with pytest.raises(errors.Unavailable) as refused:
        await flights.run("c", compute)
    assert refused.value.status == 503 and refused.value.retry_after == 3
    joining = asyncio.ensure_future(flights.run("a", compute))
    release.set()
    assert await asyncio.gather(*held, joining) == ["ok", "ok", "ok"]


async def test_close_cancels_every_computation_in_flight() -> None:
    flights: SingleFlight[str, None] = SingleFlight()
    waiting = [asyncio.ensure_future(flights.run(key, lambda: asyncio.sleep(60))) for key in "xyz"]
    await asyncio.sleep(0)
    await flights.close()
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(o, asyncio.CancelledError) for o in outcomes)
