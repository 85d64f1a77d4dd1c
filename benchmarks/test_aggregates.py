"""Aggregates with parts: loading and saving them costs what plain SQLAlchemy costs.

The model is the contract suite's: a `ContractProduct` holding `ContractBatch`es
holding `ContractAllocation`s (cascade ``all, delete-orphan``, a version on the
product). Groups run on SQLite (a file) and PostgreSQL (psycopg, a schema of its
own), as ``persistence.<hot-path>-<backend>``, set up as in ``test_persistence``.

- ``persistence.load-aggregates-100``: `PRODUCTS` products with two batches of two
  allocations each, loaded by a new session (unit of work) each round. Baseline:
  ``select(ContractProduct).options(selectinload(batches).selectinload(allocations))``
  ordered by key; ours: ``repo.find(order_by="sku", load=("batches",
  "batches.allocations"))``; peer: advanced-alchemy's ``get_many`` with the same
  loader options. Every row runs 3 SELECTs.
- ``persistence.add-aggregate``: a new product with `BATCHES` batches, added and
  committed. Baseline: ``session.add(product); session.commit()``; ours:
  ``repo.add(product); uow.commit()``; peer: advanced-alchemy's ``add(product,
  auto_commit=True)`` without its refresh: one INSERT of the product, one of
  the batches (executemany), no version bump (a new aggregate).
- Both SQL groups' buttress rows carry an ``interleaved`` column: the ratio of
  their median to the baseline's with the two timed in alternating blocks of
  rounds in the same test (`interleaved`). Rows of a group are timed one after
  the other, so the machine's drift between them moves the rows' ratio by a few
  per cent from run to run; alternating gives both the same moments, and this
  ratio moves far less.
- ``persistence.load-aggregate-memory``: one product with its batches and
  allocations loaded by key from a fresh unit of work. Baseline: ours over SQLite
  in a file; ours: the in-memory twin. The twin's ratio is how much faster tests
  on it run than the same tests on SQLite.
"""

from __future__ import annotations

import itertools
import statistics
import time
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import selectinload, sessionmaker

from buttress.persistence import InMemoryStore, InMemoryUnitOfWork, SqlAlchemyUnitOfWork
from buttress.testing import ContractAllocation, ContractBatch, ContractProduct, contract_metadata
from test_persistence import (
    WARMUP,
    SQLAlchemySyncRepository,
    database,
    no_sync_sqlite,
    recording,
    summary,
)
from test_persistence import (
    backends as persistence_backends,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

PRODUCTS = 100
"""Products loaded per round of ``persistence.load-aggregates-100``."""

BATCHES = 10
"""Batches of the product added per round of ``persistence.add-aggregate``."""

ROUNDS = {"load-aggregates-100": 200, "add-aggregate": 300, "load-aggregate-memory": 2000}

PATHS = ("batches", "batches.allocations")
LOADERS = (selectinload(ContractProduct.batches).selectinload(ContractBatch.allocations),)


class ProductRepository(SQLAlchemySyncRepository[ContractProduct]):
    """advanced-alchemy's repository of `ContractProduct`."""

    model_type = ContractProduct
    id_attribute = "sku"


def product(sku: str, batches: int = 2, allocations: int = 2) -> ContractProduct:
    return ContractProduct(
        sku=sku,
        batches=[
            ContractBatch(
                reference=f"{sku}-{b}",
                qty=10,
                allocations=[
                    ContractAllocation(orderid=f"o{a}", qty=1) for a in range(allocations)
                ],
            )
            for b in range(batches)
        ],
    )


@pytest.fixture(scope="module")
def sessions(request: pytest.FixtureRequest, tmp_path_factory: Any) -> Iterator[Any]:
    """A database of the backend the test is parametrised with, holding `PRODUCTS` products."""
    with database(request.param, tmp_path_factory, "aggregates") as engine:
        contract_metadata.create_all(engine)
        factory = sessionmaker(engine, expire_on_commit=False)
        with factory.begin() as session:
            session.add_all(product(f"P{n:03}") for n in range(PRODUCTS))
        yield engine, factory


def backends(hot_path: str) -> pytest.MarkDecorator:
    return persistence_backends(hot_path, "sessions")


def measure(bench: Any, engine: sa.Engine | None, target: Any, setup: Any, rounds: int) -> Any:
    """Run ``target`` once with its SQL recorded in ``extra_info["sql"]``, then time it."""
    args, kwargs = setup()
    if engine is not None:
        with recording(engine) as statements:
            target(*args, **kwargs)
        bench.extra_info["sql"] = summary(statements)
    return bench.pedantic(target, setup=setup, rounds=rounds, warmup_rounds=WARMUP)


BLOCKS = 10
"""Blocks of rounds `interleaved` alternates between the baseline and ours."""


def interleaved(bench: Any, baseline_target: Any, target: Any, setup: Any, rounds: int) -> None:
    """Time ``baseline_target`` and ``target`` in alternating blocks; record their ratio.

    ``rounds`` rounds of each, in `BLOCKS` blocks, the baseline first in every
    other block; ``extra_info["interleaved"]`` gets the ratio of the medians
    (one block of one round each in smoke mode).
    """
    blocks, per_block = (2, 1) if bench.disabled else (BLOCKS, max(rounds // BLOCKS, 1))
    times: tuple[list[float], list[float]] = ([], [])
    runs = (baseline_target, target)
    for run in runs:  # warm both alike
        for _ in range(WARMUP):
            args, kwargs = setup()
            run(*args, **kwargs)
    for block in range(blocks):
        for which in (0, 1) if block % 2 == 0 else (1, 0):
            for _ in range(per_block):
                args, kwargs = setup()
                start = time.perf_counter()
                runs[which](*args, **kwargs)
                times[which].append(time.perf_counter() - start)
    ratio = statistics.median(times[1]) / statistics.median(times[0])
    bench.extra_info["interleaved"] = f"{ratio:.2f}\N{MULTIPLICATION SIGN}"


def nothing() -> tuple[tuple[Any, ...], dict[str, Any]]:
    return (), {}


def check_loaded(products: Any) -> None:
    assert len(products) == PRODUCTS
    assert sum(len(b.allocations) for p in products for b in p.batches) == PRODUCTS * 4


# persistence.load-aggregates-100 ----------------------------------------------------------------


def session_loader(factory: sessionmaker[Any]) -> Callable[[], Any]:
    def load() -> Any:
        with factory() as session:
            statement = sa.select(ContractProduct).options(*LOADERS)
            return session.scalars(statement.order_by(ContractProduct.sku)).all()

    return load


def repository_loader(uow: SqlAlchemyUnitOfWork) -> Callable[[], Any]:
    def load() -> Any:
        with uow:
            return uow.repository(ContractProduct, str).find(order_by="sku", load=PATHS)

    return load


@backends("load-aggregates-100")
class TestLoadAggregates:
    """Each round a new session (or unit of work), as each request of a service has."""

    def test_session_selectinload(self, baseline, sessions):
        engine, factory = sessions
        load = session_loader(factory)
        found = measure(baseline, engine, load, nothing, ROUNDS["load-aggregates-100"])
        check_loaded(found)
        assert baseline.extra_info["sql"] == "SELECT x3"

    def test_repository_find_load(self, ours, sessions):
        engine, factory = sessions
        load = repository_loader(SqlAlchemyUnitOfWork(factory))
        found = measure(ours, engine, load, nothing, ROUNDS["load-aggregates-100"])
        check_loaded(found)
        assert ours.extra_info["sql"] == "SELECT x3"
        interleaved(ours, session_loader(factory), load, nothing, ROUNDS["load-aggregates-100"])

    def test_advanced_alchemy_get_many_load(self, peer, sessions):
        engine, factory = sessions

        def load():
            with factory() as session:
                repo = ProductRepository(session=session)
                return repo.get_many(load=list(LOADERS), order_by=[(ContractProduct.sku, False)])

        found = measure(peer, engine, load, nothing, ROUNDS["load-aggregates-100"])
        check_loaded(found)


# persistence.add-aggregate ----------------------------------------------------------------------

NUMBERS = itertools.count()


def new_product() -> tuple[tuple[Any, ...], dict[str, Any]]:
    return (product(f"N{next(NUMBERS):07}", batches=BATCHES, allocations=0),), {}


def forget_added(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        keep = ContractBatch.product_sku.like("P%")
        connection.execute(sa.delete(ContractBatch).where(~keep))
        connection.execute(sa.delete(ContractProduct).where(~ContractProduct.sku.like("P%")))


def session_adder(session: Any) -> Callable[[Any], Any]:
    def add_commit(item: Any) -> Any:
        session.add(item)
        session.commit()
        return item

    return add_commit


def repository_adder(uow: SqlAlchemyUnitOfWork) -> Callable[[Any], Any]:
    repo = uow.repository(ContractProduct, str)

    def add_commit(item: Any) -> Any:
        repo.add(item)
        uow.commit()
        return item

    return add_commit


@backends("add-aggregate")
class TestAddAggregate:
    def test_session_add_commit(self, baseline, sessions):
        engine, factory = sessions
        try:
            with factory() as session:
                add = session_adder(session)
                added = measure(baseline, engine, add, new_product, ROUNDS["add-aggregate"])
        finally:
            forget_added(engine)
        assert len(added.batches) == BATCHES
        assert added.version == 1

    def test_repository_add_commit(self, ours, sessions):
        engine, factory = sessions
        uow = SqlAlchemyUnitOfWork(factory)
        try:
            with uow, factory() as session:
                add = repository_adder(uow)
                added = measure(ours, engine, add, new_product, ROUNDS["add-aggregate"])
                rounds = ROUNDS["add-aggregate"]
                interleaved(ours, session_adder(session), add, new_product, rounds)
        finally:
            forget_added(engine)
        assert len(added.batches) == BATCHES
        assert added.version == 1  # a new aggregate: no bump

    def test_advanced_alchemy_add_auto_commit(self, peer, sessions):
        """advanced-alchemy's ``add(..., auto_commit=True)``, without its refresh (the same SQL)."""
        engine, factory = sessions
        try:
            with factory() as session:
                repo = ProductRepository(session=session, auto_refresh=False)

                def add_commit(item):
                    return repo.add(item, auto_commit=True)

                added = measure(peer, engine, add_commit, new_product, ROUNDS["add-aggregate"])
        finally:
            forget_added(engine)
        assert len(added.batches) == BATCHES
        assert added.version == 1


# persistence.load-aggregate-memory --------------------------------------------------------------


@pytest.fixture(scope="module")
def twin_and_file(tmp_path_factory: Any) -> Iterator[tuple[Any, Any]]:
    """The same products in an in-memory store and in a SQLite file."""
    path = tmp_path_factory.mktemp("aggregate-memory") / "bench.db"
    engine = sa.create_engine(f"sqlite+pysqlite:///{path}")
    sa.event.listen(engine, "connect", no_sync_sqlite)
    contract_metadata.create_all(engine)
    store = InMemoryStore()
    units = [SqlAlchemyUnitOfWork(sessionmaker(engine)), InMemoryUnitOfWork(store=store)]
    for uow in units:
        with uow:
            uow.repository(ContractProduct, str).add_many(
                product(f"P{n:03}") for n in range(PRODUCTS)
            )
            uow.commit()
    yield engine, store
    engine.dispose()


def load_one(make: Callable[[], Any]) -> Callable[[str], Any]:
    def load(sku: str) -> Any:
        with make() as uow:
            return uow.repository(ContractProduct, str).get(sku, load=PATHS)

    return load


def keys() -> Callable[[], tuple[tuple[Any, ...], dict[str, Any]]]:
    skus = itertools.cycle([f"P{n:03}" for n in range(PRODUCTS)])
    return lambda: ((next(skus),), {})


@pytest.mark.benchmark(group="persistence.load-aggregate-memory")
class TestLoadAggregateInMemory:
    def test_sqlite_file(self, baseline, twin_and_file):
        engine, _ = twin_and_file
        factory = sessionmaker(engine)
        load = load_one(lambda: SqlAlchemyUnitOfWork(factory))
        found = measure(baseline, engine, load, keys(), ROUNDS["load-aggregate-memory"])
        assert sum(len(b.allocations) for b in found.batches) == 4

    def test_in_memory_twin(self, ours, twin_and_file):
        _, store = twin_and_file
        load = load_one(lambda: InMemoryUnitOfWork(store=store))
        found = measure(ours, None, load, keys(), ROUNDS["load-aggregate-memory"])
        assert sum(len(b.allocations) for b in found.batches) == 4
