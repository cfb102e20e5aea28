"""Users as authentication reads them on every request: cached, and dropped on change."""

from __future__ import annotations

import uuid
from datetime import timedelta

from promptstack.accounts.models import UserSnapshot
from promptstack.accounts.repository import UserRepository, track_changed_users
from promptstack.accounts.session_repository import RefreshTokenRepository
from promptstack.core.cache import CacheRegion
from promptstack.core.clock import Clock
from promptstack.core.unit_of_work import UnitOfWork, UnitOfWorkFactory


class UserSnapshots:
    """Cache-aside reads of users for authentication: a hit opens no session and costs
    no query. `follow` is handed every writing unit of work (`UnitOfWorkFactory.on_open`),
    so a transaction that changes a user drops its snapshot once it commits, in every
    process (the cache announces the deletion)."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        region: CacheRegion[UserSnapshot],
        clock: Clock,
        *,
        session_window: timedelta,
    ) -> None:
        self.uow = uow
        self.region = region
        self.clock = clock
        # How long an access token lives: sessions ended longer ago than that have no
        # live access token left to refuse.
        self.session_window = session_window

    async def get(self, user_id: uuid.UUID) -> UserSnapshot | None:
        return await self.region.get_or_load(str(user_id), lambda: self._load(user_id))

    async def _load(self, user_id: uuid.UUID) -> UserSnapshot | None:
        async with self.uow(read_only=True) as uow:
            user = await UserRepository.of(uow).snapshot(user_id)
            if user is None:
                return None
            since = self.clock.now() - self.session_window
            ended = await RefreshTokenRepository.of(uow).families_revoked_since(user_id, since)
        return user.model_copy(update={"ended_sessions": ended}) if ended else user

    def follow(self, uow: UnitOfWork) -> None:
        changed = track_changed_users(uow.session)

        async def forget() -> None:
            if changed:
                await self.region.invalidate(*(str(user_id) for user_id in changed))

        uow.after_commit(forget)
