"""SQLAlchemy engines built from `DatabaseSettings`, as resources a container disposes."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from buttress.errors import ConfigurationError, MissingDependencyError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from sqlalchemy.ext.asyncio import AsyncEngine

    from buttress.settings import DatabaseSettings

__all__ = ["async_engine_resource", "engine_options", "engine_resource"]


_ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "psycopg"}
"""The asyncio driver used for a backend whose URL names a sync-only driver."""

_SYNC_DRIVERS = {"sqlite": "pysqlite", "postgresql": "psycopg"}
"""The sync driver used for a backend whose URL names an asyncio-only driver."""

_ASYNC_CAPABLE = frozenset({"aiosqlite", "psycopg", "asyncpg", "aiomysql", "asyncmy"})
_ASYNC_ONLY = frozenset({"aiosqlite", "asyncpg", "aiomysql", "asyncmy"})

_PACKAGES = {
    "psycopg": ("psycopg", "postgres"),
    "asyncpg": ("asyncpg", "asyncpg"),
    "aiosqlite": ("aiosqlite", "aiosqlite"),
}
"""Driver name to the package it imports and the Buttress extra that installs it."""


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def _driver_for(url: URL, *, asynchronous: bool) -> URL:
    """``url`` with a driver that can serve the engine, or an error naming the fix.

    One URL serves both engines: the asyncio engine swaps a sync-only driver for the
    backend's asyncio one, and the sync engine an asyncio-only driver for its sync
    one. A PostgreSQL URL naming no driver gets psycopg (the ``postgres`` extra)
    unless psycopg2 is installed, which SQLAlchemy would pick.
    """
    backend, driver = url.get_backend_name(), url.get_driver_name()
    if backend == "postgresql" and "+" not in url.drivername and not _installed("psycopg2"):
        driver = "psycopg"
    kind = "asyncio" if asynchronous else "synchronous"
    if asynchronous and driver not in _ASYNC_CAPABLE:
        if backend not in _ASYNC_DRIVERS:
            raise ConfigurationError(
                f"the asyncio engine cannot use the database URL's driver {driver!r} "
                f"({backend}+{driver}://), which has no asyncio support; name an asyncio "
                "driver in BUTTRESS_DATABASE__URL (such as mysql+aiomysql://)"
            )
        driver = _ASYNC_DRIVERS[backend]
    elif not asynchronous and driver in _ASYNC_ONLY:
        if backend not in _SYNC_DRIVERS:
            raise ConfigurationError(
                f"the synchronous engine cannot use the asyncio driver {driver!r} of the "
                f"database URL ({backend}+{driver}://); name a sync driver in "
                "BUTTRESS_DATABASE__URL, or use only the asyncio engine"
            )
        driver = _SYNC_DRIVERS[backend]
    package = _PACKAGES.get(driver)
    if package is not None and not _installed(package[0]):
        raise MissingDependencyError(package[0], package[1], f"The {kind} {backend} engine")
    if asynchronous and not _installed("greenlet"):
        raise MissingDependencyError("greenlet", package[1] if package else "aiosqlite", "asyncio")
    return url.set(drivername=f"{backend}+{driver}")


def engine_options(
    settings: DatabaseSettings, *, asynchronous: bool = False
) -> tuple[str, dict[str, Any]]:
    """The URL and ``create_engine`` options that ``settings`` describe.

    Pool sizes apply to server databases; an in-memory SQLite database is one
    connection shared by every thread (``StaticPool``), so all sessions see the
    same data; timeouts become the driver's connect arguments. For an asyncio
    engine a sync-only driver is swapped for ``aiosqlite`` or ``psycopg``, and for
    the sync engine an asyncio-only one for ``pysqlite`` or ``psycopg``.

    Args:
        settings: The database settings.
        asynchronous: Build options for ``create_async_engine``.

    Returns:
        The URL (with its password) and the keyword arguments for the engine.

    Raises:
        ConfigurationError: The URL's driver cannot serve this kind of engine.
        MissingDependencyError: The driver's package is not installed (it names the extra).
    """
    url = _driver_for(make_url(settings.url.get_secret_value()), asynchronous=asynchronous)
    backend, driver = url.get_backend_name(), url.get_driver_name()
    options: dict[str, Any] = {"echo": settings.echo}
    if settings.isolation_level is not None and backend != "sqlite":  # SQLite: serializable
        options["isolation_level"] = settings.isolation_level
    if backend != "sqlite":  # a SQLite connection cannot go stale: no ping per checkout
        options["pool_pre_ping"] = settings.pool_pre_ping
    connect_args: dict[str, Any] = {}
    if backend == "sqlite" and url.database in (None, "", ":memory:"):
        options["poolclass"] = sa.StaticPool
        connect_args["check_same_thread"] = False
    elif backend != "sqlite":
        options.update(
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            pool_timeout=settings.pool_timeout,
        )
        if settings.pool_recycle is not None:
            options["pool_recycle"] = settings.pool_recycle
    if backend == "postgresql":
        timeout_ms = None if settings.statement_timeout is None else settings.statement_timeout
        if driver == "asyncpg":
            connect_args["timeout"] = settings.connect_timeout
            if timeout_ms is not None:
                connect_args["server_settings"] = {"statement_timeout": str(int(timeout_ms * 1000))}
        else:
            connect_args["connect_timeout"] = max(1, round(settings.connect_timeout))
            if timeout_ms is not None:
                connect_args["options"] = f"-c statement_timeout={int(timeout_ms * 1000)}"
    if connect_args:
        options["connect_args"] = connect_args
    return url.render_as_string(hide_password=False), options


def _foreign_keys_on(engine: sa.Engine) -> None:
    """Make SQLite enforce foreign keys on every connection, as PostgreSQL always does."""
    if engine.dialect.name != "sqlite":
        return

    @sa.event.listens_for(engine, "connect")
    def _on_connect(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def engine_resource(settings: DatabaseSettings) -> Iterator[sa.Engine]:
    """An engine for ``settings``, disposed (every pooled connection closed) at shutdown.

    Yields:
        The engine.
    """
    url, options = engine_options(settings)
    engine = sa.create_engine(url, **options)
    _foreign_keys_on(engine)
    try:
        yield engine
    finally:
        engine.dispose()


async def async_engine_resource(settings: DatabaseSettings) -> AsyncIterator[AsyncEngine]:
    """An asyncio engine for ``settings``, disposed at shutdown (``await``).

    Yields:
        The engine.
    """
    from sqlalchemy.ext.asyncio import create_async_engine  # noqa: PLC0415 - needs greenlet

    url, options = engine_options(settings, asynchronous=True)
    engine = create_async_engine(url, **options)
    _foreign_keys_on(engine.sync_engine)
    try:
        yield engine
    finally:
        await engine.dispose()
