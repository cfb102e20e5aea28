"""Caching: an in-process level, Redis behind it, and typed regions on top.

One module per job: `stores` holds the bytes (in the process, in Redis), `two_level`
keeps the two levels coherent across processes and survives Redis outages, `regions`
types the values, `decorator` caches a service method's results. Import from here:
these names are the cache's public face, the modules behind them may move.
"""

from promptstack.core.cache.decorator import HasCache, cached, invalidate_cached
from promptstack.core.cache.regions import CacheRegion
from promptstack.core.cache.stores import MemoryCache, RedisCache, redis_client
from promptstack.core.cache.two_level import Cache, CacheStatus

__all__ = [
    "Cache",
    "CacheRegion",
    "CacheStatus",
    "HasCache",
    "MemoryCache",
    "RedisCache",
    "cached",
    "invalidate_cached",
    "redis_client",
]
