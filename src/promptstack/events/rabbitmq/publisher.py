"""The relay's side of the bus: publishing outbox events to RabbitMQ, each confirmed.

The relay deletes an event from the outbox only once the broker confirmed it, so the
publisher's job is to tell the relay exactly what happened to each event: confirmed,
refused or unroutable (the relay retries it and counts an attempt), or not sent because
the broker is out of reach (the event waits in the outbox and counts nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from aio_pika.exceptions import DeliveryError, PublishError

from promptstack.core.envelope import Envelope
from promptstack.core.logging import get_logger
from promptstack.core.settings import Settings
from promptstack.events.bus import PublishReport, by_aggregate
from promptstack.events.consumers import Consumers
from promptstack.events.rabbitmq.connection import close_quietly, connect
from promptstack.events.rabbitmq.messages import describe_error, envelope_message
from promptstack.events.rabbitmq.topology import declare_consumer_queue, declare_exchange

log = get_logger(__name__)


class BrokerLost(ConnectionError):
    """The connection to RabbitMQ is down (the robust connection is reconnecting)."""


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
            report.unavailable = f"RabbitMQ is unreachable: {describe_error(exc)}"
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
                report.failed[envelope.id] = f"refused by RabbitMQ: {describe_error(exc)}"
                return
            except TimeoutError:
                report.unavailable = "RabbitMQ did not confirm in time"
                return
            except Exception as exc:
                report.unavailable = f"RabbitMQ connection failed: {describe_error(exc)}"
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
            log.debug("amqp_publisher_connect_failed", error=describe_error(error))

    async def _connect(self) -> None:
        connection = await connect(self.settings)
        try:
            async with asyncio.timeout(self.timeout):
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                exchange = await declare_exchange(channel, self.namespace)
                for consumer in self.consumers:
                    await declare_consumer_queue(channel, exchange, self.namespace, consumer)
        except BaseException:
            await close_quietly(connection, self.timeout)
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
            await close_quietly(connection, self.timeout)
