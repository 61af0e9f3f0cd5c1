"""What a process holds while it runs — pool, broker, relay, consumers, internal client — as
typed application keys and ``cleanup_ctx`` factories, plus the entry point that runs an app.

A service's ``create_app`` appends the contexts it needs in order; aiohttp opens them at start
and closes them in reverse at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import TypeVar

import aiohttp
import asyncpg
import uvloop
from aiohttp import web

from shared import db
from shared.config import CommonConfig, ConfigError, StorageConfig, load
from shared.errors import Unavailable
from shared.events import Broker, EventConsumer, Subscription
from shared.faults import Faults
from shared.http import InternalClient
from shared.logging import configure as configure_logging
from shared.logging import get_logger
from shared.metrics import METRICS, queue_depth_refresher
from shared.outbox import OutboxRelay
from shared.storage import BlobStore, open_blob_store

log = get_logger("darkroom.runtime")
T = TypeVar("T")

POOL = web.AppKey("darkroom.pool", asyncpg.Pool)
BROKER = web.AppKey("darkroom.broker", Broker)
INTERNAL = web.AppKey("darkroom.internal", InternalClient)
CONSUMERS = web.AppKey("darkroom.consumers", list)
STORE = web.AppKey("darkroom.store", BlobStore)
#: The fault points armed in this process (``DARKROOM_FAULTS``; none in a deployment).
FAULTS = web.AppKey("darkroom.faults", Faults)

CleanupContext = Callable[[web.Application], AsyncIterator[None]]


def database(config: CommonConfig, schema: str, migrations: Path) -> CleanupContext:
    """Open the service's pool on its schema and apply its migrations first."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        pool = await db.create_pool(
            config.database_url, schema, max_size=config.db_pool_max, timeout=config.db_timeout
        )
        try:
            async with pool.acquire() as conn:
                applied = await db.migrate(conn, schema, migrations)
            if applied:
                log.info("migrations.applied", schema=schema, applied=applied)
            app[POOL] = pool
            yield
        finally:
            await pool.close()

    return context


def broker(config: CommonConfig) -> CleanupContext:
    """Connect to RabbitMQ and declare the exchanges."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        try:
            connection = await Broker.connect(config.amqp_url, config.exchange)
        except (TimeoutError, OSError, ConnectionError) as exc:
            raise Unavailable(
                f"RabbitMQ at {db.redact_dsn(config.amqp_url)} is not answering"
            ) from exc
        app[BROKER] = connection
        try:
            yield
        finally:
            await connection.close()

    return context


def outbox_relay(config: CommonConfig) -> CleanupContext:
    """Relay this service's outbox to the broker for as long as the app runs."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        relay = OutboxRelay(
            app[POOL],
            app[BROKER],
            dsn=config.database_url,
            poll_interval=config.outbox_poll_interval,
            metrics=app.get(METRICS),
            faults=Faults(config.faults),
        )
        await relay.start()
        try:
            yield
        finally:
            await relay.stop()

    return context


def consumers(config: CommonConfig, subscriptions: Iterable[Subscription]) -> CleanupContext:
    """Consume each subscription on its durable queue while the app runs."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        metrics = app.get(METRICS)
        faults = Faults(config.faults)
        running = [
            EventConsumer(
                app[BROKER],
                app[POOL],
                subscription,
                delivery_limit=config.event_delivery_limit,
                retry_base=config.event_retry_base,
                prefetch=subscription.prefetch,
                metrics=metrics,
                faults=faults,
            )
            for subscription in subscriptions
        ]
        app[CONSUMERS] = running
        for consumer in running:
            await consumer.start()
        if metrics is not None and running:
            metrics.refreshers.append(queue_depth_refresher(metrics, running))
        deadline: list[float] = []

        async def stop_taking_work(_app: web.Application) -> None:
            # On SIGTERM, before aiohttp waits for the requests in flight: no new deliveries,
            # and the deliveries in flight get until the grace period ends.
            deadline.append(asyncio.get_running_loop().time() + config.shutdown_grace)
            await asyncio.gather(*(consumer.cancel() for consumer in running))

        app.on_shutdown.append(stop_taking_work)
        try:
            yield
        finally:
            end = deadline[0] if deadline else asyncio.get_running_loop().time()
            await asyncio.gather(*(consumer.stop(end) for consumer in running))

    return context


def internal_client(config: CommonConfig) -> CleanupContext:
    """An HTTP client session for signed calls to other services."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=200),
            timeout=aiohttp.ClientTimeout(total=30),
        ) as session:
            app[INTERNAL] = InternalClient(session, config.internal_key)
            yield

    return context


def blob_store(config: StorageConfig) -> CleanupContext:
    """Open the configured blob store (local folder or S3) for as long as the app runs."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        metrics = app.get(METRICS)
        store = await open_blob_store(
            blob_dir=Path(config.blob_dir),
            s3_endpoint_url=config.s3_endpoint_url,
            s3_bucket=config.s3_bucket,
            s3_region=config.s3_region,
            s3_access_key=config.s3_access_key,
            s3_secret_key=config.s3_secret_key,
        )
        if metrics is not None:
            store.counted = metrics.storage_bytes
        app[STORE] = store
        try:
            yield
        finally:
            await store.close()

    return context


def service_contexts(
    config: CommonConfig, schema: str, migrations: Path, subscriptions: Iterable[Subscription]
) -> list[CleanupContext]:
    """What every service holds, in start order: its pool (migrated), the broker, its outbox
    relay and its consumers."""
    return [
        database(config, schema, migrations),
        broker(config),
        outbox_relay(config),
        consumers(config, subscriptions),
    ]


async def dependency_checks(app: web.Application) -> dict[str, bool]:
    """Readiness of the pool and the broker connection this app holds."""
    checks: dict[str, bool] = {}
    if POOL in app:
        try:
            async with asyncio.timeout(2):
                checks["postgres"] = await app[POOL].fetchval("SELECT true")
        except Exception:
            checks["postgres"] = False
    if BROKER in app:
        checks["rabbitmq"] = not app[BROKER].connection.is_closed
    return checks


def run(
    build: Callable[[], web.Application],
    host: str,
    port: int,
    name: str,
    server_args: dict | None = None,
    grace: float = 20.0,
    cancel_on_disconnect: bool = False,
) -> None:
    """Run an app until SIGINT/SIGTERM; a missing dependency is one line on stderr, exit 1.

    On SIGTERM or SIGINT the process stops taking work — the listening socket closes and the
    consumers are cancelled — then gives the requests and deliveries in flight ``grace``
    seconds to finish (the rest are answered 503 by aiohttp's cancellation or go back to their
    queue), closes its pools and exits 0. ``server_args`` go to aiohttp's protocol handler
    (e.g. header parser limits). ``cancel_on_disconnect`` cancels a request's handler when
    its client goes away (for a process that changes no state of its own: the gateway).
    """
    try:
        app = build()
        web.run_app(
            app,
            # uvloop: the event loop in C (libuv). A fifth fewer instructions per request than
            # asyncio's selector loop in a bare aiohttp server, paid twice per proxied call.
            loop=uvloop.new_event_loop(),
            host=host,
            port=port,
            print=None,
            shutdown_timeout=grace,
            access_log=None,
            handler_cancellation=cancel_on_disconnect,
            # Keyword arguments of run_app it does not know reach the protocol handler. (Given
            # as ``handler_args=``, aiohttp 3.14 failed to build a handler with them, warned,
            # and dropped every custom argument: the gateway's header limits and access_log.)
            **(server_args or {}),
        )
    except (ConfigError, Unavailable) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except OSError as exc:
        print(f"{name}: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        raise SystemExit(1) from None


def serve(
    config_cls: type[T],
    create_app: Callable[[T], web.Application],
    name: str,
    server_args: Callable[[T], dict] | None = None,
    cancel_on_disconnect: bool = False,
) -> None:
    """A process's ``main``: read the configuration once, configure logging, serve on the
    ``<name>_port`` setting until stopped (see :func:`run` for ``cancel_on_disconnect``)."""
    settings = load_or_exit(config_cls, name)
    configure_logging(settings.log_level, settings.log_format, process=name)
    run(
        lambda: create_app(settings),
        settings.host,
        getattr(settings, f"{name}_port"),
        name,
        server_args(settings) if server_args else None,
        grace=getattr(settings, "shutdown_grace", 20.0),
        cancel_on_disconnect=cancel_on_disconnect,
    )


async def repeat(interval: float, job: Callable[[], Awaitable[object]], what: str) -> None:
    """Run ``job`` every ``interval`` seconds until cancelled (a background sweep); a failed
    run is logged as ``<what>.failed`` and the next one tries again."""
    while True:
        await asyncio.sleep(interval)
        try:
            await job()
        except Exception:
            log.exception(f"{what}.failed")


@contextlib.asynccontextmanager
async def repeating(
    interval: float, job: Callable[[], Awaitable[object]], what: str
) -> AsyncIterator[None]:
    """:func:`repeat` as a background task for as long as the ``async with`` block runs (a
    cleanup context's ``yield``): cancelled and awaited on the way out."""
    task = asyncio.create_task(repeat(interval, job, what), name=what)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def worker_name() -> str:
    """``<hostname>:<pid>`` of this process, as events and rows name the worker that did a job."""
    return f"{socket.gethostname()}:{os.getpid()}"


def load_or_exit(cls: type[T], name: str) -> T:
    """Load ``cls`` from the environment; on a bad or missing setting print one line, exit 2."""
    try:
        return load(cls)
    except (ConfigError, ValueError) as exc:
        print(f"{name}: configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
