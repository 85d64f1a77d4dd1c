"""PostgreSQL URLs that put each driver in a test schema whose contract tables are emptied."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from buttress.testing import contract_metadata


def emptied(postgres_url: str, schema: str, driver: str) -> tuple[str, dict[str, Any]]:
    """The URL of ``driver`` and the connect arguments that put it in ``schema``, emptied."""
    engine = sa.create_engine(postgres_url)
    tables = ", ".join(f'"{schema}"."{table.name}"' for table in contract_metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    url = make_url(postgres_url).set(drivername=f"postgresql+{driver}")
    if driver == "asyncpg":
        return url.render_as_string(hide_password=False), {
            "server_settings": {"search_path": schema}
        }
    return url.render_as_string(hide_password=False), {"options": f"-csearch_path={schema}"}


@contextlib.contextmanager
def schema_holding(postgres_url: str, prefix: str, *metadata: sa.MetaData) -> Iterator[str]:
    """A new schema (named ``prefix`` and a random suffix) holding ``metadata``'s tables.

    Dropped, with everything in it, when the block ends.
    """
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        connection.execute(sa.text(f'SET search_path TO "{schema}"'))
        for tables in metadata:
            tables.create_all(connection)
    try:
        yield schema
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()
