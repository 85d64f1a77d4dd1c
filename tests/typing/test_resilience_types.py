"""Decorated functions keep their parameters and return types. Checked by mypy, never run."""

from __future__ import annotations

from typing import assert_type

from buttress.resilience import (
    CircuitBreaker,
    CircuitState,
    Policy,
    RetryBudget,
    bulkhead,
    circuit_breaker,
    fallback,
    retry,
    timeout,
)

payments = CircuitBreaker("typing-payments", fail_max=3)


@retry(on=ConnectionError, attempts=3, budget=RetryBudget())
def fetch(user_id: int, *, verbose: bool = False) -> dict[str, int]:
    return {"id": user_id}


@retry(on=lambda error: isinstance(error, OSError))
async def afetch(user_id: int) -> str:
    return str(user_id)


@timeout(1.0)
@bulkhead(4, max_waiting=8)
@fallback(None, on=ConnectionError)
async def guarded(name: str) -> bytes | None:
    return name.encode()


@payments
def charge(order_id: int, amount: float) -> str:
    return f"{order_id}:{amount}"


@circuit_breaker("typing-search")
async def search(query: str) -> list[str]:
    return [query]


guarded_policy = Policy(retry=retry(on=ConnectionError), breaker=payments, timeout=1.0)


@guarded_policy
def refund(order_id: int) -> bool:
    return order_id > 0


def check() -> None:
    assert_type(refund(1), bool)
    refund("1")  # type: ignore[arg-type]
    assert_type(charge(1, 2.5), str)
    assert_type(payments.call(charge, 1, amount=2.0), str)
    assert_type(payments.state, CircuitState)
    charge("1", 2.5)  # type: ignore[arg-type]
    payments.call(charge, 1)  # type: ignore[call-arg]
    assert_type(fetch(1), dict[str, int])
    assert_type(fetch(1, verbose=True), dict[str, int])


async def acheck() -> None:
    assert_type(await afetch(1), str)
    assert_type(await guarded("x"), bytes | None)
    assert_type(await search("q"), list[str])
    assert_type(await payments.acall(search, "q"), list[str])
    await search(1)  # type: ignore[arg-type]
    await afetch("1")  # type: ignore[arg-type]
    fetch("1")  # type: ignore[arg-type]
    fetch(1, loud=True)  # type: ignore[call-arg]
