"""HTTP errors are RFC 9457 problem details: safe for clients, declared in the schema.

A small API over a real database (SQLite file and PostgreSQL) produces each error
a client can cause; the bodies must name no constraint, table, SQL or developer
advice, the full message must reach the log, and the OpenAPI schema must declare
every status with its body and ``Retry-After``.
"""

# No `from __future__ import annotations`: FastAPI reads route annotations at runtime.

import asyncio
import logging
import uuid
from typing import Annotated, Any

import httpx
import pytest
from dependency_injector import providers
from fastapi import Depends, FastAPI

from asgi_client import serving
from buttress.di import Container, PersistenceContainer
from buttress.di.fastapi import PROBLEM_JSON, install_error_handlers, lifespan, unit_of_work
from buttress.errors import ConfigurationError, NotFoundError
from buttress.resilience import CircuitBreaker, bulkhead, isolated_breakers
from buttress.settings import DatabaseSettings
from buttress.testing import ContractOrder, contract_metadata

LEAKS = (
    "constraint",
    "UNIQUE",
    "unique",
    "buttress_contract_order",
    "UPDATE",
    "SELECT",
    "get_or_none",
    "fallback",
    "load the stored",
    "database said",
    "statement",
)


class Api(Container):
    persistence = providers.Container(PersistenceContainer)


class GatewayDownError(Exception):
    pass


def make_api(container: Api) -> FastAPI:
    app = FastAPI(lifespan=lifespan(container))
    install_error_handlers(app, statuses={GatewayDownError: 502, ConnectionError: 503})
    Uow = Annotated[Any, Depends(unit_of_work(container.persistence.async_unit_of_work))]  # noqa: N806
    breaker = CircuitBreaker(f"gateway-{uuid.uuid4().hex[:8]}", fail_max=1, reset_timeout=60)
    gate = asyncio.Event()

    @app.post("/orders/{ref}")
    async def place(ref: str, uow: Uow) -> dict[str, int]:
        order = await uow.repository(ContractOrder).add(ContractOrder(ref=ref))
        await uow.commit()
        return {"id": order.id}

    @app.get("/orders/{key}")
    async def read(key: int, uow: Uow) -> dict[str, Any]:
        return {"ref": (await uow.repository(ContractOrder, int).get(key)).ref}

    @app.get("/orders")
    async def listing(uow: Uow, order_by: str = "id", after: str | None = None) -> list[str]:
        page = await uow.repository(ContractOrder).page(order_by=order_by, size=1, after=after)
        return [order.ref for order in page.items]

    @app.post("/orders/{key}/stale")
    async def stale(key: int) -> dict[str, str]:
        """Two units change one order: the later commit loses."""
        factory = container.persistence.async_unit_of_work
        first, second = await factory(), await factory()
        async with first, second:
            mine = await first.repository(ContractOrder, int).get(key)
            theirs = await second.repository(ContractOrder, int).get(key)
            theirs.total += 1
            await second.commit()
            mine.total += 2
            await first.commit()
        return {"never": "reached"}  # pragma: no cover - the commit raises

    @app.get("/gateway")
    async def gateway() -> str:
        @breaker
        async def call() -> str:
            raise GatewayDownError("502 from upstream 10.0.0.7: auth token expired")

        return await call()

    @app.get("/socket")
    async def socket() -> str:
        raise ConnectionError("connect to 10.0.0.7:443 refused")

    @bulkhead(1)
    async def busy() -> str:
        await gate.wait()
        return "done"

    @app.get("/busy")
    async def crowded() -> str:
        return await busy()

    app.state.gate = gate
    return app


@pytest.fixture(params=["sqlite", "postgresql"])
def api(request, tmp_path) -> Api:
    container = Api()
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'api.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    container.persistence.settings.override(providers.Object(DatabaseSettings(url=url)))
    engine = container.persistence.engine()
    contract_metadata.drop_all(engine)
    contract_metadata.create_all(engine)
    container.persistence.shutdown_resources()
    yield container
    contract_metadata.drop_all(container.persistence.engine())
    container.persistence.shutdown_resources()


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert set(body) == {"type", "title", "status", "detail", "code"}
    assert (body["status"], body["code"], body["type"]) == (status, code, "about:blank")
    for leak in LEAKS:
        assert leak not in body["detail"], body
    return body


@pytest.mark.asyncio
async def test_every_error_a_client_causes_is_a_safe_problem(api, caplog):
    with isolated_breakers(), caplog.at_level(logging.INFO, logger="buttress.di.fastapi"):
        app = make_api(api)
        async with serving(app) as client:
            key = (await client.post("/orders/A-1")).json()["id"]
            duplicate = assert_problem(await client.post("/orders/A-1"), 409, "duplicate")
            assert duplicate["title"] == "Conflict"
            body = assert_problem(
                await client.post(f"/orders/{key}/stale"), 409, "concurrent_update"
            )
            assert body["detail"] == (
                f"ContractOrder {key} was changed by someone else: read it again and retry"
            )
            missing = assert_problem(await client.get("/orders/999"), 404, "not_found")
            assert missing["detail"] == "ContractOrder 999 was not found"
            assert_problem(
                await client.get("/orders", params={"order_by": "nope"}), 400, "invalid_query"
            )
            assert_problem(
                await client.get("/orders", params={"after": "garbage"}), 400, "invalid_cursor"
            )
            assert_problem(await client.get("/gateway"), 502, "gateway_down_error")
            refused = await client.get("/gateway")
            assert_problem(refused, 503, "dependency_unavailable")
            assert 1 <= int(refused.headers["Retry-After"]) <= 60
            assert_problem(await client.get("/socket"), 503, "connection_error")
            waiting = asyncio.create_task(client.get("/busy"))
            await asyncio.sleep(0.05)
            assert_problem(await client.get("/busy"), 503, "overloaded")
            app.state.gate.set()
            assert (await waiting).status_code == 200
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "POST /orders/A-1 answered 409 duplicate" in logged
    assert "10.0.0.7" in logged  # the full message goes to the log, not to the client
    warnings = [
        r for r in caplog.records if r.levelno >= logging.WARNING and "answered" in r.getMessage()
    ]
    assert {r.getMessage().split(" answered ")[1][:3] for r in warnings} <= {"502", "503"}


@pytest.mark.asyncio
async def test_the_schema_declares_every_error_with_its_body_and_retry_after(api):
    app = make_api(api)
    schema = app.openapi()
    problem = schema["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"title", "status", "detail", "code"}
    for path in ("/orders/{ref}", "/orders/{key}", "/orders", "/gateway"):
        for operation in schema["paths"][path].values():
            responses = operation["responses"]
            for status in ("400", "404", "409", "502", "503"):
                body = responses[status]["content"][PROBLEM_JSON]["schema"]
                assert body == {"$ref": "#/components/schemas/Problem"}
            assert "Retry-After" in responses["503"]["headers"]
    assert app.openapi() is schema  # made once


def test_a_status_that_is_not_an_error_is_refused():
    with pytest.raises(ConfigurationError, match="give an HTTP error status, 400 to 599"):
        install_error_handlers(FastAPI(), statuses={GatewayDownError: 200})


@pytest.mark.asyncio
async def test_an_own_error_of_a_buttress_subclass_gets_its_own_status():
    class GoneError(NotFoundError):
        pass

    app = FastAPI()
    install_error_handlers(app, statuses={GoneError: 410})

    @app.get("/old")
    def old() -> None:
        raise GoneError(entity="Page", key="old")

    @app.get("/missing")
    def missing() -> None:
        raise NotFoundError(entity="Page", key="missing")

    async with serving(app) as client:
        gone, absent = await client.get("/old"), await client.get("/missing")
    assert (gone.status_code, gone.json()["code"]) == (410, "gone_error")
    assert (absent.status_code, absent.json()["code"]) == (404, "not_found")
