"""Builds the processing service's aiohttp application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyvips
from aiohttp import web

from services.processing import consumers, events
from services.processing.config import ProcessingConfig
from services.processing.consumers import (
    ANALYSES,
    COMPARISONS,
    DERIVATIVES,
    AnalysisWorks,
    ComparisonWorks,
    DerivativeWorks,
)
from services.processing.routes import setup_routes
from services.processing.transforms import Limits
from shared import metrics, runtime
from shared.events import BroadcastListener
from shared.http import health_routes, service_middlewares
from shared.logging import get_logger

SCHEMA = "processing"
HERE = Path(__file__).parent
log = get_logger("darkroom.processing")


def image_works(config: ProcessingConfig) -> runtime.CleanupContext:
    """The worker threads libvips jobs run in (one per configured worker) and the derivative
    and analysis works that share them and the blob store; at shutdown, running jobs finish
    first."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        # Process-wide in libvips. One thread per job by default, since jobs already run one
        # per core: a 4000x3000 JPEG to a 300 px thumbnail takes the same time with 1 or 2
        # threads (the JPEG decode is serial); only a full-size job gains from more, and only
        # while other cores are idle.
        pyvips.concurrency_set(config.vips_concurrency)
        # The operation cache would keep recent originals' buffers alive; every job here is a
        # different image, so nothing would ever be reused from it.
        pyvips.cache_set_max(0)
        # Each delivery in flight holds a connection, and each of the three queues
        # (derivatives, analyses, comparisons) may have ``workers`` deliveries in flight.
        if 3 * config.workers >= config.db_pool_max:
            log.warning(
                "processing.workers_exceed_pool",
                workers=config.workers,
                db_pool_max=config.db_pool_max,
            )
        executor = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="vips")
        shared = (
            app[runtime.STORE],
            executor,
            Limits(max_pixels=config.max_pixels),
            runtime.worker_name(),
            metrics.of(app),
        )
        app[DERIVATIVES] = DerivativeWorks(*shared)
        app[ANALYSES] = AnalysisWorks(*shared)
        app[COMPARISONS] = ComparisonWorks(*shared, concurrency=config.workers)
        try:
            yield
        finally:
            executor.shutdown(wait=True)

    return context


def abandonments() -> runtime.CleanupContext:
    """Every replica hears ``derivative.abandoned`` on a private queue, so whichever holds
    the request skips it."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        listener = BroadcastListener(
            app[runtime.BROKER],
            "processing.abandoned",
            events.BROADCAST,
            app[DERIVATIVES].on_abandoned,
        )
        await listener.start()
        try:
            yield
        finally:
            await listener.stop()

    return context


def create_app(config: ProcessingConfig) -> web.Application:
    """The processing app: blob store and worker threads first (the consumers need them from
    their first delivery), then pool on schema ``processing``, broker, outbox relay,
    consumers; routes."""
    app = web.Application(middlewares=service_middlewares(config.internal_key))
    metrics.install(app, SCHEMA)
    app.cleanup_ctx.extend(
        [
            runtime.blob_store(config),
            image_works(config),
            *runtime.service_contexts(
                config, SCHEMA, HERE / "migrations", consumers.subscriptions(app, config)
            ),
            abandonments(),
        ]
    )
    app.router.add_routes(health_routes(lambda: runtime.dependency_checks(app)))
    setup_routes(app)
    return app
