"""More gateways in front of the test stack's services: a helper that starts one with settings of
its own, and a fixture with tiny rate limits."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest


@contextlib.asynccontextmanager
async def running_gateway(stack, **env: str) -> AsyncIterator[tuple[str, object]]:
    """A gateway on a free port in front of ``stack``'s services, with ``env`` overriding the
    stack's settings; yields its URL and its application."""
    from aiohttp import web

    from gateway.app import create_app, server_limits
    from gateway.config import GatewayConfig
    from shared.config import load
    from tests.conftest import free_port

    port = free_port()
    config = load(GatewayConfig, {**stack.env, "DARKROOM_PORT": str(port), **env})
    app = create_app(config)
    runner = web.AppRunner(app, **server_limits(config))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        await runner.cleanup()


@pytest.fixture
async def strict_gateway(stack):
    """A second gateway in front of the same services with tiny rate limits."""
    async with running_gateway(
        stack, DARKROOM_RATE_API_KEY="3/60", DARKROOM_RATE_ANONYMOUS="2/60"
    ) as (url, _app):
        yield url
