"""CircuitBreaker: states, trial permits, exclusions, the registry, listeners and bad input."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import inspect
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pybreaker
import pytest
from flavours import Flavour, Script

from buttress.errors import CircuitOpenError, ConfigurationError
from buttress.resilience import (
    CircuitBreaker,
    CircuitState,
    Policy,
    ResilienceListener,
    circuit_breaker,
)


class Down(Exception):  # noqa: N818 - reads as the dependency's state
    pass


class Missing(Exception):  # noqa: N818 - an answer, not an outage
    pass


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder(ResilienceListener):
    def __init__(self) -> None:
        self.changes: list[tuple[str, CircuitState, CircuitState]] = []
        self.rejected: list[tuple[str, float]] = []

    def on_state_change(self, name: str, old: CircuitState, new: CircuitState) -> None:
        self.changes.append((name, old, new))

    def on_circuit_rejected(self, name: str, remaining: float) -> None:
        self.rejected.append((name, remaining))


def unique(prefix: str = "dep") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def breaker(**kwargs: Any) -> CircuitBreaker:
    return CircuitBreaker(unique(), **kwargs)


def fail(flavour: Flavour, fn: Callable[..., Any], times: int, error: type = Down) -> None:
    for _ in range(times):
        with pytest.raises(error):
            flavour.call(fn)


# --- the states -------------------------------------------------------------------------


def test_a_closed_circuit_returns_results_and_keeps_the_kind(flavour: Flavour) -> None:
    cb = breaker()
    fn = cb(flavour.function(Script(5)))
    assert flavour.call(fn, 1) == 5
    assert inspect.iscoroutinefunction(fn) is flavour.is_async
    assert cb.state is CircuitState.CLOSED
    assert cb.failures == 0


def test_fail_max_consecutive_failures_open_the_circuit(flavour: Flavour) -> None:
    clock = FakeClock()
    cb = breaker(fail_max=3, reset_timeout=10.0, clock=clock)
    script = Script(Down())
    fn = cb(flavour.function(script))
    fail(flavour, fn, 2)
    assert (cb.state, cb.failures) == (CircuitState.CLOSED, 2)
    fail(flavour, fn, 1)
    assert cb.state is CircuitState.OPEN
    clock.now += 4.0
    with pytest.raises(CircuitOpenError) as refused:
        flavour.call(fn)
    assert script.calls == 3  # refused without calling the function
    assert refused.value.name == cb.name
    assert refused.value.remaining == pytest.approx(6.0)
    assert refused.value.retry_after == pytest.approx(6.0)


def test_a_success_resets_the_count_of_consecutive_failures(flavour: Flavour) -> None:
    cb = breaker(fail_max=3)
    fn = cb(flavour.function(Script(Down(), Down(), "ok", Down(), Down(), "ok")))
    fail(flavour, fn, 2)
    assert flavour.call(fn) == "ok"
    assert cb.failures == 0
    fail(flavour, fn, 2)
    assert cb.state is CircuitState.CLOSED


def test_excluded_errors_pass_through_and_do_not_count(flavour: Flavour) -> None:
    cb = breaker(fail_max=2, exclude=Missing)
    fn = cb(flavour.function(Script(Down(), Missing(), Missing(), Missing())))
    fail(flavour, fn, 1)
    fail(flavour, fn, 3, Missing)
    assert (cb.state, cb.failures) == (CircuitState.CLOSED, 1)  # neither failure nor success


def test_exclude_takes_a_predicate(flavour: Flavour) -> None:
    cb = breaker(fail_max=1, exclude=lambda error: "404" in str(error))
    fn = cb(flavour.function(Script(Down("404 not found"), Down("503"))))
    fail(flavour, fn, 1)
    assert cb.state is CircuitState.CLOSED
    fail(flavour, fn, 1)
    assert cb.state is CircuitState.OPEN


def test_after_reset_timeout_one_trial_success_closes_the_circuit(flavour: Flavour) -> None:
    clock = FakeClock()
    recorder = Recorder()
    cb = breaker(fail_max=1, reset_timeout=5.0, clock=clock, listeners=[recorder])
    fn = cb(flavour.function(Script(Down(), "recovered")))
    fail(flavour, fn, 1)
    clock.now += 5.0
    assert cb.state is CircuitState.HALF_OPEN
    assert flavour.call(fn) == "recovered"
    assert cb.state is CircuitState.CLOSED
    assert [(old, new) for _, old, new in recorder.changes] == [
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ]


def test_a_failed_trial_opens_the_circuit_for_another_reset_timeout(flavour: Flavour) -> None:
    clock = FakeClock()
    cb = breaker(fail_max=1, reset_timeout=5.0, clock=clock)
    fn = cb(flavour.function(Script(Down())))
    fail(flavour, fn, 1)
    clock.now += 6.0
    fail(flavour, fn, 1)  # the trial
    assert cb.state is CircuitState.OPEN
    clock.now += 4.9
    with pytest.raises(CircuitOpenError) as refused:
        flavour.call(fn)
    assert refused.value.remaining == pytest.approx(0.1)


def test_half_open_needs_every_trial_to_succeed(flavour: Flavour) -> None:
    clock = FakeClock()
    cb = breaker(fail_max=1, reset_timeout=1.0, half_open_max_calls=3, clock=clock)
    fn = cb(flavour.function(Script(Down(), "a", "b", "c", "d")))
    fail(flavour, fn, 1)
    clock.now += 1.0
    assert [flavour.call(fn), flavour.call(fn)] == ["a", "b"]
    assert cb.state is CircuitState.HALF_OPEN
    assert flavour.call(fn) == "c"
    assert cb.state is CircuitState.CLOSED


def test_call_and_acall_go_through_the_breaker() -> None:
    cb = breaker(fail_max=1)

    def add(a: int, b: int) -> int:
        return a + b

    async def aadd(a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a + b

    assert cb.call(add, 1, b=2) == 3
    assert asyncio.run(cb.acall(aadd, 2, b=3)) == 5
    with pytest.raises(ZeroDivisionError):
        cb.call(lambda: 1 / 0)
    with pytest.raises(CircuitOpenError):
        cb.call(add, 1, 2)
    with pytest.raises(CircuitOpenError):
        asyncio.run(cb.acall(aadd, 1, 2))


def test_an_async_failure_counts_like_a_sync_one() -> None:
    cb = breaker(fail_max=2)

    @cb
    async def broken() -> None:
        await asyncio.sleep(0)
        raise Down

    for _ in range(2):
        with pytest.raises(Down):
            asyncio.run(broken())
    assert cb.state is CircuitState.OPEN


def test_base_exceptions_do_not_count(flavour: Flavour) -> None:
    cb = breaker(fail_max=1)
    fn = cb(flavour.function(Script(KeyboardInterrupt())))
    with pytest.raises(KeyboardInterrupt):
        flavour.call(fn)
    assert (cb.state, cb.failures) == (CircuitState.CLOSED, 0)


def test_operators_can_open_and_close_the_circuit() -> None:
    cb = breaker(fail_max=1)
    cb.open()
    with pytest.raises(CircuitOpenError):
        cb.call(print)
    cb.close()
    assert cb.call(lambda: 3) == 3
    assert "closed" in repr(cb)


# --- trial permits under concurrency -------------------------------------------------------


def test_half_open_lets_exactly_the_permitted_tasks_through() -> None:
    clock = FakeClock()
    cb = breaker(fail_max=1, reset_timeout=1.0, half_open_max_calls=3, clock=clock)
    cb.open()
    clock.now += 1.0
    reached = 0

    @cb
    async def probe() -> str:
        nonlocal reached
        reached += 1
        await asyncio.sleep(0.01)
        return "ok"

    async def main() -> list[object]:
        return await asyncio.gather(*(probe() for _ in range(1000)), return_exceptions=True)

    outcomes = asyncio.run(main())
    assert reached == 3
    assert outcomes.count("ok") == 3
    assert sum(isinstance(o, CircuitOpenError) for o in outcomes) == 997
    assert cb.state is CircuitState.CLOSED


def test_half_open_lets_exactly_the_permitted_threads_through() -> None:
    clock = FakeClock()
    cb = breaker(fail_max=1, reset_timeout=1.0, half_open_max_calls=2, clock=clock)
    cb.open()
    clock.now += 1.0
    inside = threading.Barrier(3, timeout=5)  # the two permitted trials and the main thread
    release = threading.Event()
    reached = 0
    refused = 0
    lock = threading.Lock()

    @cb
    def probe() -> None:
        nonlocal reached
        with lock:
            reached += 1
        inside.wait()
        release.wait(5)

    def caller() -> None:
        nonlocal refused
        try:
            probe()
        except CircuitOpenError:
            with lock:
                refused += 1

    threads = [threading.Thread(target=caller) for _ in range(16)]
    for thread in threads:
        thread.start()
    inside.wait()  # both trials are running, at once: no lock is held during a call
    release.set()
    for thread in threads:
        thread.join(5)
    assert (reached, refused) == (2, 14)
    assert cb.state is CircuitState.CLOSED


def test_a_hung_trial_gives_its_permit_back_after_its_lease() -> None:
    clock = FakeClock()
    cb = breaker(fail_max=1, reset_timeout=10.0, probe_lease=2.0, clock=clock)
    cb.open()
    clock.now += 10.0
    hung = asyncio.Event()
    entered = asyncio.Event()

    @cb
    async def dependency(hang: bool) -> str:
        if hang:
            entered.set()
            await hung.wait()
            raise Down  # too late to count
        return "ok"

    async def main() -> None:
        trial = asyncio.create_task(dependency(hang=True))
        await entered.wait()
        with pytest.raises(CircuitOpenError) as refused:
            await dependency(hang=False)
        assert refused.value.remaining == pytest.approx(2.0)  # when the lease ends
        clock.now += 2.0
        assert await dependency(hang=False) == "ok"  # the permit came back
        assert cb.state is CircuitState.CLOSED
        hung.set()
        with pytest.raises(Down):
            await trial
        assert cb.state is CircuitState.CLOSED  # the stale trial's failure did not count

    asyncio.run(main())


def test_a_trial_slower_than_its_lease_still_closes_the_circuit_if_nobody_took_over() -> None:
    clock = FakeClock()
    cb = breaker(fail_max=1, reset_timeout=1.0, probe_lease=2.0, clock=clock)
    cb.open()
    clock.now += 1.0

    def slow_trial() -> str:
        clock.now += 2.5  # outlives its lease: slow, but the dependency answered
        return "late"

    assert cb.call(slow_trial) == "late"
    assert cb.state is CircuitState.CLOSED  # its permit was never handed on: it counts


def test_a_trial_whose_permit_was_taken_over_no_longer_counts() -> None:
    clock = FakeClock()
    cb = breaker(fail_max=1, reset_timeout=1.0, probe_lease=2.0, clock=clock)
    cb.open()
    clock.now += 1.0
    inside, release = threading.Event(), threading.Event()
    outcome: list[object] = []

    def hung_trial() -> str:
        inside.set()
        release.wait(10)
        raise Down  # the old trial fails, after another took over and succeeded

    def run() -> None:
        try:
            cb.call(hung_trial)
        except Down as error:
            outcome.append(error)

    worker = threading.Thread(target=run)
    worker.start()
    inside.wait(10)
    with pytest.raises(CircuitOpenError):
        cb.call(lambda: "refused")  # the permit is held, within its lease
    clock.now += 2.0
    assert cb.call(lambda: "ok") == "ok"  # past the lease: the permit is handed over
    assert cb.state is CircuitState.CLOSED
    release.set()
    worker.join(10)
    assert outcome
    assert cb.state is CircuitState.CLOSED  # the stale trial's failure did not count


def test_the_trial_lease_does_not_follow_reset_timeout() -> None:
    assert breaker(reset_timeout=0.2).probe_lease == 30.0
    assert breaker(reset_timeout=120.0).probe_lease == 30.0


def test_a_healthy_dependency_slower_than_reset_timeout_closes_the_circuit() -> None:
    """Real time, four callers: 0.3-second answers against a 0.2-second reset_timeout."""
    cb = breaker(fail_max=1, reset_timeout=0.2)
    cb.open()
    stop = time.monotonic() + 5.0  # bounded: the circuit closes well before

    @cb
    def healthy_but_slow() -> str:
        time.sleep(0.3)
        return "ok"

    answered: list[str] = []

    def caller() -> None:
        while time.monotonic() < stop and cb.state is not CircuitState.CLOSED:
            try:
                answered.append(healthy_but_slow())
            except CircuitOpenError:
                time.sleep(0.01)

    callers = [threading.Thread(target=caller) for _ in range(4)]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join(10)
    assert cb.state is CircuitState.CLOSED
    assert answered


def test_sixteen_threads_count_every_failure_exactly() -> None:
    recorder = Recorder()
    cb = breaker(fail_max=10_000, listeners=[recorder])
    per_thread = 200

    @cb
    def broken() -> None:
        raise Down

    def hammer() -> None:
        for _ in range(per_thread):
            with contextlib.suppress(Down):
                broken()

    threads = [threading.Thread(target=hammer) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert cb.failures == 16 * per_thread
    assert recorder.changes == []


def test_sixteen_threads_open_the_circuit_once_at_fail_max() -> None:
    recorder = Recorder()
    cb = breaker(fail_max=500, reset_timeout=60.0, listeners=[recorder])
    calls = 0
    refused = 0
    lock = threading.Lock()

    @cb
    def broken() -> None:
        nonlocal calls
        with lock:
            calls += 1
        raise Down

    def hammer() -> None:
        nonlocal refused
        for _ in range(100):
            try:
                broken()
            except Down:
                pass
            except CircuitOpenError:
                with lock:
                    refused += 1

    threads = [threading.Thread(target=hammer) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert calls + refused == 1600
    assert calls >= 500  # calls already running when it opened ran to their end
    assert [new for _, _, new in recorder.changes] == [CircuitState.OPEN]
    assert len(recorder.rejected) == refused


def test_a_thousand_tasks_count_every_failure_exactly() -> None:
    cb = breaker(fail_max=10_000)

    @cb
    async def broken() -> None:
        await asyncio.sleep(0)
        raise Down

    async def main() -> list[object]:
        return await asyncio.gather(*(broken() for _ in range(1000)), return_exceptions=True)

    outcomes = asyncio.run(main())
    assert all(isinstance(o, Down) for o in outcomes)
    assert cb.failures == 1000


# --- the registry --------------------------------------------------------------------------


def test_one_name_is_one_breaker() -> None:
    name = unique()
    first = CircuitBreaker(name, fail_max=2)
    assert CircuitBreaker(name, fail_max=2) is first
    assert circuit_breaker(name, fail_max=2) is first
    assert CircuitBreaker.registered()[name] is first


def test_functions_decorated_with_one_name_share_its_state(flavour: Flavour) -> None:
    name = unique()
    charge = circuit_breaker(name, fail_max=2)(flavour.function(Script(Down())))
    refund = circuit_breaker(name, fail_max=2)(flavour.function(Script("refunded")))
    fail(flavour, charge, 2)
    with pytest.raises(CircuitOpenError):
        flavour.call(refund)


def test_one_name_with_other_settings_is_refused() -> None:
    name = unique()
    held = CircuitBreaker(name, fail_max=2)
    with pytest.raises(ConfigurationError, match=r"fail_max=3 \(existing: 2\)"):
        CircuitBreaker(name, fail_max=3)
    assert held.fail_max == 2


def test_a_breaker_nobody_holds_leaves_the_registry() -> None:
    name = unique()
    CircuitBreaker(name, fail_max=2)
    gc.collect()
    assert name not in CircuitBreaker.registered()
    assert CircuitBreaker(name, fail_max=3).fail_max == 3


# --- listeners and logs -------------------------------------------------------------------


def test_refusals_are_heard_and_state_changes_logged(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    recorder = Recorder()
    cb = breaker(fail_max=1, reset_timeout=3.0, clock=clock, listeners=[recorder])
    with caplog.at_level(logging.INFO, logger="buttress.resilience"):
        with pytest.raises(Down):
            cb.call(Script(Down()).step)
        with pytest.raises(CircuitOpenError):
            cb.call(print)
    assert recorder.rejected == [(cb.name, 3.0)]
    opened = [r for r in caplog.records if "opened" in r.getMessage()]
    assert opened
    assert opened[0].levelno == logging.WARNING


def test_a_failing_listener_does_not_change_the_call() -> None:
    class Broken(ResilienceListener):
        def on_state_change(self, name: str, old: CircuitState, new: CircuitState) -> None:
            raise RuntimeError("metrics backend down")

    cb = breaker(fail_max=1, listeners=[Broken()])
    with pytest.raises(Down):
        cb.call(Script(Down()).step)
    assert cb.state is CircuitState.OPEN


# --- pybreaker storages ---------------------------------------------------------------------


def test_state_is_written_to_a_pybreaker_storage() -> None:
    storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
    clock = FakeClock()
    cb = breaker(fail_max=2, reset_timeout=5.0, storage=storage, clock=clock, sync_interval=0)
    with pytest.raises(Down):
        cb.call(Script(Down()).step)
    assert storage.counter == 1
    with pytest.raises(Down):
        cb.call(Script(Down()).step)
    assert storage.state == pybreaker.STATE_OPEN
    assert storage.opened_at is not None
    clock.now += 5.0
    assert cb.call(lambda: "ok") == "ok"
    assert (storage.state, storage.counter) == (pybreaker.STATE_CLOSED, 0)


def test_a_change_in_the_storage_is_seen_after_the_sync_interval() -> None:
    storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
    clock = FakeClock()
    recorder = Recorder()
    cb = breaker(storage=storage, clock=clock, sync_interval=2.0, listeners=[recorder])
    assert cb.call(lambda: 1) == 1  # reads the storage once
    storage.state = pybreaker.STATE_OPEN  # another process trips it
    storage.opened_at = datetime.now(UTC)
    assert cb.call(lambda: 2) == 2  # the local copy is trusted for sync_interval
    clock.now += 2.0
    with pytest.raises(CircuitOpenError):
        cb.call(lambda: 3)
    assert recorder.changes == [(cb.name, CircuitState.CLOSED, CircuitState.OPEN)]


def test_a_new_process_does_not_reset_shared_counters() -> None:
    storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
    for _ in range(2):
        storage.increment_counter()
    cb = breaker(fail_max=3, storage=storage, sync_interval=0)
    assert cb.state is CircuitState.CLOSED
    assert cb.failures == 2
    with pytest.raises(Down):
        cb.call(Script(Down()).step)
    assert cb.state is CircuitState.OPEN


class Flaky(pybreaker.CircuitMemoryStorage):
    """A storage whose every read and write fails while ``down`` is set."""

    down = False

    def __getattribute__(self, name: str) -> Any:
        if name in {"state", "counter", "opened_at", "increment_counter", "reset_counter"} and (
            object.__getattribute__(self, "down")
        ):
            raise ConnectionError("redis is down")
        return object.__getattribute__(self, name)


def test_a_failing_storage_leaves_the_breaker_working_locally(
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage = Flaky(pybreaker.STATE_CLOSED)
    cb = breaker(fail_max=2, storage=storage, sync_interval=0)
    assert cb.call(lambda: "ok") == "ok"
    storage.down = True
    with caplog.at_level(logging.WARNING, logger="buttress.resilience"):
        assert cb.call(lambda: "still ok") == "still ok"
        for _ in range(2):
            with pytest.raises(Down):
                cb.call(Script(Down()).step)
        assert cb.state is CircuitState.OPEN
    assert [r.levelno for r in caplog.records if "unreachable" in r.getMessage()] == [
        logging.WARNING
    ]
    storage.down = False
    assert cb.state is CircuitState.OPEN  # the next sync writes what happened meanwhile
    assert storage.state == pybreaker.STATE_OPEN


def test_two_breakers_cannot_share_one_storage() -> None:
    storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
    first = breaker(storage=storage)
    with pytest.raises(ConfigurationError, match="trip each other"):
        breaker(storage=storage)
    del first


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fail_max": 0}, "fail_max must be a whole number of at least 1"),
        ({"fail_max": 2.5}, "fail_max"),
        ({"reset_timeout": -1}, "reset_timeout must be zero or more"),
        ({"reset_timeout": float("inf")}, "must be finite"),
        ({"half_open_max_calls": 0}, "half_open_max_calls"),
        ({"probe_lease": 0}, "probe_lease must be more than zero"),
        ({"sync_interval": -0.5}, "sync_interval"),
        ({"exclude": "ValueError"}, "exclude takes an exception class"),
        ({"exclude": (ValueError, 3)}, "exclude takes an exception class"),
        ({"listeners": [object()]}, "ResilienceListener"),
        ({"storage": {}}, "pybreaker.CircuitBreakerStorage"),
    ],
)
def test_bad_settings_are_refused_when_the_breaker_is_made(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        breaker(**kwargs)


@pytest.mark.parametrize("name", ["", None, 3])
def test_a_breaker_needs_a_name(name: Any) -> None:
    with pytest.raises(ConfigurationError, match="needs a name"):
        CircuitBreaker(name)


def test_a_redis_storage_without_a_namespace_is_refused() -> None:
    class NoRedis(pybreaker.CircuitRedisStorage):
        def __init__(self) -> None:  # no server needed to check the settings
            self._namespace_name = None

    with pytest.raises(ConfigurationError, match="namespace="):
        breaker(storage=NoRedis())


def test_decorating_something_not_callable_fails_at_once() -> None:
    with pytest.raises(ConfigurationError, match="decorates functions"):
        breaker()(42)  # type: ignore[arg-type]


# --- shared state: races and stale information ---------------------------------------------


def test_a_zero_reset_timeout_still_closes_after_a_good_trial() -> None:
    cb = breaker(fail_max=1, reset_timeout=0)
    with pytest.raises(Down):
        cb.call(Script(Down()).step)
    assert cb.call(lambda: "ok") == "ok"
    assert cb.state is CircuitState.CLOSED


def test_a_success_elsewhere_is_not_counted_twice_against_this_process() -> None:
    storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
    cb = breaker(fail_max=3, storage=storage, sync_interval=3600)
    for _ in range(2):
        with pytest.raises(Down):
            cb.call(Script(Down()).step)
    storage.reset_counter()  # another process's success reset the shared count
    with pytest.raises(Down):
        cb.call(Script(Down()).step)
    assert cb.state is CircuitState.CLOSED  # 1 failure since the reset, not 3
    assert storage.counter == 1


def test_a_call_from_an_earlier_state_does_not_reach_the_shared_count() -> None:
    storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
    cb = breaker(fail_max=2, storage=storage, sync_interval=3600)
    entered, release = threading.Event(), threading.Event()

    def slow_failure() -> None:
        entered.set()
        release.wait(5)
        raise Down

    outcome: list[BaseException] = []

    def run() -> None:
        try:
            cb.call(slow_failure)
        except Down as error:
            outcome.append(error)

    worker = threading.Thread(target=run)
    worker.start()
    entered.wait(5)
    cb.open()
    cb.close()  # a new closed period: the slow call belongs to the old one
    release.set()
    worker.join(5)
    assert len(outcome) == 1
    assert (cb.failures, storage.counter) == (0, 0)


def test_a_sync_that_read_before_a_change_does_not_undo_it() -> None:
    reading, release = threading.Event(), threading.Event()

    class SlowRead(pybreaker.CircuitMemoryStorage):
        slow = False

        @property
        def state(self) -> str:
            value = self._state
            if self.slow:
                self.slow = False
                reading.set()
                release.wait(5)  # meanwhile, this process opens the circuit
            return value

        @state.setter
        def state(self, state: str) -> None:
            self._state = state

    storage = SlowRead(pybreaker.STATE_CLOSED)
    cb = breaker(fail_max=1, storage=storage, sync_interval=0)
    assert cb.call(lambda: 1) == 1
    storage.slow = True
    worker = threading.Thread(target=lambda: cb.state)  # reads "closed", slowly
    worker.start()
    reading.wait(5)
    cb.open()
    release.set()
    worker.join(5)
    with cb._mutex:  # what the stale read left behind, before any new sync
        assert cb._state is CircuitState.OPEN
    assert storage.state == pybreaker.STATE_OPEN


def test_storage_writes_do_not_hold_up_readers_of_the_state() -> None:
    writing, release = threading.Event(), threading.Event()
    released: list[bool] = []

    class SlowWrite(pybreaker.CircuitMemoryStorage):
        @property
        def state(self) -> str:
            return self._state

        @state.setter
        def state(self, state: str) -> None:
            if state == pybreaker.STATE_OPEN:
                writing.set()
                released.append(release.wait(5))
            self._state = state

    cb = breaker(fail_max=1, storage=SlowWrite(pybreaker.STATE_CLOSED), sync_interval=3600)
    cb.call(lambda: None)
    opener = threading.Thread(target=cb.open)
    opener.start()
    writing.wait(5)
    assert cb.failures == 0  # the mutex is free while the storage is written
    with pytest.raises(CircuitOpenError):
        cb.call(lambda: None)
    release.set()
    opener.join(5)
    assert released == [True]


# --- async callers: the storage is read and written off the event loop ----------------------

AsyncFn = Callable[..., Awaitable[Any]]


class Slow(pybreaker.CircuitMemoryStorage):
    """A storage whose reads and writes take ``delay`` seconds, noting the threads doing them.

    The one named by ``hold`` also sets ``entered`` and waits for ``release``.
    """

    io = frozenset(
        {"state", "counter", "opened_at", "increment_counter", "reset_counter"}
        | {"reset_success_counter"}
    )

    def __init__(self, state: str) -> None:
        super().__init__(state)
        self.delay = 0.0
        self.hold: str | None = None
        self.entered, self.release = threading.Event(), threading.Event()
        self.threads: set[int] = set()

    def __getattribute__(self, name: str) -> Any:
        get = object.__getattribute__
        if name in get(self, "io"):
            get(self, "threads").add(threading.get_ident())
            if name == get(self, "hold"):
                get(self, "entered").set()
                get(self, "release").wait(5)
            time.sleep(get(self, "delay"))
        return get(self, name)


@pytest.fixture(params=["decorator", "acall", "policy"])
def through(request: pytest.FixtureRequest) -> Callable[[CircuitBreaker, AsyncFn], AsyncFn]:
    """Guards an ``async def`` with a breaker: decorated, through `acall`, or in a `Policy`.

    A policy with a time limit makes its common call in one fused wrapper that
    does the breaker's closed path itself; it must keep the storage off the loop too.
    """
    if request.param == "decorator":
        return lambda cb, fn: cb(fn)
    if request.param == "policy":
        return lambda cb, fn: Policy(breaker=cb, timeout=60.0)(fn)
    return lambda cb, fn: functools.partial(cb.acall, fn)


def dependency(*outcomes: object) -> AsyncFn:
    return Flavour("async").function(Script(*outcomes))


async def eventually(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never came true")


@pytest.mark.parametrize("sync_interval", [0.0, 3600.0], ids=["sync-each-call", "closed-path"])
def test_an_async_caller_never_reads_or_writes_the_storage_on_the_event_loop(
    through: Callable[[CircuitBreaker, AsyncFn], AsyncFn], sync_interval: float
) -> None:
    storage = Slow(pybreaker.STATE_CLOSED)
    recorder = Recorder()
    cb = breaker(fail_max=2, storage=storage, sync_interval=sync_interval, listeners=[recorder])
    fn = through(cb, dependency("ok", Down(), "ok", Down(), Down()))

    async def main() -> None:
        assert await fn() == "ok"  # the first sync
        with pytest.raises(Down):
            await fn()  # counted in the storage
        assert await fn() == "ok"  # the count is reset there
        for _ in range(2):
            with pytest.raises(Down):
                await fn()  # the second opens the circuit, and writes it
        with pytest.raises(CircuitOpenError):
            await fn()

    asyncio.run(main())
    assert storage.threads  # the storage was used, from worker threads only
    assert threading.get_ident() not in storage.threads
    assert (storage._state, storage._fail_counter) == (pybreaker.STATE_OPEN, 2)
    assert recorder.changes == [(cb.name, CircuitState.CLOSED, CircuitState.OPEN)]
    assert cb.state is CircuitState.OPEN


def test_a_slow_storage_does_not_stall_the_other_tasks(
    through: Callable[[CircuitBreaker, AsyncFn], AsyncFn],
) -> None:
    storage = Slow(pybreaker.STATE_CLOSED)
    cb = breaker(fail_max=1, storage=storage, sync_interval=0)
    fn = through(cb, dependency(Down()))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def main() -> None:
        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0)
        storage.delay = 0.05  # each access: a sync (3), a count (2) and a write (3), 0.4 s
        with pytest.raises(Down):
            await fn()
        storage.delay = 0.0
        ticker.cancel()

    asyncio.run(main())
    assert ticks >= 10  # about 40 when the loop runs free, none if it waits for the storage
    assert cb.state is CircuitState.OPEN
    assert storage.state == pybreaker.STATE_OPEN


@pytest.mark.parametrize("sync_interval", [0.0, 3600.0], ids=["sync-each-call", "closed-path"])
def test_a_failure_still_counts_when_its_task_is_cancelled_while_it_is_counted(
    through: Callable[[CircuitBreaker, AsyncFn], AsyncFn], sync_interval: float
) -> None:
    storage = Slow(pybreaker.STATE_CLOSED)
    cb = breaker(fail_max=2, storage=storage, sync_interval=sync_interval)
    fn = through(cb, dependency("ok", Down()))

    async def main() -> None:
        assert await fn() == "ok"  # synced: the next call takes the closed path if it can
        storage.hold = "increment_counter"
        failing = asyncio.create_task(fn())
        assert await asyncio.to_thread(storage.entered.wait, 5)
        failing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await failing
        storage.hold = None
        storage.release.set()
        await eventually(lambda: cb.failures == 1)

    asyncio.run(main())
    assert (cb.failures, storage._fail_counter) == (1, 1)
    with pytest.raises(Down):
        asyncio.run(fn())
    assert cb.state is CircuitState.OPEN


def test_a_failure_waiting_for_a_worker_thread_still_counts_when_its_task_is_cancelled(
    through: Callable[[CircuitBreaker, AsyncFn], AsyncFn],
) -> None:
    storage = Slow(pybreaker.STATE_CLOSED)
    cb = breaker(fail_max=2, storage=storage, sync_interval=3600)
    fn = through(cb, dependency("ok", Down()))
    busy = threading.Event()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
        assert await fn() == "ok"
        blocker = loop.run_in_executor(None, busy.wait, 5)  # the only worker thread is taken
        failing = asyncio.create_task(fn())
        for _ in range(10):
            await asyncio.sleep(0)  # until the failure waits for a worker thread to count it
        assert not failing.done()
        failing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await failing
        busy.set()
        assert await blocker
        await eventually(lambda: cb.failures == 1)

    asyncio.run(main())
    assert (cb.failures, storage._fail_counter) == (1, 1)


@pytest.mark.parametrize(
    ("stored", "where"),
    [(False, "call"), (True, "admission"), (True, "call")],
    ids=["call", "admission-with-storage", "call-with-storage"],
)
def test_a_cancelled_trial_gives_its_permit_back(stored: bool, where: str) -> None:
    clock = FakeClock()
    storage = Slow(pybreaker.STATE_CLOSED) if stored else None
    cb = breaker(fail_max=1, reset_timeout=1.0, storage=storage, clock=clock, sync_interval=3600)
    cb.open()
    clock.now += 1.0
    called = asyncio.Event()

    @cb
    async def trial(hang: bool) -> str:
        if hang:
            called.set()
            await asyncio.sleep(60)
        return "ok"

    async def main() -> None:
        if storage is not None and where == "admission":
            storage.hold = "state"  # the sync before the trial is let in
        task = asyncio.create_task(trial(hang=True))
        if storage is not None and where == "admission":
            assert await asyncio.to_thread(storage.entered.wait, 5)
        else:
            await called.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        if storage is not None:
            storage.hold = None
            storage.release.set()
        # With a storage, the admission ends in its worker thread, then hands the permit back.
        await eventually(lambda: cb._state is CircuitState.HALF_OPEN and not cb._probes)
        assert await trial(hang=False) == "ok"

    asyncio.run(main())
    assert called.is_set() is (where == "call")
    assert cb.state is CircuitState.CLOSED
    if storage is not None:
        assert storage.state == pybreaker.STATE_CLOSED
