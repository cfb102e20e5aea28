"""The one source of the current time, injectable so tests control it instead of sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock that moves only when told to, or by `tick` at every reading.

    A small tick keeps readings distinct and ordered, as a real clock's are, while
    staying fully predictable.
    """

    def __init__(self, start: datetime | None = None, *, tick: timedelta | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._tick = tick or timedelta(0)

    def now(self) -> datetime:
        current = self._now
        self._now += self._tick
        return current

    def advance(self, delta: timedelta) -> None:
        self._now += delta
