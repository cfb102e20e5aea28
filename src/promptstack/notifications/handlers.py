"""Delivery of notifications: the in-app message and the email are separate consumers, so
a failing mail server delays the email without holding back the inbox."""

from __future__ import annotations

from promptstack.core.envelope import Envelope
from promptstack.core.unit_of_work import UnitOfWork
from promptstack.events.consumers import Consumers
from promptstack.notifications.events import NotificationRequested
from promptstack.notifications.service import NotificationService


def register(consumers: Consumers, notifications: NotificationService) -> None:
    async def in_app(event: NotificationRequested, envelope: Envelope, uow: UnitOfWork) -> None:
        await notifications.deliver_in_app(uow, event, sent_at=envelope.occurred_at)

    async def email(event: NotificationRequested, _: Envelope, uow: UnitOfWork) -> None:
        await notifications.deliver_email(uow, event)

    consumers.on("notifications.in_app", NotificationRequested, in_app)
    consumers.on("notifications.email", NotificationRequested, email)
