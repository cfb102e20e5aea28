"""The scale-out bus: RabbitMQ through aio-pika.

Topology, every name prefixed with the namespace `ns` (`AMQP_NAMESPACE`):

- `ns.events`, a durable topic exchange. The relay publishes each event persistent,
  with its type as the routing key, and waits for the broker's confirm.
- `ns.<consumer>`, a durable queue per consumer, bound to the types it handles. The
  publisher declares these too, so events published before any consumer process ran
  wait for it.
- `ns.<consumer>.retry.<ms>`, durable queues without consumers: a failed delivery is
  republished to the one for its delay, and when the message's TTL (`ms`) ends the
  broker dead-letters it back into the consumer's queue.
- `ns.<consumer>.dead`, the durable dead-letter queue: deliveries that failed
  `EVENT_MAX_ATTEMPTS` times, or whose body is not an envelope, wait there for a person.

Delivery is at least once: a message is acknowledged only once its handler's
transaction committed (with the inbox row that turns redeliveries into no-ops) or once
its retry or dead-letter copy was confirmed by the broker. Within a process each
aggregate's events are handled in the order they arrive, other aggregates' side by
side; an event sent to a retry queue comes back after the ones behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
    ConsumerTag,
    HeadersType,
)
from aio_pika.exceptions import DeliveryError, PublishError
from pydantic import ValidationError

from promptstack.core.envelope import Envelope
from promptstack.core.logging import Throttle, get_logger
from promptstack.core.metrics import EVENTS_DEAD_LETTERED
from promptstack.core.settings import Settings
from promptstack.events.bus import PublishReport, by_aggregate
from promptstack.events.consumers import Consumer, Consumers
from promptstack.events.delivery import Delivery

log = get_logger(__name__)

ATTEMPT_HEADER = "x-attempt"
ERROR_HEADER = "x-last-error"
CONSUMER_HEADER = "x-consumer"
MAX_ERROR_HEADER_LENGTH = 1000
# Headers the broker adds when it dead-letters a message; a copy we publish starts afresh.
_BROKER_HEADERS = ("x-death", "x-first-death-", "x-last-death-")
RECONNECT_MAX_SECONDS = 30.0

_Callback = Callable[[AbstractIncomingMessage], Awaitable[None]]


class BrokerLost(ConnectionError):
    """The connection to RabbitMQ is down (the robust connection is reconnecting)."""


def exchange_name(namespace: str) -> str:
    return f"{namespace}.events"


def queue_name(namespace: str, consumer: str) -> str:
    return f"{namespace}.{consumer}"


def retry_queue_name(namespace: str, consumer: str, delay_ms: int) -> str:
    return f"{namespace}.{consumer}.retry.{delay_ms}"


def dead_letter_queue_name(namespace: str, consumer: str) -> str:
    return f"{namespace}.{consumer}.dead"


def retry_delay_ms(settings: Settings, attempt: int) -> int:
    """How long a delivery that failed for the `attempt`th time waits before the next."""
    seconds = min(
        settings.event_retry_base_seconds * 2.0 ** min(attempt - 1, 60),
        settings.event_retry_max_seconds,
    )
    return max(1, round(seconds * 1000))


def retry_delays_ms(settings: Settings) -> list[int]:
    """Every delay a retry can wait, so one queue of each can be declared up front."""
    return sorted(
        {retry_delay_ms(settings, attempt) for attempt in range(1, settings.event_max_attempts)}
    )


def envelope_message(envelope: Envelope) -> aio_pika.Message:
    return aio_pika.Message(
        envelope.model_dump_json().encode(),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=str(envelope.id),
        type=envelope.type,
        correlation_id=envelope.correlation_id,
        timestamp=envelope.occurred_at,
        headers={"schema_version": envelope.schema_version, "aggregate_id": envelope.aggregate_id},
    )


async def connect(settings: Settings) -> AbstractRobustConnection:
    """A connection that reconnects by itself and then restores its channels, the
    exchanges and queues they declared, and their consumers."""
    if settings.amqp_url is None:
        raise RuntimeError("AMQP_URL is not set")
    return await aio_pika.connect_robust(
        settings.amqp_url,
        timeout=settings.amqp_timeout_seconds,
        client_properties={"connection_name": f"promptstack {settings.amqp_namespace}"},
    )


async def declare_exchange(channel: AbstractChannel, namespace: str) -> AbstractExchange:
    return await channel.declare_exchange(
        exchange_name(namespace), aio_pika.ExchangeType.TOPIC, durable=True
    )


async def declare_consumer_queue(
    channel: AbstractChannel, exchange: AbstractExchange, namespace: str, consumer: Consumer
) -> AbstractQueue:
    """The consumer's queue, bound to each type it handles (publisher and consumer both
    declare it, with the same arguments)."""
    queue = await channel.declare_queue(queue_name(namespace, consumer.name), durable=True)
    for type_ in sorted(consumer.event_types):
        await queue.bind(exchange, routing_key=type_)
    return queue


async def _close_quietly(connection: AbstractConnection, within: float) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(within):
            await connection.close()


class RabbitPublisher:
    """The relay's publisher: each event confirmed by the broker before the next of its
    aggregate is sent, different aggregates side by side."""

    def __init__(self, settings: Settings, consumers: Consumers) -> None:
        self.settings = settings
        self.consumers = consumers
        self.namespace = settings.amqp_namespace
        self.timeout = settings.amqp_timeout_seconds
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        # Connecting runs in a task of its own, so a caller that gives up waiting (a
        # timeout, a cancelled health probe) never leaves a half-made connection behind.
        self._connecting: asyncio.Task[None] | None = None
        # Set when the broker returned an event no queue took: the consumers' queues
        # are declared again before the next publish.
        self._redeclare = False

    async def publish(self, envelopes: Sequence[Envelope]) -> PublishReport:
        report = PublishReport()
        if not envelopes:
            return report
        try:
            async with asyncio.timeout(self.timeout):
                exchange = await self._ready()
        except Exception as exc:
            report.unavailable = f"RabbitMQ is unreachable: {_describe(exc)}"
            return report
        await asyncio.gather(
            *(self._publish_group(exchange, group, report) for group in by_aggregate(envelopes))
        )
        return report

    async def _publish_group(
        self, exchange: AbstractExchange, group: list[Envelope], report: PublishReport
    ) -> None:
        for envelope in group:
            if report.unavailable is not None:
                return
            # An event some consumer needs must reach a queue; others may go nowhere.
            mandatory = bool(self.consumers.for_type(envelope.type))
            try:
                async with asyncio.timeout(self.timeout):
                    await exchange.publish(
                        envelope_message(envelope),
                        routing_key=envelope.type,
                        mandatory=mandatory,
                        timeout=self.timeout,
                    )
            except PublishError:
                self._redeclare = True
                report.failed[envelope.id] = (
                    f"unroutable: no queue is bound to {envelope.type} on {exchange.name}"
                )
                return
            except DeliveryError as exc:
                report.failed[envelope.id] = f"refused by RabbitMQ: {_describe(exc)}"
                return
            except TimeoutError:
                report.unavailable = "RabbitMQ did not confirm in time"
                return
            except Exception as exc:
                report.unavailable = f"RabbitMQ connection failed: {_describe(exc)}"
                return
            report.published.append(envelope.id)

    async def _ready(self) -> AbstractExchange:
        """The exchange to publish to, connecting on first use."""
        if self._exchange is None:
            if self._connecting is None:
                task = asyncio.get_running_loop().create_task(
                    self._connect(), name="amqp_publisher_connect"
                )
                task.add_done_callback(self._connected)
                self._connecting = task
            await asyncio.shield(self._connecting)
        connection, channel, exchange = self._connection, self._channel, self._exchange
        if connection is None or channel is None or exchange is None:
            raise BrokerLost("the publisher is closed")
        if not connection.connected.is_set():
            raise BrokerLost("the connection to RabbitMQ is down; reconnecting")
        if self._redeclare:
            self._redeclare = False
            try:
                for consumer in self.consumers:
                    await declare_consumer_queue(channel, exchange, self.namespace, consumer)
            except BaseException:
                self._redeclare = True
                raise
        return exchange

    def _connected(self, task: asyncio.Task[None]) -> None:
        self._connecting = None
        error = None if task.cancelled() else task.exception()
        if error is not None:
            log.debug("amqp_publisher_connect_failed", error=_describe(error))

    async def _connect(self) -> None:
        connection = await connect(self.settings)
        try:
            async with asyncio.timeout(self.timeout):
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                exchange = await declare_exchange(channel, self.namespace)
                for consumer in self.consumers:
                    await declare_consumer_queue(channel, exchange, self.namespace, consumer)
        except BaseException:
            await _close_quietly(connection, self.timeout)
            raise
        self._connection, self._channel, self._exchange = connection, channel, exchange
        log.info("amqp_publisher_connected", exchange=exchange.name)

    async def ping(self) -> None:
        """Raise unless the broker is connected (connecting first if need be)."""
        async with asyncio.timeout(self.timeout):
            await self._ready()

    async def aclose(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._connecting
        connection = self._connection
        self._connection = self._channel = self._exchange = None
        if connection is not None:
            await _close_quietly(connection, self.timeout)


class _Turns:
    """Work for one key runs in the order it arrived; other keys' work side by side.

    A turn is taken synchronously when `turn` is entered, before anything is awaited,
    so deliveries keep the order in which their tasks started."""

    def __init__(self) -> None:
        self._last: dict[str, asyncio.Future[None]] = {}

    @contextlib.asynccontextmanager
    async def turn(self, key: str) -> AsyncIterator[None]:
        previous = self._last.get(key)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._last[key] = mine
        try:
            if previous is not None and not previous.done():
                await asyncio.wait([previous])
            yield
        finally:
            if previous is None or previous.done():
                self._finish(key, mine)
            else:  # cancelled while waiting: the next in line still waits for `previous`
                previous.add_done_callback(lambda _: self._finish(key, mine))

    def _finish(self, key: str, mine: asyncio.Future[None]) -> None:
        mine.set_result(None)
        if self._last.get(key) is mine:
            del self._last[key]


@dataclass(slots=True)
class _Worker:
    consumer: Consumer
    channel: AbstractChannel
    queue: AbstractQueue
    tag: ConsumerTag | None = None


class RabbitConsumers:
    """Consumes every registered consumer's queue, each on a channel of its own."""

    def __init__(self, settings: Settings, consumers: Consumers, delivery: Delivery) -> None:
        self.settings = settings
        self.consumers = consumers
        self.delivery = delivery
        self.namespace = settings.amqp_namespace
        self.timeout = settings.amqp_timeout_seconds
        self._connection: AbstractRobustConnection | None = None
        self._workers: list[_Worker] = []
        self._inflight: set[asyncio.Task[object]] = set()
        self._turns = _Turns()
        self._stopping = False
        self._connector: asyncio.Task[None] | None = None
        self._warn = Throttle(30.0)

    async def start(self) -> None:
        """Start consuming. When the broker cannot be reached, keep trying in the
        background: the service starts without it and catches up once it is back."""
        if self._workers or self._connector is not None:
            return
        self._stopping = False
        try:
            await self._open()
        except Exception as exc:
            log.warning("amqp_consumers_unavailable", error=_describe(exc))
            self._connector = asyncio.get_running_loop().create_task(
                self._keep_trying(), name="amqp_consumers_connect"
            )

    async def _keep_trying(self) -> None:
        delay = 1.0
        while not self._stopping:
            await asyncio.sleep(delay)
            try:
                await self._open()
            except Exception as exc:
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)
                if self._warn.ready():
                    log.warning("amqp_consumers_unavailable", error=_describe(exc))
            else:
                return

    async def _open(self) -> None:
        connection = await connect(self.settings)
        workers: list[_Worker] = []
        try:
            async with asyncio.timeout(self.timeout * (1 + len(self.consumers))):
                for consumer in self.consumers:
                    workers.append(await self._declare(connection, consumer))
            for worker in workers:
                worker.tag = await worker.queue.consume(
                    self._callback(worker), timeout=self.timeout
                )
        except BaseException:
            await _close_quietly(connection, self.timeout)
            raise
        self._connection, self._workers = connection, workers
        log.info("amqp_consumers_started", queues=[w.queue.name for w in workers])

    async def _declare(self, connection: AbstractRobustConnection, consumer: Consumer) -> _Worker:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await channel.set_qos(prefetch_count=self.settings.amqp_prefetch)
        exchange = await declare_exchange(channel, self.namespace)
        queue = await declare_consumer_queue(channel, exchange, self.namespace, consumer)
        for delay in retry_delays_ms(self.settings):
            await channel.declare_queue(
                retry_queue_name(self.namespace, consumer.name, delay),
                durable=True,
                arguments={
                    "x-message-ttl": delay,
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": queue.name,
                },
            )
        await channel.declare_queue(
            dead_letter_queue_name(self.namespace, consumer.name), durable=True
        )
        return _Worker(consumer, channel, queue)

    def _callback(self, worker: _Worker) -> _Callback:
        async def on_message(message: AbstractIncomingMessage) -> None:
            await self._on_message(worker, message)

        return on_message

    async def _on_message(self, worker: _Worker, message: AbstractIncomingMessage) -> None:
        # Everything up to the turn is synchronous, so turns follow arrival order.
        if self._stopping:
            return  # left unacknowledged: the broker delivers it again
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            try:
                envelope = Envelope.model_validate_json(message.body)
            except ValidationError as exc:
                await self._give_up(worker, message, f"not an event envelope: {exc}")
                return
            async with self._turns.turn(envelope.aggregate_id):
                if self._stopping:
                    return
                await self._handle(worker, message, envelope)
        except Exception:
            # Not the handler (its failures are retried above) but this code or the
            # broker: hand the message back rather than hold it unsettled for ever.
            log.exception("amqp_message_failed", consumer=worker.consumer.name)
            if not message.processed:
                await asyncio.sleep(min(self.settings.event_retry_base_seconds, 1.0))
                await _settle(message, ack=False)
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def _handle(
        self, worker: _Worker, message: AbstractIncomingMessage, envelope: Envelope
    ) -> None:
        consumer = worker.consumer
        try:
            if envelope.type not in consumer.handlers:
                raise LookupError(f"{consumer.name} does not handle {envelope.type}")
            await self.delivery.deliver(consumer, envelope)
        except Exception as exc:
            error = f"{consumer.name}: {exc!r}"
            attempt = _attempt(message)
            if attempt < self.settings.event_max_attempts:
                await self._retry(worker, message, attempt, error)
            else:
                await self._give_up(worker, message, error)
            return
        await _settle(message, ack=True)

    async def _retry(
        self, worker: _Worker, message: AbstractIncomingMessage, attempt: int, error: str
    ) -> None:
        delay = retry_delay_ms(self.settings, attempt)
        target = retry_queue_name(self.namespace, worker.consumer.name, delay)
        headers: HeadersType = {
            ATTEMPT_HEADER: attempt + 1,
            ERROR_HEADER: error[:MAX_ERROR_HEADER_LENGTH],
        }
        if await self._forward(worker, message, target, headers):
            log.info(
                "event_retry_scheduled",
                consumer=worker.consumer.name,
                event_id=message.message_id,
                attempt=attempt,
                delay_ms=delay,
            )

    async def _give_up(self, worker: _Worker, message: AbstractIncomingMessage, error: str) -> None:
        target = dead_letter_queue_name(self.namespace, worker.consumer.name)
        headers: HeadersType = {
            ATTEMPT_HEADER: _attempt(message),
            ERROR_HEADER: error[:MAX_ERROR_HEADER_LENGTH],
            CONSUMER_HEADER: worker.consumer.name,
        }
        if await self._forward(worker, message, target, headers):
            EVENTS_DEAD_LETTERED.labels(worker.consumer.name).inc()
            log.error(
                "event_dead_lettered",
                consumer=worker.consumer.name,
                event_id=message.message_id,
                event_type=message.type,
                queue=target,
                error=error,
            )

    async def _forward(
        self, worker: _Worker, message: AbstractIncomingMessage, target: str, headers: HeadersType
    ) -> bool:
        """Move `message` to `target`: publish a copy, confirmed, then acknowledge the
        original. If the copy is not confirmed the original is requeued, so the message
        is never lost (at worst it is handled again)."""
        copy = _copy(message, headers)
        try:
            async with asyncio.timeout(self.timeout):
                await worker.channel.default_exchange.publish(
                    copy, routing_key=target, mandatory=True, timeout=self.timeout
                )
        except Exception as exc:
            log.warning(
                "event_forward_failed",
                consumer=worker.consumer.name,
                event_id=message.message_id,
                queue=target,
                error=_describe(exc),
            )
            # Not at full speed: the broker is in trouble, and the message stays safe.
            await asyncio.sleep(min(self.settings.event_retry_base_seconds, 1.0))
            await _settle(message, ack=False)
            return False
        await _settle(message, ack=True)
        return True

    async def stop(self) -> None:
        """Stop taking messages, let those in hand finish (within the shutdown grace
        period), then close. Unacknowledged messages go back to their queues."""
        self._stopping = True
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
            self._connector = None
        for worker in self._workers:
            if worker.tag is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self.timeout):
                        await worker.queue.cancel(worker.tag)
        await asyncio.sleep(0)  # deliveries already scheduled see `_stopping`
        if self._inflight:
            _, late = await asyncio.wait(
                set(self._inflight), timeout=self.settings.shutdown_grace_seconds
            )
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        connection, self._connection, self._workers = self._connection, None, []
        if connection is not None:
            await _close_quietly(connection, self.timeout)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    event_id: str | None
    type: str | None
    attempts: int
    error: str | None


class DeadLetters:
    """An operator's hands on one consumer's dead-letter queue: read what is there, and
    move messages back into the consumer's queue once their cause is fixed.

    The queue stays the truth: reading takes messages without acknowledging them, and
    closing the channel puts them back in order.
    """

    def __init__(self, settings: Settings, consumer: str) -> None:
        self.settings = settings
        self.queue = dead_letter_queue_name(settings.amqp_namespace, consumer)
        self.target = queue_name(settings.amqp_namespace, consumer)

    async def list(self, limit: int = 100) -> list[DeadLetter]:
        async with self._channel() as channel:
            queue = await channel.declare_queue(self.queue, durable=True)
            found: list[DeadLetter] = []
            while len(found) < limit:
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    break
                headers = message.headers or {}
                error = headers.get(ERROR_HEADER)
                found.append(
                    DeadLetter(
                        event_id=message.message_id,
                        type=message.type,
                        attempts=_attempt(message),
                        error=error.decode() if isinstance(error, bytes) else str(error or ""),
                    )
                )
            return found

    async def replay(self, event_id: str | None = None) -> int:
        """Move every dead letter (or only `event_id`'s) back to the consumer's queue
        with a fresh set of attempts; how many moved. Each copy is confirmed by the
        broker before the dead letter is removed."""
        moved = 0
        async with self._channel() as channel:
            queue = await channel.declare_queue(self.queue, durable=True)
            while True:
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    return moved
                if event_id is not None and message.message_id != event_id:
                    continue  # left unacknowledged: back in the queue when the channel closes
                copy = _copy(message, {})
                copy.headers = {
                    name: value
                    for name, value in (copy.headers or {}).items()
                    if name not in (ATTEMPT_HEADER, ERROR_HEADER, CONSUMER_HEADER)
                }
                await channel.default_exchange.publish(
                    copy,
                    routing_key=self.target,
                    mandatory=True,
                    timeout=self.settings.amqp_timeout_seconds,
                )
                await message.ack()
                moved += 1

    @contextlib.asynccontextmanager
    async def _channel(self) -> AsyncIterator[AbstractChannel]:
        if self.settings.amqp_url is None:
            raise RuntimeError("AMQP_URL is not set")
        connection = await aio_pika.connect(
            self.settings.amqp_url, timeout=self.settings.amqp_timeout_seconds
        )
        try:
            yield await connection.channel(publisher_confirms=True, on_return_raises=True)
        finally:
            await _close_quietly(connection, self.settings.amqp_timeout_seconds)


def _attempt(message: AbstractIncomingMessage) -> int:
    value = (message.headers or {}).get(ATTEMPT_HEADER)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    try:
        return max(1, int(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 1


def _copy(message: AbstractIncomingMessage, headers: HeadersType) -> aio_pika.Message:
    kept = {
        name: value
        for name, value in (message.headers or {}).items()
        if not name.startswith(_BROKER_HEADERS)
    }
    return aio_pika.Message(
        message.body,
        headers={**kept, **headers},
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        timestamp=message.timestamp,
        type=message.type,
        app_id=message.app_id,
    )


async def _settle(message: AbstractIncomingMessage, *, ack: bool) -> None:
    """Acknowledge, or requeue. On a channel that has gone there is nothing to do: the
    broker requeued the message when it went."""
    try:
        if ack:
            await message.ack()
        else:
            await message.nack(requeue=True)
    except Exception as exc:
        log.info("amqp_settle_failed", event_id=message.message_id, ack=ack, error=_describe(exc))


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
