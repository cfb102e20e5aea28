"""The embedded bus: the relay hands each event straight to this process's consumers.

It keeps the broker's guarantees that fit one process: an event leaves the outbox only
once every consumer has handled it, a failure is retried with a growing delay by the
relay and parked after the attempt limit, and each aggregate's events are handled in
order while different aggregates proceed side by side.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from promptstack.core.envelope import Envelope
from promptstack.events.bus import PublishReport, by_aggregate
from promptstack.events.consumers import Consumers
from promptstack.events.delivery import Delivery


class InProcessBus:
    def __init__(self, consumers: Consumers, delivery: Delivery, *, concurrency: int = 8) -> None:
        self.consumers = consumers
        self.delivery = delivery
        self._limit = asyncio.Semaphore(concurrency)

    async def publish(self, envelopes: Sequence[Envelope]) -> PublishReport:
        report = PublishReport()
        await asyncio.gather(*(self._run(group, report) for group in by_aggregate(envelopes)))
        return report

    async def _run(self, group: list[Envelope], report: PublishReport) -> None:
        async with self._limit:
            for envelope in group:
                for consumer in self.consumers.for_type(envelope.type):
                    try:
                        await self.delivery.deliver(consumer, envelope)
                    except Exception as exc:
                        report.failed[envelope.id] = f"{consumer.name}: {exc!r}"
                        return
                report.published.append(envelope.id)

    async def aclose(self) -> None:
        return None
