"""The inbox: which consumer has handled which event."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from promptstack.models.messaging import InboxEntry


class InboxRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim(self, consumer: str, event_id: uuid.UUID, now: datetime) -> bool:
        """Note the event as handled by `consumer`; False when it already was.

        On PostgreSQL a concurrent claim of the same event waits for the first
        transaction and then finds the row, so of many simultaneous deliveries exactly
        one proceeds; SQLite serialises writers, with the same result.
        """
        values = {"consumer": consumer, "event_id": event_id, "processed_at": now}
        dialect = self.session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(InboxEntry).values(values).on_conflict_do_nothing()
        result = await self.session.execute(statement)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def purge(self, before: datetime) -> int:
        result = await self.session.execute(
            delete(InboxEntry).where(InboxEntry.processed_at < before)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
