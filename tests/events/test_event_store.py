"""The event store: versions per stream, conflicts between writers, one transaction with
the outbox, upcasting on read, and snapshots that are only ever a cache."""

from __future__ import annotations

import asyncio
import functools
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, insert, select

from promptstack.bootstrap import Container
from promptstack.core.clock import FrozenClock
from promptstack.core.envelope import EVENT_TYPES, Event
from promptstack.events.models import OutboxMessage, Snapshot, StoredEvent
from promptstack.events.recorded import Recorded, StreamConflict
from promptstack.events.sourcing import Loaded, Streams, retrying_conflicts
from promptstack.events.store import EventStore


class Counted(Event):
    type = "test.store.counted"

    n: int


class Renamed(Event):
    """Version 2 renamed `title` to `name`."""

    type = "test.store.renamed"
    version = 2

    name: str


@EVENT_TYPES.upcaster("test.store.renamed", from_version=1)
def _title_to_name(data: dict[str, Any]) -> dict[str, Any]:
    data["name"] = data.pop("title")
    return data


@dataclass(frozen=True)
class Tally:
    seen: tuple[int, ...] = ()


class TallyFold:
    category = "tally"
    schema = 1

    def initial(self, stream: str) -> Tally:
        return Tally()

    def apply(self, state: Tally, recorded: Recorded) -> Tally:
        assert isinstance(recorded.event, Counted)
        return Tally((*state.seen, recorded.event.n))

    def dump(self, state: Tally) -> dict[str, Any]:
        return {"seen": list(state.seen)}

    def restore(self, data: dict[str, Any]) -> Tally:
        return Tally(tuple(data["seen"]))


def stream() -> str:
    return str(uuid.uuid4())


async def count(container: Container, model: type[StoredEvent] | type[OutboxMessage]) -> int:
    async with container.uow(read_only=True) as uow:
        return int(await uow.session.scalar(select(func.count()).select_from(model)) or 0)


async def test_appends_number_each_stream_from_one_and_share_ids_with_the_outbox(
    container: Container,
) -> None:
    a, b = stream(), stream()
    async with container.uow() as uow:
        store = EventStore.of(uow)
        first = await store.append("tally", a, 0, [Counted(n=1), Counted(n=2)])
        other = await store.append("tally", b, 0, [Counted(n=9)])
        third = await store.append("tally", a, 2, [Counted(n=3)])
    assert [r.version for r in (*first, *third)] == [1, 2, 3]
    assert [r.version for r in other] == [1]
    async with container.uow(read_only=True) as uow:
        store = EventStore.of(uow)
        read = await store.read(a)
        assert [(r.version, r.event) for r in read] == [
            (1, Counted(n=1)),
            (2, Counted(n=2)),
            (3, Counted(n=3)),
        ]
        assert [r.version for r in await store.read(a, after=2)] == [3]
        assert await store.version(a) == 3
        assert await store.version(stream()) == 0
        outbox = (await uow.session.scalars(select(OutboxMessage.id))).all()
    assert set(outbox) == {r.envelope.id for r in (*first, *other, *third)}


async def test_a_stale_version_is_a_conflict_and_writes_nothing(container: Container) -> None:
    s = stream()
    async with container.uow() as uow:
        await EventStore.of(uow).append("tally", s, 0, [Counted(n=1)])
    for stale in (0, 2):
        with pytest.raises(StreamConflict):
            async with container.uow() as uow:
                await EventStore.of(uow).append("tally", s, stale, [Counted(n=2)])
    assert await count(container, StoredEvent) == 1
    assert await count(container, OutboxMessage) == 1


async def test_a_rolled_back_append_leaves_neither_event_nor_outbox_row(
    container: Container,
) -> None:
    async def command() -> None:
        async with container.uow() as uow:
            await EventStore.of(uow).append("tally", stream(), 0, [Counted(n=1)])
            raise RuntimeError("the command failed after appending")

    with pytest.raises(RuntimeError):
        await command()
    assert await count(container, StoredEvent) == 0
    assert await count(container, OutboxMessage) == 0


async def test_racing_commands_are_retried_until_each_lands_once(container: Container) -> None:
    """Five writers decide from the same version at once; every one of them lands,
    after losing at most four races, and the stream has no gap and no repeat."""
    s = stream()
    streams = Streams(TallyFold(), snapshot_every=0)

    async def command(n: int) -> None:
        async with container.uow() as uow:
            loaded = await streams.load(uow, s)
            await asyncio.sleep(0)
            await streams.append(uow, s, loaded, [Counted(n=n)])

    await asyncio.gather(*(retrying_conflicts(functools.partial(command, n)) for n in range(5)))
    async with container.uow(read_only=True) as uow:
        read = await EventStore.of(uow).read(s)
    assert [r.version for r in read] == [1, 2, 3, 4, 5]
    assert sorted(r.event.n for r in read if isinstance(r.event, Counted)) == list(range(5))


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_two_writers_past_the_version_check_meet_at_the_unique_index(
    container: Container,
) -> None:
    """Both read version 0 and both insert: the second insert waits for the first
    transaction and fails once it commits, so exactly one of them lands."""
    s = stream()
    both_read = asyncio.Barrier(2)

    async def writer(n: int) -> str:
        try:
            async with container.uow() as uow:
                store = EventStore.of(uow)
                assert await store.version(s) == 0
                await both_read.wait()
                await store.append("tally", s, 0, [Counted(n=n)])
        except StreamConflict:
            return "conflict"
        return "landed"

    outcomes = await asyncio.gather(writer(1), writer(2))
    assert sorted(outcomes) == ["conflict", "landed"]
    assert await count(container, StoredEvent) == 1
    assert await count(container, OutboxMessage) == 1


async def test_old_versions_are_upcast_on_read(container: Container, clock: FrozenClock) -> None:
    s = stream()
    async with container.uow() as uow:
        await uow.session.execute(
            insert(StoredEvent).values(
                event_id=uuid.uuid4(),
                category="tally",
                stream=s,
                version=1,
                type="test.store.renamed",
                schema_version=1,
                occurred_at=clock.now(),
                correlation_id="c",
                data={"title": "first shape"},
            )
        )
        await EventStore.of(uow).append("tally", s, 1, [Renamed(name="second shape")])
    async with container.uow(read_only=True) as uow:
        read = await EventStore.of(uow).read(s)
    assert [r.event for r in read] == [Renamed(name="first shape"), Renamed(name="second shape")]
    assert [r.envelope.schema_version for r in read] == [1, 2]


async def snapshots_of(container: Container, s: str) -> list[tuple[int, dict[str, Any]]]:
    async with container.uow(read_only=True) as uow:
        rows = await uow.session.execute(
            select(Snapshot.version, Snapshot.state).where(Snapshot.stream == s)
        )
        return [(row.version, row.state) for row in rows]


async def test_a_snapshot_is_taken_each_time_the_stream_crosses_a_multiple(
    container: Container,
) -> None:
    s = stream()
    streams = Streams(TallyFold(), snapshot_every=3)
    taken = []
    for batch in ([1, 2], [3, 4], [5], [6, 7, 8]):
        async with container.uow() as uow:
            loaded = await streams.load(uow, s)
            await streams.append(uow, s, loaded, [Counted(n=n) for n in batch])
        taken.append([version for version, _ in await snapshots_of(container, s)])
    assert taken == [[], [4], [4], [8]]
    assert await snapshots_of(container, s) == [(8, {"seen": [1, 2, 3, 4, 5, 6, 7, 8]})]


async def test_loading_starts_from_the_snapshot(container: Container) -> None:
    """The snapshot is what loading starts from: one edited by hand shows in the state,
    and one of another schema, or none, is a replay from the first event."""
    s = stream()
    streams = Streams(TallyFold(), snapshot_every=2)
    async with container.uow() as uow:
        loaded = await streams.append(uow, s, Loaded(Tally(), 0), [Counted(n=n) for n in (1, 2, 3)])
    assert loaded == Loaded(Tally((1, 2, 3)), 3)
    async with container.uow() as uow:
        await EventStore.of(uow).save_snapshot("tally", s, 4, 1, {"seen": [7, 7]})
    async with container.uow(read_only=True) as uow:
        assert (await streams.load(uow, s)).state == Tally((7, 7))
        assert (await streams.load(uow, s, use_snapshot=False)).state == Tally((1, 2, 3))
    reshaped = TallyFold()
    reshaped.schema = 2
    async with container.uow(read_only=True) as uow:
        assert (await Streams(reshaped, snapshot_every=2).load(uow, s)).state == Tally((1, 2, 3))
    async with container.uow() as uow:
        assert await EventStore.of(uow).drop_snapshots("tally") == 1
    async with container.uow(read_only=True) as uow:
        assert await streams.load(uow, s) == Loaded(Tally((1, 2, 3)), 3)


async def test_an_older_snapshot_never_replaces_a_newer_one(container: Container) -> None:
    s = stream()
    async with container.uow() as uow:
        store = EventStore.of(uow)
        await store.save_snapshot("tally", s, 10, 1, {"seen": [10]})
        await store.save_snapshot("tally", s, 5, 1, {"seen": [5]})
    assert await snapshots_of(container, s) == [(10, {"seen": [10]})]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    batches=st.lists(st.lists(st.integers(-100, 100), min_size=1, max_size=6), max_size=8),
    every=st.integers(1, 7),
)
async def test_snapshot_and_tail_equal_a_replay_from_scratch(
    container: Container, batches: list[list[int]], every: int
) -> None:
    s = stream()
    streams = Streams(TallyFold(), snapshot_every=every)
    for batch in batches:
        async with container.uow() as uow:
            loaded = await streams.load(uow, s)
            await streams.append(uow, s, loaded, [Counted(n=n) for n in batch])
    async with container.uow(read_only=True) as uow:
        with_snapshot = await streams.load(uow, s)
        replayed = await streams.load(uow, s, use_snapshot=False)
    assert with_snapshot == replayed
    assert replayed.state.seen == tuple(n for batch in batches for n in batch)
