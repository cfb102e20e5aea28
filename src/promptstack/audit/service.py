"""Recording and reading the audit log."""

from __future__ import annotations

import uuid
from typing import Any

from promptstack.audit.models import ShownAuditEntry
from promptstack.audit.repository import AuditRepository
from promptstack.core.clock import Clock
from promptstack.core.ids import IdSource
from promptstack.core.pagination import Page, PageRequest
from promptstack.core.unit_of_work import UnitOfWork, UnitOfWorkFactory


class Auditor:
    """Appends to the audit log inside the caller's transaction, so the entry and the
    action it records commit or vanish together."""

    def __init__(self, clock: Clock, ids: IdSource) -> None:
        self.clock = clock
        self.ids = ids

    def record(
        self,
        uow: UnitOfWork,
        action: str,
        *,
        actor_id: uuid.UUID | None,
        subject_id: uuid.UUID | None,
        address: str | None = None,
        **details: Any,
    ) -> None:
        AuditRepository.of(uow).queue(
            {
                "id": self.ids.new(),
                "action": action,
                "actor_id": actor_id,
                "subject_id": subject_id,
                "address": address,
                "at": self.clock.now(),
                "details": details,
            }
        )


class AuditLog:
    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self.uow = uow

    async def list(
        self,
        page: PageRequest,
        *,
        action: str | None = None,
        actor_id: uuid.UUID | None = None,
        subject_id: uuid.UUID | None = None,
    ) -> Page[ShownAuditEntry]:
        async with self.uow(read_only=True) as uow:
            return await AuditRepository.of(uow).list(
                page, action=action, actor_id=actor_id, subject_id=subject_id
            )
