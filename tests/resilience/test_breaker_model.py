"""A state machine drives a breaker and a small reference model side by side, sync and async.

Calls either finish at once or stay pending (a thread or a task blocked inside
the protected function) while time passes and other calls come and go, so
leases, stale outcomes and trial permits are exercised, not only the happy path.
The same machines run again with a pybreaker storage read on every call, where
async callers reach the storage from worker threads: one process must still
follow the model.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

import pybreaker
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from buttress.errors import CircuitOpenError
from buttress.resilience import CircuitBreaker, CircuitState

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
OUTCOMES = ("ok", "fail", "excluded", "abort")
_names = itertools.count()


class Down(Exception):  # noqa: N818 - reads as the dependency's state
    pass


class Missing(Exception):  # noqa: N818 - excluded: an answer, not an outage
    pass


class Abort(BaseException):
    """Stands for a cancellation or an interrupt: counts neither way."""


def act(outcome: str) -> str:
    if outcome == "fail":
        raise Down
    if outcome == "excluded":
        raise Missing
    if outcome == "abort":
        raise Abort
    return "done"


@dataclass
class Model:
    """The documented rules, written as plainly as possible."""

    fail_max: int
    reset_timeout: float
    max_trials: int
    lease: float
    state: CircuitState = CLOSED
    gen: int = 0
    failures: int = 0
    opened_at: float = 0.0
    probes: dict[int, float] = field(default_factory=dict)
    successes: int = 0
    tickets: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def move(self, state: CircuitState, now: float) -> None:
        self.state, self.gen = state, self.gen + 1
        self.probes, self.successes = {}, 0
        if state is OPEN:
            self.opened_at = now
        if state is CLOSED:
            self.failures = 0

    def admit(self, now: float) -> tuple[int, int] | None:
        """A ticket (0 while closed) and the generation, or None when refused."""
        if self.state is OPEN:
            if self.opened_at + self.reset_timeout - now > 0:
                return None
            self.move(HALF_OPEN, now)
        if self.state is CLOSED:
            return (0, self.gen)
        if len(self.probes) + self.successes >= self.max_trials:
            # Full: a trial past its lease hands its permit over (the oldest first).
            oldest = min(self.probes, key=self.probes.__getitem__, default=None)
            if oldest is None or self.probes[oldest] > now:
                return None
            del self.probes[oldest]
        ticket = next(self.tickets)
        self.probes[ticket] = now + self.lease
        return (ticket, self.gen)

    def finish(self, admitted: tuple[int, int], outcome: str, now: float) -> None:
        ticket, gen = admitted
        if gen != self.gen:
            return
        if ticket == 0:
            if outcome == "fail":
                self.failures += 1
                if self.failures >= self.fail_max:
                    self.move(OPEN, now)
            elif outcome == "ok":
                self.failures = 0
            return
        if self.probes.pop(ticket, None) is None:
            return  # its permit was handed over: it no longer counts
        if outcome == "fail":
            self.move(OPEN, now)
        elif outcome == "ok":
            self.successes += 1
            if self.successes >= self.max_trials:
                self.move(CLOSED, now)

    def visible(self, now: float) -> CircuitState:
        if self.state is OPEN and self.opened_at + self.reset_timeout - now <= 0:
            return HALF_OPEN
        return self.state


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Pending:
    """A call blocked inside the protected function until it is released."""

    outcome: str
    admitted: tuple[int, int] | None
    release: Any
    finished: Any
    result: list[object] = field(default_factory=list)


class Driver:
    """Makes immediate and pending calls the sync way (threads) or the async way (tasks)."""

    is_async = False

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker

    def call(self, outcome: str) -> object:
        fn = self.breaker(act)
        try:
            return fn(outcome)
        except (Down, Missing, Abort, CircuitOpenError) as error:
            return error

    def begin(self, outcome: str) -> Pending:
        release, entered = threading.Event(), threading.Event()
        pending = Pending(outcome, None, release, threading.Event())

        def blocked() -> str:
            entered.set()
            release.wait(10)
            return act(outcome)

        def run() -> None:
            try:
                pending.result.append(self.breaker.call(blocked))
            except (Down, Missing, Abort, CircuitOpenError) as error:
                pending.result.append(error)
            finally:
                entered.set()
                pending.finished.set()

        threading.Thread(target=run, daemon=True).start()
        entered.wait(10)
        return pending

    def end(self, pending: Pending) -> None:
        pending.release.set()
        pending.finished.wait(10)

    def close(self) -> None:
        pass


class AsyncDriver(Driver):
    is_async = True

    def __init__(self, breaker: CircuitBreaker) -> None:
        super().__init__(breaker)
        self.loop = asyncio.new_event_loop()

    def call(self, outcome: str) -> object:
        @self.breaker
        async def fn() -> str:
            await asyncio.sleep(0)
            return act(outcome)

        async def run() -> object:
            try:
                return await fn()
            except (Down, Missing, Abort, CircuitOpenError) as error:
                return error

        return self.loop.run_until_complete(run())

    def begin(self, outcome: str) -> Pending:
        release, entered = asyncio.Event(), asyncio.Event()
        pending = Pending(outcome, None, release, None)

        async def blocked() -> str:
            entered.set()
            await release.wait()
            return act(outcome)

        async def run() -> None:
            try:
                pending.result.append(await self.breaker.acall(blocked))
            except (Down, Missing, Abort, CircuitOpenError) as error:
                pending.result.append(error)
            finally:
                entered.set()

        pending.finished = self.loop.create_task(run())
        self.loop.run_until_complete(entered.wait())
        return pending

    def end(self, pending: Pending) -> None:
        pending.release.set()
        self.loop.run_until_complete(pending.finished)

    def close(self) -> None:
        self.loop.close()


class BreakerMachine(RuleBasedStateMachine):
    driver_class: type[Driver] = Driver
    stored = False  # with a pybreaker storage, synced on every call
    pending = Bundle("pending")

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.open_calls: list[Pending] = []

    @initialize(
        fail_max=st.integers(1, 3),
        reset_timeout=st.integers(0, 4),
        max_trials=st.integers(1, 3),
        lease=st.integers(1, 5),
    )
    def make(self, fail_max: int, reset_timeout: int, max_trials: int, lease: int) -> None:
        self.model = Model(fail_max, float(reset_timeout), max_trials, float(lease))
        self.breaker = CircuitBreaker(
            f"model-{next(_names)}",
            fail_max=fail_max,
            reset_timeout=reset_timeout,
            half_open_max_calls=max_trials,
            probe_lease=lease,
            exclude=Missing,
            clock=self.clock,
            storage=pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED) if self.stored else None,
            sync_interval=0,
        )
        self.driver = self.driver_class(self.breaker)

    def expect(self, admitted: tuple[int, int] | None, got: object, outcome: str) -> None:
        if admitted is None:
            assert isinstance(got, CircuitOpenError), got
        else:
            expected = {"ok": str, "fail": Down, "excluded": Missing, "abort": Abort}[outcome]
            assert isinstance(got, expected), (outcome, got)

    @rule(outcome=st.sampled_from(OUTCOMES))
    def call(self, outcome: str) -> None:
        admitted = self.model.admit(self.clock.now)
        got = self.driver.call(outcome)
        if admitted is not None:
            self.model.finish(admitted, outcome, self.clock.now)
        self.expect(admitted, got, outcome)

    @precondition(lambda self: len(self.open_calls) < 4)
    @rule(target=pending, outcome=st.sampled_from(OUTCOMES))
    def begin(self, outcome: str) -> Pending:
        admitted = self.model.admit(self.clock.now)
        pending = self.driver.begin(outcome)
        pending.admitted = admitted
        if admitted is None:
            assert pending.result, "a refused call must not reach the function"
            assert isinstance(pending.result[0], CircuitOpenError)
        else:
            assert not pending.result, "an admitted call must be running"
        self.open_calls.append(pending)
        return pending

    @rule(pending=consumes(pending))
    def end(self, pending: Pending) -> None:
        self.open_calls.remove(pending)
        if pending.admitted is None:
            return
        self.driver.end(pending)
        self.model.finish(pending.admitted, pending.outcome, self.clock.now)
        self.expect(pending.admitted, pending.result[0], pending.outcome)

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.0, 3.0, 5.0]))
    def wait(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule()
    def wait_out_the_reset_timeout(self) -> None:
        self.clock.now += self.model.reset_timeout

    @rule()
    def wait_out_a_lease(self) -> None:
        self.clock.now += self.model.lease

    @invariant()
    def agrees_with_the_model(self) -> None:
        if hasattr(self, "breaker"):
            assert self.breaker.state is self.model.visible(self.clock.now)
            assert self.breaker.failures == self.model.failures

    def teardown(self) -> None:
        if hasattr(self, "driver"):
            for pending in self.open_calls:
                if pending.admitted is not None:
                    self.driver.end(pending)
            self.driver.close()


class AsyncBreakerMachine(BreakerMachine):
    driver_class = AsyncDriver


class StoredBreakerMachine(BreakerMachine):
    stored = True


class StoredAsyncBreakerMachine(BreakerMachine):
    driver_class = AsyncDriver
    stored = True


machine_settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
for machine in (
    BreakerMachine,
    AsyncBreakerMachine,
    StoredBreakerMachine,
    StoredAsyncBreakerMachine,
):
    machine.TestCase.settings = machine_settings
TestSyncBreakerAgainstModel = BreakerMachine.TestCase
TestAsyncBreakerAgainstModel = AsyncBreakerMachine.TestCase
TestStoredSyncBreakerAgainstModel = StoredBreakerMachine.TestCase
TestStoredAsyncBreakerAgainstModel = StoredAsyncBreakerMachine.TestCase
