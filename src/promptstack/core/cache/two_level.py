"""The cache callers use: a first level in the process, Redis behind it, kept coherent.

The cache is an optimisation, never a dependency: every failure of Redis is counted,
logged at most once per interval, and answered as a miss, so callers fall through to
the database. This module is what makes two levels safe to have: every write and
deletion is announced to the other processes, a listener drops their copies, the first
level is distrusted while messages may be lost, and deletions that could not reach Redis
are replayed when it answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

from pydantic import TypeAdapter
from redis.exceptions import RedisError

from promptstack.core.cache.regions import CacheRegion
from promptstack.core.cache.stores import MemoryCache, RedisCache
from promptstack.core.logging import Throttle, get_logger
from promptstack.core.metrics import CACHE_ERRORS
from promptstack.core.resilience import Backoff, CircuitBreaker, CircuitOpen

T = TypeVar("T")

log = get_logger(__name__)

CacheStatus = Literal["up", "down", "local"]

# Deletions that failed during an outage and are replayed when Redis is back.
_PENDING_DELETES_KEPT = 10_000

# The listener's wait before resubscribing: 0.1 s after a first failure, doubling to 5 s.
_RECONNECT_BACKOFF = Backoff(0.1, cap=5.0)


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
        announcement = self._announcement({"keys": list(keys)})
        done = await self._shared(
            lambda shared: shared.delete_and_publish(list(keys), self.channel, announcement),
            ok=True,
        )
        if done:
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

    def _announcement(self, message: dict[str, Any]) -> str:
        return json.dumps({"origin": self.origin, **message})

    async def _announce(self, message: dict[str, Any]) -> None:
        payload = self._announcement(message)
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
        failures = 0
        while not self._closing:
            pubsub = self.shared.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                # Messages published while we were not listening are lost: start clean.
                self.local.clear()
                self._listening.set()
                failures = 0
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
                failures += 1
                await asyncio.sleep(_RECONNECT_BACKOFF.delay(failures))
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
