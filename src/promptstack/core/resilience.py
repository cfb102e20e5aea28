"""Resilience for outbound calls: a circuit breaker, a retry policy, and their composition.

A dependency that is down should cost its callers one quick 503, not a queue of requests
each waiting for its own timeout; a dependency that blips should cost nothing at all. The
breaker gives the first, the retry policy the second. They compose one way only: the
retry runs inside the breaker (`Resilient`), so the breaker sees one outcome per retried
call and never counts a failure that a retry went on to fix.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from random import random as random_fraction
from typing import TypeVar

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

from promptstack.core.errors import ServiceUnavailable
from promptstack.core.logging import get_logger
from promptstack.core.metrics import CIRCUIT_STATE, CIRCUIT_TRANSITIONS

T = TypeVar("T")

log = get_logger(__name__)


class CircuitState(StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


# The values CIRCUIT_STATE documents; ordered by severity so `max` across processes
# reports the worst state of any worker.
_GAUGE_VALUE = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}


class CircuitOpen(ServiceUnavailable):
    """The breaker refused the call without making it.

    A 503 rather than a 502: the dependency was not asked, so there is no bad answer to
    report, only an unavailability with a known horizon, which `Retry-After` passes on.
    """

    code = "circuit_open"
    title = "A service this request needs is unavailable"

    def __init__(self, breaker: str, *, retry_after: float) -> None:
        self.breaker = breaker
        self.retry_after = max(0.0, retry_after)
        super().__init__(
            f"Calls to {breaker} are suspended after repeated failures.",
            headers={"Retry-After": str(max(1, math.ceil(self.retry_after)))},
            extra={"breaker": breaker},
        )


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """What a health or diagnostics endpoint shows of a breaker, read at one instant.

    `retry_after` is the time left before an open breaker admits a probe; 0 when it is
    not open or the wait is over (the breaker moves to half-open on its next call, since
    it keeps no timer of its own).
    """

    name: str
    state: CircuitState
    consecutive_failures: int
    probes_in_flight: int
    retry_after: float


class CircuitBreaker:
    """A circuit breaker for one dependency, used from one event loop.

    Written by hand: no maintained package fits asyncio. purgatory (asyncio-native) reads
    `time.time()` directly, so tests would have to sleep or patch, and lets every call
    through while half-open; pybreaker's async path is Tornado, guarded by a threading
    lock, with a wall-clock timer; circuitbreaker has no state hooks, no probe bound and
    a module-level clock; aiobreaker and aiocircuitbreaker are unmaintained since
    2021 and 2022.

    States: *closed* lets calls through and counts consecutive failures; after
    `failure_threshold` of them it *opens*. Open refuses calls with `CircuitOpen` until
    `recovery_timeout` seconds have passed on `clock`, then the next call turns it
    *half-open*: at most `half_open_max_calls` probes run at once (others are refused),
    `success_threshold` probe successes close it, and one probe failure opens it again
    with a fresh timeout.

    A failure is any `Exception` not listed in `excluded`. An excluded error (a declined
    payment, a refused prompt) is an answer from a healthy dependency, so it passes
    through and counts as a success: it resets the failure count and can close a
    half-open breaker. Cancellation counts as neither; it only frees the probe slot.

    An outcome counts only in the state its call was admitted in: a slow call admitted
    while closed that fails after the breaker opened does not push the timeout back, and
    one that succeeds after the breaker went half-open is not taken for a probe.

    No state change spans an await, so asyncio's single thread makes each one atomic
    without a lock; for the same reason one breaker must not be shared across threads or
    event loops.
    """

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        recovery_timeout: float = 30.0,
        half_open_max_calls: int = 1,
        success_threshold: int = 1,
        excluded: tuple[type[Exception], ...] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or half_open_max_calls < 1 or success_threshold < 1:
            raise ValueError("thresholds and the probe bound must be at least 1")
        if recovery_timeout < 0:
            raise ValueError("recovery_timeout must not be negative")
        self.name = name
        self._failure_threshold = failure_threshold
        self._recovery_timeout = recovery_timeout
        self._half_open_max_calls = half_open_max_calls
        self._success_threshold = success_threshold
        self._excluded = excluded
        self._clock = clock
        self._state = CircuitState.CLOSED
        # Moves at every transition; a call carries the value it was admitted under.
        self._generation = 0
        self._consecutive_failures = 0
        self._probes_in_flight = 0
        self._probe_successes = 0
        self._opened_at = 0.0
        self._on_close: list[Callable[[], None]] = []
        CIRCUIT_STATE.labels(breaker=name).set(_GAUGE_VALUE[CircuitState.CLOSED])

    @property
    def state(self) -> CircuitState:
        return self._state

    def on_close(self, listener: Callable[[], None]) -> None:
        """Call `listener` whenever the breaker closes after an outage.

        Several components may share one breaker (the cache and the rate limiter share
        Redis's); whichever call closes it, every one of them learns the dependency is
        back, and can catch up on what it could not do meanwhile.
        """
        self._on_close.append(listener)

    def snapshot(self) -> BreakerSnapshot:
        return BreakerSnapshot(
            name=self.name,
            state=self._state,
            consecutive_failures=self._consecutive_failures,
            probes_in_flight=self._probes_in_flight,
            retry_after=self._open_remaining() if self._state is CircuitState.OPEN else 0.0,
        )

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run `operation` if the breaker admits it, and record how it ended.

        Raises `CircuitOpen` without calling `operation` when the breaker is open, or
        half-open with every probe slot taken; otherwise returns or raises as
        `operation` does.
        """
        generation = self._admit()
        try:
            result = await operation()
        except self._excluded:
            self._record(generation, failed=False)
            raise
        except Exception:
            self._record(generation, failed=True)
            raise
        except BaseException:
            self._release_probe(generation)
            raise
        self._record(generation, failed=False)
        return result

    def _open_remaining(self) -> float:
        return max(0.0, self._opened_at + self._recovery_timeout - self._clock())

    def _admit(self) -> int:
        if self._state is CircuitState.OPEN:
            remaining = self._open_remaining()
            if remaining > 0:
                raise CircuitOpen(self.name, retry_after=remaining)
            self._transition(CircuitState.HALF_OPEN)
        if self._state is CircuitState.HALF_OPEN:
            if self._probes_in_flight >= self._half_open_max_calls:
                # The probes in flight decide soon; there is no better horizon to give.
                raise CircuitOpen(self.name, retry_after=0.0)
            self._probes_in_flight += 1
        return self._generation

    def _record(self, generation: int, *, failed: bool) -> None:
        if generation != self._generation:
            return
        if self._state is CircuitState.HALF_OPEN:
            self._probes_in_flight -= 1
            if failed:
                self._transition(CircuitState.OPEN)
                return
            self._probe_successes += 1
            if self._probe_successes >= self._success_threshold:
                self._transition(CircuitState.CLOSED)
        elif failed:
            self._consecutive_failures += 1
            if self._consecutive_failures >= self._failure_threshold:
                self._transition(CircuitState.OPEN)
        else:
            self._consecutive_failures = 0

    def _release_probe(self, generation: int) -> None:
        if generation == self._generation and self._state is CircuitState.HALF_OPEN:
            self._probes_in_flight -= 1

    def _transition(self, state: CircuitState) -> None:
        self._state = state
        self._generation += 1
        self._consecutive_failures = 0
        self._probes_in_flight = 0
        self._probe_successes = 0
        if state is CircuitState.OPEN:
            self._opened_at = self._clock()
        CIRCUIT_STATE.labels(breaker=self.name).set(_GAUGE_VALUE[state])
        CIRCUIT_TRANSITIONS.labels(breaker=self.name, state=state.value).inc()
        level = log.warning if state is CircuitState.OPEN else log.info
        level("circuit_breaker_transition", breaker=self.name, state=state.value)
        if state is CircuitState.CLOSED:
            for listener in self._on_close:
                try:
                    listener()
                except Exception:
                    log.exception("circuit_breaker_listener_failed", breaker=self.name)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential delays, the one way this code base waits longer after each failure.

    The delay after failure n (n >= 1) is d = min(base * 2**(n-1), cap); with `jitter`
    it is drawn from [d/2, d] ("equal jitter"): random enough that callers who failed
    together do not retry together, never shorter than half the backoff, so the delays
    still grow until the cap. `random` is injectable so tests can pin the draw.
    """

    base: float
    cap: float = math.inf
    jitter: bool = False
    random: Callable[[], float] = random_fraction

    def __post_init__(self) -> None:
        if not 0 < self.base <= self.cap:
            raise ValueError("delays need 0 < base <= cap")

    def delay(self, failures: int) -> float:
        """Seconds to wait after the `failures`th failure in a row."""
        if failures < 1:
            raise ValueError("a delay follows at least one failure")
        # Past 2**64 every sensible cap has long been reached; avoid overflowing a float.
        delay = min(self.base * 2.0 ** min(failures - 1, 64), self.cap)
        return delay / 2 + self.random() * delay / 2 if self.jitter else delay


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries of transient errors, with exponential backoff and jitter (tenacity).

    Only the exception types in `retry_on` are retried; everything else, business errors
    first of all, propagates at once. After `attempts` tries the last error propagates
    as itself, not wrapped, so callers catch the same types with or without retries.

    The delay before retry n is a jittered `Backoff(initial, maximum)`: drawn from
    [d/2, d] with d = min(initial * 2**(n-1), maximum). `sleep` is injectable so tests
    record delays instead of waiting them out.
    """

    attempts: int = 3
    initial: float = 0.1
    maximum: float = 2.0
    retry_on: tuple[type[Exception], ...] = (ConnectionError, TimeoutError)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if not 0 < self.initial <= self.maximum:
            raise ValueError("delays need 0 < initial <= maximum")

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        backoff = Backoff(self.initial, self.maximum, jitter=True)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=lambda state: backoff.delay(state.attempt_number),
            retry=retry_if_exception_type(self.retry_on),
            sleep=self.sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await operation()
        raise AssertionError("unreachable: tenacity returns or re-raises within the loop")


@dataclass(frozen=True, slots=True)
class Resilient:
    """A breaker around a retry policy: one collaborator for a service's outbound calls.

    The order matters. With the retry inside, the breaker records one outcome per
    retried call: a blip the retry fixes counts as a success, and only a call that
    failed every attempt counts as a failure. An open breaker refuses before any attempt,
    so a dependency known to be down costs no retries either.
    """

    breaker: CircuitBreaker
    retry: RetryPolicy

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        async def retried() -> T:
            return await self.retry.call(operation)

        return await self.breaker.call(retried)
