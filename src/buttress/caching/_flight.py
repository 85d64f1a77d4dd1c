"""Single-flight: concurrent misses on one key run the function once.

Threads and asyncio tasks each have their own table of calls in flight, keyed
by the canonical key. The first caller to put its call in the table (an atomic
``dict.setdefault``) computes; the others wait for its outcome and get the same
value or the same exception. No lock is shared between keys.

An async computation runs in a task of its own, shielded from its callers: a
caller that is cancelled stops waiting, and the computation is cancelled only
when its last caller has left. A caller is cancelled only by its own
cancellation: a computation being torn down is never joined, and a caller whose
computation ends cancelled while it was not cancelled itself waits for a fresh
one (see `AsyncFlights.run`).
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Hashable

__all__ = ["AsyncFlights", "Flights"]

T = TypeVar("T")

_ROUNDS = 3
"""How many computations a caller waits for when each ends cancelled but the caller was not."""


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
        waiting leaves at once, with `asyncio.CancelledError`; the computation
        runs on for the callers still waiting, and is cancelled (and taken out
        of the table, so the next caller starts afresh) when none is left. A
        computation cancelled by anything else is not joined either.

        A caller is cancelled only by its own cancellation. When the computation
        it waits for ends cancelled although the caller itself is not being
        cancelled (someone else cancelled the computation, or it raised
        `asyncio.CancelledError` itself), the caller joins or starts a fresh
        computation. It waits for three computations at most: when the third also
        ends cancelled, the cancellation is the computation's own outcome and
        reaches the caller, as it would reach it without single-flight. A caller
        whose task was cancelled before and went on without ``uncancel()`` counts
        as being cancelled, and gets the computation's cancellation at once.

        Calls from another event loop than the running computation's compute on
        their own.

        Args:
            key: What the callers share.
            compute: Produces the value (and stores it, so later callers hit).

        Returns:
            The value, to every caller.

        Raises:
            asyncio.CancelledError: When the caller is cancelled, or its third
                computation in a row ended cancelled.
            BaseException: Whatever the computation raised, to every caller.
        """
        loop = asyncio.get_running_loop()
        rounds = 1
        while True:
            call = self._calls.get(key)
            if call is None or call.loop is not loop or call.task.cancelling():
                call = self._start(key, loop, compute)  # nothing to join, or it is torn down
            call.waiters += 1
            try:
                return await asyncio.shield(call.task)
            except asyncio.CancelledError:
                if rounds == _ROUNDS or not _cancelled_for(call):
                    raise
                rounds += 1  # its finisher, run before any waiter wakes, has dropped the call
            finally:
                call.waiters -= 1
                if not call.waiters and not call.task.done():
                    call.task.cancel()  # the last caller left: nobody wants the value
                    self._drop(key, call)  # so no caller joins it while it is torn down

    def _start(
        self,
        key: Hashable,
        loop: asyncio.AbstractEventLoop,
        compute: Callable[[], Coroutine[Any, Any, Any]],
    ) -> _AsyncCall:
        """Start a computation of ``key`` and put it in the table, in place of any other."""
        call = _AsyncCall(loop, loop.create_task(compute()))
        self._calls[key] = call
        call.task.add_done_callback(self._finisher(key, call))
        return call

    def _drop(self, key: Hashable, call: _AsyncCall) -> None:
        """Take ``call`` out of the table, unless another call of ``key`` has taken its place."""
        if self._calls.get(key) is call:
            del self._calls[key]

    def _finisher(self, key: Hashable, call: _AsyncCall) -> Callable[[asyncio.Task[Any]], None]:
        def finished(task: asyncio.Task[Any]) -> None:
            self._drop(key, call)
            if not task.cancelled():
                task.exception()  # retrieved: every waiter may have left before it failed

        return finished


def _cancelled_for(call: _AsyncCall) -> bool:
    """Whether ``call`` ended cancelled while the task waiting for it is not being cancelled."""
    waiter = asyncio.current_task()
    return call.task.cancelled() and waiter is not None and not waiter.cancelling()
