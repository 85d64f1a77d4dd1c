"""Faults: the link to PostgreSQL dies while an aggregate is being written.

A service allocates against a `ContractProduct` (batches holding allocations, a
version on the product) through a loopback `FaultProxy` in front of the shared
server. The proxy is cut at the moment the unit sends a chosen statement (a part's
INSERT, the root's version bump) or its COMMIT, as a server crash or a network
partition would. Each time: the unit raises `UnavailableError` with the driver's
disconnect chained, the stored aggregate is exactly what it was (no part of it
half-written, the version not bumped), and once the link is back a retried unit
stores the change whole, once, with one version bump — sync (psycopg) and asyncio
(asyncpg, psycopg).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

from buttress.errors import UnavailableError
from buttress.persistence import AsyncSqlAlchemyUnitOfWork, SqlAlchemyUnitOfWork
from buttress.resilience import retry
from buttress.testing import ContractAllocation, ContractBatch, ContractProduct
from fault_proxy import FaultProxy
from postgres_schemas import emptied

pytestmark = pytest.mark.postgres

CUTS = {
    # the unit sends ... when the link dies
    "part-insert": "INSERT INTO buttress_contract_allocation",
    "version-bump": "UPDATE buttress_contract_product",
    "commit": None,
}


def through(proxy: FaultProxy, url: str) -> str:
    """``url`` pointed at the proxy instead of the server."""
    return make_url(url).set(port=proxy.port).render_as_string(hide_password=False)


def cut_at(engine: sa.Engine, proxy: FaultProxy, point: str) -> Callable[[], None]:
    """Cut the link once, just before the engine sends ``point``; the undo."""
    prefix = CUTS[point]
    fired: list[bool] = []

    def on_statement(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not fired and prefix is not None and statement.startswith(prefix):
            fired.append(True)
            proxy.cut()

    def on_commit(conn: Any) -> None:
        if not fired and prefix is None:
            fired.append(True)
            proxy.cut()

    sa.event.listen(engine, "before_cursor_execute", on_statement)
    sa.event.listen(engine, "commit", on_commit)

    def undo() -> None:
        sa.event.remove(engine, "before_cursor_execute", on_statement)
        sa.event.remove(engine, "commit", on_commit)
        assert fired, f"the unit never reached {point}"

    return undo


def seeded() -> ContractProduct:
    return ContractProduct(
        sku="LAMP",
        batches=[
            ContractBatch(reference="lamp-1", qty=10),
            ContractBatch(reference="lamp-2", qty=5),
        ],
    )


def stored(url: str) -> tuple[int, list[tuple[str, list[tuple[str, int]]]]]:
    """The product's version and its batches' allocations, read past the proxy."""
    engine = sa.create_engine(url)
    with SqlAlchemyUnitOfWork(sessionmaker(engine)) as uow:
        product = uow.repository(ContractProduct, str).get(
            "LAMP", load=("batches", "batches.allocations")
        )
        found = (
            product.version,
            [(b.reference, [(a.orderid, a.qty) for a in b.allocations]) for b in product.batches],
        )
    engine.dispose()
    return found


BEFORE = (1, [("lamp-1", []), ("lamp-2", [])])
AFTER = (2, [("lamp-1", [("o1", 3)]), ("lamp-2", [])])


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", 5432) as proxy:
        yield proxy


@pytest.fixture
def direct(postgres_url: str, contract_schema: str) -> str:
    """The URL of the contract schema, past the proxy (for seeding and checking)."""
    url, options = emptied(postgres_url, contract_schema, "psycopg")
    return f"{url}?options={options['options'].replace(' ', '%20')}"


@pytest.fixture
def engine(direct: str, proxy: FaultProxy) -> Iterator[sa.Engine]:
    seed = sa.create_engine(direct)
    with SqlAlchemyUnitOfWork(sessionmaker(seed)) as uow:
        uow.repository(ContractProduct, str).add(seeded())
        uow.commit()
    seed.dispose()
    engine = sa.create_engine(through(proxy, direct), pool_pre_ping=True)
    yield engine
    engine.dispose()


@pytest.mark.parametrize("point", list(CUTS))
def test_an_aggregate_cut_mid_write_keeps_its_old_state_and_a_retry_stores_it_once(
    engine: sa.Engine, proxy: FaultProxy, direct: str, point: str
) -> None:
    uow = SqlAlchemyUnitOfWork(sessionmaker(engine))
    failures: list[UnavailableError] = []
    seen: list[Any] = []  # what the table held when the unit failed

    @retry(on=UnavailableError, attempts=2, wait_initial=0.01, wait_jitter=0)
    def allocate() -> None:
        with uow:
            product = uow.repository(ContractProduct, str).get("LAMP", load=("batches",))
            product.batches[0].allocations.append(ContractAllocation(orderid="o1", qty=3))
            try:
                uow.commit()
            except UnavailableError as error:
                failures.append(error)
                seen.append(stored(direct))
                proxy.restore()  # the link comes back while the caller backs off
                raise

    undo = cut_at(engine, proxy, point)
    allocate()
    undo()
    assert len(failures) == 1  # failed once, then the retry won
    assert disconnected(failures[0])
    assert seen == [BEFORE]  # nothing of the failed unit reached the tables
    assert stored(direct) == AFTER  # stored whole, once, one bump


def disconnected(error: UnavailableError) -> bool:
    """Whether ``error`` chains the driver's disconnect, as SQLAlchemy reports it."""
    cause = error.__cause__
    return isinstance(cause, sa.exc.DBAPIError) and cause.connection_invalidated


def test_a_new_aggregate_cut_mid_insert_leaves_no_part_behind(
    engine: sa.Engine, proxy: FaultProxy, direct: str
) -> None:
    desk = ContractProduct(
        sku="DESK",
        batches=[
            ContractBatch(
                reference="desk-1", qty=4, allocations=[ContractAllocation(orderid="o9", qty=1)]
            )
        ],
    )
    uow = SqlAlchemyUnitOfWork(sessionmaker(engine))
    undo = cut_at(engine, proxy, "part-insert")
    with uow:
        products = uow.repository(ContractProduct, str)
        with pytest.raises(UnavailableError, match="Start a new unit of work"):
            products.add(desk)  # add flushes: the link dies at the allocation's INSERT
    undo()
    proxy.restore()
    check = sa.create_engine(direct)
    with check.connect() as connection:
        counted = {
            table: connection.execute(
                sa.select(sa.func.count()).select_from(sa.table(table))
            ).scalar_one()
            for table in (
                "buttress_contract_product",
                "buttress_contract_batch",
                "buttress_contract_allocation",
            )
        }
    check.dispose()
    assert counted == {  # the seeded product only: no DESK, no batch, no allocation
        "buttress_contract_product": 1,
        "buttress_contract_batch": 2,
        "buttress_contract_allocation": 0,
    }
    with uow:  # the same unit of work object, a new unit: works through the restored link
        assert uow.repository(ContractProduct, str).count() == 1


@pytest_asyncio.fixture(params=["asyncpg", "psycopg"])
async def async_engine(
    request: pytest.FixtureRequest, engine: sa.Engine, proxy: FaultProxy, direct: str
) -> AsyncIterator[AsyncEngine]:
    url, connect_args = emptied_keeping(direct, request.param)
    made = create_async_engine(through(proxy, url), connect_args=connect_args, pool_pre_ping=True)
    yield made
    await made.dispose()


def emptied_keeping(direct: str, driver: str) -> tuple[str, dict[str, Any]]:
    """The async URL and connect arguments of ``direct``'s schema, the seeded rows kept."""
    url = make_url(direct)
    schema = url.query["options"].removeprefix("-csearch_path=")
    url = url.set(drivername=f"postgresql+{driver}", query={})
    rendered = url.render_as_string(hide_password=False)
    if driver == "asyncpg":
        return rendered, {"server_settings": {"search_path": schema}}
    return rendered, {"options": f"-csearch_path={schema}"}


@pytest.mark.asyncio
@pytest.mark.parametrize("point", list(CUTS))
async def test_an_async_aggregate_cut_mid_write_keeps_its_old_state_and_a_retry_stores_it_once(
    async_engine: AsyncEngine, proxy: FaultProxy, direct: str, point: str
) -> None:
    uow = AsyncSqlAlchemyUnitOfWork(async_sessionmaker(async_engine))
    failures: list[UnavailableError] = []
    seen: list[Any] = []

    @retry(on=UnavailableError, attempts=2, wait_initial=0.01, wait_jitter=0)
    async def allocate() -> None:
        async with uow:
            product = await uow.repository(ContractProduct, str).get(
                "LAMP", load=("batches", "batches.allocations")
            )
            product.batches[0].allocations.append(ContractAllocation(orderid="o1", qty=3))
            try:
                await uow.commit()
            except UnavailableError as error:
                failures.append(error)
                seen.append(stored(direct))
                proxy.restore()
                raise

    undo = cut_at(async_engine.sync_engine, proxy, point)
    await allocate()
    undo()
    assert len(failures) == 1
    assert disconnected(failures[0])
    assert seen == [BEFORE]
    assert stored(direct) == AFTER
