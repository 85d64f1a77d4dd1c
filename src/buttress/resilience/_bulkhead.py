"""Bound how many calls run at once, for threads and asyncio tasks alike."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from buttress.errors import BulkheadFullError
from buttress.resilience._base import (
    check_callable,
    check_count,
    check_listeners,
    check_seconds,
    describe,
    is_async,
    logger,
    name_of,
    notify,
    refuse_bare,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from buttress.resilience._base import ResilienceListener

__all__ = ["bulkhead"]

P = ParamSpec("P")
T = TypeVar("T")


class _Waiter:
    """One caller waiting for a slot; granted slots are handed over directly (FIFO)."""

    __slots__ = ("event", "future", "granted", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.granted = False
        self.loop = loop
        self.event: threading.Event | None = None if loop else threading.Event()
        self.future: asyncio.Future[None] | None = loop.create_future() if loop else None

    def wake(self) -> bool:
        """Wake the waiter; False if it can never run (its event loop is closed)."""
        if self.event is not None:
            self.event.set()
            return True
        loop, future = cast("asyncio.AbstractEventLoop", self.loop), self.future
        try:
            loop.call_soon_threadsafe(_resolve, future)
        except RuntimeError:  # the loop is closed: the waiting task will never resume
            return False
        return True


def _resolve(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


class _Slots:
    """The counters of one bulkhead, shared by threads and by tasks on any loop.

    The lock guards only counter updates, never a call: callers over the limit
    wait on their own event or future, and a leaving caller hands its slot to
    the oldest waiter.
    """

    def __init__(self, max_concurrent: int, max_waiting: int, wait_timeout: float | None) -> None:
        self.max_concurrent = max_concurrent
        self.max_waiting = max_waiting
        self.wait_timeout = wait_timeout
        self.lock = threading.Lock()
        self.running = 0
        self.waiters: deque[_Waiter] = deque()

    def enter_or_queue(self, loop: asyncio.AbstractEventLoop | None) -> _Waiter | None:
        """Take a slot (``None``), join the queue (a waiter), or return False if full."""
        with self.lock:
            if self.running < self.max_concurrent and not self.waiters:
                self.running += 1
                return None
            if len(self.waiters) < self.max_waiting:
                waiter = _Waiter(loop)
                self.waiters.append(waiter)
                return waiter
        raise _Full

    def abandon(self, waiter: _Waiter) -> bool:
        """Leave the queue; return True if a slot was granted meanwhile (and is now held)."""
        with self.lock:
            if waiter.granted:
                return True
            self.waiters.remove(waiter)
            return False

    def leave(self) -> None:
        """Give the slot to the oldest waiter that can still run, or free it."""
        while True:
            with self.lock:
                if not self.waiters:
                    self.running -= 1
                    return
                waiter = self.waiters.popleft()
                waiter.granted = True  # the slot passes on: `running` is unchanged
            if waiter.wake():
                return


class _Full(Exception):  # noqa: N818 - internal signal, turned into BulkheadFullError
    pass


def bulkhead(
    max_concurrent: int,
    max_waiting: int = 0,
    *,
    wait_timeout: float | None = None,
    listeners: Sequence[ResilienceListener] = (),
    name: str | None = None,
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Let at most ``max_concurrent`` calls run at once; refuse the rest at once.

    A bulkhead keeps one slow dependency from tying up every thread or task of
    a service. Calls beyond the limit wait in a queue of at most
    ``max_waiting`` (first come, first served), for at most ``wait_timeout``
    seconds; beyond that, they fail at once with `BulkheadFullError`, without
    calling the function. The limit is shared by threads and asyncio tasks
    (on any event loop), and by every function decorated by the same
    ``bulkhead(...)`` result: create one per dependency and apply it to each
    function that uses the dependency. A plain ``def`` called from a thread
    that runs an event loop never waits — waiting would stall the loop, whose
    own tasks may hold the slots — so there it is refused at once when no slot
    is free.

    Args:
        max_concurrent: Calls allowed to run at once, at least 1.
        max_waiting: Calls allowed to wait for a slot; 0 (the default) refuses
            every call over the limit at once.
        wait_timeout: Seconds a call may wait for a slot before it is refused;
            no limit by default.
        listeners: `ResilienceListener`s told of each refused call.
        name: Name in errors, logs and listener calls; the function's
            qualified name by default.

    Returns:
        A decorator that keeps the function's signature for type checkers.

    Raises:
        ConfigurationError: At decoration time, for limits that are not whole
            numbers in range, or something that is not callable.

    Example:
        ```python
        import asyncio

        from buttress.errors import BulkheadFullError
        from buttress.resilience import bulkhead

        @bulkhead(max_concurrent=2)
        async def render_report(n: int) -> int:
            await asyncio.sleep(0.01)
            return n

        async def main() -> list[object]:
            calls = [render_report(n) for n in range(3)]
            return await asyncio.gather(*calls, return_exceptions=True)

        first, second, third = asyncio.run(main())
        assert (first, second) == (0, 1)
        assert isinstance(third, BulkheadFullError)
        ```
    """
    refuse_bare(max_concurrent, "bulkhead(10)")
    check_count(max_concurrent, "bulkhead(max_concurrent=...)", 1)
    check_count(max_waiting, "bulkhead(max_waiting=...)", 0)
    check_seconds(wait_timeout, "bulkhead(wait_timeout=...)", allow_zero=True, optional=True)
    checked_listeners = check_listeners(listeners, "bulkhead")
    slots = _Slots(max_concurrent, max_waiting, wait_timeout)

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        check_callable(fn, "bulkhead")
        label = name or name_of(fn)

        def full() -> BulkheadFullError:
            logger.warning(
                "bulkhead %s is full (%d running, %d waiting): call refused",
                label,
                max_concurrent,
                max_waiting,
            )
            notify(checked_listeners, "on_bulkhead_rejected", label, max_concurrent, max_waiting)
            return BulkheadFullError(label, max_concurrent, max_waiting)

        return _guard(fn, slots, full)

    return describe(decorate, "bulkhead", max_concurrent=max_concurrent)


def _guard(
    fn: Callable[P, T], slots: _Slots, full: Callable[[], BulkheadFullError]
) -> Callable[P, T]:
    """Wrap ``fn`` so each call holds one of ``slots`` while it runs."""
    if is_async(fn):
        afn = cast("Callable[P, Any]", fn)

        @functools.wraps(fn)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            try:
                waiter = slots.enter_or_queue(asyncio.get_running_loop())
            except _Full:
                raise full() from None
            if waiter is not None:
                await _await_slot(slots, waiter, full)
            try:
                return await afn(*args, **kwargs)
            finally:
                slots.leave()

        return cast("Callable[P, T]", async_wrapper)

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            waiter = slots.enter_or_queue(None)
        except _Full:
            raise full() from None
        if waiter is not None and _loop_running():
            # Waiting would stall the loop, and the slot holders may be its own tasks.
            if not slots.abandon(waiter):
                raise full()
            waiter = None  # granted meanwhile: the slot is held
        if waiter is not None:
            try:
                cast("threading.Event", waiter.event).wait(slots.wait_timeout)
            except BaseException:  # interrupted while waiting (KeyboardInterrupt, a signal)
                if slots.abandon(waiter):
                    slots.leave()  # granted meanwhile: pass the slot on
                raise
            if not slots.abandon(waiter):
                raise full()
        try:
            return fn(*args, **kwargs)
        finally:
            slots.leave()

    return wrapper


def _loop_running() -> bool:
    """Whether this thread is running an asyncio event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def _await_slot(
    slots: _Slots, waiter: _Waiter, full: Callable[[], BulkheadFullError]
) -> None:
    """Wait for a slot to be handed over; give it back if cancelled after all."""
    future = cast("asyncio.Future[None]", waiter.future)
    try:
        async with asyncio.timeout(slots.wait_timeout):
            await asyncio.shield(future)
    except TimeoutError:
        if not slots.abandon(waiter):
            raise full() from None
    except asyncio.CancelledError:
        if slots.abandon(waiter):
            slots.leave()  # granted while being cancelled: pass the slot on
        raise
