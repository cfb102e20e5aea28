"""Token-bucket rate limits, in process or shared through Redis.

A bucket holds up to `capacity` tokens and refills at `per_minute / 60` tokens a second;
each request takes one. Bursts up to the capacity pass, a sustained rate above the
refill does not.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as redis
from redis.exceptions import RedisError

from promptstack.core.logging import Throttle, get_logger
from promptstack.core.metrics import RATE_LIMIT_ERRORS
from promptstack.core.resilience import CircuitBreaker, CircuitOpen

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    # Seconds until the bucket is full again, and until the next request may pass.
    reset_after: int
    retry_after: int


@dataclass(frozen=True, slots=True)
class Quota:
    capacity: int
    per_minute: int

    @property
    def per_second(self) -> float:
        return self.per_minute / 60.0

    def decide(self, tokens_left: float, allowed: bool) -> Decision:
        missing = self.capacity - tokens_left
        return Decision(
            allowed=allowed,
            limit=self.capacity,
            remaining=max(0, math.floor(tokens_left)),
            reset_after=max(0, math.ceil(missing / self.per_second)),
            retry_after=0 if allowed else max(1, math.ceil((1 - tokens_left) / self.per_second)),
        )


class RateLimiter(Protocol):
    async def hit(self, key: str, quota: Quota) -> Decision: ...


class MemoryRateLimiter:
    """Buckets in this process: right for one process, N times too lenient for N."""

    def __init__(
        self, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._max_keys = max_keys
        self._clock = clock

    async def hit(self, key: str, quota: Quota) -> Decision:
        now = self._clock()
        tokens, stamp = self._buckets.get(key, (float(quota.capacity), now))
        tokens = min(quota.capacity, tokens + (now - stamp) * quota.per_second)
        allowed = tokens >= 1
        if allowed:
            tokens -= 1
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return quota.decide(tokens, allowed)


# Refill, take and store in one atomic step, on Redis's own clock so that processes
# whose clocks disagree still share one bucket.
_BUCKET_SCRIPT = """
local capacity = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2]) / 1000
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = capacity
  at = now
end
tokens = math.min(capacity, tokens + math.max(0, now - at) * per_ms)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / per_ms) + 1000)
return {allowed, tostring(tokens)}
"""


class RedisRateLimiter:
    """One bucket per key for every process that shares the Redis server."""

    def __init__(self, client: redis.Redis, namespace: str = "promptstack") -> None:
        self._script = client.register_script(_BUCKET_SCRIPT)
        self._prefix = f"{namespace}:ratelimit:"

    async def hit(self, key: str, quota: Quota) -> Decision:
        allowed, tokens = await self._script(
            keys=[self._prefix + key], args=[quota.capacity, quota.per_second]
        )
        return quota.decide(float(tokens), bool(int(allowed)))


class FailOpenLimiter:
    """A limiter that lets requests through when its store fails.

    Refusing every request because Redis is down would turn a cache outage into a full
    outage; a few minutes without limits is the lesser harm. Failures are counted and
    logged at most once per interval, and the breaker keeps an unreachable Redis from
    costing every request a timeout.
    """

    def __init__(
        self,
        inner: RateLimiter,
        breaker: CircuitBreaker | None = None,
        *,
        error_log_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.breaker = breaker
        self._failure_log = Throttle(error_log_interval, clock)

    async def hit(self, key: str, quota: Quota) -> Decision | None:
        async def check() -> Decision:
            return await self.inner.hit(key, quota)

        try:
            return await (self.breaker.call(check) if self.breaker else check())
        except CircuitOpen:
            RATE_LIMIT_ERRORS.inc()
            return None
        except (RedisError, OSError, TimeoutError) as exc:
            RATE_LIMIT_ERRORS.inc()
            if self._failure_log.ready():
                log.warning("rate_limit_unavailable", error=repr(exc))
            return None
