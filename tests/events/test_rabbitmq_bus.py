"""RabbitMQ's own failure modes: the broker out of reach while requests flow, a queue
that vanished, a publish the broker refuses or never confirms, a retry queue that
vanished, a message that is not an event. Nothing recorded is ever lost."""

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

from promptstack.audit.models import AuditEntry
from promptstack.audit.repository import AuditRepository
from promptstack.bootstrap import Container, bootstrap
from promptstack.core.clock import FrozenClock
from promptstack.core.envelope import Envelope, Event
from promptstack.core.settings import Settings
from promptstack.core.unit_of_work import UnitOfWork
from promptstack.events.models import InboxEntry, OutboxMessage
from promptstack.events.rabbitmq import (
    DeadLetter,
    DeadLetters,
    dead_letter_queue_name,
    exchange_name,
    queue_name,
    retry_delays_ms,
    retry_queue_name,
)
from promptstack.events.relay import BrokerUnavailable
from tests.fixtures.amqp import Broker, TcpProxy, delete_namespace
from tests.fixtures.support import Api, eventually

EFFECT = "test.effect"


class Beep(Event):
    type = "test.rabbitmq.beep"

    n: int


async def effect(event: Beep, envelope: Envelope, uow: UnitOfWork) -> None:
    AuditRepository.of(uow).add(
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
        await delete_namespace(settings, built.events.consumers)


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


def handled(consumer: str, result: str = "handled") -> float:
    value = REGISTRY.get_sample_value(
        "promptstack_events_handled_total", {"consumer": consumer, "result": result}
    )
    return value or 0.0


def deliveries(consumer: str) -> tuple[float, float]:
    """How many deliveries `consumer` handled, and how many it found handled already."""
    return handled(consumer), handled(consumer, "duplicate")


async def beep_row(container: Container) -> OutboxMessage:
    [row] = [r for r in await outbox_rows(container) if r.type == Beep.type]
    return row


async def test_events_wait_out_a_broker_outage_and_none_is_lost(
    api: Api, container: Container, proxy: TcpProxy
) -> None:
    container.events.consumers.on("test.outage", Beep, effect)
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
    await container.events.relay.stop(grace=0)  # from here this test drives the relay itself
    with pytest.raises(BrokerUnavailable):
        await container.events.relay.drain()
    backlog = await container.events.relay.backlog()
    assert backlog.pending >= 30 + len(accounts)
    assert backlog.parked == 0
    waiting = [row for row in await outbox_rows(container) if row.published_at is None]
    assert {row.attempts for row in waiting} == {0}, "waiting for the broker costs no attempts"

    await proxy.restore()
    container.events.relay.start()

    async def all_effects() -> bool:
        container.events.relay.wake()
        return await effect_count(container) >= 31

    await eventually(all_effects, what="every event recorded during the outage to take effect")
    # The counter moves just after the effect's commit, which the query above can see first.
    await eventually(
        lambda: handled("test.outage") - before >= 31, what="the last delivery to be counted"
    )
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
    backlog = await container.events.relay.backlog()
    assert (backlog.pending, backlog.parked) == (0, 0)

    async def healthy() -> bool:
        return (await readiness(api))["status"] == "healthy"

    await eventually(healthy, what="readiness to see the broker again")


async def _at_least(count: Any, expected: int) -> bool:
    return bool(await count >= expected)


async def test_an_unroutable_event_is_retried_not_dropped(
    container: Container, clock: FrozenClock, settings: Settings
) -> None:
    container.events.consumers.on("test.unroutable", Beep, effect)
    assert container.events.broker_ping is not None
    await container.events.broker_ping()  # the publisher connects and declares the queues
    queue = f"{settings.amqp_namespace}.test.unroutable"
    assert settings.amqp_url is not None
    async with Broker(settings.amqp_url) as broker:
        await broker.delete_queue(queue)  # an operator's mistake

    await record(container, 1)
    await container.events.relay.drain()
    row = await beep_row(container)
    assert row.published_at is None
    assert row.parked_at is None
    assert row.attempts == 1
    assert "unroutable" in (row.last_error or "")

    clock.advance(timedelta(seconds=settings.event_retry_base_seconds * 2))
    await container.events.relay.drain()  # the publisher declared its consumers' queues again
    row = await beep_row(container)
    assert row.published_at is not None
    async with Broker(settings.amqp_url) as broker:
        assert await broker.depth(queue) == 1

    assert container.events.broker_consumers is not None
    await container.events.broker_consumers.start()
    await eventually(lambda: _at_least(effect_count(container), 1), what="the effect")
    assert await effect_count(container) == 1


async def test_an_event_the_broker_refuses_is_sent_again_and_takes_effect_once(
    container: Container, clock: FrozenClock, settings: Settings
) -> None:
    """A full queue that rejects publishes makes the broker nack the event: the relay
    counts an attempt and sends it again after its delay. The broker delivered the
    nacked message to the consumer's queue all the same, so the consumer gets it twice
    and its inbox keeps the effect to one."""
    container.events.consumers.on("test.refused", Beep, effect)
    assert container.events.broker_consumers is not None
    await container.events.broker_consumers.start()  # declares the exchange and the queues
    before = deliveries("test.refused")
    full = f"{settings.amqp_namespace}.full"
    assert settings.amqp_url is not None
    async with Broker(settings.amqp_url) as broker:
        exchange = exchange_name(settings.amqp_namespace)
        await broker.refusing_queue(full, exchange=exchange, routing_key=Beep.type)
        await record(container, 1)
        await container.events.relay.drain()
        row = await beep_row(container)
        assert (row.published_at, row.parked_at, row.attempts) == (None, None, 1)
        assert "refused by RabbitMQ" in (row.last_error or "")

        await broker.delete_queue(full)  # the cause is gone
    clock.advance(timedelta(seconds=settings.event_retry_max_seconds))
    await container.events.relay.drain()
    row = await beep_row(container)
    assert row.published_at is not None
    assert row.attempts == 1

    await eventually(
        lambda: deliveries("test.refused") == (before[0] + 1, before[1] + 1),
        what="the nacked copy and the one sent again",
    )
    assert await effect_count(container) == 1


async def test_an_event_the_broker_keeps_refusing_is_parked(
    container: Container, clock: FrozenClock, settings: Settings
) -> None:
    """Nacked on every attempt, an event ends parked after EVENT_MAX_ATTEMPTS with the
    broker's refusal as its last error, and stays there."""
    container.events.consumers.on("test.refused", Beep, effect)
    assert container.events.broker_ping is not None
    await container.events.broker_ping()  # the publisher declares the exchange and the queues
    assert settings.amqp_url is not None
    async with Broker(settings.amqp_url) as broker:
        await broker.refusing_queue(
            f"{settings.amqp_namespace}.full",
            exchange=exchange_name(settings.amqp_namespace),
            routing_key=Beep.type,
        )
        await record(container, 1)
        for attempt in range(1, settings.event_max_attempts + 1):
            await container.events.relay.drain()
            row = await beep_row(container)
            assert row.attempts == attempt
            assert (row.parked_at is not None) == (attempt == settings.event_max_attempts)
            clock.advance(timedelta(seconds=settings.event_retry_max_seconds))
        await container.events.relay.drain()
    row = await beep_row(container)
    assert row.attempts == settings.event_max_attempts, "a parked event is not sent again"
    assert row.published_at is None
    assert "refused by RabbitMQ" in (row.last_error or "")
    assert (await container.events.relay.backlog()).parked == 1


async def test_an_event_whose_confirm_never_comes_is_sent_again_and_takes_effect_once(
    container: Container, proxy: TcpProxy
) -> None:
    """The connection stays up but nothing comes back (a stalled network, a broker stuck
    under memory pressure), so the publish times out waiting for its confirm. The event
    is not at fault and the broker may well have it: the relay counts no attempt, sends
    it again once the broker answers, and the inbox keeps the effect to one."""
    container.events.consumers.on("test.unconfirmed", Beep, effect)
    assert container.events.broker_consumers is not None
    await container.events.broker_consumers.start()
    assert container.events.broker_ping is not None
    await container.events.broker_ping()
    before = deliveries("test.unconfirmed")

    proxy.stall()
    try:
        await record(container, 1)
        with pytest.raises(BrokerUnavailable, match="did not confirm"):
            await container.events.relay.drain()
        row = await beep_row(container)
        assert (row.published_at, row.parked_at, row.attempts) == (None, None, 0)
    finally:
        proxy.resume()
    await container.events.relay.drain()
    row = await beep_row(container)
    assert row.published_at is not None
    assert row.attempts == 0

    await eventually(
        lambda: deliveries("test.unconfirmed") == (before[0] + 1, before[1] + 1),
        what="the unconfirmed copy and the one sent again",
    )
    assert await effect_count(container) == 1


async def test_a_failed_delivery_that_cannot_reach_its_retry_queue_is_not_lost(
    container: Container, settings: Settings
) -> None:
    """The retry queues are gone (an operator's mistake), so a failed delivery cannot be
    moved to wait out its delay: the original goes back to the consumer's queue as it
    was, however often that happens, and spends no attempt. Once the consumers restart
    (declaring their queues again) it takes its attempts as usual."""
    calls: list[int] = []

    async def failing(event: Beep, envelope: Envelope, uow: UnitOfWork) -> None:
        calls.append(event.n)
        raise RuntimeError("the downstream service is down")

    container.events.consumers.on("test.stranded", Beep, failing)
    consumers = container.events.broker_consumers
    assert consumers is not None
    await consumers.start()
    namespace = settings.amqp_namespace
    queue = queue_name(namespace, "test.stranded")
    dead = dead_letter_queue_name(namespace, "test.stranded")
    assert settings.amqp_url is not None
    async with Broker(settings.amqp_url) as broker:
        for delay in retry_delays_ms(settings):
            await broker.delete_queue(retry_queue_name(namespace, "test.stranded", delay))
        await record(container, 1)
        await container.events.relay.drain()

        await eventually(
            lambda: len(calls) > settings.event_max_attempts,
            what="the delivery to come back and be tried again",
        )
        assert await broker.depth(dead) == 0, "a delivery that could not be moved is not dead"
        await consumers.stop()
        waiting = await eventually(lambda: broker.depth(queue), what="the message in its queue")
        assert waiting == 1
        tried = len(calls)

        await consumers.start()
        letters = DeadLetters(settings, "test.stranded")
        [letter] = await eventually(letters.list, what="the delivery to be dead-lettered")
        assert letter.attempts == settings.event_max_attempts
        assert "downstream service is down" in (letter.error or "")
        assert len(calls) - tried == settings.event_max_attempts, "each attempt handled once"
        assert await broker.depth(queue) == 0


async def test_a_message_that_is_not_an_event_is_dead_lettered_at_once(
    container: Container, settings: Settings
) -> None:
    container.events.consumers.on("test.garbage", Beep, effect)
    assert container.events.broker_consumers is not None
    await container.events.broker_consumers.start()
    queue = f"{settings.amqp_namespace}.test.garbage"
    assert settings.amqp_url is not None
    async with Broker(settings.amqp_url) as broker:
        await broker.publish(
            aio_pika.Message(b"{not json", message_id="garbage"), routing_key=queue
        )
        await record(container, 1)
        await container.events.relay.drain()
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
    await container.events.relay.drain()
    [row] = [r for r in await outbox_rows(container) if r.id == event_id]
    assert row.published_at is not None
    assert row.attempts == 0


async def test_consumers_started_while_the_broker_is_away_catch_up(
    container: Container, proxy: TcpProxy
) -> None:
    container.events.consumers.on("test.late", Beep, effect)
    await proxy.cut()
    await container.start_events()  # the service starts regardless
    await record(container, 1, 2, 3)

    await proxy.restore()

    async def caught_up() -> bool:
        container.events.relay.wake()
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

    container.events.consumers.on("test.slow", Beep, slow)
    consumers = container.events.broker_consumers
    assert consumers is not None
    await consumers.start()
    await record(container, 1)
    await container.events.relay.drain()
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
        await container.events.relay.drain()
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

    container.events.consumers.on("test.dead", Beep, handler)
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

    async def replayed_effect() -> bool:
        return await effect_count(container) == 1

    await eventually(replayed_effect, what="the replayed event's effect")
    assert [letter.event_id for letter in await letters.list()] == [str(other)]
    assert await letters.replay() == 1
    assert await letters.list() == []

    async def both() -> bool:
        return await effect_count(container) == 2

    await eventually(both, what="both effects")
