"""An API fuzzer against the example shop: no 5xx, no undeclared status, nothing off-schema.

Schemathesis generates requests from the shop's OpenAPI schema — valid ones and
ones that break it on purpose — and checks every answer: no server error, a
status and content type the schema declares, a body that matches the declared
schema, invalid input refused and valid input accepted. The run is bounded (a
fixed number of examples per operation, no deadline per example) and repeated on
SQLite with the memory cache and on PostgreSQL with Redis.
"""

import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
import sqlalchemy as sa
from dependency_injector import providers
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from buttress.resilience import isolated_breakers
from buttress.settings import CacheSettings, DatabaseSettings, RedisSettings
from test_example_service import shop_module

EXAMPLES = 150
"""Examples per operation and mode: up to 1 200 requests per backend."""


@pytest.fixture(
    params=[
        "sqlite+memory",
        pytest.param("postgres+redis", marks=[pytest.mark.postgres, pytest.mark.redis]),
    ]
)
def shop_api(request, tmp_path) -> Iterator[Any]:
    shop = shop_module.Shop()
    admin = None
    schema_name = f"shop_fuzz_{uuid.uuid4().hex[:10]}"
    if request.param == "sqlite+memory":
        url = f"sqlite:///{tmp_path / 'shop.db'}"
    else:
        postgres_url = request.getfixturevalue("postgres_url")
        admin = sa.create_engine(postgres_url)
        with admin.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema_name}"'))
        url = f"{postgres_url}?options=-csearch_path%3D{schema_name}"
        namespace = request.getfixturevalue("namespace")
        shop.caching.settings.override(
            providers.Object(CacheSettings(backend="redis", namespace=namespace))
        )
        shop.caching.redis_settings.override(
            providers.Object(RedisSettings(url=request.getfixturevalue("redis_url")))
        )
    shop.persistence.settings.override(providers.Object(DatabaseSettings(url=url)))
    shop_module.Base.metadata.create_all(shop.persistence.engine())
    with isolated_breakers():
        yield schemathesis.openapi.from_asgi("/openapi.json", shop_module.create_app(shop))
    shop.shutdown_resources()
    if admin is not None:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema_name}" CASCADE'))
        admin.dispose()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_shop_answers_every_request_within_its_schema(shop_api, mode):
    operations = [result.ok() for result in shop_api.get_all_operations()]
    assert len(operations) == 4  # products and orders: create and read

    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            derandomize=True,  # the same requests on every run: a failure reproduces
            database=None,
        )
        def answers_within_the_schema(case: Any) -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # the ASGI client's own
                case.call_and_validate()

        answers_within_the_schema()
