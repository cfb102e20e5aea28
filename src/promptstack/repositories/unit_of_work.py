"""The unit of work: one transaction, the repositories that share it, and what runs after.

Its exit is the one place a transaction commits. Events are recorded into the outbox
within the transaction (`record`), so the state change and the news of it commit or
vanish together; the relay publishes them afterwards. Purely local work that must only
happen once the data is durable is registered with `after_commit`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from types import TracebackType
from typing import Self

from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from promptstack.core.cache import CacheRegion
from promptstack.core.clock import Clock, SystemClock
from promptstack.core.database import Database
from promptstack.core.errors import Conflict
from promptstack.core.events import Envelope, Event, envelope_for
from promptstack.core.ids import IdSource, RandomIds
from promptstack.core.logging import get_logger
from promptstack.models.messaging import OutboxMessage
from promptstack.models.user import User, UserSnapshot
from promptstack.repositories.audit import AuditRepository
from promptstack.repositories.auth import (
    ActionTokenRepository,
    LoginFailureRepository,
    RefreshTokenRepository,
)
from promptstack.repositories.base import changed_users, take_changed_users
from promptstack.repositories.inbox import InboxRepository
from promptstack.repositories.jobs import JobRepository
from promptstack.repositories.notifications import NotificationRepository
from promptstack.repositories.outbox import OutboxRepository
from promptstack.repositories.users import UserRepository

# PostgreSQL delivers a NOTIFY when its transaction commits, which wakes the relays.
OUTBOX_CHANNEL = "promptstack_outbox"

log = get_logger(__name__)


class UnitOfWork:
    users: UserRepository
    refresh_tokens: RefreshTokenRepository
    action_tokens: ActionTokenRepository
    login_failures: LoginFailureRepository
    audit: AuditRepository
    outbox: OutboxRepository
    inbox: InboxRepository
    jobs: JobRepository
    notifications: NotificationRepository

    def __init__(
        self,
        session: AsyncSession,
        user_snapshots: CacheRegion[UserSnapshot] | None = None,
        *,
        clock: Clock | None = None,
        ids: IdSource | None = None,
        on_events: Callable[[], None] | None = None,
    ) -> None:
        self.session = session
        self._after_commit: list[Callable[[], None]] = []
        self._user_snapshots = user_snapshots
        self._clock = clock or SystemClock()
        self._ids = ids or RandomIds()
        self._on_events = on_events
        self._recorded = False
        self.users = UserRepository(session)
        self.refresh_tokens = RefreshTokenRepository(session)
        self.action_tokens = ActionTokenRepository(session)
        self.login_failures = LoginFailureRepository(session)
        self.audit = AuditRepository(session)
        self.outbox = OutboxRepository(session)
        self.inbox = InboxRepository(session)
        self.jobs = JobRepository(session)
        self.notifications = NotificationRepository(session)

    def record(self, event: Event, *, aggregate_id: str | uuid.UUID) -> Envelope:
        """Append `event` to the outbox in this transaction."""
        envelope = envelope_for(
            event,
            aggregate_id=str(aggregate_id),
            id_=self._ids.new(),
            occurred_at=self._clock.now(),
        )
        self.session.add(OutboxMessage.of(envelope))
        self._recorded = True
        return envelope

    def wake_relay(self) -> None:
        """Tell the relays, once this commits, that outbox rows became due."""
        self._recorded = True

    def after_commit(self, hook: Callable[[], None]) -> None:
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
                await self.session.rollback()
                if isinstance(exc, IntegrityError):
                    raise _conflict() from exc
                return
            try:
                if self._recorded and self.session.get_bind().dialect.name == "postgresql":
                    await self.session.execute(select(func.pg_notify(OUTBOX_CHANNEL, "")))
                await self.session.commit()
            except IntegrityError as error:
                await self.session.rollback()
                raise _conflict() from error
            changed = take_changed_users(self.session)
            if changed and self._user_snapshots is not None:
                await self._user_snapshots.invalidate(*(str(user_id) for user_id in changed))
        finally:
            await self.session.close()
        if self._recorded and self._on_events is not None:
            self._on_events()
        for hook in self._after_commit:
            try:
                hook()
            except Exception:
                log.exception("after_commit_hook_failed")


class UnitOfWorkFactory:
    """Opens units of work; read-only ones go to the read replica when there is one.

    It also serves users cache-aside (`user_snapshot`), since authentication reads the
    caller on every request: a hit opens no session and costs no query, and every unit
    of work drops the snapshots of the users it changed once it commits.
    """

    def __init__(
        self,
        database: Database,
        user_snapshots: CacheRegion[UserSnapshot] | None = None,
        *,
        clock: Clock | None = None,
        ids: IdSource | None = None,
        session_window: timedelta = timedelta(minutes=15),
    ) -> None:
        self.database = database
        self.user_snapshots = user_snapshots
        # How long an access token lives: sessions ended longer ago than that have no
        # live access token left to refuse.
        self.session_window = session_window
        self.clock = clock or SystemClock()
        self.ids = ids or RandomIds()
        self._event_listeners: list[Callable[[], None]] = []

    def __call__(self, *, read_only: bool = False) -> UnitOfWork:
        factory = self.database.read_sessions if read_only else self.database.sessions
        return UnitOfWork(
            factory(),
            self.user_snapshots,
            clock=self.clock,
            ids=self.ids,
            on_events=self._events_committed,
        )

    def on_events(self, listener: Callable[[], None]) -> None:
        """Call `listener` whenever a unit of work of this process commits events (the
        in-process relay waits on it instead of polling)."""
        self._event_listeners.append(listener)

    def _events_committed(self) -> None:
        for listener in self._event_listeners:
            listener()

    async def user_snapshot(self, user_id: uuid.UUID) -> UserSnapshot | None:
        """A user as authentication needs it: from the cache, opening a session only on a
        miss (this runs on every request)."""

        async def load() -> UserSnapshot | None:
            async with self(read_only=True) as uow:
                user = await uow.users.snapshot(user_id)
                if user is None:
                    return None
                since = self.clock.now() - self.session_window
                ended = await uow.refresh_tokens.families_revoked_since(user_id, since)
                return user.model_copy(update={"ended_sessions": ended}) if ended else user

        if self.user_snapshots is None:
            return await load()
        return await self.user_snapshots.get_or_load(str(user_id), load)


@event.listens_for(Session, "before_flush")
def _note_changed_users(session: Session, _context: object, _instances: object) -> None:
    """Remember which users a flush writes, so their cached snapshots go after the commit.

    Only changes made through the ORM are seen; a bulk UPDATE of users would have to
    invalidate by itself.
    """
    changed = changed_users(session)
    for entity in (*session.new, *session.dirty, *session.deleted):
        if isinstance(entity, User):
            changed.add(entity.id)


def _conflict() -> Conflict:
    return Conflict("The change conflicts with data that already exists.")
