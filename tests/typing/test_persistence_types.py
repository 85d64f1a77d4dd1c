"""Repositories are generic in their entity and key types. Checked by mypy, never run."""

from __future__ import annotations

from typing import assert_type

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from buttress.domain import F
from buttress.persistence import (
    AsyncInMemoryUnitOfWork,
    AsyncRepository,
    AsyncSqlAlchemyRepository,
    AsyncSqlAlchemyUnitOfWork,
    AsyncUnitOfWork,
    InMemoryUnitOfWork,
    Page,
    Repository,
    SqlAlchemyRepository,
    SqlAlchemyUnitOfWork,
    UnitOfWork,
)
from buttress.testing import ContractOrder, ContractTag


def orders_of(uow: UnitOfWork) -> Repository[ContractOrder, int]:
    return uow.repository(ContractOrder, int)


def check(session: Session) -> None:
    uows: list[UnitOfWork] = [SqlAlchemyUnitOfWork(lambda: session), InMemoryUnitOfWork()]
    for uow in uows:
        with uow:
            orders = orders_of(uow)
            assert_type(orders.get(1), ContractOrder)
            assert_type(orders.get_or_none(1), ContractOrder | None)
            assert_type(orders.find(F("total") > 1, order_by="-total"), list[ContractOrder])
            assert_type(orders.page(size=10), Page[ContractOrder])
            assert_type(orders.count(), int)
            orders.get("1")  # type: ignore[arg-type]
            orders.add("order")  # type: ignore[arg-type]
            tags = uow.repository(ContractTag, str)
            assert_type(tags.upsert(ContractTag(name="t")), ContractTag)
            tags.upsert(ContractOrder(ref="a"))  # type: ignore[arg-type]
            uow.commit()
    sql = SqlAlchemyRepository[ContractOrder, int](session, ContractOrder)
    assert_type(sql.get(1), ContractOrder)
    repository: Repository[ContractOrder, int] = sql
    assert_type(repository.first(), ContractOrder | None)


async def acheck(session: AsyncSession) -> None:
    uows: list[AsyncUnitOfWork] = [
        AsyncSqlAlchemyUnitOfWork(lambda: session),
        AsyncInMemoryUnitOfWork(),
    ]
    for uow in uows:
        async with uow:
            orders: AsyncRepository[ContractOrder, int] = uow.repository(ContractOrder, int)
            assert_type(await orders.get(1), ContractOrder)
            assert_type(await orders.find(), list[ContractOrder])
            tags = uow.repository(ContractTag, str)
            assert_type(await tags.upsert(ContractTag(name="t")), ContractTag)
            await orders.get("1")  # type: ignore[arg-type]
            async with uow.savepoint():
                await orders.add(ContractOrder(ref="a"))
            await uow.commit()
        events = list(uow.collect_events())
        assert_type(events[0].event_name, str)
    typed = AsyncSqlAlchemyUnitOfWork(lambda: session)
    async with typed:
        assert_type(
            typed.repository(ContractOrder, int), AsyncSqlAlchemyRepository[ContractOrder, int]
        )
