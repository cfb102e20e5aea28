"""The in-process cache level, regions, single flight and the `cached` decorator."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from promptstack.core.cache import Cache, MemoryCache, cached, invalidate_cached


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_entries_expire() -> None:
    clock = FakeClock()
    memory = MemoryCache(10, clock)
    await memory.set("k", b"v", ttl=5)
    clock.now = 4.9
    assert await memory.get("k") == b"v"
    clock.now = 5.0
    assert await memory.get("k") is None


async def test_least_recently_used_goes_first() -> None:
    memory = MemoryCache(2)
    await memory.set("a", b"1", 60)
    await memory.set("b", b"2", 60)
    await memory.get("a")
    await memory.set("c", b"3", 60)
    assert (await memory.get("a"), await memory.get("b"), await memory.get("c")) == (
        b"1",
        None,
        b"3",
    )
    assert len(memory) == 2


async def test_prefix_deletion_removes_only_the_prefix() -> None:
    memory = MemoryCache(10)
    for key in ("users:1", "users:2", "userstats:1"):
        await memory.set(key, b"x", 60)
    await memory.delete_prefix("users:")
    assert await memory.get("users:1") is None
    assert await memory.get("userstats:1") == b"x"


class Profile(BaseModel):
    name: str
    score: int


def local_cache() -> Cache:
    return Cache(local=MemoryCache(100), local_ttl=5)


async def test_region_round_trips_typed_values() -> None:
    region = local_cache().region("profiles", Profile, ttl=60)
    await region.set("1", Profile(name="Ada", score=3))
    assert await region.get("1") == Profile(name="Ada", score=3)
    await region.invalidate("1")
    assert await region.get("1") is None


async def test_a_value_of_the_wrong_shape_is_a_miss() -> None:
    cache = local_cache()
    region = cache.region("profiles", Profile, ttl=60)
    await cache.set(region.key("1"), b'{"name": "Ada"}', 60)
    assert await region.get("1") is None


async def test_concurrent_misses_load_once() -> None:
    region = local_cache().region("profiles", Profile, ttl=60)
    calls = 0
    gate = asyncio.Event()

    async def load() -> Profile:
        nonlocal calls
        calls += 1
        await gate.wait()
        return Profile(name="Ada", score=calls)

    waiting = [asyncio.create_task(region.get_or_load("1", load)) for _ in range(20)]
    await asyncio.sleep(0)  # let every caller reach the cache
    gate.set()
    results = await asyncio.gather(*waiting)
    assert calls == 1
    assert {r.score for r in results if r} == {1}


async def test_a_failed_load_reaches_every_waiter_and_is_not_cached() -> None:
    region = local_cache().region("profiles", Profile, ttl=60)
    calls = 0
    gate = asyncio.Event()

    async def load() -> Profile:
        nonlocal calls
        calls += 1
        await gate.wait()
        raise LookupError("database said no")

    waiting = [asyncio.create_task(region.get_or_load("1", load)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, LookupError) for r in results)
    assert calls == 1
    assert await region.get("1") is None


class Scores:
    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.computed = 0

    @cached(ttl=60)
    async def best(self, user: str, *, limit: int = 3, tags: list[str] | None = None) -> Profile:
        self.computed += 1
        return Profile(name=f"{user}:{limit}:{tags}", score=self.computed)


async def test_cached_results_are_keyed_by_arguments() -> None:
    scores = Scores(local_cache())
    first = await scores.best("ada", limit=3)
    assert await scores.best("ada", limit=3) == first
    assert (await scores.best("ada", limit=4)).score == 2
    assert (await scores.best("bob", limit=3)).score == 3
    assert scores.computed == 3


async def test_cached_keys_are_canonical_not_repr() -> None:
    scores = Scores(local_cache())
    await scores.best("ada", tags=["x"], limit=3)
    await scores.best("ada", limit=3, tags=["x"])
    assert scores.computed == 1


async def test_cached_results_can_be_invalidated() -> None:
    scores = Scores(local_cache())
    await scores.best("ada")
    await invalidate_cached(scores.cache, Scores.best)
    await scores.best("ada")
    assert scores.computed == 2


async def test_a_cancelled_load_cancels_its_followers_and_is_not_cached() -> None:
    region = local_cache().region("profiles", Profile, ttl=60)
    gate = asyncio.Event()

    async def load() -> Profile:
        await gate.wait()
        return Profile(name="never", score=0)

    leader = asyncio.create_task(region.get_or_load("1", load))
    await asyncio.sleep(0)
    follower = asyncio.create_task(region.get_or_load("1", load))
    await asyncio.sleep(0)
    leader.cancel()
    results = await asyncio.gather(leader, follower, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    assert await region.get("1") is None
