"""The outbox relay on its own: order per aggregate, retries, parking, concurrent relays,
wake-ups and the guarantee that a crash after commit loses no event."""

from __future__ import annotations

import asyncio
import mailbox
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from promptstack.audit.models import AuditEntry
from promptstack.bootstrap import Container, bootstrap
from promptstack.core.clock import FrozenClock
from promptstack.core.envelope import Envelope, Event
from promptstack.core.settings import Settings
from promptstack.core.unit_of_work import UnitOfWork
from promptstack.events.bus import PublishReport, by_aggregate
from promptstack.events.models import InboxEntry, OutboxMessage
from promptstack.events.outbox import OUTBOX_CHANNEL
from promptstack.events.relay import Relay
from tests.fixtures.support import Api, assert_problem, eventually

V1 = "/api/v1"


class Tick(Event):
    type = "test.relay.tick"

    n: int


class Recorder:
    """A publisher that keeps what it was given and fails the events it is told to."""

    def __init__(self, published: list[Envelope] | None = None) -> None:
        self.published = published if published is not None else []
        self.failing: set[int] = set()

    async def publish(self, envelopes: Sequence[Envelope]) -> PublishReport:
        report = PublishReport()
        for group in by_aggregate(envelopes):
            for envelope in group:
                if envelope.data["n"] in self.failing:
                    report.failed[envelope.id] = "refused"
                    break
                await asyncio.sleep(0)  # let concurrent relays interleave
                self.published.append(envelope)
                report.published.append(envelope.id)
        return report

    async def aclose(self) -> None:
        return None


async def _record(container: Container, *events: tuple[str, int]) -> None:
    async with container.uow() as uow:
        for aggregate, n in events:
            uow.record(Tick(n=n), aggregate_id=aggregate)


def _relay(container: Container, publisher: Recorder) -> Relay:
    return Relay(container.settings, container.uow, publisher, container.clock)


async def test_a_failed_event_holds_back_its_aggregate_only(
    container: Container, clock: FrozenClock
) -> None:
    await _record(container, ("a", 1), ("a", 2), ("b", 3))
    publisher = Recorder()
    publisher.failing = {1}
    relay = _relay(container, publisher)

    await relay.drain()
    assert [e.data["n"] for e in publisher.published] == [3]
    backlog = await relay.backlog()
    assert (backlog.pending, backlog.parked) == (2, 0)

    publisher.failing = set()
    await relay.drain()
    assert [e.data["n"] for e in publisher.published] == [3], "the retry waits for its delay"
    clock.advance(timedelta(seconds=container.settings.event_retry_base_seconds + 1))
    await relay.drain()
    assert [e.data["n"] for e in publisher.published] == [3, 1, 2]
    assert (await relay.backlog()).pending == 0


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"event_max_attempts": 2}


class Flaky(Event):
    type = "test.relay.flaky"

    n: int


async def test_a_failing_event_is_parked_then_replayed_by_an_admin(
    api: Api, container: Container, clock: FrozenClock
) -> None:
    broken = True
    calls: list[int] = []
    handled: list[int] = []

    async def handler(event: Flaky, _: Envelope, uow: UnitOfWork) -> None:
        calls.append(event.n)
        if broken:
            raise RuntimeError("the handler's dependency is down")
        handled.append(event.n)

    container.events.consumers.on("test.flaky", Flaky, handler)
    async with container.uow() as uow:
        event_id = uow.record(Flaky(n=7), aggregate_id="flaky").id
    admin = await api.admin()

    await container.events.relay.drain()
    clock.advance(timedelta(seconds=5))
    await container.events.relay.drain()
    assert calls == [7, 7], "tried the allowed two times"

    parked = await api.client.get(f"{V1}/admin/events/parked", headers=admin.headers)
    assert parked.status_code == 200, parked.text
    [item] = parked.json()["items"]
    assert item["id"] == str(event_id)
    assert item["attempts"] == 2
    assert "test.flaky" in item["last_error"]
    assert "dependency is down" in item["last_error"]
    backlog = await api.client.get(f"{V1}/admin/events/backlog", headers=admin.headers)
    assert backlog.json()["parked"] == 1
    clock.advance(timedelta(seconds=container.settings.event_retry_max_seconds + 1))
    await container.events.relay.drain()
    assert calls == [7, 7], "a parked event is not retried by itself, however long it waits"

    broken = False
    replayed = await api.client.post(f"{V1}/admin/events/{event_id}/replay", headers=admin.headers)
    assert replayed.status_code == 202, replayed.text
    await container.events.relay.drain()
    assert handled == [7]
    parked = await api.client.get(f"{V1}/admin/events/parked", headers=admin.headers)
    assert parked.json()["items"] == []
    async with container.uow(read_only=True) as uow:
        actions = await uow.session.scalars(
            select(AuditEntry.action).where(AuditEntry.actor_id == uuid.UUID(admin.id))
        )
        assert "event.replayed" in list(actions)

    again = await api.client.post(f"{V1}/admin/events/{event_id}/replay", headers=admin.headers)
    assert_problem(again, 404, "not_found")


async def test_event_admin_is_for_admins_only(api: Api) -> None:
    user = await api.user()
    for method, path in (
        ("GET", "/admin/events/parked"),
        ("GET", "/admin/events/backlog"),
        ("POST", f"/admin/events/{uuid.uuid4()}/replay"),
    ):
        assert_problem(await api.client.request(method, V1 + path, headers=user.headers), 403)
        assert_problem(await api.client.request(method, V1 + path), 401)


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_concurrent_relays_publish_each_event_once_and_in_order(
    container: Container,
) -> None:
    aggregates = [f"agg-{i}" for i in range(6)]
    n = 0
    for _ in range(10):
        batch = []
        for aggregate in aggregates:
            for _ in range(4):
                n += 1
                batch.append((aggregate, n))
        await _record(container, *batch)

    published: list[Envelope] = []
    relays = [_relay(container, Recorder(published)) for _ in range(3)]
    await asyncio.gather(*(relay.drain() for relay in relays))
    await asyncio.gather(*(relay.drain() for relay in relays))

    numbers = [e.data["n"] for e in published]
    assert sorted(numbers) == list(range(1, n + 1)), "each event exactly once"
    for aggregate in aggregates:
        sequence = [e.data["n"] for e in published if e.aggregate_id == aggregate]
        assert sequence == sorted(sequence), aggregate


async def test_backlog_size_and_age_are_exported(container: Container, clock: FrozenClock) -> None:
    await _record(container, ("m", 1), ("m", 2))
    clock.advance(timedelta(seconds=30))
    backlog = await container.events.relay.refresh_metrics()
    assert backlog.pending == 2
    assert REGISTRY.get_sample_value("promptstack_outbox_pending_events") == 2
    age = REGISTRY.get_sample_value("promptstack_outbox_oldest_pending_age_seconds")
    assert age is not None
    assert age >= 30


def _mail_subjects(folder: Path) -> list[str]:
    if not folder.exists():
        return []
    return sorted(str(message["Subject"]) for message in mailbox.Maildir(folder, create=False))


async def test_a_crash_after_commit_delays_the_emails_but_loses_none(
    api: Api, container: Container, settings: Settings, clock: FrozenClock
) -> None:
    await api.register(email="late@example.com", username="lateuser")
    # The process "dies" here: nothing was relayed, no email went out.
    assert _mail_subjects(settings.maildir_path) == []
    async with container.uow(read_only=True) as uow:
        pending = await uow.session.scalar(
            select(func.count()).where(OutboxMessage.published_at.is_(None))
        )
    assert pending == 1

    restarted = bootstrap(settings, clock=clock)
    try:
        await restarted.events.relay.drain()
    finally:
        await restarted.aclose()
    assert _mail_subjects(settings.maildir_path) == [
        "Confirm your email address",
        "Welcome to Prompt Stack",
    ]


async def _record_elsewhere(
    settings: Settings, clock: FrozenClock, *events: tuple[str, int]
) -> None:
    """Commit events as another process does: its own container, whose relay is not
    running and whose commits wake no relay here."""
    other = bootstrap(settings, clock=clock)
    try:
        await _record(other, *events)
    finally:
        await other.aclose()


async def _outbox_listeners(admin: asyncpg.Connection, *, besides: int = 0) -> list[int]:
    """The server pids of the connections to this database whose LISTEN for outbox commits
    has completed, as PostgreSQL itself reports them."""
    rows = await admin.fetch(
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND state = 'idle' AND query = $1 AND pid <> $2",
        f'LISTEN "{OUTBOX_CHANNEL}"',
        besides,
    )
    return [row["pid"] for row in rows]


def _dsn(settings: Settings) -> str:
    url = make_url(settings.database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


async def test_a_commit_wakes_the_relay_of_another_process(
    settings: Settings, clock: FrozenClock
) -> None:
    """The relay polls only once a minute here, so only a wake-up can deliver in time:
    in-process after a local commit, and on PostgreSQL also by NOTIFY from another
    process's commit."""
    slow = settings.model_copy(update={"outbox_poll_seconds": 60.0})
    handled: list[int] = []

    async def handler(event: Tick, _: Envelope, uow: UnitOfWork) -> None:
        handled.append(event.n)

    listening = bootstrap(slow, clock=clock)
    listening.events.consumers.on("test.wake", Tick, handler)
    await listening.start_events()
    try:
        # Recorded before the first pass, an event would be taken by it, woken or not.
        await eventually(lambda: listening.events.relay.passes >= 1, what="the relay's first pass")
        await _record(listening, ("local", 1))
        await eventually(lambda: handled == [1], what="local wake-up")
        if not slow.is_sqlite:
            admin = await asyncpg.connect(_dsn(slow))
            try:
                await eventually(lambda: _outbox_listeners(admin), what="the relay to LISTEN")
            finally:
                await admin.close()
            await _record_elsewhere(slow, clock, ("remote", 2))
            await eventually(lambda: handled == [1, 2], what="NOTIFY wake-up")
    finally:
        await listening.aclose()


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_the_relay_listens_again_after_its_connection_is_killed(
    settings: Settings, clock: FrozenClock
) -> None:
    """PostgreSQL ends the relay's LISTEN connection (a restart, a failover, an
    administrator): the relay connects again, and a commit in another process still
    wakes it by NOTIFY. It polls once a minute here, so the poll cannot deliver in time."""
    slow = settings.model_copy(update={"outbox_poll_seconds": 60.0})
    handled: list[int] = []

    async def handler(event: Tick, _: Envelope, uow: UnitOfWork) -> None:
        handled.append(event.n)

    listening = bootstrap(slow, clock=clock)
    listening.events.consumers.on("test.relisten", Tick, handler)
    await listening.start_events()
    admin = await asyncpg.connect(_dsn(slow))
    try:
        [killed] = await eventually(lambda: _outbox_listeners(admin), what="the relay to LISTEN")
        await eventually(lambda: listening.events.relay.passes >= 1, what="the relay's first pass")
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", killed) is True

        await eventually(
            lambda: _outbox_listeners(admin, besides=killed), what="the relay to LISTEN again"
        )
        await _record_elsewhere(slow, clock, ("remote", 1))
        await eventually(lambda: handled == [1], what="NOTIFY wake-up on the new connection")
    finally:
        await admin.close()
        await listening.aclose()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_on_sqlite_one_process_relays_and_another_takes_over(
    settings: Settings, clock: FrozenClock
) -> None:
    """`serve --workers 2` on SQLite: both processes start a relay, one relays at a time
    (a handler with an outside effect would otherwise run twice), and when it stops the
    other carries on."""
    quick = settings.model_copy(update={"outbox_poll_seconds": 0.05})
    calls: list[tuple[str, int]] = []

    def counting(name: str) -> Any:
        async def handler(event: Tick, _: Envelope, uow: UnitOfWork) -> None:
            calls.append((name, event.n))

        return handler

    first, second = bootstrap(quick, clock=clock), bootstrap(quick, clock=clock)
    first.events.consumers.on("test.lease", Tick, counting("first"))
    second.events.consumers.on("test.lease", Tick, counting("second"))
    await first.start_events()
    await eventually(
        lambda: first.events.relay.relaying, what="the first process to take the lease"
    )
    await second.start_events()
    try:
        await eventually(
            lambda: second.events.relay.standing_by,
            what="the second process to find the lease held",
        )
        await _record(first, *((f"agg-{n % 3}", n) for n in range(30)))
        await eventually(lambda: len(calls) >= 30, what="first relays")
        assert {name for name, _ in calls} == {"first"}
        assert second.events.relay.standing_by, "the lease is still held"
        await first.aclose()
        await _record(second, ("later", 99))
        await eventually(lambda: ("second", 99) in calls, what="takeover")
        assert sorted(n for _, n in calls) == [*range(30), 99]
    finally:
        await first.aclose()
        await second.aclose()


async def test_old_published_events_and_inbox_entries_are_purged(
    container: Container, clock: FrozenClock
) -> None:
    handled: list[int] = []

    async def handler(event: Tick, _: Envelope, uow: UnitOfWork) -> None:
        handled.append(event.n)

    container.events.consumers.on("test.purge", Tick, handler)
    await _record(container, ("old", 1))
    await container.events.relay.drain()
    await _record(container, ("waiting", 2))  # recorded as long ago, never relayed
    clock.advance(timedelta(hours=container.settings.outbox_retention_hours, seconds=1))

    await container.events.relay.purge()

    async with container.uow(read_only=True) as uow:
        left = list(await uow.session.scalars(select(OutboxMessage.aggregate_id)))
        inbox = await uow.session.scalar(select(func.count()).select_from(InboxEntry))
    assert left == ["waiting"], "a pending event stays, however old"
    assert inbox == 0
    await container.events.relay.drain()
    assert handled == [1, 2]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_stopping_flushes_the_outbox(settings: Settings, clock: FrozenClock) -> None:
    """Events another process committed while this relay slept are delivered on the way
    out, not left for the next start (on SQLite nothing wakes the relay for them)."""
    sleepy = settings.model_copy(update={"outbox_poll_seconds": 60.0})
    handled: list[int] = []

    async def handler(event: Tick, _: Envelope, uow: UnitOfWork) -> None:
        handled.append(event.n)

    serving = bootstrap(sleepy, clock=clock)
    serving.events.consumers.on("test.flush", Tick, handler)
    await serving.start_events()
    await eventually(lambda: serving.events.relay.passes >= 1, what="the relay's first pass")
    passes = serving.events.relay.passes
    await _record_elsewhere(sleepy, clock, ("flush", 1), ("flush", 2))

    await serving.aclose()

    assert handled == [1, 2]
    assert serving.events.relay.passes == passes, "delivered on the way out, not by another pass"


async def test_the_api_reports_the_backlog_whoever_relays(api: Api, container: Container) -> None:
    """In scale-out the relay is another process; each API process's /metrics still tells
    how many events wait, read from the table at scrape time."""
    await _record(container, ("scraped", 1), ("scraped", 2), ("scraped", 3))
    text = (await api.client.get("/metrics")).text
    assert "promptstack_outbox_pending_events 3.0" in text
    await container.events.relay.drain()
    text = (await api.client.get("/metrics")).text
    assert "promptstack_outbox_pending_events 0.0" in text


async def test_the_api_reports_unfinished_jobs_wherever_they_run(
    api: Api, container: Container
) -> None:
    async with container.uow() as uow:
        for _ in range(2):
            await container.jobs.service.submit(uow, None, "account.export", {})
    text = (await api.client.get("/metrics")).text
    assert 'promptstack_jobs_unfinished{state="pending"} 2.0' in text
    assert 'promptstack_jobs_unfinished{state="progress"} 0.0' in text
