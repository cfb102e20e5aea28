"""Caching: an in-process level, Redis behind it, and typed regions on top.

The cache is an optimisation, never a dependency: every failure of Redis is counted,
logged at most once per interval, and answered as a miss, so callers fall through to
the database. Values are JSON of typed models (never pickle, which would run code on
load).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import (
    Any,
    Concatenate,
    Generic,
    Literal,
    ParamSpec,
    Protocol,
    TypeVar,
    get_type_hints,
)

import redis.asyncio as redis
from pydantic import TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from promptstack.core.logging import Throttle, get_logger
from promptstack.core.metrics import CACHE_ERRORS, CACHE_REQUESTS
from promptstack.core.resilience import CircuitBreaker, CircuitOpen

T = TypeVar("T")

log = get_logger(__name__)

CacheStatus = Literal["up", "down", "local"]

# Deletions that failed during an outage and are replayed when Redis is back.
_PENDING_DELETES_KEPT = 10_000


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


class Cache:
    """Two levels when Redis is configured, one (in-process) when it is not.

    Every process keeps a small first level in memory. Writes and deletions go to Redis
    and are announced on a pub/sub channel, and every other process drops its copy, so
    a change made anywhere is seen everywhere within the time Redis takes to deliver a
    message. A message can be lost only while Redis is unreachable, and then the first
    level is bypassed, and cleared when Redis returns.

    Deletions that fail are remembered and replayed as soon as Redis answers again:
    when the shared breaker closes, whichever component's call closed it, on this
    cache's next successful call, and by a background task every `replay_interval`
    seconds for as long as any are pending, so a process that goes quiet still catches
    up. Another process's stale copy therefore lives no longer than the outage plus
    `replay_interval`.
    """

    def __init__(
        self,
        *,
        local: MemoryCache,
        local_ttl: float,
        shared: RedisCache | None = None,
        breaker: CircuitBreaker | None = None,
        namespace: str = "promptstack",
        error_log_interval: float = 30.0,
        replay_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.local = local
        self.local_ttl = local_ttl
        self.shared = shared
        self.breaker = breaker
        self.namespace = namespace
        self.channel = f"{namespace}:cache:invalidate"
        self.origin = uuid.uuid4().hex
        self._failure_log = Throttle(error_log_interval, clock)
        self._inflight: dict[str, asyncio.Future[Any]] = {}
        self._pending_deletes: set[str] = set()
        self._pending_prefixes: set[str] = set()
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._closing = False
        self.replay_interval = replay_interval
        self._replayer: asyncio.Task[None] | None = None
        self._replay_now = asyncio.Event()
        if breaker is not None:
            breaker.on_close(self._redis_is_back)

    @property
    def status(self) -> CacheStatus:
        if self.shared is None:
            return "local"
        if self.breaker is not None and self.breaker.state != "closed":
            return "down"
        return "up"

    def region(
        self, name: str, model: type[T] | Any, ttl: float, *, immutable: bool = False
    ) -> CacheRegion[T]:
        return CacheRegion(self, name, TypeAdapter(model), ttl, immutable=immutable)

    async def get(self, key: str) -> bytes | None:
        if self.shared is None:
            return await self.local.get(key)
        if self.status == "up":
            nearby = await self.local.get(key)
            if nearby is not None:
                return nearby
        value: bytes | None = await self._shared(lambda shared: shared.get(key))
        if value is not None and self.status == "up":
            await self.local.set(key, value, self.local_ttl)
        return value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        if self.shared is None:
            await self.local.set(key, value, ttl)
            return
        stored = await self._shared(lambda shared: shared.set(key, value, ttl), ok=True)
        if stored:
            await self.local.set(key, value, min(ttl, self.local_ttl))

    async def delete(self, *keys: str) -> None:
        await self.local.delete(list(keys))
        if self.shared is None:
            return
        done = await self._shared(lambda shared: shared.delete(list(keys)), ok=True)
        if done:
            await self._announce({"keys": list(keys)})
            return
        if len(self._pending_deletes) < _PENDING_DELETES_KEPT:
            self._pending_deletes.update(keys)
        else:
            # Too much to remember key by key: drop the whole namespace on recovery.
            self._pending_deletes.clear()
            self._pending_prefixes.add(f"{self.namespace}:")
        self._keep_replaying()

    async def delete_prefix(self, prefix: str) -> None:
        await self.local.delete_prefix(prefix)
        if self.shared is None:
            return
        done = await self._shared(lambda shared: shared.delete_prefix(prefix), ok=True)
        if done:
            await self._announce({"prefix": prefix})
        else:
            self._pending_prefixes.add(prefix)
            self._keep_replaying()

    async def single_flight(self, key: str, load: Callable[[], Awaitable[T]]) -> T:
        """Run `load` once for concurrent callers of the same key in this process."""
        running = self._inflight.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await load()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: followers re-raise it themselves
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._inflight[key]

    async def _shared(
        self, operation: Callable[[RedisCache], Awaitable[Any]], ok: Any = None
    ) -> Any:
        """Run a Redis operation, or return None when Redis fails or is known to be down."""
        assert self.shared is not None
        shared = self.shared
        self.start()

        async def call() -> Any:
            result = await operation(shared)
            return ok if ok is not None else result

        try:
            result = await (self.breaker.call(call) if self.breaker else call())
        except CircuitOpen:
            return None
        except (RedisError, OSError, TimeoutError) as exc:
            CACHE_ERRORS.labels(backend="redis").inc()
            self._log_failure(exc)
            return None
        if self._pending_deletes or self._pending_prefixes:
            await self._replay()
        return result

    def _redis_is_back(self) -> None:
        """The shared breaker closed: messages may have been missed, so start clean, and
        replay the deletions at once rather than at this cache's next call."""
        self.local.clear()
        self._replay_now.set()

    @property
    def pending_deletes(self) -> int:
        """Deletions (keys and prefixes) waiting for Redis to come back."""
        return len(self._pending_deletes) + len(self._pending_prefixes)

    async def _replay(self) -> None:
        """Send the deletions that failed. Each is taken before it is tried, so
        concurrent replays never repeat one, and one that fails again is remembered."""
        deletes, prefixes = list(self._pending_deletes), list(self._pending_prefixes)
        self._pending_deletes.clear()
        self._pending_prefixes.clear()
        if deletes:
            await self.delete(*deletes)
        for prefix in prefixes:
            await self.delete_prefix(prefix)
        log.info("cache_replayed", deletes=len(deletes), prefixes=len(prefixes))

    def _keep_replaying(self) -> None:
        if self._closing or (self._replayer is not None and not self._replayer.done()):
            return
        self._replayer = asyncio.get_running_loop().create_task(
            self._replay_until_done(), name="cache-delete-replayer"
        )

    async def _replay_until_done(self) -> None:
        while (self._pending_deletes or self._pending_prefixes) and not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._replay_now.wait(), timeout=self.replay_interval)
            self._replay_now.clear()
            await self._replay()

    def _log_failure(self, exc: BaseException) -> None:
        if self._failure_log.ready():
            log.warning("cache_unavailable", error=repr(exc))

    async def _announce(self, message: dict[str, Any]) -> None:
        payload = json.dumps({"origin": self.origin, **message})
        assert self.shared is not None
        client = self.shared.client
        await self._shared(lambda _: client.publish(self.channel, payload), ok=True)

    def start(self) -> None:
        """Listen for other processes' invalidations (two-level mode only)."""
        if self.shared is not None and self._listener is None and not self._closing:
            self._listener = asyncio.get_running_loop().create_task(
                self._listen(), name="cache-invalidation-listener"
            )

    async def wait_listening(self) -> None:
        await self._listening.wait()

    async def _listen(self) -> None:
        assert self.shared is not None
        delay = 0.1
        while not self._closing:
            pubsub = self.shared.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                # Messages published while we were not listening are lost: start clean.
                self.local.clear()
                self._listening.set()
                delay = 0.1
                while not self._closing:
                    message = await pubsub.get_message(timeout=0.5)
                    if message is not None:
                        await self._apply(message.get("data"))
            except (RedisError, OSError, TimeoutError) as exc:
                # redis-py can turn a cancellation into a timeout; do not retry through it.
                task = asyncio.current_task()
                if self._closing or (task is not None and task.cancelling()):
                    raise asyncio.CancelledError from exc
                self._listening.clear()
                self.local.clear()
                self._log_failure(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), timeout=1.0)  # type: ignore[no-untyped-call]

    async def _apply(self, data: object) -> None:
        try:
            message = json.loads(data) if isinstance(data, bytes | str) else None
        except ValueError:
            return
        if not isinstance(message, dict) or message.get("origin") == self.origin:
            return
        keys = message.get("keys")
        if isinstance(keys, list):
            await self.local.delete([k for k in keys if isinstance(k, str)])
        prefix = message.get("prefix")
        if isinstance(prefix, str):
            await self.local.delete_prefix(prefix)

    async def aclose(self) -> None:
        self._closing = True
        if self._replayer is not None:
            self._replayer.cancel()
            await asyncio.wait({self._replayer}, timeout=2.0)
            self._replayer = None
        if self._listener is not None:
            self._listener.cancel()
            # Bounded: the listener also checks `_closing`, should a cancellation be lost.
            await asyncio.wait({self._listener}, timeout=2.0)
            self._listener = None
        if self.shared is not None:
            await self.shared.client.aclose()

    async def ping(self) -> None:
        """Raise unless the shared level answers (for readiness).

        It goes through the breaker like any call: while Redis is known to be down it
        fails at once, and after the recovery timeout it is the probe that closes it.
        """
        if self.shared is not None:
            answered = await self._shared(lambda shared: shared.client.ping(), ok=True)
            if not answered:
                raise ConnectionError("Redis is unavailable")


_DECODED_KEPT = 1024


class CacheRegion(Generic[T]):
    """One kind of cached value: its key space, its type and its time-to-live."""

    def __init__(
        self,
        cache: Cache,
        name: str,
        adapter: TypeAdapter[T],
        ttl: float,
        *,
        immutable: bool = False,
    ) -> None:
        self.cache = cache
        self.name = name
        self.adapter = adapter
        self.ttl = ttl
        self.prefix = f"{cache.namespace}:{name}:"
        # For frozen values, the same bytes decode to one shared object instead of being
        # parsed again on every hit; mutable values are always decoded afresh.
        self._decoded: OrderedDict[bytes, T] | None = OrderedDict() if immutable else None
        self._hits = CACHE_REQUESTS.labels(cache=name, result="hit")
        self._misses = CACHE_REQUESTS.labels(cache=name, result="miss")

    def key(self, part: str) -> str:
        return self.prefix + part

    async def get(self, part: str) -> T | None:
        raw = await self.cache.get(self.key(part))
        if raw is not None:
            value = self._decode(raw)
            if value is not None:
                self._hits.inc()
                return value
        self._misses.inc()
        return None

    def _decode(self, raw: bytes) -> T | None:
        if self._decoded is not None and (known := self._decoded.get(raw)) is not None:
            return known
        try:
            value = self.adapter.validate_json(raw)
        except ValidationError:
            # Written by another version of the code: a miss, replaced by the next load.
            return None
        if self._decoded is not None:
            self._decoded[raw] = value
            if len(self._decoded) > _DECODED_KEPT:
                self._decoded.popitem(last=False)
        return value

    async def set(self, part: str, value: T) -> None:
        await self.cache.set(self.key(part), self.adapter.dump_json(value), self.ttl)

    async def get_or_load(self, part: str, load: Callable[[], Awaitable[T | None]]) -> T | None:
        """Cache-aside: the cached value, else `load()` once per process, stored if found."""
        cached = await self.get(part)
        if cached is not None:
            return cached

        async def load_and_store() -> T | None:
            value = await load()
            if value is not None:
                await self.set(part, value)
            return value

        return await self.cache.single_flight(self.key(part), load_and_store)

    async def invalidate(self, *parts: str) -> None:
        await self.cache.delete(*(self.key(part) for part in parts))

    async def invalidate_all(self) -> None:
        await self.cache.delete_prefix(self.prefix)


S = TypeVar("S", bound="HasCache")
P = ParamSpec("P")
R = TypeVar("R")


class HasCache(Protocol):
    cache: Cache


def cached(
    ttl: float,
) -> Callable[
    [Callable[Concatenate[S, P], Awaitable[R]]], Callable[Concatenate[S, P], Awaitable[R]]
]:
    """Cache a service method's result for `ttl` seconds, keyed by what it was asked.

    The key is the method's qualified name and a digest of its arguments in canonical
    JSON (sorted keys, no whitespace), so equal arguments give equal keys in every
    process and across restarts, which `repr` does not promise. The value is stored as
    JSON of the declared return type. The owner must have a `cache` attribute.
    `invalidate_cached(owner.cache, Owner.method)` drops every stored result.
    """

    def decorate(
        method: Callable[Concatenate[S, P], Awaitable[R]],
    ) -> Callable[Concatenate[S, P], Awaitable[R]]:
        name = f"fn:{method.__module__}.{method.__qualname__}"
        regions: dict[int, CacheRegion[R]] = {}

        def region_for(cache: Cache) -> CacheRegion[R]:
            region = regions.get(id(cache))
            if region is None or region.cache is not cache:
                returns = get_type_hints(method)["return"]
                region = regions[id(cache)] = cache.region(name, returns, ttl)
            return region

        @functools.wraps(method)
        async def wrapper(owner: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
            region = region_for(owner.cache)
            canonical = json.dumps(
                to_jsonable_python([args, kwargs]), sort_keys=True, separators=(",", ":")
            )
            digest = hashlib.sha256(canonical.encode()).hexdigest()[:32]
            found = await region.get(digest)
            if found is not None:
                return found

            async def compute() -> R:
                value = await method(owner, *args, **kwargs)
                if value is not None:
                    await region.set(digest, value)
                return value

            return await owner.cache.single_flight(region.key(digest), compute)

        wrapper.cache_region = name  # type: ignore[attr-defined]
        return wrapper

    return decorate


async def invalidate_cached(cache: Cache, method: Callable[..., Any]) -> None:
    """Forget every result `@cached` stored for `method`."""
    await cache.delete_prefix(f"{cache.namespace}:{method.cache_region}:")  # type: ignore[attr-defined]
