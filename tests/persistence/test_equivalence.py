"""Fake ≡ real: the in-memory repositories return what SQLite and PostgreSQL return.

Hypothesis generates rows, specifications, orders and page sizes; the same
calls through `InMemoryUnitOfWork` and `SqlAlchemyUnitOfWork` (on each backend
of the ``engine`` fixture) must give the same entities in the same order, the
same counts and the same pages. A stateful test then drives both with random
writes, commits and rollbacks and compares every outcome, errors included.
"""

from __future__ import annotations

import tempfile
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from persistence_backends import foreign_keys_on
from sqlalchemy.orm import sessionmaker
from test_query import ORDERS, ROWS, SPECS, Base, Plain, Row

from buttress.domain import F, Specification
from buttress.errors import ButtressError
from buttress.persistence import InMemoryUnitOfWork, SqlAlchemyUnitOfWork
from buttress.testing import (
    Allocated,
    ContractAllocation,
    ContractBatch,
    ContractDetail,
    ContractLabel,
    ContractOrder,
    ContractProduct,
    contract_metadata,
)

SLOW = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def sql_uow(engine: sa.Engine) -> SqlAlchemyUnitOfWork:
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    return SqlAlchemyUnitOfWork(sessionmaker(engine))


def store(uow: Any, rows: list[Plain]) -> None:
    with uow:
        repository = uow.repository(Row, int)
        for row in repository.find():
            repository.remove(row)
        repository.add_many(Row(**vars(row)) for row in rows)
        uow.commit()


def read(uow: Any, spec: Specification | None, order: list[str], size: int) -> dict[str, Any]:
    """Everything the read methods say about the stored rows, as keys."""
    with uow:
        repository = uow.repository(Row, int)
        pages: list[list[int]] = []
        cursor = None
        for _ in range(20):
            page = repository.page(spec, order_by=order, size=size, after=cursor)
            pages.append([row.id for row in page.items])
            cursor = page.next_cursor
            if cursor is None:
                break
        first = repository.first(spec, order_by=order)
        return {
            "find": [row.id for row in repository.find(spec, order_by=order)],
            "window": [row.id for row in repository.find(spec, order_by=order, limit=2, offset=1)],
            "first": None if first is None else first.id,
            "count": repository.count(spec),
            "exists": repository.exists(spec),
            "pages": pages,
        }


@SLOW
@given(rows=ROWS, spec=st.none() | SPECS, order=st.just([]) | ORDERS, size=st.integers(1, 4))
def test_in_memory_reads_equal_sql_reads(
    sql_uow: SqlAlchemyUnitOfWork,
    rows: list[Plain],
    spec: Specification | None,
    order: list[str],
    size: int,
) -> None:
    memory = InMemoryUnitOfWork()
    store(memory, rows)
    store(sql_uow, rows)
    expected = read(sql_uow, spec, order, size)
    assert read(memory, spec, order, size) == expected
    assert [key for page in expected["pages"] for key in page] == expected["find"]


# -- writes, commits and rollbacks, driven at random ---------------------------------------

REFS = st.sampled_from(["a", "b", "c", "d"])
SKUS = st.sampled_from(["P1", "P2"])
BATCHES = st.sampled_from(["b1", "b2", "b3"])


def outcome(call: Any) -> Any:
    """What a call returned, or the class of the Buttress error it raised."""
    try:
        return ("ok", call())
    except ButtressError as error:
        return ("error", type(error).__name__)


class FakeEqualsReal(RuleBasedStateMachine):
    """Every step runs on an in-memory and a SQLite unit of work; outcomes must match."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.TemporaryDirectory()
        self.engine = sa.create_engine(f"sqlite:///{self.directory.name}/machine.db")
        foreign_keys_on(self.engine)
        contract_metadata.create_all(self.engine)
        self.units = [InMemoryUnitOfWork(), SqlAlchemyUnitOfWork(sessionmaker(self.engine))]
        for unit in self.units:
            unit.__enter__()

    def both(self, step: Any) -> None:
        memory, sql = (outcome(lambda unit=unit: step(unit)) for unit in self.units)
        assert memory == sql

    @staticmethod
    def by_ref(unit: Any, ref: str) -> ContractOrder | None:
        return unit.repository(ContractOrder).first(F("ref") == ref)

    @rule(ref=REFS, total=st.integers(0, 3))
    def add(self, ref: str, total: int) -> None:
        self.both(
            lambda u: u.repository(ContractOrder).add(ContractOrder(ref=ref, total=total)).ref
        )

    @rule(ref=REFS, total=st.integers(0, 3))
    def change_total(self, ref: str, total: int) -> None:
        def step(unit: Any) -> bool:
            order = self.by_ref(unit, ref)
            if order is not None:
                order.total = total
            return order is not None

        self.both(step)

    @rule(ref=REFS, new=REFS)
    def rename(self, ref: str, new: str) -> None:
        def step(unit: Any) -> bool:
            order = self.by_ref(unit, ref)
            if order is not None:
                order.ref = new
            return order is not None

        self.both(step)

    @rule(ref=REFS)
    def remove(self, ref: str) -> None:
        def step(unit: Any) -> bool:
            order = self.by_ref(unit, ref)
            if order is not None:
                unit.repository(ContractOrder).remove(order)
            return order is not None

        self.both(step)

    @rule()
    def commit(self) -> None:
        self.both(lambda unit: unit.commit())

    @rule()
    def rollback(self) -> None:
        self.both(lambda unit: unit.rollback())

    @rule()
    def start_again(self) -> None:
        for unit in self.units:
            unit.__exit__(None, None, None)
            unit.__enter__()

    @rule(spec=st.sampled_from([None, F("total") > 1, F("ref").in_(["a", "c"])]))
    def read(self, spec: Specification | None) -> None:
        self.both(
            lambda unit: [
                (o.ref, o.total, o.version)
                for o in unit.repository(ContractOrder).find(spec, order_by="ref")
            ]
        )

    # -- aggregates with parts -----------------------------------------------------------

    @staticmethod
    def product(unit: Any, sku: str) -> ContractProduct | None:
        return unit.repository(ContractProduct).get_or_none(sku)

    @rule(sku=SKUS, refs=st.lists(BATCHES, max_size=2, unique=True))
    def add_product(self, sku: str, refs: list[str]) -> None:
        def step(unit: Any) -> str:
            batches = [ContractBatch(reference=ref, qty=5) for ref in refs]
            return (
                unit.repository(ContractProduct).add(ContractProduct(sku=sku, batches=batches)).sku
            )

        self.both(step)

    @rule(sku=SKUS, ref=BATCHES, qty=st.integers(0, 6))
    def add_batch(self, sku: str, ref: str, qty: int) -> None:
        def step(unit: Any) -> bool:
            product = self.product(unit, sku)
            if product is not None:
                product.batches.append(ContractBatch(reference=ref, qty=qty))
            return product is not None

        self.both(step)

    @rule(sku=SKUS, qty=st.integers(0, 6), index=st.integers(0, 2))
    def change_batch(self, sku: str, qty: int, index: int) -> None:
        def step(unit: Any) -> bool:
            product = self.product(unit, sku)
            if product is None or len(product.batches) <= index:
                return False
            product.batches[index].qty = qty
            return True

        self.both(step)

    @rule(sku=SKUS, index=st.integers(0, 2))
    def drop_batch(self, sku: str, index: int) -> None:
        def step(unit: Any) -> bool:
            product = self.product(unit, sku)
            if product is None or len(product.batches) <= index:
                return False
            del product.batches[index]  # an orphan: deleted with its allocations
            return True

        self.both(step)

    @rule(sku=SKUS, other=SKUS, index=st.integers(0, 2))
    def move_batch(self, sku: str, other: str, index: int) -> None:
        def step(unit: Any) -> bool:
            source, target = self.product(unit, sku), self.product(unit, other)
            if source is None or target is None or len(source.batches) <= index:
                return False
            target.batches.append(source.batches[index])
            return True

        self.both(step)

    @rule(sku=SKUS, orderid=st.sampled_from(["o1", "o2"]), index=st.integers(0, 2))
    def allocate(self, sku: str, orderid: str, index: int) -> None:
        def step(unit: Any) -> bool:
            product = self.product(unit, sku)
            if product is None or len(product.batches) <= index:
                return False
            product.batches[index].allocations.append(ContractAllocation(orderid=orderid, qty=1))
            return True

        self.both(step)

    @rule(sku=SKUS, name=st.sampled_from(["red", "blue"]), add=st.booleans())
    def label(self, sku: str, name: str, add: bool) -> None:
        def step(unit: Any) -> bool:
            product = self.product(unit, sku)
            if product is None:
                return False
            found = unit.repository(ContractLabel).get_or_none(name)
            if add:
                product.labels.add(found or ContractLabel(name=name))
            elif found is not None:
                product.labels.discard(found)
            return True

        self.both(step)

    @rule(sku=SKUS, text=st.sampled_from([None, "x", "y"]))
    def set_detail(self, sku: str, text: str | None) -> None:
        def step(unit: Any) -> bool:
            product = self.product(unit, sku)
            if product is None:
                return False
            product.detail = None if text is None else ContractDetail(text=text)
            return True

        self.both(step)

    @rule(sku=SKUS)
    def remove_product(self, sku: str) -> None:
        def step(unit: Any) -> bool:
            product = self.product(unit, sku)
            if product is not None:
                unit.repository(ContractProduct).remove(product)
            return product is not None

        self.both(step)

    @rule(sku=SKUS, event=st.booleans())
    def record(self, sku: str, event: bool) -> None:
        def step(unit: Any) -> bool:
            product = self.product(unit, sku)
            if product is not None and event:
                product.record_event(Allocated(sku=sku, orderid="e", reference="-"))
            return product is not None

        self.both(step)

    @rule()
    def read_products(self) -> None:
        self.both(
            lambda unit: [
                (
                    p.sku,
                    p.version,
                    sorted(
                        (b.reference, b.qty, sorted((a.orderid, a.qty) for a in b.allocations))
                        for b in p.batches
                    ),
                    sorted(label.name for label in p.labels),
                    None if p.detail is None else p.detail.text,
                )
                for p in unit.repository(ContractProduct).find(order_by="sku")
            ]
        )

    @invariant()
    def same_count(self) -> None:
        self.both(lambda unit: unit.repository(ContractOrder).count())
        self.both(
            lambda unit: [
                unit.repository(model).count()
                for model in (
                    ContractProduct,
                    ContractBatch,
                    ContractAllocation,
                    ContractLabel,
                    ContractDetail,
                )
            ]
        )

    def teardown(self) -> None:
        for unit in self.units:
            unit.__exit__(None, None, None)
        self.engine.dispose()
        self.directory.cleanup()


FakeEqualsReal.TestCase.settings = settings(max_examples=80, stateful_step_count=40, deadline=None)
test_in_memory_writes_equal_sqlite_writes = FakeEqualsReal.TestCase
