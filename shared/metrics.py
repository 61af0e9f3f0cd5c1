"""Prometheus metrics of one process: its registry, the HTTP middleware, ``GET /metrics`` and
the small helpers the outbox relay, the consumers, the blob store and the image jobs call.

Each app gets its own :class:`Metrics` (a ``CollectorRegistry`` of its own, never the global
default one) from :func:`install` in its ``create_app``, so that several apps in one process
(the test suite runs them all in one) never mix their numbers. Every series carries a
``process`` label naming the app (``gateway``, ``auth``, ``ingest``, ``processing``,
``reports``, ``rendering``).

Routes are labelled by their template (``/api/reports/{sha}``), never the raw path, so the
number of series stays bounded; the gateway labels by its routing table's prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

#: The label of a request no route matched (unbounded raw paths never become labels).
UNMATCHED = "(unmatched)"
#: How long one scrape waits for the broker's queue depths before answering without them.
QUEUE_DEPTH_TIMEOUT = 2.0

_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """The collectors of one process, registered on a registry of its own."""

    def __init__(self, process: str) -> None:
        self.process = process
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "darkroom_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ("process", "route", "method", "status"),
            registry=r,
        )
        self.http_duration = Histogram(
            "darkroom_http_request_duration_seconds",
            "Seconds from a request's arrival to its answer (streamed bodies included).",
            ("process", "route", "method"),
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.events_published = Counter(
            "darkroom_events_published",
            "Events the outbox relay published with a broker confirm, by type.",
            ("process", "type"),
            registry=r,
        )
        self.events_consumed = Counter(
            "darkroom_events_consumed",
            "Deliveries a consumer handled, by outcome: ok, retried, dead_lettered, duplicate.",
            ("process", "consumer", "outcome"),
            registry=r,
        )
        self.queue_depth = Gauge(
            "darkroom_event_queue_depth",
            "Messages ready in a consumer's queue (and its dead-letter queue), read at scrape.",
            ("process", "queue"),
            registry=r,
        )
        self.processing_duration = Histogram(
            "darkroom_processing_duration_seconds",
            "Seconds of CPU work of one image job in a worker thread, by operation.",
            ("process", "operation"),
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.jobs_skipped = Counter(
            "darkroom_processing_skipped_total",
            "Image jobs not done because their askers stopped waiting first, by operation.",
            ("process", "operation"),
            registry=r,
        )
        self.storage_written = Counter(
            "darkroom_storage_written_bytes",
            "Bytes written to the blob store, by backend.",
            ("process", "backend"),
            registry=r,
        )
        self.storage_read = Counter(
            "darkroom_storage_read_bytes",
            "Bytes read from the blob store, by backend.",
            ("process", "backend"),
            registry=r,
        )
        self.renders = Counter(
            "darkroom_renders",
            "Snap requests a renderer finished, by outcome: completed, failed, retried.",
            ("process", "outcome"),
            registry=r,
        )
        self.render_example_duration = Histogram(
            "darkroom_render_example_seconds",
            "Seconds per rendered example (a request's render time over its examples).",
            ("process",),
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.browser_restarts = Counter(
            "darkroom_browser_restarts",
            "Times a renderer relaunched Chromium after it crashed, hung or was killed.",
            ("process",),
            registry=r,
        )
        #: Async callables run before each scrape (queue depths); set by the runtime contexts.
        self.refreshers: list[Callable[[], Awaitable[None]]] = []

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its duration."""
        self.http_requests.labels(self.process, route, method, str(status)).inc()
        self.http_duration.labels(self.process, route, method).observe(seconds)

    def published(self, event_type: str, count: int = 1) -> None:
        """Count events the relay published."""
        self.events_published.labels(self.process, event_type).inc(count)

    def consumed(self, consumer: str, outcome: str) -> None:
        """Count one delivery's outcome (ok, retried, dead_lettered or duplicate)."""
        self.events_consumed.labels(self.process, consumer, outcome).inc()

    def set_queue_depth(self, queue: str, depth: int) -> None:
        """Record the ready messages of ``queue`` as read from the broker."""
        self.queue_depth.labels(self.process, queue).set(depth)

    def rendered(self, outcome: str, seconds: float = 0.0, examples: int = 0) -> None:
        """Count one finished snap request and, when it rendered examples, their average time."""
        self.renders.labels(self.process, outcome).inc()
        if examples:
            histogram = self.render_example_duration.labels(self.process)
            for _ in range(examples):
                histogram.observe(seconds / examples)

    def browser_restarted(self, count: int = 1) -> None:
        """Count relaunches of a renderer's Chromium (0 makes the series exist)."""
        self.browser_restarts.labels(self.process).inc(count)

    def job_done(self, operation: str, seconds: float) -> None:
        """Observe one image job's duration (``derive``, ``analyse`` or ``diff``)."""
        self.processing_duration.labels(self.process, operation).observe(seconds)

    def job_skipped(self, operation: str) -> None:
        """Count one image job skipped because nobody waited for it any more."""
        self.jobs_skipped.labels(self.process, operation).inc()

    def storage_bytes(self, backend: str, direction: str, count: int) -> None:
        """Count bytes the blob store wrote (``direction="write"``) or read (``"read"``)."""
        counter = self.storage_written if direction == "write" else self.storage_read
        counter.labels(self.process, backend).inc(count)

    async def exposition(self) -> bytes:
        """Run the refreshers (bounded in time), then render the text format."""
        if self.refreshers:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(QUEUE_DEPTH_TIMEOUT):
                    await asyncio.gather(*(refresh() for refresh in self.refreshers))
        return generate_latest(self.registry)


METRICS = web.AppKey("darkroom.metrics", Metrics)
#: A label for the request's route chosen by a handler (the gateway's routing-table prefix).
ROUTE_LABEL = web.RequestKey("darkroom.route_label", str)


def install(app: web.Application, process: str) -> Metrics:
    """Give ``app`` its metrics: the registry, ``GET /metrics`` and the middleware that counts
    every request (outermost, so it sees the status the client gets). Call it in
    ``create_app`` before the app starts."""
    metrics = Metrics(process)
    app[METRICS] = metrics
    app.middlewares.insert(0, middleware)
    app.router.add_get("/metrics", metrics_handler)
    return metrics


def of(app: web.Application) -> Metrics | None:
    """The metrics of ``app``, or ``None`` when :func:`install` was not called for it."""
    return app.get(METRICS)


async def metrics_handler(request: web.Request) -> web.Response:
    """``GET /metrics``: this process's metrics in the Prometheus text format."""
    body = await request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def route_label(request: web.Request) -> str:
    """The bounded label of a request's route: a handler's own label, else the matched
    resource's canonical template, else :data:`UNMATCHED`."""
    chosen = request.get(ROUTE_LABEL)
    if chosen is not None:
        return chosen
    route = request.match_info.route
    resource = getattr(route, "resource", None)
    if resource is None or request.match_info.http_exception is not None:
        return UNMATCHED
    return resource.canonical


@web.middleware
async def middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Count each request by route template, method and status, and time it."""
    metrics = request.app.get(METRICS)
    if metrics is None:
        return await handler(request)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        metrics.observe_request(
            route_label(request), request.method, status, time.perf_counter() - started
        )


def queue_depth_refresher(
    metrics: Metrics, consumers: Iterable[Any]
) -> Callable[[], Awaitable[None]]:
    """A refresher that reads each consumer's queue depths (``await consumer.depths()`` →
    ``{queue: ready}``) into the gauge; a consumer whose broker does not answer keeps its
    last value."""
    running = list(consumers)

    async def refresh() -> None:
        answers = await asyncio.gather(*(c.depths() for c in running), return_exceptions=True)
        for answer in answers:
            if isinstance(answer, dict):
                for queue, depth in answer.items():
                    metrics.set_queue_depth(queue, depth)

    return refresh
