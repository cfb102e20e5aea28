"""Typed values on top of the byte cache: one region per kind of value.

A region owns a key space, a type and a time-to-live, so callers store and read models
rather than bytes. Values are JSON of the declared type (never pickle, which would run
code on load); bytes that no longer validate, written by another version of the code,
are a miss rather than an error.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Generic, TypeVar

from pydantic import TypeAdapter, ValidationError

from promptstack.core.metrics import CACHE_REQUESTS

if TYPE_CHECKING:
    # Only for annotations: `Cache.region` builds regions, so the import runs the other way.
    from promptstack.core.cache.two_level import Cache

T = TypeVar("T")

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
