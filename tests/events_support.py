"""What the events tests share: a migrated schema of each test's own with an ``effects``
table, a TCP proxy in front of RabbitMQ for outages, brokers and a plain connection that
looks into queues, consumers that record their deliveries, and everything a test started
stopped at teardown."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import asyncpg
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from aio_pika.exceptions import ChannelNotFoundEntity

from shared import db
from shared.events import Broker, Envelope, EventConsumer, Subscription
from tests.conftest import AMQP_URL
from tests.tcp_proxy import TcpProxy

#: Reconnect quickly through the proxy once it is restored (aio-pika's default is 5 s).
FAST_RECONNECT = {"reconnect_interval": "0.2"}


def unique_type(verb: str = "happened") -> str:
    """An event type no other test binds (types allow letters and underscores only)."""
    letters = "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:10])
    return f"t{letters}.{verb}"


def unique_consumer(label: str) -> str:
    """A consumer name of this test's own (its queue is ``<exchange>.<consumer>``)."""
    return f"{label}_{uuid.uuid4().hex[:8]}"


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``check`` until it is true; fail the test when ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Db:
    """A schema of one test's own with the shared tables and an ``effects`` table."""

    schema: str
    pool: asyncpg.Pool

    async def effects(self, event_id: str) -> int:
        """How many effect rows ``event_id`` left."""
        return await self.pool.fetchval(
            "SELECT count(*) FROM effects WHERE event_id = $1", uuid.UUID(event_id)
        )

    async def processed(self, consumer: str, event_id: str) -> int:
        """How many ``processed_events`` rows ``consumer`` has for ``event_id``."""
        return await self.pool.fetchval(
            "SELECT count(*) FROM processed_events WHERE consumer = $1 AND event_id = $2",
            consumer,
            uuid.UUID(event_id),
        )


@pytest.fixture
async def database(database_url: str, tmp_path: Path) -> AsyncIterator[Db]:
    """A fresh migrated schema ``evt_<hex>`` and a pool living in it; dropped afterwards."""
    schema = f"evt_{uuid.uuid4().hex[:8]}"
    no_service_migrations = tmp_path / "migrations"
    no_service_migrations.mkdir()
    conn = await db.connect(database_url)
    try:
        await db.migrate(conn, schema, no_service_migrations)
        await conn.execute(f"CREATE TABLE {schema}.effects (event_id uuid NOT NULL, n int)")
    finally:
        await conn.close()
    pool = await db.create_pool(database_url, schema, max_size=5)
    try:
        yield Db(schema, pool)
    finally:
        await pool.close()
        conn = await db.connect(database_url)
        try:
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        finally:
            await conn.close()


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    """A proxy to this machine's RabbitMQ."""
    target = urlsplit(AMQP_URL)
    running = TcpProxy(target.hostname or "127.0.0.1", target.port or 5672)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def direct(exchange: str) -> AsyncIterator[Broker]:
    """A broker connected straight to RabbitMQ (for publishing and inspecting)."""
    broker = await Broker.connect(AMQP_URL, exchange)
    try:
        yield broker
    finally:
        await broker.close()


@pytest.fixture
async def rabbit() -> AsyncIterator[Inspector]:
    """A plain connection to look into queues without joining the code under test."""
    connection = await aio_pika.connect(AMQP_URL)
    inspector = Inspector(connection)
    try:
        yield inspector
    finally:
        await inspector.cleanup()
        await connection.close()


@dataclass
class Inspector:
    """Passive looks at queues, and deletion of the queues a test declared."""

    connection: AbstractRobustConnection
    to_delete: list[str] = field(default_factory=list)

    async def _channel(self) -> AbstractChannel:
        # A failed passive declare closes its channel, so each look gets a new one.
        return await self.connection.channel(publisher_confirms=False)

    async def ready_count(self, queue: str) -> int:
        """Messages ready in ``queue`` (not counting unacknowledged ones)."""
        channel = await self._channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
            return declared.declaration_result.message_count or 0
        finally:
            await channel.close()

    async def exists(self, queue: str) -> bool:
        """False once the broker answers ``404 NOT_FOUND`` for ``queue``."""
        channel = await self._channel()
        try:
            await channel.declare_queue(queue, passive=True)
        except ChannelNotFoundEntity:
            return False
        except aio_pika.exceptions.AMQPError:
            return True  # e.g. 405 RESOURCE_LOCKED: exclusive to another connection
        else:
            await channel.close()
        return True

    async def take(self, queue: str) -> AbstractIncomingMessage | None:
        """Remove and return the next ready message of ``queue``, if any."""
        channel = await self._channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
            message = await declared.get(no_ack=False, fail=False)
            if message is not None:
                await message.ack()
            return message
        finally:
            await channel.close()

    async def cleanup(self) -> None:
        """Delete the queues registered in ``to_delete``."""
        for name in self.to_delete:
            channel = await self._channel()
            try:
                await channel.queue_delete(name)
            except aio_pika.exceptions.AMQPError:
                pass
            else:
                await channel.close()


class RecordingConsumer(EventConsumer):
    """An :class:`EventConsumer` that notes each delivery, (message id, redelivered flag), and
    counts the deliveries it is done with (acknowledged, rejected, or failed to)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deliveries: list[tuple[str | None, bool]] = []
        self.finished = 0

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self.deliveries.append((message.message_id, bool(message.redelivered)))
        try:
            await super()._on_message(message)
        finally:
            self.finished += 1


@dataclass
class Running:
    """Things a test started, stopped in reverse order whatever happens."""

    stoppers: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)

    def add(self, stop: Callable[[], Awaitable[Any]]) -> None:
        """Stop it at the end of the test."""
        self.stoppers.append(stop)

    async def stop_all(self) -> None:
        """Stop everything, last started first."""
        while self.stoppers:
            stop = self.stoppers.pop()
            try:
                await asyncio.wait_for(stop(), 10)
            except Exception:  # noqa: S110 - keep stopping the rest
                pass


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    """Consumers, relays, listeners and brokers to stop at teardown."""
    things = Running()
    try:
        yield things
    finally:
        await things.stop_all()


async def start_consumer(
    running: Running,
    rabbit: Inspector,
    broker: Broker,
    database: Db,
    consumer: str,
    routing_keys: tuple[str, ...],
    handler: Callable[[asyncpg.Connection, Envelope], Awaitable[None]],
    **options: Any,
) -> RecordingConsumer:
    """Start a recording consumer, stopped and its queues deleted at teardown."""
    rabbit.to_delete += [broker.queue_name(consumer), broker.queue_name(consumer) + ".dead"]
    started = RecordingConsumer(
        broker, database.pool, Subscription(consumer, routing_keys, handler), **options
    )
    running.add(started.stop)
    await started.start()
    return started


async def insert_effect(conn: asyncpg.Connection, envelope: Envelope) -> None:
    """The effect the tests count: one row per application of ``envelope``."""
    await conn.execute(
        "INSERT INTO effects (event_id, n) VALUES ($1, $2)",
        uuid.UUID(envelope.id),
        envelope.data.get("n"),
    )
