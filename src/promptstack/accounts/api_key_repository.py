"""The API keys of an account, and finding one by the hash of what a client sent."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, func, select, update

from promptstack.accounts.api_key_models import ApiKey
from promptstack.accounts.models import User
from promptstack.core.repository import Repository


class ApiKeyRepository(Repository[ApiKey]):
    model = ApiKey

    async def count_locked(self, user_id: uuid.UUID) -> int:
        """The account's keys, its row locked until commit so that two creations at once
        count one after the other (SQLite's writers run one at a time already)."""
        await self.session.execute(select(User.id).where(User.id == user_id).with_for_update())
        counted = await self.session.scalar(
            select(func.count()).select_from(ApiKey).where(ApiKey.user_id == user_id)
        )
        return int(counted or 0)

    async def of_user(self, user_id: uuid.UUID) -> list[ApiKey]:
        found = await self.session.scalars(
            select(ApiKey)
            .where(ApiKey.user_id == user_id)
            .order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
        )
        return list(found)

    async def by_hash(self, key_hash: str) -> ApiKey | None:
        found: ApiKey | None = await self.session.scalar(
            select(ApiKey).where(ApiKey.key_hash == key_hash)
        )
        return found

    async def remove(self, key_id: uuid.UUID, user_id: uuid.UUID) -> ApiKey | None:
        """Delete the key if it is the account's; what was deleted, if anything."""
        removed: ApiKey | None = await self.session.scalar(
            delete(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user_id).returning(ApiKey)
        )
        return removed

    async def touch(self, key_id: uuid.UUID, now: datetime, before: datetime) -> None:
        """Record a use, unless one was recorded since `before`."""
        await self.session.execute(
            update(ApiKey)
            .where(
                ApiKey.id == key_id,
                (ApiKey.last_used_at.is_(None)) | (ApiKey.last_used_at < before),
            )
            .values(last_used_at=now)
        )
