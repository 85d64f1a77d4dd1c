"""Aggregates with parts as a service uses them, on every backend.

The allocation domain of *Architecture Patterns with Python*: a `Product`
aggregate holding batches; the version is the aggregate's consistency boundary.
Two threads (or two asyncio tasks) change different batches of one product at
READ COMMITTED and at REPEATABLE READ: exactly one commits at first, the other
gets `ConcurrencyError`, and `@retry(on=ConcurrencyError)` then succeeds on
fresh data. Nothing is lost or doubled afterwards.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from typing import Any

import pytest
import sqlalchemy as sa
from persistence_backends import BACKENDS, own_units
from sqlalchemy.orm import registry, relationship, sessionmaker

from buttress.domain import AggregateRoot, DomainEvent
from buttress.errors import ConcurrencyError, ConfigurationError
from buttress.persistence import InMemoryUnitOfWork
from buttress.resilience import retry
from buttress.testing import Allocated as ContractAllocated
from buttress.testing import (
    ContractAllocation,
    ContractBatch,
    ContractProduct,
    contract_metadata,
)

LEVELS = ["READ COMMITTED", "REPEATABLE READ"]


# -- the book's model: plain classes, mapped imperatively -------------------------------


@dataclasses.dataclass(unsafe_hash=True)
class OrderLine:
    orderid: str
    sku: str
    qty: int


class Allocated(DomainEvent, name="tests.book.allocated"):
    orderid: str
    batchref: str


class Batch:
    def __init__(self, ref: str, sku: str, qty: int) -> None:
        self.reference = ref
        self.sku = sku
        self._purchased_quantity = qty
        self._allocations: set[OrderLine] = set()

    def allocate(self, line: OrderLine) -> None:
        if self.available_quantity >= line.qty:
            self._allocations.add(line)

    @property
    def available_quantity(self) -> int:
        return self._purchased_quantity - sum(line.qty for line in self._allocations)


class Product(AggregateRoot):
    def __init__(self, sku: str, batches: list[Batch], version_number: int = 0) -> None:
        self.sku = sku
        self.batches = batches
        self.version_number = version_number

    def allocate(self, line: OrderLine) -> str:
        batch = next(
            b
            for b in sorted(self.batches, key=lambda b: b.reference)
            if b.available_quantity >= line.qty
        )
        batch.allocate(line)
        self.version_number += 1  # the book's explicit bump
        self.record_event(Allocated(orderid=line.orderid, batchref=batch.reference))
        return batch.reference


book = sa.MetaData()
_products = sa.Table(
    "products",
    book,
    sa.Column("sku", sa.String(40), primary_key=True),
    sa.Column("version_number", sa.Integer, nullable=False),
)
_batches = sa.Table(
    "batches",
    book,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("reference", sa.String(40), unique=True),
    sa.Column("sku", sa.ForeignKey("products.sku")),
    sa.Column("_purchased_quantity", sa.Integer, nullable=False),
)
_order_lines = sa.Table(
    "order_lines",
    book,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("sku", sa.String(40)),
    sa.Column("qty", sa.Integer, nullable=False),
    sa.Column("orderid", sa.String(40)),
)
_allocations = sa.Table(
    "allocations",
    book,
    sa.Column("orderline_id", sa.ForeignKey("order_lines.id"), primary_key=True),
    sa.Column("batch_id", sa.ForeignKey("batches.id"), primary_key=True),
)
_mapper = registry(metadata=book)
_mapper.map_imperatively(OrderLine, _order_lines)
_mapper.map_imperatively(
    Batch,
    _batches,
    properties={
        "_allocations": relationship(OrderLine, secondary=_allocations, collection_class=set)
    },
)
_mapper.map_imperatively(
    Product,
    _products,
    properties={"batches": relationship(Batch, cascade="all, delete-orphan")},
    version_id_col=_products.c.version_number,
    version_id_generator=False,
)


@pytest.fixture(params=BACKENDS)
def book_units(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    yield from own_units(request, tmp_path, book)


def test_the_book_scenario_runs_alike_on_every_backend(book_units: Any) -> None:
    make, _engine = book_units
    uow = make()
    with uow:
        uow.repository(Product, str).add(
            Product("LAMP", [Batch("b1", "LAMP", 10), Batch("b2", "LAMP", 10)], version_number=1)
        )
        uow.commit()
    with uow:
        product = uow.repository(Product, str).get("LAMP")
        assert product.allocate(OrderLine("o1", "LAMP", 8)) == "b1"
        assert product.allocate(OrderLine("o2", "LAMP", 5)) == "b2"
        uow.commit()
    assert [e.batchref for e in uow.collect_events()] == ["b1", "b2"]  # type: ignore[attr-defined]
    with uow:
        product = uow.repository(Product, str).get("LAMP")
        assert product.version_number == 3  # what the application set, as SQL stores it
        quantities = {b.reference: b.available_quantity for b in product.batches}
        assert quantities == {"b1": 2, "b2": 5}
        assert uow.repository(OrderLine).count() == 2


def test_two_units_allocating_to_different_batches_conflict(book_units: Any) -> None:
    make, _engine = book_units
    with make() as uow:
        uow.repository(Product, str).add(
            Product("LAMP", [Batch("b1", "LAMP", 10), Batch("b2", "LAMP", 10)], version_number=1)
        )
        uow.commit()
    first, second = make(), make()
    with first, second:
        mine = first.repository(Product, str).get("LAMP")
        theirs = second.repository(Product, str).get("LAMP")
        mine.batches[0].allocate(OrderLine("o1", "LAMP", 1))  # no explicit bump: the
        theirs.batches[1].allocate(OrderLine("o2", "LAMP", 1))  # boundary bumps it
        first.commit()
        with pytest.raises(ConcurrencyError):
            second.commit()
    with make() as uow:
        assert [line.orderid for line in uow.repository(OrderLine).find()] == ["o1"]
        assert uow.repository(Product, str).get("LAMP").version_number == 2


# -- races between threads and tasks, on the contract models ----------------------------


def _stock_two_batches(make: Any) -> None:
    with make() as uow:
        uow.repository(ContractProduct).add(
            ContractProduct(
                sku="S1",
                batches=[
                    ContractBatch(reference="b1", qty=10),
                    ContractBatch(reference="b2", qty=10),
                ],
            )
        )
        uow.commit()


@pytest.mark.parametrize("level", LEVELS)
def test_threads_changing_different_parts_conflict_once_and_a_retry_wins(
    make_sync_uow: Any, level: str
) -> None:
    make = make_sync_uow
    _stock_two_batches(make)
    first_read, first_done = threading.Event(), threading.Event()
    attempts: list[str] = []
    errors: list[BaseException] = []

    def winner() -> None:
        with make(isolation_level=level) as uow:
            product = uow.repository(ContractProduct).get("S1", load="batches.allocations")
            first_read.wait(10)
            product.batches[0].allocations.append(ContractAllocation(orderid="w", qty=1))
            uow.commit()
        first_done.set()

    @retry(on=ConcurrencyError, attempts=3, wait_initial=0.01, wait_jitter=0)
    def loser() -> None:
        with make(isolation_level=level) as uow:
            attempts.append("try")
            product = uow.repository(ContractProduct).get("S1", load="batches.allocations")
            first_read.set()
            first_done.wait(10)
            product.batches[1].allocations.append(ContractAllocation(orderid="l", qty=1))
            uow.commit()

    def run(target: Any) -> None:
        try:
            target()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(f,)) for f in (winner, loser)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert attempts == ["try", "try"]  # refused once, then it won on fresh data
    with make() as uow:
        product = uow.repository(ContractProduct).get("S1", load="batches.allocations")
        assert [[a.orderid for a in b.allocations] for b in product.batches] == [["w"], ["l"]]
        assert product.version == 3


@pytest.mark.asyncio
@pytest.mark.parametrize("level", LEVELS)
async def test_tasks_changing_different_parts_conflict_once_and_a_retry_wins(
    make_async_uow: Any, level: str
) -> None:
    make = make_async_uow
    async with make() as uow:
        await uow.repository(ContractProduct).add(
            ContractProduct(
                sku="S1",
                batches=[
                    ContractBatch(reference="b1", qty=10),
                    ContractBatch(reference="b2", qty=10),
                ],
            )
        )
        await uow.commit()
    first_read, first_done = asyncio.Event(), asyncio.Event()
    attempts: list[str] = []

    async def winner() -> None:
        async with make(isolation_level=level) as uow:
            product = await uow.repository(ContractProduct).get("S1", load="batches")
            await first_read.wait()
            product.batches[0].qty = 11
            await uow.commit()
        first_done.set()

    @retry(on=ConcurrencyError, attempts=3, wait_initial=0.01, wait_jitter=0)
    async def loser() -> None:
        async with make(isolation_level=level) as uow:
            attempts.append("try")
            product = await uow.repository(ContractProduct).get("S1", load="batches")
            first_read.set()
            await first_done.wait()
            product.batches[1].qty += 5
            await uow.commit()

    await asyncio.wait_for(asyncio.gather(winner(), loser()), 30)
    assert attempts == ["try", "try"]
    async with make() as uow:
        product = await uow.repository(ContractProduct).get("S1", load="batches")
        assert [b.qty for b in product.batches] == [11, 15]
        assert product.version == 3


# -- loading: no N+1 ---------------------------------------------------------------------


@pytest.fixture(params=[b for b in BACKENDS if b != "memory"])
def sql_units(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    yield from own_units(request, tmp_path, contract_metadata)


def test_loading_100_aggregates_with_two_levels_takes_three_statements(sql_units: Any) -> None:
    make, engine = sql_units
    with make() as uow:
        uow.repository(ContractProduct).add_many(
            ContractProduct(
                sku=f"P{n:03}",
                batches=[
                    ContractBatch(
                        reference=f"P{n:03}-{b}",
                        qty=10,
                        allocations=[ContractAllocation(orderid=f"o{a}", qty=1) for a in range(2)],
                    )
                    for b in range(2)
                ],
            )
            for n in range(100)
        )
        uow.commit()
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    with make() as uow:
        sa.event.listen(engine, "before_cursor_execute", count)
        try:
            found = uow.repository(ContractProduct).find(load=("batches", "batches.allocations"))
            total = sum(len(b.allocations) for p in found for b in p.batches)
        finally:
            sa.event.remove(engine, "before_cursor_execute", count)
    assert (len(found), total) == (100, 400)
    assert len(statements) == 3, statements  # products, their batches, their allocations


def test_the_bump_costs_no_statement_when_the_root_row_is_written_anyway(sql_units: Any) -> None:
    """The book's model bumps its own version: the boundary adds no UPDATE of its own."""
    make, engine = sql_units
    book.create_all(engine)
    with make() as uow:
        uow.repository(Product, str).add(
            Product("LAMP", [Batch("b1", "LAMP", 10)], version_number=1)
        )
        uow.commit()
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2].split(None, 2)[:2])

    with make() as uow:
        product = uow.repository(Product, str).get("LAMP")
        product.batches[0]._purchased_quantity = 20  # a part changes, and
        product.version_number += 1  # the application bumps the root itself
        sa.event.listen(engine, "before_cursor_execute", count)
        try:
            uow.commit()
        finally:
            sa.event.remove(engine, "before_cursor_execute", count)
    updates = sorted(" ".join(words) for words in statements if words[0] == "UPDATE")
    assert updates == ["UPDATE batches", "UPDATE products"], statements
    with make() as uow:
        assert uow.repository(Product, str).get("LAMP").version_number == 2


@pytest.mark.asyncio
# aiosqlite leaves its cursor coroutine unawaited when SQLAlchemy refuses the IO
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_an_async_unit_cannot_load_a_relationship_on_access_on_any_backend(
    make_async_uow: Any,
) -> None:
    """As SQLAlchemy's asyncio session, the async twin refuses to load on attribute access."""
    make = make_async_uow
    async with make() as uow:
        await uow.repository(ContractProduct).add(
            ContractProduct(sku="S1", batches=[ContractBatch(reference="b1", qty=1)])
        )
        await uow.commit()
    async with make() as uow:
        product = await uow.repository(ContractProduct).get("S1")
        with pytest.raises(sa.exc.SQLAlchemyError, match="MissingGreenlet|greenlet_spawn"):
            _ = product.batches
    async with make() as uow:
        product = await uow.repository(ContractProduct).get("S1", load="batches")
        assert [b.reference for b in product.batches] == ["b1"]
        with pytest.raises(sa.exc.SQLAlchemyError, match="MissingGreenlet|greenlet_spawn"):
            _ = product.batches[0].allocations  # a level further: not named


# -- relationships without the aggregate's cascades -------------------------------------

loose = sa.MetaData()
_loose = registry(metadata=loose)


@_loose.mapped_as_dataclass(eq=False)
class Team:
    __tablename__ = "teams"

    id: sa.orm.Mapped[int] = sa.orm.mapped_column(primary_key=True, init=False)
    name: sa.orm.Mapped[str] = sa.orm.mapped_column(sa.String(20))


@_loose.mapped_as_dataclass(eq=False)
class Player:
    __tablename__ = "players"

    id: sa.orm.Mapped[int] = sa.orm.mapped_column(primary_key=True, init=False)
    name: sa.orm.Mapped[str] = sa.orm.mapped_column(sa.String(20))
    team_id: sa.orm.Mapped[int | None] = sa.orm.mapped_column(
        sa.ForeignKey("teams.id"), default=None, init=False
    )
    team: sa.orm.Mapped[Team | None] = relationship(
        backref=sa.orm.backref("players", collection_class=set), default=None
    )


@pytest.fixture(params=BACKENDS)
def loose_units(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    yield from own_units(request, tmp_path, loose)


def test_a_backref_without_cascades_behaves_as_sql(loose_units: Any) -> None:
    """Default cascades: saved with the parent; let go of (never deleted) otherwise."""
    make, _engine = loose_units
    with make() as uow:
        reds = Team(name="reds")
        ada, bob = Player(name="ada", team=reds), Player(name="bob", team=reds)
        uow.repository(Player).add_many([ada, bob])  # the team comes along (save-update)
        uow.commit()
        team_key = reds.id
        assert {p.team_id for p in (ada, bob)} == {team_key}
    with make() as uow:
        team = uow.repository(Team).get(team_key)
        assert sorted(p.name for p in team.players) == ["ada", "bob"]  # a set, via backref
        leaving = next(p for p in team.players if p.name == "bob")
        team.players.remove(leaving)  # no delete-orphan: bob stays, without a team
        uow.commit()
    with make() as uow:
        players = {p.name: p.team_id for p in uow.repository(Player).find()}
        assert players == {"ada": team_key, "bob": None}
        uow.repository(Team).remove(uow.repository(Team).get(team_key))  # no delete
        uow.commit()  # cascade: ada lets go of it, as SQLAlchemy sets her key to NULL
    with make() as uow:
        assert {p.name: p.team_id for p in uow.repository(Player).find()} == {
            "ada": None,
            "bob": None,
        }
        assert uow.repository(Team).count() == 0


# -- what only SQL can do stays possible on SQL -----------------------------------------

dynamic = sa.MetaData()
_dynamic = registry(metadata=dynamic)


@_dynamic.mapped_as_dataclass(eq=False)
class Feed:
    __tablename__ = "feeds"

    id: sa.orm.Mapped[int] = sa.orm.mapped_column(primary_key=True)
    entries: sa.orm.WriteOnlyMapped[Entry] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, default_factory=list
    )


@_dynamic.mapped_as_dataclass(eq=False)
class Entry:
    __tablename__ = "entries"

    id: sa.orm.Mapped[int] = sa.orm.mapped_column(primary_key=True)
    feed_id: sa.orm.Mapped[int] = sa.orm.mapped_column(sa.ForeignKey("feeds.id"))


@pytest.fixture(params=[b for b in BACKENDS if b != "memory"])
def dynamic_units(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    yield from own_units(request, tmp_path, dynamic)


def test_a_relationship_the_twin_refuses_still_works_on_sql(dynamic_units: Any) -> None:
    """The aggregate guard reads owners without judging them: SQL flushes proceed."""
    make, _engine = dynamic_units
    with make() as uow:
        uow.repository(Feed).add(Feed(id=1))
        uow.repository(Entry).add(Entry(id=1, feed_id=1))
        uow.commit()
    with make() as uow:
        uow.repository(Feed).add(Feed(id=2))
        uow.repository(Entry).get(1).feed_id = 2  # a part moves: the guard reads its owners
        uow.commit()
    with make() as uow:
        assert uow.repository(Entry).get(1).feed_id == 2
    refused = "Feed.entries: its loader is lazy='write_only'"
    with pytest.raises(ConfigurationError, match=refused), InMemoryUnitOfWork() as memory:
        memory.repository(Feed)


def test_the_applications_own_sessions_are_not_guarded(sql_units: Any) -> None:
    """The boundary is the units' rule: a bare session changing a part leaves the root as is."""
    make, engine = sql_units
    _stock_two_batches(make)
    with make() as uow:  # a unit ran first: the guard listens for sessions from now on
        uow.repository(ContractProduct).get("S1").batches[0].qty = 11
        uow.commit()
    with sessionmaker(engine).begin() as session:
        session.get(ContractProduct, "S1").batches[0].qty = 12
    with make() as uow:
        product = uow.repository(ContractProduct).get("S1")
        assert (product.version, product.batches[0].qty) == (2, 12)  # the unit's bump only


@pytest.fixture(params=BACKENDS)
def contract_units(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    yield from own_units(request, tmp_path, contract_metadata)


def _allocated(orderid: str) -> ContractAllocated:
    return ContractAllocated(sku="S1", orderid=orderid, reference="b1")


def test_an_event_after_a_commit_bumps_the_root_again(contract_units: Any) -> None:
    """The events a commit published are not counted against the next transaction's."""
    make, _engine = contract_units
    _stock_two_batches(make)
    with make() as uow:
        product = uow.repository(ContractProduct).get("S1")
        product.record_event(_allocated("o1"))
        uow.commit()
        product.record_event(_allocated("o2"))  # the same aggregate, the next transaction
        uow.commit()
    with make() as uow:
        assert uow.repository(ContractProduct).get("S1").version == 3


def test_an_event_after_an_undone_savepoint_bumps_the_root(contract_units: Any) -> None:
    """A savepoint's bump is undone with it: the events after it count from scratch."""
    make, _engine = contract_units
    _stock_two_batches(make)
    with make() as uow:
        products = uow.repository(ContractProduct)
        product = products.get("S1", load="batches")

        def allocate_then_fail() -> None:
            with uow.savepoint():
                product.record_event(_allocated("o1"))
                product.batches[0].qty = 9
                products.count()  # a query: its autoflush writes the part and bumps the root
                raise RuntimeError

        with pytest.raises(RuntimeError):
            allocate_then_fail()
        product.record_event(_allocated("o2"))
        uow.commit()
    with make() as uow:
        product = uow.repository(ContractProduct).get("S1", load="batches")
        assert (product.version, product.batches[0].qty) == (2, 10)
