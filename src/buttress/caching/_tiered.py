"""`TieredCache`: a bounded in-process copy (L1) in front of a `RedisCache` (L2).

Hits on recent entries are answered from memory without a round trip; every
process still shares Redis as the source of truth. Invalidations (a delete, a
tag invalidation, a clear) go to Redis and are announced on a pub/sub channel,
so every process's memory tier drops its copies; each memory entry also expires
after ``local_ttl`` seconds at most, as a backstop for announcements lost while
a process was not listening.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import secrets
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Final

from buttress.caching._backend import (
    FORK_AWARE,
    MISSING,
    Lease,
    LocalTier,
    default_ttl_problem,
    logger,
)
from buttress.caching._memory import MemoryCache
from buttress.caching._pending import Invalidation
from buttress.caching._redis import RedisCache, RedisView
from buttress.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterable, Iterator

    from buttress.caching._backend import Key

__all__ = ["TieredCache", "TieredView"]

_LISTEN_POLL: Final = 0.25
"""Seconds the listener waits for a message before checking whether to stop."""

_JOIN_TIMEOUT: Final = 5.0
_KEYS_PER_MESSAGE: Final = 1000
_FUNCTION_KEY_STARTS: Final = ("(", "#")


def _starts_function(prefix: str) -> Callable[[Hashable], bool]:
    """A predicate on memory keys: those of the function whose keys start with ``prefix``."""
    size = len(prefix)

    def matches(key: Hashable) -> bool:
        text = key[0] if isinstance(key, tuple) and key else None
        return (
            isinstance(text, str)
            and text.startswith(prefix)
            and text[size : size + 1] in _FUNCTION_KEY_STARTS
        )

    return matches


class TieredCache:
    """A memory tier (L1) in front of a `RedisCache` (L2), kept coherent by pub/sub.

    Reads try memory first (no I/O), then Redis, copying what Redis returns
    into memory for at most ``local_ttl`` seconds (less when the Redis entry
    expires sooner). Writes go to Redis, then memory. Deletes, tag
    invalidations and clears go to Redis and memory, then are announced on
    ``channel``; every `TieredCache` on that channel drops the announced keys
    from its memory tier. Leases, serialization and degradation are Redis's:
    when Redis is in trouble, reads from memory keep working until their
    backstop expiry, and everything else degrades as in `RedisCache`.

    **Consistency.** Within one process an invalidation is immediate. Other
    processes drop their copies when the announcement reaches them (usually
    within milliseconds). An announcement can be lost: Redis restarted, the
    connection dropped, the process was not yet subscribed, or Redis was down
    when it was made. A process may then serve a value up to ``local_ttl``
    seconds old, never older: pick ``local_ttl`` as the staleness you accept.
    When its subscription drops, a process keeps serving its memory tier (the
    backstop bounds it) and, once subscribed again, clears it, since
    announcements may have been missed meanwhile.

    The listener is a daemon thread, started on first use (a read, write or
    invalidation) with the sync Redis client, under the client's own protocol
    (RESP2 or RESP3). `close` (or `aclose`) stops it; a fork restarts it in
    the child on first use there.

    Args:
        redis: The shared tier.
        maxsize: Entries kept in memory (least recently used go first).
        local_ttl: Seconds an entry lives in memory at most: the staleness
            bound when an announcement is lost.
        channel: The pub/sub channel of announcements;
            ``{namespace}:{version}:invalidate`` by default.
        default_ttl: The TTL of `cached` functions on this cache that give none;
            the Redis tier's ``default_ttl`` unless given.

    Raises:
        ConfigurationError: An argument is invalid, or ``redis`` has no sync
            client to listen with (it was given only ``async_client``).

    Example:
        ```python
        from buttress.caching import RedisCache, TieredCache, cached

        cache = TieredCache(RedisCache("redis://127.0.0.1:6379/0"), local_ttl=2.0)

        @cached(ttl=300, cache=cache)
        def profile(user_id: int) -> dict[str, str]:
            return {"id": str(user_id)}

        cache.close()
        ```
    """

    def __init__(
        self,
        redis: RedisCache,
        *,
        maxsize: int = 1024,
        local_ttl: float = 5.0,
        channel: str | None = None,
        default_ttl: float | None = None,
    ) -> None:
        problems = _check(redis, local_ttl, channel)
        ttl_problem = default_ttl_problem("TieredCache", default_ttl)
        if ttl_problem:
            problems.append(ttl_problem)
        if problems:
            raise ConfigurationError.from_problems("invalid TieredCache", problems)
        self.redis = redis
        """The shared tier (L2)."""
        self.default_ttl = redis.default_ttl if default_ttl is None else float(default_ttl)
        """The TTL of `cached` functions on this cache that give none (the Redis tier's
        unless given; None: no expiry)."""
        self.memory: MemoryCache = MemoryCache(maxsize)
        """The memory tier (L1), keyed by ``(redis key,)``."""
        self.local_ttl = float(local_ttl)
        self.channel = channel or f"{redis.prefix}invalidate"
        self._origin = secrets.token_hex(8)
        self._lock = threading.Lock()  # starts and stops the listener
        self._fill_lock = threading.Lock()  # orders memory fills against invalidations
        self._generation = 0  # bumped by every invalidation of the memory tier
        self._thread: threading.Thread | None = None
        self._stop: threading.Event | None = None
        self._listening = False
        self._heard = False  # a subscription was confirmed before (a new one clears L1)
        FORK_AWARE.add(self)

    def __repr__(self) -> str:
        return (
            f"TieredCache({self.redis!r}, maxsize={self.memory.maxsize}, "
            f"local_ttl={self.local_ttl}, channel={self.channel!r})"
        )

    @property
    def listening(self) -> bool:
        """Whether the invalidation subscription is live right now."""
        return self._listening

    # -- SharedCache ------------------------------------------------------------------

    def bind(self, name: str, returns: Any) -> TieredView:
        """Return the view a function named ``name`` returning ``returns`` uses.

        Args:
            name: The function's stable name (part of its Redis keys).
            returns: The function's return annotation (the JSON serializer's type).

        Returns:
            The view.
        """
        return TieredView(self, self.redis.bind(name, returns))

    def local_tier(self, name: str) -> LocalTier:
        """The memory tier, for `cached` to serve the hits of the function ``name`` inline.

        Args:
            name: The function's stable name (part of its keys).

        Returns:
            The lookups a hit needs: its slot in memory is ``(redis key,)``.
        """
        memory = self.memory
        return LocalTier(
            get=memory.entries.get,
            record=memory.record if memory.samples else None,
            texts_get=self.redis.texts.get,
            text_of=self.redis.text_of(name),
        )

    def clear(self) -> None:
        """Drop every entry of this namespace and version, in Redis and every memory tier.

        While Redis is unreachable, the clear waits for it (see `RedisCache.invalidate`);
        this process's memory tier is emptied at once.
        """
        self.start()
        self.redis.invalidate(self._everything())
        self.drop_everything()

    async def aclear(self) -> None:
        """`clear` for async callers."""
        self.start()
        await self.redis.ainvalidate(self._everything())
        self.drop_everything()

    def invalidate_tags(self, *tags: str) -> None:
        """Drop every entry written with any of ``tags``, in Redis and every memory tier.

        While Redis is unreachable, the invalidation waits for it; this process's
        memory tier is emptied at once (which of its copies hold the tags is
        known only to Redis).

        Args:
            *tags: The tags.
        """
        if not tags:
            return
        self.start()
        if not self.redis.invalidate(self._tags(tags)):
            self.drop_everything()
        self.drop_keys((), tags)

    async def ainvalidate_tags(self, *tags: str) -> None:
        """`invalidate_tags` for async callers."""
        if not tags:
            return
        self.start()
        if not await self.redis.ainvalidate(self._tags(tags)):
            self.drop_everything()
        self.drop_keys((), tags)

    def _everything(self) -> Invalidation:
        return Invalidation(
            "everything", announce=(self.channel, (self._message(everything=True),))
        )

    def _tags(self, tags: tuple[str, ...]) -> Invalidation:
        def dropped(texts: list[str]) -> tuple[bytes, ...]:
            self.drop_keys(texts, tags)  # when applied, maybe later: drop them here too
            return tuple(self._key_messages(texts, tags))

        return Invalidation("tags", tags, announce=(self.channel, ()), keyed=dropped)

    def counts(self) -> tuple[int | None, int | None]:
        """Return ``(None, None)``: the entries live in Redis (``memory.counts()`` has L1's)."""
        return None, None

    # -- the memory tier ----------------------------------------------------------------

    @property
    def generation(self) -> int:
        """A counter bumped by every invalidation of the memory tier."""
        return self._generation

    def fill(
        self,
        text: str,
        value: Any,
        ttl: float | None,
        generation: int,
        tags: tuple[str, ...] = (),
    ) -> None:
        """Copy a value into memory, unless an invalidation came since ``generation``.

        Args:
            text: The entry's Redis key.
            value: The value.
            ttl: Seconds the entry has left in Redis (``None``: no expiry); the
                copy lives at most ``local_ttl``.
            generation: `generation` read before the value was read or written.
            tags: The entry's tags, when known.
        """
        lifetime = self.local_ttl if ttl is None else min(ttl, self.local_ttl)
        with self._fill_lock:
            if generation == self._generation:
                self.memory.set((text,), value, lifetime, tags)

    def drop_keys(self, texts: Iterable[str], tags: Iterable[str] = ()) -> None:
        """Drop entries from memory by Redis key, and those written here with ``tags``."""
        tags = tuple(tags)
        with self._fill_lock:
            self._generation += 1
            for text in texts:
                self.memory.delete((text,))
            if tags:
                self.memory.invalidate_tags(*tags)

    def drop_function(self, prefix: str) -> None:
        """Drop from memory every entry whose Redis key is a function's (starts with ``prefix``)."""
        with self._fill_lock:
            self._generation += 1
            self.memory.clear_where(_starts_function(prefix))

    def drop_everything(self) -> None:
        """Empty the memory tier."""
        with self._fill_lock:
            self._generation += 1
            self.memory.clear()

    # -- announcements ------------------------------------------------------------------

    def _message(self, **fields: Any) -> bytes:
        return json.dumps({"o": self._origin, **fields}, separators=(",", ":")).encode()

    def announcement(self, text: str) -> tuple[str, bytes]:
        """``(channel, message)`` announcing that the entry under ``text`` is gone."""
        return self.channel, self._message(keys=[text])

    def function_announcement(self, prefix: str) -> bytes:
        """The message announcing that every entry of one function is gone."""
        return self._message(function=prefix)

    def _key_messages(self, texts: list[str], tags: tuple[str, ...]) -> Iterator[bytes]:
        for start in range(0, max(len(texts), 1), _KEYS_PER_MESSAGE):
            yield self._message(keys=texts[start : start + _KEYS_PER_MESSAGE], tags=list(tags))

    def receive(self, message: dict[str, Any]) -> None:
        """Apply one pub/sub message (called by the listener thread)."""
        kind = message.get("type")
        if kind in {"subscribe", b"subscribe"}:
            self.redis.health.succeeded()
            if self._heard:
                self.drop_everything()  # announcements may have been missed while away
                logger.info(
                    "TieredCache on %s subscribed again; its memory tier was cleared",
                    self.channel,
                )
            self._heard = True
            self._listening = True
        elif kind in {"message", b"message"}:
            self._apply(message.get("data"))

    def _apply(self, data: Any) -> None:
        try:
            body = json.loads(data)
        except (TypeError, ValueError):
            logger.debug("TieredCache on %s ignored a message that is not JSON", self.channel)
            return
        if not isinstance(body, dict) or body.get("o") == self._origin:
            return  # not ours to apply, or our own (applied when made)
        if body.get("everything") is True:
            self.drop_everything()
            return
        function = body.get("function")
        if isinstance(function, str):
            self.drop_function(function)
            return
        keys = body.get("keys")
        tags = body.get("tags")
        self.drop_keys(
            [key for key in keys if isinstance(key, str)] if isinstance(keys, list) else (),
            [tag for tag in tags if isinstance(tag, str)] if isinstance(tags, list) else (),
        )

    # -- the listener ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the invalidation listener, if it is not running (called on first use)."""
        if self._thread is not None:
            return
        with self._lock:
            if self._running():
                return
            stop = threading.Event()
            thread = threading.Thread(
                target=_listen,
                args=(weakref.ref(self), self.redis, self.channel, stop),
                name=f"buttress-cache-listener-{self.channel}",
                daemon=True,
            )
            self._stop = stop
            self._thread = thread
            weakref.finalize(self, stop.set)
            thread.start()

    def _running(self) -> bool:
        return self._thread is not None  # read again under the lock

    def lost(self) -> None:
        """Record that the subscription dropped (called by the listener thread)."""
        self._listening = False

    def _stop_listener(self) -> None:
        with self._lock:
            thread, stop = self._thread, self._stop
            self._thread = self._stop = None
        if stop is not None:
            stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(_JOIN_TIMEOUT)
        self._listening = False

    def close(self) -> None:
        """Stop the listener and close the Redis clients the cache made.

        The cache stays usable: the listener starts again on next use.
        """
        self._stop_listener()
        self.redis.close()

    async def aclose(self) -> None:
        """`close` for async callers (also closes this event loop's Redis client)."""
        await asyncio.to_thread(self._stop_listener)
        await self.redis.aclose()

    def after_fork(self) -> None:
        """In a child process: no listener yet; clear memory when it first subscribes."""
        self._lock = threading.Lock()
        self._fill_lock = threading.Lock()
        self._thread = self._stop = None
        self._listening = False
        self._heard = True


def _check(redis: object, local_ttl: object, channel: object) -> list[str]:
    problems: list[str] = []
    if not isinstance(redis, RedisCache):
        problems.append(f"redis must be a RedisCache, got {type(redis).__qualname__}")
    elif not redis.can_listen:
        problems.append(
            "the RedisCache was given only async_client=; the invalidation listener needs a "
            "sync client: pass client=redis.Redis(...) too, or url="
        )
    if (
        isinstance(local_ttl, bool)
        or not isinstance(local_ttl, int | float)
        or not math.isfinite(local_ttl)
        or local_ttl <= 0
    ):
        problems.append(
            f"local_ttl must be a positive number of seconds (the longest a memory copy may "
            f"live), got {local_ttl!r}"
        )
    if channel is not None and (not isinstance(channel, str) or not channel):
        problems.append(f"channel must be a non-empty string or None, got {channel!r}")
    return problems


def _listen(
    ref: weakref.ReferenceType[TieredCache],
    redis: RedisCache,
    channel: str,
    stop: threading.Event,
) -> None:
    """The listener thread: subscribe, apply announcements, resubscribe after trouble."""
    health = redis.health
    while not stop.is_set():
        if health.skip():  # Redis is down: callers skip it, and so does the listener
            stop.wait(min(redis.retry_after_failure, _LISTEN_POLL) or _LISTEN_POLL)
            continue
        pubsub: Any = None
        try:
            client: Any = redis.sync_client()
            pubsub = client.pubsub(ignore_subscribe_messages=False)
            pubsub.subscribe(channel)
            while not stop.is_set():
                message = pubsub.get_message(timeout=_LISTEN_POLL)
                if message is None:
                    continue
                tiered = ref()
                if tiered is None:
                    return
                tiered.receive(message)
                del tiered
        except redis.errors as error:
            _lost(ref)
            health.failed(error, "listening for invalidations")
            stop.wait(redis.retry_after_failure or _LISTEN_POLL)
        except Exception:  # noqa: BLE001 - keep listening whatever happened: start afresh
            _lost(ref)
            logger.exception("TieredCache listener on %s failed; restarting it", channel)
            stop.wait(1.0)
        finally:
            if pubsub is not None:
                with contextlib.suppress(Exception):
                    pubsub.close()


def _lost(ref: weakref.ReferenceType[TieredCache]) -> None:
    tiered = ref()
    if tiered is not None:
        tiered.lost()


class TieredView:
    """One function's entries in a `TieredCache` (the `CacheView` its decorator uses).

    Args:
        tiered: The cache.
        shared: The function's view of the Redis tier.
    """

    local: Final = False
    shared: Final = True

    def __init__(self, tiered: TieredCache, shared: RedisView) -> None:
        self.tiered = tiered
        self.l2 = shared
        self.name = shared.name
        self._memory_get = tiered.memory.get
        self._entries_get = tiered.memory.entries.get

    def __repr__(self) -> str:
        return f"<TieredView {self.name} of {self.tiered!r}>"

    def peek(self, key: Key) -> Any:
        """Return the memory tier's copy of ``key``'s value, or `MISSING` (no I/O).

        Raises:
            CacheKeyError: An argument has no stable text form.
        """
        text = self.l2.text(key)
        entry = self._entries_get((text,))
        if entry is not None and entry[1] > time.monotonic():
            return entry[0]
        return MISSING

    def get(self, key: Key) -> Any:
        """Return ``key``'s value from memory, else from Redis (copied into memory)."""
        text = self.l2.text(key)
        entry = self._entries_get((text,))
        if entry is not None and entry[1] > time.monotonic():
            return entry[0]
        tiered = self.tiered
        tiered.start()
        generation = tiered.generation
        value, left = self.l2.fetch_text(text)
        if value is not MISSING:
            tiered.fill(text, value, left, generation)
        return value

    def set(self, key: Key, value: Any, ttl: float | None, tags: tuple[str, ...] = ()) -> None:
        """Store ``value`` in Redis, then in memory (for at most ``local_ttl``)."""
        text = self.l2.text(key)
        tiered = self.tiered
        tiered.start()
        generation = tiered.generation
        self.l2.set_text(text, value, ttl, tags)
        tiered.fill(text, value, ttl, generation, tags)

    def delete(self, key: Key, *, strict: bool = False) -> None:
        """Delete ``key`` from Redis and memory, and announce it to other processes.

        Raises:
            UnavailableError: With ``strict``, Redis could not be reached now (the
                deletion waits for it; memory is dropped at once).
        """
        text = self.l2.text(key)
        self.tiered.start()
        try:
            self.l2.delete_text(text, self.tiered.announcement(text), strict=strict)
        finally:
            self.tiered.drop_keys((text,))

    def acquire(self, key: Key) -> str | None:
        """Take ``key``'s lease in Redis (see `RedisView.acquire`)."""
        return self.l2.acquire_text(self.l2.text(key))

    def wait(self, key: Key) -> Any:
        """Wait for the lease holder's value (copied into memory); `MISSING` if it lapses."""
        text = self.l2.text(key)
        generation = self.tiered.generation
        value, left = self.l2.wait_text(text)
        if value is not MISSING:
            self.tiered.fill(text, value, left, generation)
        return value

    def release(self, key: Key, token: str) -> None:
        """Release ``key``'s lease if it still holds ``token``."""
        self.l2.release_text(self.l2.text(key), token)

    def clear(self) -> None:
        """Drop every entry of this function, in Redis and every memory tier."""
        tiered = self.tiered
        tiered.start()
        tiered.redis.invalidate(self._function())
        tiered.drop_function(self.l2.prefix)

    def _function(self) -> Invalidation:
        tiered = self.tiered
        message = tiered.function_announcement(self.l2.prefix)
        return Invalidation("function", (self.name,), announce=(tiered.channel, (message,)))

    def begin(self, key: Key, tags: tuple[str, ...]) -> Lease:
        """Start a miss in Redis (see `RedisView.begin`); a value found is copied into memory."""
        text = self.l2.text(key)
        tiered = self.tiered
        tiered.start()
        generation = tiered.generation
        lease, left = self.l2.begin_text(text, tags)
        lease.local = generation
        if lease.value is not MISSING:
            tiered.fill(text, lease.value, left, generation)
        return lease

    def store(
        self, key: Key, lease: Lease, value: Any, ttl: float | None, tags: tuple[str, ...]
    ) -> None:
        """Write a computed value to Redis, then memory, unless an invalidation came first."""
        text = self.l2.text(key)
        if self.l2.store_text(text, lease, value, ttl, tags) is not False:
            self.tiered.fill(text, value, ttl, lease.local, tags)

    def end(self, key: Key, lease: Lease) -> None:
        """Release the miss's lease if the write did not."""
        self.l2.end_text(self.l2.text(key), lease)

    async def abegin(self, key: Key, tags: tuple[str, ...]) -> Lease:
        """`begin` for async callers."""
        text = self.l2.text(key)
        tiered = self.tiered
        tiered.start()
        generation = tiered.generation
        lease, left = await self.l2.abegin_text(text, tags)
        lease.local = generation
        if lease.value is not MISSING:
            tiered.fill(text, lease.value, left, generation)
        return lease

    async def astore(
        self, key: Key, lease: Lease, value: Any, ttl: float | None, tags: tuple[str, ...]
    ) -> None:
        """`store` for async callers."""
        text = self.l2.text(key)
        if await self.l2.astore_text(text, lease, value, ttl, tags) is not False:
            self.tiered.fill(text, value, ttl, lease.local, tags)

    async def aend(self, key: Key, lease: Lease) -> None:
        """`end` for async callers."""
        await self.l2.aend_text(self.l2.text(key), lease)

    async def aget(self, key: Key) -> Any:
        """`get` for async callers."""
        text = self.l2.text(key)
        value = self._memory_get((text,))
        if value is not MISSING:
            return value
        tiered = self.tiered
        tiered.start()
        generation = tiered.generation
        value, left = await self.l2.afetch_text(text)
        if value is not MISSING:
            tiered.fill(text, value, left, generation)
        return value

    async def aset(
        self, key: Key, value: Any, ttl: float | None, tags: tuple[str, ...] = ()
    ) -> None:
        """`set` for async callers."""
        text = self.l2.text(key)
        tiered = self.tiered
        tiered.start()
        generation = tiered.generation
        await self.l2.aset_text(text, value, ttl, tags)
        tiered.fill(text, value, ttl, generation, tags)

    async def adelete(self, key: Key, *, strict: bool = False) -> None:
        """`delete` for async callers."""
        text = self.l2.text(key)
        self.tiered.start()
        try:
            await self.l2.adelete_text(text, self.tiered.announcement(text), strict=strict)
        finally:
            self.tiered.drop_keys((text,))

    async def aacquire(self, key: Key) -> str | None:
        """`acquire` for async callers."""
        return await self.l2.aacquire_text(self.l2.text(key))

    async def await_value(self, key: Key) -> Any:
        """`wait` for async callers."""
        text = self.l2.text(key)
        generation = self.tiered.generation
        value, left = await self.l2.await_text(text)
        if value is not MISSING:
            self.tiered.fill(text, value, left, generation)
        return value

    async def arelease(self, key: Key, token: str) -> None:
        """`release` for async callers."""
        await self.l2.arelease_text(self.l2.text(key), token)

    async def aclear(self) -> None:
        """`clear` for async callers."""
        tiered = self.tiered
        tiered.start()
        await tiered.redis.ainvalidate(self._function())
        tiered.drop_function(self.l2.prefix)
