"""A Policy runs its common call in one fused wrapper; it must behave exactly like the stack.

Hypothesis scripts a run of calls (each attempt succeeds, fails in a retried or
a counted or an excluded way, raises something that is not an Exception, or
overruns its time limit) with time passing for the breakers in between, and
plays it through a `Policy` and through the same three decorators stacked by
hand. Results, errors, attempts, breaker states and listener events must match
call by call, for def and async def.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Callable
from typing import Any
from unittest import mock

import pybreaker
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from buttress.resilience import (
    CircuitBreaker,
    CircuitState,
    Policy,
    ResilienceListener,
    RetryBudget,
    resilience_testing,
    retry,
    timeout,
)

LIMIT = 0.02
"""Seconds each attempt may take; a slow attempt would take 1 s.

An ``async def`` really sleeps and is cut at the limit. A ``def`` cannot be cut
and is timed with ``time.monotonic`` (read when it is decorated), so for the
``def`` flavour the decorators are built with a fake monotonic clock that a
slow attempt moves on: no real sleeping, and no stall of a busy machine
mistaken for an overrun.
"""

_names = itertools.count()


class Down(Exception):  # noqa: N818 - reads as the dependency's state
    """Retried, and counted by the breaker."""


class Broken(Exception):  # noqa: N818 - reads as the dependency's state
    """Not retried, counted by the breaker."""


class Missing(Exception):  # noqa: N818 - an answer, not an outage
    """Not retried, excluded by the breaker."""


class Abort(BaseException):
    """Not an Exception: neither retried nor counted."""


ERRORS: dict[str, type[BaseException]] = {
    "down": Down,
    "broken": Broken,
    "missing": Missing,
    "abort": Abort,
}
OUTCOMES = st.sampled_from(["ok", "ok", "down", "down", "broken", "missing", "abort", "slow"])
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("call"), st.lists(OUTCOMES, min_size=1, max_size=3)),
        st.tuples(st.just("wait"), st.sampled_from([1.0, 5.0, 11.0])),
    ),
    max_size=10,
)


class Events(ResilienceListener):
    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    def on_retry(self, name: str, attempt: int, error: BaseException, wait: float) -> None:
        self.seen.append(("retry", name, attempt, type(error).__name__))

    def on_give_up(self, name: str, attempts: int, error: BaseException, reason: str) -> None:
        self.seen.append(("give_up", name, attempts, type(error).__name__, reason))

    def on_state_change(self, name: str, old: CircuitState, new: CircuitState) -> None:
        self.seen.append(("state", old, new))  # breaker names differ by construction

    def on_circuit_rejected(self, name: str, remaining: float) -> None:
        self.seen.append(("rejected", round(remaining, 6)))

    def on_timeout(self, name: str, seconds: float, elapsed: float) -> None:
        self.seen.append(("timeout", name, seconds))


class System:
    """One way of protecting the dependency (fused Policy or hand stack), and what it saw."""

    def __init__(
        self, is_async: bool, build: Callable[..., Callable[..., Any]], shape: str
    ) -> None:
        stored = shape == "storage"
        self.limited = shape != "no-timeout"  # without a limit, "slow" is just an answer
        self.now = 0.0  # the breakers' clock
        self.ticks = 0.0  # the time limit's clock, for a def
        self.events = Events()
        self.plan: list[str] = []
        self.attempts = 0
        self.breaker = CircuitBreaker(
            f"fused-{next(_names)}",
            fail_max=3,
            reset_timeout=10.0,
            exclude=Missing,
            listeners=[self.events],
            clock=lambda: self.now,
            # A storage trusted for an hour (of the fake clock) keeps the fused path in use,
            # with its failure counting done in a worker thread for async callers.
            storage=pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED) if stored else None,
            sync_interval=3600.0,
        )
        # A small budget (refilled by the breakers' clock) runs out within a script.
        budget = RetryBudget(ratio=0.5, min_per_second=0.1, capacity=1, clock=lambda: self.now)
        parts: dict[str, Any] = {
            "retry": retry(
                on=(Down, TimeoutError),
                attempts=3,
                listeners=[self.events],
                budget=budget if shape == "budget" else None,
            ),
            "breaker": self.breaker,
        }
        if shape != "no-timeout":
            parts["timeout"] = timeout(LIMIT, listeners=[self.events])
        self.is_async = is_async
        if is_async:
            self.call = build(self.dependency_async, **parts)
        else:
            with mock.patch("time.monotonic", self.clock):
                self.call = build(self.dependency, **parts)

    def clock(self) -> float:
        return self.ticks

    def next_outcome(self) -> str:
        self.attempts += 1
        return self.plan.pop(0) if self.plan else "ok"

    def dependency(self) -> str:
        outcome = self.next_outcome()
        if outcome == "slow":
            self.ticks += 1.0
        elif outcome in ERRORS:
            raise ERRORS[outcome](outcome)
        return outcome

    async def dependency_async(self) -> str:
        outcome = self.next_outcome()
        if outcome == "slow" and self.limited:
            await asyncio.sleep(1.0)  # cut at LIMIT
        elif outcome in ERRORS:
            raise ERRORS[outcome](outcome)
        return outcome

    def run(self, plan: list[str]) -> tuple[Any, ...]:
        self.plan, self.attempts = list(plan), 0
        try:
            result = asyncio.run(self.call()) if self.is_async else self.call()
        except BaseException as error:  # noqa: BLE001 - the outcome is what is compared
            message = str(error).replace(self.breaker.name, "<breaker>")
            message = re.sub(r"it ran [0-9.]+s", "it ran <elapsed>", message)
            outcome: Any = (type(error).__name__, message, getattr(error, "__notes__", []))
        else:
            outcome = ("returned", result)
        return outcome, self.attempts, self.breaker.state, self.breaker.failures


def fused_policy(fn: Callable[..., Any], **parts: Any) -> Callable[..., Any]:
    return Policy(**parts)(fn)


def stacked(fn: Callable[..., Any], **parts: Any) -> Callable[..., Any]:
    limited = parts["timeout"](fn) if "timeout" in parts else fn
    return parts["retry"](parts["breaker"](limited))


@pytest.mark.parametrize("shape", ["local", "storage", "no-timeout", "budget"])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=STEPS)
def test_the_fused_policy_behaves_like_its_parts_stacked(
    is_async: bool, shape: str, steps: list[tuple[str, Any]]
) -> None:
    fused = System(is_async, fused_policy, shape)
    stack = System(is_async, stacked, shape)
    with resilience_testing():
        for kind, value in steps:
            if kind == "wait":
                fused.now += value
                stack.now += value
                continue
            assert fused.run(value) == stack.run(value), value
            assert fused.events.seen == stack.events.seen
