"""Leased rate-limit tokens: fewer calls to Redis, and exactly the inexactness stated.

Each limiter below stands for one process: its own Redis client and its own leases,
sharing one bucket in Redis. The bounds asserted are the ones `LeasedRateLimiter`'s
docstring and the README state, for N processes and a lease of L.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import pytest
import redis.asyncio as redis

from promptstack.core.cache import redis_client
from promptstack.core.rate_limit import (
    LEASE_SHARE,
    FailOpenLimiter,
    Grant,
    LeasedRateLimiter,
    Quota,
    RedisRateLimiter,
)
from promptstack.core.resilience import CircuitBreaker, CircuitState
from tests.fixtures.redis_server import RedisServer

LEASE = 10


class CountingBucket(RedisRateLimiter):
    """The real Redis bucket, counting the calls made to it."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        super().__init__(client, namespace)
        self.calls = 0
        self.granted = 0

    async def take(self, key: str, quota: Quota, *, want: int = 1, give_back: int = 0) -> Grant:
        self.calls += 1
        grant = await super().take(key, quota, want=want, give_back=give_back)
        self.granted += grant.granted
        return grant


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Processes(Protocol):
    def __call__(
        self, n: int, clock: Callable[[], float] | None = None
    ) -> list[tuple[LeasedRateLimiter, CountingBucket]]: ...


@pytest.fixture
async def processes(shared_redis_url: str, cache_namespace: str) -> AsyncIterator[Processes]:
    clients: list[redis.Redis] = []

    def make(
        n: int, clock: Callable[[], float] | None = None
    ) -> list[tuple[LeasedRateLimiter, CountingBucket]]:
        made = []
        for _ in range(n):
            client = redis_client(shared_redis_url, 5.0)
            clients.append(client)
            bucket = CountingBucket(client, cache_namespace)
            limiter = LeasedRateLimiter(bucket, clock=clock or Clock())
            made.append((limiter, bucket))
        return made

    yield make
    for client in clients:
        await client.aclose()


def quota(capacity: int) -> Quota:
    # One token a minute: no refill worth a token happens while a test runs.
    return Quota(capacity=capacity, per_minute=1, lease=LEASE)


async def test_a_lease_spares_redis_all_but_one_call_in_ten(processes: Processes) -> None:
    [(limiter, bucket)] = processes(1)
    decisions = [await limiter.hit("user:1", quota(1000)) for _ in range(100)]
    assert all(d.allowed for d in decisions)
    assert bucket.calls == 100 // LEASE
    remaining = [d.remaining for d in decisions]
    assert remaining == sorted(remaining, reverse=True)
    assert remaining[-1] == 900


async def test_processes_racing_never_admit_more_than_the_bucket(processes: Processes) -> None:
    """Four processes, a hundred concurrent requests each, for a bucket of 200."""
    capacity, n = 200, 4
    limiters = processes(n)
    decisions = await asyncio.gather(
        *(limiters[i % n][0].hit("user:2", quota(capacity)) for i in range(400))
    )
    admitted = sum(d.allowed for d in decisions)
    assert capacity - n * LEASE <= admitted <= capacity
    assert sum(bucket.calls for _, bucket in limiters) < 400


async def test_a_process_holds_at_most_one_lease_of_unspent_tokens(
    processes: Processes,
) -> None:
    """A hundred requests at once outnumber one lease: those left over after the
    first refill ask Redis for their own token only, never for a lease each."""
    [(limiter, bucket)] = processes(1)
    decisions = await asyncio.gather(*(limiter.hit("user:8", quota(1000)) for _ in range(100)))
    admitted = sum(d.allowed for d in decisions)
    assert admitted == 100
    assert admitted <= bucket.granted <= admitted + LEASE - 1


async def test_a_bucket_close_to_empty_is_spent_exactly(processes: Processes) -> None:
    """Below 2 x LEASE_SHARE tokens every grant is one token: two processes alternating
    get exactly the bucket between them, none refused early."""
    capacity = 2 * LEASE_SHARE - 1
    (a, _), (b, _) = processes(2)
    answers = [
        (await (a if i % 2 else b).hit("user:3", quota(capacity))).allowed
        for i in range(2 * capacity)
    ]
    assert answers == [True] * capacity + [False] * capacity


async def test_tokens_leased_elsewhere_are_refused_then_given_back(
    processes: Processes,
) -> None:
    """The stated cost: B is refused while A holds unspent tokens. Once A's lease
    expires, A's next request gives them back, and B gets them."""
    capacity = 200
    clock = Clock()
    (a, _), (b, _) = processes(2, clock)
    assert (await a.hit("user:4", quota(capacity))).allowed  # A now holds LEASE - 1
    admitted_b = 0
    while (await b.hit("user:4", quota(capacity))).allowed:
        admitted_b += 1
    assert admitted_b == capacity - LEASE

    clock.now += 1.5  # past A's lease
    assert (await a.hit("user:4", quota(capacity))).allowed
    while (await b.hit("user:4", quota(capacity))).allowed:
        admitted_b += 1
    assert 1 + admitted_b + 1 == capacity


async def test_exact_quotas_ask_redis_every_time(processes: Processes) -> None:
    [(limiter, bucket)] = processes(1)
    exact = Quota(capacity=1000, per_minute=1)
    for _ in range(5):
        assert (await limiter.hit("ip:5", exact)).allowed
    assert bucket.calls == 5


async def test_concurrent_requests_wait_for_one_refill(processes: Processes) -> None:
    [(limiter, bucket)] = processes(1)
    decisions = await asyncio.gather(*(limiter.hit("user:6", quota(1000)) for _ in range(LEASE)))
    assert all(d.allowed for d in decisions)
    assert bucket.calls == 1


async def test_a_lease_is_spent_through_an_outage_then_the_limiter_fails_open(
    redis_server: RedisServer, cache_namespace: str
) -> None:
    client = redis_client(redis_server.url, 0.5)
    breaker = CircuitBreaker("redis-leases", failure_threshold=3)
    limiter = FailOpenLimiter(
        LeasedRateLimiter(RedisRateLimiter(client, cache_namespace), breaker=breaker)
    )
    try:
        first = await limiter.hit("user:7", quota(1000))
        assert first is not None
        assert first.allowed
        redis_server.stop()
        from_lease = [await limiter.hit("user:7", quota(1000)) for _ in range(LEASE - 1)]
        assert all(d is not None and d.allowed for d in from_lease)
        assert [await limiter.hit("user:7", quota(1000)) for _ in range(3)] == [None] * 3
    finally:
        await client.aclose()
    assert breaker.state is CircuitState.OPEN


async def test_spending_a_lease_does_not_count_as_redis_answering(
    redis_server: RedisServer, cache_namespace: str
) -> None:
    """Failures of other keys' calls add up to an open breaker even while one key's
    lease is being spent between them."""
    client = redis_client(redis_server.url, 0.5)
    breaker = CircuitBreaker("redis-leases", failure_threshold=2)
    limiter = FailOpenLimiter(
        LeasedRateLimiter(RedisRateLimiter(client, cache_namespace), breaker=breaker)
    )
    try:
        assert await limiter.hit("user:held", quota(1000)) is not None
        redis_server.stop()
        assert await limiter.hit("user:b", quota(1000)) is None
        assert await limiter.hit("user:held", quota(1000)) is not None  # from its lease
        assert await limiter.hit("user:c", quota(1000)) is None
    finally:
        await client.aclose()
    assert breaker.state is CircuitState.OPEN
