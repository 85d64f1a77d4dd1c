"""A service's own test suite, on the public API only: the same tests on two wirings.

``production``: the containers as deployed, pointed at PostgreSQL and Redis through
their settings. ``overrides``: the in-memory units of work and a memory cache,
swapped in with the ``provider_overrides`` fixture. Both run the FastAPI lifespan.
Every test gets fresh circuit breakers, so the test that opens the payments
breaker is followed by one that needs it closed.
"""

# No `from __future__ import annotations`: FastAPI reads route annotations at runtime.

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import httpx
import pytest
import sqlalchemy as sa
from dependency_injector import providers
from fastapi import Depends, FastAPI

import asgi_client
from buttress.caching import cached
from buttress.di import CachingContainer, Container, PersistenceContainer, ResilienceContainer
from buttress.di.fastapi import install_error_handlers, lifespan, unit_of_work
from buttress.persistence import AsyncInMemoryUnitOfWork, InMemoryStore, InMemoryUnitOfWork
from buttress.resilience import CircuitBreaker, CircuitState, Policy, resilience_testing
from buttress.settings import CacheSettings, DatabaseSettings, RedisSettings
from buttress.testing import ContractOrder, contract_metadata, fresh_breakers, provider_overrides

__all__ = ["fresh_breakers", "provider_overrides"]  # the fixtures, imported to be used here

BREAKER = "sample-payments"


class Service(Container):
    persistence = providers.Container(PersistenceContainer)
    caching = providers.Container(CachingContainer)
    resilience = providers.Container(ResilienceContainer)


class Gateway:
    def __init__(self) -> None:
        self.down = False
        self.charged: list[int] = []

    def charge(self, key: int) -> str:
        if self.down:
            raise ConnectionError("the payment gateway does not answer")
        self.charged.append(key)
        return f"receipt-{key}"


def make_app(service: Service, gateway: Gateway) -> FastAPI:
    app = FastAPI(lifespan=lifespan(service))
    install_error_handlers(app, statuses={ConnectionError: 503})
    Uow = Annotated[Any, Depends(unit_of_work(service.persistence.async_unit_of_work))]  # noqa: N806
    pay = Policy(
        retry=service.resilience.retry()(on=ConnectionError, attempts=2),
        breaker=service.resilience.breakers()(BREAKER, fail_max=2),
    )(gateway.charge)

    @cached(cache=service.caching.cache, ttl=60)
    async def total_of(key: int) -> int:
        async with await service.persistence.async_unit_of_work() as uow:
            return (await uow.repository(ContractOrder, int).get(key)).total

    @app.post("/orders/{ref}", status_code=201)
    async def place(ref: str, uow: Uow, total: int = 0) -> dict[str, int]:
        order = await uow.repository(ContractOrder).add(ContractOrder(ref=ref, total=total))
        await uow.commit()
        return {"id": order.id}

    @app.get("/orders/{key}/total")
    async def read_total(key: int) -> dict[str, int]:
        return {"total": await total_of(key)}

    @app.post("/orders/{key}/raise")
    async def raise_total(key: int, uow: Uow) -> dict[str, int]:
        order = await uow.repository(ContractOrder, int).get(key)
        order.total += 5
        await uow.commit()
        await total_of.ainvalidate(key)
        return {"total": order.total}

    @app.post("/orders/{key}/pay")
    def pay_order(key: int) -> dict[str, str]:
        return {"receipt": pay(key)}

    return app


@pytest.fixture(autouse=True)
def _every_test_gets_fresh_breakers(fresh_breakers: None) -> None:
    """As a service's own ``conftest.py`` would have it."""


@pytest.fixture(
    params=[
        pytest.param("production", marks=[pytest.mark.postgres, pytest.mark.redis]),
        "overrides",
    ]
)
def service(request: pytest.FixtureRequest, provider_overrides: Any) -> Iterator[Service]:
    service = Service()
    if request.param == "overrides":
        store = InMemoryStore()
        provider_overrides(
            service.persistence,
            unit_of_work=lambda: InMemoryUnitOfWork(store=store),
            async_unit_of_work=lambda: AsyncInMemoryUnitOfWork(store=store),
        )
        provider_overrides(service.caching, settings=CacheSettings(backend="memory"))
        yield service
        return
    postgres_url = request.getfixturevalue("postgres_url")
    schema = f"sample_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(postgres_url)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = f"{postgres_url}?options=-csearch_path%3D{schema}&application_name={schema}"
    service.persistence.settings.override(providers.Object(DatabaseSettings(url=url)))
    namespace = request.getfixturevalue("namespace")
    service.caching.settings.override(
        providers.Object(CacheSettings(backend="redis", namespace=namespace))
    )
    service.caching.redis_settings.override(
        providers.Object(RedisSettings(url=request.getfixturevalue("redis_url")))
    )
    contract_metadata.create_all(service.persistence.engine())
    service.shutdown_resources()
    yield service
    with admin.begin() as connection:
        left = connection.execute(
            sa.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"),
            {"name": schema},
        ).scalar_one()
        connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()
    assert left == 0  # the lifespan closed every connection it opened


@contextlib.asynccontextmanager
async def serving(service: Service, gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client.serving(make_app(service, gateway), "http://sample") as client:
        yield client


pytestmark = pytest.mark.asyncio


async def test_an_order_is_placed_and_its_cached_total_follows_a_change(service):
    async with serving(service, Gateway()) as client:
        key = (await client.post("/orders/S-1", params={"total": 10})).json()["id"]
        assert (await client.get(f"/orders/{key}/total")).json() == {"total": 10}
        assert (await client.get(f"/orders/{key}/total")).json() == {"total": 10}  # a hit
        assert (await client.post(f"/orders/{key}/raise")).json() == {"total": 15}
        assert (await client.get(f"/orders/{key}/total")).json() == {"total": 15}  # not stale


async def test_a_duplicate_and_a_missing_order_are_problems(service):
    async with serving(service, Gateway()) as client:
        await client.post("/orders/S-2")
        duplicate = await client.post("/orders/S-2")
        assert (duplicate.status_code, duplicate.json()["code"]) == (409, "duplicate")
        missing = await client.get("/orders/99999/total")
        assert (missing.status_code, missing.json()["code"]) == (404, "not_found")


async def test_a_gateway_outage_opens_the_payments_breaker(service):
    gateway = Gateway()
    gateway.down = True
    with resilience_testing():
        async with serving(service, gateway) as client:
            key = (await client.post("/orders/S-3")).json()["id"]
            failed = await client.post(f"/orders/{key}/pay")
            assert (failed.status_code, failed.json()["code"]) == (503, "connection_error")
            refused = await client.post(f"/orders/{key}/pay")
            assert (refused.status_code, refused.json()["code"]) == (503, "dependency_unavailable")
            assert int(refused.headers["Retry-After"]) >= 1
    assert CircuitBreaker.registered()[BREAKER].state is CircuitState.OPEN


async def test_the_next_test_pays_through_a_closed_breaker(service):
    gateway = Gateway()
    async with serving(service, gateway) as client:
        key = (await client.post("/orders/S-4")).json()["id"]
        paid = await client.post(f"/orders/{key}/pay")
        assert paid.status_code == 200, paid.text
        assert paid.json() == {"receipt": f"receipt-{key}"}
    assert gateway.charged == [key]
