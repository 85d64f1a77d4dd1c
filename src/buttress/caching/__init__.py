"""Caching: one `cached` decorator for def and async def, over memory, Redis or both.

Calls are keyed canonically (``f(1)``, ``f(x=1)`` and ``f(1, y=<default>)`` are
one entry), concurrent misses on one key run the function once, a hit takes no
lock, and trouble with Redis degrades to a miss with a warning, never an error
into the caller. Importing this package does not import redis.
"""

from buttress.caching._backend import MISSING, CacheListener, CacheStats, CacheView, SharedCache
from buttress.caching._cached import Cached, cached
from buttress.caching._memory import MemoryCache
from buttress.caching._redis import RedisCache
from buttress.caching._tiered import TieredCache

__all__ = [
    "MISSING",
    "CacheListener",
    "CacheStats",
    "CacheView",
    "Cached",
    "MemoryCache",
    "RedisCache",
    "SharedCache",
    "TieredCache",
    "cached",
]
