"""The outbox: events waiting to be published, claimed in order by the relay."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, select, update

from promptstack.core.envelope import Envelope
from promptstack.core.pagination import Page, PageRequest
from promptstack.core.repository import PagedQuery, Repository
from promptstack.core.resilience import Backoff
from promptstack.events.models import Backlog, OutboxMessage

MAX_ERROR_LENGTH = 2000
# PostgreSQL delivers a NOTIFY when its transaction commits, which wakes the relays.
OUTBOX_CHANNEL = "promptstack_outbox"


class OutboxTable:
    """The outbox as units of work write to it (`core.unit_of_work.Outbox`)."""

    channel = OUTBOX_CHANNEL

    def row(self, envelope: Envelope) -> OutboxMessage:
        return OutboxMessage.of(envelope)


def _pending() -> ColumnElement[bool]:
    return OutboxMessage.published_at.is_(None) & OutboxMessage.parked_at.is_(None)


class OutboxRepository(Repository[OutboxMessage]):
    model = OutboxMessage

    async def claim(self, limit: int, now: datetime, *, lock: bool) -> list[OutboxMessage]:
        """The next events to publish, oldest first, each aggregate's in order.

        With `lock` (PostgreSQL) the rows stay locked until the caller's transaction
        ends and concurrent relays skip them. A claimed row is dropped when an earlier
        pending event of its aggregate is not claimed with it (another relay holds it,
        or it waits for a retry), so no relay ever overtakes another within an aggregate.
        """
        query = (
            select(OutboxMessage)
            .where(_pending(), OutboxMessage.available_at <= now)
            .order_by(OutboxMessage.position)
            .limit(limit)
        )
        if lock:
            query = query.with_for_update(skip_locked=True)
        rows = list((await self.session.scalars(query)).all())
        if not rows:
            return rows
        claimed = {row.position for row in rows}
        last = max(claimed)
        earlier = await self.session.execute(
            select(OutboxMessage.aggregate_id, OutboxMessage.position)
            .where(
                _pending(),
                OutboxMessage.aggregate_id.in_({row.aggregate_id for row in rows}),
                OutboxMessage.position <= last,
            )
            .order_by(OutboxMessage.position)
        )
        positions: dict[str, list[int]] = defaultdict(list)
        for aggregate_id, position in earlier:
            positions[aggregate_id].append(position)
        keep: set[int] = set()
        for sequence in positions.values():
            for position in sequence:
                if position not in claimed:
                    break
                keep.add(position)
        return [row for row in rows if row.position in keep]

    async def mark_published(self, positions: Sequence[int], now: datetime) -> None:
        if positions:
            await self.session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.position.in_(positions))
                .values(published_at=now)
            )

    async def record_failure(
        self,
        position: int,
        error: str,
        now: datetime,
        *,
        max_attempts: int,
        base_delay: float,
        max_delay: float,
    ) -> bool:
        """Count a failed attempt; retry later with a doubling delay, or park the event
        once it has failed `max_attempts` times. True when it was parked."""
        attempts = await self.session.scalar(
            select(OutboxMessage.attempts).where(OutboxMessage.position == position)
        )
        if attempts is None:
            return False
        attempts += 1
        parked = attempts >= max_attempts
        delay = Backoff(base_delay, cap=max(base_delay, max_delay)).delay(attempts)
        await self.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.position == position)
            .values(
                attempts=attempts,
                last_error=error[:MAX_ERROR_LENGTH],
                available_at=now + timedelta(seconds=delay),
                parked_at=now if parked else None,
            )
        )
        return parked

    async def parked(self, request: PageRequest) -> Page[OutboxMessage]:
        query = select(OutboxMessage).where(OutboxMessage.parked_at.is_not(None))
        listing = PagedQuery(query, at=OutboxMessage.parked_at, id_=OutboxMessage.id)  # type: ignore[arg-type]
        return await self.page(listing, request)

    async def replay(self, event_id: uuid.UUID, now: datetime) -> bool:
        """Put a parked event back in line; False when there is no such parked event."""
        result = await self.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == event_id, OutboxMessage.parked_at.is_not(None))
            .values(parked_at=None, attempts=0, available_at=now)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def backlog(self) -> Backlog:
        pending, oldest = (
            await self.session.execute(
                select(func.count(), func.min(OutboxMessage.occurred_at)).where(_pending())
            )
        ).one()
        parked = await self.session.scalar(
            select(func.count()).where(OutboxMessage.parked_at.is_not(None))
        )
        return Backlog(pending=int(pending), oldest=oldest, parked=int(parked or 0))

    async def purge_published(self, before: datetime) -> int:
        result = await self.session.execute(
            delete(OutboxMessage).where(OutboxMessage.published_at < before)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
