"""Users by id, by login name, and by search."""

from __future__ import annotations

import uuid
from functools import cache
from typing import Any, cast

from sqlalchemy import Table, Update, bindparam, event, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from promptstack.accounts.models import Role, ShownUser, User, UserSnapshot
from promptstack.core.errors import Conflict
from promptstack.core.pagination import Page, PageRequest
from promptstack.core.repository import PagedQuery, Repository, escape_like

_CHANGED_USERS = "changed_users"


def changed_users(session: AsyncSession) -> set[uuid.UUID]:
    """The users this transaction changed, whose cached snapshots go once it commits.

    ORM changes to users are noted as they are flushed (`track_changed_users`); a bulk
    statement that changes what a snapshot shows notes its user here itself.
    """
    users: set[uuid.UUID] = session.info.setdefault(_CHANGED_USERS, set())
    return users


class AccountTaken(Conflict):
    title = "The email address or username is taken"


# The columns an account is listed with (UserOut).
_SHOWN = (
    User.id,
    User.email,
    User.username,
    User.full_name,
    User.role,
    User.tier,
    User.is_active,
    User.is_verified,
    User.is_beta_tester,
    User.credits,
    User.preferred_provider,
    User.created_at,
)


_USERS = cast(Table, User.__table__)
_SNAPSHOT = select(
    *(getattr(User, name) for name in UserSnapshot.model_fields if name != "ended_sessions")
).where(User.id == bindparam("user_id"))


@cache
def _profile_update(columns: tuple[str, ...]) -> Update:
    """An UPDATE of `columns` of a live account whose email and username are still the
    ones given, answering the shown columns; built once per set of columns."""
    return (
        update(_USERS)
        .where(
            _USERS.c.id == bindparam("user_id"),
            _USERS.c.deleted_at.is_(None),
            _USERS.c.is_active.is_(True),
            _USERS.c.email == bindparam("seen_email"),
            _USERS.c.username == bindparam("seen_username"),
        )
        .values({name: bindparam(f"new_{name}") for name in columns})
        .returning(*(_USERS.c[column.key] for column in _SHOWN))
    )


class UserRepository(Repository[User]):
    model = User

    async def reload_credits(self, user: User) -> None:
        """The balance as the ledger left it: the ledger changes it past the ORM."""
        await self.session.refresh(user, ["credits"])

    async def update_seen(self, seen: UserSnapshot, values: dict[str, Any]) -> ShownUser | None:
        """Set `values` on the account in one statement, if it is live and its email and
        username are still those of `seen` (so values derived from them, such as the
        search key, are right); None otherwise, and nothing is written.

        Loading the account to change it cost a profile change a quarter of its time."""
        statement = _profile_update(tuple(sorted(values)))
        params = {f"new_{name}": value for name, value in values.items()}
        params.update(user_id=seen.id, seen_email=seen.email, seen_username=seen.username)
        connection = await self.connection()
        row: ShownUser | None = (await connection.execute(statement, params)).first()
        if row is not None:
            changed_users(self.session).add(seen.id)
        return row

    async def insert(self, user: User) -> User:
        """Add a new account now, so that a concurrent registration of the same email
        or username is told apart from any other failure: it is `AccountTaken`."""
        self.session.add(user)
        await self.save()
        return user

    async def save(self) -> None:
        """Write pending changes; a taken email or username is `AccountTaken`."""
        try:
            await self.session.flush()
        except IntegrityError as exc:
            raise AccountTaken("An account with this email or username already exists.") from exc

    async def snapshot(self, user_id: uuid.UUID) -> UserSnapshot | None:
        """The account as authentication caches it, read as one row: every request of a
        user whose snapshot was dropped (by a change) loads it again."""
        connection = await self.connection()
        row = (await connection.execute(_SNAPSHOT, {"user_id": user_id})).first()
        return UserSnapshot.model_validate(row) if row is not None else None

    async def by_login(self, identifier: str) -> User | None:
        """The user whose email or username is `identifier`, case-insensitively."""
        key = identifier.strip().casefold()
        query = select(User).where(or_(User.email_key == key, User.username_key == key))
        return (await self.session.scalars(query.limit(1))).first()

    async def by_email(self, email_key: str) -> User | None:
        return (await self.session.scalars(select(User).where(User.email_key == email_key))).first()

    async def taken(
        self, *, email_key: str | None = None, username_key: str | None = None
    ) -> set[str]:
        """Which of the given unique fields another account already uses."""
        found: set[str] = set()
        if email_key is not None and await self._exists(User.email_key == email_key):
            found.add("email")
        if username_key is not None and await self._exists(User.username_key == username_key):
            found.add("username")
        return found

    async def _exists(self, condition: object) -> bool:
        query = select(User.id).where(condition).limit(1)  # type: ignore[arg-type]
        return (await self.session.scalar(query)) is not None

    async def search(
        self, request: PageRequest, *, text: str | None, role: Role | None
    ) -> Page[ShownUser]:
        query = select(*_SHOWN).where(User.deleted_at.is_(None))
        if text:
            query = query.where(User.search_key.like(escape_like(text.casefold()), escape="\\"))
        if role is not None:
            query = query.where(User.role == role)
        return await self.page_rows(PagedQuery(query, at=User.created_at, id_=User.id), request)


def track_changed_users(session: AsyncSession) -> set[uuid.UUID]:
    """The ids of the users this session's flushes write, gathered as they happen, and
    those a bulk statement noted itself (`changed_users`)."""
    changed = changed_users(session)

    def note(flushing: Session, _context: Any, _instances: Any) -> None:
        for entity in (*flushing.new, *flushing.dirty, *flushing.deleted):
            if isinstance(entity, User):
                changed.add(entity.id)

    event.listen(session.sync_session, "before_flush", note)
    return changed
