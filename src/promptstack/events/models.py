"""The durable halves of messaging: the outbox events wait in, the inbox that makes
consumers idempotent, and the event store that event-sourced aggregates live in."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from promptstack.core.database import Base, UTCDateTime
from promptstack.core.envelope import Envelope

# SQLite numbers rows itself only for a column declared exactly INTEGER PRIMARY KEY.
_Position = BigInteger().with_variant(Integer(), "sqlite")


class OutboxMessage(Base):
    """An event recorded in the transaction that caused it, waiting to be published.

    `position` orders events as they were recorded; the relay publishes each
    aggregate's events in that order. A row is pending until `published_at` is set,
    unless it failed `attempts` times and was `parked` for an administrator to replay.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index(
            "ix_outbox_pending",
            "available_at",
            "position",
            postgresql_where=text("published_at IS NULL AND parked_at IS NULL"),
            sqlite_where=text("published_at IS NULL AND parked_at IS NULL"),
        ),
        Index(
            "ix_outbox_pending_aggregate",
            "aggregate_id",
            "position",
            postgresql_where=text("published_at IS NULL AND parked_at IS NULL"),
            sqlite_where=text("published_at IS NULL AND parked_at IS NULL"),
        ),
        Index(
            "ix_outbox_parked",
            "parked_at",
            postgresql_where=text("parked_at IS NOT NULL"),
            sqlite_where=text("parked_at IS NOT NULL"),
        ),
        Index("ix_outbox_published_at", "published_at"),
    )

    position: Mapped[int] = mapped_column(_Position, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    type: Mapped[str] = mapped_column(String(128))
    schema_version: Mapped[int] = mapped_column(Integer)
    aggregate_id: Mapped[str] = mapped_column(String(128))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    correlation_id: Mapped[str] = mapped_column(String(128))
    causation_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    parked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @classmethod
    def of(cls, envelope: Envelope) -> OutboxMessage:
        return cls(
            id=envelope.id,
            type=envelope.type,
            schema_version=envelope.schema_version,
            aggregate_id=envelope.aggregate_id,
            occurred_at=envelope.occurred_at,
            correlation_id=envelope.correlation_id,
            causation_id=envelope.causation_id,
            data=envelope.data,
            available_at=envelope.occurred_at,
            attempts=0,
        )

    def envelope(self) -> Envelope:
        return Envelope(
            id=self.id,
            type=self.type,
            schema_version=self.schema_version,
            occurred_at=self.occurred_at,
            aggregate_id=self.aggregate_id,
            correlation_id=self.correlation_id,
            causation_id=self.causation_id,
            data=self.data,
        )


class InboxEntry(Base):
    """That `consumer` has handled `event_id`: written in the handler's own transaction,
    so a redelivered event finds it and does nothing."""

    __tablename__ = "inbox"

    consumer: Mapped[str] = mapped_column(String(128), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class StoredEvent(Base):
    """One event of one stream, at its place in that stream (`version`, from 1).

    The table is append-only. The unique (stream, version) pair is what turns two
    writers deciding from the same state into one success and one conflict. `position`
    orders all streams' events as they were appended, for rebuilding a projection;
    `event_id` is the id the event carries through the outbox and every consumer's inbox.
    """

    __tablename__ = "event_store"
    __table_args__ = (
        UniqueConstraint("stream", "version", name="uq_event_store_stream_version"),
        CheckConstraint("version >= 1", name="version"),
        # The rebuild of a projection walks a category's streams in name order.
        Index("ix_event_store_category_stream", "category", "stream"),
        # Events are appended in time order, so on PostgreSQL a block-range index over
        # the time column is a few pages for any size of store.
        Index("ix_event_store_occurred_at", "occurred_at", postgresql_using="brin"),
    )

    position: Mapped[int] = mapped_column(_Position, primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    category: Mapped[str] = mapped_column(String(64))
    stream: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(128))
    schema_version: Mapped[int] = mapped_column(Integer)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    correlation_id: Mapped[str] = mapped_column(String(128))
    causation_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)

    def envelope(self) -> Envelope:
        return Envelope(
            id=self.event_id,
            type=self.type,
            schema_version=self.schema_version,
            occurred_at=self.occurred_at,
            aggregate_id=self.stream,
            correlation_id=self.correlation_id,
            causation_id=self.causation_id,
            data=self.data,
        )


class Snapshot(Base):
    """A stream's state folded up to `version`: a cache, dropped or rebuilt at will.

    `schema` is the shape of `state` the writing code knew; a snapshot of another shape
    is ignored, so changing the state's shape needs no migration of snapshots.
    """

    __tablename__ = "snapshots"

    stream: Mapped[str] = mapped_column(String(128), primary_key=True)
    category: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    schema: Mapped[int] = mapped_column(Integer)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True, slots=True)
class Backlog:
    """What waits in the outbox: events to publish, the oldest one's time, parked ones."""

    pending: int
    oldest: datetime | None
    parked: int
