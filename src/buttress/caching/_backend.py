"""What the `cached` decorator needs from a cache, and what every cache shares.

A cache (`MemoryCache`, `RedisCache`, `TieredCache`) is shared by any number of
decorated functions. At decoration time each function asks the cache for a
`CacheView` bound to its own name and return type: the view is what the hot path
talks to. Keys handed to a view are tuples whose first item identifies the
function in this process and whose other items are the call's canonical
arguments (see `buttress.caching._keys`); a view that stores outside the process
encodes the items after the first into text and prefixes them with the
function's name instead.
"""

from __future__ import annotations

import logging
import math
import os
import time
import weakref
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol, final

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

__all__ = [
    "MISSING",
    "CacheListener",
    "CacheStats",
    "CacheView",
    "Key",
    "Lease",
    "LocalTier",
    "SharedCache",
    "default_ttl_problem",
]

logger = logging.getLogger("buttress.caching")

FORK_AWARE: Final[weakref.WeakSet[Any]] = weakref.WeakSet()
"""Caches whose ``after_fork`` runs in a child process after ``os.fork``.

A lock held by another thread of the parent at the fork would never be released
in the child; each cache replaces its locks there.
"""


def default_ttl_problem(owner: str, value: object) -> str | None:
    """What is wrong with ``value`` as a cache's ``default_ttl``, or None when it is fine."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        return (
            f"{owner} default_ttl must be a positive number of seconds (the TTL of functions "
            f"that give none) or None, got {value!r}"
        )
    return None


def _after_fork_in_child() -> None:
    for cache in list(FORK_AWARE):
        cache.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

Key = tuple[Any, ...]
"""A cache key: the function's identity in this process, then the canonical arguments."""


@final
class _Missing:
    """The type of `MISSING`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
"""What a lookup returns when the key holds no value (``None`` is a value)."""


class Lease:
    """A miss's right to compute a key's value, and what its write is checked against.

    `CacheView.begin` hands one out before the function runs; `CacheView.store`
    writes the value only if nothing invalidated the key (or its function, tags
    or cache) since, so a miss never stores a value older than an invalidation
    made while it ran; `CacheView.end` gives it back.

    Attributes:
        token: The lease's token in a shared store (``""``: none held).
        mine: False when another process holds the key's lease: wait for its value.
        since: What the store compares at write time (``None``: the write is skipped,
            for want of anything to compare).
        value: A value found while taking the lease (`MISSING`: none).
        started: When the lease was taken (`time.monotonic`).
        open: Whether `CacheView.end` still has something to give back.
        local: The memory tier's generation when the lease was taken (tiered caches).
    """

    __slots__ = ("local", "mine", "open", "since", "started", "token", "value")

    def __init__(
        self, *, token: str = "", mine: bool = True, since: Any = None, value: Any = MISSING
    ) -> None:
        self.token = token
        self.mine = mine
        self.since = since
        self.value = value  # None is a value: a None found must not be computed again
        self.started = time.monotonic()
        self.open = True
        self.local = 0

    def __repr__(self) -> str:
        return f"<Lease mine={self.mine} open={self.open} since={self.since!r}>"


class CacheStats(NamedTuple):
    """Counters of one cached function and its cache.

    ``size`` and ``evictions`` describe the cache the function writes to (shared
    with other functions using the same cache); they are ``None`` where the
    cache cannot tell without a scan (Redis).

    The hit and miss counters are plain integers bumped without a lock (a hit
    takes none), so threads hitting at the same instant may undercount them by
    a few: they are for metrics, not for accounting.
    """

    hits: int
    """Calls answered from the cache."""
    misses: int
    """Calls that ran the function (or waited for another caller running it)."""
    size: int | None
    """Entries held by the cache."""
    evictions: int | None
    """Entries the cache dropped to stay within its size."""


class LocalTier(NamedTuple):
    """A cache's memory tier, lent to `cached` so that its hits are served inline.

    A cache with a memory tier in front (`TieredCache`) offers one through a
    ``local_tier(name)`` method; the memory slot of a canonical key ``key`` is
    ``(texts_get(key) or text_of(key),)``, and ``get`` returns that slot's
    ``(value, expires)`` entry (``expires`` from `time.monotonic`), or None.
    """

    get: Callable[[Hashable], tuple[Any, float] | None]
    """Looks a slot up in memory."""
    record: Callable[[Hashable], None] | None
    """Records a hit on a slot for the memory tier's policy (None: no recency to keep)."""
    texts_get: Callable[[Key], str | None]
    """Looks up the remembered text of a canonical key."""
    text_of: Callable[[Key], str]
    """Computes (and remembers) the text of a canonical key."""


class CacheListener:
    """Hooks called on cache hits, misses and evictions; override the ones you need.

    Attach listeners with ``cached(listeners=[...])`` (hits and misses) and
    ``MemoryCache(listeners=[...])`` (evictions). A hook runs in the caller's
    thread or task; an exception raised by a hook is logged and swallowed, so
    observing never changes what the cached call returns. A function with
    listeners takes a slightly slower hit path than one without.

    Example:
        ```python
        from buttress.caching import CacheListener, cached

        class CountHits(CacheListener):
            def __init__(self) -> None:
                self.hits = 0

            def on_hit(self, name, key):
                self.hits += 1

        counter = CountHits()

        @cached(listeners=[counter])
        def square(x: int) -> int:
            return x * x

        square(3)
        square(3)
        assert counter.hits == 1
        ```
    """

    def on_hit(self, name: str, key: Key) -> None:
        """A call to ``name`` with canonical arguments ``key`` was answered from the cache."""

    def on_miss(self, name: str, key: Key) -> None:
        """A call to ``name`` with canonical arguments ``key`` found nothing cached."""

    def on_evict(self, key: Hashable) -> None:
        """The cache dropped ``key`` to make room for another entry."""


class CacheView(Protocol):
    """One cache as seen by one decorated function.

    Lookups and writes never raise for trouble in the store (a server down, a
    value that cannot be decoded): a lookup degrades to `MISSING` and a write to
    nothing, with a warning logged once per incident.
    """

    @property
    def local(self) -> bool:
        """True when the cache lives in this process and does no I/O.

        An ``async def`` then calls the plain methods and never awaits on a hit.
        """

    @property
    def shared(self) -> bool:
        """True when other processes see the same entries (leases are worth taking)."""

    def get(self, key: Key) -> Any:
        """Return the value stored under ``key``, or `MISSING`."""

    def peek(self, key: Key) -> Any:
        """Return a copy of ``key``'s value held in this process, or `MISSING`.

        No I/O and no lock: async callers try it before awaiting `aget`. A
        memory cache answers as `get` does, a tiered cache from its memory tier,
        a Redis cache always with `MISSING`. Like `get`, it raises
        `CacheKeyError` for a key it cannot store.
        """

    def set(self, key: Key, value: Any, ttl: float | None, tags: tuple[str, ...] = ()) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (forever if ``None``)."""

    def delete(self, key: Key, *, strict: bool = False) -> None:
        """Drop ``key`` (everywhere the cache keeps copies).

        A cache outside the process that cannot reach its store keeps the
        invalidation and applies it as soon as the store answers; with
        ``strict``, it also raises `UnavailableError`.
        """

    def begin(self, key: Key, tags: tuple[str, ...]) -> Lease:
        """Start a miss of ``key`` (to be written with ``tags``): the lease `store` checks.

        The lease carries a value when one was found meanwhile, and is not
        ``mine`` when another process is computing the key (then `wait`).
        """

    def store(
        self, key: Key, lease: Lease, value: Any, ttl: float | None, tags: tuple[str, ...]
    ) -> None:
        """Write a computed value, unless an invalidation came after ``lease`` was taken."""

    def end(self, key: Key, lease: Lease) -> None:
        """Give ``lease`` back (idempotent; after a failed computation too)."""

    async def abegin(self, key: Key, tags: tuple[str, ...]) -> Lease:
        """`begin` for async callers."""

    async def astore(
        self, key: Key, lease: Lease, value: Any, ttl: float | None, tags: tuple[str, ...]
    ) -> None:
        """`store` for async callers."""

    async def aend(self, key: Key, lease: Lease) -> None:
        """`end` for async callers."""

    def acquire(self, key: Key) -> str | None:
        """Ask to compute ``key``'s value.

        Returns a token if this caller should compute, ``None`` if another
        process holds the lease (then `wait` for its value). An empty token means
        "compute here, there is nothing to release" (a memory cache, or Redis
        unreachable).
        """

    def wait(self, key: Key) -> Any:
        """Wait for another process's value for ``key``; `MISSING` when its lease lapsed."""

    def release(self, key: Key, token: str) -> None:
        """Give back a lease taken with `acquire` (only its owner's token releases it)."""

    async def aget(self, key: Key) -> Any:
        """`get` for async callers."""

    async def aset(self, key: Key, value: Any, ttl: float | None, tags: tuple[str, ...]) -> None:
        """`set` for async callers."""

    async def adelete(self, key: Key, *, strict: bool = False) -> None:
        """`delete` for async callers."""

    async def aacquire(self, key: Key) -> str | None:
        """`acquire` for async callers."""

    async def await_value(self, key: Key) -> Any:
        """`wait` for async callers."""

    async def arelease(self, key: Key, token: str) -> None:
        """`release` for async callers."""

    def clear(self) -> None:
        """Drop every entry of this function (and only this function's)."""

    async def aclear(self) -> None:
        """`clear` for async callers."""


class SharedCache(Protocol):
    """What `cached(cache=...)` accepts: `MemoryCache`, `RedisCache`, `TieredCache`."""

    def bind(self, name: str, returns: Any) -> CacheView:
        """The view a function named ``name`` returning ``returns`` uses for its entries."""

    def clear(self) -> None:
        """Drop every entry of this cache (only this cache's namespace in Redis)."""

    async def aclear(self) -> None:
        """`clear` for async callers."""

    def invalidate_tags(self, *tags: str) -> None:
        """Drop every entry written with any of ``tags``."""

    async def ainvalidate_tags(self, *tags: str) -> None:
        """`invalidate_tags` for async callers."""

    def counts(self) -> tuple[int | None, int | None]:
        """``(size, evictions)`` as far as the cache can tell cheaply."""

    def close(self) -> None:
        """Release connections and background listeners (nothing for a memory cache)."""

    async def aclose(self) -> None:
        """`close` for async callers."""
