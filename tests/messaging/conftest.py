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
from messaging_backends import (
    MESSAGING_METADATA,
    Backend,
    Case,
    asyncio_backend,
    sync_backend,
)

from buttress.testing import contract_metadata
from postgres_schemas import schema_holding

POSTGRES = pytest.mark.postgres


@pytest.fixture(scope="session")
def messaging_schema(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL schema holding the contract tables, the outbox and the inbox, dropped after."""
    metadata = (contract_metadata, MESSAGING_METADATA)
    with schema_holding(postgres_url, "buttress_messaging", *metadata) as schema:
        yield schema


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=POSTGRES)])
def backend(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Backend]:
    yield from sync_backend(request.param, request, tmp_path)


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
    async for backend in asyncio_backend(request.param, request, tmp_path):
        yield backend


@pytest.fixture
def make_async_uow(async_backend: Backend) -> Callable[[], Any]:
    return async_backend.uow


POSTGRES = pytest.mark.postgres
CASES = [
    pytest.param(("sync", "memory"), id="sync-memory"),
    pytest.param(("sync", "sqlite"), id="sync-sqlite"),
    pytest.param(("sync", "postgres"), id="sync-postgres", marks=POSTGRES),
    pytest.param(("async", "memory"), id="async-memory"),
    pytest.param(("async", "aiosqlite"), id="async-aiosqlite"),
    pytest.param(("async", "asyncpg"), id="async-asyncpg", marks=POSTGRES),
    pytest.param(("async", "psycopg"), id="async-psycopg", marks=POSTGRES),
]


@pytest_asyncio.fixture(params=CASES)
async def case(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Case]:
    flavour, name = request.param
    if flavour == "sync":
        for backend in sync_backend(name, request, tmp_path):
            yield Case(backend, asynchronous=False)
    else:
        async for backend in asyncio_backend(name, request, tmp_path):
            yield Case(backend, asynchronous=True)
