"""What administrators see of the event backbone: the backlog and parked events."""

from __future__ import annotations

import uuid

from promptstack.accounts.models import UserSnapshot
from promptstack.audit.service import Auditor
from promptstack.core.errors import NotFound
from promptstack.core.pagination import Page, PageRequest
from promptstack.core.unit_of_work import UnitOfWorkFactory
from promptstack.events.models import Backlog, OutboxMessage
from promptstack.events.outbox import OutboxRepository


class EventAdmin:
    def __init__(self, uow: UnitOfWorkFactory, auditor: Auditor) -> None:
        self.uow = uow
        self.audit = auditor

    async def backlog(self) -> Backlog:
        async with self.uow(read_only=True) as uow:
            return await OutboxRepository.of(uow).backlog()

    async def parked(self, request: PageRequest) -> Page[OutboxMessage]:
        """Oldest parked first: the order they should be looked at and replayed in."""
        async with self.uow(read_only=True) as uow:
            return await OutboxRepository.of(uow).parked(request)

    async def replay(self, actor: UserSnapshot, event_id: uuid.UUID) -> None:
        """Give a parked event a fresh set of attempts, once its cause is fixed."""
        async with self.uow() as uow:
            if not await OutboxRepository.of(uow).replay(event_id, self.uow.clock.now()):
                raise NotFound("No parked event has this id.")
            self.audit.record(
                uow, "event.replayed", actor_id=actor.id, subject_id=None, event_id=str(event_id)
            )
            uow.wake_relay()
