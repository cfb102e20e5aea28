"""The Redis token bucket: one limit for every process, atomic under concurrency."""

from __future__ import annotations

import asyncio

from promptstack.core.cache import redis_client
from promptstack.core.metrics import RATE_LIMIT_ERRORS
from promptstack.core.rate_limit import (
    FailOpenLimiter,
    LeasedRateLimiter,
    MemoryRateLimiter,
    Quota,
    RedisRateLimiter,
)
from promptstack.core.resilience import CircuitBreaker
from tests.fixtures.redis_server import RedisServer


async def test_processes_share_one_bucket(shared_redis_url: str, cache_namespace: str) -> None:
    quota = Quota(capacity=10, per_minute=1)
    clients = [redis_client(shared_redis_url, 5.0) for _ in range(2)]
    limiters = [RedisRateLimiter(client, cache_namespace) for client in clients]
    try:
        decisions = await asyncio.gather(
            *(limiters[n % 2].hit("user:42", quota) for n in range(40))
        )
    finally:
        for client in clients:
            await client.aclose()
    assert sum(d.allowed for d in decisions) == 10
    refused = [d for d in decisions if not d.allowed]
    assert all(d.remaining == 0 and d.retry_after >= 1 for d in refused)


async def test_keys_do_not_share_buckets(shared_redis_url: str, cache_namespace: str) -> None:
    quota = Quota(capacity=1, per_minute=1)
    client = redis_client(shared_redis_url, 1.0)
    limiter = RedisRateLimiter(client, cache_namespace)
    try:
        first = await limiter.hit("ip:1", quota)
        second = await limiter.hit("ip:2", quota)
        again = await limiter.hit("ip:1", quota)
    finally:
        await client.aclose()
    assert (first.allowed, second.allowed, again.allowed) == (True, True, False)


async def test_redis_bucket_refills_at_its_rate(
    shared_redis_url: str, cache_namespace: str
) -> None:
    """The bucket's last update is moved back in Redis, as if time had passed on Redis's
    own clock: exactly the tokens that time earns come back, no more."""
    quota = Quota(capacity=3, per_minute=60)  # one token a second
    client = redis_client(shared_redis_url, 1.0)
    limiter = RedisRateLimiter(client, cache_namespace)
    key = f"{cache_namespace}:ratelimit:user:7"
    try:
        drained = [(await limiter.hit("user:7", quota)).allowed for _ in range(4)]
        seconds, micros = await client.time()
        await client.hset(key, "at", str(seconds * 1000 + micros // 1000 - 2_000))
        after_two_seconds = [(await limiter.hit("user:7", quota)).allowed for _ in range(3)]
    finally:
        await client.aclose()
    assert drained == [True, True, True, False]
    assert after_two_seconds == [True, True, False]


async def test_memory_bucket_refills_with_time() -> None:
    now = [0.0]
    limiter = MemoryRateLimiter(clock=lambda: now[0])
    quota = Quota(capacity=2, per_minute=60)
    assert [(await limiter.hit("k", quota)).allowed for _ in range(3)] == [True, True, False]
    now[0] = 1.0
    assert (await limiter.hit("k", quota)).allowed
    assert not (await limiter.hit("k", quota)).allowed


async def test_an_unreachable_redis_fails_open(redis_server: RedisServer) -> None:
    client = redis_client(redis_server.url, 0.5)
    limiter = FailOpenLimiter(
        LeasedRateLimiter(
            RedisRateLimiter(client), breaker=CircuitBreaker("redis-test", failure_threshold=1)
        )
    )
    quota = Quota(capacity=1, per_minute=1)
    try:
        assert (await limiter.hit("k", quota)) is not None
        redis_server.stop()
        errors = RATE_LIMIT_ERRORS._value.get()
        assert [await limiter.hit("k", quota) for _ in range(5)] == [None] * 5
        assert RATE_LIMIT_ERRORS._value.get() == errors + 5
    finally:
        await client.aclose()
