"""Builds the gateway's aiohttp application."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from gateway import consumers, domain, events, handlers, limiting
from gateway.config import GatewayConfig
from gateway.routes import ROUTES, setup_routes
from shared import metrics, runtime
from shared.events import BroadcastListener
from shared.http import InternalClient, error_middleware, request_id_middleware


def create_app(config: GatewayConfig, table: domain.RoutingTable = ROUTES) -> web.Application:
    """The gateway: routing ``table``, credential cache, rate limiter, edge cache, upstream
    client."""
    app = web.Application(
        middlewares=[request_id_middleware, error_middleware, handlers.edge_middleware],
        client_max_size=config.max_body_bytes,
    )
    app[handlers.CONFIG] = config
    app[handlers.TABLE] = table
    app[handlers.CACHE] = domain.PrincipalCache(ttl=config.auth_cache_seconds)
    app[handlers.LIMITER] = limiting.Limiter(
        config.redis_url, config.redis_prefix, config.redis_timeout
    )
    app[handlers.EDGE] = domain.EdgeCache(config.edge_cache_bytes)
    app.cleanup_ctx.extend([_upstream(config), runtime.broker(config), _revocations, _limiter])
    # Before the routes: the gateway answers its own /metrics, never a service's.
    metrics.install(app, "gateway")
    setup_routes(app)
    return app


def server_limits(config: GatewayConfig) -> dict[str, int]:
    """aiohttp's header parser limits for the gateway: above the configured header limit, so
    that oversized headers reach the edge middleware and get a JSON 431 rather than aiohttp's
    plain-text 400 (which still guards against anything larger)."""
    return {
        "max_line_size": config.max_header_bytes * 4,
        "max_field_size": config.max_header_bytes * 4,
    }


def _upstream(config: GatewayConfig):
    async def context(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=500, limit_per_host=200),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        ) as session:
            app[handlers.UPSTREAM] = session
            app[handlers.RESOLVER] = InternalClient(session, config.internal_key)
            yield

    return context


async def _revocations(app: web.Application) -> AsyncIterator[None]:
    cache = app[handlers.CACHE]
    listener = BroadcastListener(
        app[runtime.BROKER],
        "gateway.revocations",
        events.CONSUMED,
        consumers.credential_revoked(cache),
        on_reconnect=cache.clear,
    )
    await listener.start()
    try:
        yield
    finally:
        await listener.stop()


async def _limiter(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[handlers.LIMITER].close()
