"""`override` reaches everything built from what it replaces, and one await rule holds.

A service's test overrides settings after production wiring has already built
its engine, session factory, cache and its own singletons: the block must get
new ones made from the test's settings, and the originals must come back after
it. Async providers are awaited whether or not a test replaced them.
"""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from dependency_injector import containers, providers

from buttress.caching import MemoryCache, RedisCache
from buttress.di import CachingContainer, Container, PersistenceContainer, override
from buttress.errors import ConfigurationError
from buttress.persistence import AsyncInMemoryUnitOfWork, InMemoryUnitOfWork
from buttress.settings import CacheSettings, DatabaseSettings, RedisSettings
from buttress.testing import ContractOrder, contract_metadata


class Orders:
    """A user's service: a singleton holding the unit-of-work factory it was built with."""

    def __init__(self, unit_of_work: providers.Provider[object]) -> None:
        self.unit_of_work = unit_of_work

    def count(self) -> int:
        with self.unit_of_work() as uow:  # type: ignore[attr-defined]
            return int(uow.repository(ContractOrder).count())


class App(containers.DeclarativeContainer):
    persistence = providers.Container(PersistenceContainer)
    caching = providers.Container(CachingContainer)
    orders = providers.Singleton(Orders, unit_of_work=persistence.unit_of_work.provider)
    engine_url = providers.Singleton(lambda engine: str(engine.url), engine=persistence.engine)


def connections_named(postgres_url: str, name: str) -> int:
    admin = sa.create_engine(postgres_url)
    try:
        with admin.connect() as connection:
            query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"
            return int(connection.execute(sa.text(query), {"name": name}).scalar_one())
    finally:
        admin.dispose()


def production(postgres_url: str, name: str) -> App:
    app = App()
    url = f"{postgres_url}?application_name={name}"
    app.persistence.settings.override(providers.Object(DatabaseSettings(url=url)))
    return app


def test_overridden_settings_reach_the_engine_session_factory_and_unit_of_work(postgres_url):
    name = f"buttress-override-{uuid.uuid4().hex[:8]}"
    app = production(postgres_url, name)
    engine, session_factory = app.persistence.engine(), app.persistence.session_factory()
    assert engine.dialect.name == "postgresql"

    with override(app.persistence, settings=DatabaseSettings(url="sqlite://")):
        assert app.persistence.engine().dialect.name == "sqlite"
        assert app.persistence.session_factory().kw["bind"] is app.persistence.engine()
        contract_metadata.create_all(app.persistence.engine())
        with app.persistence.unit_of_work() as uow:
            uow.repository(ContractOrder).add(ContractOrder(ref="only-in-the-test"))
            uow.commit()
        with app.persistence.unit_of_work() as uow:
            assert uow.session.get_bind().dialect.name == "sqlite"
            assert uow.repository(ContractOrder).count() == 1
        assert app.engine_url().startswith("sqlite")  # the app's own singleton was made anew

    assert app.persistence.engine() is engine  # the originals come back, untouched
    assert app.persistence.session_factory() is session_factory
    assert app.engine_url().startswith("postgresql")
    app.shutdown_resources()
    assert connections_named(postgres_url, name) == 0


def test_a_singleton_made_before_the_block_does_not_leak_into_it():
    app = App()
    app.persistence.settings.override(providers.Object(DatabaseSettings(url="sqlite://")))
    contract_metadata.create_all(app.persistence.engine())
    before = app.orders()
    with app.persistence.unit_of_work() as uow:
        uow.repository(ContractOrder).add(ContractOrder(ref="in-sqlite"))
        uow.commit()
    assert before.count() == 1

    with override(app.persistence, unit_of_work=InMemoryUnitOfWork):
        assert app.orders() is not before
        assert app.orders().count() == 0  # in memory, not the SQLite rows
    assert app.orders() is before
    app.shutdown_resources()


def test_nested_overrides_each_get_their_own_engine(tmp_path):
    container = PersistenceContainer()
    outer_url, inner_url = f"sqlite:///{tmp_path}/outer.db", f"sqlite:///{tmp_path}/inner.db"
    with override(container, settings=DatabaseSettings(url=outer_url)):
        outer = container.engine()
        with override(container, settings=DatabaseSettings(url=inner_url)):
            assert container.engine().url.database == f"{tmp_path}/inner.db"
            assert container.session_factory().kw["bind"] is container.engine()
        assert container.engine() is outer
    assert container.engine().url.database != outer.url.database
    container.shutdown_resources()


def test_engines_made_in_the_block_are_disposed_when_it_ends(postgres_url):
    name = f"buttress-override-{uuid.uuid4().hex[:8]}"
    container = PersistenceContainer()
    settings = DatabaseSettings(url=f"{postgres_url}?application_name={name}")
    with override(container, settings=settings):
        with container.engine().connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        assert connections_named(postgres_url, name) == 1  # pooled, open
    assert connections_named(postgres_url, name) == 0


@pytest.mark.asyncio
async def test_async_engines_made_in_the_block_are_disposed_when_it_ends(postgres_url):
    name = f"buttress-override-{uuid.uuid4().hex[:8]}"
    container = PersistenceContainer()
    settings = DatabaseSettings(url=f"{postgres_url}?application_name={name}")
    async with override(container, settings=settings):
        async with (await container.async_engine()).connect() as connection:
            await connection.execute(sa.text("SELECT 1"))
        assert connections_named(postgres_url, name) == 1
    assert connections_named(postgres_url, name) == 0


def test_overridden_cache_settings_reach_the_cache(redis_url, namespace):
    caching = CachingContainer()
    caching.redis_settings.override(providers.Object(RedisSettings(url=redis_url)))
    caching.settings.override(providers.Object(CacheSettings(backend="redis", namespace=namespace)))
    shared = caching.cache()
    assert isinstance(shared, RedisCache)
    with override(caching, settings=CacheSettings(backend="memory")):
        assert isinstance(caching.cache(), MemoryCache)
    assert caching.cache() is shared
    caching.shutdown_resources()


@pytest.mark.asyncio
@pytest.mark.parametrize("replacement", [AsyncInMemoryUnitOfWork, AsyncInMemoryUnitOfWork()])
@pytest.mark.parametrize("resolved_before", [True, False], ids=["resolved-before", "first-use"])
async def test_an_overridden_async_provider_is_awaited_as_in_production(
    replacement, resolved_before
):
    container = PersistenceContainer()
    container.settings.override(providers.Object(DatabaseSettings(url="sqlite://")))
    if resolved_before:
        production_uow = await container.async_unit_of_work()  # production: awaited
        assert production_uow.__class__.__name__ == "AsyncSqlAlchemyUnitOfWork"

    with override(container, async_unit_of_work=replacement):
        uow = await container.async_unit_of_work()  # the same call site under the override
        assert isinstance(uow, AsyncInMemoryUnitOfWork)
    await container.shutdown_resources()


@pytest.mark.asyncio
async def test_an_overridden_async_resource_is_awaited_as_in_production():
    container = PersistenceContainer()
    engine = sa.create_engine("sqlite://")
    with override(container, async_engine=engine):
        assert await container.async_engine() is engine
    await container.shutdown_resources()


def test_a_sync_provider_replaced_by_a_plain_value_is_not_made_awaitable():
    container = PersistenceContainer()
    with override(container, unit_of_work=InMemoryUnitOfWork):
        assert isinstance(container.unit_of_work(), InMemoryUnitOfWork)


class MyApp(Container):
    persistence = providers.Container(PersistenceContainer)


@pytest.mark.asyncio
@pytest.mark.parametrize("started", ["nothing", "sync", "async"])
async def test_shutdown_and_init_resources_are_awaitable_in_every_state(started):
    app = MyApp()
    app.persistence.settings.override(providers.Object(DatabaseSettings(url="sqlite://")))
    if started == "sync":
        app.persistence.engine()
    elif started == "async":
        await app.persistence.async_engine()
    await app.shutdown_resources()
    assert not app.persistence.engine.initialized
    assert not app.persistence.async_engine.initialized
    with override(app.persistence, async_engine=sa.create_engine("sqlite://")):
        await app.init_resources()  # the asyncio engine is overridden away: still awaitable
        await app.shutdown_resources()


def test_sync_code_need_not_await_the_shutdown():
    container = PersistenceContainer()
    container.settings.override(providers.Object(DatabaseSettings(url="sqlite://")))
    container.engine()
    container.shutdown_resources()  # nothing asynchronous started: done at the call
    assert not container.engine.initialized


def test_the_override_is_reusable_only_once_at_a_time():
    container = PersistenceContainer()
    block = override(container, unit_of_work=InMemoryUnitOfWork)
    with block, pytest.raises(ConfigurationError, match="already active"), block:
        pass
    with block:  # and again after it ended
        assert isinstance(container.unit_of_work(), InMemoryUnitOfWork)
