"""Units of work over every backend for the bus's scenarios, on the contract tables.

``make_uow`` (sync: memory, SQLite in a file, PostgreSQL over psycopg) and
``make_async_uow`` (memory, aiosqlite, asyncpg, async psycopg) each return a
function making units of work over one empty database.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
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
from postgres_schemas import emptied

POSTGRES = pytest.mark.postgres


@pytest.fixture(scope="session")
def messaging_schema(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL schema holding the contract tables, dropped at the end."""
    schema = f"buttress_messaging_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        connection.execute(sa.text(f'SET search_path TO "{schema}"'))
        contract_metadata.create_all(connection)
    try:
        yield schema
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=POSTGRES)])
def make_uow(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Callable[[], Any]]:
    if request.param == "memory":
        store = InMemoryStore()
        yield lambda: InMemoryUnitOfWork(store=store)
        return
    if request.param == "sqlite":
        engine = sa.create_engine(f"sqlite+pysqlite:///{tmp_path / 'bus.db'}")
        contract_metadata.create_all(engine)
    else:
        schema = request.getfixturevalue("messaging_schema")
        url, connect_args = emptied(request.getfixturevalue("postgres_url"), schema, "psycopg")
        engine = sa.create_engine(url, connect_args=connect_args)
    factory = sessionmaker(engine)
    yield lambda: SqlAlchemyUnitOfWork(factory)
    engine.dispose()


@pytest_asyncio.fixture(
    params=[
        "memory",
        "aiosqlite",
        pytest.param("asyncpg", marks=POSTGRES),
        pytest.param("psycopg", marks=POSTGRES),
    ]
)
async def make_async_uow(
    request: pytest.FixtureRequest, tmp_path: Any
) -> AsyncIterator[Callable[[], Any]]:
    if request.param == "memory":
        store = InMemoryStore()
        yield lambda: AsyncInMemoryUnitOfWork(store=store)
        return
    if request.param == "aiosqlite":
        path = tmp_path / "bus.db"
        contract_metadata.create_all(sync := sa.create_engine(f"sqlite+pysqlite:///{path}"))
        sync.dispose()
        engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    else:
        schema = request.getfixturevalue("messaging_schema")
        url, connect_args = emptied(request.getfixturevalue("postgres_url"), schema, request.param)
        engine = create_async_engine(url, connect_args=connect_args)
    factory = async_sessionmaker(engine)
    yield lambda: AsyncSqlAlchemyUnitOfWork(factory)
    await engine.dispose()
