"""Rendering's event consumer: snap requests rendered by competing workers on one durable
queue, each process taking as many deliveries as it renders at once."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from services.rendering.config import RenderingConfig
from services.rendering.events import CONSUMED
from services.rendering.renders import Renders
from shared.events import Envelope, Subscription

#: The competing consumer (and queue) of render requests.
RENDERS_CONSUMER = "rendering.renders"
RENDERS = web.AppKey("rendering.renders", Renders)


def subscriptions(app: web.Application, config: RenderingConfig) -> tuple[Subscription, ...]:
    """Rendering's subscription for ``app`` (its use case is opened before consumers start)."""

    async def render_requested(conn: asyncpg.Connection, envelope: Envelope) -> None:
        await app[RENDERS].on_requested(conn, envelope)

    return (
        Subscription(
            RENDERS_CONSUMER, CONSUMED, render_requested, prefetch=config.render_concurrency
        ),
    )
