"""The containers: each block wired from its settings, ready to include in yours."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from dependency_injector import containers, providers
from sqlalchemy.orm import sessionmaker

from buttress.di._blocks import CircuitBreakers, RetryPolicy, cache_resource
from buttress.di._engines import async_engine_resource, engine_resource
from buttress.persistence import AsyncSqlAlchemyUnitOfWork, SqlAlchemyUnitOfWork
from buttress.settings import CacheSettings, DatabaseSettings, RedisSettings, ResilienceSettings

if TYPE_CHECKING:
    from collections.abc import Awaitable, Generator

    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

__all__ = [
    "AwaitableContainer",
    "CachingContainer",
    "Container",
    "PersistenceContainer",
    "ResilienceContainer",
]


class _Done:
    """An awaitable with nothing left to do: awaiting it is free, not awaiting it is harmless."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # a generator that finishes at once


class AwaitableContainer(containers.DynamicContainer):
    """A container whose ``init_resources()`` and ``shutdown_resources()`` may always be awaited.

    dependency-injector returns an awaitable from them only while an asyncio
    resource is involved, and ``None`` otherwise, so code that awaits breaks
    when a test overrides the asyncio resources away. Here the synchronous part
    runs at the call, and what is returned can always be awaited (and need not
    be when nothing asynchronous was started). It is the instance type of
    ``Container`` and of Buttress's containers.
    """

    def init_resources(self, *args: Any, **kwargs: Any) -> Awaitable[None]:
        """Start every resource: the synchronous ones now; await the result for the rest."""
        return _awaitable(super().init_resources(*args, **kwargs))

    def shutdown_resources(self, *args: Any, **kwargs: Any) -> Awaitable[None]:
        """Shut every started resource down; await the result for the asyncio ones."""
        return _awaitable(super().shutdown_resources(*args, **kwargs))


def _awaitable(result: Any) -> Awaitable[None]:
    return result if inspect.isawaitable(result) else _Done()


class Container(containers.DeclarativeContainer):
    """Base for your containers: ``await container.shutdown_resources()`` in every state.

    Subclass it instead of ``containers.DeclarativeContainer`` so that
    ``init_resources()`` and ``shutdown_resources()`` are awaitable whether the
    asyncio resources are in use or overridden away by a test: the synchronous
    part runs at the call, and the result can always be awaited. Buttress's own
    containers are built on it.
    """

    instance_type = AwaitableContainer


def _async_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    from sqlalchemy.ext.asyncio import async_sessionmaker  # noqa: PLC0415 - needs greenlet

    return async_sessionmaker(engine)


class PersistenceContainer(Container):
    """Engines, session factories and units of work built from `DatabaseSettings`.

    ``settings`` reads ``BUTTRESS_DATABASE__*`` (override it with your own
    `DatabaseSettings`). The engines are resources: made on first use,
    disposed by ``shutdown_resources()`` (``await`` it when the asyncio engine
    was used). ``unit_of_work`` and ``async_unit_of_work`` give a new unit of
    work on each call; the rest are thread-safe singletons.

    Attributes:
        settings: The `DatabaseSettings`.
        engine: The SQLAlchemy engine (SQLite gets foreign keys turned on).
        session_factory: A ``sessionmaker`` bound to ``engine``.
        unit_of_work: A new `SqlAlchemyUnitOfWork` on each call.
        async_engine: The asyncio engine (``aiosqlite`` or ``psycopg`` for a sync URL).
        async_session_factory: An ``async_sessionmaker`` bound to ``async_engine``.
        async_unit_of_work: A new `AsyncSqlAlchemyUnitOfWork` on each call.
    """

    settings = providers.ThreadSafeSingleton(DatabaseSettings)
    engine = providers.Resource(engine_resource, settings=settings)
    session_factory = providers.ThreadSafeSingleton(sessionmaker, bind=engine)
    unit_of_work = providers.Factory(SqlAlchemyUnitOfWork, session_factory=session_factory)
    async_engine = providers.Resource(async_engine_resource, settings=settings)
    async_session_factory = providers.ThreadSafeSingleton(_async_sessionmaker, engine=async_engine)
    async_unit_of_work = providers.Factory(
        AsyncSqlAlchemyUnitOfWork, session_factory=async_session_factory
    )


class CachingContainer(Container):
    """The cache `CacheSettings` describe: in memory, in Redis, or both (tiered).

    ``settings`` reads ``BUTTRESS_CACHE__*`` and ``redis_settings``
    ``BUTTRESS_REDIS__*``. ``cache`` is a resource: made on first use, its
    Redis clients closed by ``shutdown_resources()``. Pass it to
    `buttress.caching.cached` as a provider (``cached(cache=container.cache)``), so
    it is resolved at the first call and overrides reach it; ``settings.ttl`` is
    the cache's default TTL.

    Attributes:
        settings: The `CacheSettings`.
        redis_settings: The `RedisSettings` (for the ``redis`` and ``tiered`` backends).
        cache: A `MemoryCache`, `RedisCache` or `TieredCache`.
    """

    settings = providers.ThreadSafeSingleton(CacheSettings)
    redis_settings = providers.ThreadSafeSingleton(RedisSettings)
    cache = providers.Resource(cache_resource, settings=settings, redis=redis_settings)


class ResilienceContainer(Container):
    """Named circuit breakers and a retry policy with the defaults of `ResilienceSettings`.

    ``settings`` reads ``BUTTRESS_RESILIENCE__*``. ``breakers`` and ``retry``
    are thread-safe singletons: ``container.breakers()("payments")`` is the
    same breaker everywhere; ``container.retry()(on=TimeoutError)`` a retry
    decorator with the configured attempts and waits.

    Attributes:
        settings: The `ResilienceSettings`.
        breakers: The `CircuitBreakers` registry.
        retry: The `RetryPolicy`.
    """

    settings = providers.ThreadSafeSingleton(ResilienceSettings)
    breakers = providers.ThreadSafeSingleton(CircuitBreakers, settings=settings)
    retry = providers.ThreadSafeSingleton(RetryPolicy, settings=settings)
