"""`MemoryCache`: cachetools' eviction policies, with hits served from a plain dict.

cachetools keeps the bookkeeping of an eviction policy (recency for LRU, counts
for LFU, insertion order for FIFO) in the cache object, and updates it on every
read under the caller's lock. That makes a hit cost a lock and a policy update.
`MemoryCache` keeps two structures instead:

- a plain ``dict`` of ``key -> (value, expires_at)``, read without a lock (a dict
  read is atomic), which is all a hit touches;
- a cachetools cache of ``key -> expires_at`` that owns the policy: it decides
  what to evict on writes (its ``popitem``) and drops expired entries (its
  ``expire``), and the dict follows.

A hit never takes the lock. One hit in 32 appends its key to a short read
buffer (a ``deque`` append is atomic); the next write replays the buffer into
the policy under the lock it takes anyway, before it can evict. Evictions happen
only on writes, so that is the moment recency and frequency must be current;
they are approximate (sampled, and the buffer keeps only the latest reads), as
in Redis's own LRU and LFU. Writes, deletes and evictions are exact and happen
under one lock.
"""

from __future__ import annotations

import collections
import contextlib
import math
import threading
import time
from typing import TYPE_CHECKING, Any, Final, Literal

import cachetools

from buttress.caching._backend import (
    FORK_AWARE,
    MISSING,
    CacheListener,
    Lease,
    default_ttl_problem,
    logger,
)
from buttress.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterable, Sequence

    from buttress.caching._backend import CacheView, Key

__all__ = ["FOREVER", "MemoryCache", "Policy"]

Policy = Literal["lru", "lfu", "fifo", "rr"]

FOREVER: Final = math.inf
"""The expiry of an entry without a TTL (compared by identity on the hit path)."""

_POLICIES: Final[dict[str, type[cachetools.Cache[Any, Any]]]] = {
    "lfu": cachetools.LFUCache,
    "fifo": cachetools.FIFOCache,
    "rr": cachetools.RRCache,
}

SAMPLE: Final = 31
"""A hit is recorded for the policy when ``hits & SAMPLE == 0``: one hit in 32."""

READS_KEPT: Final = 32
"""How many recorded hits wait for the next write; older ones are dropped."""

TOUCHED_KEPT: Final = 10_000
"""How many invalidated keys and tags are remembered for misses in flight.

Past that, every miss in flight is treated as overtaken by an invalidation (its
value is returned but not stored), and the memory starts afresh.
"""


def _expiry(_key: object, expires: float, _now: float) -> float:
    """TLRUCache's time-to-use: the expiry stored as the policy's value."""
    return expires


def _policy_cache(
    policy: str,
    maxsize: int,
    evicted: Callable[[Hashable], None],
    expired: Callable[[Hashable], None],
) -> cachetools.Cache[Any, float]:
    """A cachetools cache of the policy that reports what it drops."""
    base: type[cachetools.Cache[Any, Any]]
    if policy == "lru":
        base = cachetools.TLRUCache  # LRU that also drops each entry at its own expiry

        class Reporting(base):  # type: ignore[valid-type, misc]
            def popitem(self) -> tuple[Any, Any]:
                key, value = super().popitem()
                evicted(key)
                return key, value

            def expire(self, time: float | None = None) -> Any:
                gone = super().expire(time)
                for key, _ in gone:
                    expired(key)
                return gone

        cache: cachetools.Cache[Any, float] = Reporting(maxsize, ttu=_expiry, timer=time.monotonic)
        return cache

    base = _POLICIES[policy]

    class Evicting(base):  # type: ignore[valid-type, misc]
        def popitem(self) -> tuple[Any, Any]:
            key, value = super().popitem()
            evicted(key)
            return key, value

    evicting: cachetools.Cache[Any, float] = Evicting(maxsize)
    return evicting


def _positive_int(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= 1


class MemoryCache:
    """A thread-safe in-process cache with a bounded size and an eviction policy.

    Pass one to several `cached` functions to share its size budget (their keys
    never collide), or let `cached` make one per function. Every entry carries its
    own expiry (the function's ``ttl``). A hit takes no lock.

    Args:
        maxsize: Entries kept before the policy evicts one.
        policy: Which entry goes when full: ``"lru"`` (least recently used, the
            default), ``"lfu"`` (least frequently used), ``"fifo"`` (oldest
            write) or ``"rr"`` (random). Recency and frequency are sampled on hits
            (one in 32), exact on writes.
        listeners: Told of each eviction (`CacheListener.on_evict`).
        default_ttl: The TTL of `cached` functions on this cache that give none
            (``CacheSettings.ttl`` for a cache made from settings); None keeps
            their entries until evicted or invalidated.

    Raises:
        ConfigurationError: ``maxsize`` is not a positive integer, ``policy``
            is unknown, or ``default_ttl`` is not a positive number of seconds.

    Example:
        ```python
        from buttress.caching import MemoryCache, cached

        shared = MemoryCache(maxsize=10_000, policy="lfu")

        @cached(cache=shared, ttl=60)
        def price(sku: str) -> int:
            return len(sku) * 100

        assert price("abc") == 300
        assert shared.counts() == (1, 0)
        ```
    """

    local: Final = True
    shared: Final = False

    def __init__(
        self,
        maxsize: int = 1024,
        *,
        policy: Policy = "lru",
        listeners: Sequence[CacheListener] = (),
        default_ttl: float | None = None,
    ) -> None:
        problem = default_ttl_problem("MemoryCache", default_ttl)
        if problem:
            raise ConfigurationError(problem)
        if not _positive_int(maxsize):
            raise ConfigurationError(
                f"MemoryCache maxsize must be a positive integer, got {maxsize!r}: pass how "
                "many entries to keep, such as maxsize=1024"
            )
        if policy not in ("lru", *_POLICIES):
            raise ConfigurationError(
                f"MemoryCache policy {policy!r} is unknown: use 'lru', 'lfu', 'fifo' or 'rr'"
            )
        self.maxsize = maxsize
        self.default_ttl = None if default_ttl is None else float(default_ttl)
        """The TTL of `cached` functions on this cache that give none (None: no expiry)."""
        self.policy_name = policy
        self.listeners = tuple(listeners)
        for listener in self.listeners:
            if not isinstance(listener, CacheListener):
                raise ConfigurationError(
                    f"MemoryCache listeners must be CacheListener instances, got {listener!r}"
                )
        self.entries: dict[Hashable, tuple[Any, float]] = {}
        """What hits read: ``key -> (value, expires_at)`` on `time.monotonic`."""
        self.evictions = 0
        self._lock = threading.Lock()
        self._tags: dict[str, set[Hashable]] = {}
        self._tags_of: dict[Hashable, tuple[str, ...]] = {}
        self.policy = _policy_cache(policy, maxsize, self._evicted, self._expired)
        """The cachetools cache that decides evictions (values are expiry times)."""
        FORK_AWARE.add(self)
        self.samples = policy in ("lru", "lfu")
        """Whether hits tell the policy about themselves (recency and frequency do)."""
        self._clock = 0  # counts invalidations
        self._cleared_at = 0  # the clock at the last invalidation of many keys at once
        self._loading = 0  # misses in flight
        self._touched: dict[Hashable, int] = {}  # key or (tag,) -> clock, while misses fly
        self._reads: collections.deque[Hashable] = collections.deque(maxlen=READS_KEPT)
        self.record: Callable[[Hashable], None] = self._reads.append
        """Record a hit on a key, for the policy to learn of at the next write (no lock)."""

    def __repr__(self) -> str:
        return (
            f"MemoryCache(maxsize={self.maxsize}, policy={self.policy_name!r}, "
            f"size={len(self.entries)})"
        )

    # -- the view one function sees: the cache itself ------------------------------

    def bind(self, name: str, returns: Any) -> CacheView:  # noqa: ARG002 - part of the protocol
        """Return the cache itself: values are kept as they are.

        Keys start with the function's identity, so functions sharing the
        cache never collide.

        Args:
            name: The function's name (unused: values never leave the process).
            returns: The function's return type (unused).

        Returns:
            This cache.
        """
        return self

    def get(self, key: Key) -> Any:
        """Return the live value stored under ``key``, or `MISSING`.

        Args:
            key: The canonical key.

        Returns:
            The value, or `MISSING` when absent or expired.
        """
        entry = self.entries.get(key)
        if entry is None:
            return MISSING
        value, expires = entry
        if expires is FOREVER or expires > time.monotonic():
            return value
        return MISSING

    peek = get

    def set(self, key: Key, value: Any, ttl: float | None, tags: tuple[str, ...] = ()) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds, evicting if full.

        Args:
            key: The canonical key.
            value: What to store (kept as is, not copied).
            ttl: Seconds the entry lives, or ``None`` for no expiry.
            tags: Tags to invalidate the entry by.
        """
        with self._lock:
            self._set(key, value, ttl, tags)

    def _set(self, key: Key, value: Any, ttl: float | None, tags: tuple[str, ...]) -> None:
        """`set`, under the lock."""
        expires = FOREVER if ttl is None else time.monotonic() + ttl
        self._replay()
        self.policy[key] = expires
        if key not in self.policy:  # already expired (a zero ttl): keep nothing
            self._drop(key)
            return
        self.entries[key] = (value, expires)
        old = self._tags_of.pop(key, ())
        for tag in old:
            self._untag(tag, key)
        if tags:
            self._tags_of[key] = tags
            for tag in tags:
                self._tags.setdefault(tag, set()).add(key)

    def delete(self, key: Key, *, strict: bool = False) -> None:  # noqa: ARG002 - never fails
        """Drop ``key`` if present.

        Args:
            key: The canonical key.
            strict: Part of the protocol: a memory cache always reaches its entries.
        """
        with self._lock:
            self.policy.pop(key, None)
            self._drop(key)
            self._touch(key)

    def begin(self, key: Key, tags: tuple[str, ...]) -> Lease:  # noqa: ARG002 - protocol
        """Start a miss: note the invalidation clock, and any value stored meanwhile.

        Args:
            key: The canonical key.
            tags: The tags the value will be written with (checked at `store`).

        Returns:
            The lease (always this caller's: one process decides alone).
        """
        with self._lock:
            self._loading += 1
            return Lease(since=self._clock, value=self.get(key))

    def store(
        self, key: Key, lease: Lease, value: Any, ttl: float | None, tags: tuple[str, ...]
    ) -> None:
        """Store a computed value, unless ``key``, its tags or the cache were invalidated since.

        Args:
            key: The canonical key.
            lease: What `begin` returned.
            value: The value computed.
            ttl: Seconds the entry lives, or ``None``.
            tags: Tags to invalidate the entry by.
        """
        since = lease.since
        with self._lock:
            touched = self._touched
            if self._cleared_at > since or touched.get(key, 0) > since:
                return
            if any(touched.get((tag,), 0) > since for tag in tags):
                return
            self._set(key, value, ttl, tags)

    def end(self, key: Key, lease: Lease) -> None:  # noqa: ARG002 - part of the protocol
        """Count the miss as finished (once per lease)."""
        if not lease.open:
            return
        lease.open = False
        with self._lock:
            self._loading -= 1
            if not self._loading:
                self._touched.clear()

    async def abegin(self, key: Key, tags: tuple[str, ...]) -> Lease:
        """`begin`, for async callers."""
        return self.begin(key, tags)

    async def astore(
        self, key: Key, lease: Lease, value: Any, ttl: float | None, tags: tuple[str, ...]
    ) -> None:
        """`store`, for async callers."""
        self.store(key, lease, value, ttl, tags)

    async def aend(self, key: Key, lease: Lease) -> None:
        """`end`, for async callers."""
        self.end(key, lease)

    def acquire(self, key: Key) -> str | None:  # noqa: ARG002 - part of the protocol
        """Return a token: in one process, the in-flight table already decides who computes."""
        return ""

    def wait(self, key: Key) -> Any:  # noqa: ARG002 - part of the protocol
        """Return `MISSING`: there is never another process to wait for."""
        return MISSING

    def release(self, key: Key, token: str) -> None:
        """Do nothing: `acquire` took no lease."""

    async def aget(self, key: Key) -> Any:
        """`get`, for async callers (no I/O, so it never suspends)."""
        return self.get(key)

    async def aset(self, key: Key, value: Any, ttl: float | None, tags: tuple[str, ...]) -> None:
        """`set`, for async callers."""
        self.set(key, value, ttl, tags)

    async def adelete(self, key: Key, *, strict: bool = False) -> None:
        """`delete`, for async callers."""
        self.delete(key, strict=strict)

    async def aacquire(self, key: Key) -> str | None:
        """`acquire`, for async callers."""
        return self.acquire(key)

    async def await_value(self, key: Key) -> Any:
        """`wait`, for async callers."""
        return self.wait(key)

    async def arelease(self, key: Key, token: str) -> None:
        """`release`, for async callers."""

    # -- the whole cache ---------------------------------------------------------------

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self.policy.clear()
            self.entries.clear()
            self._tags.clear()
            self._tags_of.clear()
            self._clear_touched()

    async def aclear(self) -> None:
        """`clear`, for async callers."""
        self.clear()

    def clear_where(self, matches: Callable[[Hashable], bool]) -> int:
        """Drop every entry whose key ``matches``; return how many went.

        Args:
            matches: Tells whether a key is to go (called under the lock).

        Returns:
            The number of entries dropped.
        """
        with self._lock:
            doomed = [key for key in self.entries if matches(key)]
            for key in doomed:
                self.policy.pop(key, None)
                self._drop(key)
            self._clear_touched()  # misses in flight of matching keys must not store
        return len(doomed)

    def invalidate_tags(self, *tags: str) -> None:
        """Drop every entry stored with any of ``tags``.

        Args:
            *tags: The tags to invalidate.
        """
        with self._lock:
            doomed: set[Hashable] = set()
            for tag in tags:
                doomed |= self._tags.get(tag, set())
                self._touch((tag,))
            for key in doomed:
                self.policy.pop(key, None)
                self._drop(key)

    async def ainvalidate_tags(self, *tags: str) -> None:
        """`invalidate_tags`, for async callers."""
        self.invalidate_tags(*tags)

    def counts(self) -> tuple[int | None, int | None]:
        """Return ``(size, evictions)``: entries held and entries evicted to make room."""
        return len(self.entries), self.evictions

    def close(self) -> None:
        """Do nothing: a memory cache holds no connection (kept for symmetry)."""

    async def aclose(self) -> None:
        """`close`, for async callers."""

    def after_fork(self) -> None:
        """In a forked child, a lock held by another parent thread would never be released."""
        self._lock = threading.Lock()
        self._loading = 0
        self._touched.clear()

    def keys(self) -> Iterable[Hashable]:
        """A snapshot of the keys held (expired entries not yet dropped included)."""
        return list(self.entries)

    # -- bookkeeping, always under the lock -------------------------------------------

    def _touch(self, key: Hashable) -> None:
        """Record an invalidation of a key (or a ``(tag,)``) for the misses in flight."""
        self._clock += 1
        if self._loading:
            touched = self._touched
            if len(touched) >= TOUCHED_KEPT:
                self._clear_touched()
            else:
                touched[key] = self._clock

    def _clear_touched(self) -> None:
        """Record an invalidation of many keys: every miss in flight is overtaken."""
        self._clock += 1
        self._cleared_at = self._clock
        self._touched.clear()

    def _replay(self) -> None:
        """Tell the policy of the hits recorded since the last write, oldest first."""
        reads = self._reads
        policy = self.policy
        while reads:
            with contextlib.suppress(KeyError):  # gone or expired since the hit
                policy[reads.popleft()]  # moves it up the recency or frequency order

    def _drop(self, key: Hashable) -> None:
        self.entries.pop(key, None)
        for tag in self._tags_of.pop(key, ()):
            self._untag(tag, key)

    def _untag(self, tag: str, key: Hashable) -> None:
        keys = self._tags.get(tag)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._tags[tag]

    def _evicted(self, key: Hashable) -> None:
        self._drop(key)
        self.evictions += 1
        for listener in self.listeners:
            try:
                listener.on_evict(key)
            except Exception:  # noqa: BLE001 - observing must not break eviction
                logger.exception("cache listener %r failed in on_evict", listener)

    def _expired(self, key: Hashable) -> None:
        self._drop(key)
