"""Dependency injection: what a container and the FastAPI adapter add to wiring by hand.

Every row runs on SQLite in memory (one shared connection, ``StaticPool``, as
`PersistenceContainer` sets it up), its engine made before timing.

- ``di.resolve-unit-of-work``: one new `SqlAlchemyUnitOfWork` from a provider,
  the session factory already made (the singleton is built in the untimed first
  call, so every timed call returns it stored). Baseline: dependency-injector
  providers wired by hand, no Buttress provider in between:
  ``providers.Factory(SqlAlchemyUnitOfWork, session_factory=providers.ThreadSafeSingleton(
  sessionmaker, bind=providers.Object(engine)))``; ours:
  ``PersistenceContainer().unit_of_work()``, its engine resource initialised;
  reference: ``SqlAlchemyUnitOfWork(factory)``, the constructor without a
  provider, the floor under both.
- ``di.fastapi-request``: one ``GET /ping`` through a FastAPI application
  driven in process (``httpx.AsyncClient`` over ``httpx.ASGITransport``, on one
  event loop per test, its lifespan entered before timing). The route takes a
  unit of work, entered for the request and left after it (rolled back and
  closed: no statement is sent, the session never connects), and answers
  ``{"status": "ok", "session": "Session"}``; every row's route does the same
  (`answer`). Baseline: dependency-injector's documented FastAPI idiom,
  ``@inject`` with ``Annotated[..., Depends(Provide[HandWired.unit_of_work])]``
  and the container wired to this module, the route entering the unit of work
  itself (``with uow:``); ours: ``Depends(unit_of_work(container.unit_of_work))``
  of `buttress.di.fastapi`, which enters and leaves it, in an application with
  `buttress.di.fastapi.lifespan`; reference: plain FastAPI ``Depends`` of a
  hand-written async generator doing the same (``with SqlAlchemyUnitOfWork(factory)
  as uow: yield uow``). FastAPI runs a sync dependency in its thread pool: the
  ``Provide[...]`` marker is one (its ``__call__`` returns itself, for ``@inject``
  to replace), so the baseline pays a thread hop per request that the async
  generators of the other rows do not; ``extra_info["dependency"]`` (a column of
  the report) says which kind each row's dependency is.

Every test checks what its calls returned: the unit of work's type and engine,
the response's status and body, and that the request's unit of work was left
afterwards and a new one made for the next request, so the smoke run
(``--benchmark-disable``) is a test of the benchmark itself.
"""

# No `from __future__ import annotations`: FastAPI reads route annotations at runtime.

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Any

import httpx
import pytest
import sqlalchemy as sa
from dependency_injector import containers, providers
from dependency_injector.wiring import Provide, inject
from fastapi import Depends, FastAPI
from sqlalchemy.orm import sessionmaker

from buttress.di import PersistenceContainer
from buttress.di.fastapi import lifespan, unit_of_work
from buttress.errors import ConfigurationError
from buttress.persistence import SqlAlchemyUnitOfWork
from buttress.settings import DatabaseSettings

IN_MEMORY = "sqlite+pysqlite:///:memory:"
"""The database of every row."""

REQUEST_ROUNDS = 2000
"""Timed requests of each ``di.fastapi-request`` row: a steady median in about a second."""

REQUEST_WARMUP = 50
"""Untimed requests before them (FastAPI's caches, the thread pool's first thread)."""

ANSWER = {"status": "ok", "session": "Session"}
"""What ``GET /ping`` answers on every row."""


def plain_engine() -> Iterator[sa.Engine]:
    """The engine a hand-wired container makes: SQLite in memory on one shared connection."""
    engine = sa.create_engine(
        IN_MEMORY, poolclass=sa.StaticPool, connect_args={"check_same_thread": False}
    )
    try:
        yield engine
    finally:
        engine.dispose()


class HandWired(containers.DeclarativeContainer):
    """dependency-injector wired by hand: what `PersistenceContainer` does, minus its settings."""

    engine = providers.Resource(plain_engine)
    session_factory = providers.ThreadSafeSingleton(sessionmaker, bind=engine)
    unit_of_work = providers.Factory(SqlAlchemyUnitOfWork, session_factory=session_factory)


@pytest.fixture
def engine() -> Iterator[sa.Engine]:
    yield from plain_engine()


@pytest.fixture
def container() -> Iterator[PersistenceContainer]:
    """Buttress's container on SQLite in memory, its engine resource initialised."""
    container = PersistenceContainer()
    container.settings.override(DatabaseSettings(url=IN_MEMORY))
    container.engine()
    try:
        yield container
    finally:
        container.shutdown_resources()


def check_unit_of_work(uow: Any, engine: sa.Engine) -> None:
    """``uow`` is a new, unentered unit of work whose sessions are bound to ``engine``."""
    assert isinstance(uow, SqlAlchemyUnitOfWork)
    with pytest.raises(ConfigurationError):
        _ = uow.session  # not entered
    with uow:
        assert uow.session.bind is engine


# di.resolve-unit-of-work ------------------------------------------------------------------------


@pytest.mark.benchmark(group="di.resolve-unit-of-work")
class TestResolveUnitOfWork:
    def test_hand_wired_providers(self, baseline, engine):
        provider = providers.Factory(
            SqlAlchemyUnitOfWork,
            session_factory=providers.ThreadSafeSingleton(
                sessionmaker, bind=providers.Object(engine)
            ),
        )
        first = provider()  # builds the session factory, untimed
        uow = baseline(provider)
        assert uow is not first
        check_unit_of_work(uow, engine)

    def test_persistence_container(self, ours, container):
        provider = container.unit_of_work
        first = provider()
        uow = ours(provider)
        assert uow is not first
        check_unit_of_work(uow, container.engine())

    def test_constructor(self, reference, engine):
        factory = sessionmaker(bind=engine)
        uow = reference(SqlAlchemyUnitOfWork, factory)
        check_unit_of_work(uow, engine)


# di.fastapi-request -----------------------------------------------------------------------------


def answer(uow: SqlAlchemyUnitOfWork, seen: dict[str, Any]) -> dict[str, str]:
    """The body of every row's route: it keeps the unit of work, for the checks, and reads it."""
    seen["uow"] = uow
    return {"status": "ok", "session": type(uow.session).__name__}  # raises unless entered


def hand_wired_app(seen: dict[str, Any]) -> FastAPI:
    """The route as dependency-injector's FastAPI guide writes it (wire the container after)."""
    app = FastAPI()

    @app.get("/ping")
    @inject
    async def ping(
        uow: Annotated[SqlAlchemyUnitOfWork, Depends(Provide[HandWired.unit_of_work])],
    ):
        with uow:
            return answer(uow, seen)

    return app


def buttress_app(container: PersistenceContainer, seen: dict[str, Any]) -> FastAPI:
    """The route with Buttress's adapter, in an application with Buttress's lifespan."""
    app = FastAPI(lifespan=lifespan(container))

    @app.get("/ping")
    async def ping(
        uow: Annotated[SqlAlchemyUnitOfWork, Depends(unit_of_work(container.unit_of_work))],
    ):
        return answer(uow, seen)

    return app


def plain_app(engine: sa.Engine, seen: dict[str, Any]) -> FastAPI:
    """The route with plain FastAPI: an async generator dependency written by hand."""
    app = FastAPI()
    factory = sessionmaker(bind=engine)

    async def new_unit_of_work() -> AsyncIterator[SqlAlchemyUnitOfWork]:
        with SqlAlchemyUnitOfWork(factory) as uow:
            yield uow

    @app.get("/ping")
    async def ping(uow: Annotated[SqlAlchemyUnitOfWork, Depends(new_unit_of_work)]):
        return answer(uow, seen)

    return app


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One new event loop per test, closed at teardown; never the thread's current loop."""
    new = asyncio.new_event_loop()
    try:
        yield new
    finally:
        new.run_until_complete(new.shutdown_asyncgens())
        new.run_until_complete(new.shutdown_default_executor())
        new.close()


@contextlib.contextmanager
def serving(
    loop: asyncio.AbstractEventLoop, app: FastAPI
) -> Iterator[Callable[[], httpx.Response]]:
    """A callable making one ``GET /ping`` on ``app`` inside its lifespan, on ``loop``."""
    stack = contextlib.AsyncExitStack()

    async def start() -> httpx.AsyncClient:
        await stack.enter_async_context(app.router.lifespan_context(app))
        transport = httpx.ASGITransport(app=app)
        client = httpx.AsyncClient(transport=transport, base_url="http://bench")
        return await stack.enter_async_context(client)

    client = loop.run_until_complete(start())

    def request() -> httpx.Response:
        return loop.run_until_complete(client.get("/ping"))

    try:
        yield request
    finally:
        loop.run_until_complete(stack.aclose())


def measure_requests(bench: Any, loop: asyncio.AbstractEventLoop, app: FastAPI, seen: dict) -> None:
    """Time ``GET /ping`` on ``app``, then check the answers and the units of work."""
    with serving(loop, app) as request:
        response = bench.pedantic(request, rounds=REQUEST_ROUNDS, warmup_rounds=REQUEST_WARMUP)
        assert response.status_code == 200, response.text
        assert response.json() == ANSWER
        timed = seen["uow"]
        with pytest.raises(ConfigurationError):
            _ = timed.session  # left when the request ended
        assert request().json() == ANSWER
        assert seen["uow"] is not timed  # a new unit of work for each request


@pytest.mark.benchmark(group="di.fastapi-request")
class TestFastapiRequest:
    def test_inject_provide(self, baseline, loop):
        seen: dict[str, Any] = {}
        app = hand_wired_app(seen)
        wired = HandWired()
        wired.wire(modules=[sys.modules[__name__]])
        try:
            wired.engine()
            baseline.extra_info["dependency"] = "sync marker (thread pool)"
            measure_requests(baseline, loop, app, seen)
        finally:
            wired.unwire()
            wired.shutdown_resources()

    def test_buttress_unit_of_work(self, ours, loop, container):
        seen: dict[str, Any] = {}
        ours.extra_info["dependency"] = "async generator"
        measure_requests(ours, loop, buttress_app(container, seen), seen)

    def test_plain_depends(self, reference, loop, engine):
        seen: dict[str, Any] = {}
        reference.extra_info["dependency"] = "async generator"
        measure_requests(reference, loop, plain_app(engine, seen), seen)
