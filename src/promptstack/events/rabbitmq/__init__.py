"""The scale-out bus: RabbitMQ through aio-pika.

The relay publishes the outbox to a topic exchange (`publisher`); each consumer reads a
queue of its own, with retry queues for its failed deliveries and a dead-letter queue
for those that keep failing (`consumers`, named and declared in `topology`); an operator
reads and replays the dead letters (`dead_letters`). `messages` is the wire format they
share, `connection` how they reach the broker.

Publishing is confirmed and delivery at least once, each aggregate's events in order
within a process (the limits are in `consumers`); the inbox makes redeliveries no-ops.

Only the composition root builds these; this package exports what it and the tests use.
"""

from promptstack.events.rabbitmq.consumers import RabbitConsumers
from promptstack.events.rabbitmq.dead_letters import DeadLetter, DeadLetters
from promptstack.events.rabbitmq.messages import envelope_message
from promptstack.events.rabbitmq.publisher import BrokerLost, RabbitPublisher
from promptstack.events.rabbitmq.topology import (
    dead_letter_queue_name,
    exchange_name,
    queue_name,
    retry_delay_ms,
    retry_delays_ms,
    retry_queue_name,
)

__all__ = [
    "BrokerLost",
    "DeadLetter",
    "DeadLetters",
    "RabbitConsumers",
    "RabbitPublisher",
    "dead_letter_queue_name",
    "envelope_message",
    "exchange_name",
    "queue_name",
    "retry_delay_ms",
    "retry_delays_ms",
    "retry_queue_name",
]
