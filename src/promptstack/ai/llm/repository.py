"""Named queries over the usage ledger."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Result, Row, bindparam, func, select

from promptstack.ai.llm.models import LlmCall, Outcome
from promptstack.core.pagination import Page, PageRequest
from promptstack.core.repository import PagedQuery, Repository


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


def _day(dialect: str) -> ColumnElement[Any]:
    """The UTC calendar day of a call: SQLite keeps the UTC text, PostgreSQL a timestamp
    with a time zone, read here in UTC whatever the session's zone."""
    if dialect == "postgresql":
        return func.date(func.timezone("UTC", LlmCall.created_at))
    return func.date(LlmCall.created_at)


_SUMS = (
    func.count().label("calls"),
    func.coalesce(func.sum(LlmCall.prompt_tokens), 0).label("prompt_tokens"),
    func.coalesce(func.sum(LlmCall.completion_tokens), 0).label("completion_tokens"),
    func.coalesce(func.sum(LlmCall.cost_micros), 0).label("cost_micros"),
    func.coalesce(func.sum(LlmCall.credits_charged), 0).label("credits_charged"),
)
_SHOWN = select(LlmCall).where(LlmCall.user_id == bindparam("user_id"))
_CALLS = PagedQuery(_SHOWN, at=LlmCall.created_at, id_=LlmCall.id, newest_first=True)


class UsageQueries(Repository[LlmCall]):
    """Sums and pages of the usage ledger, for its reports."""

    model = LlmCall

    def _window(self, since: datetime, until: datetime | None) -> tuple[ColumnElement[bool], ...]:
        if until is None:
            return (LlmCall.created_at >= since,)
        return (LlmCall.created_at >= since, LlmCall.created_at < until)

    async def by_day(
        self, user_id: uuid.UUID, since: datetime, until: datetime | None
    ) -> list[Row[Any]]:
        """One row per day, provider and model: (day, provider, model, the sums)."""
        day = _day(self.session.get_bind().dialect.name).label("day")
        query = (
            select(day, LlmCall.provider, LlmCall.model, *_SUMS)
            .where(LlmCall.user_id == user_id, *self._window(since, until))
            .group_by(day, LlmCall.provider, LlmCall.model)
            .order_by(day, LlmCall.provider, LlmCall.model)
        )
        return list((await self.session.execute(query)).all())

    async def calls(self, user_id: uuid.UUID, request: PageRequest) -> Page[LlmCall]:
        return await self.page(_CALLS, request, {"user_id": user_id})

    async def by_user(self, since: datetime, until: datetime | None, limit: int) -> list[Row[Any]]:
        """The users who spent most, dearest first: (user_id, the sums)."""
        cost = func.coalesce(func.sum(LlmCall.cost_micros), 0)
        query = (
            select(LlmCall.user_id, *_SUMS)
            .where(*self._window(since, until))
            .group_by(LlmCall.user_id)
            .order_by(cost.desc(), LlmCall.user_id)
            .limit(limit)
        )
        result: Result[Any] = await self.session.execute(query)
        return list(result.all())

    async def by_model(self, since: datetime, until: datetime | None) -> list[Row[Any]]:
        query = (
            select(LlmCall.provider, LlmCall.model, *_SUMS)
            .where(*self._window(since, until))
            .group_by(LlmCall.provider, LlmCall.model)
            .order_by(LlmCall.provider, LlmCall.model)
        )
        result: Result[Any] = await self.session.execute(query)
        return list(result.all())
