"""Notifications: administrators write to a user, who gets an in-app message and an email.

Sending only records the request (audit entry and `NotificationRequested`, in one
transaction), so it answers at once; two consumers of that event then deliver the
in-app message and the email, each at most once in effect.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from promptstack.accounts.models import Role, UserSnapshot
from promptstack.accounts.repository import UserRepository
from promptstack.audit.service import Auditor
from promptstack.core.clock import Clock
from promptstack.core.email import Mailer, compose
from promptstack.core.errors import Forbidden, NotFound
from promptstack.core.ids import IdSource
from promptstack.core.pagination import Page, PageRequest
from promptstack.core.settings import Settings
from promptstack.core.unit_of_work import UnitOfWork, UnitOfWorkFactory
from promptstack.notifications.events import NotificationRequested
from promptstack.notifications.models import Notification, ShownNotification
from promptstack.notifications.repository import NotificationRepository


class NotificationService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        auditor: Auditor,
        mailer: Mailer,
        clock: Clock,
        ids: IdSource,
        settings: Settings,
    ) -> None:
        self.uow = uow
        self.audit = auditor
        self.mailer = mailer
        self.clock = clock
        self.ids = ids
        self.settings = settings

    async def send(
        self, actor: UserSnapshot, user_id: uuid.UUID, subject: str, message: str
    ) -> uuid.UUID:
        """Queue a notification to `user_id` (administrators only); its id.

        Delivery follows in the background; the audit entry and the event commit together,
        so a refused or failed request leaves neither behind.
        """
        if actor.role is Role.USER:
            raise Forbidden("Only administrators may send notifications.")
        notification_id = self.ids.new()
        async with self.uow() as uow:
            user = await UserRepository.of(uow).get(user_id)
            if user is None or user.deleted_at is not None:
                raise NotFound("No such user.")
            self.audit.record(
                uow,
                "notification.sent",
                actor_id=actor.id,
                subject_id=user.id,
                notification_id=str(notification_id),
                subject=subject,
            )
            uow.record(
                NotificationRequested(
                    notification_id=notification_id,
                    user_id=user.id,
                    sender_id=actor.id,
                    subject=subject,
                    message=message,
                ),
                aggregate_id=user.id,
            )
        return notification_id

    def notify(self, uow: UnitOfWork, user_id: uuid.UUID, subject: str, message: str) -> None:
        """Queue a notification from the service itself (no sender) in `uow`, the
        transaction that makes it true: an order confirmed, say."""
        uow.record(
            NotificationRequested(
                notification_id=self.ids.new(),
                user_id=user_id,
                sender_id=None,
                subject=subject,
                message=message,
            ),
            aggregate_id=user_id,
        )

    async def deliver_in_app(
        self, uow: UnitOfWork, event: NotificationRequested, *, sent_at: datetime
    ) -> None:
        """Put the notification in the user's inbox, dated when it was sent; nothing when it
        is there already or the user is gone."""
        if await NotificationRepository.of(uow).get(event.notification_id) is not None:
            return
        user = await UserRepository.of(uow).get(event.user_id)
        if user is None or user.deleted_at is not None:
            return
        sender_id = event.sender_id
        if sender_id is not None and await UserRepository.of(uow).get(sender_id) is None:
            sender_id = None
        NotificationRepository.of(uow).add(
            Notification(
                id=event.notification_id,
                user_id=user.id,
                sender_id=sender_id,
                subject=event.subject,
                message=event.message,
                created_at=sent_at,
                read_at=None,
            )
        )

    async def deliver_email(self, uow: UnitOfWork, event: NotificationRequested) -> None:
        """Email the notification to the user's current address, unless the user is gone."""
        user = await UserRepository.of(uow).get(event.user_id)
        if user is None or user.deleted_at is not None:
            return
        app = self.settings.app_name
        sender = f"the {app} administrators" if event.sender_id else app
        await self.mailer.send(
            compose(
                user.email,
                # One line even if a future sender forgets to check: a header must not break.
                " ".join(event.subject.split()),
                [f"Hello {user.full_name or user.username},", event.message],
                footer=f"Sent by {sender}. This message is also in your {app} notifications "
                "(GET /api/v1/notifications).",
            )
        )

    async def list(
        self, actor: UserSnapshot, page: PageRequest, *, unread_only: bool = False
    ) -> Page[ShownNotification]:
        """The caller's own notifications, newest first."""
        async with self.uow(read_only=True) as uow:
            return await NotificationRepository.of(uow).inbox(
                actor.id, page, unread_only=unread_only
            )

    async def mark_read(self, actor: UserSnapshot, notification_id: uuid.UUID) -> Notification:
        """Mark one of the caller's notifications read; marking it again keeps the first
        read time. Another user's notification is not found, like an unknown one."""
        async with self.uow() as uow:
            await NotificationRepository.of(uow).mark_read(
                actor.id, notification_id, self.clock.now()
            )
            notification = await NotificationRepository.of(uow).of_user(actor.id, notification_id)
            if notification is None:
                raise NotFound("No such notification.")
        return notification

    async def mark_all_read(self, actor: UserSnapshot) -> int:
        """Mark every unread notification of the caller read; how many there were."""
        async with self.uow() as uow:
            return await NotificationRepository.of(uow).mark_all_read(actor.id, self.clock.now())
