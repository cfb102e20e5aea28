"""The event store: append-only streams of events, each event also recorded in the outbox.

An aggregate's stream is the truth about it; its tables elsewhere are views. Appending
writes the events at the next versions of their stream and records the same envelopes
(same ids) in the outbox, in the caller's transaction, so consumers see each stored event
once it commits and never one that was rolled back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Insert, Table, delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from promptstack.core.envelope import Event
from promptstack.core.repository import SessionRepository
from promptstack.core.unit_of_work import UnitOfWork
from promptstack.events.models import Snapshot, StoredEvent
from promptstack.events.recorded import Recorded, StreamConflict


@dataclass(frozen=True, slots=True)
class SnapshotOf:
    version: int
    state: dict[str, Any]


def _snapshot_statement(insert_: type[postgresql.Insert] | type[sqlite.Insert]) -> Insert:
    """Keep the newest snapshot: a slower writer never replaces a later one."""
    table = cast(Table, Snapshot.__table__)
    statement = insert_(table)
    return statement.on_conflict_do_update(
        index_elements=[table.c.stream],
        set_={
            name: statement.excluded[name]
            for name in ("category", "version", "schema", "state", "taken_at")
        },
        where=(table.c.version < statement.excluded.version)
        | (table.c.schema != statement.excluded.schema),
    )


_SAVE_SNAPSHOT = {
    "postgresql": _snapshot_statement(postgresql.Insert),
    "sqlite": _snapshot_statement(sqlite.Insert),
}


class EventStore(SessionRepository):
    """The streams, read and appended to on one unit of work."""

    def __init__(self, uow: UnitOfWork) -> None:
        super().__init__(uow)
        self._uow = uow

    async def version(self, stream: str) -> int:
        """The version of the stream's last event; 0 for a stream with none."""
        found = await self.session.scalar(
            select(func.max(StoredEvent.version)).where(StoredEvent.stream == stream)
        )
        return int(found or 0)

    async def append(
        self, category: str, stream: str, expected_version: int, events: Sequence[Event]
    ) -> list[Recorded]:
        """Append `events` after `expected_version`, or raise `StreamConflict`.

        The unique (stream, version) index decides between racing writers: on
        PostgreSQL the second insert waits for the first transaction and then fails,
        on SQLite writers are serialised. Either way the loser's transaction is spoiled
        and it must start again from a fresh read.
        """
        if not events:
            return []
        if await self.version(stream) != expected_version:
            raise StreamConflict(f"{stream} changed since version {expected_version}")
        recorded = [
            Recorded(expected_version + n, event, self._uow.record(event, aggregate_id=stream))
            for n, event in enumerate(events, start=1)
        ]
        rows = [
            {
                "event_id": r.envelope.id,
                "category": category,
                "stream": stream,
                "version": r.version,
                "type": r.envelope.type,
                "schema_version": r.envelope.schema_version,
                "occurred_at": r.envelope.occurred_at,
                "correlation_id": r.envelope.correlation_id,
                "causation_id": r.envelope.causation_id,
                "data": r.envelope.data,
            }
            for r in recorded
        ]
        try:
            await self.session.execute(insert(StoredEvent), rows)
        except IntegrityError as error:
            raise StreamConflict(f"{stream} changed since version {expected_version}") from error
        return recorded

    async def read(self, stream: str, *, after: int = 0) -> list[Recorded]:
        """The stream's events after version `after`, in order."""
        query = (
            select(StoredEvent)
            .where(StoredEvent.stream == stream, StoredEvent.version > after)
            .order_by(StoredEvent.version)
        )
        return [_recorded(row) for row in (await self.session.scalars(query)).all()]

    async def streams(self, category: str, *, after: str, limit: int) -> list[str]:
        """The streams of `category` in the order of their names, a batch at a time
        after `after`: what a projection is rebuilt from."""
        rows = await self.session.scalars(
            select(StoredEvent.stream)
            .where(StoredEvent.category == category, StoredEvent.stream > after)
            .group_by(StoredEvent.stream)
            .order_by(StoredEvent.stream)
            .limit(limit)
        )
        return list(rows.all())

    async def read_many(self, streams: Sequence[str]) -> dict[str, list[Recorded]]:
        """The events of each of `streams`, in one query."""
        rows = await self.session.scalars(
            select(StoredEvent)
            .where(StoredEvent.stream.in_(streams))
            .order_by(StoredEvent.stream, StoredEvent.version)
        )
        found: dict[str, list[Recorded]] = {stream: [] for stream in streams}
        for row in rows:
            found[row.stream].append(_recorded(row))
        return found

    async def count_streams(self, category: str) -> int:
        found = await self.session.scalar(
            select(func.count(func.distinct(StoredEvent.stream))).where(
                StoredEvent.category == category
            )
        )
        return int(found or 0)

    async def snapshot(self, stream: str, schema: int) -> SnapshotOf | None:
        """The stream's snapshot if it has one in the shape `schema`."""
        row = (
            await self.session.execute(
                select(Snapshot.version, Snapshot.state).where(
                    Snapshot.stream == stream, Snapshot.schema == schema
                )
            )
        ).one_or_none()
        return None if row is None else SnapshotOf(row.version, row.state)

    async def save_snapshot(
        self, category: str, stream: str, version: int, schema: int, state: dict[str, Any]
    ) -> None:
        statement = _SAVE_SNAPSHOT[self.session.get_bind().dialect.name]
        await self.session.execute(
            statement,
            {
                "stream": stream,
                "category": category,
                "version": version,
                "schema": schema,
                "state": state,
                "taken_at": self._uow.clock.now(),
            },
        )

    async def drop_snapshots(self, category: str) -> int:
        result = await self.session.execute(delete(Snapshot).where(Snapshot.category == category))
        return int(result.rowcount)  # type: ignore[attr-defined]


def _recorded(row: StoredEvent) -> Recorded:
    return Recorded.of(row.version, row.envelope())
