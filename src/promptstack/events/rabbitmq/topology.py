"""The exchange and queues every RabbitMQ process agrees on, by name and by arguments.

The publisher, the consumers and the dead-letter tool each declare what they use, so
whichever starts first creates it; a queue declared twice with different arguments is an
error in RabbitMQ, so every declaration lives here, once. Every name starts with the
namespace `ns` (`AMQP_NAMESPACE`):

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
"""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from promptstack.core.resilience import Backoff
from promptstack.core.settings import Settings
from promptstack.events.consumers import Consumer


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
    cap = settings.event_retry_max_seconds
    # Backoff refuses a base above the cap. Lowering the base to the cap keeps what such
    # settings always meant, every delay the cap, and with it the retry queues' names.
    backoff = Backoff(min(settings.event_retry_base_seconds, cap), cap=cap)
    return max(1, round(backoff.delay(attempt) * 1000))


def retry_delays_ms(settings: Settings) -> list[int]:
    """Every delay a retry can wait, so one queue of each can be declared up front."""
    return sorted(
        {retry_delay_ms(settings, attempt) for attempt in range(1, settings.event_max_attempts)}
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


async def declare_retry_queues(
    channel: AbstractChannel, settings: Settings, consumer: str, queue: AbstractQueue
) -> None:
    """One retry queue per delay a retry can wait, each dead-lettering back into `queue`
    (the consumer's) when a message's TTL ends."""
    for delay in retry_delays_ms(settings):
        await channel.declare_queue(
            retry_queue_name(settings.amqp_namespace, consumer, delay),
            durable=True,
            arguments={
                "x-message-ttl": delay,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": queue.name,
            },
        )


async def declare_dead_letter_queue(
    channel: AbstractChannel, namespace: str, consumer: str
) -> AbstractQueue:
    return await channel.declare_queue(dead_letter_queue_name(namespace, consumer), durable=True)
