"""Builds the auth service's aiohttp application."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from services.auth import consumers, domain
from services.auth.config import AuthConfig
from services.auth.handlers import BOX, CONFIG, PAGES
from services.auth.routes import setup_routes
from shared import metrics, runtime
from shared.http import health_routes, service_middlewares
from shared.pages import Pages

SCHEMA = "auth"
HERE = Path(__file__).parent


def create_app(config: AuthConfig) -> web.Application:
    """The auth app: pool on schema ``auth``, broker, outbox relay, routes."""
    app = web.Application(middlewares=service_middlewares(config.internal_key))
    metrics.install(app, SCHEMA)
    app[CONFIG] = config
    app[BOX] = domain.SecretBox(config.secrets_key)
    app[PAGES] = Pages(HERE / "templates", config.signing_key)
    app.cleanup_ctx.extend(
        runtime.service_contexts(config, SCHEMA, HERE / "migrations", consumers.SUBSCRIPTIONS)
    )
    app.router.add_routes(health_routes(lambda: runtime.dependency_checks(app)))
    setup_routes(app)
    return app
