"""A second gateway in front of the test stack's services, with tiny rate limits (a fixture)."""

from __future__ import annotations

import pytest


@pytest.fixture
async def strict_gateway(stack):
    """A second gateway in front of the same services with tiny rate limits."""
    from aiohttp import web

    from gateway.app import create_app, server_limits
    from gateway.config import GatewayConfig
    from shared.config import load
    from tests.conftest import free_port

    port = free_port()
    env = {
        **stack.env,
        "DARKROOM_PORT": str(port),
        "DARKROOM_RATE_API_KEY": "3/60",
        "DARKROOM_RATE_ANONYMOUS": "2/60",
    }
    config = load(GatewayConfig, env)
    runner = web.AppRunner(create_app(config), **server_limits(config))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()
