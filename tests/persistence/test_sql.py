"""What the SQLAlchemy repositories send to the database, and how driver errors come back.

No hidden queries: an entity already loaded is returned without SQL, ``add``
and ``commit`` send the INSERT and nothing else, and entities keep their values
after a commit without a refresh. Driver errors are translated with the
original chained.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from buttress.domain import F
from buttress.errors import (
    ConcurrencyError,
    ConfigurationError,
    ConflictError,
    DecodeError,
    QueryError,
)
from buttress.persistence import InMemoryStore, InMemoryUnitOfWork, SqlAlchemyUnitOfWork
from buttress.testing import ContractOrder, contract_metadata


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


def test_add_and_commit_send_the_insert_and_no_select(database, statements):
    uow = SqlAlchemyUnitOfWork(sessionmaker(database))
    with uow:
        order = uow.repository(ContractOrder).add(ContractOrder(ref="a", total=3))
        uow.commit()
        assert statements == ["INSERT"]
        assert (order.id, order.ref, order.total, order.version) == (1, "a", 3, 1)
    assert statements == ["INSERT"]  # reading after commit and exit did not refresh


def test_get_of_a_loaded_entity_sends_no_sql(database, statements):
    uow = SqlAlchemyUnitOfWork(sessionmaker(database))
    with uow:
        orders = uow.repository(ContractOrder)
        order = orders.add(ContractOrder(ref="a"))  # held: the identity map is weak
        uow.commit()
        statements.clear()
        assert orders.get(order.id) is order
        assert statements == []


def test_get_of_an_entity_not_loaded_sends_one_select(database, statements):
    uow = SqlAlchemyUnitOfWork(sessionmaker(database))
    with uow:
        key = uow.repository(ContractOrder).add(ContractOrder(ref="a")).id
        uow.commit()
    statements.clear()
    with uow:
        assert uow.repository(ContractOrder).get(key).ref == "a"
    assert statements == ["SELECT"]


def test_expire_on_commit_can_be_asked_for(database, statements):
    uow = SqlAlchemyUnitOfWork(sessionmaker(database), expire_on_commit=True)
    with uow:
        order = uow.repository(ContractOrder).add(ContractOrder(ref="a"))
        uow.commit()
        assert order.ref == "a"  # reloaded
    assert statements == ["INSERT", "SELECT"]


def test_a_conflict_chains_the_integrity_error(database):
    uow = SqlAlchemyUnitOfWork(sessionmaker(database))
    with uow:
        orders = uow.repository(ContractOrder)
        orders.add(ContractOrder(ref="a"))
        with pytest.raises(ConflictError, match="ref") as raised:
            orders.add(ContractOrder(ref="a"))
    assert isinstance(raised.value.__cause__, sa.exc.IntegrityError)
    assert raised.value.entity == "ContractOrder"


def test_a_stale_version_chains_the_stale_data_error(database):
    factory = sessionmaker(database)
    with SqlAlchemyUnitOfWork(factory) as uow:
        key = uow.repository(ContractOrder).add(ContractOrder(ref="a")).id
        uow.commit()
    first, second = SqlAlchemyUnitOfWork(factory), SqlAlchemyUnitOfWork(factory)
    with first, second:
        first.repository(ContractOrder).get(key).total = 1
        stale = second.repository(ContractOrder).get(key)
        first.commit()
        stale.total = 2
        with pytest.raises(ConcurrencyError) as raised:
            second.commit()
    assert isinstance(raised.value.__cause__, StaleDataError)


def test_cursors_are_signed_with_the_secret(database):
    sql = SqlAlchemyUnitOfWork(sessionmaker(database), cursor_secret="s3cret")
    store = InMemoryStore()
    units = {
        "same secret": InMemoryUnitOfWork(store=store, cursor_secret="s3cret"),
        "other secret": InMemoryUnitOfWork(store=store, cursor_secret="other"),
        "no secret": InMemoryUnitOfWork(store=store),
    }
    for uow in (sql, units["same secret"]):
        with uow:
            uow.repository(ContractOrder).add_many(ContractOrder(ref=r) for r in "abc")
            uow.commit()
    with sql:
        cursor = sql.repository(ContractOrder).page(size=1).next_cursor
    with units["same secret"] as uow:  # a cursor is not tied to one backend
        assert [o.ref for o in uow.repository(ContractOrder).page(after=cursor).items] == ["b", "c"]
    for name in ("other secret", "no secret"):
        with units[name] as uow, pytest.raises(DecodeError):
            uow.repository(ContractOrder).page(after=cursor)


@pytest.mark.parametrize("order_by", ["total", "-total"])
def test_a_deep_page_seeks_in_the_index(tmp_path, order_by):
    """The keyset filter bounds the first sort field, so SQLite searches the index."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'pages.db'}")
    contract_metadata.create_all(engine)
    with engine.begin() as connection:  # not sa.Index: it would join the shared metadata
        connection.exec_driver_sql(
            "CREATE INDEX ix_order_total ON buttress_contract_order (total, id)"
        )
    uow = SqlAlchemyUnitOfWork(sessionmaker(engine))
    with uow:
        orders = uow.repository(ContractOrder)
        orders.add_many(ContractOrder(ref=f"r{i}", total=i % 7) for i in range(50))
        uow.commit()
        cursor = orders.page(order_by=order_by, size=20).next_cursor
        captured: list[tuple[str, object]] = []

        def capture(_conn, _cursor, statement, parameters, *_args) -> None:
            captured.append((statement, parameters))

        sa.event.listen(engine, "before_cursor_execute", capture)
        orders.page(order_by=order_by, size=20, after=cursor)
        sa.event.remove(engine, "before_cursor_execute", capture)
    [(statement, parameters)] = captured
    with engine.connect() as connection:
        plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
    engine.dispose()
    details = " ".join(str(row[-1]) for row in plan)
    assert "SEARCH" in details
    assert "ix_order_total (total" in details


def test_queries_see_changes_even_from_a_factory_without_autoflush(database):
    uow = SqlAlchemyUnitOfWork(sessionmaker(database, autoflush=False))
    with uow:
        orders = uow.repository(ContractOrder)
        orders.add(ContractOrder(ref="a", total=1)).total = 5
        assert orders.count(F("total") == 5) == 1


@pytest.mark.parametrize("factory", [lambda: None, sessionmaker], ids=["none", "the class"])
def test_a_factory_that_makes_no_sessions_is_refused(factory):
    with pytest.raises(ConfigurationError, match="not a session"), SqlAlchemyUnitOfWork(factory):
        pass  # pragma: no cover - never entered


def test_a_value_postgresql_cannot_hold_is_a_query_error(postgres_engine):
    contract_metadata.create_all(postgres_engine)
    try:
        uow = SqlAlchemyUnitOfWork(sessionmaker(postgres_engine))
        with uow:
            orders = uow.repository(ContractOrder)
            with pytest.raises(QueryError, match="cannot hold") as raised:
                orders.add(ContractOrder(ref="big", total=2**40))  # an INTEGER column
            assert isinstance(raised.value.__cause__, sa.exc.DataError)
            with pytest.raises(QueryError, match="roll it back"):
                orders.count()
    finally:
        contract_metadata.drop_all(postgres_engine)


def test_a_unit_that_commits_as_it_goes_keeps_no_aggregate_alive(database):
    """A batch job's unit holds what it saw only until each commit, as the session does.

    Until its transaction commits, an aggregate the caller let go is held (its
    events must not be lost); after, the unit keeps it no longer than the caller
    does. The in-memory twin holds every object until the unit ends (documented).
    """
    uow = SqlAlchemyUnitOfWork(sessionmaker(database))
    with uow:
        orders = uow.repository(ContractOrder)
        refs = []
        for n in range(3):
            refs.append(weakref.ref(orders.add(ContractOrder(ref=f"b{n}", total=n))))
            gc.collect()
            assert refs[-1]() is not None  # not committed yet: held
            uow.commit()
        gc.collect()
        assert [ref() for ref in refs] == [None, None, None]
        assert len(orders.find()) == 3
