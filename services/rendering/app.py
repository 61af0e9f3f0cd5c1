"""Builds the rendering service's aiohttp application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from services.rendering import consumers
from services.rendering.archive import ArchiveLimits
from services.rendering.chromium import CHROMIUM_HELP, ChromiumPool, find_chromium
from services.rendering.config import RenderingConfig
from services.rendering.consumers import RENDERS
from services.rendering.handlers import CONFIG, PACKAGES
from services.rendering.packages import Packages, PackageSweeper, UnpackedPackages
from services.rendering.render import RenderLimits
from services.rendering.renders import Renders, Services
from services.rendering.routes import setup_routes
from shared import metrics, runtime
from shared.http import health_routes, service_middlewares
from shared.logging import get_logger
from shared.remote import RemoteFetcher, RemotePolicy

SCHEMA = "rendering"
HERE = Path(__file__).parent
log = get_logger("darkroom.rendering")
#: The Chromium this process renders with (None: the machine has none).
BROWSERS: web.AppKey[ChromiumPool | None] = web.AppKey("rendering.browsers")
#: Deletes package bytes a crash left without a record.
SWEEPER = web.AppKey("rendering.sweeper", PackageSweeper)


def archive_limits(config: RenderingConfig) -> ArchiveLimits:
    """The package limits the configuration sets."""
    return ArchiveLimits(
        max_packed_bytes=config.max_package_bytes,
        max_unpacked_bytes=config.max_package_unpacked_bytes,
        max_entries=config.max_package_entries,
        max_depth=config.max_package_depth,
    )


def render_limits(config: RenderingConfig) -> RenderLimits:
    """The render limits the configuration sets."""
    return RenderLimits(
        example_seconds=config.render_example_seconds,
        request_seconds=config.render_request_seconds,
        max_examples=config.max_render_examples,
        max_screenshot_pixels=config.max_screenshot_pixels,
        max_dom_nodes=config.max_dom_nodes,
    )


def browsers(config: RenderingConfig) -> runtime.CleanupContext:
    """Chromium for the renders, when this machine has one; without one the process still
    serves packages and fails render requests with the install command."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        executable = find_chromium(config.chromium)
        pool = None
        if executable is None:
            log.warning("rendering.no_chromium", help=CHROMIUM_HELP)
        else:
            counted = metrics.of(app)
            if counted is not None:
                counted.browser_restarted(0)  # the series is there (0) before any restart
            # Launched by the first render: a process that never renders (or a test stack)
            # never starts a browser.
            pool = ChromiumPool(
                executable,
                concurrency=config.render_concurrency,
                on_restart=counted.browser_restarted if counted is not None else None,
            )
        app[BROWSERS] = pool
        try:
            yield
        finally:
            if pool is not None:
                await pool.close()

    return context


def rendering(config: RenderingConfig) -> runtime.CleanupContext:
    """The use cases: packages (stored, unpacked, their orphans swept) and renders."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        limits = archive_limits(config)
        packages = Packages(app[runtime.POOL], app[runtime.STORE], limits)
        unpacked = UnpackedPackages(app[runtime.STORE], limits, config.package_cache_entries)
        fetcher = (
            RemoteFetcher(RemotePolicy.from_config(config))
            if config.render_external_fetches
            else None
        )
        sweeper = PackageSweeper(app[runtime.POOL], app[runtime.STORE], config.orphan_grace_seconds)
        app[PACKAGES] = packages
        app[SWEEPER] = sweeper
        app[RENDERS] = Renders(
            Services(
                app[runtime.INTERNAL],
                config.service_url("reports"),
                config.service_url("ingest"),
            ),
            packages,
            unpacked,
            app[BROWSERS],
            render_limits(config),
            fetcher,
            runtime.worker_name(),
            metrics.of(app),
        )
        try:
            async with runtime.repeating(
                config.sweep_interval_seconds, sweeper.sweep_once, "packages.sweep"
            ):
                yield
        finally:
            unpacked.close()
            if fetcher is not None:
                await fetcher.close()

    return context


def create_app(config: RenderingConfig) -> web.Application:
    """The rendering app: blob store, pool on schema ``rendering``, broker, outbox relay,
    internal client, Chromium, the use cases, then the consumer; routes."""
    app = web.Application(
        middlewares=service_middlewares(config.internal_key),
        client_max_size=config.max_package_bytes + 1024 * 1024,
    )
    metrics.install(app, SCHEMA)
    app[CONFIG] = config
    database, broker, relay, consuming = runtime.service_contexts(
        config, SCHEMA, HERE / "migrations", consumers.subscriptions(app, config)
    )
    app.cleanup_ctx.extend(
        [
            runtime.blob_store(config),
            database,
            broker,
            relay,
            runtime.internal_client(config),
            browsers(config),
            rendering(config),
            consuming,
        ]
    )
    app.router.add_routes(health_routes(lambda: runtime.dependency_checks(app)))
    setup_routes(app)
    return app
