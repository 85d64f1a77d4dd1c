"""Policy: the parts apply in the documented order, whatever order they are given in."""

from __future__ import annotations

import asyncio
import inspect
import threading
import uuid
from typing import Any

import pytest
from flavours import Flavour, Script

from buttress.errors import (
    BulkheadFullError,
    CircuitOpenError,
    ConfigurationError,
    DeadlineExceededError,
)
from buttress.resilience import (
    CircuitBreaker,
    CircuitState,
    Policy,
    bulkhead,
    fallback,
    resilience_testing,
    retry,
    timeout,
)


class Down(Exception):  # noqa: N818 - reads as the dependency's state
    pass


def breaker(**kwargs: Any) -> CircuitBreaker:
    return CircuitBreaker(f"policy-{uuid.uuid4().hex[:8]}", **kwargs)


def test_a_policy_keeps_the_result_signature_and_kind(flavour: Flavour) -> None:
    policy = Policy(retry=retry(on=Down), breaker=breaker(), timeout=5.0, deadline=10.0)
    fn = policy(flavour.function(Script("ok")))
    assert flavour.call(fn) == "ok"
    assert inspect.iscoroutinefunction(fn) is flavour.is_async


def test_the_breaker_counts_every_attempt_of_the_retry(flavour: Flavour) -> None:
    cb = breaker(fail_max=3)
    script = Script(Down())
    fn = Policy(retry=retry(on=Down, attempts=3), breaker=cb)(flavour.function(script))
    with resilience_testing(), pytest.raises(Down):
        flavour.call(fn)
    assert script.calls == 3
    assert cb.state is CircuitState.OPEN
    # Open: refused at once, and an open circuit is never retried.
    with resilience_testing() as testing, pytest.raises(CircuitOpenError):
        flavour.call(fn)
    assert script.calls == 3
    assert testing.waits == []


def test_the_timeout_bounds_each_attempt_so_a_hung_attempt_is_retried() -> None:
    attempts = 0

    @Policy(retry=retry(on=TimeoutError, attempts=3), timeout=0.05)
    async def lookup() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            await asyncio.sleep(10)  # hangs: cut at 0.05 s, then retried
        return "found"

    with resilience_testing():
        assert asyncio.run(lookup()) == "found"
    assert attempts == 2


def test_a_hung_attempt_counts_as_a_failure_for_the_breaker() -> None:
    cb = breaker(fail_max=1)

    @Policy(breaker=cb, timeout=0.02)
    async def hangs() -> None:
        await asyncio.sleep(10)

    with pytest.raises(DeadlineExceededError):
        asyncio.run(hangs())
    assert cb.state is CircuitState.OPEN


def test_no_retry_wait_crosses_the_deadline(flavour: Flavour) -> None:
    script = Script(Down())
    policy = Policy(
        retry=retry(on=Down, attempts=10, wait_initial=1.0, wait_max=8.0, wait_jitter=0),
        deadline=2.5,
    )
    fn = policy(flavour.function(script))
    with resilience_testing() as testing, pytest.raises(Down) as raised:
        flavour.call(fn)
    assert testing.waits == [1.0]  # the next wait (2 s) would end at 3 s, past 2.5 s
    assert script.calls == 2
    assert "deadline" in "".join(raised.value.__notes__)


def test_the_shorter_of_two_deadlines_wins(flavour: Flavour) -> None:
    policy = Policy(
        retry=retry(on=Down, attempts=10, wait_initial=1.0, wait_jitter=0, deadline=1.5),
        deadline=60.0,
    )
    fn = policy(flavour.function(Script(Down())))
    with resilience_testing() as testing, pytest.raises(Down):
        flavour.call(fn)
    assert testing.waits == [1.0]


def test_the_deadline_cancels_an_async_attempt_that_would_outlast_it() -> None:
    attempts = 0

    @Policy(retry=retry(on=Down, attempts=5, wait_initial=0.01, wait_jitter=0), deadline=0.1)
    async def never_recovers() -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise Down
        await asyncio.sleep(10)  # the second attempt hangs: the deadline cuts it

    with pytest.raises(DeadlineExceededError) as raised:
        asyncio.run(never_recovers())
    assert isinstance(raised.value, TimeoutError)
    assert attempts == 2


def test_the_bulkhead_holds_one_slot_for_the_whole_call_waits_included() -> None:
    policy = Policy(bulkhead=1, retry=retry(on=Down, attempts=3))
    inside = threading.Event()
    release = threading.Event()

    @policy
    def slow() -> str:
        inside.set()
        release.wait(5)
        return "done"

    worker = threading.Thread(target=slow)
    worker.start()
    inside.wait(5)
    try:
        with pytest.raises(BulkheadFullError):
            slow()
    finally:
        release.set()
        worker.join(5)


def test_the_fallback_answers_once_everything_else_gave_up(flavour: Flavour) -> None:
    cb = breaker(fail_max=1)
    script = Script(Down())
    policy = Policy(
        fallback=fallback("cached", on=(Down, CircuitOpenError)),
        retry=retry(on=Down, attempts=2),
        breaker=cb,
    )
    fn = policy(flavour.function(script))
    with resilience_testing():
        assert flavour.call(fn) == "cached"  # failed, breaker opened, retry stopped
        assert flavour.call(fn) == "cached"  # refused by the open circuit
    assert script.calls == 1


def test_parts_may_be_spelled_as_their_decorators(flavour: Flavour) -> None:
    policy = Policy(timeout=timeout(5.0), bulkhead=bulkhead(2, max_waiting=1))
    assert flavour.call(policy(flavour.function(Script(3)))) == 3


def test_an_empty_policy_changes_nothing() -> None:
    def plain() -> int:
        return 1

    assert Policy()(plain) is plain


def test_one_policy_shares_its_breaker_between_functions(flavour: Flavour) -> None:
    policy = Policy(breaker=breaker(fail_max=1))
    charge = policy(flavour.function(Script(Down())))
    refund = policy(flavour.function(Script("refunded")))
    with pytest.raises(Down):
        flavour.call(charge)
    with pytest.raises(CircuitOpenError):
        flavour.call(refund)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retry": timeout(1.0)}, r"Policy\(retry=...\) takes what retry\(...\) returns"),
        ({"retry": lambda fn: fn}, "retry"),
        ({"timeout": retry(on=Down)}, "got a retry"),
        ({"timeout": "1s"}, "a number of seconds"),
        ({"timeout": 0}, r"timeout\(seconds=...\) must be more than zero"),
        ({"bulkhead": 0}, "at least 1"),
        ({"bulkhead": True}, "a number of calls"),
        ({"fallback": retry(on=Down)}, "fallback"),
        ({"breaker": "payments"}, "takes a CircuitBreaker"),
        ({"deadline": -1}, "deadline"),
    ],
)
def test_parts_that_are_not_what_their_names_say_are_refused(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Policy(**kwargs)


def test_a_policy_says_what_it_holds() -> None:
    cb = breaker()
    text = repr(Policy(breaker=cb, deadline=3.0))
    assert cb.name in text
    assert "deadline=3.0" in text
