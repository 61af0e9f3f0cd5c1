"""The gateway's rate limiter: budgets every replica shares in Redis, or this process's memory.

Built on the ``limits`` library's moving window: a budget of ``count`` requests per ``period``
seconds admits a request when fewer than ``count`` were admitted in the ``period`` seconds
before it, so no span of ``period`` seconds ever holds more than ``count`` (the Progimage seed's
"20 requests per 5 s", exactly). A refused caller is told to retry when the oldest request in
the window ages out of it. In Redis one Lua script checks and records atomically, so replicas
racing on one budget never admit more than it between them. Fixed windows would admit twice the
budget across a window's edge; the sliding window counter only estimates the previous window's
share; a token bucket (what the gateway kept before) admits a full bucket plus its refill, up
to twice the budget in the first period.

Without ``REDIS_URL`` the same strategy counts in memory, which is right for one gateway.

When Redis fails (refused, reset, or slower than ``redis_timeout``) the gateway **fails open to
its own memory**: it keeps answering and each replica enforces every budget by itself, so for
the outage a caller may get up to the budget times the replicas. Failing closed would turn a
Redis outage into a whole-API outage for a control that protects capacity, not data; failing
open with no limit at all would leave each replica unprotected. A failed Redis is left alone for
``_RETRY_SECONDS`` (one request then probes it), so a hung server costs one short timeout per
probe rather than one per request; a warning is logged at most every ``_WARN_SECONDS``, and the
shared budgets come back by themselves with Redis.
"""

from __future__ import annotations

import asyncio
import functools
import time

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from shared.logging import get_logger

log = get_logger("darkroom.gateway.limits")

#: Seconds a failed Redis is left alone before one request tries it again.
_RETRY_SECONDS = 1.0
#: At most one warning per this many seconds while Redis stays down.
_WARN_SECONDS = 30.0
#: The least wait told to a refused caller (the window may free a slot as it is computed).
_LEAST_WAIT = 0.001


@functools.lru_cache(maxsize=64)
def _item(count: int, period: float) -> RateLimitItem:
    return RateLimitItemPerSecond(count, int(period))


class Limiter:
    """Spends requests from per-key budgets: in Redis at ``redis_url`` when set (keys under
    ``prefix``, each call bounded by ``timeout`` seconds), else in memory."""

    def __init__(self, redis_url: str = "", prefix: str = "darkroom", timeout: float = 0.25):
        self.timeout = timeout
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._pool = None
        self._shared: MovingWindowRateLimiter | None = None
        if redis_url:
            import coredis  # only a gateway with Redis needs the client

            # Our own pool: its timeouts are ours, no retries (a retry would triple the wait of
            # a request on a hung server), and cleanup can close it.
            self._pool = coredis.ConnectionPool.from_url(
                redis_url, stream_timeout=timeout, connect_timeout=timeout
            )
            storage = RedisStorage(
                "async+" + redis_url,
                connection_pool=self._pool,
                key_prefix=f"{prefix}:ratelimit",
                wrap_exceptions=True,
            )
            self._shared = MovingWindowRateLimiter(storage)
        self._down_until = 0.0  # monotonic time before which Redis is not tried
        self._down_since: float | None = None
        self._warned_at = -_WARN_SECONDS

    @property
    def shared(self) -> bool:
        """True when budgets are kept in Redis and Redis answered last time it was asked."""
        return self._shared is not None and self._down_since is None

    async def take(self, key: str, count: int, period: float) -> float:
        """Spend one request of ``key``'s budget of ``count`` per ``period`` seconds; returns 0
        when allowed, else the seconds until one more would be."""
        item = _item(count, period)
        now = time.monotonic()
        if self._shared is not None and now >= self._down_until:
            if self._down_since is not None:
                self._down_until = now + _RETRY_SECONDS  # this request alone probes
            try:
                async with asyncio.timeout(self.timeout):
                    wait = await _spend(self._shared, item, key)
            except (StorageError, TimeoutError, OSError) as exc:
                self._failed(exc, now)
            else:
                self._recovered(now)
                return wait
        return await _spend(self._local, item, key)

    async def close(self) -> None:
        """Close the Redis connections (at the gateway's shutdown)."""
        if self._pool is not None:
            self._pool.disconnect()

    def _failed(self, exc: BaseException, now: float) -> None:
        self._down_until = now + _RETRY_SECONDS
        if self._down_since is None:
            self._down_since = now
        if now - self._warned_at >= _WARN_SECONDS:
            self._warned_at = now
            log.warning(
                "redis_unavailable_counting_locally",
                error=f"{type(exc).__name__}: {exc}"[:200],
                down_for=round(now - self._down_since, 1),
            )

    def _recovered(self, now: float) -> None:
        self._down_until = 0.0
        if self._down_since is not None:
            log.info("redis_back_budgets_shared", down_for=round(now - self._down_since, 1))
            self._down_since = None


async def _spend(limiter: MovingWindowRateLimiter, item: RateLimitItem, key: str) -> float:
    if await limiter.hit(item, key):
        return 0.0
    reset, _remaining = await limiter.get_window_stats(item, key)
    return max(_LEAST_WAIT, reset - time.time())
