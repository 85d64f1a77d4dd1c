"""Units of work over every backend for the bus's scenarios, on the contract tables.

``backend`` (sync: memory, SQLite in a file, PostgreSQL over psycopg) and
``async_backend`` (memory, aiosqlite, asyncpg, async psycopg) make units of work
over one empty database, with or without the outbox (`OUTBOX`), and read the
outbox's rows back; ``make_uow`` and ``make_async_uow`` are their unit factories.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from messaging_backends import INBOX, MESSAGING_METADATA, OUTBOX, Backend
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

from buttress.persistence import (
    AsyncInMemoryUnitOfWork,
    AsyncSqlAlchemyUnitOfWork,
    InMemoryStore,
    InMemoryUnitOfWork,
    SqlAlchemyUnitOfWork,
)
from buttress.testing import contract_metadata
from postgres_schemas import emptied, schema_holding

POSTGRES = pytest.mark.postgres


@pytest.fixture(scope="session")
def messaging_schema(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL schema holding the contract tables, the outbox and the inbox, dropped after."""
    metadata = (contract_metadata, MESSAGING_METADATA)
    with schema_holding(postgres_url, "buttress_messaging", *metadata) as schema:
        yield schema


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
