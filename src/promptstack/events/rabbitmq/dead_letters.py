"""The operator's tool for dead letters (`promptstack dead-letters`).

A dead letter waits for a person: something about the event or its handler must be
fixed before it can take effect. This module lets that person see what is waiting and,
once the cause is fixed, send it back to its consumer, without ever losing a message on
the way (each copy is confirmed before the dead letter is removed).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel

from promptstack.core.settings import Settings
from promptstack.events.rabbitmq.connection import close_quietly
from promptstack.events.rabbitmq.messages import (
    ATTEMPT_HEADER,
    CONSUMER_HEADER,
    ERROR_HEADER,
    attempt_of,
    copy_of,
)
from promptstack.events.rabbitmq.topology import (
    dead_letter_queue_name,
    declare_dead_letter_queue,
    queue_name,
)


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
        self.consumer = consumer
        self.queue = dead_letter_queue_name(settings.amqp_namespace, consumer)
        self.target = queue_name(settings.amqp_namespace, consumer)

    async def list(self, limit: int = 100) -> list[DeadLetter]:
        async with self._channel() as channel:
            queue = await declare_dead_letter_queue(
                channel, self.settings.amqp_namespace, self.consumer
            )
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
                        attempts=attempt_of(message),
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
            queue = await declare_dead_letter_queue(
                channel, self.settings.amqp_namespace, self.consumer
            )
            while True:
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    return moved
                if event_id is not None and message.message_id != event_id:
                    continue  # left unacknowledged: back in the queue when the channel closes
                copy = copy_of(message, {})
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
            await close_quietly(connection, self.settings.amqp_timeout_seconds)
