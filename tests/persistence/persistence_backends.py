"""Sync units of work over a test module's own tables, on every backend.

Imported by name (``from persistence_backends import ...``), not from ``conftest``:
another directory's ``conftest`` module may be the one ``import conftest`` finds.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from buttress.persistence import InMemoryStore, InMemoryUnitOfWork, SqlAlchemyUnitOfWork

POSTGRES = pytest.mark.postgres


def foreign_keys_on(engine: sa.Engine) -> None:
    """Make SQLite enforce foreign keys on every connection, as PostgreSQL does."""

    @sa.event.listens_for(engine, "connect")
    def _on(connection: Any, _record: Any) -> None:
        connection.execute("PRAGMA foreign_keys=ON")


BACKENDS = ["memory", "sqlite", pytest.param("postgres", marks=POSTGRES)]
"""The sync backends of `own_units`, for ``@pytest.fixture(params=BACKENDS)``."""


def own_units(
    request: pytest.FixtureRequest, tmp_path: Any, metadata: sa.MetaData
) -> Iterator[tuple[Callable[..., Any], sa.Engine | None]]:
    """Sync units of work over a test module's own tables, on the backend ``request`` names.

    Yields the factory of units and the engine (None in memory); PostgreSQL gets a
    schema of its own, dropped afterwards.
    """
    if request.param == "memory":
        store = InMemoryStore()
        yield (lambda: InMemoryUnitOfWork(store=store)), None
        return
    schema = None
    if request.param == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'own.db'}")
        foreign_keys_on(engine)  # as PostgreSQL and the in-memory twin enforce them
    else:
        postgres_url = request.getfixturevalue("postgres_url")
        schema = f"own_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(postgres_url)
        with admin.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        admin.dispose()
        engine = sa.create_engine(postgres_url, connect_args={"options": f"-csearch_path={schema}"})
    metadata.create_all(engine)
    factory = sessionmaker(engine)
    yield (lambda: SqlAlchemyUnitOfWork(factory)), engine
    if schema is not None:
        with engine.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()
