"""Events through the real PostgreSQL and RabbitMQ: the outbox relay across a broker outage,
consumers' exactly-once effects under redelivery, retries, duplicates and poison messages, the
broadcast listeners, and the envelope's own checks.

Broker outages are made with :class:`tests.tcp_proxy.TcpProxy` between the client and the
machine's RabbitMQ; PostgreSQL is always reached directly.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import asyncpg
import pytest
from aio_pika.abc import AbstractIncomingMessage

from shared.events import BroadcastListener, Broker, Envelope, new_event, record_event
from shared.outbox import OutboxRelay
from tests import events_support
from tests.conftest import AMQP_URL
from tests.events_support import (
    FAST_RECONNECT,
    Db,
    Inspector,
    Running,
    eventually,
    insert_effect,
    start_consumer,
    unique_consumer,
    unique_type,
)
from tests.tcp_proxy import TcpProxy

#: The fixtures these tests use: a schema, a proxy to RabbitMQ, a broker straight to it, a
#: connection to look into queues, and what to stop at teardown.
database = events_support.database
proxy = events_support.proxy
direct = events_support.direct
rabbit = events_support.rabbit
running = events_support.running


async def test_outbox_survives_a_broker_outage(
    database: Db,
    database_url: str,
    exchange: str,
    proxy: TcpProxy,
    direct: Broker,
    rabbit: Inspector,
    running: Running,
) -> None:
    event_type = unique_type()
    probe = unique_consumer("probe")
    await direct.declare_consumer_queue(probe, [event_type], delivery_limit=5)
    probe_queue = direct.queue_name(probe)
    rabbit.to_delete += [probe_queue, probe_queue + ".dead"]

    relay_broker = await Broker.connect(proxy.url_for(AMQP_URL, **FAST_RECONNECT), exchange)
    running.add(relay_broker.close)
    relay = OutboxRelay(database.pool, relay_broker, dsn=database_url, poll_interval=0.1)
    await relay.start()
    running.add(relay.stop)
    assert proxy.connections == 1

    proxy.cut()
    async with database.pool.acquire() as conn, conn.transaction():
        envelope = await record_event(conn, event_type, {"n": 1})

    async def unpublished() -> bool:
        return await database.pool.fetchval(
            "SELECT published_at IS NULL FROM outbox WHERE id = $1", uuid.UUID(envelope.id)
        )

    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        assert await unpublished(), "published while the broker was unreachable"
        assert await rabbit.ready_count(probe_queue) == 0
        await asyncio.sleep(0.1)

    proxy.restore()
    received: list[dict[str, Any]] = []

    async def arrived() -> bool:
        message = await rabbit.take(probe_queue)
        if message is not None:
            received.append(json.loads(message.body))
        return bool(received) and not await unpublished()

    await eventually(arrived, timeout=20, what="the relayed event after the outage")
    # Marked published after the confirm: nothing more may come.
    for _ in range(5):
        message = await rabbit.take(probe_queue)
        assert message is None, "the event was published more than once"
        await asyncio.sleep(0.1)
    assert received == [envelope.to_dict()]
    assert proxy.connections >= 2, "the relay's broker did not reconnect"


async def test_consumer_loses_connection_after_commit_before_ack(
    database: Db,
    exchange: str,
    proxy: TcpProxy,
    direct: Broker,
    rabbit: Inspector,
    running: Running,
) -> None:
    event_type = unique_type()
    consumer_name = unique_consumer("cutack")
    calls: list[str] = []
    restorer: list[asyncio.Task] = []

    async def handler(conn: asyncpg.Connection, envelope: Envelope) -> None:
        calls.append(envelope.id)
        await insert_effect(conn, envelope)
        if len(calls) == 1:
            # The transaction still commits (PostgreSQL is direct); the ack cannot get out.
            proxy.cut()

            async def restore_later() -> None:
                await asyncio.sleep(0.5)
                proxy.restore()

            restorer.append(asyncio.create_task(restore_later()))

    broker = await Broker.connect(proxy.url_for(AMQP_URL, **FAST_RECONNECT), exchange)
    running.add(broker.close)
    consumer = await start_consumer(
        running, rabbit, broker, database, consumer_name, (event_type,), handler, retry_base=0.05
    )
    envelope = new_event(event_type, {"n": 1})
    await direct.publish(envelope)

    async def redelivered_and_absorbed() -> bool:
        return (
            len(consumer.deliveries) >= 2
            and await database.effects(envelope.id) == 1
            and await database.processed(consumer_name, envelope.id) == 1
        )

    await eventually(redelivered_and_absorbed, timeout=20, what="the redelivery")
    await asyncio.gather(*restorer)
    assert calls == [envelope.id], "the handler ran again for a committed event"
    assert consumer.deliveries[0] == (envelope.id, False)
    assert consumer.deliveries[-1] == (envelope.id, True)
    assert proxy.connections >= 2

    # Everything acknowledged: once the consumer lets go, nothing comes back to the queue.
    await consumer.stop()
    await broker.close()
    queue = direct.queue_name(consumer_name)
    for _ in range(5):
        assert await rabbit.ready_count(queue) == 0, "a delivery was left unacknowledged"
        await asyncio.sleep(0.1)
    assert await database.effects(envelope.id) == 1


async def test_handler_failure_rolls_back_and_retries(
    database: Db, direct: Broker, rabbit: Inspector, running: Running
) -> None:
    event_type = unique_type()
    consumer_name = unique_consumer("retry")
    calls: list[str] = []

    async def handler(conn: asyncpg.Connection, envelope: Envelope) -> None:
        calls.append(envelope.id)
        await insert_effect(conn, envelope)
        if len(calls) == 1:
            raise RuntimeError("first delivery fails before commit")

    consumer = await start_consumer(
        running, rabbit, direct, database, consumer_name, (event_type,), handler, retry_base=0.05
    )
    envelope = new_event(event_type, {"n": 1})
    await direct.publish(envelope)

    async def applied() -> bool:
        return len(calls) >= 2 and await database.processed(consumer_name, envelope.id) == 1

    await eventually(applied, what="the retried event")
    assert await database.effects(envelope.id) == 1
    assert calls == [envelope.id, envelope.id]
    assert [redelivered for _, redelivered in consumer.deliveries] == [False, True]


async def test_duplicate_publish_is_absorbed(
    database: Db, direct: Broker, rabbit: Inspector, running: Running
) -> None:
    event_type = unique_type()
    consumer_name = unique_consumer("dup")
    calls: list[str] = []

    async def handler(conn: asyncpg.Connection, envelope: Envelope) -> None:
        calls.append(envelope.id)
        await insert_effect(conn, envelope)

    consumer = await start_consumer(
        running, rabbit, direct, database, consumer_name, (event_type,), handler, retry_base=0.05
    )
    envelope = new_event(event_type, {"n": 1})
    await direct.publish(envelope)
    await direct.publish(envelope)

    async def both_handled() -> bool:
        return consumer.finished >= 2

    await eventually(both_handled, what="both copies")
    assert await rabbit.ready_count(direct.queue_name(consumer_name)) == 0
    assert await database.processed(consumer_name, envelope.id) == 1
    assert consumer.deliveries == [(envelope.id, False), (envelope.id, False)]
    assert calls == [envelope.id]
    assert await database.effects(envelope.id) == 1


async def test_poison_message_is_dead_lettered_and_the_queue_keeps_flowing(
    database: Db, direct: Broker, rabbit: Inspector, running: Running
) -> None:
    event_type = unique_type()
    consumer_name = unique_consumer("poison")
    calls: list[str] = []

    async def handler(conn: asyncpg.Connection, envelope: Envelope) -> None:
        calls.append(envelope.id)
        if envelope.data.get("poison"):
            raise RuntimeError("cannot apply this event, ever")
        await insert_effect(conn, envelope)

    await start_consumer(
        running,
        rabbit,
        direct,
        database,
        consumer_name,
        (event_type,),
        handler,
        delivery_limit=2,
        retry_base=0.02,
    )
    queue = direct.queue_name(consumer_name)
    poison = new_event(event_type, {"poison": True})
    await direct.publish(poison)
    dead: list[AbstractIncomingMessage] = []

    async def dead_lettered() -> bool:
        message = await rabbit.take(queue + ".dead")
        if message is not None:
            dead.append(message)
        return bool(dead)

    await eventually(dead_lettered, timeout=15, what="the poison message in the dead queue")
    assert json.loads(dead[0].body) == poison.to_dict()
    # Tried more than once (the limit counts redeliveries), then given up on.
    assert dead[0].headers["x-first-death-reason"] == "delivery_limit"
    # The first delivery and the two redeliveries the limit allows, then given up on.
    assert calls.count(poison.id) == 3
    assert await rabbit.ready_count(queue) == 0
    assert await database.processed(consumer_name, poison.id) == 0

    good = new_event(event_type, {"n": 2})
    await direct.publish(good)

    async def good_applied() -> bool:
        return await database.effects(good.id) == 1

    await eventually(good_applied, what="the good event after the poison one")
    assert await rabbit.take(queue + ".dead") is None


async def test_malformed_body_is_dead_lettered_without_the_handler(
    database: Db, exchange: str, direct: Broker, rabbit: Inspector, running: Running
) -> None:
    event_type = unique_type()
    consumer_name = unique_consumer("malformed")
    calls: list[str] = []

    async def handler(conn: asyncpg.Connection, envelope: Envelope) -> None:
        calls.append(envelope.id)
        await insert_effect(conn, envelope)

    consumer = await start_consumer(
        running, rabbit, direct, database, consumer_name, (event_type,), handler
    )
    queue = direct.queue_name(consumer_name)
    bodies = [
        b"this is not json {",
        b"\xff\xfe\xfd",
        json.dumps(
            {"id": "not-a-uuid", "type": event_type, "occurred_at": "x", "data": {}}
        ).encode(),
        json.dumps({"id": str(uuid.uuid4()), "type": event_type, "occurred_at": "x"}).encode(),
        b"[1, 2, 3]",
        b"[" * 100_000,  # nested too deep for the parser: RecursionError, not ValueError
    ]
    for body in bodies:
        await direct.exchange.publish(
            aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=event_type,
        )
    dead: list[AbstractIncomingMessage] = []

    async def all_dead() -> bool:
        message = await rabbit.take(queue + ".dead")
        if message is not None:
            dead.append(message)
        return len(dead) >= len(bodies)

    await eventually(all_dead, what="the malformed messages in the dead queue")
    assert sorted(message.body for message in dead) == sorted(bodies)
    # Rejected at once, not retried until the delivery limit gave up on them.
    assert {message.headers["x-first-death-reason"] for message in dead} == {"rejected"}
    assert len(consumer.deliveries) == len(bodies)
    assert calls == []
    assert await rabbit.ready_count(queue) == 0


async def test_broadcast_reaches_every_listener_and_queues_vanish_on_stop(
    exchange: str, direct: Broker, rabbit: Inspector, running: Running
) -> None:
    event_type = unique_type()
    other = await Broker.connect(AMQP_URL, exchange)  # a second process's connection
    running.add(other.close)
    got: dict[str, list[Envelope]] = {"one": [], "two": []}

    def collector(name: str) -> Callable[[Envelope], Awaitable[None]]:
        async def collect(envelope: Envelope) -> None:
            got[name].append(envelope)

        return collect

    listeners = [
        BroadcastListener(direct, "cache", [event_type], collector("one")),
        BroadcastListener(other, "cache", [event_type], collector("two")),
    ]
    assert listeners[0].queue_name != listeners[1].queue_name
    for listener in listeners:
        running.add(listener.stop)
        await listener.start()
        assert await rabbit.exists(listener.queue_name)

    envelope = new_event(event_type, {"n": 1})
    await direct.publish(envelope)

    async def both_got_it() -> bool:
        return all(got.values())

    await eventually(both_got_it, what="the broadcast in both listeners")
    assert got == {"one": [envelope], "two": [envelope]}

    for listener in listeners:
        await listener.stop()

    async def queues_gone() -> bool:
        return not any([await rabbit.exists(listener.queue_name) for listener in listeners])

    await eventually(queues_gone, what="the private queues to be deleted")


def test_new_event_checks_the_type() -> None:
    for bad in ("bad type", "image", "Image.uploaded", "image.", "image.up-loaded", "a.b.c"):
        with pytest.raises(ValueError):
            new_event(bad, {})
    envelope = new_event("image.uploaded", {"k": 1})
    assert uuid.UUID(envelope.id)
    assert envelope.type == "image.uploaded"
    assert envelope.data == {"k": 1}


def test_envelope_from_dict_rejects_bad_shapes() -> None:
    good = new_event("image.uploaded", {"k": 1}).to_dict()
    bad_shapes: list[Any] = [
        None,
        [],
        "text",
        {key: value for key, value in good.items() if key != "data"},
        {**good, "data": None},
        {**good, "data": [1]},
        {**good, "id": "not-a-uuid"},
        {**good, "id": None},
        {key: value for key, value in good.items() if key != "id"},
        {key: value for key, value in good.items() if key != "type"},
        {key: value for key, value in good.items() if key != "occurred_at"},
    ]
    for raw in bad_shapes:
        with pytest.raises(ValueError):
            Envelope.from_dict(raw)


def test_envelope_round_trip() -> None:
    envelope = new_event("image.uploaded", {"k": [1, "two", {"three": None}]})
    raw = envelope.to_dict()
    assert set(raw) == {"id", "type", "occurred_at", "request_id", "data"}
    assert Envelope.from_dict(raw) == envelope
    assert Envelope.from_dict(json.loads(json.dumps(raw))) == envelope
