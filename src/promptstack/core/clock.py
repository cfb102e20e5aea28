"""The one source of time, injectable so tests control it instead of sleeping.

`now()` is the wall-clock time that is stored and shown; `monotonic()` measures
durations (timeouts, time-to-live, breaker recovery, rate-limit refills), which a wall
clock set back or forward must not disturb.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never going back: for measuring durations."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class FrozenClock:
    """A clock that moves only when told to, or by `tick` at every reading.

    A small tick keeps readings distinct and ordered, as a real clock's are, while
    staying fully predictable.
    """

    def __init__(self, start: datetime | None = None, *, tick: timedelta | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._tick = tick or timedelta(0)
        self._skipped = 0.0

    def now(self) -> datetime:
        current = self._now
        self._now += self._tick
        return current

    def monotonic(self) -> float:
        """Durations go on in real time, so timeouts and recoveries still happen while a
        test waits for another process; `advance` moves them on as well."""
        return time.monotonic() + self._skipped

    def advance(self, delta: timedelta) -> None:
        self._now += delta
        self._skipped += delta.total_seconds()
