"""`cached(cache=container.cache)`: resolved at the first call, overridable, with the settings' TTL.

The documented service pattern decorates functions at import with the
container's cache provider. Nothing may be resolved then (a test's override
comes later), a test's override must reach the function, and the TTL of the
settings applies to functions that give none.
"""

from __future__ import annotations

import time

import pytest
import redis
from dependency_injector import providers

from buttress.caching import MemoryCache, RedisCache, TieredCache, cached
from buttress.di import CachingContainer, override
from buttress.errors import ConfigurationError
from buttress.settings import CacheSettings, RedisSettings


def production_caching(redis_url: str, namespace: str, **cache: object) -> CachingContainer:
    container = CachingContainer()
    container.redis_settings.override(providers.Object(RedisSettings(url=redis_url)))
    settings = CacheSettings(backend="redis", namespace=namespace, **cache)
    container.settings.override(providers.Object(settings))
    return container


def test_the_provider_is_resolved_at_the_first_call_and_overrides_reach_it(redis_url, namespace):
    caching = production_caching(redis_url, namespace)
    calls: list[str] = []

    @cached(cache=caching.cache, ttl=60)  # at import, in the service's module
    def stock(sku: str) -> int:
        calls.append(sku)
        return 7

    assert not caching.cache.initialized  # nothing resolved at decoration
    with override(caching, settings=CacheSettings(backend="memory")):
        assert stock("A") == stock("A") == 7
        assert isinstance(caching.cache(), MemoryCache)
        assert stock.stats().hits == 1
    client = redis.Redis.from_url(redis_url)
    assert list(client.scan_iter(f"{namespace}:*")) == []  # the test never reached Redis

    assert stock("A") == 7  # production: Redis, a cold entry there
    assert calls == ["A", "A"]
    assert len(list(client.scan_iter(f"{namespace}:*.stock:*"))) == 1
    stock.invalidate("A")
    assert stock("A") == 7
    assert calls == ["A", "A", "A"]
    caching.shutdown_resources()


@pytest.mark.asyncio
async def test_an_async_function_awaits_an_async_provider():
    cache = MemoryCache()

    async def provider() -> MemoryCache:
        return cache

    calls = 0

    @cached(cache=provider)
    async def price(sku: str) -> int:
        nonlocal calls
        calls += 1
        return 3

    assert await price("A") == await price("A") == 3
    assert calls == 1
    await price.ainvalidate("A")
    assert await price("A") == 3
    assert calls == 2
    await price.aclear()
    assert price.cache is provider


def test_a_sync_function_on_an_async_provider_is_told_what_to_do():
    async def provider() -> MemoryCache:
        return MemoryCache()  # pragma: no cover - never awaited

    @cached(cache=provider)
    def price(sku: str) -> int:
        return 3  # pragma: no cover - refused before

    with pytest.raises(ConfigurationError, match="asynchronous: call the function"):
        price("A")


def test_a_provider_that_gives_something_else_is_refused_at_the_first_call():
    @cached(cache=lambda: "not a cache")
    def price(sku: str) -> int:
        return 3  # pragma: no cover - refused before

    with pytest.raises(ConfigurationError, match=r"gave 'not a cache', not a MemoryCache"):
        price("A")


def test_something_that_is_neither_a_cache_nor_a_provider_is_refused_at_decoration():
    with pytest.raises(ConfigurationError, match="or a provider"):
        cached(cache=42)  # type: ignore[arg-type]


def test_the_settings_ttl_applies_to_functions_that_give_none(redis_url, namespace):
    caching = production_caching(redis_url, namespace, ttl=30)

    @cached(cache=caching.cache)
    def stock(sku: str) -> int:
        return 7

    @cached(cache=caching.cache, ttl=300)
    def price(sku: str) -> int:
        return 9

    stock("A")
    price("A")
    client = redis.Redis.from_url(redis_url)
    (stock_key,) = client.scan_iter(f"{namespace}:*stock*")
    (price_key,) = client.scan_iter(f"{namespace}:*price*")
    assert 25_000 < client.pttl(stock_key) <= 30_000
    assert 290_000 < client.pttl(price_key) <= 300_000  # an explicit ttl wins
    caching.shutdown_resources()


def test_a_memory_cache_from_settings_expires_entries_after_the_settings_ttl():
    caching = CachingContainer()
    caching.settings.override(providers.Object(CacheSettings(backend="memory", ttl=0.05)))
    calls = 0

    @cached(cache=caching.cache)
    def stock(sku: str) -> int:
        nonlocal calls
        calls += 1
        return 7

    stock("A")
    deadline = time.monotonic() + 5
    while calls == 1 and time.monotonic() < deadline:  # bounded: expires after 0.05 s
        time.sleep(0.02)
        stock("A")
    assert calls == 2


@pytest.mark.parametrize("kind", [MemoryCache, "redis", "tiered"])
def test_default_ttl_must_be_a_positive_number_of_seconds(kind, redis_url):
    def make(default_ttl: object) -> object:
        if kind is MemoryCache:
            return MemoryCache(default_ttl=default_ttl)  # type: ignore[arg-type]
        shared = RedisCache(redis_url)
        if kind == "redis":
            return RedisCache(redis_url, default_ttl=default_ttl)  # type: ignore[arg-type]
        return TieredCache(shared, default_ttl=default_ttl)  # type: ignore[arg-type]

    for bad in (0, -1, float("inf"), float("nan"), "60", True):
        with pytest.raises(ConfigurationError, match="default_ttl must be a positive number"):
            make(bad)
