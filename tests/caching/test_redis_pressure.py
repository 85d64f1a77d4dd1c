"""Redis under pressure that is not an outage: a busy pool, and one bad key among good ones.

A pool whose connections are all busy makes callers wait (back-pressure), never
counts as Redis being down; a key holding another Redis type or garbage is that
key's miss alone, replaced on the next write, with one warning.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import redis_server
from buttress.caching import RedisCache, TieredCache, cached
from buttress.caching._backend import MISSING

private_redis = redis_server.private_redis

KEYS = 20


def outage_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "buttress.caching" and record.levelno >= logging.WARNING
    ]


@pytest.fixture
def small_pool_cache(private_redis: redis_server.PrivateRedis) -> Any:
    cache = RedisCache(
        private_redis.url,
        namespace=f"pressure-{uuid.uuid4().hex[:8]}",
        max_connections=8,
        pool_timeout=2.0,
    )
    yield cache
    cache.close()


@pytest.mark.asyncio
async def test_300_async_callers_on_warm_keys_wait_for_connections_and_all_hit(
    private_redis: redis_server.PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    runs: list[int] = []
    cache = RedisCache(private_redis.url, namespace="pressure")  # redis-py's 100 connections

    @cached(cache=cache)
    async def square(x: int) -> int:
        runs.append(x)
        return x * x

    for x in range(KEYS):
        assert await square(x) == x * x
    runs.clear()
    before = square.stats()
    with caplog.at_level(logging.DEBUG, logger="buttress.caching"):
        for _ in range(3):  # bounded: 3 waves of 300 callers
            results = await asyncio.gather(*(square(i % KEYS) for i in range(300)))
            assert results == [(i % KEYS) ** 2 for i in range(300)]
    after = square.stats()
    hits = after.hits - before.hits
    assert hits / 900 >= 0.95, (hits, runs)
    assert not outage_warnings(caplog)
    assert not cache.health.incident
    await cache.aclose()


def test_64_threads_on_warm_keys_wait_for_connections_and_all_hit(
    small_pool_cache: RedisCache, caplog: pytest.LogCaptureFixture
) -> None:
    @cached(cache=small_pool_cache)
    def square(x: int) -> int:
        return x * x

    for x in range(KEYS):
        square(x)
    before = square.stats()
    start = threading.Barrier(64)

    def hammer(worker: int) -> list[int]:
        start.wait(timeout=10)
        return [square((worker + i) % KEYS) for i in range(50)]

    with (
        caplog.at_level(logging.DEBUG, logger="buttress.caching"),
        ThreadPoolExecutor(64) as pool,
    ):
        outcomes = list(pool.map(hammer, range(64)))
    assert outcomes == [[((w + i) % KEYS) ** 2 for i in range(50)] for w in range(64)]
    hits = square.stats().hits - before.hits
    assert hits / (64 * 50) >= 0.95
    assert not outage_warnings(caplog)


def test_a_pool_that_stays_busy_past_pool_timeout_is_a_miss_not_an_outage(
    private_redis: redis_server.PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    cache = RedisCache(private_redis.url, namespace="busy", max_connections=1, pool_timeout=0.05)

    @cached(cache=cache)
    def square(x: int) -> int:
        return x * x

    try:
        assert square(3) == 9
        pool = cache.sync_client().connection_pool
        held = pool.get_connection()  # the one connection, kept busy
        try:
            with caplog.at_level(logging.DEBUG, logger="buttress.caching"):
                assert square(3) == 9  # computed: no connection came free
        finally:
            pool.release(held)
        assert not outage_warnings(caplog)
        assert not cache.health.incident
        assert any("no pooled connection free" in r.getMessage() for r in caplog.records)
        assert square(3) == 9
        assert square.stats().hits == 1  # served from Redis again at once: no pause
    finally:
        cache.close()


@pytest.mark.parametrize("tiered", [False, True], ids=["redis", "tiered"])
@pytest.mark.parametrize("poison", ["hash", "list", "garbage"])
def test_one_bad_key_is_a_miss_for_that_key_alone_and_is_replaced(
    private_redis: redis_server.PrivateRedis,
    caplog: pytest.LogCaptureFixture,
    poison: str,
    tiered: bool,
    flavour: Any,
) -> None:
    namespace = "poison"
    shared = RedisCache(private_redis.url, namespace=namespace)
    cache: Any = TieredCache(shared, local_ttl=0.001) if tiered else shared
    client = private_redis.client()
    runs: list[int] = []

    def body(x: int) -> int:
        runs.append(x)
        return x * x

    square = cached(cache=cache, name="square")(flavour.twin(body))
    try:
        for x in range(KEYS):
            assert flavour.call(square, x) == x * x
        [bad] = [k for k in client.scan_iter(f"{namespace}:*") if b"(i0," in k]
        client.delete(bad)
        if poison == "hash":
            client.hset(bad, "field", "value")
        elif poison == "list":
            client.rpush(bad, "a", "b")
        else:
            client.set(bad, b"\x00garbage")
        runs.clear()
        with caplog.at_level(logging.WARNING, logger="buttress.caching"):
            for _ in range(5):
                for x in range(KEYS):
                    assert flavour.call(square, x) == x * x
        assert runs == [0]  # the bad key missed once and was replaced; every other key hit
        assert client.type(bad) == b"string"
        assert not shared.health.incident
        warnings = outage_warnings(caplog)
        assert len(warnings) == 1, warnings
        assert bad.decode() in warnings[0]
    finally:
        if flavour.is_async:
            flavour.run(cache.aclose())
        cache.close()


def test_a_bad_key_is_warned_about_once_a_minute_and_the_warned_keys_are_bounded(
    private_redis: redis_server.PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """Garbage coming back under one key is one warning; the memory of it holds 1024 keys."""
    cache = RedisCache(private_redis.url, namespace="warned")
    view = cache.bind("square", int)
    client = private_redis.client()
    texts = [view.text((object(), n, int)) for n in range(1025)]

    def poison_and_read(*numbers: int) -> list[str]:
        with client.pipeline(transaction=False) as pipe:
            for n in numbers:
                pipe.set(texts[n], b"\x00garbage")
            pipe.execute()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="buttress.caching"):
            for n in numbers:
                assert view.get((object(), n, int)) is MISSING
        assert [client.exists(texts[n]) for n in numbers] == [0] * len(numbers)
        return outage_warnings(caplog)

    try:
        [first] = poison_and_read(0)
        assert texts[0] in first
        assert poison_and_read(0) == []  # the same key again within the minute: said once
        assert len(poison_and_read(*range(1, 1025))) == 1024  # every other key: its own
        # 1025 keys warned about: the oldest (0) was forgotten, the newest (1024) was not
        [again] = poison_and_read(0)
        assert texts[0] in again
        assert poison_and_read(1024) == []
    finally:
        cache.close()
