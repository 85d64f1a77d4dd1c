"""retry: what is retried, how long it waits, when it stops, and what it raises."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time

import pytest
from flavours import Flavour, Script

from buttress.errors import CircuitOpenError, ConfigurationError
from buttress.resilience import ResilienceListener, RetryBudget, resilience_testing, retry


class Flaky(Exception):  # noqa: N818 - reads as the dependency's state
    pass


class ServerBusy(Exception):  # noqa: N818 - reads as the server's answer
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"busy, retry after {retry_after}")
        self.retry_after = retry_after


def test_the_success_path_calls_once_and_never_waits(flavour: Flavour) -> None:
    script = Script(41)
    fn = retry(on=Flaky)(flavour.function(script))
    with resilience_testing() as testing:
        assert flavour.call(fn) == 41
    assert script.calls == 1
    assert testing.waits == []


def test_retries_until_success_with_exponential_waits(flavour: Flavour) -> None:
    script = Script(Flaky("1"), Flaky("2"), Flaky("3"), "ok")
    fn = retry(on=Flaky, attempts=5, wait_initial=0.5, wait_max=1.5, wait_jitter=0)(
        flavour.function(script)
    )
    with resilience_testing() as testing:
        assert flavour.call(fn) == "ok"
    assert script.calls == 4
    assert testing.waits == [0.5, 1.0, 1.5]  # doubling, capped at wait_max


def test_jitter_adds_at_most_wait_jitter(flavour: Flavour) -> None:
    script = Script(*[Flaky()] * 20, "ok")
    fn = retry(on=Flaky, attempts=21, wait_initial=0.1, wait_max=0.1, wait_jitter=0.05)(
        flavour.function(script)
    )
    with resilience_testing() as testing:
        flavour.call(fn)
    assert all(0.1 <= wait <= 0.1 for wait in testing.waits)  # capped: jitter cannot pass max
    uncapped = retry(on=Flaky, attempts=21, wait_initial=0.1, wait_max=1.0, wait_jitter=0.05)(
        flavour.function(Script(*[Flaky()] * 20, "ok"))
    )
    with resilience_testing() as testing:
        flavour.call(uncapped)
    assert all(0.1 <= wait <= 1.0 for wait in testing.waits)
    assert 0.1 <= testing.waits[0] <= 0.15
    assert len(set(testing.waits[:3])) == 3


def test_gives_up_raising_the_last_exception_itself_with_a_note(flavour: Flavour) -> None:
    errors = [Flaky("first"), Flaky("second"), Flaky("third")]
    fn = retry(on=Flaky, attempts=3, name="payments.charge")(flavour.function(Script(*errors)))
    with resilience_testing(), pytest.raises(Flaky) as caught:
        flavour.call(fn)
    assert caught.value is errors[2]
    assert caught.value.__notes__ == [
        "buttress.retry: gave up on payments.charge after 3 attempts (no attempts left)"
    ]


def test_an_exception_outside_on_is_not_retried(flavour: Flavour) -> None:
    script = Script(KeyError("nope"), "never")
    fn = retry(on=Flaky)(flavour.function(script))
    with pytest.raises(KeyError):
        flavour.call(fn)
    assert script.calls == 1


def test_a_different_error_on_a_later_attempt_stops_retrying(flavour: Flavour) -> None:
    script = Script(Flaky(), ValueError("bad input"), "never")
    fn = retry(on=Flaky, attempts=5, name="f")(flavour.function(script))
    with resilience_testing(), pytest.raises(ValueError, match="bad input") as caught:
        flavour.call(fn)
    assert script.calls == 2
    assert caught.value.__notes__ == ["buttress.retry: f failed on attempt 2"]


def test_a_predicate_chooses_what_to_retry(flavour: Flavour) -> None:
    script = Script(OSError(503, "busy"), OSError(404, "gone"), "never")
    fn = retry(on=lambda error: isinstance(error, OSError) and error.errno == 503)(
        flavour.function(script)
    )
    with resilience_testing(), pytest.raises(OSError, match="gone"):
        flavour.call(fn)
    assert script.calls == 2


@pytest.mark.parametrize(
    "error",
    [CircuitOpenError("payments", 5.0), KeyboardInterrupt(), SystemExit(1), GeneratorExit()],
    ids=lambda error: type(error).__name__,
)
def test_some_errors_are_never_retried_whatever_on_says(
    flavour: Flavour, error: BaseException
) -> None:
    script = Script(error, "never")
    fn = retry(on=BaseException, attempts=5)(flavour.function(script))
    with pytest.raises(type(error)):
        flavour.call(fn)
    assert script.calls == 1


def test_a_group_holding_a_cancellation_is_never_retried(flavour: Flavour) -> None:
    group = BaseExceptionGroup("task group", [ConnectionError("reset"), asyncio.CancelledError()])
    script = Script(group, "never")
    fn = retry(on=lambda error: True, attempts=5)(flavour.function(script))
    with pytest.raises(BaseExceptionGroup):
        flavour.call(fn)
    assert script.calls == 1


def test_cancellation_is_never_retried() -> None:
    calls = 0

    @retry(on=BaseException, attempts=5)
    async def cancelled() -> None:
        nonlocal calls
        calls += 1
        raise asyncio.CancelledError

    async def main() -> None:
        with pytest.raises(asyncio.CancelledError):
            await cancelled()

    asyncio.run(main())
    assert calls == 1


def test_a_wait_that_would_cross_the_deadline_is_not_taken(flavour: Flavour) -> None:
    script = Script(Flaky("1"), Flaky("2"), "ok")
    fn = retry(on=Flaky, attempts=10, wait_initial=1.0, wait_max=10, wait_jitter=0, deadline=1.5)(
        flavour.function(script)
    )
    with resilience_testing() as testing, pytest.raises(Flaky, match="2") as caught:
        flavour.call(fn)
    assert testing.waits == [1.0]  # the next wait, 2 s, would end past 1.5 s
    assert "(the next wait would cross the deadline)" in caught.value.__notes__[0]


def test_a_deadline_counts_the_time_already_spent(flavour: Flavour) -> None:
    script = Script(Flaky("slow"), "ok")
    fn = retry(on=Flaky, wait_initial=0.01, wait_jitter=0, deadline=0.05)(flavour.function(script))
    real = script.step

    def step_slowly() -> object:
        time.sleep(0.06)
        return real()

    script.step = step_slowly  # type: ignore[method-assign]
    with resilience_testing(), pytest.raises(Flaky):
        flavour.call(fn)
    assert script.calls == 1  # 0.06 s spent: even a 0.01 s wait would cross 0.05 s


def test_retry_after_raises_the_wait_up_to_wait_max(flavour: Flavour) -> None:
    script = Script(ServerBusy(retry_after=3.0), ServerBusy(retry_after=60.0), "ok")
    fn = retry(on=ServerBusy, wait_initial=0.1, wait_max=10.0, wait_jitter=0)(
        flavour.function(script)
    )
    with resilience_testing() as testing:
        assert flavour.call(fn) == "ok"
    assert testing.waits == [3.0, 10.0]


def test_a_shorter_retry_after_does_not_shorten_the_backoff(flavour: Flavour) -> None:
    script = Script(ServerBusy(retry_after=0.01), "ok")
    fn = retry(on=ServerBusy, wait_initial=0.5, wait_jitter=0)(flavour.function(script))
    with resilience_testing() as testing:
        flavour.call(fn)
    assert testing.waits == [0.5]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_empty_budget_stops_retrying_at_once(flavour: Flavour) -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=0.0, capacity=1, clock=FakeClock())
    first = Script(Flaky(), "ok")
    second = Script(Flaky("no budget"), "never")
    fn_a = retry(on=Flaky, budget=budget, name="a")(flavour.function(first))
    fn_b = retry(on=Flaky, budget=budget, name="b")(flavour.function(second))
    with resilience_testing():
        assert flavour.call(fn_a) == "ok"  # spends the only token
        with pytest.raises(Flaky, match="no budget") as caught:
            flavour.call(fn_b)
    assert second.calls == 1
    assert "(the retry budget is spent)" in caught.value.__notes__[0]


def test_the_budget_refills_with_traffic_and_time() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.5, min_per_second=1.0, capacity=2, clock=clock)
    assert budget.try_spend()
    assert budget.try_spend()
    assert not budget.try_spend()  # empty
    budget.record_call()
    budget.record_call()  # two calls at 50 %: one retry
    assert budget.try_spend()
    assert not budget.try_spend()
    clock.now += 1.0  # one second at one per second: one retry
    assert budget.try_spend()
    assert not budget.try_spend()
    clock.now += 100.0  # capped at capacity
    assert budget.try_spend()
    assert budget.try_spend()
    assert not budget.try_spend()


def test_a_budget_bounds_a_retry_storm(flavour: Flavour) -> None:
    budget = RetryBudget(ratio=0.2, min_per_second=0.0, capacity=1, clock=FakeClock())
    script = Script(Flaky("down"))
    fn = retry(on=Flaky, attempts=5, budget=budget)(flavour.function(script))
    with resilience_testing():
        for _ in range(100):
            with pytest.raises(Flaky):
                flavour.call(fn)
    # 100 calls, each wanting 4 retries: at most 20 % more plus the one token.
    assert 100 <= script.calls <= 100 + 20 + 1


class Recorder(ResilienceListener):
    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []

    def on_retry(self, name: str, attempt: int, error: BaseException, wait: float) -> None:
        self.events.append(("retry", name, attempt, str(error), wait))

    def on_give_up(self, name: str, attempts: int, error: BaseException, reason: str) -> None:
        self.events.append(("give_up", name, attempts, str(error), reason))


class Broken(ResilienceListener):
    def on_retry(self, name: str, attempt: int, error: BaseException, wait: float) -> None:
        raise RuntimeError("listener bug")


def test_listeners_hear_each_retry_and_the_give_up(
    flavour: Flavour, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    fn = retry(
        on=Flaky,
        attempts=3,
        wait_initial=0.2,
        wait_jitter=0,
        listeners=[Broken(), recorder],
        name="f",
    )(flavour.function(Script(Flaky("a"), Flaky("b"), Flaky("c"))))
    with (
        caplog.at_level(logging.INFO, logger="buttress.resilience"),
        resilience_testing(),
        pytest.raises(Flaky),
    ):
        flavour.call(fn)
    assert recorder.events == [
        ("retry", "f", 1, "a", 0.2),
        ("retry", "f", 2, "b", 0.4),
        ("give_up", "f", 3, "c", "attempts"),
    ]
    messages = [(record.levelname, record.getMessage()) for record in caplog.records]
    assert ("INFO", "retrying f in 0.200s after attempt 1/3 failed: Flaky('a')") in messages
    assert ("WARNING", "giving up on f after 3 attempts (attempts): Flaky('c')") in messages
    assert any("listener" in message and level == "ERROR" for level, message in messages)


def test_the_decorated_function_keeps_its_signature_and_kind(flavour: Flavour) -> None:
    fn = flavour.function(Script("x"))
    decorated = retry(on=Flaky)(fn)
    assert inspect.signature(decorated) == inspect.signature(fn)
    assert inspect.iscoroutinefunction(decorated) is flavour.is_async
    assert decorated.__wrapped__ is fn  # type: ignore[attr-defined]
    assert decorated.__name__ == fn.__name__


def test_one_attempt_means_no_wrapper_at_all() -> None:
    def fn() -> int:
        return 1

    assert retry(on=Flaky, attempts=1)(fn) is fn


def test_methods_are_retried_with_their_instance(flavour: Flavour) -> None:
    script = Script(Flaky(), lambda self, n: self.base + n)

    class Client:
        base = 40
        fetch = retry(on=Flaky)(flavour.function(script))

    with resilience_testing():
        assert flavour.call(Client().fetch, 2) == 42


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"on": Flaky, "attempts": 0}, "attempts=...), which counts every call"),
        ({"on": Flaky, "attempts": 2.5}, "whole number"),
        ({"on": Flaky, "wait_initial": -1}, "wait_initial=...) must be zero or more"),
        ({"on": Flaky, "wait_max": -0.1}, "wait_max=...) must be zero or more"),
        ({"on": Flaky, "wait_jitter": "x"}, "must be a number of seconds"),
        ({"on": Flaky, "deadline": 0}, "deadline=...) must be more than zero"),
        ({"on": Flaky, "wait_initial": 2, "wait_max": 1}, "is below wait_initial"),
        ({"on": "ConnectionError"}, "takes an exception class"),
        ({"on": ()}, "takes an exception class"),
        ({"on": int}, "takes an exception class"),
        ({"on": (Flaky, 3)}, "takes an exception class"),
        ({"on": Flaky, "budget": 0.2}, "takes a RetryBudget"),
        ({"on": Flaky, "listeners": [print]}, "ResilienceListener instances"),
    ],
)
def test_bad_arguments_fail_at_decoration_time(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        retry(**kwargs)  # type: ignore[arg-type]


def test_decorating_something_not_callable_fails_at_once() -> None:
    with pytest.raises(ConfigurationError, match="decorates functions"):
        retry(on=Flaky)(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ratio": 1.5}, "between 0 and 1"),
        ({"ratio": True}, "between 0 and 1"),
        ({"min_per_second": -1}, "zero or more"),
        ({"capacity": 0.5}, "at least 1"),
    ],
)
def test_bad_budgets_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RetryBudget(**kwargs)  # type: ignore[arg-type]


def test_skipped_waits_still_count_against_the_deadline(flavour: Flavour) -> None:
    script = Script(Flaky("1"), Flaky("2"), Flaky("3"), "ok")
    fn = retry(on=Flaky, attempts=10, wait_initial=1.0, wait_max=10, wait_jitter=0, deadline=2.5)(
        flavour.function(script)
    )
    with resilience_testing() as testing, pytest.raises(Flaky, match="2"):
        flavour.call(fn)
    # 1 s was "waited"; 1 s + the next 2 s wait would cross 2.5 s, as in production.
    assert testing.waits == [1.0]
    assert script.calls == 2


def test_a_predicate_that_calls_the_same_function_does_not_corrupt_retrying() -> None:
    calls = 0

    def transient(error: BaseException) -> bool:
        if calls < 3:
            with pytest.raises(ConnectionError):
                flaky()  # re-enters the same decorated function inside tenacity's decision
        return isinstance(error, ConnectionError)

    @retry(on=transient, attempts=3)
    def flaky() -> str:
        nonlocal calls
        calls += 1
        raise ConnectionError(f"attempt {calls}")

    with resilience_testing(), pytest.raises(ConnectionError):
        flaky()


def test_a_shared_exception_object_gets_one_note_however_often_it_is_raised() -> None:
    shared = Flaky("always the same object")

    @retry(on=Flaky, attempts=2)
    def fails() -> None:
        raise shared

    with resilience_testing():
        for _ in range(5):
            with pytest.raises(Flaky):
                fails()
    assert len(shared.__notes__) == 1


def test_the_final_error_chains_onto_the_previous_attempt_not_the_first(flavour: Flavour) -> None:
    errors = [Flaky("attempt 1"), Flaky("attempt 2"), Flaky("attempt 3")]
    fn = retry(on=Flaky, attempts=3)(flavour.function(Script(*errors)))
    with resilience_testing(), pytest.raises(Flaky) as caught:
        flavour.call(fn)
    assert caught.value is errors[2]
    # Not "during handling of attempt 1, another exception occurred": attempts stand alone.
    assert caught.value.__context__ is None


def test_a_partial_of_an_async_callable_gets_the_async_wrapper() -> None:
    class Client:
        def __init__(self) -> None:
            self.calls = 0

        async def __call__(self, n: int) -> int:
            self.calls += 1
            if self.calls == 1:
                raise Flaky
            return n

    client = Client()
    fn = retry(on=Flaky)(functools.partial(client, 5))
    assert inspect.iscoroutinefunction(fn)
    with resilience_testing():
        assert asyncio.run(fn()) == 5
    assert client.calls == 2


@pytest.mark.parametrize("value", [float("nan")])
@pytest.mark.parametrize("argument", ["wait_initial", "wait_max", "wait_jitter", "deadline"])
def test_nan_is_refused(argument: str, value: float) -> None:
    with pytest.raises(ConfigurationError, match="number of seconds"):
        retry(on=Flaky, **{argument: value})  # type: ignore[arg-type]


def test_a_nan_budget_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        RetryBudget(min_per_second=float("nan"))
    with pytest.raises(ConfigurationError):
        RetryBudget(capacity=float("nan"))
