"""Builds the ingest service's aiohttp application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from services.ingest import consumers
from services.ingest.blobs import SWEEPER, OrphanSweeper
from services.ingest.config import CONFIG, IngestConfig
from services.ingest.derivations import Derivatives
from services.ingest.happo.handlers import KNOWN
from services.ingest.happo.uploads import known_images
from services.ingest.hashhost.handlers import DERIVATIVES, PAGES
from services.ingest.progimage.handlers import PROGIMAGE
from services.ingest.progimage.uploads import ProgimageUploads
from services.ingest.routes import setup_routes
from shared import metrics, runtime
from shared.faults import Faults
from shared.http import health_routes, service_middlewares
from shared.pages import Pages
from shared.remote import RemoteFetcher, RemotePolicy

SCHEMA = "ingest"
HERE = Path(__file__).parent


def orphan_sweeper(config: IngestConfig) -> runtime.CleanupContext:
    """Sweep orphaned bytes every ``sweep_interval_seconds`` while the app runs."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        sweeper = OrphanSweeper(app[runtime.POOL], app[runtime.STORE], config.orphan_grace_seconds)
        app[SWEEPER] = sweeper
        async with runtime.repeating(
            config.sweep_interval_seconds, sweeper.sweep_once, "blobs.sweep"
        ):
            yield

    return context


def progimage(config: IngestConfig) -> runtime.CleanupContext:
    """The client of processing's replicas (every dialect's derivatives) and the Progimage
    uploads, with their remote fetcher."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        fetcher = RemoteFetcher(RemotePolicy.from_config(config))
        replicas = config.service_urls("processing")
        derivatives = Derivatives(app[runtime.INTERNAL], replicas, app[runtime.STORE])
        app[DERIVATIVES] = derivatives
        try:
            app[PROGIMAGE] = ProgimageUploads(
                app[runtime.POOL], app[runtime.STORE], derivatives, fetcher, config
            )
            yield
        finally:
            await derivatives.close()
            await fetcher.close()

    return context


def create_app(config: IngestConfig) -> web.Application:
    """The ingest app: pool on schema ``ingest``, broker, outbox relay, consumers, blob store,
    orphan sweeper, Progimage uploads, internal client (pages ask auth who is signed in), every
    dialect's routes."""
    app = web.Application(middlewares=service_middlewares(config.internal_key))
    metrics.install(app, SCHEMA)
    app[CONFIG] = config
    app[PAGES] = Pages(HERE / "templates", config.signing_key)
    app[KNOWN] = known_images()
    app[runtime.FAULTS] = Faults(config.faults)
    app.cleanup_ctx.extend(
        [
            *runtime.service_contexts(config, SCHEMA, HERE / "migrations", consumers.SUBSCRIPTIONS),
            runtime.internal_client(config),
            runtime.blob_store(config),
            orphan_sweeper(config),
            progimage(config),
        ]
    )
    app.router.add_routes(health_routes(lambda: runtime.dependency_checks(app)))
    setup_routes(app)
    return app
