"""Edges of the in-memory store that the contract suite reaches only by chance.

Units of work sharing one `InMemoryStore` stand for two connections to one
database: what one commits, the other's commit is checked against. Each test
says what the store holds afterwards, since that is what a caller relies on.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from buttress.domain import F
from buttress.errors import ConcurrencyError, ConfigurationError, ConflictError, QueryError
from buttress.persistence import InMemoryStore, InMemoryUnitOfWork
from buttress.testing import ContractLine, ContractOrder, ContractTag


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


@pytest.mark.parametrize("again", [False, True], ids=["once", "changed-again-after-theirs"])
@pytest.mark.parametrize("flush", FLUSHES.values(), ids=FLUSHES.keys())
def test_a_flushed_change_to_a_row_another_unit_changed_fails_at_commit(flush, again):
    store = InMemoryStore()
    committed(store, ContractOrder, ContractOrder(ref="a", total=1))
    mine, theirs = units(store)
    with mine, theirs:
        order = mine.repository(ContractOrder).get(1)
        order.total = 2
        flush(mine)  # the change is written into the unit's own rows now
        theirs.repository(ContractOrder).get(1).total = 3
        theirs.commit()
        if again:
            order.note = "again"  # written over the row this unit flushed, not theirs
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
        assert [o.ref for o in orders.find(order_by="id")] == ["kept", "y"]
        uow.commit()
    assert stored_orders(store) == {1: ("kept", 0, None, 1), 3: ("y", 7, None, 1)}


@pytest.mark.parametrize("second", ["y", "x"], ids=["another-key", "the-same-key"])
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
    ids=["after-key-1", "key-5-after-generated-keys", "a-lower-key-chosen-later"],
)
def test_generated_keys_never_collide_with_keys_the_caller_chose(chosen, expected):
    store = InMemoryStore()
    with InMemoryUnitOfWork(store=store) as uow:
        orders = uow.repository(ContractOrder)
        added = [orders.add(ContractOrder(id=key, ref=f"r{n}")) for n, key in enumerate(chosen)]
        assert [o.id for o in added] == expected
        uow.commit()
    assert sorted(stored_orders(store)) == sorted(expected)


def test_each_model_has_its_own_generated_keys():
    with InMemoryUnitOfWork() as uow:
        order = uow.repository(ContractOrder).add(ContractOrder(ref="a"))
        line = uow.repository(ContractLine).add(ContractLine(order_id=order.id, sku="x"))
        assert (order.id, line.id) == (1, 1)


# -- what another unit committed meanwhile, checked at commit --------------------------


def test_a_key_another_unit_added_first_is_refused_at_commit():
    store = InMemoryStore()
    mine, theirs = units(store)
    with mine, theirs:
        mine.repository(ContractTag).add(ContractTag(name="t", label="mine"))
        theirs.repository(ContractTag).add(ContractTag(name="t", label="theirs"))
        theirs.commit()
        with pytest.raises(ConflictError) as caught:
            mine.commit()
    assert (caught.value.entity, caught.value.key) == ("ContractTag", "t")
    assert stored_tags(store) == {"t": ("theirs", None)}


def test_an_unversioned_change_to_a_row_another_unit_removed_fails_at_commit():
    store = InMemoryStore()
    committed(store, ContractTag, ContractTag(name="t"))
    mine, theirs = units(store)
    with mine, theirs:
        mine.repository(ContractTag).get("t").label = "mine"
        mine.repository(ContractTag).count()
        tags = theirs.repository(ContractTag)
        tags.remove(tags.get("t"))
        theirs.commit()
        with pytest.raises(ConcurrencyError) as caught:
            mine.commit()
    assert (caught.value.entity, caught.value.key) == ("ContractTag", "t")
    assert stored_tags(store) == {}


def test_removing_a_versioned_row_another_unit_removed_first_fails_at_commit():
    store = InMemoryStore()
    committed(store, ContractOrder, ContractOrder(ref="a"))
    mine, theirs = units(store)
    with mine, theirs:
        orders = mine.repository(ContractOrder)
        orders.remove(orders.get(1))
        others = theirs.repository(ContractOrder)
        others.remove(others.get(1))
        theirs.commit()
        with pytest.raises(ConcurrencyError) as caught:
            mine.commit()
    assert (caught.value.entity, caught.value.key) == ("ContractOrder", 1)
    assert stored_orders(store) == {}


def test_removing_a_versioned_row_another_unit_removed_fails_at_once():
    store = InMemoryStore()
    committed(store, ContractOrder, ContractOrder(ref="a"))
    mine, theirs = units(store)
    with mine, theirs:
        order = mine.repository(ContractOrder).get(1)
        others = theirs.repository(ContractOrder)
        others.remove(others.get(1))
        theirs.commit()
        with pytest.raises(ConcurrencyError):
            mine.repository(ContractOrder).remove(order)


def test_an_unversioned_row_both_units_removed_does_not_stop_the_rest_of_a_commit():
    store = InMemoryStore()
    committed(store, ContractTag, ContractTag(name="a"), ContractTag(name="b"))
    mine, theirs = units(store)
    with mine, theirs:
        tags = mine.repository(ContractTag)
        tags.remove(tags.get("a"))
        tags.get("b").label = "mine"
        others = theirs.repository(ContractTag)
        others.remove(others.get("a"))
        theirs.commit()
        mine.commit()
    assert stored_tags(store) == {"b": ("mine", None)}


# -- writes spread over several flushes ---------------------------------------------


def test_a_row_changed_in_two_flushes_keeps_both_changes():
    store = InMemoryStore()
    committed(store, ContractOrder, ContractOrder(ref="a"))
    with InMemoryUnitOfWork(store=store) as uow:
        order = uow.repository(ContractOrder).get(1)
        order.note = "first"
        uow.repository(ContractOrder).count()
        order.total = 9
        uow.commit()
    assert stored_orders(store) == {1: ("a", 9, "first", 3)}


def test_every_changed_object_is_written_not_only_the_first():
    store = InMemoryStore()
    committed(store, ContractOrder, ContractOrder(ref="a"), ContractOrder(ref="b"))
    with InMemoryUnitOfWork(store=store) as uow:
        orders = uow.repository(ContractOrder)
        orders.get(1)
        orders.get(2).total = 4
        uow.commit()
    assert stored_orders(store) == {1: ("a", 0, None, 1), 2: ("b", 4, None, 2)}


def test_adding_an_entity_the_unit_already_holds_is_a_no_op():
    store = InMemoryStore()
    committed(store, ContractOrder, ContractOrder(ref="a"))
    with InMemoryUnitOfWork(store=store) as uow:
        orders = uow.repository(ContractOrder)
        loaded = orders.get(1)
        added = orders.add(ContractOrder(ref="b"))
        orders.add(loaded)
        orders.add(added)
        fresh = ContractOrder(ref="c")
        orders.add_many([loaded, added, fresh])
        assert (added.id, fresh.id) == (2, 3)
        uow.commit()
    assert sorted(ref for ref, *_ in stored_orders(store).values()) == ["a", "b", "c"]


def test_a_refused_add_many_gives_back_every_entity_as_it_was():
    store = InMemoryStore()
    committed(store, ContractOrder, ContractOrder(ref="a"))
    given = [ContractOrder(ref="n", total=5), ContractOrder(ref="a", total=6)]
    with InMemoryUnitOfWork(store=store) as uow, pytest.raises(ConflictError):
        uow.repository(ContractOrder).add_many(given)
    assert [(o.id, o.total, o.version) for o in given] == [(None, 5, None), (None, 6, None)]


def test_an_entity_in_the_identity_map_is_returned_without_writing_pending_changes():
    store = InMemoryStore()
    committed(store, ContractOrder, ContractOrder(ref="a"), ContractOrder(ref="b"))
    with InMemoryUnitOfWork(store=store) as uow:
        orders = uow.repository(ContractOrder)
        orders.get(1)
        second = orders.get(2)
        second.ref = "a"  # a duplicate, refused when written
        assert orders.get(2) is second
        with pytest.raises(ConflictError):
            uow.commit()


# -- rollback and savepoints keep the identity map -----------------------------------


def test_a_rollback_keeps_loaded_objects_and_gives_them_their_stored_values():
    store = InMemoryStore()
    committed(store, ContractOrder, ContractOrder(ref="a"), ContractOrder(ref="b"))
    mine, theirs = units(store)
    with mine, theirs:
        orders = mine.repository(ContractOrder)
        orders.get(1)  # removed by the other unit: forgotten on rollback
        second = orders.get(2)
        second.total = 9
        others = theirs.repository(ContractOrder)
        others.remove(others.get(1))
        theirs.commit()
        mine.rollback()
        assert second.total == 0
        assert orders.get(2) is second
        assert orders.get_or_none(1) is None


def test_an_object_removed_in_a_rolled_back_savepoint_is_the_same_object_afterwards():
    store = InMemoryStore()
    committed(store, ContractOrder, ContractOrder(ref="a"))
    with InMemoryUnitOfWork(store=store) as uow:
        orders = uow.repository(ContractOrder)
        loaded: list[ContractOrder] = []

        def load_and_remove() -> None:
            with uow.savepoint():
                loaded.append(orders.get(1))
                orders.remove(loaded[0])
                raise RuntimeError

        with pytest.raises(RuntimeError):
            load_and_remove()
        assert orders.get(1) is loaded[0]
        loaded[0].total = 3
        assert orders.count(F("total") == 3) == 1
        uow.commit()
    assert stored_orders(store) == {1: ("a", 3, None, 2)}


# -- values that change in place --------------------------------------------------


class Base(DeclarativeBase):
    pass


class Doc(Base):
    __tablename__ = "edges_doc"
    id: Mapped[int] = mapped_column(primary_key=True)
    data: Mapped[dict[str, list[int]]] = mapped_column(sa.JSON)
    touched: Mapped[int] = mapped_column(default=0, onupdate=5)


def test_a_nested_value_changed_in_place_is_not_stored_without_a_commit():
    store = InMemoryStore()
    committed(store, Doc, Doc(data={"a": [1]}))
    with InMemoryUnitOfWork(store=store) as uow:
        uow.repository(Doc).get(1).data["a"].append(2)
    with InMemoryUnitOfWork(store=store) as uow:
        assert uow.repository(Doc).get(1).data == {"a": [1]}


def test_a_constant_onupdate_is_stored_and_seen_on_the_entity():
    store = InMemoryStore()
    committed(store, Doc, Doc(data={}))
    with InMemoryUnitOfWork(store=store) as uow:
        doc = uow.repository(Doc).get(1)
        doc.data = {"b": [1]}
        uow.commit()
        assert doc.touched == 5
    with InMemoryUnitOfWork(store=store) as uow:
        assert uow.repository(Doc).get(1).touched == 5


# -- unique values and references against what others committed ---------------------


class Coded(Base):
    """Unversioned, with a unique value other rows refer to."""

    __tablename__ = "edges_coded"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(20), unique=True)
    note: Mapped[str | None]


class Group(Base):
    __tablename__ = "edges_group"
    id: Mapped[int] = mapped_column(primary_key=True)


class Member(Base):
    """Two optional references, to two models."""

    __tablename__ = "edges_member"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str | None] = mapped_column(sa.ForeignKey(Coded.code))
    group_id: Mapped[int | None] = mapped_column(sa.ForeignKey(Group.id))
    note: Mapped[str | None]


class Pair(Base):
    __tablename__ = "edges_pair"
    id: Mapped[int] = mapped_column(primary_key=True)
    a: Mapped[str]
    b: Mapped[int]
    __table_args__ = (sa.UniqueConstraint("a", "b"),)


class Indexed(Base):
    """A unique index among plain ones, with a dialect option that is not a WHERE."""

    __tablename__ = "edges_indexed"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str]
    p: Mapped[int] = mapped_column(default=0)
    q: Mapped[int] = mapped_column(default=0)
    __table_args__ = (
        *(sa.Index(f"ix_edges_plain_{n}", "p", "q", "id") for n in range(8)),
        sa.Index("ix_edges_email", "email", unique=True, postgresql_using="btree"),
    )


def coded_store() -> InMemoryStore:
    store = InMemoryStore()
    committed(store, Coded, Coded(code="x"))
    return store


def test_a_unique_value_is_checked_at_commit_against_what_others_changed():
    store = coded_store()
    mine, theirs = units(store)
    with mine, theirs:
        codes = mine.repository(Coded)
        codes.get(1).note = "mine"
        codes.count()
        theirs.repository(Coded).get(1).code = "y"
        theirs.commit()
        codes.add(Coded(code="y"))  # this unit still sees x on row 1
        with pytest.raises(ConflictError):
            mine.commit()
    with InMemoryUnitOfWork(store=store) as uow:
        assert [(c.id, c.code) for c in uow.repository(Coded).find()] == [(1, "y")]


def test_an_update_that_leaves_a_unique_value_alone_does_not_check_it():
    store = coded_store()
    mine, theirs, third = (InMemoryUnitOfWork(store=store) for _ in range(3))
    with mine:
        row = mine.repository(Coded).get(1)
        row.note = "first"
        mine.repository(Coded).count()  # this unit's row 1 still has code x
        with theirs:
            theirs.repository(Coded).get(1).code = "y"
            theirs.commit()
        with third:
            third.repository(Coded).add(Coded(code="x"))
            third.commit()
        row.note = "second"
        mine.commit()
    with InMemoryUnitOfWork(store=store) as uow:
        rows = [(c.id, c.code, c.note) for c in uow.repository(Coded).find(order_by="id")]
    assert rows == [(1, "y", "second"), (2, "x", None)]


def test_a_reference_is_checked_at_commit_against_what_others_changed():
    store = coded_store()
    mine, theirs = units(store)
    with mine, theirs:
        mine.repository(Coded).get(1).note = "mine"
        mine.repository(Coded).count()
        theirs.repository(Coded).get(1).code = "y"
        theirs.commit()
        mine.repository(Member).add(Member(code="x"))  # x is gone, but not in this unit
        with pytest.raises(ConflictError, match="names \\('x',\\), which is not stored"):
            mine.commit()
    with InMemoryUnitOfWork(store=store) as uow:
        assert uow.repository(Member).count() == 0


def test_a_referrer_is_checked_at_commit_against_what_others_changed():
    store = coded_store()
    committed(store, Coded, Coded(code="z"))
    committed(store, Member, Member(code="z"))
    mine, theirs = units(store)
    with mine, theirs:
        mine.repository(Coded).get(2).note = "mine"  # this unit writes codes first
        mine.repository(Member).get(1).note = "mine"
        mine.repository(Member).count()
        theirs.repository(Member).get(1).code = "x"
        theirs.commit()
        codes = mine.repository(Coded)
        codes.remove(codes.get(1))  # this unit's member still refers to z
        with pytest.raises(ConflictError, match="still refers to it"):
            mine.commit()
    with InMemoryUnitOfWork(store=store) as uow:
        assert [c.code for c in uow.repository(Coded).find(order_by="id")] == ["x", "z"]


def test_a_referrer_another_unit_added_stops_a_removal_at_commit():
    store = coded_store()
    mine, theirs = units(store)
    with mine, theirs:
        codes = mine.repository(Coded)
        codes.remove(codes.get(1))
        theirs.repository(Member).add(Member(code="x"))
        theirs.commit()
        with pytest.raises(ConflictError, match="still refers to it"):
            mine.commit()
    with InMemoryUnitOfWork(store=store) as uow:
        assert uow.repository(Coded).count() == 1


@pytest.mark.parametrize(
    ("code", "group_id"), [(None, 7), ("nope", None)], ids=["group-missing", "code-missing"]
)
def test_a_missing_reference_is_refused_whatever_other_reference_is_null(code, group_id):
    with InMemoryUnitOfWork() as uow:
        uow.repository(Group)
        with pytest.raises(ConflictError, match="which is not stored"):
            uow.repository(Member).add(Member(code=code, group_id=group_id))


def test_null_references_are_not_checked_and_a_member_can_be_changed():
    store = InMemoryStore()
    with InMemoryUnitOfWork(store=store) as uow:
        members = uow.repository(Member)
        member = members.add(Member())
        member.note = "changed"
        assert members.count(F("note") == "changed") == 1
        member.code = "nope"
        with pytest.raises(ConflictError, match="which is not stored"):
            members.count()


@pytest.mark.parametrize("target", ["code", "group"])
def test_a_row_is_not_removed_while_a_row_of_another_model_refers_to_it(target):
    store = coded_store()
    committed(store, Group, Group())
    committed(store, Member, Member(code="x", group_id=1))
    with InMemoryUnitOfWork(store=store) as uow:
        repository = uow.repository(Coded if target == "code" else Group)
        with pytest.raises(ConflictError, match="still refers to it"):
            repository.remove(repository.get(1))


def test_a_savepoint_rolled_back_forgets_a_row_another_unit_removed():
    store = InMemoryStore()
    committed(store, ContractOrder, ContractOrder(ref="a"), ContractOrder(ref="b"))
    mine, theirs = units(store)
    with mine, theirs:
        orders = mine.repository(ContractOrder)
        orders.get(1)
        second = orders.get(2)
        others = theirs.repository(ContractOrder)
        others.remove(others.get(1))
        theirs.commit()
        with pytest.raises(RuntimeError), mine.savepoint():
            raise RuntimeError
        assert orders.get_or_none(1) is None
        second.total = 2
        mine.commit()
    assert stored_orders(store) == {2: ("b", 2, None, 2)}


class TwoUniques(Base):
    __tablename__ = "edges_two_uniques"
    id: Mapped[int] = mapped_column(primary_key=True)
    a: Mapped[str | None] = mapped_column(unique=True)
    b: Mapped[str | None] = mapped_column(unique=True)


@pytest.mark.parametrize("field", ["a", "b"])
def test_each_unique_value_is_checked_whatever_the_other_holds(field):
    other = "b" if field == "a" else "a"
    store = InMemoryStore()
    committed(store, TwoUniques, TwoUniques(a="x", b="x"), TwoUniques(a="y", b="y"))
    with InMemoryUnitOfWork(store=store) as uow:
        rows = uow.repository(TwoUniques)
        with pytest.raises(ConflictError, match=f"has {field} = 'x'"):
            rows.add(TwoUniques(**{field: "x", other: None}))
    with InMemoryUnitOfWork(store=store) as uow:
        rows = uow.repository(TwoUniques)
        setattr(rows.get(2), field, "x")  # the other value is left alone
        with pytest.raises(ConflictError, match=f"has {field} = 'x'"):
            rows.count()


def test_a_unique_index_is_enforced():
    with InMemoryUnitOfWork() as uow:
        rows = uow.repository(Indexed)
        rows.add(Indexed(email="a@x"))
        with pytest.raises(ConflictError, match="email = 'a@x'"):
            rows.add(Indexed(email="a@x"))


# -- what errors say ---------------------------------------------------------------


def test_errors_of_a_write_name_the_entity_the_key_and_the_value():
    store = InMemoryStore()
    committed(store, ContractOrder, ContractOrder(ref="a"))
    committed(store, Pair, Pair(a="x", b=1))
    committed(store, ContractTag, ContractTag(name="t"))
    cases: list[tuple[Any, Any, Callable[[InMemoryUnitOfWork], object]]] = [
        (
            ("ContractOrder", 2),
            "another ContractOrder has ref = 'a'; choose another value",
            lambda uow: uow.repository(ContractOrder).add(ContractOrder(ref="a")),
        ),
        (
            ("Pair", 2),
            "another Pair has a, b = ('x', 1); choose another value",
            lambda uow: uow.repository(Pair).add(Pair(a="x", b=1)),
        ),
        (
            ("ContractTag", "t"),
            "conflicts with stored data",
            lambda uow: uow.repository(ContractTag).add(ContractTag(name="t")),
        ),
        (
            ("ContractOrder", None),
            (
                "writing ContractOrder violates a constraint of the stored data: ref cannot be "
                "NULL; give it a value"
            ),
            lambda uow: uow.repository(ContractOrder).add(ContractOrder()),
        ),
        (
            ("Member", None),
            (
                "writing Member violates a constraint of the stored data: its foreign key "
                "Member(code) -> Coded names ('nope',), which is not stored; store that first"
            ),
            lambda uow: uow.repository(Member).add(Member(code="nope")),
        ),
    ]
    for (entity, key), message, write in cases:
        with InMemoryUnitOfWork(store=store) as uow:
            uow.repository(Coded)
            with pytest.raises(ConflictError, match=re.escape(message)) as caught:
                write(uow)
        assert (caught.value.entity, caught.value.key) == (entity, key)


def test_a_refused_removal_names_the_reference():
    store = coded_store()
    committed(store, Member, Member(code="x"))
    with InMemoryUnitOfWork(store=store) as uow:
        codes = uow.repository(Coded)
        message = (
            "removing Coded violates a constraint of the stored data: Member(code) -> Coded "
            "still refers to it; remove those first"
        )
        with pytest.raises(ConflictError, match=re.escape(message)) as caught:
            codes.remove(codes.get(1))
    assert caught.value.entity == "Coded"


def test_misused_entities_are_named_with_what_to_do():
    store = InMemoryStore()
    committed(store, ContractOrder, ContractOrder(ref="a"))
    with InMemoryUnitOfWork(store=store) as other:
        foreign = other.repository(ContractOrder).get(1)
    with InMemoryUnitOfWork(store=store) as uow:
        orders = uow.repository(ContractOrder)
        tag = ContractTag(name="t")
        with pytest.raises(QueryError, match=re.escape(f"cannot add {tag!r} in the repository")):
            orders.add(tag)  # type: ignore[arg-type]
        with pytest.raises(QueryError, match=re.escape(f"cannot remove {tag!r} in the")):
            orders.remove(tag)  # type: ignore[arg-type]
        with pytest.raises(QueryError, match=re.escape(f"cannot add {foreign!r} to Contract")):
            orders.add(foreign)
        new = ContractOrder(ref="n")
        with pytest.raises(QueryError, match="work; load it with get\\(\\) first$"):
            orders.remove(new)
        orders.remove(orders.add(new))
        with pytest.raises(QueryError, match=re.escape(f"cannot add {new!r} to ContractOrder")):
            orders.add(new)
        orders.get(1).id = 5
        with pytest.raises(ConfigurationError, match="remove it and add a new one$"):
            orders.count()


def test_a_bad_filter_is_refused_by_page_as_by_find():
    with InMemoryUnitOfWork() as uow:
        orders = uow.repository(ContractOrder)
        orders.add(ContractOrder(ref="a"))
        with pytest.raises(QueryError, match="'totl'"):
            orders.page(F("totl") == 1, size=1)


# -- models the store refuses, and the fix each refusal names -------------------------


class Refused(DeclarativeBase):
    pass


class Owner(Refused):
    __tablename__ = "edges_owner"
    id: Mapped[int] = mapped_column(primary_key=True)
    pets: Mapped[list[Pet]] = relationship(lazy="write_only")


class Pet(Refused):
    __tablename__ = "edges_pet"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey(Owner.id))


class ServerVersioned(Refused):
    __tablename__ = "edges_server_versioned"
    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(server_default=sa.text("1"))
    __mapper_args__ = {"version_id_col": version, "version_id_generator": False}  # noqa: RUF012


class SqlOnUpdate(Refused):
    __tablename__ = "edges_sql_onupdate"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[str | None] = mapped_column(onupdate=sa.func.now())


class Partial(Refused):
    __tablename__ = "edges_partial"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str]
    __table_args__ = (
        sa.Index("ix_edges_partial", "code", unique=True, sqlite_where=sa.text("code > 'a'")),
    )


class TwoChecks(Refused):
    __tablename__ = "edges_two_checks"
    id: Mapped[int] = mapped_column(primary_key=True)
    a: Mapped[int]
    b: Mapped[int]
    __table_args__ = (sa.CheckConstraint("a > 0"), sa.CheckConstraint("b > 0"))


class Cascading(Refused):
    __tablename__ = "edges_cascading"
    id: Mapped[int] = mapped_column(primary_key=True)
    other: Mapped[int] = mapped_column(sa.ForeignKey("edges_partial.id", ondelete="CASCADE"))


unmapped = sa.Table(
    "edges_unmapped", Refused.metadata, sa.Column("id", sa.Integer, primary_key=True)
)


class Orphan(Refused):
    __tablename__ = "edges_orphan"
    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[int] = mapped_column(sa.ForeignKey(unmapped.c.id))


class Restricting(Refused):
    """Spelled in lower case, as SQL allows."""

    __tablename__ = "edges_restricting"
    id: Mapped[int] = mapped_column(primary_key=True)
    other: Mapped[int] = mapped_column(
        sa.ForeignKey("edges_partial.id", ondelete="restrict", onupdate="no action")
    )


class Stamped(Refused):
    __tablename__ = "edges_stamped"
    id: Mapped[int] = mapped_column(primary_key=True)
    created: Mapped[str] = mapped_column(server_default=sa.text("'now'"))


SQLITE_INSTEAD = "test it against SQLite instead (SqlAlchemyUnitOfWork on sqlite:///:memory:)"


@pytest.mark.parametrize(
    ("model", "fix"),
    [
        (
            Owner,
            (
                "the in-memory repositories cannot reproduce the relationship Owner.pets: its "
                "loader is lazy='write_only' (a query per access), which only the database can "
                f"evaluate; {SQLITE_INSTEAD}"
            ),
        ),
        (
            ServerVersioned,
            (
                "the in-memory repositories cannot reproduce it: use a Python-side "
                "version_id_generator, or assign the versions in your code "
                "(version_id_generator=False, no server default)"
            ),
        ),
        (
            SqlOnUpdate,
            (
                "SQL), which the in-memory repositories cannot do; use a Python-side onupdate, "
                "or test it against SQLite"
            ),
        ),
        (
            Partial,
            (
                f"with a WHERE clause, which the in-memory repositories cannot evaluate; "
                f"{SQLITE_INSTEAD}"
            ),
        ),
        (TwoChecks, f"which are SQL the in-memory repositories cannot evaluate; {SQLITE_INSTEAD}"),
        (
            Cascading,
            (
                "which the in-memory repositories cannot carry out; test it against SQLite with "
                "PRAGMA foreign_keys=ON instead"
            ),
        ),
        (
            Orphan,
            (
                "which no class in its registry maps; the in-memory repositories keep rows of "
                "mapped classes only"
            ),
        ),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else "",
)
def test_a_model_the_store_cannot_reproduce_is_refused_with_the_fix(model, fix):
    with InMemoryUnitOfWork() as uow, pytest.raises(ConfigurationError, match=re.escape(fix)):
        uow.repository(model)


def test_every_check_constraint_is_named():
    with InMemoryUnitOfWork() as uow, pytest.raises(ConfigurationError) as caught:
        uow.repository(TwoChecks)
    assert re.search(r"\((a > 0, b > 0|b > 0, a > 0)\)", str(caught.value))


def test_restrict_and_no_action_in_any_case_are_accepted():
    with InMemoryUnitOfWork() as uow:
        uow.repository(Restricting)


def test_a_missing_value_the_database_would_compute_is_refused_with_the_fix():
    with (
        InMemoryUnitOfWork() as uow,
        pytest.raises(
            ConfigurationError,
            match=re.escape(
                "database, which the in-memory repositories cannot do: set it before add()"
            )
            + "$",
        ),
    ):
        uow.repository(Stamped).add(Stamped())


# -- what a unit left without commit() reports -------------------------------------


def test_a_unit_left_without_commit_reports_what_it_discards(caplog):
    store = InMemoryStore()
    committed(store, ContractOrder, *(ContractOrder(ref=r) for r in "abcdef"))
    caplog.set_level(logging.DEBUG, logger="buttress.persistence")
    with InMemoryUnitOfWork(store=store) as uow:
        orders = uow.repository(ContractOrder)
        orders.add_many([ContractOrder(ref=f"n{n}") for n in range(3)])
        orders.remove(orders.add(ContractOrder(ref="gone")))  # nothing lost
        first, second, third, fourth = (orders.get(key) for key in (1, 2, 3, 4))
        first.total = second.total = 1
        for key in (5, 6):
            orders.remove(orders.get(key))  # writes the changes above
        first.total = 2  # written, then changed again: one changed entity
        third.total = fourth.total = 1  # changed in place only
    assert "discarded 3 new, 4 changed and 2 removed entities" in caplog.text
