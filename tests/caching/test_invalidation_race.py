"""A miss in flight never stores a value older than an invalidation made while it ran.

The function reads its source, then is held until the test has written a new
value to the source and invalidated the entry (or its tag, function or cache),
from this process or from another one on the same Redis; the next call must see
the new value. Every cache, def and async def, every kind of invalidation.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from buttress.caching import MemoryCache, RedisCache, TieredCache, cached

KINDS = ["invalidate", "clear", "cache clear", "tags"]


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("tiered", marks=pytest.mark.redis),
        pytest.param("redis, from another process", marks=pytest.mark.redis),
        pytest.param("tiered, from another process", marks=pytest.mark.redis),
    ]
)
def caches(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any]]:
    """``(cache the function uses, cache the invalidation goes through)``."""
    if request.param == "memory":
        memory = MemoryCache()
        yield memory, memory
        return
    url: str = request.getfixturevalue("redis_url")
    namespace = f"race-{uuid.uuid4().hex[:8]}"
    made: list[Any] = []

    def make() -> Any:
        redis = RedisCache(url, namespace=namespace)
        cache = TieredCache(redis, local_ttl=30) if request.param.startswith("tiered") else redis
        made.append(cache)
        return cache

    here = make()
    there = make() if "another process" in request.param else here
    try:
        yield here, there
    finally:
        here.clear()
        for cache in made:
            cache.close()


def invalidation(kind: str, function: Any, twin: Any, cache: Any) -> Any:
    """Make ``kind`` of invalidation of ``function("k")`` through ``twin`` / ``cache``."""
    if kind == "invalidate":
        return twin.invalidate("k")
    if kind == "clear":
        return twin.clear()
    if kind == "cache clear":
        return cache.clear()
    return cache.invalidate_tags("stock")


@pytest.mark.parametrize("kind", KINDS)
def test_a_sync_miss_in_flight_does_not_undo_an_invalidation(
    caches: tuple[Any, Any], kind: str
) -> None:
    here, there = caches
    source = {"k": "old"}
    reading, release = threading.Event(), threading.Event()

    def body(key: str) -> str:
        value = source[key]
        reading.set()
        assert release.wait(timeout=10)
        return value

    read = cached(cache=here, tags=("stock",), name="race.read")(body)
    twin = read if there is here else cached(cache=there, tags=("stock",), name="race.read")(body)
    outcome: list[str] = []
    worker = threading.Thread(target=lambda: outcome.append(read("k")))
    worker.start()
    assert reading.wait(timeout=10)
    source["k"] = "new"
    invalidation(kind, read, twin, there)
    release.set()
    worker.join(timeout=10)
    assert outcome == ["old"]  # the miss returns what it read...
    assert read("k") == "new"  # ... but does not store it over the invalidation
    assert twin("k") == "new"


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_an_async_miss_in_flight_does_not_undo_an_invalidation(
    caches: tuple[Any, Any], kind: str
) -> None:
    here, there = caches
    source = {"k": "old"}
    reading, release = asyncio.Event(), asyncio.Event()

    async def body(key: str) -> str:
        value = source[key]
        reading.set()
        await asyncio.wait_for(release.wait(), timeout=10)
        return value

    read = cached(cache=here, tags=("stock",), name="race.aread")(body)
    twin = read if there is here else cached(cache=there, tags=("stock",), name="race.aread")(body)
    miss = asyncio.create_task(read("k"))
    await asyncio.wait_for(reading.wait(), timeout=10)
    source["k"] = "new"
    if kind == "invalidate":
        await twin.ainvalidate("k")
    elif kind == "clear":
        await twin.aclear()
    elif kind == "cache clear":
        await there.aclear()
    else:
        await there.ainvalidate_tags("stock")
    release.set()
    assert await miss == "old"
    assert await read("k") == "new"
    assert await twin("k") == "new"
    if not isinstance(here, MemoryCache):
        await here.aclose()
        await there.aclose()


def test_a_miss_that_began_after_the_invalidation_stores_its_value(
    caches: tuple[Any, Any],
) -> None:
    here, there = caches
    runs: list[str] = []

    def body(key: str) -> str:
        runs.append(key)
        return key.upper()

    read = cached(cache=here, tags=("stock",), name="race.after")(body)
    twin = read if there is here else cached(cache=there, tags=("stock",), name="race.after")(body)
    twin.invalidate("k")
    there.invalidate_tags("stock")
    assert read("k") == "K"
    assert read("k") == "K"
    assert twin("k") == "K"
    assert runs == ["k"]  # stored once, then hit everywhere
