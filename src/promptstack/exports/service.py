"""Account data export: everything the service holds about a user, gathered by a job.

Asking for an export stores an `account.export` job; the job (exports/jobs.py) reads the
profile, the audit-log entries about the user and the user's notifications page by page,
reporting its progress, and the export becomes the job's result. Gathering only reads,
so a rerun after a crash produces the same export and changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from promptstack.accounts.models import User, UserSnapshot
from promptstack.accounts.repository import UserRepository
from promptstack.audit.models import ShownAuditEntry
from promptstack.audit.repository import AuditRepository
from promptstack.audit.service import Auditor
from promptstack.core.clock import Clock
from promptstack.core.pagination import Cursor, PageRequest
from promptstack.core.unit_of_work import UnitOfWork, UnitOfWorkFactory
from promptstack.jobs.leases import FatalJobError
from promptstack.jobs.models import Job
from promptstack.jobs.repository import JobRepository
from promptstack.jobs.service import JobService
from promptstack.notifications.models import ShownNotification
from promptstack.notifications.repository import NotificationRepository

ACCOUNT_EXPORT = "account.export"
EXPORT_FORMAT_VERSION = 1
EXPORT_PAGE_SIZE = 100

Progress = Callable[[int, int | None], Awaitable[None]]


class AccountExports:
    def __init__(self, uow: UnitOfWorkFactory, jobs: JobService, auditor: Auditor) -> None:
        self.uow = uow
        self.jobs = jobs
        self.audit = auditor

    async def request(self, actor: UserSnapshot, *, address: str | None = None) -> Job:
        """Start an export of the caller's data. While one is still pending or running,
        asking again returns that one instead of starting another."""
        async with self.uow() as uow:
            running = await JobRepository.of(uow).unfinished_of(actor.id, ACCOUNT_EXPORT)
            if running is not None:
                return running
            job = await self.jobs.submit(uow, actor.id, ACCOUNT_EXPORT, {"user_id": str(actor.id)})
            self.audit.record(
                uow,
                "user.export_requested",
                actor_id=actor.id,
                subject_id=actor.id,
                address=address,
                job_id=str(job.id),
            )
        return job


async def gather_account_export(
    uow: UnitOfWorkFactory, clock: Clock, user_id: uuid.UUID, progress: Progress
) -> dict[str, Any]:
    """The export of `user_id`: the profile, the audit log about the account and the
    account's notifications, a page at a time; `progress` hears how many records are
    gathered out of how many there are."""
    async with uow(read_only=True) as reading:
        user = await UserRepository.of(reading).get(user_id)
        if user is None or user.deleted_at is not None:
            raise FatalJobError("The account no longer exists.")
        total = (
            1
            + await AuditRepository.of(reading).count_about(user_id)
            + await NotificationRepository.of(reading).count_of(user_id)
        )
    gathered = 1
    await progress(gathered, total)
    sections: dict[str, list[dict[str, Any]]] = {}
    for name, read_page in (("audit_log", _audit_page), ("notifications", _notification_page)):
        records: list[dict[str, Any]] = []
        page = PageRequest(limit=EXPORT_PAGE_SIZE)
        while True:
            async with uow(read_only=True) as reading:
                found, cursor = await read_page(reading, user_id, page)
            records.extend(found)
            gathered += len(found)
            # Rows added meanwhile are exported too; the total grows with them.
            total = max(total, gathered)
            await progress(gathered, total)
            if cursor is None:
                break
            page = PageRequest(limit=EXPORT_PAGE_SIZE, after=Cursor.decode(cursor))
        sections[name] = records
    return {
        "format_version": EXPORT_FORMAT_VERSION,
        "exported_at": clock.now().isoformat(),
        "profile": _profile(user),
        **sections,
    }


Records = tuple[list[dict[str, Any]], str | None]


async def _audit_page(reading: UnitOfWork, user_id: uuid.UUID, page: PageRequest) -> Records:
    found = await AuditRepository.of(reading).list(page, subject_id=user_id)
    return [_entry(entry) for entry in found.items], found.next_cursor


async def _notification_page(reading: UnitOfWork, user_id: uuid.UUID, page: PageRequest) -> Records:
    found = await NotificationRepository.of(reading).inbox(user_id, page)
    return [_notification(notification) for notification in found.items], found.next_cursor


def _profile(user: User) -> dict[str, Any]:
    return {
        "id": str(user.id),
        "email": user.email,
        "username": user.username,
        "full_name": user.full_name,
        "role": user.role.value,
        "tier": user.tier.value,
        "is_active": user.is_active,
        "is_verified": user.is_verified,
        "is_beta_tester": user.is_beta_tester,
        "credits": user.credits,
        "preferred_provider": user.preferred_provider,
        "created_at": user.created_at.isoformat(),
        "updated_at": user.updated_at.isoformat(),
    }


def _entry(entry: ShownAuditEntry) -> dict[str, Any]:
    return {
        "id": str(entry.id),
        "action": entry.action,
        "at": entry.at.isoformat(),
        "actor_id": str(entry.actor_id) if entry.actor_id else None,
        "address": entry.address,
        "details": entry.details,
    }


def _notification(notification: ShownNotification) -> dict[str, Any]:
    return {
        "id": str(notification.id),
        "subject": notification.subject,
        "message": notification.message,
        "sender_id": str(notification.sender_id) if notification.sender_id else None,
        "created_at": notification.created_at.isoformat(),
        "read_at": notification.read_at.isoformat() if notification.read_at else None,
    }
