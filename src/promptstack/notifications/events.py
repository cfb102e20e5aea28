"""The events of notifications."""

from __future__ import annotations

import uuid

from pydantic import Field

from promptstack.core.envelope import Event


class NotificationRequested(Event):
    type = "notification.requested"

    notification_id: uuid.UUID
    user_id: uuid.UUID
    sender_id: uuid.UUID | None
    subject: str = Field(max_length=200)
    message: str = Field(max_length=10_000)
