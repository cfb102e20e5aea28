"""The consumer runtime: RabbitMQ deliveries handed to the registered consumers.

Each consumer has a channel of its own, with `AMQP_PREFETCH` messages in hand at most.
Delivery is at least once: a message is acknowledged only once its handler's
transaction committed (with the inbox row that turns redeliveries into no-ops) or once
its retry or dead-letter copy was confirmed by the broker. Within a process each
aggregate's events are handled in the order they arrive, other aggregates' side by
side; an event sent to a retry queue comes back after the ones behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
    ConsumerTag,
    HeadersType,
)
from pydantic import ValidationError

from promptstack.core.envelope import Envelope
from promptstack.core.logging import Throttle, get_logger
from promptstack.core.metrics import EVENTS_DEAD_LETTERED
from promptstack.core.resilience import Backoff
from promptstack.core.settings import Settings
from promptstack.events.consumers import Consumer, Consumers
from promptstack.events.delivery import Delivery
from promptstack.events.rabbitmq.connection import close_quietly, connect
from promptstack.events.rabbitmq.messages import (
    ATTEMPT_HEADER,
    CONSUMER_HEADER,
    ERROR_HEADER,
    MAX_ERROR_HEADER_LENGTH,
    attempt_of,
    copy_of,
    describe_error,
)
from promptstack.events.rabbitmq.topology import (
    dead_letter_queue_name,
    declare_consumer_queue,
    declare_dead_letter_queue,
    declare_exchange,
    declare_retry_queues,
    retry_delay_ms,
    retry_queue_name,
)

log = get_logger(__name__)

RECONNECT_MAX_SECONDS = 30.0
# A consumer process that cannot reach the broker tries again after 1 s, doubling to the cap.
RECONNECT_BACKOFF = Backoff(1.0, cap=RECONNECT_MAX_SECONDS)

_Callback = Callable[[AbstractIncomingMessage], Awaitable[None]]


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
            log.warning("amqp_consumers_unavailable", error=describe_error(exc))
            self._connector = asyncio.get_running_loop().create_task(
                self._keep_trying(), name="amqp_consumers_connect"
            )

    async def _keep_trying(self) -> None:
        failures = 1  # `start` failed once already
        while not self._stopping:
            await asyncio.sleep(RECONNECT_BACKOFF.delay(failures))
            try:
                await self._open()
            except Exception as exc:
                failures += 1
                if self._warn.ready():
                    log.warning("amqp_consumers_unavailable", error=describe_error(exc))
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
            await close_quietly(connection, self.timeout)
            raise
        self._connection, self._workers = connection, workers
        log.info("amqp_consumers_started", queues=[w.queue.name for w in workers])

    async def _declare(self, connection: AbstractRobustConnection, consumer: Consumer) -> _Worker:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await channel.set_qos(prefetch_count=self.settings.amqp_prefetch)
        exchange = await declare_exchange(channel, self.namespace)
        queue = await declare_consumer_queue(channel, exchange, self.namespace, consumer)
        await declare_retry_queues(channel, self.settings, consumer.name, queue)
        await declare_dead_letter_queue(channel, self.namespace, consumer.name)
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
            attempt = attempt_of(message)
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
            ATTEMPT_HEADER: attempt_of(message),
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
        copy = copy_of(message, headers)
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
                error=describe_error(exc),
            )
            # Not at full speed: the broker is in trouble, and the message stays safe.
            await asyncio.sleep(min(self.settings.event_retry_base_seconds, 1.0))
            await _settle(message, ack=False)
            return False
        await _settle(message, ack=True)
        return True

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking messages, let those in hand finish within `grace` seconds (the
        shutdown grace period unless told), then close. Unacknowledged messages go back
        to their queues."""
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
                set(self._inflight),
                timeout=self.settings.shutdown_grace_seconds if grace is None else grace,
            )
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        connection, self._connection, self._workers = self._connection, None, []
        if connection is not None:
            await close_quietly(connection, self.timeout)


async def _settle(message: AbstractIncomingMessage, *, ack: bool) -> None:
    """Acknowledge, or requeue. On a channel that has gone there is nothing to do: the
    broker requeued the message when it went."""
    try:
        if ack:
            await message.ack()
        else:
            await message.nack(requeue=True)
    except Exception as exc:
        log.info(
            "amqp_settle_failed", event_id=message.message_id, ack=ack, error=describe_error(exc)
        )
