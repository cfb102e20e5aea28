"""Per-user limits of the LLM gateway: requests and tokens per minute, tokens per day.

A call takes from all three at once or from none: one request and the most tokens it
can use (its prompt and `max_tokens`, as its credit hold counts them). What it did not
use is given back when it ends. The per-minute limits are token buckets (capacity: a
minute's worth); the daily one counts each UTC day. With Redis the three live there and
one script checks and takes them together, so the limits hold across every process; a
Redis that fails lets calls through (credits still bound what they can spend) and is
logged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal, Protocol

import redis.asyncio as redis
from redis.exceptions import RedisError

from promptstack.core.logging import Throttle, get_logger
from promptstack.core.metrics import RATE_LIMIT_ERRORS

log = get_logger(__name__)

Verdict = Literal["ok", "rate_limited", "quota_exceeded"]


@dataclass(frozen=True, slots=True)
class Limits:
    requests_per_minute: int
    tokens_per_minute: int
    daily_tokens: Mapping[str, int]  # by tier


@dataclass(frozen=True, slots=True)
class Refusal:
    verdict: Verdict
    retry_after: int  # seconds


class LimitStore(Protocol):
    async def take(
        self, user: str, day: date, tokens: int, daily: int, limits: Limits
    ) -> Refusal | None: ...

    async def give_back(self, user: str, day: date, tokens: int, limits: Limits) -> None: ...


def _until_tomorrow(now: datetime) -> int:
    tomorrow = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    return max(1, math.ceil((tomorrow - now).total_seconds()))


class MemoryLimitStore:
    """The buckets in this process: exact for one process, lenient by N for N."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._days: dict[tuple[str, date], int] = {}
        self._today: date | None = None

    def _level(self, key: str, capacity: int) -> float:
        now = self._clock()
        tokens, at = self._buckets.get(key, (float(capacity), now))
        return min(capacity, tokens + (now - at) * capacity / 60.0)

    async def take(
        self, user: str, day: date, tokens: int, daily: int, limits: Limits
    ) -> Refusal | None:
        # No await between reading and writing: one event loop takes them atomically.
        used = self._days.get((user, day), 0)
        if used + tokens > daily:
            return Refusal("quota_exceeded", 0)
        requests = self._level(f"r:{user}", limits.requests_per_minute)
        level = self._level(f"t:{user}", limits.tokens_per_minute)
        if requests < 1:
            return Refusal("rate_limited", _wait(1 - requests, limits.requests_per_minute))
        if level < tokens:
            return Refusal("rate_limited", _wait(tokens - level, limits.tokens_per_minute))
        now = self._clock()
        self._buckets[f"r:{user}"] = (requests - 1, now)
        self._buckets[f"t:{user}"] = (level - tokens, now)
        if day != self._today:  # forget past days once a day, not on every call
            self._days = {k: v for k, v in self._days.items() if k[1] >= day}
            self._today = day
        self._days[(user, day)] = used + tokens
        return None

    async def give_back(self, user: str, day: date, tokens: int, limits: Limits) -> None:
        level = self._level(f"t:{user}", limits.tokens_per_minute)
        self._buckets[f"t:{user}"] = (min(limits.tokens_per_minute, level + tokens), self._clock())
        if (user, day) in self._days:
            self._days[(user, day)] = max(0, self._days[(user, day)] - tokens)


def _wait(missing: float, per_minute: int) -> int:
    return max(1, math.ceil(missing * 60.0 / per_minute))


# KEYS: requests bucket, tokens bucket, the day's counter. ARGV: mode (take or give),
# requests per minute, tokens per minute, tokens, the daily limit, the counter's TTL in
# ms. Buckets refill on Redis's own clock. Answers {verdict, seconds to wait}.
_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local function level(key, capacity)
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local tokens, at = tonumber(state[1]), tonumber(state[2])
  if tokens == nil or at == nil then return capacity end
  return math.min(capacity, tokens + math.max(0, now - at) * capacity / 60000)
end
local function store(key, tokens, capacity)
  redis.call('HSET', KEYS[key], 'tokens', tostring(tokens), 'at', now)
  redis.call('PEXPIRE', KEYS[key], math.ceil((capacity - tokens) * 60000 / capacity) + 1000)
end
local mode = ARGV[1]
local rpm, tpm = tonumber(ARGV[2]), tonumber(ARGV[3])
local want, daily, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local requests = level(KEYS[1], rpm)
local tokens = level(KEYS[2], tpm)
local used = tonumber(redis.call('GET', KEYS[3]) or '0')
if mode == 'give' then
  store(2, math.min(tpm, tokens + want), tpm)
  if used > 0 then
    redis.call('SET', KEYS[3], math.max(0, used - want), 'PX', ttl)
  end
  return {'ok', 0}
end
if used + want > daily then return {'quota_exceeded', 0} end
if requests < 1 then return {'rate_limited', math.ceil((1 - requests) * 60 / rpm)} end
if tokens < want then return {'rate_limited', math.ceil((want - tokens) * 60 / tpm)} end
store(1, requests - 1, rpm)
store(2, tokens - want, tpm)
redis.call('SET', KEYS[3], used + want, 'PX', ttl)
return {'ok', 0}
"""
_DAY_TTL_MS = 2 * 86_400_000


class RedisLimitStore:
    """The limits shared by every process of the deployment."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self._script = client.register_script(_SCRIPT)
        self._prefix = f"{namespace}:llm:"

    def _keys(self, user: str, day: date) -> list[str]:
        return [
            f"{self._prefix}rpm:{user}",
            f"{self._prefix}tpm:{user}",
            f"{self._prefix}day:{day.isoformat()}:{user}",
        ]

    async def take(
        self, user: str, day: date, tokens: int, daily: int, limits: Limits
    ) -> Refusal | None:
        answer, wait = await self._run("take", user, day, tokens, daily, limits)
        if answer == "rate_limited":
            return Refusal("rate_limited", max(1, wait))
        if answer == "quota_exceeded":
            return Refusal("quota_exceeded", max(1, wait))
        return None

    async def give_back(self, user: str, day: date, tokens: int, limits: Limits) -> None:
        await self._run("give", user, day, tokens, 0, limits)

    async def _run(
        self, mode: str, user: str, day: date, tokens: int, daily: int, limits: Limits
    ) -> tuple[str, int]:
        rates = (limits.requests_per_minute, limits.tokens_per_minute)
        verdict, wait = await self._script(
            keys=self._keys(user, day), args=[mode, *rates, tokens, daily, _DAY_TTL_MS]
        )
        text = verdict.decode() if isinstance(verdict, bytes) else str(verdict)
        return text, int(wait)


class CallLimits:
    """The limits as the gateway asks them: the caller's tier picks the daily limit."""

    def __init__(
        self,
        store: LimitStore,
        limits: Limits,
        now: Callable[[], datetime],
        *,
        error_log_interval: float = 30.0,
    ) -> None:
        self.store = store
        self.limits = limits
        self._now = now
        self._failure_log = Throttle(error_log_interval)

    def daily(self, tier: str) -> int:
        return self.limits.daily_tokens.get(tier, min(self.limits.daily_tokens.values()))

    async def take(self, user: str, tier: str, tokens: int) -> tuple[date, Refusal | None]:
        """Take one request and `tokens` for the call: the day they count on, and why
        not if not."""
        now = self._now()
        day = now.astimezone(UTC).date()
        try:
            refusal = await self.store.take(user, day, tokens, self.daily(tier), self.limits)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            return day, None
        if refusal is not None and refusal.verdict == "quota_exceeded":
            refusal = Refusal("quota_exceeded", _until_tomorrow(now.astimezone(UTC)))
        return day, refusal

    async def give_back(self, user: str, day: date, tokens: int) -> None:
        if tokens <= 0:
            return
        try:
            await self.store.give_back(user, day, tokens, self.limits)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        RATE_LIMIT_ERRORS.inc()
        if self._failure_log.ready():
            log.warning("llm_limits_unavailable", error=repr(exc))
