"""Notifications: administrators send them; each user reads and marks their own."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from promptstack.accounts.dependencies import AdminUser, CurrentUser
from promptstack.core.errors import Forbidden, NotFound, Unauthorized
from promptstack.core.pagination import Page
from promptstack.http import API_V1
from promptstack.http.openapi import problem_responses
from promptstack.http.pagination import PageDep
from promptstack.http.schemas import PageOut
from promptstack.notifications.dependencies import NotificationServiceDep
from promptstack.notifications.models import Notification, ShownNotification
from promptstack.notifications.schemas import (
    MarkedRead,
    NotificationIn,
    NotificationOut,
    NotificationQueued,
)

router = APIRouter(
    prefix=f"{API_V1}/notifications",
    tags=["notifications"],
    responses=problem_responses(Unauthorized),
)


@router.post(
    "",
    status_code=202,
    response_model=NotificationQueued,
    responses=problem_responses(Forbidden, NotFound),
)
async def send_notification(
    body: NotificationIn, admin: AdminUser, notifications: NotificationServiceDep
) -> NotificationQueued:
    """Send a user an in-app notification and an email (administrators only). Both are
    delivered in the background; the answer comes at once."""
    notification_id = await notifications.send(admin, body.user_id, body.subject, body.message)
    return NotificationQueued(id=notification_id)


@router.get("", response_model=PageOut[NotificationOut])
async def list_notifications(
    user: CurrentUser,
    notifications: NotificationServiceDep,
    page: PageDep,
    unread: bool = False,
) -> Page[ShownNotification]:
    """Your notifications, newest first; `unread=true` leaves out those already read."""
    return await notifications.list(user, page, unread_only=unread)


@router.post("/read-all", response_model=MarkedRead)
async def mark_all_read(user: CurrentUser, notifications: NotificationServiceDep) -> MarkedRead:
    """Mark all your unread notifications read; how many there were."""
    return MarkedRead(marked_read=await notifications.mark_all_read(user))


@router.post(
    "/{notification_id}/read",
    response_model=NotificationOut,
    responses=problem_responses(NotFound),
)
async def mark_read(
    notification_id: uuid.UUID, user: CurrentUser, notifications: NotificationServiceDep
) -> Notification:
    """Mark one of your notifications read. Marking it again changes nothing: the first
    read time stays."""
    return await notifications.mark_read(user, notification_id)
