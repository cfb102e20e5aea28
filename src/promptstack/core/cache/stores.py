"""The two stores a cache is built from: a bounded in-process one and Redis.

They only store bytes under keys. Neither knows the other, nor typed values, nor what to
do when Redis fails: `RedisCache` raises, and `Cache` (two_level.py) decides that a
failure is a miss. Keeping them this small lets each be tested, and replaced, alone.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


class MemoryCache:
    """A bounded, expiring in-process store: least recently used entries go first."""

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max_entries = max_entries
        self._clock = clock

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if expires_at <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self._entries[key] = (self._clock() + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    async def delete(self, keys: list[str]) -> None:
        for key in keys:
            self._entries.pop(key, None)

    async def delete_prefix(self, prefix: str) -> None:
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class RedisCache:
    """Redis as the shared level; raises on any failure, which the layer above absorbs."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    async def get(self, key: str) -> bytes | None:
        value = await self.client.get(key)
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self.client.set(key, value, px=max(1, int(ttl * 1000)))

    async def delete(self, keys: list[str]) -> None:
        if keys:
            await self.client.unlink(*keys)

    async def delete_and_publish(self, keys: list[str], channel: str, message: str) -> None:
        """Delete `keys`, then tell `channel`'s subscribers, in one round trip: Redis runs
        a pipeline's commands in order, so no subscriber hears before the keys are gone."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.unlink(*keys)
            pipe.publish(channel, message)
            await pipe.execute()

    async def delete_prefix(self, prefix: str) -> None:
        """SCAN, not KEYS: a pattern delete must not block Redis on a large keyspace."""
        batch: list[str] = []
        async for key in self.client.scan_iter(match=_glob_escape(prefix) + "*", count=500):
            batch.append(key.decode() if isinstance(key, bytes) else key)
            if len(batch) >= 500:
                await self.client.unlink(*batch)
                batch.clear()
        if batch:
            await self.client.unlink(*batch)


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def redis_client(url: str, timeout: float) -> redis.Redis:
    """A client that gives up fast: a slow cache must cost a request milliseconds, not seconds."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=30,
    )
