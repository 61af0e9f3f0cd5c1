"""Builds the ingest service's aiohttp application."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from services.ingest import consumers
from services.ingest.config import IngestConfig
from services.ingest.routes import setup_routes
from shared import runtime
from shared.http import health_routes, service_middlewares

SCHEMA = "ingest"
HERE = Path(__file__).parent


def create_app(config: IngestConfig) -> web.Application:
    """The ingest app: pool on schema ``ingest``, broker, outbox relay, consumers, routes."""
    app = web.Application(middlewares=service_middlewares(config.internal_key))
    app.cleanup_ctx.extend(
        [
            runtime.database(config, SCHEMA, HERE / "migrations"),
            runtime.broker(config),
            runtime.outbox_relay(config),
            runtime.consumers(config, consumers.SUBSCRIPTIONS),
        ]
    )
    app.router.add_routes(health_routes(lambda: runtime.dependency_checks(app)))
    setup_routes(app)
    return app
