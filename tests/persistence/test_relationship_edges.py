"""Edges of relationship loading that the contract suite reaches only in part.

Each test runs on every backend of ``make_sync_uow``: the in-memory twin must
refuse what SQLAlchemy's repositories refuse, with the same message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from buttress.domain import AggregateRoot
from buttress.errors import QueryError
from buttress.testing import ContractProduct
from conftest import BACKENDS, own_units


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
        pytest.raises(QueryError, match="is not a relationship path: name relationships"),
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

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy's spelling


class Box(_Owned):
    """A part without a relationship back to its shelf: only its key names the shelf."""

    __tablename__ = "box"

    id: Mapped[int] = mapped_column(primary_key=True)
    site: Mapped[str | None] = mapped_column(sa.String(20))
    code: Mapped[str | None] = mapped_column(sa.String(20))
    qty: Mapped[int] = mapped_column(default=0)

    __table_args__ = (sa.ForeignKeyConstraint(["site", "code"], ["shelf.site", "shelf.code"]),)


class Crate(AggregateRoot, _Owned):
    """A root whose items name it by a unique label, not by its key."""

    __tablename__ = "crate"

    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(sa.String(20), unique=True)
    version: Mapped[int] = mapped_column(nullable=False)
    items: Mapped[list[Item]] = relationship(cascade="all", order_by="Item.id")

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy's spelling


class Item(_Owned):
    __tablename__ = "item"

    id: Mapped[int] = mapped_column(primary_key=True)
    crate_label: Mapped[str | None] = mapped_column(sa.ForeignKey("crate.label"))
    qty: Mapped[int] = mapped_column(default=0)


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
