"""Fixtures shared by the whole suite: real services and databases.

Tests marked ``postgres`` or ``redis`` need those servers. The URLs come from
``BUTTRESS_TEST_POSTGRES_URL`` and ``BUTTRESS_TEST_REDIS_URL``. Where a server
is unreachable the tests skip with a message saying how to start it, except
under ``CI=true``, where an unreachable server fails them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
import sqlalchemy as sa

from service_check import (
    POSTGRES_URL,
    RABBITMQ_URL,
    REDIS_URL,
    in_ci,
    reachable,
    require_service,
)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    require_service("postgres", is_reachable=reachable(POSTGRES_URL, 5432), ci=in_ci())
    return POSTGRES_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    require_service("redis", is_reachable=reachable(REDIS_URL, 6379), ci=in_ci())
    return REDIS_URL


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    require_service("rabbitmq", is_reachable=reachable(RABBITMQ_URL, 5672), ci=in_ci())
    return RABBITMQ_URL


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a service fixture, so ``-m 'not postgres'`` works."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "postgres_url" in fixtures or "postgres_engine" in fixtures:
            item.add_marker(pytest.mark.postgres)
        if "redis_url" in fixtures:
            item.add_marker(pytest.mark.redis)
        if "rabbitmq_url" in fixtures:
            item.add_marker(pytest.mark.rabbitmq)


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


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    """A Redis key prefix of the test's own; its keys are deleted afterwards."""
    name = f"buttress-test-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{name}:*"))
    if keys:
        client.delete(*keys)
    client.close()
