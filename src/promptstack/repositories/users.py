"""Users by id, by login name, and by search."""

from __future__ import annotations

import uuid

from sqlalchemy import or_, select

from promptstack.core.pagination import Page, PageRequest
from promptstack.models.user import Role, User, UserSnapshot
from promptstack.repositories.base import Repository, escape_like


class UserRepository(Repository[User]):
    model = User

    async def snapshot(self, user_id: uuid.UUID) -> UserSnapshot | None:
        user = await self.get(user_id)
        return UserSnapshot.of(user) if user is not None else None

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
    ) -> Page[User]:
        query = select(User).where(User.deleted_at.is_(None))
        if text:
            query = query.where(User.search_key.like(escape_like(text.casefold()), escape="\\"))
        if role is not None:
            query = query.where(User.role == role)
        return await self.page(query, request, at=User.created_at, id_=User.id)
