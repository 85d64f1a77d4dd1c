"""Invalidations survive Redis trouble: a private server cut off, paused, killed and restarted.

Each test runs its own ``redis-server`` on a port of its own (never the shared
one), usually behind a `FaultProxy`, and checks the data afterwards: what is in
Redis, and what callers were served. An invalidation that cannot reach Redis is
kept and applied in order when Redis answers; meanwhile the process reads
nothing from Redis, so it never serves what it invalidated.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import redis_server
from buttress.caching import RedisCache, TieredCache, cached
from buttress.caching._backend import MISSING
from buttress.caching._redis import _Script
from buttress.errors import ConfigurationError, UnavailableError
from fault_proxy import FaultProxy

private_redis = redis_server.private_redis
LOGGER = "buttress.caching"


def eventually(check: Callable[[], bool], within: float = 5.0) -> float:
    """Wait (bounded) until ``check()`` holds; return the seconds it took."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < within, "did not happen in time"
        time.sleep(0.01)
    return time.monotonic() - start


@pytest.fixture
def proxy(private_redis: redis_server.PrivateRedis) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", private_redis.port) as made:
        yield made


def make_cache(url: str, *, tiered: bool, namespace: str = "outage") -> Any:
    shared = RedisCache(
        url,
        namespace=namespace,
        retry_after_failure=0.2,
        client_options={"socket_timeout": 0.2, "socket_connect_timeout": 0.2},
    )
    return TieredCache(shared, local_ttl=30) if tiered else shared


def shared_of(cache: Any) -> RedisCache:
    return cache.redis if isinstance(cache, TieredCache) else cache


@pytest.mark.parametrize("tiered", [False, True], ids=["redis", "tiered"])
def test_an_invalidation_while_redis_is_cut_off_is_applied_when_it_answers(
    private_redis: redis_server.PrivateRedis,
    proxy: FaultProxy,
    tiered: bool,
    caplog: pytest.LogCaptureFixture,
    flavour: Any,
) -> None:
    cache = make_cache(proxy.url, tiered=tiered)
    source = {"k": "old", "other": "kept"}
    read = cached(cache=cache, name="stock")(flavour.twin(lambda key: source[key]))
    server = private_redis.client()
    try:
        assert flavour.call(read, "k") == "old"
        assert flavour.call(read, "other") == "kept"
        [entry] = [k for k in server.scan_iter("outage:1:stock:*") if b'"k"' in k]
        proxy.cut()
        source["k"] = "new"
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            flavour.call(read.ainvalidate if flavour.is_async else read.invalidate, "k")
        assert any("kept and applied" in r.getMessage() for r in caplog.records)
        assert server.exists(entry)  # Redis never heard of it...
        for _ in range(3):
            assert flavour.call(read, "k") == "new"  # ... and this process serves it never
        proxy.restore()
        eventually(lambda: not server.exists(entry))  # applied without waiting for a call
        assert not shared_of(cache).pending
        assert flavour.call(read, "k") == "new"
        assert flavour.call(read, "k") == "new"
        assert flavour.call(read, "other") == "kept"
    finally:
        if flavour.is_async:
            flavour.run(cache.aclose())
        cache.close()


def test_strict_invalidation_says_it_could_not_be_applied_and_still_applies_it_later(
    private_redis: redis_server.PrivateRedis, proxy: FaultProxy
) -> None:
    cache = make_cache(proxy.url, tiered=False)
    source = {"k": "old"}
    read = cached(cache=cache, name="stock")(lambda key: source[key])
    server = private_redis.client()
    try:
        read("k")
        [entry] = entries(server)
        proxy.cut()
        source["k"] = "new"
        with pytest.raises(UnavailableError, match="kept and applied as soon as Redis answers"):
            read.invalidate_strict("k")
        proxy.restore()
        eventually(lambda: not server.exists(entry))
        assert read("k") == "new"
        read.invalidate_strict("k")  # Redis answers: no error
    finally:
        cache.close()


@pytest.mark.asyncio
async def test_strict_invalidation_for_async_callers(
    private_redis: redis_server.PrivateRedis, proxy: FaultProxy
) -> None:
    cache = make_cache(proxy.url, tiered=True)
    source = {"k": "old"}

    @cached(cache=cache, name="stock")
    async def read(key: str) -> str:
        return source[key]

    try:
        assert await read("k") == "old"
        proxy.cut()
        source["k"] = "new"
        with pytest.raises(UnavailableError):
            await read.ainvalidate_strict("k")
        assert await read("k") == "new"  # memory dropped at once, Redis skipped
        proxy.restore()
        await asyncio.to_thread(eventually, lambda: not cache.redis.pending)
        assert await read("k") == "new"
    finally:
        await cache.aclose()


def test_a_paused_server_gets_the_invalidation_when_it_wakes(
    private_redis: redis_server.PrivateRedis,
) -> None:
    here = make_cache(private_redis.url, tiered=False)
    there = make_cache(private_redis.url, tiered=False)  # another process
    source = {"k": "old"}
    read = cached(cache=here, name="stock")(lambda key: source[key])
    elsewhere = cached(cache=there, name="stock")(lambda key: source[key])
    try:
        assert read("k") == elsewhere("k") == "old"
        private_redis.pause(1.0)
        source["k"] = "new"
        read.invalidate("k")  # times out: kept
        assert read("k") == "new"
        # the other process may read the old value from Redis until the server wakes and
        # the invalidation is applied, and never after
        eventually(lambda: not here.pending, within=5)
        assert elsewhere("k") == "new"
        assert read("k") == "new"
    finally:
        here.close()
        there.close()


def test_a_killed_and_restarted_server_loses_nothing_that_matters(
    private_redis: redis_server.PrivateRedis,
) -> None:
    cache = make_cache(private_redis.url, tiered=True)
    source = {"k": "old"}
    read = cached(cache=cache, name="stock")(lambda key: source[key])
    try:
        assert read("k") == "old"
        private_redis.kill()
        source["k"] = "new"
        read.invalidate("k")
        assert read("k") == "new"
        private_redis.restart()
        eventually(lambda: not cache.redis.pending)
        assert read("k") == "new"
        source["k"] = "newer"
        read.invalidate("k")
        assert read("k") == "newer"
    finally:
        cache.close()


def test_too_many_waiting_invalidations_become_one_clear_of_the_whole_cache(
    private_redis: redis_server.PrivateRedis, proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    cache = make_cache(proxy.url, tiered=False)
    cache.pending.limit = 3
    source = {f"k{i}": "old" for i in range(6)}
    read = cached(cache=cache, name="stock")(lambda key: source[key])
    server = private_redis.client()
    try:
        for key in source:
            read(key)
        server.set("outage:1:unrelated", b"x")
        server.set("another-namespace:1:kept", b"x")
        proxy.cut()
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            for i in range(5):
                source[f"k{i}"] = "new"
                read.invalidate(f"k{i}")
        assert any(
            "every entry of the cache will be dropped" in r.getMessage() for r in caplog.records
        )
        assert len(cache.pending) <= 3
        proxy.restore()
        eventually(lambda: not cache.pending)
        assert not entries(server)  # the whole namespace went: stale by rule
        assert not server.exists("outage:1:unrelated")
        assert server.get("another-namespace:1:kept") == b"x"  # nobody else's
        assert [read(key) for key in sorted(source)] == ["new"] * 5 + ["old"]
    finally:
        cache.close()


def test_waiting_invalidations_are_applied_in_the_order_they_were_made(
    private_redis: redis_server.PrivateRedis, proxy: FaultProxy
) -> None:
    cache = make_cache(proxy.url, tiered=False)
    source = {"k": 1}
    read = cached(cache=cache, name="stock", tags=("t",))(lambda key: source[key])
    applied: list[str] = []
    real = cache.apply

    def recording(invalidation: Any) -> bool:
        done = real(invalidation)
        if done:
            applied.append(invalidation.kind)
        return done

    cache.apply = recording  # type: ignore[method-assign]
    try:
        read("k")
        proxy.cut()
        read.invalidate("k")
        cache.invalidate_tags("t")
        read.clear()
        read.invalidate("k")
        proxy.restore()
        eventually(lambda: not cache.pending)
        assert applied == ["key", "tags", "function", "key"]
    finally:
        cache.close()


def test_a_write_from_a_miss_is_never_applied_before_a_waiting_invalidation(
    private_redis: redis_server.PrivateRedis, proxy: FaultProxy
) -> None:
    """While an invalidation waits, nothing this process computes is written to Redis."""
    cache = make_cache(proxy.url, tiered=False)
    source = {"k": "old"}
    read = cached(cache=cache, name="stock")(lambda key: source[key])
    server = private_redis.client()
    try:
        read("k")
        proxy.cut()
        source["k"] = "new"
        read.invalidate("k")
        cache.health._down_until = 0.0  # the pause is over: the next call probes
        proxy.restore()
        assert read("k") == "new"
        values = {server.get(k) for k in entries(server)} - {None}
        assert b'"old"' not in values
    finally:
        cache.close()


def entries(server: redis.Redis) -> list[bytes]:
    """The cached entries' keys (not their leases or invalidation marks)."""
    return [
        key
        for key in server.scan_iter("outage:1:stock:*")
        if not key.endswith((b":gen", b":lease"))
    ]


def test_a_server_that_has_forgotten_the_scripts_is_sent_them_again(
    private_redis: redis_server.PrivateRedis,
) -> None:
    """A fresh (or restarted, or flushed) server knows no script: EVALSHA fails, EVAL loads it."""
    cache = RedisCache(private_redis.url, namespace="scripts")
    server = private_redis.client()
    script = _Script("return ARGV[1]")  # new, so the server has never seen it
    try:
        assert server.script_exists(script.sha) == [False]
        assert cache.run(script, [], ["first"]) == b"first"  # sent whole, and remembered...
        assert server.script_exists(script.sha) == [True]
        assert cache.run(script, [], ["second"]) == b"second"  # ... then run by its SHA1

        async def run_async() -> Any:
            return await cache.arun(script, [], ["third"])

        server.script_flush()
        assert asyncio.run(run_async()) == b"third"
        assert server.script_exists(script.sha) == [True]
        sent_whole = server.info("commandstats")["cmdstat_eval"]["calls"]
        assert cache.run(script, [], ["fourth"]) == b"fourth"
        assert asyncio.run(run_async()) == b"third"
        assert server.info("commandstats")["cmdstat_eval"]["calls"] == sent_whole  # by SHA1
    finally:
        cache.close()


def test_a_server_refusing_writes_is_an_outage_not_a_bad_key(
    private_redis: redis_server.PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """An error reply other than WRONGTYPE (here: out of memory) is Redis in trouble."""
    cache = make_cache(private_redis.url, tiered=False)
    view = cache.bind("stock", int)
    server = private_redis.client()
    server.config_set("maxmemory", "1")  # with noeviction: every write is refused (OOM)
    try:
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            view.set((object(), "k", str), 1, 60, ())
        assert cache.health.incident
        [warning] = [r.getMessage() for r in caplog.records if r.name == LOGGER]
        assert "served as cache misses" in warning
        assert "OutOfMemoryError" in warning
    finally:
        cache.close()


def test_a_bad_entry_that_cannot_be_deleted_now_is_still_a_plain_miss(
    private_redis: redis_server.PrivateRedis, flavour: Any
) -> None:
    """Reads answer while writes wait: the delete of a bad entry is kept, never raised."""
    cache = make_cache(private_redis.url, tiered=False)
    source = {"k": "old"}
    read = cached(cache=cache, name="stock")(flavour.twin(lambda key: source[key]))
    server = private_redis.client()
    try:
        assert flavour.call(read, "k") == "old"
        [entry] = entries(server)
        server.set(entry, b"\x00garbage")
        source["k"] = "new"
        server.client_pause(1000, all=False)  # writes (and scripts) wait a second
        assert flavour.call(read, "k") == "new"  # the bad entry: a miss, computed here
        eventually(lambda: not server.exists(entry))  # deleted once Redis took writes again
        assert not cache.pending
    finally:
        if flavour.is_async:
            flavour.run(cache.aclose())
        cache.close()


def test_aclose_closes_this_loops_connections_and_clear_touches_only_its_namespace(
    private_redis: redis_server.PrivateRedis,
) -> None:
    cache = RedisCache(private_redis.url, namespace="mine")
    server = private_redis.client()
    server.set("theirs:1:f:(i1)", b"1")
    server.set("mine-too:1:f:(i1)", b"1")

    async def use() -> tuple[int, int]:
        view = cache.bind("f", int)
        await view.aset((object(), 1, int), 1, 60, ())
        await cache.aclear()
        assert await view.aget((object(), 1, int)) is MISSING
        before = len(server.client_list())
        await cache.aclose()
        return before, len(server.client_list())

    try:
        before, after = asyncio.run(use())
        assert after == before - 1  # the loop's connection, closed by aclose itself
        assert server.get("theirs:1:f:(i1)") == server.get("mine-too:1:f:(i1)") == b"1"
    finally:
        cache.close()


def test_an_async_only_cache_applies_its_waiting_invalidations_on_its_next_call(
    private_redis: redis_server.PrivateRedis, proxy: FaultProxy
) -> None:
    """With no sync client there is no background flush: the next async call applies them."""

    async def scenario() -> None:
        client = redis.asyncio.Redis.from_url(
            proxy.url, socket_timeout=0.2, socket_connect_timeout=0.2
        )
        cache = RedisCache(async_client=client, namespace="outage", retry_after_failure=0.05)
        view = cache.bind("stock", int)
        kept, dropped = (object(), "kept", str), (object(), "dropped", str)
        await view.aset(kept, 1, 60, ())
        await view.aset(dropped, 2, 60, ())
        proxy.cut()
        await view.adelete(dropped)
        assert len(cache.pending) == 1
        proxy.restore()
        await asyncio.sleep(0.1)  # past retry_after_failure: Redis may be tried again
        assert await view.aget(kept) == 1  # the waiting delete went first...
        assert not cache.pending
        assert await view.aget(dropped) is MISSING  # ... and was applied
        await cache.aclose()
        await client.aclose()

    asyncio.run(scenario())


@pytest.mark.asyncio
async def test_each_event_loop_keeps_one_async_client_and_a_sync_only_cache_says_what_to_pass(
    private_redis: redis_server.PrivateRedis,
) -> None:
    cache = RedisCache(private_redis.url, namespace="loops")
    try:
        assert cache.async_client() is cache.async_client()
    finally:
        await cache.aclose()
    given = private_redis.client()
    sync_only = RedisCache(client=given, namespace="loops")
    with pytest.raises(
        ConfigurationError,
        match=re.escape("pass async_client=redis.asyncio.Redis(...) too, or url="),
    ):
        sync_only.async_client()
