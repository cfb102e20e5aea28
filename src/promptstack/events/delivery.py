"""Running one consumer's handler for one event, at most once in effect.

Both buses deliver at least once; this is where that becomes exactly-once in effect.
The inbox row and the handler's changes share a transaction, so either both commit or
the event is handled afresh on its next delivery. A handler with an effect outside the
database (an email) performs it before the commit: a crash in between repeats the
effect, never loses it.
"""

from __future__ import annotations

import asyncio

import structlog

from promptstack.core.clock import Clock
from promptstack.core.envelope import EVENT_TYPES, Envelope, caused_by
from promptstack.core.logging import get_logger
from promptstack.core.metrics import EVENTS_HANDLED
from promptstack.core.unit_of_work import UnitOfWorkFactory
from promptstack.events.consumers import Consumer
from promptstack.events.inbox import InboxRepository

log = get_logger(__name__)


class Delivery:
    """Runs handlers, at most `concurrency` at once in this process.

    The bound is the connection pool's size: each delivery holds a connection for its
    transaction, and more at once than the pool keeps open would open and close
    overflow connections for every message (measured: a fifth of a consumer's CPU).
    """

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, *, concurrency: int) -> None:
        self.uow = uow
        self.clock = clock
        self._slots = asyncio.Semaphore(concurrency)

    async def deliver(self, consumer: Consumer, envelope: Envelope) -> bool:
        """Handle `envelope`; False when `consumer` had already handled it. Raises what the
        handler raises, after rolling its transaction back."""
        handler = consumer.handlers[envelope.type]
        with (
            structlog.contextvars.bound_contextvars(
                event_id=str(envelope.id),
                event_type=envelope.type,
                consumer=consumer.name,
                correlation_id=envelope.correlation_id,
            ),
            caused_by(envelope),
        ):
            try:
                event = EVENT_TYPES.decode(envelope)
                async with self._slots, self.uow() as uow:
                    if not await InboxRepository.of(uow).claim(
                        consumer.name, envelope.id, self.clock.now()
                    ):
                        EVENTS_HANDLED.labels(consumer.name, "duplicate").inc()
                        return False
                    await handler(event, envelope, uow)
            except Exception:
                EVENTS_HANDLED.labels(consumer.name, "failed").inc()
                log.warning("event_handler_failed", exc_info=True)
                raise
        EVENTS_HANDLED.labels(consumer.name, "handled").inc()
        return True
