"""Token-bucket rate limits, in process or shared through Redis.

A bucket holds up to `capacity` tokens and refills at `per_minute / 60` tokens a second;
each request takes one. Bursts up to the capacity pass, a sustained rate above the
refill does not.

Shared buckets live in Redis. A process may take a caller's tokens a few at a time
(a lease, `Quota.lease`) and spend them without asking Redis again; `LeasedRateLimiter`
states what that costs in exactness.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import redis.asyncio as redis
from redis.exceptions import RedisError

from promptstack.core.logging import Throttle, get_logger
from promptstack.core.metrics import RATE_LIMIT_ERRORS
from promptstack.core.resilience import CircuitBreaker, CircuitOpen

log = get_logger(__name__)

T = TypeVar("T")


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
    # The most tokens a process may take from a shared bucket at once; 1 is exact.
    lease: int = 1

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


# Refill, take back a returned lease, grant and store in one atomic step, on Redis's own
# clock so that processes whose clocks disagree still share one bucket. A grant is at
# most the lease asked for and at most 1/LEASE_SHARE of the tokens left (at least one
# when one is left), so a bucket close to empty is spent one token per call.
_BUCKET_SCRIPT = """
local capacity = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2]) / 1000
local want = tonumber(ARGV[3])
local give_back = tonumber(ARGV[4])
local share = tonumber(ARGV[5])
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = capacity
  at = now
end
tokens = math.min(capacity, tokens + math.max(0, now - at) * per_ms + give_back)
local granted = 0
if tokens >= 1 then
  granted = math.max(1, math.min(want, math.floor(tokens / share)))
  tokens = tokens - granted
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / per_ms) + 1000)
return {granted, tostring(tokens)}
"""

LEASE_SHARE = 8


@dataclass(frozen=True, slots=True)
class Grant:
    """Tokens taken from a shared bucket, and the tokens it holds after the taking."""

    granted: int
    tokens_left: float


class RedisRateLimiter:
    """One bucket per key for every process that shares the Redis server."""

    def __init__(self, client: redis.Redis, namespace: str = "promptstack") -> None:
        self._script = client.register_script(_BUCKET_SCRIPT)
        self._prefix = f"{namespace}:ratelimit:"

    async def take(self, key: str, quota: Quota, *, want: int = 1, give_back: int = 0) -> Grant:
        granted, tokens = await self._script(
            keys=[self._prefix + key],
            args=[quota.capacity, quota.per_second, want, give_back, LEASE_SHARE],
        )
        return Grant(int(granted), float(tokens))

    async def hit(self, key: str, quota: Quota) -> Decision:
        grant = await self.take(key, quota)
        return quota.decide(grant.tokens_left, grant.granted == 1)


@dataclass(slots=True)
class _Lease:
    tokens: int = 0
    expires: float = 0.0
    # What the shared bucket held after this lease was taken, for the answer's headers.
    bucket_left: float = 0.0
    # The call to Redis in flight for this key; others wait for it instead of calling too.
    refill: asyncio.Future[BaseException | None] | None = field(default=None, repr=False)


class LeasedRateLimiter:
    """A shared Redis bucket, spent from short leases held in this process.

    With `Quota.lease` above 1, a request that finds no tokens here takes up to that many
    from Redis in one call (one call at a time per key; concurrent requests wait for it)
    and the next requests spend them locally, so Redis sees about one call per lease.
    Tokens left when a lease expires (`lease_seconds`) are given back with the next call.

    What this gives up, with N processes and a lease of L: no window ever admits more
    than the exact bucket would plus the tokens already leased at its start (at most
    N x L); a request may be refused while up to (N - 1) x L tokens sit in other
    processes' leases, until they are spent or given back; and `RateLimit-Remaining` is
    the bucket's level when this process last asked, less what it spent since. A grant is
    at most 1/LEASE_SHARE of what the bucket holds, so once fewer than 2 x LEASE_SHARE
    tokens are left every request asks Redis and the limit is exact again. The breaker
    guards only the calls to Redis: spending a lease is not evidence that Redis answers.
    """

    def __init__(
        self,
        bucket: RedisRateLimiter,
        *,
        breaker: CircuitBreaker | None = None,
        lease_seconds: float = 1.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bucket = bucket
        self._breaker = breaker
        self._lease_seconds = lease_seconds
        self._max_keys = max_keys
        self._clock = clock
        self._leases: OrderedDict[str, _Lease] = OrderedDict()

    async def hit(self, key: str, quota: Quota) -> Decision:
        want = max(1, min(quota.lease, quota.capacity))
        if want == 1:
            return await self._guarded(lambda: self._bucket.hit(key, quota))
        lease = self._lease(key)
        if not self._spendable(lease) and lease.refill is not None:
            error = await asyncio.shield(lease.refill)
            if error is not None:
                raise error
        if self._spendable(lease):
            lease.tokens -= 1
            return quota.decide(lease.bucket_left + lease.tokens, True)
        return await self._refill(lease, key, quota, want)

    def _spendable(self, lease: _Lease) -> bool:
        return lease.tokens > 0 and self._clock() < lease.expires

    def _lease(self, key: str) -> _Lease:
        lease = self._leases.get(key)
        if lease is None:
            lease = self._leases[key] = _Lease()
            while len(self._leases) > self._max_keys:
                self._leases.popitem(last=False)
        else:
            self._leases.move_to_end(key)
        return lease

    async def _refill(self, lease: _Lease, key: str, quota: Quota, want: int) -> Decision:
        """Take a lease from Redis, giving back what an expired one left unspent.

        Only the first of concurrent refills is waited for and takes a lease; a request
        that finds the lease spent again after waiting calls Redis itself rather than
        queueing, for its own token only, so that one process never holds more than one
        lease's worth of unspent tokens per key.
        """
        give_back, lease.tokens = lease.tokens, 0
        done = None
        if lease.refill is None:
            done = lease.refill = asyncio.get_running_loop().create_future()
        else:
            want = 1
        outcome: BaseException | None = None
        try:
            grant = await self._guarded(
                lambda: self._bucket.take(key, quota, want=want, give_back=give_back)
            )
        except Exception as exc:
            outcome = exc
            raise
        finally:
            if done is not None:
                lease.refill = None
                done.set_result(outcome)
        if grant.granted:
            lease.tokens += grant.granted
            lease.expires = self._clock() + self._lease_seconds
            lease.bucket_left = grant.tokens_left
        if self._spendable(lease):
            lease.tokens -= 1
            return quota.decide(lease.bucket_left + lease.tokens, True)
        return quota.decide(grant.tokens_left, False)

    async def _guarded(self, call: Callable[[], Awaitable[T]]) -> T:
        return await (self._breaker.call(call) if self._breaker else call())


class FailOpenLimiter:
    """A limiter that lets requests through when its store fails.

    Refusing every request because Redis is down would turn a cache outage into a full
    outage; a few minutes without limits is the lesser harm. Failures are counted and
    logged at most once per interval; the breaker of `LeasedRateLimiter` keeps an
    unreachable Redis from costing every request a timeout.
    """

    def __init__(
        self,
        inner: RateLimiter,
        *,
        error_log_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self._failure_log = Throttle(error_log_interval, clock)

    async def hit(self, key: str, quota: Quota) -> Decision | None:
        try:
            return await self.inner.hit(key, quota)
        except CircuitOpen:
            RATE_LIMIT_ERRORS.inc()
            return None
        except (RedisError, OSError, TimeoutError) as exc:
            RATE_LIMIT_ERRORS.inc()
            if self._failure_log.ready():
                log.warning("rate_limit_unavailable", error=repr(exc))
            return None
