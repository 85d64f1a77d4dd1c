"""Fixtures shared by the whole suite: real services and databases.

Tests marked ``postgres`` or ``redis`` need those servers. The URLs come from
``BUTTRESS_TEST_POSTGRES_URL`` and ``BUTTRESS_TEST_REDIS_URL``. Where a server
is unreachable the tests skip with a message saying how to start it, except
under ``CI=true``, where an unreachable server fails them.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

POSTGRES_URL = os.environ.get(
    "BUTTRESS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("BUTTRESS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

HOW_TO_START = {
    "postgres": (
        "start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
        " or point BUTTRESS_TEST_POSTGRES_URL at a server"
    ),
    "redis": (
        'start it with `redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save ""'
        " --appendonly no` or point BUTTRESS_TEST_REDIS_URL at a server"
    ),
}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def require_service(name: str, *, is_reachable: bool, ci: bool) -> None:
    """Skip (or, in CI, fail) the current test when service ``name`` is unreachable."""
    if is_reachable:
        return
    message = f"{name} is not reachable: {HOW_TO_START[name]}"
    if ci:
        pytest.fail(f"{message} (CI=true: a missing service is a failure, not a skip)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    require_service("postgres", is_reachable=reachable(POSTGRES_URL, 5432), ci=in_ci())
    return POSTGRES_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    require_service("redis", is_reachable=reachable(REDIS_URL, 6379), ci=in_ci())
    return REDIS_URL


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a service fixture, so ``-m 'not postgres'`` works."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "postgres_url" in fixtures or "postgres_engine" in fixtures:
            item.add_marker(pytest.mark.postgres)
        if "redis_url" in fixtures:
            item.add_marker(pytest.mark.redis)


@pytest.fixture(scope="session")
def postgres_engine(postgres_url: str) -> Iterator[sa.Engine]:
    """An engine on a schema of its own, dropped at the end of the session."""
    schema = f"buttress_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine = sa.create_engine(postgres_url, connect_args={"options": f"-csearch_path={schema}"})
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> sa.Engine:
    """Each relational backend in turn: SQLite in a file, then PostgreSQL."""
    if request.param == "postgres":
        engine: sa.Engine = request.getfixturevalue("postgres_engine")
        return engine
    path = tmp_path_factory.mktemp("sqlite") / "test.db"
    sqlite = sa.create_engine(f"sqlite+pysqlite:///{path}")
    request.addfinalizer(sqlite.dispose)  # noqa: PT021 - the other branch returns a shared engine
    return sqlite
