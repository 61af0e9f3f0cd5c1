"""Builds the processing service's aiohttp application."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from services.processing import consumers
from services.processing.config import ProcessingConfig
from services.processing.routes import setup_routes
from shared import runtime
from shared.http import health_routes, service_middlewares

SCHEMA = "processing"
HERE = Path(__file__).parent


def create_app(config: ProcessingConfig) -> web.Application:
    """The processing app: pool on its schema, broker, outbox relay, consumers, routes."""
    app = web.Application(middlewares=service_middlewares(config.internal_key))
    app.cleanup_ctx.extend(
        runtime.service_contexts(config, SCHEMA, HERE / "migrations", consumers.SUBSCRIPTIONS)
    )
    app.router.add_routes(health_routes(lambda: runtime.dependency_checks(app)))
    setup_routes(app)
    return app
