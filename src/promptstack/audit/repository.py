"""The audit log, appended to in the same transaction as the action it records."""

from __future__ import annotations

import uuid
from typing import Any, cast

from sqlalchemy import Table, func, insert, select

from promptstack.audit.models import AuditEntry, ShownAuditEntry
from promptstack.core.pagination import Page, PageRequest
from promptstack.core.repository import PagedQuery, Repository, Transaction

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


_INSERT = insert(cast(Table, AuditEntry.__table__))


class AuditRepository(Repository[AuditEntry]):
    model = AuditEntry

    def __init__(self, transaction: Transaction) -> None:
        super().__init__(transaction)
        self._queued: list[dict[str, Any]] = []

    def queue(self, entry: dict[str, Any]) -> None:
        """Keep `entry` to be written with this transaction's others as it commits."""
        if not self._queued:
            self._transaction.before_commit(self._write_queued)
        self._queued.append(entry)

    async def _write_queued(self) -> None:
        """Write the queued entries in one INSERT, in the transaction they belong to.

        An entry added to the session instead cost a one-row write the ORM's whole flush
        (a tenth of a profile change's time)."""
        if not self._queued:
            return
        connection = await self.connection()
        entries = self._queued[0] if len(self._queued) == 1 else list(self._queued)
        await connection.execute(_INSERT, entries)
        self._queued.clear()

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
