"""Invalidations a shared cache could not apply yet, kept in order until its store answers.

An invalidation that cannot reach Redis (the server is down, paused, cut off, or
its pool stayed busy) is not dropped: it is queued here and applied, in the order
it was made, as soon as Redis answers — before anything else this process asks
of Redis, and by a background thread if nothing else asks. While invalidations
wait, this process reads nothing from Redis and writes nothing to it (reads are
misses), so it never serves a value an invalidation it made has outdated.

The queue is bounded. When it overflows, the invalidations it held are replaced
by one that drops every entry of the cache's namespace and version: coarser, and
still never stale.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import weakref
from typing import TYPE_CHECKING, Final, Literal, Protocol

from buttress.caching._backend import logger

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["MAX_PENDING", "Invalidation", "Pending"]

MAX_PENDING: Final = 10_000
"""Invalidations kept while Redis is unreachable, before they become one of everything."""

_FLUSH_EVERY: Final = 0.05
"""Seconds between the background thread's attempts, at most (Redis's pause applies too)."""


@dataclasses.dataclass(frozen=True)
class Invalidation:
    """One invalidation of a shared cache, as it is queued and applied.

    Attributes:
        kind: ``"key"`` (one entry), ``"tags"`` (every entry written with any of
            the tags), ``"function"`` (every entry of one function) or
            ``"everything"`` (the cache's namespace and version).
        targets: The entry's Redis key; the tags; the function's key prefix;
            nothing.
        announce: ``(channel, messages)`` to publish once applied (tiered
            caches tell the other processes' memory tiers), or ``None``.
        keyed: For tags: the further messages announcing the keys the tags
            turned out to hold, once applied.
    """

    kind: Literal["key", "tags", "function", "everything"]
    targets: tuple[str, ...] = ()
    announce: tuple[str, tuple[bytes, ...]] | None = None
    keyed: Callable[[list[str]], tuple[bytes, ...]] | None = None

    def dropped(self, keys: list[str]) -> tuple[bytes, ...]:
        """The messages announcing that ``keys`` were dropped (none without ``keyed``)."""
        return self.keyed(keys) if self.keyed is not None else ()

    def describe(self) -> str:
        """A short account for log lines (no values, only keys and tags)."""
        if self.kind == "everything":
            return "every entry"
        shown = ", ".join(self.targets[:3]) + (", ..." if len(self.targets) > 3 else "")  # noqa: PLR2004
        return f"{self.kind} {shown}"


class _Applier(Protocol):
    """What the queue needs from its cache."""

    def apply(self, invalidation: Invalidation) -> bool:
        """Apply one invalidation now; False (the trouble handled) when Redis failed."""

    def can_flush_in_background(self) -> bool:
        """Whether a thread may talk to Redis (the cache has or can make a sync client)."""

    def skip(self) -> bool:
        """Whether Redis is being left alone right now."""


class Pending:
    """The queue of one shared cache's invalidations that have not reached Redis.

    Args:
        label: The cache's name in log lines.
        limit: Invalidations kept before they collapse into one of everything.
    """

    def __init__(self, label: str, limit: int = MAX_PENDING) -> None:
        self.label = label
        self.limit = limit
        self._queue: collections.deque[Invalidation] = collections.deque()
        self._flushing = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._guard = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self._queue)

    def __len__(self) -> int:
        return len(self._queue)

    def items(self) -> list[Invalidation]:
        """A snapshot of the queue, oldest first."""
        return list(self._queue)

    def defer(self, invalidation: Invalidation, cache: _Applier) -> None:
        """Queue an invalidation that could not be applied, and arrange for it to be."""
        with self._guard:
            queue = self._queue
            first = not queue
            if invalidation.kind == "everything":
                queue.clear()  # everything that waited is dropped by this one
            elif len(queue) >= self.limit:
                announce = next((i.announce for i in queue if i.announce is not None), None)
                queue.clear()
                queue.append(Invalidation("everything", announce=_everything(announce)))
                logger.warning(
                    "Redis cache %s: more than %d invalidations are waiting for Redis; every "
                    "entry of the cache will be dropped when it answers",
                    self.label,
                    self.limit,
                )
            queue.append(invalidation)
        if first:
            logger.warning(
                "Redis cache %s could not apply an invalidation (%s); it is kept and applied "
                "as soon as Redis answers, and until then this process reads nothing from Redis",
                self.label,
                invalidation.describe(),
            )
        else:
            logger.debug("Redis cache %s deferred %s", self.label, invalidation.describe())
        if cache.can_flush_in_background():
            self._start(cache)

    def flush(self, apply: Callable[[Invalidation], bool], skip: Callable[[], bool]) -> bool:
        """Apply the queue in order with ``apply``; tell whether it is now empty.

        Returns False at once when Redis is being left alone, or another caller is
        flushing (its outcome is not known yet: read nothing from Redis meanwhile).
        """
        if not self._queue:
            return True
        if not self._claim(skip):
            return False
        done = 0
        try:
            while (head := self._head()) is not None:
                if not apply(head):
                    return False
                self._applied(head)
                done += 1
        finally:
            self._flushing.release()
        self._report(done)
        return True

    async def aflush(
        self, apply: Callable[[Invalidation], Awaitable[bool]], skip: Callable[[], bool]
    ) -> bool:
        """`flush` with a coroutine function ``apply`` (for an event loop's client)."""
        if not self._queue:
            return True
        if not self._claim(skip):
            return False
        done = 0
        try:
            while (head := self._head()) is not None:
                if not await apply(head):
                    return False
                self._applied(head)
                done += 1
        finally:
            self._flushing.release()
        self._report(done)
        return True

    def _claim(self, skip: Callable[[], bool]) -> bool:
        """Whether this caller may flush now (Redis not left alone, nobody else flushing)."""
        return not skip() and self._flushing.acquire(blocking=False)

    def _head(self) -> Invalidation | None:
        """The oldest waiting invalidation, or None when none is left."""
        with self._guard:  # a clear may empty and refill the queue meanwhile
            queue = self._queue
            return queue[0] if queue else None

    def _report(self, done: int) -> None:
        logger.info("Redis cache %s applied %d deferred invalidations", self.label, done)

    def _applied(self, head: Invalidation) -> None:
        """Take an applied invalidation off the queue (unless a clear replaced the queue)."""
        with self._guard:
            if self._queue and self._queue[0] is head:
                self._queue.popleft()

    def close(self) -> None:
        """Stop the background thread; say so if invalidations are left unapplied."""
        with self._guard:
            thread, self._thread = self._thread, None
            self._stop.set()
            self._stop = threading.Event()
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)
        if self._queue:
            logger.warning(
                "Redis cache %s closed with %d invalidations Redis never received; entries "
                "they drop may be served by other processes until they expire",
                self.label,
                len(self._queue),
            )

    def _start(self, cache: _Applier) -> None:
        with self._guard:
            if self._thread is not None and self._thread.is_alive():
                return
            thread = threading.Thread(
                target=_flush_in_background,
                args=(weakref.ref(cache), self, self._stop),
                name=f"buttress-cache-invalidations-{self.label}",
                daemon=True,
            )
            self._thread = thread
        thread.start()

    def after_fork(self) -> None:
        """In a child process: the parent's flusher thread and locks are gone."""
        self._flushing = threading.Lock()
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread = None


def _everything(
    announce: tuple[str, tuple[bytes, ...]] | None,
) -> tuple[str, tuple[bytes, ...]] | None:
    """The announcement of everything dropped, on the channel of an earlier announcement."""
    if announce is None:
        return None
    return announce[0], (b'{"everything":true}',)


def _flush_in_background(
    ref: weakref.ReferenceType[_Applier], pending: Pending, stop: threading.Event
) -> None:
    """Keep trying to apply the queue until it is empty, its cache closed or gone."""
    while pending and not stop.wait(_FLUSH_EVERY):
        cache = ref()
        if cache is None:
            return
        try:
            pending.flush(cache.apply, cache.skip)
        except Exception:  # noqa: BLE001 - a bug must not end the thread silently: say so
            logger.exception(
                "Redis cache %s: applying deferred invalidations failed", pending.label
            )
            return
        finally:
            del cache
