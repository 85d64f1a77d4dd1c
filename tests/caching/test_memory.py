"""MemoryCache: cachetools decides evictions, hits read a plain dict, bad input is refused."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from buttress.caching import CacheListener, MemoryCache, cached
from buttress.caching._memory import READS_KEPT
from buttress.errors import ConfigurationError


class Evictions(CacheListener):
    def __init__(self) -> None:
        self.keys: list[Any] = []

    def on_evict(self, key: Any) -> None:
        self.keys.append(key)


class Counting(CacheListener):
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def on_hit(self, name: str, key: Any) -> None:
        self.events.append(("hit", name))

    def on_miss(self, name: str, key: Any) -> None:
        self.events.append(("miss", name))


@pytest.mark.parametrize("policy", ["lru", "lfu", "fifo", "rr"])
def test_every_policy_keeps_the_cache_within_maxsize(policy: Any) -> None:
    listener = Evictions()
    cache = MemoryCache(maxsize=8, policy=policy, listeners=[listener])

    @cached(cache=cache)
    def ident(x: int) -> int:
        return x

    for x in range(50):
        assert ident(x) == x
    size, evictions = cache.counts()
    assert size == 8
    assert evictions == 42
    assert len(listener.keys) == 42
    assert len(cache.policy) == 8  # the policy and the dict agree
    assert set(cache.keys()) == set(cache.policy.keys())


def test_lru_keeps_what_is_read_often() -> None:
    cache = MemoryCache(maxsize=4, policy="lru")
    calls: list[int] = []

    @cached(cache=cache)
    def ident(x: int) -> int:
        calls.append(x)
        return x

    ident(0)
    for x in range(1, 40):
        for _ in range(64):  # enough hits that sampled recency sees key 0 again
            ident(0)
        ident(x)
    assert calls.count(0) == 1


def test_lfu_keeps_what_is_read_most() -> None:
    cache = MemoryCache(maxsize=4, policy="lfu")
    calls: list[int] = []

    @cached(cache=cache)
    def ident(x: int) -> int:
        calls.append(x)
        return x

    ident(0)
    for _ in range(32 * 8):  # sampled hits: eight of them reach the policy
        ident(0)
    for x in range(1, 40):
        ident(x)
        ident(x)
    ident(0)
    assert calls.count(0) == 1


def test_fifo_evicts_in_write_order_whatever_is_read() -> None:
    cache = MemoryCache(maxsize=2, policy="fifo")

    @cached(cache=cache)
    def ident(x: int) -> int:
        return x

    ident(1)
    ident(2)
    for _ in range(100):
        ident(1)
    ident(3)
    assert [key[1] for key in list(cache.entries)] == [2, 3]


def test_functions_sharing_a_cache_never_collide() -> None:
    cache = MemoryCache()

    @cached(cache=cache)
    def double(x: int) -> int:
        return 2 * x

    @cached(cache=cache)
    def triple(x: int) -> int:
        return 3 * x

    assert (double(2), triple(2), double(2), triple(2)) == (4, 6, 4, 6)
    assert cache.counts() == (2, 0)
    double.clear()
    assert cache.counts() == (1, 0)


def test_ttl_jitter_spreads_expiries_within_the_fraction() -> None:
    cache = MemoryCache()

    @cached(ttl=100, ttl_jitter=0.5, cache=cache)
    def ident(x: int) -> int:
        return x

    for x in range(50):
        ident(x)
    lifetimes = sorted(expires for _, expires in cache.entries.values())
    spread = lifetimes[-1] - lifetimes[0]
    assert 5 < spread < 51  # spread out, never beyond half the ttl


def test_listeners_see_hits_and_misses_and_a_failing_one_is_only_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counting = Counting()

    class Broken(CacheListener):
        def on_hit(self, name: str, key: Any) -> None:
            raise RuntimeError("metrics down")

    @cached(listeners=[counting, Broken()], name="lookup")
    def lookup(x: int) -> int:
        return x

    with caplog.at_level(logging.ERROR, logger="buttress.caching"):
        assert lookup(1) == 1
        assert lookup(1) == 1
    assert counting.events == [("miss", "lookup"), ("hit", "lookup")]
    assert "metrics down" in caplog.text


def test_many_threads_reading_and_writing_keep_the_cache_consistent() -> None:
    cache = MemoryCache(maxsize=64)

    @cached(cache=cache, ttl=60)
    def ident(x: int) -> int:
        return x

    def work(seed: int) -> bool:
        return all(ident((seed * 7 + i) % 200) == (seed * 7 + i) % 200 for i in range(2000))

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(work, range(8)))
    assert len(cache.entries) <= 64
    assert set(cache.keys()) == set(cache.policy.keys())


def test_hits_never_wait_for_a_writer_and_their_record_stays_bounded() -> None:
    cache = MemoryCache(maxsize=8)

    @cached(cache=cache)
    def ident(x: int) -> int:
        return x

    ident(1)
    done = threading.Event()
    with cache._lock:  # a writer holds the lock for as long as the hits take
        threading.Thread(
            target=lambda: (all(ident(1) == 1 for _ in range(10 * 32 * READS_KEPT)), done.set())
        ).start()
        assert done.wait(timeout=10)
    assert 0 < len(cache._reads) <= READS_KEPT  # recorded, bounded, waiting for a write
    ident(2)
    assert not cache._reads  # the write told the policy


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ttl": -1}, "ttl must be a positive number"),
        ({"ttl": 0}, "ttl must be a positive number"),
        ({"ttl": float("inf")}, "ttl must be a positive number"),
        ({"ttl": "60"}, "ttl must be a positive number"),
        ({"negative_ttl": -5}, "negative_ttl must be a positive number"),
        ({"maxsize": 0}, "maxsize must be a positive integer"),
        ({"maxsize": -3}, "maxsize must be a positive integer"),
        ({"maxsize": 10, "cache": MemoryCache()}, "size the cache you pass"),
        ({"key": "id"}, "key must be a callable"),
        ({"ttl_jitter": 1.5}, "ttl_jitter must be a fraction"),
        ({"tags": "users"}, "tags must be a sequence of strings"),
        ({"tags": [1]}, "tags must be a sequence of strings"),
        ({"cache": {}}, "cache must be a MemoryCache, RedisCache or TieredCache"),
        ({"listeners": [object()]}, "listeners must be CacheListener instances"),
    ],
)
def test_bad_arguments_are_refused_when_decorating(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        cached(**kwargs)


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(ConfigurationError) as raised:
        cached(ttl=-1, maxsize=0, key=3)
    assert len(raised.value.problems) == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"maxsize": 0}, "maxsize must be a positive integer"),
        ({"maxsize": True}, "maxsize must be a positive integer"),
        ({"policy": "mru"}, "policy 'mru' is unknown"),
        ({"listeners": [print]}, "must be CacheListener instances"),
    ],
)
def test_bad_memory_cache_arguments_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        MemoryCache(**kwargs)


def test_decorating_something_not_callable_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="put @cached below it"):
        cached()(staticmethod(len))  # type: ignore[arg-type]


def test_decorating_a_generator_function_is_refused() -> None:
    def numbers() -> Iterator[int]:
        yield 1

    async def stream() -> AsyncIterator[int]:
        yield 1

    for function in (numbers, stream):
        with pytest.raises(ConfigurationError, match="Return a list or a tuple instead"):
            cached()(function)  # type: ignore[arg-type]
