"""Builds the processing service's aiohttp application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pyvips
from aiohttp import web

from services.processing import consumers, memory
from services.processing.config import ProcessingConfig
from services.processing.consumers import ANALYSES, COMPARISONS, AnalysisWorks, ComparisonWorks
from services.processing.deriving import Derivations
from services.processing.handlers import DERIVATIONS
from services.processing.routes import setup_routes
from services.processing.transforms import Limits
from services.processing.works import WorkerThreads
from shared import metrics, runtime
from shared.http import health_routes, service_middlewares
from shared.logging import get_logger

SCHEMA = "processing"
HERE = Path(__file__).parent
log = get_logger("darkroom.processing")

#: The worker threads every image job runs in (open while the app runs).
WORKERS = web.AppKey("processing.workers", WorkerThreads)


def image_works(config: ProcessingConfig) -> runtime.CleanupContext:
    """The worker threads libvips jobs run in (one per configured worker) and the analysis and
    comparison works that share them and the blob store; at shutdown, running jobs finish
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
        # Before the worker threads exist, so they share the capped arenas from the start.
        memory.limit_arenas(config.malloc_arenas)
        # Each delivery in flight holds a connection, and each of the two queues (analyses,
        # comparisons) may have ``workers`` deliveries in flight; derivatives borrow one briefly.
        if 2 * config.workers >= config.db_pool_max:
            log.warning(
                "processing.workers_exceed_pool",
                workers=config.workers,
                db_pool_max=config.db_pool_max,
            )
        threads = WorkerThreads(config.workers)
        shared = (
            app[runtime.STORE],
            threads,
            Limits(max_pixels=config.max_pixels),
            runtime.worker_name(),
            metrics.of(app),
        )
        app[WORKERS] = threads
        app[ANALYSES] = AnalysisWorks(*shared)
        app[COMPARISONS] = ComparisonWorks(*shared, concurrency=config.workers)
        try:
            yield
        finally:
            threads.shutdown()

    return context


def derivations(config: ProcessingConfig) -> runtime.CleanupContext:
    """Derivatives made while someone waits (:mod:`services.processing.deriving`), on the
    worker threads and the pool; at shutdown, the ones in flight are dropped (their callers
    get a 503 and ask again)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        app[DERIVATIONS] = Derivations(
            app[runtime.STORE],
            app[WORKERS],
            Limits(max_pixels=config.max_pixels),
            runtime.worker_name(),
            metrics.of(app),
            pool=app[runtime.POOL],
            most_in_flight=config.derivatives_in_flight,
        )
        try:
            yield
        finally:
            await app[DERIVATIONS].flights.close()

    return context


def create_app(config: ProcessingConfig) -> web.Application:
    """The processing app: blob store and worker threads first (the consumers need them from
    their first delivery), then pool on schema ``processing``, broker, outbox relay,
    consumers, derivations; routes."""
    app = web.Application(middlewares=service_middlewares(config.internal_key))
    metrics.install(app, SCHEMA)
    app.cleanup_ctx.extend(
        [
            runtime.blob_store(config),
            image_works(config),
            *runtime.service_contexts(
                config, SCHEMA, HERE / "migrations", consumers.subscriptions(app, config)
            ),
            derivations(config),
        ]
    )
    app.router.add_routes(health_routes(lambda: runtime.dependency_checks(app)))
    setup_routes(app)
    return app
