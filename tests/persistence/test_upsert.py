"""What upsert sends to the database, and the cases the contract suite does not reach.

The contract suite proves the semantics on every backend; here: one statement
per upsert, the read-back where the database has no ``RETURNING``, databases
without ``ON CONFLICT``, tables of keys only, and entities expired by a commit.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from persistence_backends import BACKENDS, own_units
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

from buttress.errors import ButtressError, ConfigurationError, ConflictError, QueryError
from buttress.persistence import (
    AsyncSqlAlchemyUnitOfWork,
    InMemoryUnitOfWork,
    SqlAlchemyUnitOfWork,
)
from buttress.testing import ContractSetting, contract_metadata


class _Base(DeclarativeBase):
    metadata = sa.MetaData()


class Pair(_Base):
    """A row that is all key: an upsert has nothing to write over."""

    __tablename__ = "upsert_pair"

    left: Mapped[str] = mapped_column(sa.String(10), primary_key=True)
    right: Mapped[str] = mapped_column(sa.String(10), primary_key=True)


class Shape(_Base):
    __tablename__ = "upsert_shape"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(10))
    __mapper_args__ = {"polymorphic_on": kind, "polymorphic_identity": "shape"}  # noqa: RUF012


class Circle(Shape):
    __mapper_args__ = {"polymorphic_identity": "circle"}  # noqa: RUF012


class Basket(_Base):
    __tablename__ = "upsert_basket"

    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str | None] = mapped_column(sa.String(10))
    items: Mapped[list[Item]] = relationship(back_populates="basket")


class Item(_Base):
    __tablename__ = "upsert_item"

    id: Mapped[int] = mapped_column(primary_key=True)
    basket_id: Mapped[int | None] = mapped_column(sa.ForeignKey(Basket.id))
    basket: Mapped[Basket | None] = relationship(back_populates="items")


@pytest.fixture
def database(engine: sa.Engine) -> Iterator[sa.Engine]:
    contract_metadata.drop_all(engine)
    contract_metadata.create_all(engine)
    yield engine
    contract_metadata.drop_all(engine)


@pytest.fixture
def statements(database: sa.Engine) -> Iterator[list[str]]:
    """The SQL statements the engine executes from now on (first word, upper case)."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        seen.append(statement.split()[0].upper())

    sa.event.listen(database, "before_cursor_execute", record)
    yield seen
    sa.event.remove(database, "before_cursor_execute", record)


def test_an_upsert_is_one_statement_that_returns_the_row(database, statements):
    uow = SqlAlchemyUnitOfWork(sessionmaker(database))
    with uow:
        settings = uow.repository(ContractSetting)
        inserted = settings.upsert(ContractSetting(name="a", value="x"))
        assert statements == ["INSERT"]
        assert settings.upsert(ContractSetting(name="a", value="y")) is inserted
        assert statements == ["INSERT", "INSERT"]
        assert (inserted.value, inserted.priority, inserted.changed) == ("y", 5, True)
        assert settings.get("a") is inserted
        assert statements == ["INSERT", "INSERT"]
        uow.commit()


def test_without_returning_the_row_is_read_back(database, statements, monkeypatch):
    monkeypatch.setattr(database.dialect, "insert_returning", False)  # SQLite before 3.35
    uow = SqlAlchemyUnitOfWork(sessionmaker(database))
    with uow:
        settings = uow.repository(ContractSetting)
        loaded = settings.add(ContractSetting(name="a", value="x"))
        statements.clear()
        assert settings.upsert(ContractSetting(name="a", value="y")) is loaded
        assert statements == ["INSERT", "SELECT"]
        assert (loaded.value, loaded.changed) == ("y", True)


def test_a_conflict_chains_the_integrity_error(database):
    uow = SqlAlchemyUnitOfWork(sessionmaker(database))
    with uow:
        settings = uow.repository(ContractSetting)
        settings.add(ContractSetting(name="a", code="A"))
        with pytest.raises(ConflictError) as raised:
            settings.upsert(ContractSetting(name="b", code="A"))
    assert isinstance(raised.value.__cause__, sa.exc.IntegrityError)
    assert raised.value.entity == "ContractSetting"


def test_a_database_without_on_conflict_is_refused(tmp_path, monkeypatch):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    contract_metadata.create_all(engine)
    monkeypatch.setattr(engine.dialect, "name", "mssql")
    uow = SqlAlchemyUnitOfWork(sessionmaker(engine))
    with uow, pytest.raises(ConfigurationError, match=r"ON CONFLICT.*mssql.*get_or_none"):
        uow.repository(ContractSetting).upsert(ContractSetting(name="a"))
    engine.dispose()


def test_a_model_mapped_with_inheritance_is_refused(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'shapes.db'}")
    _Base.metadata.create_all(engine)
    with SqlAlchemyUnitOfWork(sessionmaker(engine)) as uow:
        for model, entity in ((Circle, Circle(id=1)), (Shape, Shape(id=1))):
            with pytest.raises(ConfigurationError, match="inheritance"):
                uow.repository(model).upsert(entity)
    engine.dispose()


def test_related_entities_an_upsert_would_leave_out_are_refused(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'baskets.db'}")
    _Base.metadata.create_all(engine)
    uow = SqlAlchemyUnitOfWork(sessionmaker(engine))
    with uow:
        baskets, items = uow.repository(Basket), uow.repository(Item)
        with pytest.raises(QueryError, match=r"items would be left out"):
            baskets.upsert(Basket(id=1, items=[Item(id=1)]))
        with pytest.raises(QueryError, match=r"basket would be left out"):
            items.upsert(Item(id=1, basket=Basket(id=1)))
        assert baskets.count() == 0  # refused before any write: the unit goes on
        stored = baskets.upsert(Basket(id=1, label="empty", items=[]))
        loaded = items.upsert(Item(id=1, basket_id=1))
        assert loaded.basket is stored
        stored.label = "full"
        assert baskets.upsert(stored) is stored  # loaded: its items are the unit's to flush
        uow.commit()
    with uow:
        assert [item.id for item in uow.repository(Basket).get(1).items] == [1]
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def pairs(request, tmp_path) -> Iterator[Any]:
    metadata = sa.MetaData()
    Pair.__table__.to_metadata(metadata)
    for units, _engine in own_units(request, tmp_path, metadata):
        yield units


def test_a_row_of_keys_only_is_inserted_once(pairs):
    with pairs() as uow:
        repository = uow.repository(Pair)
        first = repository.upsert(Pair(left="a", right="b"))
        again = repository.upsert(Pair(left="a", right="b"))
        assert again is first
        assert repository.get({"left": "a", "right": "b"}) is first
        assert repository.count() == 1
        uow.commit()
    with pairs() as uow:
        assert [(p.left, p.right) for p in uow.repository(Pair).find()] == [("a", "b")]


@pytest.fixture(params=BACKENDS)
def settings_units(request, tmp_path) -> Iterator[Any]:
    for units, _engine in own_units(request, tmp_path, contract_metadata):
        yield units


def test_an_upsert_over_a_removal_rolled_back_restores_the_removed_entity(settings_units):
    with settings_units() as uow:
        settings = uow.repository(ContractSetting)
        settings.add(ContractSetting(name="a", value="old"))
        uow.commit()
        loaded = settings.get("a")
        settings.remove(loaded)
        again = settings.upsert(ContractSetting(name="a", value="new"))
        assert again is not loaded
        assert (again.value, again.changed) == ("new", False)  # inserted: no onupdate
        uow.rollback()
        assert settings.get("a") is loaded
        assert loaded.value == "old"
        uow.commit()
    with settings_units() as uow:
        assert uow.repository(ContractSetting).get("a").value == "old"


@pytest.mark.asyncio
async def test_an_entity_expired_by_a_commit_is_read_before_its_upsert(tmp_path):
    path = tmp_path / "expired.db"
    contract_metadata.create_all(sync := sa.create_engine(f"sqlite:///{path}"))
    sync.dispose()
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    uow = AsyncSqlAlchemyUnitOfWork(async_sessionmaker(engine), expire_on_commit=True)
    try:
        async with uow:
            settings = uow.repository(ContractSetting)
            loaded = await settings.add(ContractSetting(name="a", value="old", code="A"))
            await uow.commit()  # every attribute of loaded is expired
            assert await settings.upsert(loaded) is loaded
            # its values, read again, are written back: changed=False is a value given
            assert (loaded.value, loaded.code, loaded.changed) == ("old", "A", False)
            await uow.commit()
    finally:
        await engine.dispose()


NAMES = st.sampled_from(["a", "b", "c"])
VALUES = st.sampled_from([None, "x", "y"])
CODES = st.sampled_from([None, "A", "B"])
PRIORITIES = st.sampled_from([None, 1, 9])
FLAGS = st.sampled_from([None, False, True])


def outcome(call: Any) -> Any:
    """What a call returned, or the class of the Buttress error it raised."""
    try:
        return ("ok", call())
    except ButtressError as error:
        return ("error", type(error).__name__)


def _fields(setting: ContractSetting) -> tuple[Any, ...]:
    return (setting.name, setting.value, setting.code, setting.priority, setting.changed)


class UpsertFakeEqualsReal(RuleBasedStateMachine):
    """Upserts mixed with adds, changes, removals, commits and rollbacks, in memory and
    on SQLite: every outcome (values, identity, errors) must match."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.TemporaryDirectory()
        self.engine = sa.create_engine(f"sqlite:///{self.directory.name}/machine.db")
        contract_metadata.create_all(self.engine)
        self.units = [InMemoryUnitOfWork(), SqlAlchemyUnitOfWork(sessionmaker(self.engine))]
        self.kept: list[Any] = []
        for unit in self.units:
            unit.__enter__()

    def both(self, step: Any) -> None:
        memory, sql = (outcome(lambda unit=unit: step(unit)) for unit in self.units)
        assert memory == sql

    @rule(name=NAMES, value=VALUES, code=CODES, priority=PRIORITIES, changed=FLAGS)
    def upsert(self, name: str, value: Any, code: Any, priority: Any, changed: Any) -> None:
        def step(unit: Any) -> Any:
            settings = unit.repository(ContractSetting)
            given = ContractSetting(
                name=name, value=value, code=code, priority=priority, changed=changed
            )
            stored = settings.upsert(given)
            return _fields(stored), stored is settings.get(name), stored is given

        self.both(step)

    @rule(name=NAMES, value=VALUES, code=CODES)
    def add(self, name: str, value: Any, code: Any) -> None:
        self.both(
            lambda unit: _fields(
                unit.repository(ContractSetting).add(
                    ContractSetting(name=name, value=value, code=code)
                )
            )
        )

    @rule(name=NAMES, value=VALUES, code=CODES)
    def change(self, name: str, value: Any, code: Any) -> None:
        def step(unit: Any) -> bool:
            setting = unit.repository(ContractSetting).get_or_none(name)
            if setting is not None:
                setting.value, setting.code = value, code
            return setting is not None

        self.both(step)

    @rule(name=NAMES)
    def upsert_the_loaded_one(self, name: str) -> None:
        def step(unit: Any) -> Any:
            settings = unit.repository(ContractSetting)
            setting = settings.get_or_none(name)
            return None if setting is None else settings.upsert(setting) is setting

        self.both(step)

    @rule(name=NAMES)
    def remove(self, name: str) -> None:
        def step(unit: Any) -> bool:
            settings = unit.repository(ContractSetting)
            setting = settings.get_or_none(name)
            if setting is not None:
                settings.remove(setting)
            return setting is not None

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

    @invariant()
    def same_rows(self) -> None:
        kept: list[Any] = []

        def step(unit: Any) -> list[tuple[Any, ...]]:
            found = unit.repository(ContractSetting).find()
            kept.append(found)
            return [_fields(s) for s in found]

        self.both(step)
        # SQLAlchemy's identity map holds unchanged entities weakly, the twin's strongly:
        # hold every stored one, or whether a later get re-reads (and autoflushes first)
        # would depend on the garbage collector (documented in the twin's guide)
        self.kept = kept

    def teardown(self) -> None:
        for unit in self.units:
            unit.__exit__(None, None, None)
        self.engine.dispose()
        self.directory.cleanup()


UpsertFakeEqualsReal.TestCase.settings = settings(
    max_examples=int(os.environ.get("BUTTRESS_MACHINE_EXAMPLES", "80")),
    stateful_step_count=30,
    deadline=None,
)
test_upserts_in_memory_equal_upserts_on_sqlite = UpsertFakeEqualsReal.TestCase
