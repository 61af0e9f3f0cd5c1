"""Builds the auth service's aiohttp application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from services.auth import consumers, domain
from services.auth.applications import Applications
from services.auth.config import AuthConfig
from services.auth.credentials import Credentials
from services.auth.grants import Grants
from services.auth.handlers import (
    APPLICATIONS,
    CONFIG,
    CREDENTIALS,
    GRANTS,
    LOGINS,
    PAGES,
    SESSIONS,
)
from services.auth.logins import Logins
from services.auth.routes import setup_routes
from services.auth.sessions import Sessions
from shared import metrics, runtime
from shared.http import health_routes, service_middlewares
from shared.pages import Pages

SCHEMA = "auth"
HERE = Path(__file__).parent


def use_cases(config: AuthConfig, box: domain.SecretBox) -> runtime.CleanupContext:
    """The use cases over the pool: credentials, web sessions, API logins, OAuth grants and
    applications."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        pool = app[runtime.POOL]
        app[CREDENTIALS] = Credentials(pool, box, config.jwt_leeway)
        app[SESSIONS] = Sessions(pool, config.session_days)
        app[LOGINS] = Logins(pool)
        app[GRANTS] = Grants(pool, config)
        app[APPLICATIONS] = Applications(pool)
        yield

    return context


def create_app(config: AuthConfig) -> web.Application:
    """The auth app: pool on schema ``auth``, broker, outbox relay, the use cases, routes."""
    app = web.Application(middlewares=service_middlewares(config.internal_key))
    metrics.install(app, SCHEMA)
    app[CONFIG] = config
    app[PAGES] = Pages(HERE / "templates", config.signing_key)
    # Built here, not at start-up, so a malformed secrets key fails as early as it used to.
    box = domain.SecretBox(config.secrets_key)
    database, broker, relay, consuming = runtime.service_contexts(
        config, SCHEMA, HERE / "migrations", consumers.SUBSCRIPTIONS
    )
    # The internal client: the home page asks reports for the account's work.
    app.cleanup_ctx.extend(
        [
            database,
            use_cases(config, box),
            broker,
            relay,
            runtime.internal_client(config),
            consuming,
        ]
    )
    app.router.add_routes(health_routes(lambda: runtime.dependency_checks(app)))
    setup_routes(app)
    return app
