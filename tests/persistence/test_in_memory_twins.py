"""What the in-memory twins refuse rather than fake, and their standalone use.

The contract suite proves what they share with SQL; these tests cover what only
the fake must decide: metadata it cannot reproduce raises `ConfigurationError`
when the model is first used (or the value is first needed), never a silent
difference.
"""

from __future__ import annotations

import enum

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

from buttress.domain import F
from buttress.errors import ConfigurationError, ConflictError, NotFoundError, QueryError
from buttress.persistence import (
    AsyncInMemoryRepository,
    InMemoryRepository,
    InMemoryStore,
    InMemoryUnitOfWork,
    SqlAlchemyUnitOfWork,
)
from buttress.testing import ContractLine, ContractOrder, ContractTag


class Base(DeclarativeBase):
    pass


class Dynamic(Base):
    __tablename__ = "memory_dynamic"
    id: Mapped[int] = mapped_column(primary_key=True)
    children: Mapped[list[DynamicChild]] = relationship(lazy="dynamic")


class DynamicChild(Base):
    __tablename__ = "memory_dynamic_child"
    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int] = mapped_column(sa.ForeignKey("memory_dynamic.id"))
    size: Mapped[int] = mapped_column(default=0)


class Custom(Base):
    __tablename__ = "memory_custom"
    id: Mapped[int] = mapped_column(primary_key=True)
    big_children: Mapped[list[DynamicChild]] = relationship(
        primaryjoin="and_(Custom.id == foreign(DynamicChild.parent_id), DynamicChild.size > 10)",
        viewonly=True,
    )


class Stamped(Base):
    __tablename__ = "memory_stamped"
    id: Mapped[int] = mapped_column(primary_key=True)
    created: Mapped[str] = mapped_column(server_default=sa.text("'now'"))


class ServerVersioned(Base):
    __tablename__ = "memory_server_versioned"
    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(server_default=sa.text("1"))
    __mapper_args__ = {"version_id_col": version, "version_id_generator": False}  # noqa: RUF012


class Line(Base):
    """A composite primary key: (order, number)."""

    __tablename__ = "memory_line"
    order: Mapped[str] = mapped_column(primary_key=True)
    number: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    sku: Mapped[str]
    quantity: Mapped[int] = mapped_column(default=lambda: 1)


class Checked(Base):
    __tablename__ = "memory_checked"
    id: Mapped[int] = mapped_column(primary_key=True)
    quantity: Mapped[int]
    __table_args__ = (sa.CheckConstraint("quantity > 0", name="positive"),)


class Cascading(Base):
    __tablename__ = "memory_cascading"
    id: Mapped[int] = mapped_column(primary_key=True)
    line: Mapped[str] = mapped_column(sa.ForeignKey("memory_line.order", ondelete="CASCADE"))


_unmapped = sa.Table(
    "memory_unmapped", Base.metadata, sa.Column("id", sa.Integer, primary_key=True)
)


class Orphan(Base):
    __tablename__ = "memory_orphan"
    id: Mapped[int] = mapped_column(primary_key=True)
    other: Mapped[int] = mapped_column(sa.ForeignKey("memory_unmapped.id"))


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (Dynamic, r"Dynamic\.children: its loader is lazy='dynamic'"),
        (Custom, r"Custom\.big_children: it joins on an expression"),
        (ServerVersioned, "version counter"),
        (Checked, "quantity > 0"),
        (Cascading, "CASCADE"),
        (Orphan, "memory_unmapped"),
    ],
)
def test_models_the_fake_cannot_store_are_refused_up_front(model, reason):
    with InMemoryUnitOfWork() as uow, pytest.raises(ConfigurationError, match=reason):
        uow.repository(model)


def test_a_missing_value_with_a_server_default_is_refused():
    with InMemoryUnitOfWork() as uow:
        stamped = uow.repository(Stamped)
        with pytest.raises(ConfigurationError, match=r"Stamped\.created .* set it before add"):
            stamped.add(refused := Stamped())
        assert refused.id is None  # left as it was
        assert stamped.add(Stamped(created="given")).created == "given"


def test_a_changed_key_is_refused():
    with InMemoryUnitOfWork() as uow:
        order = uow.repository(ContractOrder).add(ContractOrder(ref="a"))
        order.id = 99
        with pytest.raises(ConfigurationError, match="remove it and add a new one"):
            uow.commit()


@pytest.fixture(params=["memory", "sqlite"])
def lines_uow(request, tmp_path):
    if request.param == "memory":
        yield InMemoryUnitOfWork()
        return
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'lines.db'}")
    Base.metadata.create_all(engine, tables=[Line.__table__])
    yield SqlAlchemyUnitOfWork(sessionmaker(engine))
    engine.dispose()


def test_composite_keys_are_tuples(lines_uow):
    with lines_uow as uow:
        lines = uow.repository(Line, tuple[str, int])
        lines.add_many([Line(order="o1", number=2, sku="b"), Line(order="o1", number=1, sku="a")])
        uow.commit()
        assert lines.get(("o1", 1)).quantity == 1  # a Python-side default
        assert [line.sku for line in lines.find()] == ["a", "b"]  # ordered by the whole key
        with pytest.raises(NotFoundError):
            lines.get(("o2", 1))
        for key in ["o1", ("o1",), ("o1", "1"), (1, 1)]:
            with pytest.raises(QueryError):
                lines.get(key)
        with pytest.raises(ConflictError):
            lines.add(Line(order="o1", number=1, sku="again"))


def test_a_standalone_repository_keeps_its_own_data():
    orders = InMemoryRepository(ContractOrder)
    order = orders.add(ContractOrder(ref="a"))
    assert orders.get(order.id) is order
    assert orders.model is ContractOrder
    shared = InMemoryStore()
    assert InMemoryRepository(ContractOrder, store=shared).count() == 0


@pytest.mark.asyncio
async def test_a_standalone_async_repository():
    orders = AsyncInMemoryRepository(ContractOrder, cursor_secret=b"key")
    await orders.add_many([ContractOrder(ref="a"), ContractOrder(ref="b")])
    page = await orders.page(size=1)
    assert [o.ref for o in (await orders.page(size=1, after=page.next_cursor)).items] == ["b"]


def test_units_sharing_a_store_see_each_others_commits():
    store = InMemoryStore()
    writer, reader = InMemoryUnitOfWork(store=store), InMemoryUnitOfWork(store=store)
    assert writer.store is store
    with writer:
        writer.repository(ContractOrder).add(ContractOrder(ref="a"))
        with reader:
            assert reader.repository(ContractOrder).count() == 0  # not committed yet
        writer.commit()
    with reader:
        assert reader.repository(ContractOrder).count() == 1


def test_a_cursor_secret_must_be_text_or_bytes():
    with pytest.raises(ConfigurationError, match="cursor_secret"):
        InMemoryUnitOfWork(cursor_secret=42)  # type: ignore[arg-type]


class Doc(Base):
    __tablename__ = "memory_doc"
    id: Mapped[int] = mapped_column(primary_key=True)
    data: Mapped[dict[str, int]] = mapped_column(sa.JSON)
    touched: Mapped[int] = mapped_column(default=0, onupdate=lambda: 1)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Painted(Base):
    __tablename__ = "memory_painted"
    id: Mapped[int] = mapped_column(primary_key=True)
    color: Mapped[Color]


class LowerEmail(Base):
    __tablename__ = "memory_lower_email"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str]
    __table_args__ = (sa.Index("ix_lower_email", sa.func.lower(sa.column("email")), unique=True),)


@pytest.fixture(params=["memory", "sqlite"])
def docs_uow(request, tmp_path):
    if request.param == "memory":
        yield InMemoryUnitOfWork()
        return
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'docs.db'}")
    Base.metadata.create_all(engine, tables=[Doc.__table__, Painted.__table__])
    yield SqlAlchemyUnitOfWork(sessionmaker(engine))
    engine.dispose()


def test_values_changed_in_place_are_kept_only_by_a_commit(docs_uow):
    data = {"a": 1}
    with docs_uow as uow:
        doc = uow.repository(Doc).add(Doc(data=data))
        uow.commit()
    data["a"] = 2  # the caller's dict is not the stored one
    with docs_uow as uow:
        assert uow.repository(Doc).get(doc.id).data == {"a": 1}
        uow.repository(Doc).get(doc.id).data = {"a": 3}
        uow.rollback()
    with docs_uow as uow:
        assert uow.repository(Doc).get(doc.id).data == {"a": 1}


def test_an_onupdate_default_is_applied_on_update(docs_uow):
    with docs_uow as uow:
        doc = uow.repository(Doc).add(Doc(data={}))
        assert doc.touched == 0
        uow.commit()
        doc.data = {"b": 1}
        uow.commit()
    with docs_uow as uow:
        assert uow.repository(Doc).get(doc.id).touched == 1


def test_an_enum_field_cannot_be_ordered(docs_uow):
    with docs_uow as uow:
        painted = uow.repository(Painted)
        painted.add(Painted(color=Color.RED))
        assert [p.color for p in painted.find(F("color") == Color.RED)] == [Color.RED]
        with pytest.raises(QueryError, match="no order every database agrees on"):
            painted.find(order_by="color")
        with pytest.raises(QueryError, match="no order"):
            painted.find(F("color") > Color.BLUE)


def test_a_unique_index_on_an_expression_is_refused():
    with InMemoryUnitOfWork() as uow, pytest.raises(ConfigurationError, match="ix_lower_email"):
        uow.repository(LowerEmail)


def test_a_reference_is_checked_again_at_commit():
    store = InMemoryStore()
    with InMemoryUnitOfWork(store=store) as setup:
        key = setup.repository(ContractOrder).add(ContractOrder(ref="a")).id
        setup.commit()
    writer, remover = InMemoryUnitOfWork(store=store), InMemoryUnitOfWork(store=store)
    with writer, remover:
        writer.repository(ContractLine).add(ContractLine(order_id=key, sku="x"))
        orders = remover.repository(ContractOrder)
        orders.remove(orders.get(key))
        remover.commit()
        with pytest.raises(ConflictError, match="not stored"):
            writer.commit()


def test_removing_a_row_someone_removed_is_not_an_error_without_a_version():
    store = InMemoryStore()
    with InMemoryUnitOfWork(store=store) as setup:
        setup.repository(ContractTag).add(ContractTag(name="t"))
        setup.commit()
    first, second = InMemoryUnitOfWork(store=store), InMemoryUnitOfWork(store=store)
    with first, second:
        mine = first.repository(ContractTag).get("t")
        theirs = second.repository(ContractTag).get("t")
        second.repository(ContractTag).remove(theirs)
        second.commit()
        first.repository(ContractTag).remove(mine)  # SQL only warns: DELETE matched 0 rows
        first.commit()
        assert first.repository(ContractTag).count() == 0
