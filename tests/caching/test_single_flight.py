"""Concurrent misses on one cold key run the function once, for threads and for tasks."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from buttress.caching import cached
from buttress.caching._flight import AsyncFlights


def test_64_threads_on_one_cold_key_run_the_body_once() -> None:
    runs = 0
    start = threading.Barrier(64)

    @cached()
    def slow(key: str) -> str:
        nonlocal runs
        runs += 1
        time.sleep(0.05)
        return key.upper()

    def call() -> str:
        start.wait(timeout=10)
        return slow("cold")

    with ThreadPoolExecutor(64) as pool:
        results = [future.result(timeout=10) for future in [pool.submit(call) for _ in range(64)]]
    assert results == ["COLD"] * 64
    assert runs == 1
    assert slow.stats().misses + slow.stats().hits == 64


def test_waiting_threads_get_the_same_exception_and_it_is_not_cached() -> None:
    runs = 0
    start = threading.Barrier(16)

    @cached()
    def failing(key: str) -> str:
        nonlocal runs
        runs += 1
        time.sleep(0.05)
        if runs == 1:
            raise ConnectionError("upstream reset")
        return key

    def call() -> Any:
        start.wait(timeout=10)
        try:
            return failing("k")
        except ConnectionError as error:
            return error

    with ThreadPoolExecutor(16) as pool:
        outcomes = [f.result(timeout=10) for f in [pool.submit(call) for _ in range(16)]]
    errors = {id(outcome) for outcome in outcomes if isinstance(outcome, ConnectionError)}
    assert len(errors) == 1  # one shared failure, not sixteen
    assert all(isinstance(outcome, ConnectionError) or outcome == "k" for outcome in outcomes)
    assert runs == 1 or "k" in outcomes  # a late arrival may start a fresh run
    assert failing("k") == "k"
    assert failing("k") == "k"


@pytest.mark.asyncio
async def test_1000_tasks_on_one_cold_key_run_the_body_once() -> None:
    runs = 0

    @cached()
    async def slow(key: str) -> str:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.05)
        return key.upper()

    results = await asyncio.gather(*(slow("cold") for _ in range(1000)))
    assert results == ["COLD"] * 1000
    assert runs == 1


@pytest.mark.asyncio
async def test_waiting_tasks_get_the_same_exception_and_it_is_not_cached() -> None:
    runs = 0

    @cached()
    async def failing(key: str) -> str:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.02)
        if runs == 1:
            raise ConnectionError("upstream reset")
        return key

    outcomes = await asyncio.gather(*(failing("k") for _ in range(50)), return_exceptions=True)
    assert all(isinstance(outcome, ConnectionError) for outcome in outcomes)
    assert len({id(outcome) for outcome in outcomes}) == 1
    assert runs == 1
    assert await failing("k") == "k"


@pytest.mark.asyncio
async def test_cancelling_the_first_waiter_does_not_cancel_the_shared_call() -> None:
    runs = 0
    finished = asyncio.Event()

    @cached()
    async def slow(key: str) -> str:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.05)
        finished.set()
        return key.upper()

    first = asyncio.create_task(slow("k"))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(slow("k"))
    await asyncio.sleep(0.01)
    first.cancel()
    assert await second == "K"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert runs == 1
    assert finished.is_set()
    assert await slow("k") == "K"  # stored by the shared call
    assert runs == 1


@pytest.mark.asyncio
async def test_the_shared_call_is_cancelled_when_its_last_waiter_leaves() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    @cached()
    async def slow(key: str) -> str:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return key

    waiters = [asyncio.create_task(slow("k")) for _ in range(3)]
    await started.wait()
    for waiter in waiters:
        waiter.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    await asyncio.wait_for(cancelled.wait(), timeout=2)
    assert slow.stats().hits == 0


# -- a caller is cancelled only by its own cancellation ----------------------------------


@pytest.mark.asyncio
async def test_cancelled_callers_leave_at_once_and_the_others_share_one_run() -> None:
    runs = 0
    started = asyncio.Event()
    release = asyncio.Event()

    @cached()
    async def slow(key: str) -> str:
        nonlocal runs
        runs += 1
        started.set()
        await release.wait()
        return key.upper()

    callers = [asyncio.create_task(slow("k")) for _ in range(6)]
    await started.wait()
    leaving, staying = callers[::2], callers[1::2]
    for caller in leaving:
        caller.cancel()
    await asyncio.wait(leaving, timeout=2)
    assert all(caller.cancelled() for caller in leaving)  # without waiting for the run
    assert not any(caller.done() for caller in staying)
    release.set()
    assert await asyncio.gather(*staying) == ["K"] * 3
    assert runs == 1


@pytest.mark.asyncio
async def test_a_caller_arriving_while_an_abandoned_run_cleans_up_gets_a_fresh_value() -> None:
    runs: list[asyncio.Task[Any] | None] = []
    started = asyncio.Event()
    cleanup = asyncio.Event()

    @cached()
    async def slow(key: str) -> str:
        runs.append(asyncio.current_task())
        if len(runs) == 1:
            started.set()
            try:
                await asyncio.sleep(10)
            finally:
                await cleanup.wait()  # the cancelled run takes its time to clean up
        return f"{key}{len(runs)}"

    first = asyncio.create_task(slow("k"))
    await started.wait()
    first.cancel()  # the last (only) caller leaves: the run is cancelled
    await asyncio.wait({first})
    assert first.cancelled()
    second = asyncio.create_task(slow("k"))
    done, _ = await asyncio.wait({second}, timeout=1)
    cleanup.set()
    outcomes = await asyncio.gather(second, return_exceptions=True)
    await asyncio.wait([run for run in runs if run is not None])
    assert list(outcomes) == ["k2"]
    assert second in done  # served without waiting for the cancelled run to clean up
    assert len(runs) == 2


@pytest.mark.asyncio
async def test_a_caller_in_the_iteration_the_last_waiter_leaves_starts_afresh() -> None:
    flights = AsyncFlights()
    started: list[str] = []

    async def compute(name: str) -> str:
        started.append(name)
        await asyncio.sleep(10 if name == "first" else 0)
        return name

    first = asyncio.create_task(flights.run("k", lambda: compute("first")))
    await asyncio.sleep(0)  # first has started its computation and waits for it
    assert len(flights) == 1
    first.cancel()
    # Runs in the next iteration, right after first leaves and cancels its computation,
    # before that computation has even taken the cancellation.
    second = asyncio.create_task(flights.run("k", lambda: compute("second")))
    outcomes = await asyncio.gather(first, second, return_exceptions=True)
    assert isinstance(outcomes[0], asyncio.CancelledError)
    assert outcomes[1] == "second"
    assert started == ["first", "second"]
    await asyncio.sleep(0)
    assert len(flights) == 0


@pytest.mark.asyncio
async def test_the_last_waiter_leaving_takes_the_call_out_of_the_table_at_once() -> None:
    flights = AsyncFlights()
    started = asyncio.Event()
    cleanup = asyncio.Event()
    computations: list[asyncio.Task[Any] | None] = []

    async def compute() -> str:
        computations.append(asyncio.current_task())
        started.set()
        try:
            await asyncio.sleep(10)
        finally:
            await cleanup.wait()
        return "late"

    waiter = asyncio.create_task(flights.run("k", compute))
    await started.wait()
    waiter.cancel()
    await asyncio.wait({waiter})
    assert waiter.cancelled()
    (computation,) = computations
    assert computation is not None
    assert not computation.done()  # still cleaning up...
    assert len(flights) == 0  # ...but out of reach of the next caller
    cleanup.set()
    await asyncio.wait({computation})
    assert computation.cancelled()


@pytest.mark.asyncio
async def test_callers_of_a_run_cancelled_by_something_else_get_a_value() -> None:
    runs: list[asyncio.Task[Any] | None] = []
    started = asyncio.Event()

    @cached()
    async def slow(key: str) -> str:
        runs.append(asyncio.current_task())
        started.set()
        await asyncio.sleep(0.05)
        return f"{key}{len(runs)}"

    callers = [asyncio.create_task(slow("k")) for _ in range(5)]
    await started.wait()
    run = runs[0]
    assert run is not None
    run.cancel()  # not by any caller: say a supervisor tearing the work down
    outcomes = await asyncio.gather(*callers, return_exceptions=True)
    assert outcomes == ["k2"] * 5
    assert len(runs) == 2  # one fresh run, shared


@pytest.mark.asyncio
async def test_a_caller_does_not_join_a_run_cancelled_by_something_else() -> None:
    runs: list[asyncio.Task[Any] | None] = []
    started = asyncio.Event()
    cleanup = asyncio.Event()

    @cached()
    async def slow(key: str) -> str:
        runs.append(asyncio.current_task())
        if len(runs) == 1:
            started.set()
            try:
                await asyncio.sleep(10)
            finally:
                await cleanup.wait()
        return f"{key}{len(runs)}"

    first = asyncio.create_task(slow("k"))
    await started.wait()
    run = runs[0]
    assert run is not None
    run.cancel()
    await asyncio.sleep(0)  # the run has taken the cancellation and cleans up
    second = asyncio.create_task(slow("k"))
    done, _ = await asyncio.wait({second}, timeout=1)
    cleanup.set()
    outcomes = await asyncio.gather(first, second, return_exceptions=True)
    assert list(outcomes) == ["k2", "k2"]  # first gets the fresh run's stored value
    assert second in done  # without waiting for the cancelled run to clean up
    assert len(runs) == 2


@pytest.mark.asyncio
async def test_a_run_that_raises_cancelled_error_itself_is_run_again() -> None:
    runs = 0

    @cached()
    async def flaky(key: str) -> str:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.01)
        if runs == 1:
            raise asyncio.CancelledError  # say an inner future someone else cancelled
        return key

    outcomes = await asyncio.gather(*(flaky("k") for _ in range(10)), return_exceptions=True)
    assert outcomes == ["k"] * 10
    assert runs == 2


@pytest.mark.asyncio
async def test_a_run_that_always_ends_cancelled_reaches_its_callers_after_three_runs() -> None:
    runs = 0

    @cached()
    async def doomed(key: str) -> str:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.01)
        raise asyncio.CancelledError

    outcomes = await asyncio.gather(*(doomed("k") for _ in range(10)), return_exceptions=True)
    assert all(isinstance(outcome, asyncio.CancelledError) for outcome in outcomes)
    assert runs == 3  # shared by the ten callers, then the run's own outcome


@pytest.mark.asyncio
async def test_a_caller_cancelled_as_its_computation_ends_cancelled_is_cancelled() -> None:
    flights = AsyncFlights()
    started = asyncio.Event()
    computations: list[asyncio.Task[Any] | None] = []

    async def compute() -> str:
        computations.append(asyncio.current_task())
        started.set()
        await asyncio.sleep(10 if len(computations) == 1 else 0)
        return "value"

    caller = asyncio.create_task(flights.run("k", compute))
    other = asyncio.create_task(flights.run("k", compute))
    await started.wait()
    computation = computations[0]
    assert computation is not None
    # The caller is cancelled after the computation ended cancelled, before it woke up.
    computation.add_done_callback(lambda _: caller.cancel())
    computation.cancel()
    outcomes = await asyncio.gather(caller, other, return_exceptions=True)
    assert isinstance(outcomes[0], asyncio.CancelledError)
    assert outcomes[1] == "value"


@pytest.mark.asyncio
async def test_single_flight_can_be_turned_off() -> None:
    runs = 0

    @cached(single_flight=False)
    async def slow(key: str) -> str:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.01)
        return key

    await asyncio.gather(*(slow("k") for _ in range(5)))
    assert runs == 5


def test_the_miss_path_locks_per_key_only() -> None:
    """A slow miss on one key does not hold up a miss on another key."""
    release = threading.Event()

    @cached()
    def lookup(key: str) -> str:
        if key == "slow":
            release.wait(timeout=10)
        return key

    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(lookup, "slow")
        assert pool.submit(lookup, "fast").result(timeout=5) == "fast"
        assert not slow.done()
        release.set()
        assert slow.result(timeout=5) == "slow"


@pytest.mark.asyncio
async def test_a_computation_nobody_waits_for_leaves_nothing_for_asyncio_to_report(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Cancelled, or failing after its last caller left: asyncio has nothing to complain of."""
    flights = AsyncFlights()
    computations: list[asyncio.Task[Any] | None] = []

    async def compute(fail: bool) -> str:
        computations.append(asyncio.current_task())
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            if fail:
                raise RuntimeError("cleanup failed") from None
            raise
        return "never"

    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        for fail in (False, True):
            caller = asyncio.create_task(flights.run(fail, lambda fail=fail: compute(fail)))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            caller.cancel()  # the last caller leaves: the computation is cancelled
            await asyncio.wait({caller})
            computation = computations[-1]
            assert computation is not None
            await asyncio.wait({computation})
            await asyncio.sleep(0)  # its done callbacks have run
        del computation, caller
        computations.clear()
        gc.collect()  # a failed task nobody retrieved would be reported now
    assert [r for r in caplog.records if r.name == "asyncio"] == []
