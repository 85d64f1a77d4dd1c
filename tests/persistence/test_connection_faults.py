"""Faults: a PostgreSQL connection killed mid-unit loses nothing committed and nothing half-done.

The server ends the unit's connection with ``pg_terminate_backend`` while the
unit holds uncommitted writes. The unit's next call raises the driver's
disconnect error (SQLAlchemy's ``DBAPIError`` with ``connection_invalidated``),
nothing of the unit is stored, leaving the block does not raise again, and the
next unit of work on the same engine works.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
import sqlalchemy as sa
from postgres_schemas import emptied
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

from buttress.persistence import AsyncSqlAlchemyUnitOfWork, SqlAlchemyUnitOfWork
from buttress.testing import ContractOrder

pytestmark = pytest.mark.postgres


def terminate(postgres_url: str, pid: int) -> None:
    """End backend ``pid`` from another connection, as an administrator would."""
    admin = sa.create_engine(postgres_url)
    with admin.connect() as connection:
        assert connection.execute(sa.select(sa.func.pg_terminate_backend(pid))).scalar()
    admin.dispose()


@pytest.fixture(params=[True, False], ids=["pre-ping", "no-pre-ping"])
def engine(request, postgres_url, contract_schema) -> Iterator[sa.Engine]:
    url, connect_args = emptied(postgres_url, contract_schema, "psycopg")
    engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=request.param)
    yield engine
    engine.dispose()


def stored_refs(engine: sa.Engine) -> list[str]:
    with SqlAlchemyUnitOfWork(sessionmaker(engine)) as uow:
        return [order.ref for order in uow.repository(ContractOrder).find()]


def test_a_killed_connection_persists_nothing_and_the_next_unit_works(engine, postgres_url):
    uow = SqlAlchemyUnitOfWork(sessionmaker(engine))
    with uow:
        uow.repository(ContractOrder).add(ContractOrder(ref="kept"))
        uow.commit()
    with uow:
        orders = uow.repository(ContractOrder)
        orders.add(ContractOrder(ref="lost"))
        pid = uow.session.execute(sa.select(sa.func.pg_backend_pid())).scalar_one()
        terminate(postgres_url, pid)
        with pytest.raises(sa.exc.DBAPIError, match="terminat") as raised:
            orders.add(ContractOrder(ref="after"))
        assert raised.value.connection_invalidated
        with pytest.raises(sa.exc.SQLAlchemyError):
            uow.commit()  # the transaction is gone: nothing to commit
    assert stored_refs(engine) == ["kept"]
    with uow:
        uow.repository(ContractOrder).add(ContractOrder(ref="next"))
        uow.commit()
    assert stored_refs(engine) == ["kept", "next"]


def test_a_connection_killed_between_units_is_replaced(engine, postgres_url):
    uow = SqlAlchemyUnitOfWork(sessionmaker(engine))
    with uow:
        pid = uow.session.execute(sa.select(sa.func.pg_backend_pid())).scalar_one()
    terminate(postgres_url, pid)  # the pooled connection is dead now
    if not engine.pool._pre_ping:  # without pre-ping the first use finds out, and fails once
        with pytest.raises(sa.exc.DBAPIError), uow:
            uow.repository(ContractOrder).count()
    with uow:
        uow.repository(ContractOrder).add(ContractOrder(ref="fresh"))
        uow.commit()
    assert stored_refs(engine) == ["fresh"]


@pytest_asyncio.fixture(params=["asyncpg", "psycopg"])
async def async_engine(request, postgres_url, contract_schema) -> AsyncIterator[AsyncEngine]:
    url, connect_args = emptied(postgres_url, contract_schema, request.param)
    engine = create_async_engine(url, connect_args=connect_args, pool_pre_ping=True)
    yield engine
    await engine.dispose()


@pytest.mark.asyncio
async def test_a_killed_async_connection_persists_nothing_and_the_next_unit_works(
    async_engine, postgres_url
):
    uow = AsyncSqlAlchemyUnitOfWork(async_sessionmaker(async_engine))
    async with uow:
        orders = uow.repository(ContractOrder)
        await orders.add(ContractOrder(ref="lost"))
        pid = (await uow.session.execute(sa.select(sa.func.pg_backend_pid()))).scalar_one()
        terminate(postgres_url, pid)
        with pytest.raises(sa.exc.DBAPIError) as raised:
            await uow.commit()
        assert raised.value.connection_invalidated
    async with uow:
        orders = uow.repository(ContractOrder)
        assert await orders.count() == 0
        await orders.add(ContractOrder(ref="next"))
        await uow.commit()
    async with uow:
        assert [o.ref for o in await uow.repository(ContractOrder).find()] == ["next"]
