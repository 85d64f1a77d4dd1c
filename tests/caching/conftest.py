"""Fixtures of the caching suite: each cache in turn, def and async def in turn.

`cache` gives a fresh `MemoryCache`, `RedisCache` or `TieredCache` (the last two
on a namespace of their own, marked ``redis``). `flavour` turns a plain function
into itself or an ``async def`` twin with the same signature, and calls either the
matching way (one event loop per test, so async Redis clients live as long as it).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from caching_flavours import Flavour

from buttress.caching import MemoryCache


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest) -> Iterator[Flavour]:
    chosen = Flavour(request.param)
    yield chosen
    chosen.close()


def redis_cache(url: str, **options: Any) -> Any:
    from buttress.caching import RedisCache  # noqa: PLC0415 - needs the redis extra

    return RedisCache(url, namespace=f"test-{uuid.uuid4().hex[:12]}", **options)


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("tiered", marks=pytest.mark.redis),
    ]
)
def cache(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Each cache in turn, empty, on a namespace of its own."""
    if request.param == "memory":
        yield MemoryCache()
        return
    url: str = request.getfixturevalue("redis_url")
    redis = redis_cache(url)
    if request.param == "redis":
        made: Any = redis
    else:
        from buttress.caching import TieredCache  # noqa: PLC0415 - needs the redis extra

        made = TieredCache(redis)
    try:
        yield made
    finally:
        made.clear()
        made.close()
        if made is not redis:
            redis.close()


@pytest.fixture
def cache_kind(cache: Any) -> str:
    return type(cache).__name__
