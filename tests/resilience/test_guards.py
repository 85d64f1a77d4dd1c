"""timeout, bulkhead, fallback and the testing switch, for def and async def."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time

import pytest
from flavours import Flavour, Script

from buttress.errors import (
    BulkheadFullError,
    CircuitOpenError,
    ConfigurationError,
    DeadlineExceededError,
)
from buttress.resilience import (
    ResilienceListener,
    bulkhead,
    fallback,
    resilience_testing,
    retry,
    timeout,
)


class Recorder(ResilienceListener):
    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []

    def on_timeout(self, name: str, seconds: float, elapsed: float) -> None:
        self.events.append(("timeout", name, seconds, elapsed))

    def on_bulkhead_rejected(self, name: str, max_concurrent: int, max_waiting: int) -> None:
        self.events.append(("rejected", name, max_concurrent, max_waiting))


# --- timeout ------------------------------------------------------------------------------


def test_a_call_within_the_limit_returns_its_result(flavour: Flavour) -> None:
    fn = timeout(5.0)(flavour.function(Script(7)))
    assert flavour.call(fn) == 7
    assert inspect.iscoroutinefunction(fn) is flavour.is_async


def test_an_async_call_over_the_limit_is_cancelled() -> None:
    finished = False
    recorder = Recorder()

    @timeout(0.05, listeners=[recorder], name="lookup")
    async def slow() -> None:
        nonlocal finished
        await asyncio.sleep(5)
        finished = True

    started = time.monotonic()
    with pytest.raises(DeadlineExceededError) as caught:
        asyncio.run(slow())
    assert time.monotonic() - started < 2
    assert not finished
    assert isinstance(caught.value, TimeoutError)
    assert (caught.value.name, caught.value.seconds) == ("lookup", 0.05)
    assert recorder.events[0][:3] == ("timeout", "lookup", 0.05)


def test_a_sync_call_over_the_limit_is_reported_after_the_fact() -> None:
    recorder = Recorder()

    @timeout(0.01, listeners=[recorder])
    def slow() -> str:
        time.sleep(0.05)
        return "late"

    with pytest.raises(DeadlineExceededError, match="exceeded its time limit") as caught:
        slow()
    assert caught.value.elapsed is not None
    assert caught.value.elapsed >= 0.05
    assert len(recorder.events) == 1


def test_the_functions_own_errors_pass_through_unchanged(flavour: Flavour) -> None:
    own = TimeoutError("the socket's own timeout")
    fn = timeout(5.0)(flavour.function(Script(own)))
    with pytest.raises(TimeoutError) as caught:
        flavour.call(fn)
    assert caught.value is own


@pytest.mark.parametrize("seconds", [0, -1, "1", None, True])
def test_a_bad_limit_fails_at_decoration_time(seconds: object) -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        timeout(seconds)  # type: ignore[arg-type]


# --- bulkhead -----------------------------------------------------------------------------


def test_threads_over_the_limit_are_refused_at_once() -> None:
    limit = bulkhead(3)
    inside = threading.Barrier(4)  # three holders and the test
    release = threading.Event()
    peak = 0
    running = 0
    lock = threading.Lock()

    @limit
    def hold() -> str:
        nonlocal peak, running
        with lock:
            running += 1
            peak = max(peak, running)
        inside.wait(5)
        release.wait(5)
        with lock:
            running -= 1
        return "done"

    results: list[object] = []

    def call() -> None:
        try:
            results.append(hold())
        except BulkheadFullError as error:
            results.append(error)

    holders = [threading.Thread(target=call) for _ in range(3)]
    for thread in holders:
        thread.start()
    inside.wait(5)  # all three slots are taken
    others = [threading.Thread(target=call) for _ in range(13)]
    for thread in others:
        thread.start()
    for thread in others:
        thread.join(5)
    release.set()
    for thread in holders:
        thread.join(5)
    refused = [r for r in results if isinstance(r, BulkheadFullError)]
    assert len(refused) == 13
    assert results.count("done") == 3
    assert peak == 3


def test_sixteen_threads_through_a_queue_never_exceed_the_limit() -> None:
    running = 0
    peak = 0
    lock = threading.Lock()

    @bulkhead(4, max_waiting=16)
    def work(n: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.005)
        with lock:
            running -= 1
        return n

    results: list[int] = []
    threads = [threading.Thread(target=lambda n=n: results.append(work(n))) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(results) == list(range(16))
    assert peak == 4


def test_a_thousand_tasks_through_a_queue_never_exceed_the_limit() -> None:
    running = 0
    peak = 0

    @bulkhead(10, max_waiting=1000)
    async def work(n: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)
        running -= 1
        return n

    async def main() -> list[int]:
        return await asyncio.gather(*(work(n) for n in range(1000)))

    assert asyncio.run(main()) == list(range(1000))
    assert peak == 10


def test_tasks_over_the_limit_and_the_queue_are_refused() -> None:
    recorder = Recorder()

    @bulkhead(2, max_waiting=1, listeners=[recorder], name="reports")
    async def render(n: int) -> int:
        await asyncio.sleep(0.01)
        return n

    async def main() -> list[object]:
        return await asyncio.gather(*(render(n) for n in range(5)), return_exceptions=True)

    results = asyncio.run(main())
    assert results[:3] == [0, 1, 2]
    assert all(isinstance(r, BulkheadFullError) for r in results[3:])
    assert recorder.events == [("rejected", "reports", 2, 1)] * 2
    error = results[3]
    assert isinstance(error, BulkheadFullError)
    assert (error.name, error.max_concurrent, error.max_waiting) == ("reports", 2, 1)


def test_a_waiter_that_times_out_is_refused_and_leaves_the_queue(flavour: Flavour) -> None:
    limit = bulkhead(1, max_waiting=1, wait_timeout=0.02)
    release = threading.Event()

    @limit
    def hold() -> None:
        release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    time.sleep(0.02)
    guarded = limit(flavour.function(Script("ran")))
    with pytest.raises(BulkheadFullError):
        flavour.call(guarded)
    release.set()
    holder.join(5)
    assert flavour.call(guarded) == "ran"  # the queue and the slot are free again


def test_a_cancelled_waiter_gives_its_place_back() -> None:
    @bulkhead(1, max_waiting=1)  # a waiter that kept its place would refuse `later`
    async def work(delay: float) -> float:
        await asyncio.sleep(delay)
        return delay

    async def main() -> list[object]:
        first = asyncio.create_task(work(0.05))
        await asyncio.sleep(0)
        waiting = asyncio.create_task(work(0.0))
        await asyncio.sleep(0)
        waiting.cancel()
        later = asyncio.create_task(work(0.0))
        return await asyncio.gather(first, waiting, later, return_exceptions=True)

    first, waiting, later = asyncio.run(main())
    assert first == 0.05
    assert isinstance(waiting, asyncio.CancelledError)
    assert later == 0.0


def test_one_bulkhead_is_shared_by_every_function_it_decorates() -> None:
    limit = bulkhead(1)
    release = threading.Event()

    @limit
    def hold() -> None:
        release.wait(5)

    @limit
    def other() -> str:
        return "other"

    holder = threading.Thread(target=hold)
    holder.start()
    time.sleep(0.02)
    with pytest.raises(BulkheadFullError):
        other()
    release.set()
    holder.join(5)
    assert other() == "other"


def test_the_slot_is_released_when_the_call_fails(flavour: Flavour) -> None:
    fn = bulkhead(1)(flavour.function(Script(ValueError("x"), "ok")))
    with pytest.raises(ValueError, match="x"):
        flavour.call(fn)
    assert flavour.call(fn) == "ok"


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((0,), {}, "max_concurrent"),
        ((2.5,), {}, "max_concurrent"),
        ((2, -1), {}, "max_waiting"),
        ((2,), {"wait_timeout": -1}, "wait_timeout"),
    ],
)
def test_bad_bulkhead_limits_fail_at_decoration_time(
    args: tuple[object, ...], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        bulkhead(*args, **kwargs)  # type: ignore[arg-type]


def test_a_def_called_on_an_event_loop_thread_is_refused_instead_of_stalling_the_loop() -> None:
    """Waiting would block the loop, whose own task holds the slot: a deadlock."""
    limit = bulkhead(1, max_waiting=1, wait_timeout=2.0)  # bounds the wait should it regress
    release = asyncio.Event()

    @limit
    async def holder() -> str:
        await release.wait()
        return "held"

    @limit
    def blocking() -> str:
        return "never"

    async def main() -> str:
        task = asyncio.create_task(holder())
        await asyncio.sleep(0.01)  # the task holds the only slot
        started = time.monotonic()
        with pytest.raises(BulkheadFullError):
            blocking()
        assert time.monotonic() - started < 1
        release.set()
        return await task

    assert asyncio.run(main()) == "held"


def test_a_def_on_an_event_loop_thread_still_runs_when_a_slot_is_free() -> None:
    limit = bulkhead(1, max_waiting=1)

    @limit
    def quick() -> str:
        return "ran"

    async def main() -> str:
        return quick()

    assert asyncio.run(main()) == "ran"


# --- fallback -----------------------------------------------------------------------------


def test_a_fallback_value_replaces_a_failure(flavour: Flavour) -> None:
    fn = fallback([], on=ConnectionError)(flavour.function(Script(ConnectionError("down"))))
    assert flavour.call(fn) == []


def test_a_fallback_callable_gets_the_error(flavour: Flavour) -> None:
    fn = fallback(lambda error: f"cached ({error})")(flavour.function(Script(KeyError("k"))))
    assert flavour.call(fn) == "cached ('k')"


def test_an_async_fallback_is_awaited() -> None:
    async def from_cache(error: BaseException) -> str:
        await asyncio.sleep(0)
        return "stale"

    @fallback(from_cache)
    async def fetch() -> str:
        raise ConnectionError

    assert asyncio.run(fetch()) == "stale"


def test_a_fallback_answers_for_an_open_circuit(flavour: Flavour) -> None:
    fn = fallback("degraded")(flavour.function(Script(CircuitOpenError("svc", 3))))
    assert flavour.call(fn) == "degraded"


def test_other_errors_and_success_pass_through(flavour: Flavour) -> None:
    fn = fallback(None, on=ConnectionError)(flavour.function(Script(KeyError("k"))))
    with pytest.raises(KeyError):
        flavour.call(fn)
    assert flavour.call(fallback(None)(flavour.function(Script(5)))) == 5


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(2)])
def test_a_fallback_never_swallows_an_exit(flavour: Flavour, error: BaseException) -> None:
    fn = fallback(None, on=BaseException)(flavour.function(Script(error)))
    with pytest.raises(type(error)):
        flavour.call(fn)


def test_a_fallback_never_swallows_a_cancellation() -> None:
    @fallback(None, on=BaseException)
    async def cancelled() -> None:
        raise asyncio.CancelledError

    async def main() -> None:
        with pytest.raises(asyncio.CancelledError):
            await cancelled()

    asyncio.run(main())


def test_a_fallback_never_swallows_a_group_holding_an_exit(flavour: Flavour) -> None:
    group = BaseExceptionGroup("task group", [ValueError("one"), KeyboardInterrupt()])
    fn = fallback(None, on=BaseException)(flavour.function(Script(group)))
    with pytest.raises(BaseExceptionGroup) as caught:
        flavour.call(fn)
    assert caught.value is group


def test_a_fallback_answers_for_a_group_of_plain_errors(flavour: Flavour) -> None:
    group = ExceptionGroup("task group", [ValueError("one"), KeyError("two")])
    fn = fallback("spare", on=Exception)(flavour.function(Script(group)))
    assert flavour.call(fn) == "spare"


@pytest.mark.parametrize("on", ["ValueError", (), int, None])
def test_a_bad_on_fails_at_decoration_time(on: object) -> None:
    with pytest.raises(ConfigurationError, match="fallback"):
        fallback(None, on=on)  # type: ignore[arg-type]


@pytest.mark.parametrize("decorator", [timeout(1), bulkhead(1), fallback(None)])
def test_guards_refuse_to_decorate_what_cannot_be_called(decorator: object) -> None:
    with pytest.raises(ConfigurationError, match="decorates functions"):
        decorator("not a function")  # type: ignore[operator]


# --- resilience_testing -------------------------------------------------------------------


class Flaky(Exception):  # noqa: N818 - reads as the dependency's state
    pass


def test_switches_nest_and_restore() -> None:
    fn = retry(on=Flaky, attempts=2, wait_initial=0.01, wait_jitter=0)(
        Flavour("sync").function(Script(Flaky(), "ok"))
    )
    with resilience_testing() as outer:
        with resilience_testing(no_wait=False) as inner:
            started = time.monotonic()
            assert fn() == "ok"
            assert time.monotonic() - started >= 0.01  # really waited
        assert inner.waits == [0.01]
        assert fn() == "ok"  # script answers "ok" from now on
        assert outer.waits == []


def test_waits_in_other_threads_are_skipped_too() -> None:
    fn = retry(on=Flaky, attempts=3, wait_initial=30, wait_max=60, wait_jitter=0)(
        Flavour("sync").function(Script(Flaky(), Flaky(), "ok"))
    )
    results: list[str] = []
    with resilience_testing() as testing:
        worker = threading.Thread(target=lambda: results.append(fn()))
        worker.start()
        worker.join(5)
    assert results == ["ok"]
    assert testing.waits == [30.0, 60.0]


def test_a_coroutine_that_swallows_its_cancellation_is_still_reported_late() -> None:
    @timeout(0.02)
    async def stubborn() -> str:
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            await asyncio.sleep(0.03)  # ignores the cancellation and finishes late
        return "late result"

    with pytest.raises(DeadlineExceededError):
        asyncio.run(stubborn())


def test_a_timeout_of_nan_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="number of seconds"):
        timeout(float("nan"))


@pytest.mark.parametrize("decorator", [retry(on=Flaky), timeout(1), bulkhead(1), fallback(None)])
def test_generators_are_refused_with_the_reason(decorator: object) -> None:
    def numbers():  # type: ignore[no-untyped-def]
        yield 1

    async def anumbers():  # type: ignore[no-untyped-def]
        yield 1

    for generator in (numbers, anumbers):
        with pytest.raises(ConfigurationError, match="cannot guard a generator"):
            decorator(generator)  # type: ignore[operator]


@pytest.mark.parametrize("wrapper", [staticmethod, classmethod])
def test_decorating_above_staticmethod_or_classmethod_is_refused(wrapper: type) -> None:
    def method(*args: object) -> None:
        return None

    with pytest.raises(ConfigurationError, match="must be applied below"):
        retry(on=Flaky)(wrapper(method))


def test_a_waiter_whose_loop_closed_does_not_take_the_slot_with_it() -> None:
    limit = bulkhead(1, max_waiting=1)
    release = threading.Event()

    @limit
    def hold() -> str:
        release.wait(5)
        return "held"

    @limit
    async def queued() -> str:
        return "never"

    results: list[object] = []
    holder = threading.Thread(target=lambda: results.append(hold()))
    holder.start()
    time.sleep(0.02)
    loop = asyncio.new_event_loop()
    task = loop.create_task(queued())
    loop.run_until_complete(asyncio.sleep(0.01))  # the task is now waiting for the slot
    loop.close()  # abandoned without being cancelled
    del task
    release.set()
    holder.join(5)
    assert results == ["held"]  # the leaving caller keeps its own result
    assert limit(lambda: "free")() == "free"  # and the slot is free again
