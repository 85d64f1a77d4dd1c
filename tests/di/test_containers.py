"""The shipped containers build working units of work, release everything, and take overrides."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
import sqlalchemy as sa
from dependency_injector import containers, providers

from buttress.caching import MemoryCache, RedisCache, TieredCache, cached
from buttress.di import (
    CachingContainer,
    PersistenceContainer,
    ResilienceContainer,
    check,
    override,
)
from buttress.errors import ConfigurationError
from buttress.persistence import (
    AsyncSqlAlchemyUnitOfWork,
    InMemoryUnitOfWork,
    SqlAlchemyUnitOfWork,
)
from buttress.settings import CacheSettings, DatabaseSettings, RedisSettings, ResilienceSettings
from buttress.testing import ContractLine, ContractOrder, contract_metadata, provider_overrides

__all__ = ["provider_overrides"]  # the fixture, imported to be used here


def test_units_of_work_share_the_embedded_database():
    container = PersistenceContainer()
    contract_metadata.create_all(container.engine())
    with container.unit_of_work() as uow:
        assert isinstance(uow, SqlAlchemyUnitOfWork)
        uow.repository(ContractOrder).add(ContractOrder(ref="a"))
        uow.commit()
    with container.unit_of_work() as uow:  # another session, the same in-memory database
        assert uow.repository(ContractOrder).count() == 1
    container.shutdown_resources()


def test_sqlite_engines_enforce_foreign_keys():
    container = PersistenceContainer()
    contract_metadata.create_all(container.engine())
    with container.unit_of_work() as uow, pytest.raises(Exception, match="FOREIGN KEY"):
        uow.repository(ContractLine).add(ContractLine(order_id=404, sku="x"))
    container.shutdown_resources()


def connections_named(postgres_url: str, name: str) -> int:
    admin = sa.create_engine(postgres_url)
    with admin.connect() as connection:
        count = connection.execute(
            sa.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"),
            {"name": name},
        ).scalar_one()
    admin.dispose()
    return int(count)


def test_shutdown_leaves_no_connection_open(postgres_url):
    name = f"buttress-di-{uuid.uuid4().hex[:8]}"
    container = PersistenceContainer()
    container.settings.override(DatabaseSettings(url=f"{postgres_url}?application_name={name}"))
    for _ in range(3):
        with container.unit_of_work() as uow:
            uow.session.execute(sa.text("SELECT 1"))
    assert connections_named(postgres_url, name) == 1  # pooled, kept for the next unit
    container.shutdown_resources()
    assert connections_named(postgres_url, name) == 0


@pytest.mark.asyncio
async def test_async_shutdown_leaves_no_connection_open(postgres_url):
    name = f"buttress-di-{uuid.uuid4().hex[:8]}"
    container = PersistenceContainer()
    container.settings.override(DatabaseSettings(url=f"{postgres_url}?application_name={name}"))
    await container.init_resources()
    uow = await container.async_unit_of_work()
    assert isinstance(uow, AsyncSqlAlchemyUnitOfWork)
    async with uow:
        await uow.session.execute(sa.text("SELECT 1"))
    assert connections_named(postgres_url, name) >= 1
    await container.shutdown_resources()
    assert connections_named(postgres_url, name) == 0


class Service:
    def __init__(self, unit_of_work: object) -> None:
        self.unit_of_work = unit_of_work


class App(containers.DeclarativeContainer):
    persistence = providers.Container(PersistenceContainer)
    unit_of_work = providers.Factory(InMemoryUnitOfWork)
    service = providers.Singleton(Service, unit_of_work=unit_of_work)


def test_override_restores_the_original_even_when_the_block_raises():
    app = App()
    original = app.service()
    fake = InMemoryUnitOfWork()

    def fails_inside() -> None:
        with override(app, unit_of_work=providers.Object(fake)):
            assert app.service().unit_of_work is fake  # the singleton was rebuilt
            raise RuntimeError

    with pytest.raises(RuntimeError):
        fails_inside()
    assert app.service() is original  # the one made before the block comes back
    assert app.service().unit_of_work is not fake


def test_override_wraps_plain_values_and_callables():
    app = App()
    marker = object()
    with override(app, unit_of_work=marker, service=lambda: "made"):
        assert app.unit_of_work() is marker
        assert app.service() == "made"


def test_override_refuses_an_unknown_name():
    with (
        pytest.raises(ConfigurationError, match="has no provider 'unit_of_wrok'"),
        override(App(), unit_of_wrok=None),
    ):
        pass  # pragma: no cover - never entered


SHARED = App()


def test_the_fixture_overrides_for_the_test(provider_overrides):
    provider_overrides(SHARED, unit_of_work=providers.Object("fake"))
    assert SHARED.unit_of_work() == "fake"


def test_the_fixture_restored_the_original_after_the_test_before():
    assert isinstance(SHARED.unit_of_work(), InMemoryUnitOfWork)


def test_the_memory_cache_by_default():
    container = CachingContainer()
    cache = container.cache()
    assert isinstance(cache, MemoryCache)
    assert cache.maxsize == 1024
    container.shutdown_resources()


@pytest.mark.parametrize(("backend", "kind"), [("redis", RedisCache), ("tiered", TieredCache)])
def test_redis_caches_close_their_clients_at_shutdown(redis_url, namespace, backend, kind):
    container = CachingContainer()
    container.settings.override(CacheSettings(backend=backend, namespace=namespace))
    container.redis_settings.override(RedisSettings(url=redis_url))
    cache = container.cache()
    assert isinstance(cache, kind)

    @cached(cache=cache, ttl=5)
    def double(x: int) -> int:
        return 2 * x

    assert double(2) == double(2) == 4
    assert double.stats().hits == 1
    shared = cache if isinstance(cache, RedisCache) else cache.redis
    assert shared._client is not None  # a connection was made
    container.shutdown_resources()
    assert shared._client is None


def test_breakers_are_one_per_name_with_the_settings_defaults():
    container = ResilienceContainer()
    container.settings.override(ResilienceSettings(breaker={"fail_max": 2}))
    breakers = container.breakers()
    assert breakers is container.breakers()  # a singleton
    first, second = (f"di-{uuid.uuid4().hex[:8]}" for _ in range(2))  # names are process-wide
    payments = breakers(first)
    assert breakers(first) is payments
    assert payments.fail_max == 2
    assert breakers(second, reset_timeout=1.0).reset_timeout == 1.0
    with pytest.raises(ConfigurationError, match="made with"):
        breakers(second, reset_timeout=2.0)
    assert {b.name for b in breakers} == {first, second}


def test_the_retry_policy_uses_the_settings_defaults():
    container = ResilienceContainer()
    container.settings.override(ResilienceSettings(retry={"attempts": 2, "wait_initial": 0}))
    calls = []

    @container.retry()(on=ValueError, wait_max=0)
    def flaky() -> str:
        calls.append(1)
        raise ValueError

    with pytest.raises(ValueError):
        flaky()
    assert len(calls) == 2


def test_the_shipped_containers_pass_the_check():
    for container in (PersistenceContainer(), CachingContainer(), ResilienceContainer()):
        check(container)


FAILING_TEST_FILE = """
from dependency_injector import containers, providers
from buttress.testing import provider_overrides

class App(containers.DeclarativeContainer):
    name = providers.Object("real")

APP = App()

def test_fails_while_overridden(provider_overrides):
    provider_overrides(APP, name="fake")
    assert APP.name() == "fake"
    raise AssertionError("the test body fails")

def test_sees_the_original_again():
    assert APP.name() == "real"
"""


def test_the_fixture_restores_providers_after_a_failing_test(tmp_path):
    test_file = tmp_path / "test_failing_override.py"
    test_file.write_text(FAILING_TEST_FILE, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(test_file), "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=120,
    )
    assert "1 failed, 1 passed" in result.stdout, result.stdout
