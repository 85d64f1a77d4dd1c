"""One shared timer per time limit and event loop: the machinery behind async timeouts."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any

from buttress.errors import DeadlineExceededError
from buttress.resilience._base import logger, notify

if TYPE_CHECKING:
    from collections.abc import Callable

    from buttress.resilience._base import ResilienceListener

__all__ = ["CANCELLING", "EXPIRED", "Limit", "Running"]

# A running call is a list, the cheapest mutable record; these are its fields.
DEADLINE, TASK, CANCELLING, EXPIRED = range(4)


class Limit:
    """One time limit applied to one function: its label, its seconds, its timers.

    ``asyncio.timeout`` schedules a timer for every call and cancels it when
    the call ends — most of the cost of a call that ends in time. Here every
    call under one limit shares one timer per event loop (`Running`), armed
    at the oldest running call's deadline and moved on when it fires, so a
    call that ends in time only adds itself to a dict and takes itself out.
    A call past its deadline has its task cancelled; when that cancellation
    comes back out of the call it becomes a timeout, unless someone else
    cancelled the task too — the rule (``Task.uncancel``) ``asyncio.timeout``
    follows, so the two nest with each other and with task groups.
    """

    __slots__ = ("_lock", "label", "limit", "listeners", "loops")

    def __init__(self, label: str, limit: float, listeners: tuple[ResilienceListener, ...]) -> None:
        self.label = label
        self.limit = limit
        self.listeners = listeners
        self.loops: dict[asyncio.AbstractEventLoop, Running] = {}
        self._lock = threading.Lock()

    def overrun(self, elapsed: float) -> DeadlineExceededError:
        """Log and announce a call that took ``elapsed`` seconds: the error to raise."""
        logger.warning("%s took %.3fs, over its limit of %.3fs", self.label, elapsed, self.limit)
        notify(self.listeners, "on_timeout", self.label, self.limit, elapsed)
        return DeadlineExceededError(self.label, self.limit, elapsed)

    def running(self, loop: asyncio.AbstractEventLoop) -> Running:
        """The calls under this limit on ``loop`` (looked up in `loops` first)."""
        with self._lock:
            running = self.loops.get(loop)
            if running is None:
                # Forget closed loops (a test suite runs one per test) before adding.
                for old in [old for old in self.loops if old.is_closed()]:
                    del self.loops[old]
                running = self.loops[loop] = Running(loop)
            return running


class Running:
    """The calls under one limit on one event loop, oldest (earliest deadline) first.

    Only the loop's own thread touches it: calls start and end in their task,
    and the timer fires on the loop.
    """

    __slots__ = ("armed", "calls", "clock", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        # The loop's clock; time.monotonic itself when that is what the loop uses.
        default = getattr(type(loop), "time", None) is asyncio.BaseEventLoop.time
        self.clock: Callable[[], float] = time.monotonic if default else loop.time
        # id(call) -> call. One limit, so insertion order is deadline order.
        self.calls: dict[int, list[Any]] = {}
        self.armed = False

    def arm(self, when: float) -> None:
        """Have `fire` run at ``when``."""
        self.loop.call_at(when, self.fire, when)
        self.armed = True

    def fire(self, when: float) -> None:
        """Cancel every call past its deadline; re-arm for the oldest one left."""
        self.armed = False
        # The loop runs a timer up to its clock resolution early: `when` has come.
        now = max(self.clock(), when)
        calls = self.calls
        while calls:
            key, call = next(iter(calls.items()))
            if call[DEADLINE] > now:
                self.arm(call[DEADLINE])
                return
            del calls[key]
            call[EXPIRED] = True
            call[TASK].cancel()
