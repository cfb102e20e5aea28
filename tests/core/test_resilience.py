"""The circuit breaker, the retry policy and their composition, on a hand-moved clock.

Nothing here sleeps: the breaker reads an injected clock, the retry policy an injected
sleep that records the delays, and concurrent probes are held in flight by events.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from promptstack.bootstrap import bootstrap
from promptstack.core.clock import FrozenClock
from promptstack.core.errors import ServiceUnavailable
from promptstack.core.resilience import (
    Backoff,
    CircuitBreaker,
    CircuitOpen,
    CircuitState,
    Resilient,
    RetryPolicy,
)
from tests.conftest import make_settings

TIMEOUT = 30.0


class PaymentDeclined(Exception):
    """A business answer from a healthy dependency."""


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Script:
    """An operation that plays its outcomes in order: an exception is raised, a value returned."""

    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def __call__(self) -> object:
        outcome = self.outcomes[min(self.calls, len(self.outcomes) - 1)]
        self.calls += 1
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


class SleepRecorder:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def name() -> str:
    """A breaker name of the test's own, so the process-wide metrics start from nothing."""
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
def make_breaker(clock: ManualClock, name: str) -> Callable[..., CircuitBreaker]:
    def make(**overrides: object) -> CircuitBreaker:
        options: dict[str, object] = {
            "failure_threshold": 3,
            "recovery_timeout": TIMEOUT,
            "excluded": (PaymentDeclined,),
            "clock": clock,
        } | overrides
        return CircuitBreaker(name, **options)  # type: ignore[arg-type]

    return make


async def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        with pytest.raises(ConnectionError):
            await breaker.call(Script(ConnectionError("down")))


async def open_breaker(breaker: CircuitBreaker, clock: ManualClock) -> None:
    """Trip the breaker and let its recovery timeout pass, so the next call is a probe."""
    await fail(breaker, 3)
    clock.now += TIMEOUT


# The breaker


async def test_opens_after_threshold_consecutive_failures(
    make_breaker: Callable[..., CircuitBreaker],
) -> None:
    breaker = make_breaker()
    await fail(breaker, 2)
    assert breaker.state is CircuitState.CLOSED
    await fail(breaker, 1)
    assert breaker.state is CircuitState.OPEN


async def test_success_resets_the_consecutive_failures(
    make_breaker: Callable[..., CircuitBreaker],
) -> None:
    breaker = make_breaker()
    await fail(breaker, 2)
    await breaker.call(Script("ok"))
    await fail(breaker, 2)
    assert breaker.state is CircuitState.CLOSED


async def test_open_breaker_fails_fast_without_calling(
    make_breaker: Callable[..., CircuitBreaker], clock: ManualClock, name: str
) -> None:
    breaker = make_breaker()
    await fail(breaker, 3)
    clock.now += 10
    operation = Script("ok")
    with pytest.raises(CircuitOpen) as refused:
        await breaker.call(operation)
    assert operation.calls == 0
    error = refused.value
    assert isinstance(error, ServiceUnavailable)
    assert (error.status, error.code, error.breaker) == (503, "circuit_open", name)
    assert error.retry_after == pytest.approx(TIMEOUT - 10)
    assert error.headers["Retry-After"] == "20"


async def test_stays_open_until_the_recovery_timeout_passes(
    make_breaker: Callable[..., CircuitBreaker], clock: ManualClock
) -> None:
    breaker = make_breaker()
    await fail(breaker, 3)
    clock.now += TIMEOUT - 0.001
    with pytest.raises(CircuitOpen):
        await breaker.call(Script("ok"))
    assert breaker.state is CircuitState.OPEN


async def test_half_open_admits_at_most_the_bounded_number_of_probes(
    make_breaker: Callable[..., CircuitBreaker], clock: ManualClock
) -> None:
    breaker = make_breaker(half_open_max_calls=2)
    await open_breaker(breaker, clock)
    release = asyncio.Event()

    async def probe() -> str:
        await release.wait()
        return "ok"

    probes = [asyncio.create_task(breaker.call(probe)) for _ in range(2)]
    await asyncio.sleep(0)  # let both probes start and block
    third = Script("ok")
    with pytest.raises(CircuitOpen):
        await breaker.call(third)
    release.set()
    await asyncio.gather(*probes)
    assert third.calls == 0


async def test_probe_success_closes(
    make_breaker: Callable[..., CircuitBreaker], clock: ManualClock
) -> None:
    breaker = make_breaker()
    await open_breaker(breaker, clock)
    assert await breaker.call(Script("ok")) == "ok"
    assert breaker.state is CircuitState.CLOSED


async def test_closing_waits_for_success_threshold_probes(
    make_breaker: Callable[..., CircuitBreaker], clock: ManualClock
) -> None:
    breaker = make_breaker(success_threshold=2)
    await open_breaker(breaker, clock)
    await breaker.call(Script("ok"))
    assert breaker.state is CircuitState.HALF_OPEN
    await breaker.call(Script("ok"))
    assert breaker.state is CircuitState.CLOSED


async def test_probe_failure_reopens_with_a_fresh_timeout(
    make_breaker: Callable[..., CircuitBreaker], clock: ManualClock
) -> None:
    breaker = make_breaker()
    await open_breaker(breaker, clock)
    await fail(breaker, 1)
    assert breaker.state is CircuitState.OPEN
    assert breaker.snapshot().retry_after == pytest.approx(TIMEOUT)


async def test_cancelled_probe_frees_its_slot(
    make_breaker: Callable[..., CircuitBreaker], clock: ManualClock
) -> None:
    breaker = make_breaker()
    await open_breaker(breaker, clock)
    hung = asyncio.create_task(breaker.call(asyncio.Event().wait))
    await asyncio.sleep(0)
    hung.cancel()
    with pytest.raises(asyncio.CancelledError):
        await hung
    assert await breaker.call(Script("ok")) == "ok"


async def test_excluded_errors_pass_through_without_counting(
    make_breaker: Callable[..., CircuitBreaker],
) -> None:
    breaker = make_breaker()
    for _ in range(5):
        with pytest.raises(PaymentDeclined):
            await breaker.call(Script(PaymentDeclined()))
    assert breaker.state is CircuitState.CLOSED


async def test_excluded_error_resets_the_consecutive_failures(
    make_breaker: Callable[..., CircuitBreaker],
) -> None:
    breaker = make_breaker()
    await fail(breaker, 2)
    with pytest.raises(PaymentDeclined):
        await breaker.call(Script(PaymentDeclined()))
    await fail(breaker, 2)
    assert breaker.state is CircuitState.CLOSED


async def test_late_failure_from_before_opening_keeps_the_timeout(
    make_breaker: Callable[..., CircuitBreaker], clock: ManualClock
) -> None:
    breaker = make_breaker(failure_threshold=1)
    release = asyncio.Event()

    async def slow_failure() -> None:
        await release.wait()
        raise ConnectionError("late")

    slow = asyncio.create_task(breaker.call(slow_failure))
    await asyncio.sleep(0)
    await fail(breaker, 1)
    clock.now += 20
    release.set()
    with pytest.raises(ConnectionError):
        await slow
    assert breaker.snapshot().retry_after == pytest.approx(TIMEOUT - 20)


async def test_snapshot_describes_the_breaker(
    make_breaker: Callable[..., CircuitBreaker], name: str
) -> None:
    breaker = make_breaker()
    await fail(breaker, 2)
    snapshot = breaker.snapshot()
    assert (snapshot.name, snapshot.state, snapshot.consecutive_failures) == (
        name,
        CircuitState.CLOSED,
        2,
    )
    assert (snapshot.probes_in_flight, snapshot.retry_after) == (0, 0.0)


@pytest.mark.parametrize(
    "options",
    [
        {"failure_threshold": 0},
        {"half_open_max_calls": 0},
        {"success_threshold": 0},
        {"recovery_timeout": -1.0},
    ],
)
def test_nonsensical_settings_are_refused(
    make_breaker: Callable[..., CircuitBreaker], options: dict[str, object]
) -> None:
    with pytest.raises(ValueError, match="must"):
        make_breaker(**options)


# Metrics


def gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value("promptstack_circuit_breaker_state", {"breaker": name})


def transitions(name: str, state: str) -> float | None:
    return REGISTRY.get_sample_value(
        "promptstack_circuit_breaker_transitions_total", {"breaker": name, "state": state}
    )


async def test_state_gauge_follows_the_state(
    make_breaker: Callable[..., CircuitBreaker], clock: ManualClock, name: str
) -> None:
    breaker = make_breaker(success_threshold=2)
    readings = [gauge(name)]
    await fail(breaker, 3)
    readings.append(gauge(name))
    clock.now += TIMEOUT
    await breaker.call(Script("ok"))
    readings.append(gauge(name))
    await breaker.call(Script("ok"))
    readings.append(gauge(name))
    assert readings == [0, 2, 1, 0]


async def test_transitions_are_counted_by_target_state(
    make_breaker: Callable[..., CircuitBreaker], clock: ManualClock, name: str
) -> None:
    breaker = make_breaker()
    await open_breaker(breaker, clock)
    await fail(breaker, 1)  # the probe fails: open again
    clock.now += TIMEOUT
    await breaker.call(Script("ok"))
    counts = {state: transitions(name, state) for state in ("open", "half_open", "closed")}
    assert counts == {"open": 2, "half_open": 2, "closed": 1}


# The retry policy


async def test_transient_errors_are_retried_until_success() -> None:
    sleep = SleepRecorder()
    operation = Script(ConnectionError(), TimeoutError(), "ok")
    assert await RetryPolicy(attempts=3, sleep=sleep).call(operation) == "ok"
    assert (operation.calls, len(sleep.delays)) == (3, 2)


async def test_business_errors_are_never_retried() -> None:
    sleep = SleepRecorder()
    operation = Script(PaymentDeclined(), "ok")
    with pytest.raises(PaymentDeclined):
        await RetryPolicy(attempts=3, sleep=sleep).call(operation)
    assert (operation.calls, sleep.delays) == (1, [])


async def test_exhausted_attempts_raise_the_last_error_itself() -> None:
    last = ConnectionError("third")
    operation = Script(ConnectionError("first"), ConnectionError("second"), last)
    with pytest.raises(ConnectionError) as raised:
        await RetryPolicy(attempts=3, sleep=SleepRecorder()).call(operation)
    assert raised.value is last


async def test_delays_grow_exponentially_within_their_jitter_band() -> None:
    sleep = SleepRecorder()
    with pytest.raises(TimeoutError):
        await RetryPolicy(attempts=5, initial=1.0, maximum=100.0, sleep=sleep).call(
            Script(TimeoutError())
        )
    bands = [(backoff / 2, backoff) for backoff in (1.0, 2.0, 4.0, 8.0)]
    assert all(low <= delay <= high for delay, (low, high) in zip(sleep.delays, bands, strict=True))


async def test_delays_never_exceed_the_maximum() -> None:
    sleep = SleepRecorder()
    with pytest.raises(TimeoutError):
        await RetryPolicy(attempts=10, initial=1.0, maximum=3.0, sleep=sleep).call(
            Script(TimeoutError())
        )
    assert max(sleep.delays) <= 3.0


async def test_delays_are_jittered() -> None:
    sleep = SleepRecorder()
    policy = RetryPolicy(attempts=2, initial=1.0, maximum=1.0, sleep=sleep)
    for _ in range(10):
        await policy.call(Script(ConnectionError(), "ok"))
    assert len(set(sleep.delays)) > 1


@pytest.mark.parametrize(
    "options",
    [{"attempts": 0}, {"initial": 0.0}, {"initial": 3.0, "maximum": 2.0}],
)
def test_nonsensical_policies_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"attempts|initial"):
        RetryPolicy(**options)  # type: ignore[arg-type]


# The composition


async def test_a_retry_that_succeeds_counts_no_failure(
    make_breaker: Callable[..., CircuitBreaker],
) -> None:
    breaker = make_breaker(failure_threshold=1)
    resilient = Resilient(breaker, RetryPolicy(attempts=3, sleep=SleepRecorder()))
    assert await resilient.call(Script(ConnectionError(), ConnectionError(), "ok")) == "ok"
    assert breaker.snapshot().consecutive_failures == 0


async def test_an_exhausted_retry_counts_one_failure(
    make_breaker: Callable[..., CircuitBreaker],
) -> None:
    breaker = make_breaker()
    operation = Script(ConnectionError())
    resilient = Resilient(breaker, RetryPolicy(attempts=3, sleep=SleepRecorder()))
    with pytest.raises(ConnectionError):
        await resilient.call(operation)
    assert (operation.calls, breaker.snapshot().consecutive_failures) == (3, 1)


async def test_an_open_breaker_refuses_before_any_attempt(
    make_breaker: Callable[..., CircuitBreaker],
) -> None:
    breaker = make_breaker()
    await fail(breaker, 3)
    operation = Script("ok")
    sleep = SleepRecorder()
    with pytest.raises(CircuitOpen):
        await Resilient(breaker, RetryPolicy(sleep=sleep)).call(operation)
    assert (operation.calls, sleep.delays) == (0, [])


async def test_business_errors_pass_through_the_composition_untouched(
    make_breaker: Callable[..., CircuitBreaker],
) -> None:
    breaker = make_breaker(failure_threshold=1)
    operation = Script(PaymentDeclined())
    with pytest.raises(PaymentDeclined):
        await Resilient(breaker, RetryPolicy(sleep=SleepRecorder())).call(operation)
    assert (operation.calls, breaker.state) == (1, CircuitState.CLOSED)


def test_backoff_doubles_from_its_base_up_to_its_cap() -> None:
    backoff = Backoff(0.5, cap=3.0)
    assert [backoff.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_backoff_without_a_cap_keeps_doubling_and_never_overflows() -> None:
    backoff = Backoff(1.0)
    assert backoff.delay(11) == 1024.0
    assert backoff.delay(10_000) == 2.0**64


@pytest.mark.parametrize(("draw", "expected"), [(0.0, 2.0), (0.5, 3.0), (1.0, 4.0)])
def test_jittered_backoff_stays_between_half_and_all_of_the_delay(
    draw: float, expected: float
) -> None:
    assert Backoff(1.0, jitter=True, random=lambda: draw).delay(3) == expected


@pytest.mark.parametrize(("base", "cap"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_backoff_refuses_delays_that_cannot_grow(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="base"):
        Backoff(base, cap=cap)


def test_a_backoff_delay_follows_a_failure() -> None:
    with pytest.raises(ValueError, match="failure"):
        Backoff(1.0).delay(0)


def test_a_frozen_clock_moves_durations_on_when_advanced() -> None:
    clock = FrozenClock()
    before = clock.monotonic()
    clock.advance(timedelta(minutes=10))
    assert clock.monotonic() - before >= 600


async def test_the_composition_root_times_the_redis_breaker_by_its_clock(tmp_path: Path) -> None:
    """Durations come from the injected clock: moving it on ends an open breaker's wait."""
    clock = FrozenClock()
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path}/x.db",
        tmp_path,
        redis_url="redis://127.0.0.1:9/0",  # nothing listens there
        redis_recovery_seconds=300,
    )
    container = bootstrap(settings, clock=clock)
    try:
        breaker = container.cache.breaker
        assert breaker is not None
        for _ in range(3):
            await container.cache.get("anything")
        assert breaker.state is CircuitState.OPEN
        assert breaker.snapshot().retry_after > 290

        clock.advance(timedelta(seconds=301))

        assert breaker.snapshot().retry_after == 0
    finally:
        await container.aclose()
