"""Faults: a PostgreSQL connection killed mid-unit loses nothing committed and nothing half-done.

The server ends the unit's connection with ``pg_terminate_backend`` while the
unit holds uncommitted writes. The unit's next call raises an `UnavailableError`
saying to start a new unit of work, with the driver's disconnect error chained
(SQLAlchemy's ``DBAPIError`` with ``connection_invalidated``); the unit is marked
failed, nothing of it is stored, leaving the block does not raise again, and the
next unit of work on the same engine works.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

from buttress.errors import ConcurrencyError, ConfigurationError, UnavailableError
from buttress.persistence import AsyncSqlAlchemyUnitOfWork, SqlAlchemyUnitOfWork
from buttress.resilience import retry
from buttress.testing import ContractOrder
from postgres_schemas import emptied

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
        with pytest.raises(UnavailableError, match="Start a new unit of work") as raised:
            orders.add(ContractOrder(ref="after"))
        assert isinstance(raised.value.__cause__, sa.exc.DBAPIError)
        assert raised.value.__cause__.connection_invalidated
        with pytest.raises(UnavailableError, match="failed earlier"):
            uow.commit()  # marked failed: nothing to commit
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
        with pytest.raises(UnavailableError), uow:
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
        with pytest.raises(UnavailableError, match="Start a new unit of work") as raised:
            await uow.commit()
        assert isinstance(raised.value.__cause__, sa.exc.DBAPIError)
        assert raised.value.__cause__.connection_invalidated
    async with uow:
        orders = uow.repository(ContractOrder)
        assert await orders.count() == 0
        await orders.add(ContractOrder(ref="next"))
        await uow.commit()
    async with uow:
        assert [o.ref for o in await uow.repository(ContractOrder).find()] == ["next"]


@pytest.mark.parametrize("level", ["REPEATABLE READ", "SERIALIZABLE"])
def test_the_loser_of_a_race_at_repeatable_read_gets_concurrency_error_and_a_retry_wins(
    engine, level
):
    """Two units raise one order's total; the second to write is refused, then retried."""
    factory = sessionmaker(engine)
    with SqlAlchemyUnitOfWork(factory) as uow:
        key = uow.repository(ContractOrder).add(ContractOrder(ref="race", total=0)).id
        uow.commit()
    first_read, first_done = threading.Event(), threading.Event()
    attempts: list[str] = []
    errors: list[BaseException] = []

    def winner() -> None:
        with SqlAlchemyUnitOfWork(factory, isolation_level=level) as uow:
            order = uow.repository(ContractOrder).get(key)
            first_read.wait(10)
            order.total += 1
            uow.commit()
        first_done.set()

    @retry(on=ConcurrencyError, attempts=3, wait_initial=0.01, wait_jitter=0)
    def loser() -> None:
        with SqlAlchemyUnitOfWork(factory, isolation_level=level) as uow:
            attempts.append("try")
            order = uow.repository(ContractOrder).get(key)  # the snapshot starts here
            first_read.set()
            first_done.wait(10)  # the winner committed meanwhile
            order.total += 10
            uow.commit()

    def run_loser() -> None:
        try:
            loser()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=winner), threading.Thread(target=run_loser)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len(attempts) == 2  # refused once, then it read the new total and won
    assert stored_total(engine, key) == 11  # nothing lost, nothing doubled


def test_postgresqls_own_serialization_failure_is_concurrency_error_and_fails_the_unit(engine):
    """Another transaction changes the row after the unit's snapshot: PostgreSQL says 40001."""
    factory = sessionmaker(engine)
    with SqlAlchemyUnitOfWork(factory) as uow:
        key = uow.repository(ContractOrder).add(ContractOrder(ref="plain", total=0)).id
        uow.commit()
    loser = SqlAlchemyUnitOfWork(factory, isolation_level="REPEATABLE READ")
    with loser:
        order = loser.repository(ContractOrder).get(key)  # the snapshot
        with engine.begin() as other:  # a writer that does not use the version column
            update = sa.text("UPDATE buttress_contract_order SET total = 5 WHERE id = :k")
            other.execute(update, {"k": key})
        order.total = 7
        with pytest.raises(ConcurrencyError, match="serialization failure") as raised:
            loser.commit()
        assert isinstance(raised.value.__cause__, sa.exc.DBAPIError)
        with pytest.raises(ConcurrencyError, match="failed earlier"):
            loser.repository(ContractOrder).count()
    assert stored_total(engine, key) == 5
    with loser:  # a new unit: works again, at its level
        loser.repository(ContractOrder).get(key).total = 9
        loser.commit()
    assert stored_total(engine, key) == 9


def stored_total(engine: sa.Engine, key: int) -> int:
    with SqlAlchemyUnitOfWork(sessionmaker(engine)) as uow:
        return uow.repository(ContractOrder).get(key).total


def test_an_unknown_isolation_level_is_refused():
    with pytest.raises(ConfigurationError, match="isolation_level must be one of"):
        SqlAlchemyUnitOfWork(sessionmaker(), isolation_level="READ SOMETIMES")


@pytest.mark.asyncio
@pytest.mark.parametrize("level", ["REPEATABLE READ", "SERIALIZABLE"])
async def test_two_async_tasks_race_and_the_retried_loser_wins(async_engine, level):
    factory = async_sessionmaker(async_engine)
    async with AsyncSqlAlchemyUnitOfWork(factory) as uow:
        key = (await uow.repository(ContractOrder).add(ContractOrder(ref="arace", total=0))).id
        await uow.commit()
    first_read, first_done = asyncio.Event(), asyncio.Event()
    attempts: list[str] = []

    async def winner() -> None:
        async with AsyncSqlAlchemyUnitOfWork(factory, isolation_level=level) as uow:
            order = await uow.repository(ContractOrder).get(key)
            await first_read.wait()
            order.total += 1
            await uow.commit()
        first_done.set()

    @retry(on=ConcurrencyError, attempts=3, wait_initial=0.01, wait_jitter=0)
    async def loser() -> None:
        async with AsyncSqlAlchemyUnitOfWork(factory, isolation_level=level) as uow:
            attempts.append("try")
            order = await uow.repository(ContractOrder).get(key)
            first_read.set()
            await first_done.wait()
            order.total += 10
            await uow.commit()

    await asyncio.wait_for(asyncio.gather(winner(), loser()), 30)
    assert len(attempts) == 2
    async with AsyncSqlAlchemyUnitOfWork(factory) as uow:
        assert (await uow.repository(ContractOrder).get(key)).total == 11
