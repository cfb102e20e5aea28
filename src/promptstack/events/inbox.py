"""The inbox: which consumer has handled which event."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import cast

from sqlalchemy import Insert, Table, bindparam, delete
from sqlalchemy.dialects import postgresql, sqlite

from promptstack.core.repository import SessionRepository
from promptstack.events.models import InboxEntry


def _claim_statement(insert: type[postgresql.Insert] | type[sqlite.Insert]) -> Insert:
    """Built once: a statement made per delivery costs more CPU than the round trip."""
    table = cast(Table, InboxEntry.__table__)
    columns = ("consumer", "event_id", "processed_at")
    values = {name: bindparam(name, type_=table.c[name].type) for name in columns}
    return insert(table).values(values).on_conflict_do_nothing()


_CLAIM = {
    "postgresql": _claim_statement(postgresql.Insert),
    "sqlite": _claim_statement(sqlite.Insert),
}


class InboxRepository(SessionRepository):
    async def claim(self, consumer: str, event_id: uuid.UUID, now: datetime) -> bool:
        """Note the event as handled by `consumer`; False when it already was.

        On PostgreSQL a concurrent claim of the same event waits for the first
        transaction and then finds the row, so of many simultaneous deliveries exactly
        one proceeds; SQLite serialises writers, with the same result.
        """
        statement = _CLAIM[self.session.get_bind().dialect.name]
        result = await self.session.execute(
            statement, {"consumer": consumer, "event_id": event_id, "processed_at": now}
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def purge(self, before: datetime) -> int:
        result = await self.session.execute(
            delete(InboxEntry).where(InboxEntry.processed_at < before)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
