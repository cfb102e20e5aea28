"""In-app notifications."""

from __future__ import annotations

from promptstack.models.notification import Notification
from promptstack.repositories.base import Repository


class NotificationRepository(Repository[Notification]):
    model = Notification
