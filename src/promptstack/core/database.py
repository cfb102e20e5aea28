"""Database engines and sessions for SQLite (embedded) and PostgreSQL (scale-out).

The two differ in connection set-up only; everything above this module is portable.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import DateTime, Enum, MetaData, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator
from sqlalchemy.util import await_

from promptstack.core.settings import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def str_enum(kind: type[StrEnum], name: str, *, length: int = 16) -> Enum:
    """A string enum column stored as its values, checked by a constraint on both databases."""
    return Enum(
        kind,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=length,
        values_callable=lambda members: [m.value for m in members],
    )


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every database.

    SQLite keeps no time zone, so values are normalised to UTC on the way in and
    marked UTC on the way out; a naive datetime is a bug and is refused.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _engine(url: str, settings: Settings) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, echo=settings.database_echo, connect_args={"timeout": 30})
        _configure_sqlite(engine)
        return engine
    engine = create_async_engine(
        url,
        echo=settings.database_echo,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_timeout=settings.database_pool_timeout,
        pool_recycle=settings.database_pool_recycle,
    )
    if settings.database_pool_pre_ping:
        _ping_idle_connections(engine, settings.database_pool_ping_idle_seconds)
    return engine


_IDLE_SINCE = "promptstack_idle_since"


def _ping_idle_connections(engine: AsyncEngine, idle_seconds: float) -> None:
    """Check a pooled connection before use only when it sat idle long enough to have
    been dropped (a restart, a failover, a proxy's idle timeout) unnoticed.

    SQLAlchemy's `pool_pre_ping` checks on every checkout: a round trip per transaction,
    a sixteenth of a list's time on PostgreSQL. A connection handed back moments ago has
    just worked; one that fails the check is thrown away and the pool hands out another
    (`DisconnectionError`), as with `pool_pre_ping`.
    """
    pool = engine.sync_engine.pool

    @event.listens_for(pool, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop(_IDLE_SINCE, None)
        if since is None or time.monotonic() - since < idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError("the pooled connection no longer answers") from exc


class _WriterQueue:
    """Writing transactions of this process, one at a time, in the order they began.

    SQLite lets one transaction write at a time. Left to the file lock, waiting writers
    poll it with growing sleeps, so under load some wait far longer than their turn (at
    32 concurrent writers the p99 was twenty times the p50); queued on a lock here they
    go in arrival order. Another process still waits on the file lock, which keeps it
    correct. The lock is taken as the transaction begins, not when a unit of work opens
    (the relay opens one and writes in it only once the in-process consumers it feeds
    have written and committed in theirs), and given back with the connection. One lock
    per event loop, since an asyncio lock belongs to one.
    """

    def __init__(self) -> None:
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def enter(self, info: dict[Any, Any]) -> None:
        """Wait for the turn of the connection whose `info` this is (in SQLAlchemy's
        greenlet, so awaiting is allowed); a connection keeps its turn until it is
        returned to the pool."""
        if _TURN in info:
            return
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        await_(lock.acquire())
        info[_TURN] = lock

    @staticmethod
    def leave(info: dict[Any, Any]) -> None:
        lock = info.pop(_TURN, None)
        if lock is not None:
            lock.release()


_TURN = "promptstack_writer_turn"


def _configure_sqlite(engine: AsyncEngine) -> None:
    """WAL, enforced foreign keys, and transactions SQLAlchemy controls.

    The sqlite3 driver starts transactions lazily and on its own terms; we take that
    over so a unit of work that writes begins with `BEGIN IMMEDIATE` and so never hits
    the lock-upgrade deadlock of two deferred writers, and queues for its turn first.
    """
    writers = _WriterQueue()

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        if mode == "IMMEDIATE":
            writers.enter(connection.info)
        try:
            connection.exec_driver_sql(f"BEGIN {mode}")
        except BaseException:
            writers.leave(connection.info)
            raise

    # The turn ends when the connection goes back to the pool, after its COMMIT or
    # ROLLBACK has completed (the commit and rollback events come just before them),
    # or when the connection is thrown away.
    @event.listens_for(engine.sync_engine.pool, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            writers.leave(record.info)

    @event.listens_for(engine.sync_engine.pool, "invalidate")
    def _on_invalidate(_dbapi_connection: Any, record: Any, _exception: Any) -> None:
        writers.leave(record.info)


class Database:
    """The engines and session factories of one process.

    Writes always go to the primary; read-only units of work go to the replica when
    `DATABASE_READ_URL` is set, unless they ask for the primary.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = _engine(settings.database_url, settings)
        self.read_engine = (
            _engine(settings.database_read_url, settings)
            if settings.database_read_url
            else self.engine.execution_options(sqlite_begin="DEFERRED")
        )
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.read_sessions = async_sessionmaker(self.read_engine, expire_on_commit=False)
        # Reads that must see what was just written (a client's own new order).
        self.primary_read_sessions = (
            async_sessionmaker(
                self.engine.execution_options(sqlite_begin="DEFERRED"), expire_on_commit=False
            )
            if settings.database_read_url
            else self.read_sessions
        )

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.settings.database_read_url:
            await self.read_engine.dispose()
