"""Named queries over the usage ledger."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select

from promptstack.ai.llm.models import LlmCall, Outcome
from promptstack.core.repository import Repository


class LlmCallRepository(Repository[LlmCall]):
    model = LlmCall

    async def pending(self, call_id: uuid.UUID) -> LlmCall | None:
        """The call if it is still open, its row locked until commit: whoever closes it
        first (the call itself, or the sweep after a crash) is the only one to."""
        return (
            await self.session.execute(
                select(LlmCall)
                .where(LlmCall.id == call_id, LlmCall.outcome == Outcome.PENDING)
                .with_for_update()
            )
        ).scalar_one_or_none()

    async def stale(self, before: datetime, limit: int) -> list[uuid.UUID]:
        """Calls opened before `before` and never closed: left by a crash."""
        found = await self.session.scalars(
            select(LlmCall.id)
            .where(LlmCall.outcome == Outcome.PENDING, LlmCall.created_at < before)
            .order_by(LlmCall.created_at)
            .limit(limit)
        )
        return list(found)
