"""Edges of relationship loading that the contract suite reaches only in part.

Each test runs on every backend of ``make_sync_uow``: the in-memory twin must
refuse what SQLAlchemy's repositories refuse, with the same message.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from persistence_backends import BACKENDS, own_units
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    attribute_keyed_dict,
    mapped_column,
    relationship,
)

from buttress.domain import AggregateRoot, F
from buttress.errors import ConfigurationError, ConflictError, QueryError
from buttress.persistence import AsyncInMemoryUnitOfWork, InMemoryStore, InMemoryUnitOfWork
from buttress.testing import (
    Allocated,
    ContractAllocation,
    ContractBatch,
    ContractLabel,
    ContractOrder,
    ContractProduct,
    ContractTag,
)


@pytest.mark.parametrize(
    "load",
    ["", "batches..allocations", ".batches", "batches.", ("batches", 3)],
    ids=["empty", "empty-step", "leading-dot", "trailing-dot", "not-text"],
)
def test_a_malformed_load_path_is_refused_by_name(
    make_sync_uow: Callable[..., Any], load: object
) -> None:
    with (
        make_sync_uow() as uow,
        pytest.raises(
            QueryError,
            match=r"is not a relationship path: name relationships joined by dots, "
            r"such as 'batches' or 'batches\.allocations'$",
        ),
    ):
        uow.repository(ContractProduct).find(load=load)


def test_an_unknown_step_lists_the_relationships_there_are(
    make_sync_uow: Callable[..., Any],
) -> None:
    with (
        make_sync_uow() as uow,
        pytest.raises(
            QueryError,
            match=r"in the path 'batchs'\); its relationships are: batches, detail, labels$",
        ),
    ):
        uow.repository(ContractProduct).find(load="batchs")


def test_an_unknown_step_on_a_model_without_relationships_says_so(
    make_sync_uow: Callable[..., Any],
) -> None:
    with (
        make_sync_uow() as uow,
        pytest.raises(
            QueryError,
            match=r"^ContractTag has no relationship 'x' \(in the path 'x'\); "
            r"its relationships are: none$",
        ),
    ):
        uow.repository(ContractTag).find(load="x")


@pytest.mark.asyncio
async def test_a_second_get_loads_the_deeper_path_it_names(
    make_async_uow: Callable[..., Any],
) -> None:
    """An entity in the unit already, with its first level loaded, gets the next one."""
    async with make_async_uow() as uow:
        await uow.repository(ContractProduct).add(
            ContractProduct(
                sku="S1",
                batches=[
                    ContractBatch(
                        reference="b1",
                        qty=3,
                        allocations=[ContractAllocation(orderid="o1", qty=1)],
                    )
                ],
            )
        )
        await uow.commit()
    async with make_async_uow() as uow:
        products = uow.repository(ContractProduct)
        first = await products.get("S1", load="batches")
        again = await products.get("S1", load="batches.allocations")
        assert again is first
        assert [a.orderid for a in again.batches[0].allocations] == ["o1"]


# -- parts changed on their own: the aggregate root they belong to is found ---------------

owned = sa.MetaData()


class _Owned(DeclarativeBase):
    metadata = owned


class Shelf(AggregateRoot, _Owned):
    """A root with a two-column key; its boxes name it by both columns."""

    __tablename__ = "shelf"

    site: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    version: Mapped[int] = mapped_column(nullable=False)
    boxes: Mapped[list[Box]] = relationship(cascade="all", order_by="Box.id")
    items: Mapped[list[Item]] = relationship(
        cascade="all", order_by="Item.id", back_populates="shelf"
    )

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy's spelling


class Box(_Owned):
    """A part of a shelf and of a crate, without a relationship back: its keys name them."""

    __tablename__ = "box"

    id: Mapped[int] = mapped_column(primary_key=True)
    site: Mapped[str | None] = mapped_column(sa.String(20))
    code: Mapped[str | None] = mapped_column(sa.String(20))
    crate_label: Mapped[str | None] = mapped_column(sa.ForeignKey("crate.label"))
    qty: Mapped[int] = mapped_column(default=0)

    __table_args__ = (sa.ForeignKeyConstraint(["site", "code"], ["shelf.site", "shelf.code"]),)


class Crate(AggregateRoot, _Owned):
    """A root whose items name it by a unique label, not by its key."""

    __tablename__ = "crate"

    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(sa.String(20), unique=True)
    version: Mapped[int] = mapped_column(nullable=False)
    items: Mapped[list[Item]] = relationship(
        cascade="all", order_by="Item.id", back_populates="crate"
    )
    boxes: Mapped[list[Box]] = relationship(cascade="all", order_by="Box.id")
    tags: Mapped[list[CrateTag]] = relationship(cascade="merge", order_by="CrateTag.id")

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy's spelling


class CrateTag(_Owned):
    """Held by a crate without save-update: not a part of it."""

    __tablename__ = "crate_tag"

    id: Mapped[int] = mapped_column(primary_key=True)
    crate_id: Mapped[int | None] = mapped_column(sa.ForeignKey("crate.id"))
    text: Mapped[str] = mapped_column(sa.String(20), default="")


class Item(_Owned):
    """A part of a crate and of a shelf, with relationships back to both."""

    __tablename__ = "item"

    id: Mapped[int] = mapped_column(primary_key=True)
    crate_label: Mapped[str | None] = mapped_column(sa.ForeignKey("crate.label"))
    site: Mapped[str | None] = mapped_column(sa.String(20))
    code: Mapped[str | None] = mapped_column(sa.String(20))
    qty: Mapped[int] = mapped_column(default=0)
    crate: Mapped[Crate | None] = relationship(back_populates="items")
    shelf: Mapped[Shelf | None] = relationship(back_populates="items")

    __table_args__ = (sa.ForeignKeyConstraint(["site", "code"], ["shelf.site", "shelf.code"]),)


class Rack(AggregateRoot, _Owned):
    """A root whose version guards its own row only."""

    __tablename__ = "rack"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(20), default="")
    version: Mapped[int] = mapped_column(nullable=False)
    bins: Mapped[list[Bin]] = relationship(cascade="all, delete-orphan", order_by="Bin.id")
    plate: Mapped[Plate | None] = relationship(cascade="all, delete-orphan")

    consistency_boundary = False
    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy's spelling


class Plate(_Owned):
    """A one-to-one part keyed by its rack's key, versioned, with a unique code."""

    __tablename__ = "plate"

    rack_id: Mapped[int] = mapped_column(sa.ForeignKey("rack.id"), primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(20), unique=True)
    note: Mapped[str] = mapped_column(sa.String(20))
    version: Mapped[int] = mapped_column(nullable=False)
    rack: Mapped[Rack] = relationship(viewonly=True)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy's spelling


class Bin(_Owned):
    __tablename__ = "bin"

    id: Mapped[int] = mapped_column(primary_key=True)
    rack_id: Mapped[int] = mapped_column(sa.ForeignKey("rack.id"))
    qty: Mapped[int] = mapped_column(default=0)


class Tray(_Owned):
    """Its cups are ordered by two columns, the second descending."""

    __tablename__ = "tray"

    id: Mapped[int] = mapped_column(primary_key=True)
    cups: Mapped[list[Cup]] = relationship(
        cascade="all, delete-orphan", order_by=lambda: [Cup.rank, Cup.name.desc()]
    )


class Cup(_Owned):
    __tablename__ = "cup"

    id: Mapped[int] = mapped_column(primary_key=True)
    tray_id: Mapped[int] = mapped_column(sa.ForeignKey("tray.id"))
    name: Mapped[str] = mapped_column(sa.String(20))
    rank: Mapped[int | None]


class Desk(_Owned):
    """Relationships with other cascades than the usual ones."""

    __tablename__ = "desk"

    id: Mapped[int] = mapped_column(primary_key=True)
    drawers: Mapped[list[Drawer]] = relationship(passive_deletes=True, order_by="Drawer.id")
    drawer_view: Mapped[list[Drawer]] = relationship(viewonly=True, order_by="Drawer.id")
    stickers: Mapped[list[Sticker]] = relationship(cascade="merge", order_by="Sticker.id")


class Drawer(_Owned):
    __tablename__ = "drawer"

    id: Mapped[int] = mapped_column(primary_key=True)
    desk_id: Mapped[int | None] = mapped_column(sa.ForeignKey("desk.id"))


class Sticker(_Owned):
    __tablename__ = "sticker"

    id: Mapped[int] = mapped_column(primary_key=True)
    desk_id: Mapped[int | None] = mapped_column(sa.ForeignKey("desk.id"))


@pytest.fixture(params=BACKENDS)
def owned_units(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    yield from own_units(request, tmp_path, owned)


def _two_shelves(make: Any) -> None:
    with make() as uow:
        uow.repository(Shelf).add_many(
            [
                Shelf(site="a", code="s1", boxes=[Box(id=1, qty=1)]),
                Shelf(site="a", code="s2", boxes=[Box(id=2, qty=1)]),
            ]
        )
        uow.commit()


def _versions(make: Any) -> dict[str, int]:
    with make() as uow:
        return {shelf.code: shelf.version for shelf in uow.repository(Shelf).find()}


def test_a_part_changed_alone_bumps_the_root_it_names_by_a_composite_key(
    owned_units: Any,
) -> None:
    make, _engine = owned_units
    _two_shelves(make)
    with make() as uow:
        uow.repository(Box).get(1).qty = 5
        uow.commit()
    assert _versions(make) == {"s1": 2, "s2": 1}


def test_a_part_moved_by_its_key_bumps_the_root_it_left_and_the_one_it_joined(
    owned_units: Any,
) -> None:
    make, _engine = owned_units
    _two_shelves(make)
    with make() as uow:
        uow.repository(Box).get(1).code = "s2"
        uow.commit()
    assert _versions(make) == {"s1": 2, "s2": 2}
    with make() as uow:
        assert [box.id for box in uow.repository(Shelf).get(("a", "s2")).boxes] == [1, 2]


def test_a_part_let_go_by_its_key_bumps_the_root_it_left(owned_units: Any) -> None:
    make, _engine = owned_units
    _two_shelves(make)
    with make() as uow:
        box = uow.repository(Box).get(1)
        box.site = box.code = None
        uow.commit()
    assert _versions(make) == {"s1": 2, "s2": 1}
    with make() as uow:
        assert uow.repository(Shelf).get(("a", "s1")).boxes == []
        assert uow.repository(Box).get(1).qty == 1


def test_a_part_naming_its_root_by_a_unique_value_bumps_that_root(owned_units: Any) -> None:
    make, _engine = owned_units
    with make() as uow:
        uow.repository(Crate).add_many(
            [
                Crate(id=1, label="two", items=[Item(id=1)]),
                Crate(id=2, label="one", items=[Item(id=2)]),
            ]
        )
        uow.commit()
    with make() as uow:
        uow.repository(Item).get(1).qty = 3
        uow.commit()
    with make() as uow:
        crates = {crate.label: crate.version for crate in uow.repository(Crate).find()}
    assert crates == {"two": 2, "one": 1}


def _crate_and_shelves(make: Any) -> None:
    _two_shelves(make)
    with make() as uow:
        uow.repository(Crate).add(Crate(id=1, label="c"))
        uow.repository(Box).get(1).crate_label = "c"
        uow.commit()


def _all_versions(make: Any) -> dict[str, int]:
    with make() as uow:
        return {**_versions(make), "c": uow.repository(Crate).get(1).version}


def test_a_part_of_two_roots_changed_alone_bumps_both(owned_units: Any) -> None:
    make, _engine = owned_units
    _crate_and_shelves(make)
    assert _all_versions(make) == {"s1": 2, "s2": 1, "c": 2}
    with make() as uow:
        uow.repository(Box).get(1).qty = 7
        uow.commit()
    assert _all_versions(make) == {"s1": 3, "s2": 1, "c": 3}


def test_a_new_part_added_by_the_keys_of_two_roots_bumps_both(owned_units: Any) -> None:
    make, _engine = owned_units
    _crate_and_shelves(make)
    with make() as uow:
        uow.repository(Box).add(Box(id=3, site="a", code="s2", crate_label="c"))
        uow.commit()
    assert _all_versions(make) == {"s1": 2, "s2": 2, "c": 3}
    with make() as uow:
        assert [box.id for box in uow.repository(Crate).get(1).boxes] == [1, 3]


def test_a_new_part_added_to_two_roots_by_its_relationships_bumps_both(
    owned_units: Any,
) -> None:
    make, _engine = owned_units
    _crate_and_shelves(make)
    with make() as uow:
        crate = uow.repository(Crate).get(1)
        shelf = uow.repository(Shelf).get(("a", "s2"))
        uow.repository(Item).add(Item(id=1, crate=crate, shelf=shelf))
        uow.commit()
    assert _all_versions(make) == {"s1": 2, "s2": 2, "c": 3}
    with make() as uow:
        item = uow.repository(Item).get(1)
        assert (item.crate_label, item.site, item.code) == ("c", "a", "s2")


def test_an_object_held_without_save_update_is_not_a_part(owned_units: Any) -> None:
    make, _engine = owned_units
    with make() as uow:
        uow.repository(Crate).add(Crate(id=1, label="c"))
        uow.repository(CrateTag).add(CrateTag(id=1, crate_id=1))
        uow.commit()
    with make() as uow:
        uow.repository(CrateTag).get(1).text = "fragile"
        uow.commit()
    with make() as uow:
        crate = uow.repository(Crate).get(1)
        assert (crate.version, [tag.text for tag in crate.tags]) == (1, ["fragile"])


def test_a_root_guarding_its_own_row_only_is_not_bumped_by_its_parts(owned_units: Any) -> None:
    make, _engine = owned_units
    with make() as uow:
        uow.repository(Rack).add(Rack(id=1, bins=[Bin(id=1), Bin(id=2)]))
        uow.commit()
    with make() as uow:
        rack = uow.repository(Rack).get(1)
        rack.bins[0].qty = 4
        rack.bins.append(Bin(id=3))
        uow.repository(Bin).get(2).qty = 1
        uow.commit()
    with make() as uow:
        rack = uow.repository(Rack).get(1)
        assert (rack.version, [b.qty for b in rack.bins]) == (1, [4, 1, 0])
        rack.name = "east"
        uow.commit()
    with make() as uow:
        assert uow.repository(Rack).get(1).version == 2


def test_a_part_added_without_a_root_is_stored_and_bumps_nothing(owned_units: Any) -> None:
    make, _engine = owned_units
    _crate_and_shelves(make)
    with make() as uow:
        uow.repository(Item).add(Item(id=5, qty=2))
        uow.commit()
    assert _all_versions(make) == {"s1": 2, "s2": 1, "c": 2}
    with make() as uow:
        item = uow.repository(Item).get(5)
        assert (item.crate, item.shelf, item.qty) == (None, None, 2)


# -- several aggregates in one unit: each root is bumped once, none is skipped ----------


def _product_and_order(make_uow: Callable[..., Any]) -> None:
    with make_uow() as uow:
        uow.repository(ContractProduct).add(
            ContractProduct(sku="S1", batches=[ContractBatch(reference="b1", qty=10)])
        )
        uow.repository(ContractOrder).add(ContractOrder(ref="o1"))
        uow.commit()


def _stored_versions(make_uow: Callable[..., Any]) -> tuple[int, int]:
    with make_uow() as uow:
        product = uow.repository(ContractProduct).get("S1")
        order = uow.repository(ContractOrder).get_by(F("ref") == "o1")
        return product.version, order.version


def _allocated() -> Allocated:
    return Allocated(sku="S1", orderid="x", reference="b1")


def test_a_root_is_bumped_beside_a_new_aggregate_that_recorded_an_event(
    make_sync_uow: Callable[..., Any],
) -> None:
    _product_and_order(make_sync_uow)
    with make_sync_uow() as uow:
        fresh = ContractProduct(sku="S2")
        fresh.record_event(Allocated(sku="S2", orderid="y", reference="none"))
        uow.repository(ContractProduct).add(fresh)
        uow.repository(ContractBatch).get_by(F("reference") == "b1").qty = 4
        uow.commit()
        assert fresh.version == 1
    assert _stored_versions(make_sync_uow) == (2, 1)


def test_a_root_is_bumped_beside_one_whose_own_row_changed(
    make_sync_uow: Callable[..., Any],
) -> None:
    _product_and_order(make_sync_uow)
    with make_sync_uow() as uow:
        order = uow.repository(ContractOrder).get_by(F("ref") == "o1")
        order.total = 5
        order.pay()
        uow.repository(ContractBatch).get_by(F("reference") == "b1").qty = 4
        uow.commit()
    assert _stored_versions(make_sync_uow) == (2, 2)


def test_events_counted_at_a_flush_do_not_bump_their_root_again_at_commit(
    make_sync_uow: Callable[..., Any],
) -> None:
    _product_and_order(make_sync_uow)
    with make_sync_uow() as uow:
        order = uow.repository(ContractOrder).get_by(F("ref") == "o1")
        product = uow.repository(ContractProduct).get("S1")
        order.total = 5
        order.pay()
        assert uow.repository(ContractOrder).count() == 1  # flushes the change and the event
        product.record_event(_allocated())
        uow.commit()
    assert _stored_versions(make_sync_uow) == (2, 2)


# -- order_by -----------------------------------------------------------------------------


def test_parts_load_in_their_order_also_when_flushed_without_a_sort_column(
    owned_units: Any,
) -> None:
    make, _engine = owned_units
    with make() as uow:
        uow.repository(Tray).add(Tray(id=1))
        uow.commit()
    with make() as uow:
        uow.repository(Cup).add_many(
            [Cup(id=i, tray_id=1, name=name) for i, name in enumerate("bca", start=1)]
        )
        tray = uow.repository(Tray).get(1)  # flushes the cups, their rank never set
        assert [cup.name for cup in tray.cups] == ["c", "b", "a"]
        for cup, rank in zip(tray.cups, [1, 0, 1], strict=True):
            cup.rank = rank
        uow.commit()
    with make() as uow:
        assert [cup.name for cup in uow.repository(Tray).get(1).cups] == ["b", "c", "a"]


@pytest.fixture(params=["memory", "sqlite"])
def sqlite_like_units(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    """The twin orders NULL first, as SQLite does (PostgreSQL puts NULL last)."""
    yield from own_units(request, tmp_path, owned)


def test_a_part_without_a_sort_value_comes_first_as_on_sqlite(sqlite_like_units: Any) -> None:
    make, _engine = sqlite_like_units
    with make() as uow:
        uow.repository(Tray).add(
            Tray(
                id=1,
                cups=[
                    Cup(id=1, name="b", rank=1),
                    Cup(id=2, name="c"),
                    Cup(id=3, name="a", rank=1),
                ],
            )
        )
        uow.commit()
    with make() as uow:
        assert [cup.name for cup in uow.repository(Tray).get(1).cups] == ["c", "b", "a"]


# -- what the twin cannot evaluate is refused, by name -------------------------------------


class _Refused(DeclarativeBase):
    pass


class Pen(_Refused):
    __tablename__ = "pen"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(20))


class EitherJoined(_Refused):
    __tablename__ = "either_joined"

    id: Mapped[int] = mapped_column(primary_key=True)
    pens: Mapped[list[Pen]] = relationship(
        primaryjoin="or_(EitherJoined.id == foreign(Pen.id), EitherJoined.id == foreign(Pen.code))",
        viewonly=True,
    )


class LiteralJoined(_Refused):
    __tablename__ = "literal_joined"

    id: Mapped[int] = mapped_column(primary_key=True)
    pens: Mapped[list[Pen]] = relationship(
        primaryjoin="and_(LiteralJoined.id == foreign(Pen.id), Pen.code == 'blue')",
        viewonly=True,
    )


class ExpressionOrdered(_Refused):
    __tablename__ = "expression_ordered"

    id: Mapped[int] = mapped_column(primary_key=True)
    pens: Mapped[list[Pen]] = relationship(
        primaryjoin="ExpressionOrdered.id == foreign(Pen.id)",
        order_by=lambda: sa.func.lower(Pen.code),
        viewonly=True,
    )


class PostUpdated(_Refused):
    __tablename__ = "post_updated"

    id: Mapped[int] = mapped_column(primary_key=True)
    pen_id: Mapped[int | None] = mapped_column(sa.ForeignKey("pen.id"))
    pen: Mapped[Pen | None] = relationship(post_update=True)


class Keyed(_Refused):
    __tablename__ = "keyed"

    id: Mapped[int] = mapped_column(primary_key=True)
    pens: Mapped[dict[str, Pen]] = relationship(
        primaryjoin="Keyed.id == foreign(Pen.id)",
        collection_class=attribute_keyed_dict("code"),
        viewonly=True,
    )


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            EitherJoined,
            (
                r"^the in-memory repositories cannot reproduce the relationship "
                r"EitherJoined\.pens: it joins on an expression, not on equal columns"
            ),
        ),
        (LiteralJoined, r"relationship LiteralJoined\.pens: it joins on an expression, not on"),
        (
            ExpressionOrdered,
            (
                r"^ExpressionOrdered\.pens is ordered by lower\(pen\.code\), an expression the "
                r"in-memory repositories cannot evaluate; order it by columns, or test it "
                r"against SQLite$"
            ),
        ),
        (
            PostUpdated,
            r"PostUpdated\.pen: it is written by a second UPDATE \(post_update\), which",
        ),
        (Keyed, r"relationship Keyed\.pens: its collection is neither a list nor a set, which"),
    ],
    ids=["or", "literal", "order-by-expression", "post-update", "keyed-collection"],
)
def test_a_relationship_the_twin_cannot_evaluate_is_refused(model: Any, message: str) -> None:
    with InMemoryUnitOfWork() as uow, pytest.raises(ConfigurationError, match=message):
        uow.repository(model)


# -- cascades other than the aggregate's ------------------------------------------------


def _two_desks(make: Any) -> None:
    with make() as uow:
        uow.repository(Desk).add_many([Desk(id=1), Desk(id=2, drawers=[Drawer(id=1)])])
        uow.commit()


def test_a_viewonly_collection_changed_writes_nothing(owned_units: Any) -> None:
    make, _engine = owned_units
    _two_desks(make)
    with make() as uow:
        desks = uow.repository(Desk)
        desks.get(1).drawer_view.append(uow.repository(Drawer).get(1))
        uow.commit()
    with make() as uow:
        assert uow.repository(Drawer).get(1).desk_id == 2
        assert [d.id for d in uow.repository(Desk).get(2).drawer_view] == [1]


def test_a_new_part_without_save_update_is_not_stored(owned_units: Any) -> None:
    make, _engine = owned_units
    _two_desks(make)
    with make() as uow:
        desk = uow.repository(Desk).get(1)
        desk.stickers.append(Sticker(id=1))
        with warnings.catch_warnings():  # SQLAlchemy warns it will not add it
            warnings.simplefilter("ignore", sa.exc.SAWarning)
            uow.commit()
    with make() as uow:
        assert uow.repository(Sticker).count() == 0


def test_passive_deletes_leave_the_parts_to_the_database(owned_units: Any) -> None:
    """No ON DELETE on the key: the database refuses, as the twin does."""
    make, _engine = owned_units
    _two_desks(make)
    with make() as uow:
        desk = uow.repository(Desk).get(2)
        with pytest.raises(ConflictError, match="Desk"):
            uow.repository(Desk).remove(desk)  # written at once, as SQL does
    with make() as uow:
        assert uow.repository(Drawer).get(1).desk_id == 2


def test_a_relationship_read_after_the_unit_closed_is_named() -> None:
    """The twin's message names the relationship SQLAlchemy would have loaded."""
    store = InMemoryStore()
    with InMemoryUnitOfWork(store=store) as uow:
        uow.repository(ContractProduct).add(
            ContractProduct(sku="S1", batches=[ContractBatch(reference="b1", qty=1)])
        )
        uow.commit()
    with InMemoryUnitOfWork(store=store) as uow:
        product = uow.repository(ContractProduct).get("S1")
    with pytest.raises(
        sa.orm.exc.DetachedInstanceError,
        match=r"^ContractProduct\.batches of .* was not loaded while its unit of work was open: "
        r"read it inside the unit, or name it in load= when you get the entity \(",
    ):
        _ = product.batches


_unmapped = sa.Table(
    "unmapped_child",
    _Refused.metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("parent_id", sa.ForeignKey("unmapped_parent.id")),
)


class UnmappedChild(_Refused):
    __table__ = _unmapped
    __mapper_args__ = {"exclude_properties": ["parent_id"]}  # noqa: RUF012 - SQLAlchemy's spelling


class UnmappedParent(_Refused):
    __tablename__ = "unmapped_parent"

    id: Mapped[int] = mapped_column(primary_key=True)
    children: Mapped[list[UnmappedChild]] = relationship(
        primaryjoin=lambda: UnmappedParent.id == sa.orm.foreign(_unmapped.c.parent_id),
        viewonly=True,
    )


def test_a_relationship_joining_on_an_unmapped_column_is_refused() -> None:
    with (
        InMemoryUnitOfWork() as uow,
        pytest.raises(
            ConfigurationError,
            match=r"^UnmappedChild does not map the column unmapped_child\.parent_id that one of "
            r"its relationships joins on; the in-memory repositories join on mapped columns only$",
        ),
    ):
        uow.repository(UnmappedParent)


# -- a part replaced under its key: SQL's row switch --------------------------------------


def test_a_versioned_part_replaced_under_its_key_is_written_over(owned_units: Any) -> None:
    make, _engine = owned_units
    with make() as uow:
        uow.repository(Rack).add(Rack(id=1, plate=Plate(code="p", note="old")))
        uow.commit()
    with make() as uow:
        rack = uow.repository(Rack).get(1)
        old = rack.plate
        assert old is not None
        rack.plate = Plate(code="p", note="new")  # its key and its unique code: the old one's
        assert uow.repository(Plate).count() == 1  # flushed: one row, written over
        plate = rack.plate
        assert (plate.rack is rack, plate.note, plate.version) == (True, "new", 2)
        uow.commit()
    with make() as uow:
        plate = uow.repository(Plate).get(1)
        assert (plate.note, plate.version) == ("new", 2)
        plate.note = "newer"
        uow.commit()
    with make() as uow:
        plate = uow.repository(Plate).get(1)
        assert (plate.note, plate.version) == ("newer", 3)
        assert uow.repository(Rack).get(1).version == 1


@pytest.mark.asyncio
async def test_an_async_twin_names_the_relationship_it_cannot_load_on_access() -> None:
    store = InMemoryStore()
    async with AsyncInMemoryUnitOfWork(store=store) as uow:
        await uow.repository(ContractProduct).add(ContractProduct(sku="S1"))
        await uow.commit()
    async with AsyncInMemoryUnitOfWork(store=store) as uow:
        product = await uow.repository(ContractProduct).get("S1")
        with pytest.raises(
            sa.exc.MissingGreenlet,
            match=r"^ContractProduct\.batches of .* was not loaded, and an asyncio unit of work "
            r"cannot load it on access \(SQLAlchemy's asyncio session raises MissingGreenlet "
            r"here too\): name it in load= when you get or find the entity, such as "
            r"load='batches' \(",
        ):
            _ = product.batches


# -- loading relationships in a unit with changes not yet written ------------------------


def test_a_relationship_loaded_on_access_sees_parts_moved_by_their_key(
    make_sync_uow: Callable[..., Any],
) -> None:
    """The lazy load writes the unit's changes first, as SQL's autoflush does."""
    with make_sync_uow() as uow:
        uow.repository(ContractProduct).add_many(
            [
                ContractProduct(sku="S1"),
                ContractProduct(sku="S2", batches=[ContractBatch(reference="b1", qty=1)]),
            ]
        )
        uow.commit()
    with make_sync_uow() as uow:
        product = uow.repository(ContractProduct).get("S1")
        uow.repository(ContractBatch).get_by(F("reference") == "b1").product_sku = "S1"
        assert [batch.reference for batch in product.batches] == ["b1"]
        assert uow.repository(ContractProduct).get("S2").batches == []
        uow.commit()


def test_getting_an_entity_again_keeps_its_unwritten_changes(
    make_sync_uow: Callable[..., Any],
) -> None:
    with make_sync_uow() as uow:
        uow.repository(ContractProduct).add(
            ContractProduct(sku="S1", batches=[ContractBatch(reference="b1", qty=1)])
        )
        uow.commit()
    with make_sync_uow() as uow:
        products = uow.repository(ContractProduct)
        product = products.get("S1", load="batches")
        product.batches.append(ContractBatch(reference="b2", qty=2))
        again = products.get("S1", load="batches")
        assert [batch.reference for batch in again.batches] == ["b1", "b2"]
        uow.commit()
    with make_sync_uow() as uow:
        product = uow.repository(ContractProduct).get("S1", load="batches")
        assert [batch.reference for batch in product.batches] == ["b1", "b2"]


# -- removals: delete cascades and orphans ---------------------------------------------


def _two_products(make_uow: Callable[..., Any]) -> None:
    with make_uow() as uow:
        uow.repository(ContractProduct).add_many(
            [
                ContractProduct(
                    sku="S1",
                    batches=[
                        ContractBatch(
                            reference="b1",
                            qty=5,
                            allocations=[ContractAllocation(orderid="o1", qty=1)],
                        ),
                        ContractBatch(reference="b2", qty=5),
                    ],
                    labels={ContractLabel(name="red")},
                ),
                ContractProduct(sku="S2"),
            ]
        )
        uow.commit()


def test_a_part_moved_to_another_root_is_not_deleted_as_an_orphan(
    make_sync_uow: Callable[..., Any],
) -> None:
    _two_products(make_sync_uow)
    with make_sync_uow() as uow:
        products = uow.repository(ContractProduct)
        one, two = products.get("S1", load="batches"), products.get("S2", load="batches")
        moved = one.batches.pop(0)
        two.batches.append(moved)
        uow.commit()
    with make_sync_uow() as uow:
        products = uow.repository(ContractProduct)
        assert [b.reference for b in products.get("S1").batches] == ["b2"]
        assert [b.reference for b in products.get("S2").batches] == ["b1"]
        assert uow.repository(ContractAllocation).count() == 1


def test_removing_a_root_whose_parts_were_never_loaded_removes_them(
    make_sync_uow: Callable[..., Any],
) -> None:
    _two_products(make_sync_uow)
    with make_sync_uow() as uow:
        uow.repository(ContractProduct).remove(uow.repository(ContractProduct).get("S1"))
        uow.commit()
    with make_sync_uow() as uow:
        counts = [uow.repository(m).count() for m in (ContractBatch, ContractAllocation)]
        assert counts == [0, 0]
        assert [label.name for label in uow.repository(ContractLabel).find()] == ["red"]


def test_a_part_removed_while_still_in_its_loaded_collection_stays_removed(
    make_sync_uow: Callable[..., Any],
) -> None:
    _two_products(make_sync_uow)
    with make_sync_uow() as uow:
        product = uow.repository(ContractProduct).get("S1", load="batches")
        uow.repository(ContractBatch).remove(product.batches[1])
        product.batches[0].qty = 6
        uow.commit()
    with make_sync_uow() as uow:
        batches = uow.repository(ContractProduct).get("S1").batches
        assert [(b.reference, b.qty) for b in batches] == [("b1", 6)]


def test_a_part_taken_out_of_a_collection_without_delete_orphan_lets_go_of_it(
    owned_units: Any,
) -> None:
    make, _engine = owned_units
    _two_desks(make)
    with make() as uow:
        uow.repository(Drawer).add(Drawer(id=2, desk_id=2))
        uow.commit()
    with make() as uow:
        desks = uow.repository(Desk)
        one, two = desks.get(1), desks.get(2)
        first, second = two.drawers
        two.drawers.remove(first)  # let go of: kept, without a desk
        two.drawers.remove(second)
        one.drawers.append(second)  # moved: the new desk's key
        uow.commit()
    with make() as uow:
        drawers = {d.id: d.desk_id for d in uow.repository(Drawer).find()}
        assert drawers == {1: None, 2: 1}


def test_a_label_added_to_a_loaded_root_is_stored(make_sync_uow: Callable[..., Any]) -> None:
    _two_products(make_sync_uow)
    with make_sync_uow() as uow:
        product = uow.repository(ContractProduct).get("S2", load=("batches", "labels"))
        product.labels.add(uow.repository(ContractLabel).get("red"))
        uow.commit()
    with make_sync_uow() as uow:
        product = uow.repository(ContractProduct).get("S2", load="labels")
        assert ([label.name for label in product.labels], product.version) == (["red"], 2)


def test_a_part_of_a_part_changed_alone_bumps_the_root(make_sync_uow: Callable[..., Any]) -> None:
    _two_products(make_sync_uow)
    with make_sync_uow() as uow:
        uow.repository(ContractAllocation).get_by(F("orderid") == "o1").qty = 2
        uow.commit()
    with make_sync_uow() as uow:
        assert uow.repository(ContractProduct).get("S1").version == 2


def test_a_changed_key_wins_over_an_unchanged_many_to_one(
    make_sync_uow: Callable[..., Any],
) -> None:
    _two_products(make_sync_uow)
    with make_sync_uow() as uow:
        batches = uow.repository(ContractBatch)
        first = batches.get_by(F("reference") == "b1")
        assert first.product.sku == "S1"  # loaded, and left as it is
        first.product_sku = "S2"
        second = batches.get_by(F("reference") == "b2")
        second.product = uow.repository(ContractProduct).get("S2")  # the key follows
        uow.commit()
    with make_sync_uow() as uow:
        batches = uow.repository(ContractProduct).get("S2").batches
        assert [batch.reference for batch in batches] == ["b1", "b2"]
