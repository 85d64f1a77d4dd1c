"""Units of work over every backend for the bus's scenarios, on the contract tables.

``backend`` (sync: memory, SQLite in a file, PostgreSQL over psycopg) and
``async_backend`` (memory, aiosqlite, asyncpg, async psycopg) make units of work
over one empty database, with or without the outbox (`OUTBOX`), and read the
outbox's rows back; ``make_uow`` and ``make_async_uow`` are their unit factories.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

from buttress.messaging import Inbox, Outbox
from buttress.persistence import (
    AsyncInMemoryUnitOfWork,
    AsyncSqlAlchemyUnitOfWork,
    InMemoryStore,
    InMemoryUnitOfWork,
    SqlAlchemyUnitOfWork,
)
from buttress.testing import contract_metadata
from postgres_schemas import emptied

POSTGRES = pytest.mark.postgres

MESSAGING_METADATA = sa.MetaData()
OUTBOX = Outbox(MESSAGING_METADATA, table_name="buttress_test_outbox")
INBOX = Inbox(MESSAGING_METADATA, table_name="buttress_test_inbox")


@dataclasses.dataclass
class Backend:
    """Units of work over one database, and what its outbox holds."""

    name: str
    make: Callable[..., Any]
    engine: sa.Engine | None = None  # the sync engine (of an async one too); None in memory
    store: InMemoryStore | None = None

    def uow(self, *, outbox: bool = False) -> Any:
        return self.make(outbox=OUTBOX) if outbox else self.make()

    def outbox_rows(self) -> list[dict[str, Any]]:
        if self.store is not None:
            return self.store.outbox_rows(OUTBOX.table.name)
        assert self.engine is not None
        with self.engine.connect() as connection:
            statement = sa.select(OUTBOX.table).order_by(OUTBOX.table.c.id)
            return [dict(row._mapping) for row in connection.execute(statement)]


@pytest.fixture(scope="session")
def messaging_schema(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL schema holding the contract tables, the outbox and the inbox, dropped after."""
    schema = f"buttress_messaging_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        connection.execute(sa.text(f'SET search_path TO "{schema}"'))
        contract_metadata.create_all(connection)
        MESSAGING_METADATA.create_all(connection)
    try:
        yield schema
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def _postgres(request: pytest.FixtureRequest, driver: str) -> tuple[str, dict[str, Any], str]:
    schema = request.getfixturevalue("messaging_schema")
    postgres_url = request.getfixturevalue("postgres_url")
    url, connect_args = emptied(postgres_url, schema, driver)
    admin = sa.create_engine(postgres_url)
    with admin.begin() as connection:
        for table in (OUTBOX.table, INBOX.table):
            connection.execute(sa.text(f'TRUNCATE "{schema}"."{table.name}"'))
    admin.dispose()
    return url, connect_args, schema


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=POSTGRES)])
def backend(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Backend]:
    if request.param == "memory":
        store = InMemoryStore()
        yield Backend(
            "memory", lambda **options: InMemoryUnitOfWork(store=store, **options), store=store
        )
        return
    if request.param == "sqlite":
        engine = sa.create_engine(f"sqlite+pysqlite:///{tmp_path / 'bus.db'}")
        contract_metadata.create_all(engine)
        MESSAGING_METADATA.create_all(engine)
    else:
        url, connect_args, _ = _postgres(request, "psycopg")
        engine = sa.create_engine(url, connect_args=connect_args)
    factory = sessionmaker(engine)
    yield Backend(request.param, lambda **options: SqlAlchemyUnitOfWork(factory, **options), engine)
    engine.dispose()


@pytest.fixture
def make_uow(backend: Backend) -> Callable[[], Any]:
    return backend.uow


@pytest_asyncio.fixture(
    params=[
        "memory",
        "aiosqlite",
        pytest.param("asyncpg", marks=POSTGRES),
        pytest.param("psycopg", marks=POSTGRES),
    ]
)
async def async_backend(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Backend]:
    if request.param == "memory":
        store = InMemoryStore()
        yield Backend(
            "memory", lambda **options: AsyncInMemoryUnitOfWork(store=store, **options), store=store
        )
        return
    if request.param == "aiosqlite":
        path = tmp_path / "bus.db"
        sync = sa.create_engine(f"sqlite+pysqlite:///{path}")
        contract_metadata.create_all(sync)
        MESSAGING_METADATA.create_all(sync)
        engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    else:
        url, connect_args, schema = _postgres(request, request.param)
        engine = create_async_engine(url, connect_args=connect_args)
        sync = sa.create_engine(
            request.getfixturevalue("postgres_url"),
            connect_args={"options": f"-csearch_path={schema}"},
        )
    factory = async_sessionmaker(engine)
    yield Backend(
        request.param, lambda **options: AsyncSqlAlchemyUnitOfWork(factory, **options), sync
    )
    await engine.dispose()
    sync.dispose()


@pytest.fixture
def make_async_uow(async_backend: Backend) -> Callable[[], Any]:
    return async_backend.uow
