"""The guarantees every bus keeps, proved once for each: the in-process bus on SQLite and
on PostgreSQL, and RabbitMQ on PostgreSQL.

Effects are audit rows written by the test consumers in the transaction that handles
the event, so what happened is counted with a query. Waiting is polling with a
generous deadline; nothing is asserted about how long anything takes.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from promptstack.audit.models import AuditEntry
from promptstack.audit.repository import AuditRepository
from promptstack.bootstrap import Container, bootstrap
from promptstack.core.clock import SystemClock
from promptstack.core.envelope import Envelope, Event
from promptstack.core.settings import Settings
from promptstack.core.unit_of_work import UnitOfWork
from promptstack.events.bus import Publisher, PublishReport
from promptstack.events.models import OutboxMessage
from promptstack.events.rabbitmq import (
    RabbitConsumers,
    dead_letter_queue_name,
    envelope_message,
    exchange_name,
)
from promptstack.events.relay import Relay
from tests.fixtures.amqp import Broker, delete_namespace
from tests.fixtures.support import eventually

EFFECT = "test.effect"


class Ping(Event):
    type = "test.guarantees.ping"

    n: int


_handling_order = itertools.count()


def effect(consumer: str, *, poison: int | None = None, calls: Counter[int] | None = None) -> Any:
    """A handler whose effect is an audit row: which consumer handled which event, and
    in which order the process handled it. It raises for the `poison` event."""

    async def handle(event: Ping, envelope: Envelope, uow: UnitOfWork) -> None:
        if calls is not None:
            calls[event.n] += 1
        if event.n == poison:
            raise ValueError(f"event {event.n} is poison")
        await asyncio.sleep(random.random() / 500)  # let other deliveries interleave
        AuditRepository.of(uow).add(
            AuditEntry(
                id=uuid.uuid4(),
                action=EFFECT,
                at=datetime.now(UTC),
                details={
                    "consumer": consumer,
                    "aggregate": envelope.aggregate_id,
                    "n": event.n,
                    "event": str(envelope.id),
                    "order": next(_handling_order),
                },
            )
        )

    return handle


@pytest.fixture(
    params=[
        pytest.param(("inprocess", "sqlite"), id="inprocess-sqlite"),
        pytest.param(
            ("inprocess", "postgres"), id="inprocess-postgres", marks=pytest.mark.postgres
        ),
        pytest.param(("rabbitmq", "postgres"), id="rabbitmq-postgres", marks=pytest.mark.postgres),
    ]
)
def bus_on(request: pytest.FixtureRequest) -> tuple[str, str]:
    bus, backend = request.param
    return str(bus), str(backend)


@pytest.fixture
def bus(bus_on: tuple[str, str]) -> str:
    return bus_on[0]


@pytest.fixture
def backend(bus_on: tuple[str, str]) -> str:
    return bus_on[1]


@pytest.fixture
def clock() -> SystemClock:
    """Real time: retries wait their real (small) delays, on the relay and the broker."""
    return SystemClock()


@pytest.fixture
def settings_overrides(bus: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    values: dict[str, Any] = {
        "event_max_attempts": 3,
        "event_retry_base_seconds": 0.05,
        "event_retry_max_seconds": 0.2,
        "outbox_poll_seconds": 0.05,
        "outbox_batch_size": 10,
        "shutdown_grace_seconds": 5.0,
    }
    if bus == "rabbitmq":
        values["amqp_url"] = request.getfixturevalue("amqp_url")
        values["amqp_namespace"] = request.getfixturevalue("amqp_namespace")
        values["amqp_timeout_seconds"] = 5.0
    return values


@pytest.fixture
async def container(settings: Settings, clock: SystemClock) -> AsyncIterator[Container]:
    built = bootstrap(settings, clock=clock)
    try:
        yield built
    finally:
        await built.aclose()
        if settings.amqp_url is not None:
            await delete_namespace(settings, built.events.consumers)


async def effects(container: Container) -> list[dict[str, Any]]:
    async with container.database.read_sessions() as session:
        rows = await session.scalars(select(AuditEntry.details).where(AuditEntry.action == EFFECT))
        return list(rows)


async def outbox_row(container: Container, event_id: uuid.UUID) -> OutboxMessage | None:
    async with container.database.read_sessions() as session:
        row: OutboxMessage | None = await session.scalar(
            select(OutboxMessage).where(OutboxMessage.id == event_id)
        )
        return row


async def wait_for_effects(container: Container, count: int) -> list[dict[str, Any]]:
    async def enough() -> list[dict[str, Any]] | None:
        found = await effects(container)
        return found if len(found) >= count else None

    found: list[dict[str, Any]] = await eventually(enough, what=f"{count} effects")
    return found


def handled(consumer: str, result: str) -> float:
    value = REGISTRY.get_sample_value(
        "promptstack_events_handled_total", {"consumer": consumer, "result": result}
    )
    return value or 0.0


async def record(container: Container, *events: tuple[str, int]) -> list[Envelope]:
    async with container.uow() as uow:
        return [uow.record(Ping(n=n), aggregate_id=aggregate) for aggregate, n in events]


async def test_each_committed_event_reaches_each_consumer_once(container: Container) -> None:
    container.events.consumers.on("test.first", Ping, effect("test.first"))
    container.events.consumers.on("test.second", Ping, effect("test.second"))
    await container.start_events()

    for batch in range(5):
        await record(container, *((f"agg-{n % 3}", n) for n in range(batch * 4, batch * 4 + 4)))
    rolled_back: list[Envelope] = []
    with pytest.raises(RuntimeError, match="after recording"):
        await change_record_and_fail(container, rolled_back)

    await wait_for_effects(container, 40)
    await eventually(lambda: _no_backlog(container), what="the outbox to empty")
    found = await effects(container)
    per_delivery = Counter((e["consumer"], e["n"]) for e in found)
    assert set(per_delivery) == {(c, n) for c in ("test.first", "test.second") for n in range(20)}
    assert set(per_delivery.values()) == {1}, "each consumer saw each event once"
    assert await outbox_row(container, rolled_back[0].id) is None
    async with container.database.read_sessions() as session:
        state = await session.scalars(select(AuditEntry).where(AuditEntry.action == "test.state"))
        assert list(state) == [], "the state change rolled back with its event"


async def change_record_and_fail(container: Container, recorded: list[Envelope]) -> None:
    async with container.uow() as uow:
        AuditRepository.of(uow).add(
            AuditEntry(id=uuid.uuid4(), action="test.state", at=datetime.now(UTC), details={})
        )
        recorded.append(uow.record(Ping(n=999), aggregate_id="agg-0"))
        raise RuntimeError("the service failed after recording")


async def _no_backlog(container: Container) -> bool:
    backlog = await container.events.relay.backlog()
    return backlog.pending == 0


async def test_a_delivery_repeated_concurrently_takes_effect_once(
    container: Container, bus: str, settings: Settings
) -> None:
    container.events.consumers.on("test.dup", Ping, effect("test.dup"))
    consumer = container.events.consumers.get("test.dup")
    [envelope] = await record(container, ("dup", 1))
    copies = 20

    if bus == "inprocess":
        results = await asyncio.gather(
            *(container.events.delivery.deliver(consumer, envelope) for _ in range(copies))
        )
        assert results.count(True) == 1
    else:
        seen = handled("test.dup", "handled") + handled("test.dup", "duplicate")
        # Two consumer processes on the one queue, so copies are handled side by side.
        other = RabbitConsumers(settings, container.events.consumers, container.events.delivery)
        assert container.events.broker_consumers is not None
        await container.events.broker_consumers.start()
        await other.start()
        try:
            assert settings.amqp_url is not None
            async with Broker(settings.amqp_url) as broker:
                for _ in range(copies):
                    await broker.publish(
                        envelope_message(envelope),
                        exchange=exchange_name(settings.amqp_namespace),
                        routing_key=envelope.type,
                    )

            async def all_handled() -> bool:
                total = handled("test.dup", "handled") + handled("test.dup", "duplicate")
                return total - seen >= copies

            await eventually(all_handled, what="every copy to be handled")
        finally:
            await other.stop()
    [only] = await effects(container)
    assert only["event"] == str(envelope.id)


class KilledAfterPublishing:
    """A relay's publisher that dies once the batch is out, before it is marked sent."""

    def __init__(self, inner: Publisher) -> None:
        self.inner = inner

    async def publish(self, envelopes: Sequence[Envelope]) -> PublishReport:
        report = await self.inner.publish(envelopes)
        assert report.published == [envelope.id for envelope in envelopes], report
        raise ConnectionAbortedError("the relay died before marking the batch sent")

    async def aclose(self) -> None:
        return None


async def test_a_relay_dying_after_publishing_leads_to_one_effect(
    container: Container, bus: str, settings: Settings
) -> None:
    container.events.consumers.on("test.crash", Ping, effect("test.crash"))
    if container.events.broker_consumers is not None:
        await container.events.broker_consumers.start()
    duplicates = handled("test.crash", "duplicate")
    [envelope] = await record(container, ("crash", 1))

    doomed = Relay(
        settings, container.uow, KilledAfterPublishing(container.events.publisher), container.clock
    )
    with pytest.raises(ConnectionAbortedError):
        await doomed.pump()
    row = await outbox_row(container, envelope.id)
    assert row is not None
    assert row.published_at is None, "the batch was not marked sent"

    await container.events.relay.drain()  # another relay (or this one restarted) sends it again
    row = await outbox_row(container, envelope.id)
    assert row is not None
    assert row.published_at is not None

    async def second_copy_handled() -> bool:
        return handled("test.crash", "duplicate") - duplicates >= 1

    await eventually(second_copy_handled, what="the second copy to be handled")
    [only] = await effects(container)
    assert only["event"] == str(envelope.id)


async def test_a_poison_event_is_set_aside_while_the_rest_flow(
    container: Container, bus: str, settings: Settings
) -> None:
    calls: Counter[int] = Counter()
    container.events.consumers.on("test.poison", Ping, effect("test.poison", poison=0, calls=calls))
    dead_lettered = REGISTRY.get_sample_value(
        "promptstack_events_dead_lettered_total", {"consumer": "test.poison"}
    )
    await container.start_events()

    [poison] = await record(container, ("p", 0))
    await record(container, ("p", 1), ("q", 2), ("p", 3), ("r", 4))
    await record(container, ("q", 5), ("p", 6))

    found = await wait_for_effects(container, 6)
    assert sorted(e["n"] for e in found) == [1, 2, 3, 4, 5, 6]

    if bus == "inprocess":

        async def parked() -> OutboxMessage | None:
            row = await outbox_row(container, poison.id)
            return row if row is not None and row.parked_at is not None else None

        row = await eventually(parked, what="the poison event to be parked")
        assert row.attempts == settings.event_max_attempts
        assert "is poison" in (row.last_error or "")
    else:
        assert settings.amqp_url is not None
        dead_queue = dead_letter_queue_name(settings.amqp_namespace, "test.poison")
        async with Broker(settings.amqp_url) as broker:

            async def dead_letter() -> int:
                return await broker.depth(dead_queue)

            await eventually(dead_letter, what="the poison event in the dead-letter queue")
            [message] = await broker.take_all(dead_queue)
        assert message.message_id == str(poison.id)
        assert message.headers["x-attempt"] == settings.event_max_attempts
        assert "is poison" in str(message.headers["x-last-error"])
        assert Envelope.model_validate_json(message.body) == poison
        now = REGISTRY.get_sample_value(
            "promptstack_events_dead_lettered_total", {"consumer": "test.poison"}
        )
        assert (now or 0) - (dead_lettered or 0) == 1
        backlog = await container.events.relay.backlog()
        assert backlog.parked == 0, "the broker took the event; the consumer set it aside"
    assert calls[0] == settings.event_max_attempts, "tried the allowed times, no more"
    assert [e for e in await effects(container) if e["n"] == 0] == []


async def test_each_aggregates_events_are_handled_in_order(container: Container) -> None:
    container.events.consumers.on("test.order", Ping, effect("test.order"))
    await container.start_events()

    numbers = itertools.count()
    for _ in range(10):
        events = [("ordered", next(numbers)) for _ in range(5)]
        events += [(f"noise-{k}", next(numbers)) for k in range(3)]
        await record(container, *events)

    found = await wait_for_effects(container, 80)
    by_aggregate: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in found:
        by_aggregate[entry["aggregate"]].append(entry)
    assert len(by_aggregate["ordered"]) == 50
    for aggregate, entries in by_aggregate.items():
        handled_in = [e["n"] for e in sorted(entries, key=lambda e: e["order"])]
        assert handled_in == sorted(handled_in), f"{aggregate} handled out of order"
