"""Single-flight: concurrent misses on one key run the function once.

Threads and asyncio tasks each have their own table of calls in flight, keyed
by the canonical key. The first caller to put its call in the table (an atomic
``dict.setdefault``) computes; the others wait for its outcome and get the same
value or the same exception. No lock is shared between keys.

An async computation runs in a task of its own, shielded from its callers: a
caller that is cancelled stops waiting, and the computation is cancelled only
when its last caller has left.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Hashable

__all__ = ["AsyncFlights", "Flights"]

T = TypeVar("T")


class _Call(Generic[T]):
    """One computation in flight, as threads see it."""

    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: T | None = None
        self.error: BaseException | None = None


class Flights(Generic[T]):
    """The calls in flight of one cached ``def``."""

    def __init__(self) -> None:
        self._calls: dict[Hashable, _Call[T]] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def run(self, key: Hashable, compute: Callable[[], T]) -> T:
        """Return ``compute()``, run once for every caller arriving while it runs.

        Args:
            key: What the callers share.
            compute: Produces the value (and stores it, so later callers hit).

        Returns:
            The value ``compute`` returned, to the caller that ran it and to each
            caller that waited for it.

        Raises:
            BaseException: Whatever ``compute`` raised, to every caller.
        """
        call: _Call[T] = _Call()
        current = self._calls.setdefault(key, call)
        if current is not call:
            current.done.wait()
            if current.error is not None:
                raise current.error
            return current.value  # type: ignore[return-value] # set when no error
        try:
            value = compute()
        except BaseException as error:
            call.error = error
            raise
        else:
            call.value = value
            return value
        finally:
            del self._calls[key]
            call.done.set()


class _AsyncCall:
    """One computation in flight, as tasks of one event loop see it."""

    __slots__ = ("loop", "task", "waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        self.loop = loop
        self.task = task
        self.waiters = 0


class AsyncFlights:
    """The calls in flight of one cached ``async def``."""

    def __init__(self) -> None:
        self._calls: dict[Hashable, _AsyncCall] = {}

    def __len__(self) -> int:
        return len(self._calls)

    async def run(self, key: Hashable, compute: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Return ``await compute()``, run once for every task arriving while it runs.

        The computation runs in a task of its own. A caller cancelled while
        waiting leaves; the computation is cancelled only when no caller is
        left. Calls from another event loop than the running computation's
        compute on their own.

        Args:
            key: What the callers share.
            compute: Produces the value (and stores it, so later callers hit).

        Returns:
            The value, to every caller.

        Raises:
            BaseException: Whatever the computation raised, to every caller.
        """
        loop = asyncio.get_running_loop()
        call = self._calls.get(key)
        if call is None or call.loop is not loop:
            task = loop.create_task(compute())
            call = _AsyncCall(loop, task)
            self._calls[key] = call
            task.add_done_callback(self._finisher(key, call))
        call.waiters += 1
        try:
            return await asyncio.shield(call.task)
        finally:
            call.waiters -= 1
            if not call.waiters and not call.task.done():
                call.task.cancel()  # the last caller left: nobody wants the value

    def _finisher(self, key: Hashable, call: _AsyncCall) -> Callable[[asyncio.Task[Any]], None]:
        def finished(task: asyncio.Task[Any]) -> None:
            if self._calls.get(key) is call:
                del self._calls[key]
            if not task.cancelled():
                task.exception()  # retrieved: every waiter may have left before it failed

        return finished
