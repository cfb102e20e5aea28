"""Two cache levels over a real Redis: shared values, cross-process invalidation, outages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from pydantic import BaseModel

from promptstack.core.cache import Cache, MemoryCache, RedisCache, redis_client
from promptstack.core.cache import two_level as cache_module
from promptstack.core.metrics import CACHE_ERRORS
from promptstack.core.rate_limit import FailOpenLimiter, LeasedRateLimiter, Quota, RedisRateLimiter
from promptstack.core.resilience import CircuitBreaker
from tests.fixtures.redis_server import RedisServer
from tests.fixtures.support import eventually


class Doc(BaseModel):
    title: str


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def process_cache(
    url: str,
    namespace: str,
    clock: Callable[[], float] | None = None,
    *,
    replay_interval: float = 5.0,
) -> AsyncIterator[Cache]:
    """What one process builds: its own first level and breaker, the shared Redis."""
    breaker = CircuitBreaker(
        "redis", failure_threshold=1, recovery_timeout=5.0, **({"clock": clock} if clock else {})
    )
    cache = Cache(
        local=MemoryCache(100),
        local_ttl=60,
        # Generous: these tests are about invalidation, and one slow call on a loaded
        # machine would open the single-failure breaker. Outages here refuse at once.
        shared=RedisCache(redis_client(url, timeout=5.0)),
        breaker=breaker,
        namespace=namespace,
        replay_interval=replay_interval,
    )
    try:
        yield cache
    finally:
        await cache.aclose()


async def test_a_value_set_in_one_process_is_read_in_another(
    shared_redis_url: str, cache_namespace: str
) -> None:
    async with (
        process_cache(shared_redis_url, cache_namespace) as a,
        process_cache(shared_redis_url, cache_namespace) as b,
    ):
        await a.region("docs", Doc, 60).set("1", Doc(title="shared"))
        assert await b.region("docs", Doc, 60).get("1") == Doc(title="shared")


async def test_a_delete_drops_every_process_first_level(
    shared_redis_url: str, cache_namespace: str
) -> None:
    async with (
        process_cache(shared_redis_url, cache_namespace) as a,
        process_cache(shared_redis_url, cache_namespace) as b,
    ):
        docs_a, docs_b = a.region("docs", Doc, 60), b.region("docs", Doc, 60)
        await docs_a.set("1", Doc(title="old"))
        assert await docs_b.get("1") == Doc(title="old")  # now in b's first level
        assert await b.local.get(docs_b.key("1")) is not None
        await b.wait_listening()

        await docs_a.invalidate("1")

        async def dropped() -> bool:
            return await b.local.get(docs_b.key("1")) is None

        await eventually(dropped)
        assert await docs_b.get("1") is None


async def test_a_prefix_delete_reaches_every_process(
    shared_redis_url: str, cache_namespace: str
) -> None:
    async with (
        process_cache(shared_redis_url, cache_namespace) as a,
        process_cache(shared_redis_url, cache_namespace) as b,
    ):
        docs_a, docs_b = a.region("docs", Doc, 60), b.region("docs", Doc, 60)
        for n in range(30):
            await docs_a.set(str(n), Doc(title=str(n)))
        await a.region("other", Doc, 60).set("1", Doc(title="kept"))
        assert await docs_b.get("7") is not None
        await b.wait_listening()

        await docs_a.invalidate_all()

        async def dropped() -> bool:
            return len(b.local) == 0

        await eventually(dropped)
        assert all([await docs_b.get(str(n)) is None for n in range(30)])
        assert await b.region("other", Doc, 60).get("1") == Doc(title="kept")


async def test_namespaces_keep_deployments_apart(shared_redis_url: str) -> None:
    async with (
        process_cache(shared_redis_url, "blue-ns-test") as blue,
        process_cache(shared_redis_url, "green-ns-test") as green,
    ):
        await blue.region("docs", Doc, 60).set("1", Doc(title="blue"))
        assert await green.region("docs", Doc, 60).get("1") is None
        await blue.region("docs", Doc, 60).invalidate("1")


async def test_redis_outage_is_a_miss_and_recovery_starts_clean(
    redis_server: RedisServer, cache_namespace: str
) -> None:
    clock = FakeClock()
    async with (
        process_cache(redis_server.url, cache_namespace, clock) as cache,
        process_cache(redis_server.url, cache_namespace) as other,
    ):
        docs = cache.region("docs", Doc, 60)
        await docs.set("1", Doc(title="before"))
        assert await docs.get("1") == Doc(title="before")
        errors_before = CACHE_ERRORS.labels(backend="redis")._value.get()

        redis_server.stop()
        await docs.set("2", Doc(title="during"))  # quietly not stored
        assert cache.status == "down"
        # The first level is not trusted while invalidations cannot arrive.
        assert await docs.get("1") is None
        await docs.invalidate("1")  # remembered, replayed on recovery
        assert await docs.get("2") is None
        assert CACHE_ERRORS.labels(backend="redis")._value.get() > errors_before

        redis_server.start()
        await other.region("docs", Doc, 60).set("1", Doc(title="stale copy"))
        clock.now += 5.0  # the breaker admits a probe
        await docs.set("3", Doc(title="after"))
        assert cache.status == "up"
        assert await docs.get("3") == Doc(title="after")
        assert await docs.get("1") is None  # the delete made during the outage was replayed


async def test_missed_deletes_are_replayed_when_another_component_closes_the_breaker(
    redis_server: RedisServer, cache_namespace: str
) -> None:
    """The rate limiter shares the breaker and usually makes the first call after an
    outage; its success must still bring the cache's missed deletions to Redis."""
    clock = FakeClock()
    async with (
        process_cache(redis_server.url, cache_namespace, clock) as cache,
        process_cache(redis_server.url, cache_namespace) as other,
    ):
        await cache.region("docs", Doc, 60).set("1", Doc(title="before"))
        redis_server.stop()
        await cache.region("docs", Doc, 60).invalidate("1")  # refused: nothing reached Redis
        assert cache.pending_deletes == 1
        redis_server.start()
        stale = other.region("docs", Doc, 60)
        await stale.set("1", Doc(title="stale copy"))
        assert cache.shared is not None
        assert cache.breaker is not None
        limiter = FailOpenLimiter(
            LeasedRateLimiter(
                RedisRateLimiter(cache.shared.client, cache_namespace), breaker=cache.breaker
            )
        )
        clock.now += 5.0

        assert await limiter.hit("caller", Quota(10, 10)) is not None  # the probe, from Redis
        assert cache.breaker.state == "closed"

        async def replayed() -> bool:
            return cache.pending_deletes == 0 and await stale.get("1") is None

        await eventually(replayed)


async def test_an_idle_cache_replays_its_missed_deletes_by_itself(
    redis_server: RedisServer, cache_namespace: str
) -> None:
    """No call at all after the outage: the replay still happens, once the breaker
    admits a probe."""
    clock = FakeClock()
    async with (
        process_cache(redis_server.url, cache_namespace, clock, replay_interval=0.05) as cache,
        process_cache(redis_server.url, cache_namespace) as other,
    ):
        redis_server.stop()
        await cache.region("docs", Doc, 60).invalidate("1")
        redis_server.start()
        stale = other.region("docs", Doc, 60)
        await stale.set("1", Doc(title="stale copy"))
        assert cache.pending_deletes == 1  # still open: the breaker refuses the replays

        clock.now += 5.0

        async def replayed() -> bool:
            return cache.pending_deletes == 0 and await stale.get("1") is None

        await eventually(replayed)


async def test_an_unreachable_redis_never_raises(cache_namespace: str) -> None:
    async with process_cache("redis://127.0.0.1:9/0", cache_namespace) as cache:
        docs = cache.region("docs", Doc, 60)
        for _ in range(3):
            await docs.set("1", Doc(title="x"))
            assert await docs.get("1") is None
            await docs.invalidate("1")
            await docs.invalidate_all()
        assert cache.status == "down"


async def test_too_many_failed_deletes_clear_the_namespace_on_recovery(
    redis_server: RedisServer, cache_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_module, "_PENDING_DELETES_KEPT", 3)
    clock = FakeClock()
    async with process_cache(redis_server.url, cache_namespace, clock) as cache:
        docs = cache.region("docs", Doc, 60)
        for n in range(5):
            await docs.set(str(n), Doc(title=str(n)))
        redis_server.stop()
        for n in range(5):
            await docs.invalidate(str(n))
        redis_server.start()  # a fresh server: give it the old values back
        async with process_cache(redis_server.url, cache_namespace) as other:
            for n in range(5):
                await other.region("docs", Doc, 60).set(str(n), Doc(title="stale"))
            await other.region("notes", Doc, 60).set("x", Doc(title="also dropped"))
        clock.now += 5.0
        await cache.ping()
        assert all([await docs.get(str(n)) is None for n in range(5)])
        # Past the limit it forgot keys and dropped the whole namespace instead.
        assert await cache.region("notes", Doc, 60).get("x") is None
