"""The unit of work: one transaction, and what runs once it commits.

Its exit is the one place a transaction commits. Events are recorded into the outbox
within the transaction (`record`), so the state change and the news of it commit or
vanish together; the relay publishes them afterwards. Work that must only happen once the
data is durable is registered with `after_commit`. It builds no repository of its own:
each domain's repository is made from it (`UserRepository.of(uow)`), once per unit of
work, and a domain that needs to follow every writing unit of work (accounts drops the
cached users a transaction changed) says so to the factory with `on_open`.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Protocol, Self, TypeVar, cast

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from promptstack.core.clock import Clock, SystemClock
from promptstack.core.database import Database
from promptstack.core.envelope import Envelope, Event, envelope_for
from promptstack.core.ids import IdSource, RandomIds
from promptstack.core.logging import get_logger
from promptstack.core.repository import SessionRepository

R = TypeVar("R", bound=SessionRepository)
AfterCommit = Callable[[], Awaitable[None] | None]

log = get_logger(__name__)


class Outbox(Protocol):
    """Where recorded events go: the event backbone's outbox table (`events.outbox`),
    handed in by `bootstrap()`, so this floor knows no table of the backbone."""

    # The PostgreSQL NOTIFY channel that wakes the relays when an event commits.
    channel: str

    def row(self, envelope: Envelope) -> object:
        """The entity to add to the session for `envelope`."""
        ...


class UnitOfWork:
    """One transaction. Its ORM session is opened on first use: a read-only unit of work
    whose repositories only run statements of columns (`connection`) takes a plain
    connection from the pool and never builds a session, which cost a list about a fifth
    of its time."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        read_only: bool = False,
        outbox: Outbox | None = None,
        clock: Clock | None = None,
        ids: IdSource | None = None,
        on_events: Callable[[], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._read_only = read_only
        self._session: AsyncSession | None = None
        self._connection: AsyncConnection | None = None
        self._outbox = outbox
        self._after_commit: list[AfterCommit] = []
        self._before_commit: list[Callable[[], Awaitable[None]]] = []
        self._repositories: dict[type[SessionRepository], SessionRepository] = {}
        self._clock = clock or SystemClock()
        self._ids = ids or RandomIds()
        self._on_events = on_events
        self._recorded = False

    @property
    def session(self) -> AsyncSession:
        """The ORM session of this transaction, on the connection if one is open."""
        if self._session is None:
            self._session = (
                self._sessions(bind=self._connection) if self._connection else self._sessions()
            )
        return self._session

    async def connection(self) -> AsyncConnection:
        """The connection this transaction runs on, for Core statements."""
        if self._session is not None or not self._read_only:
            return await self.session.connection()
        if self._connection is None:
            bind = self._sessions.kw["bind"]
            self._connection = await bind.connect()
        return self._connection

    @property
    def clock(self) -> Clock:
        """The clock events recorded in this unit of work are stamped by."""
        return self._clock

    def repository(self, kind: type[R]) -> R:
        """The repository of `kind` on this transaction, made on first use."""
        made = self._repositories.get(kind)
        if made is None:
            made = self._repositories[kind] = kind(self)
        return cast(R, made)

    def record(self, event: Event, *, aggregate_id: str | uuid.UUID) -> Envelope:
        """Append `event` to the outbox in this transaction."""
        if self._outbox is None:
            raise RuntimeError("this unit of work was opened without an outbox")
        envelope = envelope_for(
            event,
            aggregate_id=str(aggregate_id),
            id_=self._ids.new(),
            occurred_at=self._clock.now(),
        )
        self.session.add(self._outbox.row(envelope))
        self._recorded = True
        return envelope

    def wake_relay(self) -> None:
        """Tell the relays, once this commits, that outbox rows became due."""
        self._recorded = True

    def before_commit(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Await `hook` as the transaction is about to commit, inside it: writes a
        repository gathered during the unit of work go in together (a failing hook rolls
        everything back)."""
        self._before_commit.append(hook)

    def after_commit(self, hook: AfterCommit) -> None:
        """Run `hook` once the transaction has committed (never after a rollback); a
        coroutine function is awaited. A failing hook is logged, and the others still run."""
        self._after_commit.append(hook)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is not None:
                if self._session is not None:
                    await self._session.rollback()
                return
            await self._commit()
        finally:
            if self._session is not None:
                await self._session.close()
            if self._connection is not None:
                await self._connection.close()
        if self._recorded and self._on_events is not None:
            self._on_events()
        for hook in self._after_commit:
            try:
                outcome = hook()
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                log.exception("after_commit_hook_failed")

    async def _commit(self) -> None:
        for before in self._before_commit:
            await before()
        if (
            self._recorded
            and self._outbox is not None
            and self.session.get_bind().dialect.name == "postgresql"
        ):
            await self.session.execute(select(func.pg_notify(self._outbox.channel, "")))
        if self._session is not None:
            await self._session.commit()
        if self._connection is not None:
            await self._connection.commit()


class UnitOfWorkFactory:
    """Opens units of work; read-only ones go to the read replica when there is one."""

    def __init__(
        self,
        database: Database,
        *,
        outbox: Outbox | None = None,
        clock: Clock | None = None,
        ids: IdSource | None = None,
    ) -> None:
        self.database = database
        self.outbox = outbox
        self.clock = clock or SystemClock()
        self.ids = ids or RandomIds()
        self._event_listeners: list[Callable[[], None]] = []
        self._on_open: list[Callable[[UnitOfWork], None]] = []

    def __call__(self, *, read_only: bool = False, primary: bool = False) -> UnitOfWork:
        """A unit of work; a read-only one reads the replica unless `primary` is asked
        for, by a read that must see what this client has just written."""
        if not read_only:
            sessions = self.database.sessions
        elif primary:
            sessions = self.database.primary_read_sessions
        else:
            sessions = self.database.read_sessions
        uow = UnitOfWork(
            sessions,
            read_only=read_only,
            outbox=self.outbox,
            clock=self.clock,
            ids=self.ids,
            on_events=self._events_committed,
        )
        if not read_only:
            for hook in self._on_open:
                hook(uow)
        return uow

    def on_open(self, hook: Callable[[UnitOfWork], None]) -> None:
        """Call `hook` with every unit of work that may write, as it opens."""
        self._on_open.append(hook)

    def on_events(self, listener: Callable[[], None]) -> None:
        """Call `listener` whenever a unit of work of this process commits events (the
        in-process relay waits on it instead of polling)."""
        self._event_listeners.append(listener)

    def _events_committed(self) -> None:
        for listener in self._event_listeners:
            listener()
