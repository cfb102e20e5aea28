"""In-app notifications."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import bindparam, func, select, update

from promptstack.core.pagination import Page, PageRequest
from promptstack.core.repository import PagedQuery, Repository
from promptstack.notifications.models import Notification, ShownNotification

# The columns a notification is shown with (NotificationOut).
_SHOWN = (
    Notification.id,
    Notification.subject,
    Notification.message,
    Notification.sender_id,
    Notification.created_at,
    Notification.read_at,
)
_OWN = select(*_SHOWN).where(Notification.user_id == bindparam("user_id"))
_INBOX = PagedQuery(_OWN, at=Notification.created_at, id_=Notification.id, newest_first=True)
_UNREAD = PagedQuery(
    _OWN.where(Notification.read_at.is_(None)),
    at=Notification.created_at,
    id_=Notification.id,
    newest_first=True,
)


class NotificationRepository(Repository[Notification]):
    model = Notification

    async def inbox(
        self, user_id: uuid.UUID, request: PageRequest, *, unread_only: bool = False
    ) -> Page[ShownNotification]:
        """A user's notifications, newest first, as rows of what a reader is shown;
        served by (user_id, created_at, id)."""
        listing = _UNREAD if unread_only else _INBOX
        return await self.page_rows(listing, request, {"user_id": user_id})

    async def of_user(self, user_id: uuid.UUID, notification_id: uuid.UUID) -> Notification | None:
        """One of `user_id`'s notifications; None for another user's, as for an unknown one."""
        query = select(Notification).where(
            Notification.id == notification_id, Notification.user_id == user_id
        )
        return (await self.session.scalars(query)).first()

    async def mark_read(
        self, user_id: uuid.UUID, notification_id: uuid.UUID, now: datetime
    ) -> bool:
        """Set the read time of an unread notification of `user_id`; False when there is no
        such unread one. The condition keeps the first read time under concurrent calls."""
        result = await self.session.execute(
            update(Notification)
            .where(
                Notification.id == notification_id,
                Notification.user_id == user_id,
                Notification.read_at.is_(None),
            )
            .values(read_at=now)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def mark_all_read(self, user_id: uuid.UUID, now: datetime) -> int:
        """Set the read time of every unread notification of `user_id`; how many there were."""
        result = await self.session.execute(
            update(Notification)
            .where(Notification.user_id == user_id, Notification.read_at.is_(None))
            .values(read_at=now)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def count_of(self, user_id: uuid.UUID) -> int:
        query = select(func.count()).where(Notification.user_id == user_id)
        return int(await self.session.scalar(query) or 0)
