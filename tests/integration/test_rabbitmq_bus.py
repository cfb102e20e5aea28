"""RabbitMQ's own failure modes: the broker out of reach while requests flow, a queue
that vanished, a message that is not an event. Nothing recorded is ever lost."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from promptstack.bootstrap import Container, bootstrap
from promptstack.core.clock import FrozenClock
from promptstack.core.events import Envelope, Event
from promptstack.core.settings import Settings
from promptstack.events.rabbitmq import DeadLetter, DeadLetters
from promptstack.events.relay import BrokerUnavailable
from promptstack.models.audit import AuditEntry
from promptstack.models.messaging import InboxEntry, OutboxMessage
from promptstack.repositories.unit_of_work import UnitOfWork
from tests.amqp import Broker, TcpProxy, delete_namespace
from tests.support import Api, eventually

EFFECT = "test.effect"


class Beep(Event):
    type = "test.rabbitmq.beep"

    n: int


async def effect(event: Beep, envelope: Envelope, uow: UnitOfWork) -> None:
    uow.audit.add(
        AuditEntry(
            id=uuid.uuid4(),
            action=EFFECT,
            at=datetime.now(UTC),
            details={"n": event.n, "event": str(envelope.id)},
        )
    )


@pytest.fixture
def backend() -> str:
    return "postgres"


@pytest.fixture
async def proxy(amqp_url: str) -> AsyncIterator[TcpProxy]:
    relay = TcpProxy.to(amqp_url)
    await relay.start()
    yield relay
    await relay.aclose()


@pytest.fixture
def settings_overrides(
    request: pytest.FixtureRequest, amqp_url: str, amqp_namespace: str
) -> dict[str, Any]:
    url = amqp_url
    if "proxy" in request.fixturenames:
        proxy: TcpProxy = request.getfixturevalue("proxy")
        # Reconnect attempts every 0.2 s, so the test need not wait out the default 5 s.
        url = proxy.url_for(amqp_url, reconnect_interval="0.2")
    return {
        "amqp_url": url,
        "amqp_namespace": amqp_namespace,
        "amqp_timeout_seconds": 2.0,
        "event_max_attempts": 3,
        "event_retry_base_seconds": 0.05,
        "event_retry_max_seconds": 0.2,
        "outbox_poll_seconds": 0.05,
        "shutdown_grace_seconds": 5.0,
    }


@pytest.fixture
async def container(settings: Settings, clock: FrozenClock) -> AsyncIterator[Container]:
    built = bootstrap(settings, clock=clock)
    try:
        yield built
    finally:
        await built.aclose()
        await delete_namespace(settings, built.consumers)


async def effect_count(container: Container) -> int:
    async with container.database.read_sessions() as session:
        count = await session.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == EFFECT)
        )
        return int(count or 0)


async def outbox_rows(container: Container) -> list[OutboxMessage]:
    async with container.database.read_sessions() as session:
        return list(await session.scalars(select(OutboxMessage)))


async def record(container: Container, *numbers: int) -> None:
    async with container.uow() as uow:
        for n in numbers:
            uow.record(Beep(n=n), aggregate_id=f"beeper-{n % 4}")


async def readiness(api: Api) -> dict[str, Any]:
    response = await api.client.get("/health/ready")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def handled(consumer: str) -> float:
    value = REGISTRY.get_sample_value(
        "promptstack_events_handled_total", {"consumer": consumer, "result": "handled"}
    )
    return value or 0.0


async def test_events_wait_out_a_broker_outage_and_none_is_lost(
    api: Api, container: Container, proxy: TcpProxy
) -> None:
    container.consumers.on("test.outage", Beep, effect)
    await container.start_events()
    before = handled("test.outage")
    await record(container, 0)
    await api.register()
    await eventually(lambda: _at_least(effect_count(container), 1), what="the first effect")
    state = await readiness(api)
    assert state["status"] == "healthy"
    assert state["checks"]["broker"] == {"status": "up", "required": False, "error": None}

    await proxy.cut()

    async def broker_down() -> bool:
        return (await readiness(api))["checks"]["broker"]["status"] == "down"

    await eventually(broker_down, what="readiness to notice the broker is gone")
    state = await readiness(api)
    assert state["status"] == "degraded", "requests are still served"
    assert state["checks"]["database"]["status"] == "up"

    accounts = [await api.register() for _ in range(3)]  # each answered 201
    for start in range(1, 31, 5):
        await record(container, *range(start, start + 5))
    await container.relay.stop(grace=0)  # from here this test drives the relay itself
    with pytest.raises(BrokerUnavailable):
        await container.relay.drain()
    backlog = await container.relay.backlog()
    assert backlog.pending >= 30 + len(accounts)
    assert backlog.parked == 0
    waiting = [row for row in await outbox_rows(container) if row.published_at is None]
    assert {row.attempts for row in waiting} == {0}, "waiting for the broker costs no attempts"

    await proxy.restore()
    container.relay.start()

    async def all_effects() -> bool:
        container.relay.wake()
        return await effect_count(container) >= 31

    await eventually(all_effects, what="every event recorded during the outage to take effect")
    assert await effect_count(container) == 31
    assert handled("test.outage") - before == 31
    assert proxy.connections > 2, "the publisher and the consumers reconnected"

    async def welcomed() -> bool:
        async with container.database.read_sessions() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(InboxEntry)
                .where(InboxEntry.consumer == "mail.welcome")
            )
        return count == 1 + len(accounts)

    await eventually(welcomed, what="every new user's welcome email")
    backlog = await container.relay.backlog()
    assert (backlog.pending, backlog.parked) == (0, 0)

    async def healthy() -> bool:
        return (await readiness(api))["status"] == "healthy"

    await eventually(healthy, what="readiness to see the broker again")


async def _at_least(count: Any, expected: int) -> bool:
    return bool(await count >= expected)


async def test_an_unroutable_event_is_retried_not_dropped(
    container: Container, clock: FrozenClock, settings: Settings
) -> None:
    container.consumers.on("test.unroutable", Beep, effect)
    assert container.broker_ping is not None
    await container.broker_ping()  # the publisher connects and declares the queues
    queue = f"{settings.amqp_namespace}.test.unroutable"
    assert settings.amqp_url is not None
    async with Broker(settings.amqp_url) as broker:
        await broker.delete_queue(queue)  # an operator's mistake

    await record(container, 1)
    await container.relay.drain()
    [row] = [r for r in await outbox_rows(container) if r.type == Beep.type]
    assert row.published_at is None
    assert row.parked_at is None
    assert row.attempts == 1
    assert "unroutable" in (row.last_error or "")

    clock.advance(timedelta(seconds=settings.event_retry_base_seconds * 2))
    await container.relay.drain()  # the publisher declared its consumers' queues again
    [row] = [r for r in await outbox_rows(container) if r.type == Beep.type]
    assert row.published_at is not None
    async with Broker(settings.amqp_url) as broker:
        assert await broker.depth(queue) == 1

    assert container.broker_consumers is not None
    await container.broker_consumers.start()
    await eventually(lambda: _at_least(effect_count(container), 1), what="the effect")


async def test_a_message_that_is_not_an_event_is_dead_lettered_at_once(
    container: Container, settings: Settings
) -> None:
    container.consumers.on("test.garbage", Beep, effect)
    assert container.broker_consumers is not None
    await container.broker_consumers.start()
    queue = f"{settings.amqp_namespace}.test.garbage"
    assert settings.amqp_url is not None
    async with Broker(settings.amqp_url) as broker:
        await broker.publish(
            aio_pika.Message(b"{not json", message_id="garbage"), routing_key=queue
        )
        await record(container, 1)
        await container.relay.drain()
        await eventually(lambda: _at_least(effect_count(container), 1), what="the next event")

        async def dead_lettered() -> int:
            return await broker.depth(f"{queue}.dead")

        await eventually(dead_lettered, what="the garbage in the dead-letter queue")
        [message] = await broker.take_all(f"{queue}.dead")
    assert message.body == b"{not json"
    assert message.headers["x-attempt"] == 1
    assert "not an event envelope" in str(message.headers["x-last-error"])


class Unheard(Event):
    type = "test.rabbitmq.unheard"


async def test_an_event_no_consumer_handles_is_published_without_a_queue(
    container: Container,
) -> None:
    async with container.uow() as uow:
        event_id = uow.record(Unheard(), aggregate_id="nobody").id
    await container.relay.drain()
    [row] = [r for r in await outbox_rows(container) if r.id == event_id]
    assert row.published_at is not None
    assert row.attempts == 0


async def test_consumers_started_while_the_broker_is_away_catch_up(
    container: Container, proxy: TcpProxy
) -> None:
    container.consumers.on("test.late", Beep, effect)
    await proxy.cut()
    await container.start_events()  # the service starts regardless
    await record(container, 1, 2, 3)

    await proxy.restore()

    async def caught_up() -> bool:
        container.relay.wake()
        return await effect_count(container) >= 3

    await eventually(caught_up, what="the consumers to connect and handle the backlog")
    assert await effect_count(container) == 3


async def test_stopping_lets_the_handler_in_hand_finish(
    container: Container, settings: Settings
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    calls: list[int] = []

    async def slow(event: Beep, envelope: Envelope, uow: UnitOfWork) -> None:
        calls.append(event.n)
        started.set()
        await release.wait()
        await effect(event, envelope, uow)

    container.consumers.on("test.slow", Beep, slow)
    consumers = container.broker_consumers
    assert consumers is not None
    await consumers.start()
    await record(container, 1)
    await container.relay.drain()
    await asyncio.wait_for(started.wait(), timeout=30)

    queue = f"{settings.amqp_namespace}.test.slow"
    assert settings.amqp_url is not None
    async with Broker(settings.amqp_url) as broker:
        stopping = asyncio.create_task(consumers.stop())

        async def consuming_cancelled() -> bool:
            return await broker.consumers(queue) == 0

        await eventually(consuming_cancelled, what="stop() to cancel consuming")
        assert not stopping.done(), "stop waits for the handler in hand"
        release.set()
        await asyncio.wait_for(stopping, timeout=30)

        assert await effect_count(container) == 1
        assert await broker.depth(queue) == 0, "acknowledged once handled"
        await record(container, 2)
        await container.relay.drain()
        assert await broker.depth(queue) == 1, "no longer consumed"
    assert calls == [1]


async def test_dead_letters_are_listed_and_replayed_once_the_cause_is_fixed(
    container: Container, settings: Settings
) -> None:
    broken = True

    async def handler(event: Beep, envelope: Envelope, uow: UnitOfWork) -> None:
        if broken:
            raise RuntimeError("the downstream service is down")
        await effect(event, envelope, uow)

    container.consumers.on("test.dead", Beep, handler)
    await container.start_events()
    async with container.uow() as uow:
        poisoned = uow.record(Beep(n=1), aggregate_id="dead").id
        other = uow.record(Beep(n=2), aggregate_id="dead-too").id
    letters = DeadLetters(settings, "test.dead")

    async def two_dead() -> list[DeadLetter] | None:
        found = await letters.list()
        return found if len(found) == 2 else None

    found = await eventually(two_dead, what="two dead letters")
    assert {letter.event_id for letter in found} == {str(poisoned), str(other)}
    assert all(letter.attempts == settings.event_max_attempts for letter in found)
    assert all("downstream service is down" in (letter.error or "") for letter in found)
    assert len(await letters.list()) == 2, "listing leaves them where they are"

    broken = False
    assert await letters.replay(str(poisoned)) == 1
    await eventually(lambda: effect_count(container), what="the replayed event's effect")
    assert [letter.event_id for letter in await letters.list()] == [str(other)]
    assert await letters.replay() == 1
    assert await letters.list() == []

    async def both() -> bool:
        return await effect_count(container) == 2

    await eventually(both, what="both effects")
