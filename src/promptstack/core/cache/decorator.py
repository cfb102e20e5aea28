"""`@cached`: a service method's results cached by its arguments, without a hand-made key.

A region needs a name and a key for every value; for a method both follow from what it
is and what it was asked, so the decorator derives them (canonical JSON of the
arguments, not `repr`) and keeps one region per cache the method is called with.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, get_type_hints

from pydantic_core import to_jsonable_python

from promptstack.core.cache.regions import CacheRegion
from promptstack.core.cache.two_level import Cache

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
