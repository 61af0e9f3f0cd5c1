"""Derivatives (Progimage's variants and derived images, the hash host's thumbnails), asked of
processing by a direct call while the client waits.

Rule 2 of the design: an on-demand derivative and the variants of an upload are questions
someone holds a connection open for, so they are a signed internal ``POST`` to a processing
replica (the contract in :mod:`shared.derivatives`), and the bytes come back in the answer. No
event is written for the question; processing records the fact (``derivative.stored``).

A derivative already in the store is never asked for: its key depends only on the original and
the transform, so its presence is the answer. Callers of this process asking for the same key
share one call (:class:`shared.flights.SingleFlight`); when the last of them gives up (its client
went away, or it timed out), the call is cancelled, which closes its connection, and processing
drops the job if nobody else waits for it.

With several processing replicas (``DARKROOM_PROCESSING_URL`` lists them, comma-separated) each
call goes to the replica with the fewest calls from here in flight. A replica that cannot be
reached, or dies mid-call, is replaced by the next (a derivative is the same bytes whoever
makes it); when none answers the request fails with 503 ``unavailable``: an upload is
all-or-nothing, so its caller asks again and nothing half-made is kept.

A replica whose host is gone sends no reset: a new connection to it would wait for the SYN's
retries and a kept one for the caller's whole deadline. So a new connection gets
:data:`CONNECT_SECONDS`, and a replica that failed a call, or held one past
:data:`SLOW_CALL_SECONDS` until its caller gave up, is **set aside**: asked only when every other
is set aside too. A set-aside replica is probed in the background (``/readyz``, answered within
:data:`PROBE_SECONDS`) every :data:`PROBE_EVERY_SECONDS`; its first ready answer puts it back,
so no caller's request is spent finding out. Without this, "fewest in flight" sent each new wave
of calls to a dead replica as soon as the last wave had timed out there.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import aiohttp
from cachetools import LRUCache

from shared import errors
from shared.derivatives import DERIVATIVES_PATH, Transform, derivative_key
from shared.flights import SingleFlight, gather_all
from shared.http import ANONYMOUS, InternalClient
from shared.logging import get_logger
from shared.storage import BlobStore
from shared.store_keys import blob_key

log = get_logger("darkroom.ingest.derivations")

#: How many stored derivatives' sizes one process remembers (a few MB at most).
SIZES_CACHED = 50_000

#: Seconds a new connection to a replica may take (no SYN answered: its host is gone).
CONNECT_SECONDS = 2.0
#: A call cancelled by its caller after this long held a replica that may be gone.
SLOW_CALL_SECONDS = 5.0
#: How often a set-aside replica is asked whether it is ready, and how long it may take.
PROBE_EVERY_SECONDS, PROBE_SECONDS = 1.0, 1.0

#: What a caller is told when processing cannot be reached or answers unexpectedly.
PROCESSING_UNAVAILABLE = "Image processing is unavailable; try again"


@dataclass(frozen=True)
class DerivativeRequest:
    """One derivative wanted: an original (by hash and type) through a transform."""

    original_sha256: str
    original_media_type: str
    transform: Transform

    @property
    def key(self) -> str:
        """Where the derivative is (or will be) stored."""
        return derivative_key(self.original_sha256, self.transform)

    def body(self) -> dict:
        """What processing is asked (see :mod:`shared.derivatives`)."""
        return {
            "key": self.key,
            "original": {
                "sha256": self.original_sha256,
                "key": blob_key(self.original_sha256),
                "media_type": self.original_media_type,
            },
            "transform": self.transform.as_dict(),
        }


@dataclass(frozen=True)
class Outcome:
    """Processing's answer for one key: stored (``size`` bytes; ``data`` when it was made for
    this call, None when it was found in the store) or refused (``message``)."""

    key: str
    size: int = 0
    data: bytes | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        """True when the derivative is in the store."""
        return self.message is None


class ProcessingTimedOut(Exception):
    """Processing did not answer every request within the time allowed."""


class Derivatives:
    """Asks processing's replicas for derivatives (see the module's docstring)."""

    def __init__(self, client: InternalClient, replicas: Sequence[str], store: BlobStore) -> None:
        if not replicas:
            raise ValueError("at least one processing replica is needed")
        self.client = client
        self.replicas = list(replicas)
        self.store = store
        self.flights: SingleFlight[str, Outcome] = SingleFlight()
        # Sizes of derivatives known to be stored: immutable while their original is kept.
        self._sizes: LRUCache[str, int] = LRUCache(maxsize=SIZES_CACHED)
        self._busy = dict.fromkeys(self.replicas, 0)
        self._turns = itertools.count()
        # Replicas set aside, each with the task that probes it until it is ready again.
        self._aside: dict[str, asyncio.Task] = {}

    async def obtain(
        self, requests: Iterable[DerivativeRequest], timeout: float
    ) -> dict[str, Outcome]:
        """Make sure every requested derivative is stored; the outcome of each key.

        Raises :class:`ProcessingTimedOut` when some answer takes longer than ``timeout``
        and :class:`errors.Unavailable` when processing cannot be reached. A caller cancelled
        or timed out stops waiting; a call nobody here waits for any more is cancelled.
        """
        unique = {request.key: request for request in requests}
        try:
            async with asyncio.timeout(timeout):
                outcomes = await gather_all(
                    self.flights.run(key, lambda r=request: self._one(r))
                    for key, request in unique.items()
                )
        except TimeoutError:
            raise ProcessingTimedOut() from None
        return {outcome.key: outcome for outcome in outcomes}

    async def obtain_for_caller(
        self, requests: Iterable[DerivativeRequest], timeout: float
    ) -> dict[str, Outcome]:
        """:meth:`obtain` for a request someone waits on: past ``timeout`` it is a 503
        ``unavailable`` with ``Retry-After``, as a client is told to try again."""
        try:
            return await self.obtain(requests, timeout)
        except ProcessingTimedOut:
            raise errors.Unavailable(
                "Image processing is taking too long; try again", retry_after=5
            ) from None

    def forget(self, key: str) -> None:
        """Stop taking ``key`` as stored (its bytes were found missing)."""
        self._sizes.pop(key, None)

    async def _one(self, request: DerivativeRequest) -> Outcome:
        size = self._sizes.get(request.key)
        if size is None:
            info = await self.store.stat(request.key)
            size = info.size if info is not None else None
        if size is not None:
            self._sizes[request.key] = size
            return Outcome(request.key, size=size)
        # A derivative is the same bytes whoever makes it, so a replica that cannot be reached
        # or dies mid-call is replaced by the next one; 503 only when none answers.
        for replica in self._by_load():
            answer = await self._ask(replica, request)
            if answer is None:
                continue
            status, headers, data = answer
            if status == 200:
                self._sizes[request.key] = len(data)
                return Outcome(request.key, size=len(data), data=data)
            if status == 422:
                return Outcome(request.key, message=_message(data))
            log.warning("derivative.processing_refused", replica=replica, status=status)
            retry_after = headers.get("Retry-After", "5")
            raise errors.Unavailable(
                PROCESSING_UNAVAILABLE,
                retry_after=int(retry_after) if retry_after.isdigit() else 5,
            )
        raise errors.Unavailable(PROCESSING_UNAVAILABLE, retry_after=5)

    async def _ask(
        self, replica: str, request: DerivativeRequest
    ) -> tuple[int, Mapping[str, str], bytes] | None:
        """One replica's answer, or None when it could not be reached or died mid-call."""
        self._busy[replica] += 1
        started = time.monotonic()
        try:
            answer = await self.client.fetch(
                "POST",
                replica,
                DERIVATIVES_PATH,
                ANONYMOUS,
                json_body=request.body(),
                timeout=None,
                connect_timeout=CONNECT_SECONDS,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("derivative.processing_unreachable", replica=replica, error=repr(exc))
            self._set_aside(replica)
            return None
        except asyncio.CancelledError:
            if time.monotonic() - started >= SLOW_CALL_SECONDS:
                self._set_aside(replica)
            raise
        finally:
            self._busy[replica] -= 1
        return answer

    def _set_aside(self, replica: str) -> None:
        if replica in self._aside:
            return
        log.warning("derivative.replica_set_aside", replica=replica)
        self._aside[replica] = asyncio.create_task(self._probe(replica))

    async def _probe(self, replica: str) -> None:
        """Ask a set-aside replica whether it is ready until it is; then put it back."""
        while True:
            await asyncio.sleep(PROBE_EVERY_SECONDS)
            try:
                status, _headers, _body = await self.client.fetch(
                    "GET",
                    replica,
                    "/readyz",
                    ANONYMOUS,
                    timeout=PROBE_SECONDS,
                    connect_timeout=PROBE_SECONDS,
                )
            except (aiohttp.ClientError, OSError, TimeoutError):
                continue
            if status == 200:
                break
        self._aside.pop(replica, None)
        log.info("derivative.replica_back", replica=replica)

    async def close(self) -> None:
        """Stop probing and cancel the calls in flight (at the app's shutdown)."""
        for task in self._aside.values():
            task.cancel()
        self._aside.clear()
        await self.flights.close()

    def _by_load(self) -> list[str]:
        """The replicas, fewest calls in flight first, ties taken in turn; those set aside
        last (asked only when every one is)."""
        turn = next(self._turns) % len(self.replicas)
        rotated = self.replicas[turn:] + self.replicas[:turn]
        return sorted(rotated, key=lambda replica: (replica in self._aside, self._busy[replica]))


def _message(body: bytes) -> str:
    """The message of processing's error answer (the house error shape)."""
    try:
        return str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return "The image cannot be processed"
