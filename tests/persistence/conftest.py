"""Units of work over every backend, on the contract tables, empty for each test.

``make_sync_uow`` and ``make_async_uow`` are parametrised over the backends:
in memory, SQLite in a file, and PostgreSQL (psycopg for sync; asyncpg and
psycopg for asyncio). Each returns a function making units of work over one
database, so a test can run two units against the same rows.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from persistence_backends import BACKENDS, foreign_keys_on, own_units  # noqa: F401 - re-exported
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

from buttress.persistence import (
    AsyncInMemoryUnitOfWork,
    AsyncSqlAlchemyUnitOfWork,
    InMemoryStore,
    InMemoryUnitOfWork,
    SqlAlchemyUnitOfWork,
    _aggregate,
    _links,
    _model,
    _query,
)
from buttress.testing import contract_metadata
from postgres_schemas import emptied, schema_holding

POSTGRES = pytest.mark.postgres

_CACHES: tuple[dict[Any, Any], ...] = (
    _links._LINKS,
    _links._OWNERS,
    _links._LOADS,
    _model._INFOS,
    _aggregate._GUARDED,
    _aggregate._ATTACHING,
    _model._VERSION_NAMES,
    _query._FIELDS,
)
"""What the persistence modules read from a model once and keep for the process."""


@pytest.fixture(autouse=True)
def _fresh_model_caches() -> None:
    """Under mutmut, read every model afresh in each test.

    mutmut runs a mutant against the tests its stats run saw calling the mutated
    function; a function behind a cache is called by the first such test only,
    so every later test relying on its result would be left out. Emptying the
    caches before each test (only when ``MUTANT_UNDER_TEST`` is set) records
    them all, and runs each mutant rather than a result cached before it.
    """
    if "MUTANT_UNDER_TEST" in os.environ:
        for cache in _CACHES:
            cache.clear()


@pytest.fixture(scope="session")
def contract_schema(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL schema holding the contract tables, dropped at the end."""
    with schema_holding(postgres_url, "buttress_contract", contract_metadata) as schema:
        yield schema


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=POSTGRES)])
def make_sync_uow(request: pytest.FixtureRequest, tmp_path) -> Iterator[Callable[..., Any]]:
    if request.param == "memory":
        store = InMemoryStore()
        yield lambda **options: InMemoryUnitOfWork(store=store, **options)
        return
    if request.param == "sqlite":
        engine = sa.create_engine(f"sqlite+pysqlite:///{tmp_path / 'contract.db'}")
        foreign_keys_on(engine)
        contract_metadata.create_all(engine)
    else:
        schema = request.getfixturevalue("contract_schema")
        url, connect_args = emptied(request.getfixturevalue("postgres_url"), schema, "psycopg")
        engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True)
    factory = sessionmaker(engine)
    yield lambda **options: SqlAlchemyUnitOfWork(factory, **options)
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
    request: pytest.FixtureRequest, tmp_path
) -> AsyncIterator[Callable[..., Any]]:
    if request.param == "memory":
        store = InMemoryStore()
        yield lambda **options: AsyncInMemoryUnitOfWork(store=store, **options)
        return
    if request.param == "aiosqlite":
        path = tmp_path / "contract.db"
        contract_metadata.create_all(sync := sa.create_engine(f"sqlite+pysqlite:///{path}"))
        sync.dispose()
        engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
        foreign_keys_on(engine.sync_engine)
    else:
        schema = request.getfixturevalue("contract_schema")
        url, connect_args = emptied(request.getfixturevalue("postgres_url"), schema, request.param)
        engine = create_async_engine(url, connect_args=connect_args, pool_pre_ping=True)
    factory = async_sessionmaker(engine)
    yield lambda **options: AsyncSqlAlchemyUnitOfWork(factory, **options)
    await engine.dispose()
