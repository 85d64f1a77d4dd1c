"""The FastAPI adapters: a unit of work per request, error responses, resources released."""

# No `from __future__ import annotations`: FastAPI reads route annotations at runtime.

import uuid
from typing import Annotated, Any

import pytest
from dependency_injector import containers, providers
from fastapi import Depends, FastAPI

from asgi_client import serving
from buttress.di import PersistenceContainer, ResilienceContainer, override
from buttress.di.fastapi import breaker, install_error_handlers, lifespan, unit_of_work
from buttress.errors import ButtressError
from buttress.persistence import AsyncInMemoryUnitOfWork, InMemoryUnitOfWork
from buttress.settings import DatabaseSettings, ResilienceSettings
from buttress.testing import ContractOrder, contract_metadata


class App(containers.DeclarativeContainer):
    persistence = providers.Container(PersistenceContainer)
    resilience = providers.Container(ResilienceContainer)


def make_app(container: App) -> FastAPI:
    app = FastAPI(lifespan=lifespan(container))
    install_error_handlers(app)
    breaker_name = f"upstream-{uuid.uuid4().hex[:8]}"
    persistence = container.persistence
    AsyncUow = Annotated[Any, Depends(unit_of_work(persistence.async_unit_of_work))]  # noqa: N806
    SyncUow = Annotated[Any, Depends(unit_of_work(persistence.unit_of_work))]  # noqa: N806
    Upstream = Annotated[Any, Depends(breaker(container.resilience.breakers, breaker_name))]  # noqa: N806

    @app.post("/orders/{ref}")
    async def place(ref: str, uow: AsyncUow, commit: bool = True) -> dict[str, Any]:
        order = await uow.repository(ContractOrder).add(ContractOrder(ref=ref, total=10))
        if commit:
            await uow.commit()
        return {"id": order.id, "ref": order.ref}

    @app.get("/orders/{key}")
    def read(key: int, uow: SyncUow) -> dict[str, Any]:
        order = uow.repository(ContractOrder, int).get(key)
        return {"id": order.id, "ref": order.ref}

    @app.get("/upstream")
    async def upstream(protect: Upstream) -> str:
        @protect
        async def call() -> str:
            raise ConnectionError("upstream is down")

        return await call()

    return app


@pytest.fixture
def container(tmp_path):
    container = App()
    container.persistence.settings.override(
        DatabaseSettings(url=f"sqlite:///{tmp_path / 'service.db'}")
    )
    container.resilience.settings.override(ResilienceSettings(breaker={"fail_max": 1}))
    engine = container.persistence.engine()
    contract_metadata.create_all(engine)
    container.persistence.shutdown_resources()
    return container


pytestmark = pytest.mark.asyncio


async def test_create_read_conflict_and_not_found(container):
    async with serving(make_app(container)) as client:
        created = await client.post("/orders/A-1")
        assert created.status_code == 200
        key = created.json()["id"]
        assert (await client.get(f"/orders/{key}")).json() == {"id": key, "ref": "A-1"}
        conflict = await client.post("/orders/A-1")
        assert conflict.status_code == 409
        assert conflict.headers["content-type"] == "application/problem+json"
        assert conflict.json() == {
            "type": "about:blank",
            "title": "Conflict",
            "status": 409,
            "detail": "the ContractOrder conflicts with data already stored",
            "code": "duplicate",
        }
        missing = await client.get("/orders/404")
        assert missing.status_code == 404
        assert missing.json()["code"] == "not_found"
        assert missing.json()["detail"] == "ContractOrder 404 was not found"


async def test_work_the_handler_does_not_commit_is_rolled_back(container):
    async with serving(make_app(container)) as client:
        key = (await client.post("/orders/draft", params={"commit": False})).json()["id"]
        assert (await client.get(f"/orders/{key}")).status_code == 404


async def test_an_open_circuit_is_503_with_retry_after(container):
    async with serving(make_app(container)) as client:
        assert (await client.get("/upstream")).status_code == 500  # the failure, counted
        refused = await client.get("/upstream")
        assert refused.status_code == 503
        assert int(refused.headers["Retry-After"]) >= 1


async def test_the_lifespan_starts_the_resources_before_the_first_request(container):
    async with serving(make_app(container)):
        assert container.persistence.engine.initialized
        assert container.persistence.async_engine.initialized


async def test_the_lifespan_releases_the_engines(container):
    async with serving(make_app(container)) as client:
        await client.post("/orders/A-1")
        await client.get("/orders/1")
        engine = container.persistence.engine()
        async_engine = await container.persistence.async_engine()
        assert engine.pool.checkedin() >= 1
        assert async_engine.pool.checkedin() >= 1
    assert engine.pool.checkedin() == 0  # disposed: no pooled connection left
    assert async_engine.pool.checkedin() == 0


def without(package: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``package`` look not installed (importing it fails, as if it were missing)."""
    monkeypatch.setitem(__import__("sys").modules, package, None)


async def test_the_lifespan_of_a_test_with_in_memory_units_of_work_needs_no_driver(
    container, monkeypatch
):
    without("aiosqlite", monkeypatch)
    container.persistence.settings.override(DatabaseSettings())  # the default: SQLite in memory
    app = make_app(container)
    async with override(
        container.persistence,
        async_unit_of_work=AsyncInMemoryUnitOfWork,
        unit_of_work=InMemoryUnitOfWork,
    ):
        async with serving(app) as client:
            created = await client.post("/orders/A-1")
            assert created.status_code == 200
        assert not container.persistence.async_engine.initialized  # not started: not in use
        assert not container.persistence.engine.initialized


async def test_a_missing_driver_fails_the_start_naming_the_extra(container, monkeypatch):
    without("aiosqlite", monkeypatch)
    with pytest.raises(ButtressError, match=r"install 'buttress\[aiosqlite\]'"):
        async with serving(make_app(container)):
            pass  # pragma: no cover - the start fails
