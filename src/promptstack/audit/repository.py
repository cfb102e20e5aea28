"""The audit log, appended to in the same transaction as the action it records."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from promptstack.audit.models import AuditEntry, ShownAuditEntry
from promptstack.core.pagination import Page, PageRequest
from promptstack.core.repository import PagedQuery, Repository

# The columns an entry is shown with (AuditEntryOut).
_SHOWN = (
    AuditEntry.id,
    AuditEntry.action,
    AuditEntry.actor_id,
    AuditEntry.subject_id,
    AuditEntry.address,
    AuditEntry.at,
    AuditEntry.details,
)


class AuditRepository(Repository[AuditEntry]):
    model = AuditEntry

    async def list(
        self,
        request: PageRequest,
        *,
        action: str | None = None,
        actor_id: uuid.UUID | None = None,
        subject_id: uuid.UUID | None = None,
    ) -> Page[ShownAuditEntry]:
        query = select(*_SHOWN)
        if action is not None:
            query = query.where(AuditEntry.action == action)
        if actor_id is not None:
            query = query.where(AuditEntry.actor_id == actor_id)
        if subject_id is not None:
            query = query.where(AuditEntry.subject_id == subject_id)
        listing = PagedQuery(query, at=AuditEntry.at, id_=AuditEntry.id, newest_first=True)
        return await self.page_rows(listing, request)

    async def count_about(self, subject_id: uuid.UUID) -> int:
        query = select(func.count()).where(AuditEntry.subject_id == subject_id)
        return int(await self.session.scalar(query) or 0)
