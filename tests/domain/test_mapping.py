"""Domain primitives mapped by SQLAlchemy, declaratively and imperatively, on every backend."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    MappedAsDataclass,
    Session,
    mapped_column,
    registry,
)

from buttress.domain import AggregateRoot, DomainEvent, Entity


class ItemAdded(DomainEvent):
    sku: str


class DataclassBase(MappedAsDataclass, DeclarativeBase):
    pass


class RootFirstCart(AggregateRoot, DataclassBase):
    """The aggregate base first, as the docs recommend."""

    __tablename__ = "root_first_cart"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str]

    def add(self, sku: str) -> None:
        self.record_event(ItemAdded(sku=sku))


class BaseFirstCart(DataclassBase, AggregateRoot):
    """The declarative base first: the dataclass __eq__ must not win."""

    __tablename__ = "base_first_cart"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str]

    def add(self, sku: str) -> None:
        self.record_event(ItemAdded(sku=sku))


class PlainBase(DeclarativeBase):
    pass


class DeclarativeCart(PlainBase, AggregateRoot):
    __tablename__ = "declarative_cart"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(sa.String(50))

    def add(self, sku: str) -> None:
        self.record_event(ItemAdded(sku=sku))


# The cosmicpython style: a plain domain class, mapped imperatively elsewhere.
@dataclass(eq=True)
class Basket(AggregateRoot):
    id: int
    owner: str
    notes: list[str] = field(default_factory=list)

    def add(self, sku: str) -> None:
        self.record_event(ItemAdded(sku=sku))


imperative = registry()
basket_table = sa.Table(
    "imperative_basket",
    imperative.metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("owner", sa.String(50), nullable=False),
)
imperative.map_imperatively(Basket, basket_table)

DECLARATIVE = [RootFirstCart, BaseFirstCart, DeclarativeCart]
ALL_KINDS = [*DECLARATIVE, Basket]


@pytest.fixture
def tables(engine: sa.Engine):
    metadatas = [DataclassBase.metadata, PlainBase.metadata, imperative.metadata]
    for metadata in metadatas:
        metadata.create_all(engine)
    yield engine
    for metadata in metadatas:
        metadata.drop_all(engine)


def make(kind: type[AggregateRoot], key: int, owner: str) -> AggregateRoot:
    return kind(id=key, owner=owner)  # type: ignore[call-arg]


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.__name__)
def test_mapped_aggregates_compare_by_key_not_by_values(kind: type[AggregateRoot]) -> None:
    assert make(kind, 1, "ada") == make(kind, 1, "grace")
    assert make(kind, 1, "ada") != make(kind, 2, "ada")
    assert hash(make(kind, 1, "ada")) == hash(make(kind, 1, "grace"))
    assert len({make(kind, 1, "ada"), make(kind, 1, "grace")}) == 1


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.__name__)
def test_events_survive_a_load_from_the_database_as_an_empty_list(
    tables: sa.Engine, kind: type[AggregateRoot]
) -> None:
    with Session(tables) as session:
        cart = make(kind, 1, "ada")
        cart.add("sku-1")  # type: ignore[attr-defined]
        session.add(cart)
        session.commit()
        # The instance that recorded the event still holds it after the commit.
        assert [e.sku for e in cart.pull_events()] == ["sku-1"]  # type: ignore[attr-defined]

    with Session(tables) as session:
        loaded = session.get(kind, 1)
        assert loaded is not None
        assert loaded.owner == "ada"  # type: ignore[attr-defined]
        assert loaded.pending_events == ()
        assert loaded.pull_events() == []
        loaded.add("sku-2")  # type: ignore[attr-defined]
        assert [e.sku for e in loaded.pull_events()] == ["sku-2"]  # type: ignore[attr-defined]
        assert loaded.pull_events() == []


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.__name__)
def test_a_loaded_aggregate_equals_the_one_saved(
    tables: sa.Engine, kind: type[AggregateRoot]
) -> None:
    original = make(kind, 7, "ada")
    with Session(tables, expire_on_commit=False) as session:
        session.add(original)
        session.commit()
    with Session(tables) as session:
        loaded = session.get(kind, 7)
        assert loaded == original
        assert loaded is not original
        assert {loaded} == {original}


def test_an_entity_without_a_key_is_only_equal_to_itself_and_cannot_be_hashed(
    tables: sa.Engine,
) -> None:
    first = DeclarativeCart(owner="ada")
    second = DeclarativeCart(owner="ada")
    assert first == first  # noqa: PLR0124 - reflexivity is the point
    assert first != second
    with pytest.raises(TypeError, match="has no id yet"):
        hash(first)
    with Session(tables) as session:
        session.add_all([first, second])
        session.flush()
        # Once the database assigns keys, the entities hash and stay distinct.
        assert len({first, second}) == 2


def test_a_user_defined_eq_in_the_class_body_is_kept() -> None:
    class Tagged(Entity):
        def __init__(self, id: int, tag: str) -> None:  # noqa: A002 - mirrors the column
            self.id = id
            self.tag = tag

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Tagged) and other.tag == self.tag

        __hash__ = Entity.__hash__

    assert Tagged(1, "x") == Tagged(2, "x")

    class Child(Tagged):
        pass

    # A subclass keeps the parent's own __eq__ rather than going back to Entity's.
    assert Child(1, "x") == Child(2, "x")


@pytest.mark.parametrize("kind", DECLARATIVE, ids=lambda k: k.__name__)
def test_expired_and_detached_entities_compare_and_hash_without_a_query(
    tables: sa.Engine, kind: type[AggregateRoot]
) -> None:
    with Session(tables) as session:  # expire_on_commit=True: the default
        saved = make(kind, 3, "ada")
        session.add(saved)
        session.commit()
        statements: list[str] = []

        def record(*args: object) -> None:
            statements.append(str(args[2]))

        sa.event.listen(tables, "before_cursor_execute", record)
        try:
            assert hash(saved) == hash(make(kind, 3, "x"))  # expired, still in the session
            assert saved == make(kind, 3, "x")
        finally:
            sa.event.remove(tables, "before_cursor_execute", record)
        assert statements == []
    # Now detached as well as expired: reading saved.id would raise DetachedInstanceError.
    with Session(tables) as session:
        loaded = session.get(kind, 3)
    assert loaded == saved
    assert {loaded, saved} == {saved}
