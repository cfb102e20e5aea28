"""What the usage ledger says: a caller's own use, and everyone's for administrators."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from promptstack.accounts.models import UserSnapshot
from promptstack.ai.llm.models import LlmCall
from promptstack.ai.llm.repository import UsageQueries
from promptstack.core.clock import Clock
from promptstack.core.errors import ValidationFailed
from promptstack.core.pagination import Page, PageRequest
from promptstack.core.unit_of_work import UnitOfWorkFactory

DEFAULT_WINDOW = timedelta(days=30)
MAX_WINDOW = timedelta(days=366)
TOP_USERS = 100


@dataclass(frozen=True, slots=True)
class Sums:
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_micros: int
    credits_charged: int

    @classmethod
    def of(cls, row: Any) -> Sums:
        return cls(
            int(row.calls),
            int(row.prompt_tokens),
            int(row.completion_tokens),
            int(row.cost_micros),
            int(row.credits_charged),
        )

    def __add__(self, other: Sums) -> Sums:
        return Sums(
            self.calls + other.calls,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cost_micros + other.cost_micros,
            self.credits_charged + other.credits_charged,
        )


NOTHING = Sums(0, 0, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class DayUse:
    day: date
    provider: str
    model: str
    sums: Sums


@dataclass(frozen=True, slots=True)
class MyUsage:
    since: datetime
    until: datetime | None
    totals: Sums
    by_day: tuple[DayUse, ...]
    calls: Page[LlmCall]


@dataclass(frozen=True, slots=True)
class UserUse:
    user_id: uuid.UUID
    sums: Sums


@dataclass(frozen=True, slots=True)
class ModelUse:
    provider: str
    model: str
    sums: Sums


@dataclass(frozen=True, slots=True)
class EveryonesUsage:
    since: datetime
    until: datetime | None
    totals: Sums
    by_user: tuple[UserUse, ...]
    by_model: tuple[ModelUse, ...]


class UsageReports:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self.uow = uow
        self.clock = clock

    def window(
        self, since: datetime | None, until: datetime | None
    ) -> tuple[datetime, datetime | None]:
        """[since, until), at most 366 days long; `until` None is up to now. By default
        the 30 days before `until`, or without one, this UTC day and the 29 before it
        (so the same request gives the same window all day)."""
        end = until or self.clock.now()
        if since is None:
            if until is None:
                today = datetime.combine(end.astimezone(UTC).date(), time(), UTC)
                since = today - (DEFAULT_WINDOW - timedelta(days=1))
            else:
                since = until - DEFAULT_WINDOW
        if since >= end:
            raise ValidationFailed("must be before until", loc=("query", "since"))
        if end - since > MAX_WINDOW:
            raise ValidationFailed("the window may span 366 days at most", loc=("query", "since"))
        return since, until

    async def mine(
        self, user: UserSnapshot, since: datetime | None, until: datetime | None, page: PageRequest
    ) -> MyUsage:
        """The caller's totals by day and model over the window, and a page of its calls
        (newest first, whatever the window)."""
        since, until = self.window(since, until)
        async with self.uow(read_only=True) as uow:
            queries = UsageQueries.of(uow)
            rows = await queries.by_day(user.id, since, until)
            calls = await queries.calls(user.id, page)
        days = tuple(
            DayUse(_as_date(row.day), row.provider, row.model, Sums.of(row)) for row in rows
        )
        totals = sum((day.sums for day in days), NOTHING)
        return MyUsage(since, until, totals, days, calls)

    async def everyone(self, since: datetime | None, until: datetime | None) -> EveryonesUsage:
        """Per model, and for the users who spent most, over the window (administrators)."""
        since, until = self.window(since, until)
        async with self.uow(read_only=True) as uow:
            queries = UsageQueries.of(uow)
            users = await queries.by_user(since, until, TOP_USERS)
            models = await queries.by_model(since, until)
        by_model = tuple(ModelUse(row.provider, row.model, Sums.of(row)) for row in models)
        return EveryonesUsage(
            since,
            until,
            sum((model.sums for model in by_model), NOTHING),
            tuple(UserUse(row.user_id, Sums.of(row)) for row in users),
            by_model,
        )


def _as_date(value: object) -> date:
    """PostgreSQL answers a date, SQLite the text of one."""
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))
