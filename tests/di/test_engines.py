"""One database URL serves the sync and the asyncio engine, or says what to write instead."""

from __future__ import annotations

import sys

import pytest
import sqlalchemy as sa
from dependency_injector import providers

from buttress.di import PersistenceContainer, check, override
from buttress.di._engines import engine_options
from buttress.errors import ConfigurationError, MissingDependencyError
from buttress.persistence import AsyncInMemoryUnitOfWork
from buttress.settings import DatabaseSettings
from buttress.testing import ContractOrder, contract_metadata


@pytest.mark.parametrize(
    ("url", "sync", "asynchronous"),
    [
        ("sqlite://", "sqlite+pysqlite", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:///app.db", "sqlite+pysqlite", "sqlite+aiosqlite"),
        ("postgresql://app@db/app", "postgresql+psycopg", "postgresql+psycopg"),
        ("postgresql+psycopg://app@db/app", "postgresql+psycopg", "postgresql+psycopg"),
        ("postgresql+asyncpg://app@db/app", "postgresql+psycopg", "postgresql+asyncpg"),
    ],
)
def test_each_engine_gets_a_driver_that_can_serve_it(url, sync, asynchronous):
    settings = DatabaseSettings(url=url)
    assert engine_options(settings)[0].startswith(f"{sync}://")
    assert engine_options(settings, asynchronous=True)[0].startswith(f"{asynchronous}://")


def test_an_asyncio_driver_in_the_url_still_serves_the_sync_unit_of_work(postgres_url):
    container = PersistenceContainer()
    url = postgres_url.replace("+psycopg", "+asyncpg")
    container.settings.override(providers.Object(DatabaseSettings(url=url)))
    with container.unit_of_work() as uow:  # psycopg underneath, not MissingGreenlet
        assert uow.session.execute(sa.text("SELECT 1")).scalar_one() == 1
    container.shutdown_resources()


def test_a_driver_with_no_asyncio_support_is_refused_for_the_asyncio_engine():
    with pytest.raises(ConfigurationError, match=r"name an asyncio driver .*mysql\+aiomysql"):
        engine_options(DatabaseSettings(url="mysql+pymysql://app@db/app"), asynchronous=True)


def test_an_asyncio_only_driver_of_another_backend_is_refused_for_the_sync_engine():
    with pytest.raises(ConfigurationError, match="name a sync driver"):
        engine_options(DatabaseSettings(url="mysql+aiomysql://app@db/app"))


@pytest.mark.parametrize(
    ("package", "url", "asynchronous", "extra"),
    [
        ("aiosqlite", "sqlite://", True, "aiosqlite"),
        ("psycopg", "postgresql://app@db/app", False, "postgres"),
        ("asyncpg", "postgresql+asyncpg://app@db/app", True, "asyncpg"),
    ],
)
def test_a_driver_that_is_not_installed_names_the_extra(
    monkeypatch, package, url, asynchronous, extra
):
    monkeypatch.setitem(sys.modules, package, None)  # as if it were not installed
    with pytest.raises(MissingDependencyError, match=rf"pip install 'buttress\[{extra}\]'"):
        engine_options(DatabaseSettings(url=url), asynchronous=asynchronous)


def test_check_reports_a_missing_driver_of_an_engine_in_use(monkeypatch):
    monkeypatch.setitem(sys.modules, "aiosqlite", None)
    container = PersistenceContainer()
    with pytest.raises(ConfigurationError) as caught:
        check(container)
    (problem,) = caught.value.problems
    assert problem.startswith("async_engine cannot be built")
    assert "buttress[aiosqlite]" in problem
    with override(container, async_unit_of_work=AsyncInMemoryUnitOfWork):
        check(container)  # the asyncio engine is not in use: nothing to report


def test_sqlite_in_memory_still_works_end_to_end():
    container = PersistenceContainer()
    contract_metadata.create_all(container.engine())
    with container.unit_of_work() as uow:
        uow.repository(ContractOrder).add(ContractOrder(ref="A-1"))
        uow.commit()
    with container.unit_of_work() as uow:
        assert uow.repository(ContractOrder).count() == 1
    container.shutdown_resources()
