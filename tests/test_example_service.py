"""The example shop service, driven through httpx: on SQLite and memory, on PostgreSQL and Redis."""

import contextlib
import importlib.util
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy as sa

from buttress.settings import CacheSettings, DatabaseSettings, RedisSettings, ResilienceSettings

SHOP = Path(__file__).resolve().parents[1] / "examples" / "service" / "shop.py"


def load_shop() -> ModuleType:
    spec = importlib.util.spec_from_file_location("shop_example", SHOP)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["shop_example"] = module
    spec.loader.exec_module(module)
    return module


shop_module = load_shop()


@pytest.fixture(
    params=[
        "sqlite+memory",
        pytest.param("postgres+redis", marks=[pytest.mark.postgres, pytest.mark.redis]),
    ]
)
def container(request, tmp_path) -> Iterator[Any]:
    shop = shop_module.Shop()
    shop.resilience.settings.override(ResilienceSettings(breaker={"fail_max": 1}))
    if request.param == "sqlite+memory":
        shop.persistence.settings.override(
            DatabaseSettings(url=f"sqlite:///{tmp_path / 'shop.db'}")
        )
        yield shop
        return
    postgres_url = request.getfixturevalue("postgres_url")
    schema = f"shop_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(postgres_url)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    shop.persistence.settings.override(
        DatabaseSettings(url=f"{postgres_url}?options=-csearch_path%3D{schema}")
    )
    shop.caching.settings.override(
        CacheSettings(backend="redis", namespace=request.getfixturevalue("namespace"))
    )
    shop.caching.redis_settings.override(RedisSettings(url=request.getfixturevalue("redis_url")))
    yield shop
    with admin.begin() as connection:
        connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@contextlib.asynccontextmanager
async def serving(shop: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = shop_module.create_app(shop)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
            yield client


pytestmark = pytest.mark.asyncio

LAMP = {"sku": "LAMP", "name": "Desk lamp", "price": "19.90", "stock": 3}


async def test_the_lifespan_leaves_no_connection_open(container):
    async with serving(container) as client:
        await client.post("/products", json=LAMP)
        await client.get("/products/LAMP")
        engine = await container.persistence.async_engine()
    assert engine.pool.checkedin() == 0  # the pool was disposed
    settings = container.caching.settings()
    if settings.backend == "redis":
        server = redis.Redis.from_url(container.caching.redis_settings().url.get_secret_value())
        names = [client["name"] for client in server.client_list()]
        server.close()
        assert f"buttress:{settings.namespace}" not in names


async def test_create_and_read_a_product(container):
    async with serving(container) as client:
        created = await client.post("/products", json=LAMP)
        assert created.status_code == 201
        read = await client.get("/products/LAMP")
        assert read.status_code == 200
        assert read.json() == {"sku": "LAMP", "name": "Desk lamp", "price": "19.90", "stock": 3}


async def test_reads_are_cached_and_invalidated_by_an_order(container):
    async with serving(container) as client:
        await client.post("/products", json=LAMP)
        await client.get("/products/LAMP")
        await client.get("/products/LAMP")
        view = client._transport.app.state.product_view
        assert view.stats().hits == 1
        placed = await client.post("/orders", json={"sku": "LAMP", "quantity": 2})
        assert placed.status_code == 201
        assert placed.json()["paid"] is True
        assert (await client.get("/products/LAMP")).json()["stock"] == 1  # not the cached 3


async def test_conflicts_are_409(container):
    async with serving(container) as client:
        await client.post("/products", json=LAMP)
        duplicate = await client.post("/products", json=LAMP)
        assert duplicate.status_code == 409
        too_many = await client.post("/orders", json={"sku": "LAMP", "quantity": 5})
        assert too_many.status_code == 409
        assert "only 3 of LAMP in stock" in too_many.json()["detail"]


async def test_missing_entities_are_404(container):
    async with serving(container) as client:
        assert (await client.get("/products/NOPE")).status_code == 404
        assert (await client.get("/orders/42")).status_code == 404
        assert (
            await client.post("/orders", json={"sku": "NOPE", "quantity": 1})
        ).status_code == 404


async def test_a_payment_gateway_down_is_503_with_retry_after_and_reserves_nothing(container):
    async with serving(container) as client:
        await client.post("/products", json=LAMP)
        container.gateway().down = True
        refused = await client.post("/orders", json={"sku": "LAMP", "quantity": 1})
        assert refused.status_code == 503
        assert int(refused.headers["Retry-After"]) >= 1
        assert (await client.get("/products/LAMP")).json()["stock"] == 3  # rolled back
