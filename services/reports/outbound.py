"""Durable outbound HTTP deliveries, shared by what reports posts to addresses its customers
chose (commit statuses, webhooks): one guarded sender, one reading of the answer's
back-off headers, one back-off with jitter, and one wake-up loop.

A delivery is a row written in the transaction of the change it reports (the outbox rule);
a :class:`DeliveryLoop` in every reports replica claims due rows (``FOR UPDATE SKIP LOCKED``),
posts them with a :class:`Sender` and records each attempt. The loop wakes on a Postgres
NOTIFY from the recording transaction's commit, at the earliest retry that is due, and at
least every poll interval (a missed notification costs at most that).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import asyncpg
from yarl import URL

from shared import remote
from shared.errors import InvalidRequest
from shared.logging import get_logger

log = get_logger("darkroom.reports.outbound")

#: Most of an answer's body read (an error message is short; the rest is dropped unread).
ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True)
class Answer:
    """What one attempt got: the HTTP status and headers, or why there was none."""

    status: int | None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    #: Why no usable answer came (connection, timeout, size); None when one did.
    error: str | None = None
    #: True when the SSRF guard refused the destination: retrying cannot help.
    address_refused: bool = False

    def message(self) -> str:
        """A one-line excerpt of the answer's error message (JSON ``message``, else text)."""
        text = self.body[:2000].decode("utf-8", "replace").strip()
        with contextlib.suppress(ValueError, AttributeError):
            parsed = json.loads(text)
            if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
                text = parsed["message"]
        return " ".join(text.split())[:300]


class Sender:
    """Posts JSON to customer-chosen URLs through the SSRF guard (:mod:`shared.remote`), with a
    whole-request timeout and a cap on the answer read; never follows a redirect (a token
    must not travel to wherever an answer points)."""

    def __init__(
        self,
        allowed_networks: tuple[remote.IPNetwork, ...],
        timeout_seconds: float,
        max_bytes: int = ANSWER_BYTES,
    ) -> None:
        self.allowed_networks = allowed_networks
        self.timeout_seconds = timeout_seconds
        self.max_bytes = max_bytes
        self._session: aiohttp.ClientSession | None = None

    async def post_json(self, url: str, headers: Mapping[str, str], body: Any) -> Answer:
        """POST ``body`` as JSON to ``url``; every failure is an :class:`Answer`, never raised."""
        data = json.dumps(body).encode()
        return await self.post(url, {"Content-Type": "application/json", **headers}, data)

    async def post(self, url: str, headers: Mapping[str, str], data: bytes) -> Answer:
        """POST ``data`` as it is (a signed body must arrive byte for byte) to ``url``; every
        failure is an :class:`Answer`, never raised."""
        try:
            target = URL(url)
            remote.check_url(target, self.allowed_networks)
        except InvalidRequest as exc:
            return Answer(None, error=unprefixed(exc.message), address_refused=True)
        except ValueError:
            return Answer(None, error=f"not a valid URL: {url[:200]}", address_refused=True)
        if self._session is None:
            self._session = remote.guarded_session(
                self.allowed_networks, self.timeout_seconds, {"Accept": "application/json"}
            )
        try:
            async with asyncio.timeout(self.timeout_seconds):
                async with self._session.post(
                    target, data=data, headers=dict(headers), allow_redirects=False
                ) as response:
                    data = await response.content.read(self.max_bytes)
                    return Answer(response.status, dict(response.headers), data)
        except TimeoutError:
            return Answer(None, error=f"no answer within {self.timeout_seconds:g} s")
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, remote.AddressRefused):
                return Answer(
                    None,
                    error=f"address {exc.os_error.address} of {target.host} is not allowed",
                    address_refused=True,
                )
            return Answer(None, error=f"cannot connect to {target.host} port {target.port}")
        except aiohttp.ClientError as exc:
            return Answer(None, error=f"{target.host} broke off ({type(exc).__name__})")

    async def close(self) -> None:
        """Close the session; the sender is not used after this."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def unprefixed(message: str) -> str:
    """A refusal of :func:`shared.remote.check_url` without its ``remote_file_url: `` prefix
    (here the URL is a provider's or a webhook receiver's)."""
    return message.removeprefix("remote_file_url: ")


def retry_after(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds an answer's ``Retry-After`` asks to wait (delta-seconds or an HTTP date), or
    None when it has none that parses."""
    raw = header(headers, "retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    if raw.isdigit():
        return float(raw)
    with contextlib.suppress(TypeError, ValueError, IndexError):
        when = parsedate_to_datetime(raw)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - now).total_seconds())
    return None


def reset_after(headers: Mapping[str, str], name: str, now: datetime) -> float | None:
    """Seconds until the epoch time in header ``name`` (GitHub's ``x-ratelimit-reset``,
    GitLab's ``ratelimit-reset``), or None."""
    raw = header(headers, name)
    if raw is None or not raw.strip().isdigit():
        return None
    return max(0.0, float(raw.strip()) - now.timestamp())


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value by case-insensitive name (answers are stored as plain dicts)."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def backoff(attempt: int, first: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds before retry ``attempt`` (1 for the first retry): exponential from ``first`` up
    to ``cap``, with "equal jitter" (half fixed, half random) so replicas that failed together
    do not retry together, yet no retry comes sooner than half its step."""
    step = min(cap, first * 2 ** max(0, attempt - 1))
    return step / 2 + (rng or random).uniform(0, step / 2)


class DeliveryLoop:
    """Runs ``deliver`` (one batch of due deliveries; returns the seconds until the next one is
    due, or None when none waits) whenever a NOTIFY on ``channel`` + ``_`` + schema arrives,
    when the next delivery falls due, and at least every ``poll_seconds``."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        dsn: str,
        channel: str,
        deliver: Callable[[], Awaitable[float | None]],
        poll_seconds: float,
        what: str,
    ) -> None:
        self.pool = pool
        self.dsn = dsn
        self.channel = channel
        self.deliver = deliver
        self.poll_seconds = poll_seconds
        self.what = what
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._listener: asyncpg.Connection | None = None

    async def start(self) -> None:
        """Listen (best effort: polling still delivers without it) and start the loop."""
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            async with self.pool.acquire() as conn:
                schema = await conn.fetchval("SELECT current_schema()")
            self._listener = await asyncpg.connect(
                self.dsn, server_settings={"application_name": f"darkroom-{self.what}"}
            )
            await self._listener.add_listener(f"{self.channel}_{schema}", self._notified)
        self._task = asyncio.create_task(self._run(), name=self.what)

    def _notified(self, *_args: object) -> None:
        self._wake.set()

    async def _run(self) -> None:
        failures = 0
        while True:
            self._wake.clear()
            try:
                due_in = await self.deliver()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.exception(f"{self.what}.failed")
                due_in = min(self.poll_seconds, 0.5 * 2**failures)
            wait = self.poll_seconds if due_in is None else max(0.0, min(due_in, self.poll_seconds))
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)

    async def stop(self) -> None:
        """Stop the loop (a post in flight is abandoned: its lease lets another replica retry
        it) and the listener."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
