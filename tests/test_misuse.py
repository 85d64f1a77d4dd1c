"""Common mistakes get a Buttress error that names the fix, never a puzzle."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from buttress.caching import cached
from buttress.errors import ConfigurationError, QueryError
from buttress.persistence import (
    AsyncInMemoryUnitOfWork,
    AsyncSqlAlchemyUnitOfWork,
    InMemoryUnitOfWork,
)
from buttress.resilience import CircuitBreaker, bulkhead, circuit_breaker, retry, timeout
from buttress.testing import ContractOrder


def unit(kind: str) -> Any:
    if kind == "memory":
        return AsyncInMemoryUnitOfWork()
    return AsyncSqlAlchemyUnitOfWork(async_sessionmaker(create_async_engine("sqlite+aiosqlite://")))


@pytest.mark.parametrize("kind", ["memory", "sqlalchemy"])
def test_with_on_an_asyncio_unit_of_work_says_async_with(kind: str) -> None:
    uow = unit(kind)
    with pytest.raises(ConfigurationError, match=r"write `async with uow:`"), uow:
        pass  # pragma: no cover - refused on entry


def bare(decorator: Any) -> None:
    @decorator
    def charge(amount: int) -> int:  # pragma: no cover - never called
        return amount


@pytest.mark.parametrize(
    ("decorator", "spelling"),
    [
        (cached, "@cached()"),
        (retry, "@retry(on=ConnectionError)"),
        (timeout, "@timeout(2.0)"),
        (bulkhead, "@bulkhead(10)"),
        (circuit_breaker, '@circuit_breaker("payments")'),
        (CircuitBreaker, '@circuit_breaker("payments")'),
    ],
    ids=["cached", "retry", "timeout", "bulkhead", "circuit_breaker", "CircuitBreaker"],
)
def test_a_decorator_without_its_parentheses_says_how_to_write_it(
    decorator: Any, spelling: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        bare(decorator)
    message = str(caught.value)
    assert "was given the function" in message
    assert "charge" in message
    assert spelling in message


def test_retry_without_on_says_what_to_give() -> None:
    with pytest.raises(ConfigurationError, match=r"retry needs on=.*retry\(on=ConnectionError\)"):
        retry()  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("order_by", "spelling"),
    [("total desc", "-total"), ("total DESC", "-total"), ("total asc", "total")],
)
def test_an_sql_style_order_suggests_the_field_spelling(order_by: str, spelling: str) -> None:
    with InMemoryUnitOfWork() as uow:
        orders = uow.repository(ContractOrder)
        with pytest.raises(QueryError, match=f"write '{spelling}', not '{order_by}'"):
            orders.find(order_by=order_by)


def test_a_key_of_the_wrong_type_reads_as_english() -> None:
    with InMemoryUnitOfWork() as uow:
        orders = uow.repository(ContractOrder, int)
        with pytest.raises(QueryError, match=r"is an int key, got 'x' \(str\): pass an int"):
            orders.get("x")  # type: ignore[arg-type]
