"""Events over RabbitMQ: the envelope, writing to the transactional outbox, the broker and
consumers (the outbox's relay is :mod:`shared.outbox`).

Topology on the broker, all durable:

* ``<exchange>`` — topic exchange every event is published to, routing key = event type.
  Its alternate exchange ``<exchange>.unrouted`` keeps events nobody subscribes to yet in a
  bounded queue instead of dropping them silently.
* ``<exchange>.<consumer>`` — one quorum queue per consumer (competing consumers share it),
  with a delivery limit; past it the message goes to ``<exchange>.dead`` and lands in
  ``<exchange>.<consumer>.dead``.

aio-pika's unsafe defaults are all set explicitly here: persistent messages, durable queues,
publisher confirms, manual acks after commit, requeue on failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aio_pika.exceptions
import aiormq.exceptions
import asyncpg
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustExchange,
)
from aio_pika.exceptions import ChannelNotFoundEntity

from shared.faults import NO_FAULTS, Faults
from shared.logging import current_request_id, get_logger, request_id_var
from shared.metrics import Metrics

log = get_logger("darkroom.events")

_EVENT_TYPE = re.compile(r"^[a-z][a-z_]*\.[a-z][a-z_]*$")
#: The Postgres NOTIFY channel (suffixed with the schema) that wakes a service's outbox relays.
OUTBOX_CHANNEL = "darkroom_outbox"
_UNROUTED_LIMIT = 100_000


@dataclass(frozen=True)
class Envelope:
    """The one event envelope: ``{id, type, occurred_at, request_id, data}``."""

    id: str
    type: str
    occurred_at: str
    request_id: str | None
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The envelope as a JSON-ready dict."""
        return {
            "id": self.id,
            "type": self.type,
            "occurred_at": self.occurred_at,
            "request_id": self.request_id,
            "data": self.data,
        }

    @classmethod
    def from_dict(cls, raw: Any) -> Envelope:
        """Parse an envelope; raises ``ValueError`` when the shape is wrong."""
        if not isinstance(raw, dict) or not isinstance(raw.get("data"), dict):
            raise ValueError("event envelope must be an object with a data object")
        try:
            uuid.UUID(str(raw["id"]))
            return cls(
                id=str(raw["id"]),
                type=str(raw["type"]),
                occurred_at=str(raw["occurred_at"]),
                request_id=raw.get("request_id"),
                data=raw["data"],
            )
        except (KeyError, ValueError) as exc:
            raise ValueError(f"bad event envelope: {exc}") from exc


def new_event(event_type: str, data: dict[str, Any]) -> Envelope:
    """A new envelope for a fact named ``<noun>.<past-verb>``, carrying the current request id."""
    if not _EVENT_TYPE.match(event_type):
        raise ValueError(f"event types are <noun>.<past-verb>: {event_type!r}")
    return Envelope(
        id=str(uuid.uuid4()),
        type=event_type,
        occurred_at=datetime.now(UTC).isoformat(),
        request_id=current_request_id(),
        data=data,
    )


async def record_event(conn: asyncpg.Connection, event_type: str, data: dict[str, Any]) -> Envelope:
    """Write an event to the outbox on ``conn``; call it inside the state change's transaction."""
    envelope = new_event(event_type, data)
    # One round trip. The notice is delivered at commit only, so the relay never wakes for a
    # rolled-back event; its channel is the schema's, so only this service's relays wake.
    await conn.execute(
        "WITH written AS (INSERT INTO outbox (id, type, envelope) VALUES ($1, $2, $3)"
        " RETURNING 1)"
        f" SELECT pg_notify('{OUTBOX_CHANNEL}_' || current_schema(), '') FROM written",
        uuid.UUID(envelope.id),
        envelope.type,
        envelope.to_dict(),
    )
    return envelope


class Broker:
    """A robust RabbitMQ connection with a confirming channel and the declared topology."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        channel: AbstractRobustChannel,
        exchange: AbstractRobustExchange,
        exchange_name: str,
    ) -> None:
        self.connection = connection
        self.channel = channel
        self.exchange = exchange
        self.exchange_name = exchange_name

    @classmethod
    async def connect(cls, amqp_url: str, exchange_name: str, *, timeout: float = 10) -> Broker:
        """Connect (reconnecting by itself later on) and declare the exchanges.

        The first connection fails fast so a missing broker is reported at start.
        """
        connection = await aio_pika.connect_robust(amqp_url, timeout=timeout)
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        unrouted = await channel.declare_exchange(
            f"{exchange_name}.unrouted", aio_pika.ExchangeType.FANOUT, durable=True
        )
        parked = await channel.declare_queue(
            f"{exchange_name}.unrouted",
            durable=True,
            arguments={"x-max-length": _UNROUTED_LIMIT, "x-overflow": "drop-head"},
        )
        await parked.bind(unrouted)
        await channel.declare_exchange(
            f"{exchange_name}.dead", aio_pika.ExchangeType.DIRECT, durable=True
        )
        exchange = await channel.declare_exchange(
            exchange_name,
            aio_pika.ExchangeType.TOPIC,
            durable=True,
            arguments={"alternate-exchange": f"{exchange_name}.unrouted"},
        )
        return cls(connection, channel, exchange, exchange_name)

    async def publish(self, envelope: Envelope | dict[str, Any], *, timeout: float = 10) -> None:
        """Publish one envelope persistently and wait for the broker's confirm."""
        body = envelope.to_dict() if isinstance(envelope, Envelope) else envelope
        message = aio_pika.Message(
            json.dumps(body).encode(),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(body["id"]),
            type=str(body["type"]),
            headers={"x-request-id": body.get("request_id") or ""},
        )
        await self.exchange.publish(
            message, routing_key=str(body["type"]), mandatory=True, timeout=timeout
        )

    def queue_name(self, consumer: str) -> str:
        """The durable queue name of ``consumer`` on this exchange."""
        return f"{self.exchange_name}.{consumer}"

    async def declare_consumer_queue(
        self,
        consumer: str,
        routing_keys: Iterable[str],
        *,
        delivery_limit: int,
        channel: AbstractRobustChannel | None = None,
    ) -> tuple[AbstractQueue, AbstractQueue]:
        """Declare ``consumer``'s quorum queue and its dead-letter queue; bind the keys.

        Declared on ``channel`` (default: the publishing channel) so that a consumer's own
        robust channel restores them after a reconnect. Returns ``(queue, dead_letter_queue)``.
        """
        channel = channel or self.channel
        name = self.queue_name(consumer)
        dead = await channel.declare_queue(f"{name}.dead", durable=True)
        await dead.bind(f"{self.exchange_name}.dead", routing_key=name)
        queue = await channel.declare_queue(
            name,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-delivery-limit": delivery_limit,
                "x-dead-letter-exchange": f"{self.exchange_name}.dead",
                "x-dead-letter-routing-key": name,
            },
        )
        for key in routing_keys:
            await queue.bind(self.exchange, routing_key=key)
        return queue, dead

    async def dead_letters(self, consumer: str, *, limit: int = 1000) -> list[DeadLetter]:
        """Up to ``limit`` messages in ``consumer``'s dead-letter queue, oldest first, left in
        place (they are read unacknowledged and go back when the channel closes)."""
        channel = await self.connection.channel(publisher_confirms=False)
        try:
            try:
                queue = await channel.declare_queue(
                    f"{self.queue_name(consumer)}.dead", passive=True
                )
            except ChannelNotFoundEntity:
                return []  # never declared: that consumer never ran here, so nothing died
            found = []
            while len(found) < limit:
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    break
                found.append(DeadLetter.of(consumer, message))
            return found
        finally:
            with contextlib.suppress(Exception):
                await channel.close()

    async def replay_dead_letters(
        self, consumer: str, event_ids: Iterable[str] | None = None
    ) -> list[str]:
        """Move dead letters of ``consumer`` (all, or those whose event id is in ``event_ids``)
        back to its queue — to that consumer only, since the others already handled them — and
        return their ids. Each is published with a confirm before it leaves the dead-letter
        queue, so a crash here repeats a replay (absorbed by event id) and never loses one."""
        wanted = None if event_ids is None else set(event_ids)
        target = self.queue_name(consumer)
        channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
        replayed: list[str] = []
        try:
            try:
                dead = await channel.declare_queue(f"{target}.dead", passive=True)
            except ChannelNotFoundEntity:
                return []
            while True:
                message = await dead.get(no_ack=False, fail=False)
                if message is None:
                    break
                letter = DeadLetter.of(consumer, message)
                if wanted is not None and letter.event_id not in wanted:
                    continue
                headers = {
                    key: value
                    for key, value in (message.headers or {}).items()
                    if not key.startswith("x-")
                }
                headers["x-request-id"] = (message.headers or {}).get("x-request-id") or ""
                await channel.default_exchange.publish(
                    aio_pika.Message(
                        message.body,
                        content_type=message.content_type,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        message_id=message.message_id,
                        type=message.type,
                        headers=headers,
                    ),
                    routing_key=target,
                    mandatory=True,
                )
                await message.ack()
                replayed.append(letter.event_id)
            return replayed
        finally:
            with contextlib.suppress(Exception):
                await channel.close()

    async def close(self) -> None:
        """Close the connection (unacked deliveries go back to their queues)."""
        await self.connection.close()


@dataclass(frozen=True)
class DeadLetter:
    """A message a consumer gave up on: which event, why, after how many deliveries."""

    consumer: str
    event_id: str
    event_type: str
    #: ``delivery_limit`` (its handler kept failing) or ``rejected`` (it could not be parsed).
    reason: str
    deliveries: int
    body: bytes

    @classmethod
    def of(cls, consumer: str, message: AbstractIncomingMessage) -> DeadLetter:
        """Describe a message read from ``consumer``'s dead-letter queue."""
        headers = message.headers or {}
        deaths = headers.get("x-death") or []
        first = deaths[0] if isinstance(deaths, list) and deaths else {}
        reason = first.get("reason", "") if isinstance(first, dict) else ""
        return cls(
            consumer=consumer,
            event_id=message.message_id or "",
            event_type=message.type or "",
            reason=reason.decode() if isinstance(reason, bytes) else str(reason),
            deliveries=int(headers.get("x-delivery-count") or 0) + 1,
            body=message.body,
        )

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description (the body as text, cut at 500 characters)."""
        return {
            "consumer": self.consumer,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "reason": self.reason,
            "deliveries": self.deliveries,
            "body": self.body[:500].decode(errors="replace"),
        }


Handler = Callable[[asyncpg.Connection, Envelope], Awaitable[None]]


@dataclass(frozen=True)
class Subscription:
    """A durable consumer: ``handler`` runs in a transaction for each event once.

    ``prefetch`` bounds the deliveries one process holds unacknowledged: for CPU-bound work,
    the number of jobs it runs at once, so that the rest stay in the queue for other replicas.
    """

    consumer: str
    routing_keys: tuple[str, ...]
    handler: Handler
    prefetch: int = 8


#: How long a consumer keeps asking a broker that refuses its queue for a moment at start.
START_WITHIN_SECONDS = 30.0


class EventConsumer:
    """Runs one :class:`Subscription` as a competing consumer on its quorum queue.

    For each delivery: open a transaction, record the event id in ``processed_events`` (a
    redelivery finds it there and is acknowledged without effect), run the handler, commit,
    then ack. A failing handler rolls back, waits an exponential back-off and nacks with
    requeue; past the queue's delivery limit RabbitMQ dead-letters the message.
    """

    def __init__(
        self,
        broker: Broker,
        pool: asyncpg.Pool,
        subscription: Subscription,
        *,
        delivery_limit: int = 5,
        retry_base: float = 0.5,
        prefetch: int = 8,
        metrics: Metrics | None = None,
        faults: Faults = NO_FAULTS,
    ) -> None:
        self.broker = broker
        self.pool = pool
        self.subscription = subscription
        self.faults = faults
        self.delivery_limit = delivery_limit
        self.retry_base = retry_base
        self.prefetch = prefetch
        self.metrics = metrics
        self._channel: AbstractRobustChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._inflight: set[asyncio.Task] = set()

    async def start(self, within: float = START_WITHIN_SECONDS) -> None:
        """Declare the queues and begin consuming.

        A broker that refuses for a moment is asked again, with back-off, for up to ``within``
        seconds: replicas started together declare the same quorum queue at the same instant,
        and RabbitMQ can answer the second ``basic.consume`` with ``noproc`` (the queue's
        process is not up yet) and close the connection with INTERNAL_ERROR; the robust
        connection comes back by itself, so the replica should wait for it, not exit.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        delay = 0.2
        while True:
            try:
                await self._start_once()
                return
            # RuntimeError: aio-pika's "connection closed", while the robust connection is away
            except (
                aio_pika.exceptions.AMQPException,
                aiormq.exceptions.AMQPError,
                RuntimeError,
            ) as exc:
                if loop.time() + delay > deadline:
                    raise
                log.warning(
                    "consumer.start_retried",
                    consumer=self.subscription.consumer,
                    error=repr(exc)[:200],
                    retry_in=delay,
                )
                if self._channel is not None:
                    with contextlib.suppress(Exception):
                        await self._channel.close()
                    self._channel = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _start_once(self) -> None:
        self._channel = await self.broker.connection.channel(publisher_confirms=False)
        await self._channel.set_qos(prefetch_count=self.prefetch)
        queue, _dead = await self.broker.declare_consumer_queue(
            self.subscription.consumer,
            self.subscription.routing_keys,
            delivery_limit=self.delivery_limit,
            channel=self._channel,
        )
        self._queue = queue
        self._tag = await queue.consume(self._on_message, no_ack=False)

    async def cancel(self) -> None:
        """Take no new deliveries (``basic.cancel``); those in flight go on."""
        queue, tag, self._tag = self._queue, self._tag, None
        if queue is not None and tag is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await queue.cancel(tag)

    async def stop(self, deadline: float | None = None) -> None:
        """Stop consuming: cancel, let the deliveries in flight finish until ``deadline``
        (a ``loop.time()``; default: now), cancel the rest (their transactions roll back) and
        close the channel, so every unacked delivery goes back to the queue."""
        await self.cancel()
        loop = asyncio.get_running_loop()
        pending = {task for task in self._inflight if task is not asyncio.current_task()}
        remaining = (deadline - loop.time()) if deadline is not None else 0
        if pending and remaining > 0:
            _done, pending = await asyncio.wait(pending, timeout=remaining)
        if pending:
            log.warning(
                "consumer.abandoned", consumer=self.subscription.consumer, deliveries=len(pending)
            )
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=5)
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await self._channel.close()

    async def depths(self) -> dict[str, int]:
        """Messages ready in this consumer's queue and its dead-letter queue (passive
        declares on a short-lived channel)."""
        name = self.broker.queue_name(self.subscription.consumer)
        channel = await self.broker.connection.channel(publisher_confirms=False)
        try:
            depths = {}
            for queue_name in (name, f"{name}.dead"):
                queue = await channel.declare_queue(queue_name, passive=True)
                depths[queue_name] = queue.declaration_result.message_count or 0
            return depths
        finally:
            with contextlib.suppress(Exception):
                await channel.close()

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.consumed(self.subscription.consumer, outcome)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            await self._handle(message)
        finally:
            self._inflight.discard(task)  # type: ignore[arg-type]

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        try:
            envelope = Envelope.from_dict(json.loads(message.body))
        except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deep
            log.error("event.malformed", consumer=self.subscription.consumer, error=str(exc))
            await message.reject(requeue=False)
            self._count("dead_lettered")
            return
        token = request_id_var.set(envelope.request_id)
        try:
            applied = await self._apply(envelope)
        except Exception:
            deliveries = int((message.headers or {}).get("x-delivery-count") or 0) + 1
            log.exception(
                "event.failed",
                consumer=self.subscription.consumer,
                event_id=envelope.id,
                event_type=envelope.type,
                delivery=deliveries,
            )
            await asyncio.sleep(min(self.retry_base * 2 ** (deliveries - 1), 30.0))
            await message.nack(requeue=True)
            # Past the queue's limit the broker dead-letters it (the limit counts redeliveries).
            self._count("dead_lettered" if deliveries > self.delivery_limit else "retried")
            return
        finally:
            request_id_var.reset(token)
        self.faults.reach("consumer.after_commit")
        await message.ack()
        self._count("ok" if applied else "duplicate")

    async def _apply(self, envelope: Envelope) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            first_time = await conn.fetchval(
                "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2)"
                " ON CONFLICT DO NOTHING RETURNING true",
                self.subscription.consumer,
                uuid.UUID(envelope.id),
            )
            if not first_time:
                log.info(
                    "event.duplicate", consumer=self.subscription.consumer, event_id=envelope.id
                )
                return False
            await self.subscription.handler(conn, envelope)
            self.faults.reach("consumer.before_commit")
            return True


class BroadcastListener:
    """Delivers events to every process (not competing), for in-memory state such as caches.

    The queue is exclusive to this connection and vanishes with it; ``on_reconnect`` runs after
    the connection is restored, because events published meanwhile were missed.
    """

    def __init__(
        self,
        broker: Broker,
        name: str,
        routing_keys: Iterable[str],
        callback: Callable[[Envelope], Awaitable[None]],
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        self.broker = broker
        self.queue_name = f"{broker.exchange_name}.{name}.{uuid.uuid4().hex[:12]}"
        self.routing_keys = tuple(routing_keys)
        self.callback = callback
        self.on_reconnect = on_reconnect
        self._channel: AbstractRobustChannel | None = None

    async def start(self) -> None:
        """Declare the private queue, bind it and begin listening."""
        self._channel = await self.broker.connection.channel(publisher_confirms=False)
        queue = await self._channel.declare_queue(
            self.queue_name, exclusive=True, auto_delete=True, durable=False
        )
        for key in self.routing_keys:
            await queue.bind(self.broker.exchange, routing_key=key)
        await queue.consume(self._on_message, no_ack=False)
        if self.on_reconnect is not None:
            self.broker.connection.reconnect_callbacks.add(self._reconnected)

    def _reconnected(self, *_args: object) -> None:
        if self.on_reconnect is not None:
            self.on_reconnect()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            envelope = Envelope.from_dict(json.loads(message.body))
        except (ValueError, RecursionError):  # RecursionError: JSON nested too deep
            await message.reject(requeue=False)
            return
        try:
            await self.callback(envelope)
        except Exception:
            # A private queue has no delivery limit, so a requeue would spin forever; the
            # state a broadcast maintains (a cache) must cope with a missed event anyway.
            log.exception("broadcast.failed", event_type=envelope.type)
            await message.reject(requeue=False)
            return
        await message.ack()

    async def stop(self) -> None:
        """Stop listening; the private queue is deleted by the broker."""
        self.broker.connection.reconnect_callbacks.discard(self._reconnected)
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await self._channel.close()
