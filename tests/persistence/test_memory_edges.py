"""Edges of the in-memory store that the contract suite reaches only by chance.

Units of work sharing one `InMemoryStore` stand for two connections to one
database: what one commits, the other's commit is checked against. Each test
says what the store holds afterwards, since that is what a caller relies on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from buttress.errors import ConcurrencyError
from buttress.persistence import InMemoryStore, InMemoryUnitOfWork
from buttress.testing import ContractOrder, ContractTag


def units(store: InMemoryStore) -> tuple[InMemoryUnitOfWork, InMemoryUnitOfWork]:
    return InMemoryUnitOfWork(store=store), InMemoryUnitOfWork(store=store)


def committed(store: InMemoryStore, model: type[Any], *entities: Any) -> None:
    with InMemoryUnitOfWork(store=store) as uow:
        uow.repository(model).add_many(entities)
        uow.commit()


def stored_orders(store: InMemoryStore) -> dict[int, tuple[str, int, str | None, int]]:
    with InMemoryUnitOfWork(store=store) as uow:
        return {
            o.id: (o.ref, o.total, o.note, o.version)
            for o in uow.repository(ContractOrder).find(order_by="id")
        }


def stored_tags(store: InMemoryStore) -> dict[str, tuple[str | None, str | None]]:
    with InMemoryUnitOfWork(store=store) as uow:
        return {t.name: (t.label, t.color) for t in uow.repository(ContractTag).find()}


# -- a version changed by another unit after this one flushed --------------------------


def empty_savepoint(uow: InMemoryUnitOfWork) -> None:
    with uow.savepoint():
        pass


FLUSHES: dict[str, Callable[[InMemoryUnitOfWork], object]] = {
    "find": lambda uow: uow.repository(ContractOrder).find(),
    "count": lambda uow: uow.repository(ContractOrder).count(),
    "page": lambda uow: uow.repository(ContractOrder).page(size=1),
    "savepoint": empty_savepoint,
}


@pytest.mark.parametrize("flush", FLUSHES.values(), ids=FLUSHES.keys())
def test_a_flushed_change_to_a_row_another_unit_changed_fails_at_commit(flush):
    store = InMemoryStore()
    committed(store, ContractOrder, ContractOrder(ref="a", total=1))
    mine, theirs = units(store)
    with mine, theirs:
        order = mine.repository(ContractOrder).get(1)
        order.total = 2
        flush(mine)  # the change is written into the unit's own rows now
        theirs.repository(ContractOrder).get(1).total = 3
        theirs.commit()
        with pytest.raises(ConcurrencyError) as caught:
            mine.commit()
    assert (caught.value.entity, caught.value.key) == ("ContractOrder", 1)
    assert stored_orders(store) == {1: ("a", 3, None, 2)}


def test_a_flushed_change_to_a_row_another_unit_removed_fails_at_commit():
    store = InMemoryStore()
    committed(store, ContractOrder, ContractOrder(ref="a"), ContractOrder(ref="b"))
    mine, theirs = units(store)
    with mine, theirs:
        mine.repository(ContractOrder).get(1).note = "mine"
        mine.repository(ContractOrder).count()
        orders = theirs.repository(ContractOrder)
        orders.remove(orders.get(1))
        theirs.commit()
        with pytest.raises(ConcurrencyError) as caught:
            mine.commit()
    assert (caught.value.entity, caught.value.key) == ("ContractOrder", 1)
    assert stored_orders(store) == {2: ("b", 0, None, 1)}


# -- a row added and removed in one unit -----------------------------------------------


def test_an_order_added_removed_and_replaced_in_one_unit_leaves_only_the_replacement():
    store = InMemoryStore()
    committed(store, ContractOrder, ContractOrder(ref="kept"))
    with InMemoryUnitOfWork(store=store) as uow:
        orders = uow.repository(ContractOrder)
        gone = orders.add(ContractOrder(ref="x"))
        orders.remove(gone)
        orders.add(ContractOrder(ref="y", total=7))
        uow.commit()
    assert stored_orders(store) == {1: ("kept", 0, None, 1), 3: ("y", 7, None, 1)}


@pytest.mark.parametrize("second", ["y", "x"], ids=["another key", "the same key"])
def test_a_tag_added_removed_and_added_again_in_one_unit_is_stored_once(second):
    store = InMemoryStore()
    with InMemoryUnitOfWork(store=store) as uow:
        tags = uow.repository(ContractTag)
        tags.remove(tags.add(ContractTag(name="x", label="first")))
        tags.add(ContractTag(name=second, label="second"))
        uow.commit()
    assert stored_tags(store) == {second: ("second", None)}


# -- generated keys next to keys the caller chose --------------------------------------


@pytest.mark.parametrize(
    ("chosen", "expected"),
    [
        ([1, None], [1, 2]),
        ([None, None, 5, None], [1, 2, 5, 6]),
        ([3, None, 2, None], [3, 4, 2, 5]),
    ],
    ids=["after key 1", "key 5 after generated keys", "a lower key chosen later"],
)
def test_generated_keys_never_collide_with_keys_the_caller_chose(chosen, expected):
    store = InMemoryStore()
    with InMemoryUnitOfWork(store=store) as uow:
        orders = uow.repository(ContractOrder)
        added = [orders.add(ContractOrder(id=key, ref=f"r{n}")) for n, key in enumerate(chosen)]
        assert [o.id for o in added] == expected
        uow.commit()
    assert sorted(stored_orders(store)) == sorted(expected)
