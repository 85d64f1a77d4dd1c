"""MemoryCache: cachetools decides evictions, hits read a plain dict, bad input is refused."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from buttress.caching import CacheListener, MemoryCache, cached
from buttress.caching._backend import MISSING
from buttress.caching._memory import READS_KEPT, TOUCHED_KEPT
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


# -- the policy and the dict stay one cache ----------------------------------------------


@pytest.mark.parametrize("drop", ["invalidate", "clear", "tags"])
def test_dropped_entries_free_their_room_in_the_policy(drop: str) -> None:
    listener = Evictions()
    cache = MemoryCache(maxsize=2, listeners=[listener])

    @cached(cache=cache, tags=["t"])
    def ident(x: int) -> int:
        return x

    ident(1)
    ident(2)
    if drop == "invalidate":
        ident.invalidate(1)
        ident.invalidate(2)
    elif drop == "clear":
        ident.clear()
    else:
        ident.invalidate_tags("t")
    ident(3)
    ident(4)
    assert cache.counts() == (2, 0)  # two entries fit again: nothing was evicted for them
    assert listener.keys == []
    assert set(cache.keys()) == set(cache.policy.keys())


@pytest.mark.parametrize("drop", ["invalidate", "clear", "tags"])
def test_an_expired_entry_can_be_dropped_before_it_is_swept(drop: str) -> None:
    cache = MemoryCache()

    @cached(cache=cache, ttl=0.01, tags=["t"])
    def ident(x: int) -> int:
        return x

    ident(1)
    time.sleep(0.02)  # expired, still held until the next write sweeps it
    assert len(cache.entries) == 1
    if drop == "invalidate":
        ident.invalidate(1)
    elif drop == "clear":
        ident.clear()
    else:
        ident.invalidate_tags("t")
    assert cache.counts() == (0, 0)


def test_evictions_name_the_evicted_keys_and_a_failing_listener_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = Evictions()

    class Broken(CacheListener):
        def on_evict(self, key: Any) -> None:
            raise RuntimeError("metrics down")

        def __repr__(self) -> str:
            return "<Broken listener>"

    cache = MemoryCache(maxsize=1, policy="fifo", listeners=[Broken(), listener])
    with caplog.at_level(logging.ERROR, logger="buttress.caching"):
        cache.set(("k", 1), "one", None)
        cache.set(("k", 2), "two", None)
    assert listener.keys == [("k", 1)]  # told of it, after the broken one
    assert cache.counts() == (1, 1)
    [record] = caplog.records
    assert record.getMessage() == "cache listener <Broken listener> failed in on_evict"
    assert record.exc_info is not None


# -- tags follow the entry's latest write -------------------------------------------------


def test_a_rewritten_entry_answers_to_its_new_tags_only() -> None:
    cache = MemoryCache()
    cache.set("k", "v1", None, ("old",))
    cache.set("k", "v2", None, ("new",))
    cache.invalidate_tags("old")
    assert cache.get("k") == "v2"
    cache.invalidate_tags("new")
    assert cache.get("k") is MISSING


def test_tag_bookkeeping_goes_with_the_entries() -> None:
    cache = MemoryCache(maxsize=4)
    for i in range(20):  # evicted, deleted, overwritten
        cache.set(i, i, None, (f"t{i}", "all"))
        if i % 3 == 0:
            cache.delete(i)
    cache.set(19, 19, None, ())
    tagged = set(cache.entries) - {19}
    assert len(tagged) == 3
    assert set(cache._tags_of) == tagged
    assert cache._tags == {"all": tagged} | {f"t{key}": {key} for key in tagged}
    cache.clear()
    assert cache._tags == {}
    assert cache._tags_of == {}


# -- a miss in flight never stores over an invalidation ----------------------------------


@pytest.mark.parametrize("kind", ["invalidate", "clear"])
def test_an_invalidation_during_a_miss_after_an_earlier_one_still_wins(kind: str) -> None:
    """The invalidation clock moves on with every invalidation, whatever came before."""
    runs: list[int] = []
    cache = MemoryCache()

    @cached(cache=cache)
    def read(x: int) -> int:
        runs.append(x)
        if len(runs) == 1:  # another caller invalidates while this miss computes
            read.invalidate(x) if kind == "invalidate" else read.clear()
        return len(runs)

    read.invalidate(0) if kind == "invalidate" else read.clear()  # an earlier one
    assert read(1) == 1  # returned, but older than the invalidation: not stored
    assert read(1) == 2
    assert read(1) == 2


def test_a_miss_remembers_touched_kept_invalidations_then_counts_itself_overtaken() -> None:
    cache = MemoryCache()
    for extra, stored in [(0, True), (1, False)]:
        lease = cache.begin("k", ())
        for i in range(TOUCHED_KEPT + extra):
            cache.delete(("other", i))
        cache.store("k", lease, "v", None, ())
        cache.end("k", lease)
        assert (cache.get("k") == "v") is stored
        cache.clear()


# -- the cache protocol, sync and async --------------------------------------------------


def test_the_async_protocol_does_what_the_sync_one_does() -> None:
    async def scenario(cache: MemoryCache) -> list[Any]:
        seen: list[Any] = []
        await cache.aset("a", 1, None, ("t",))
        await cache.aset("b", 2, 60, ())
        seen += [await cache.aget("a"), await cache.aget("b"), await cache.aget("c")]
        lease = await cache.abegin("c", ())
        seen.append((lease.since, lease.value))
        await cache.astore("c", lease, 3, None, ())
        await cache.aend("c", lease)
        await cache.aend("c", lease)  # a lease is given back once
        seen += [cache._loading, await cache.aget("c")]
        lease = await cache.abegin("c", ())
        seen.append(lease.value)
        await cache.adelete("c")
        await cache.astore("c", lease, 4, None, ())  # overtaken by the delete
        await cache.aend("c", lease)
        seen.append(await cache.aget("c"))
        await cache.aset("z", 9, 0, ())  # expired at once, as a zero ttl says
        lease = await cache.abegin("y", ())
        await cache.astore("y", lease, 8, 0, ())
        await cache.aend("y", lease)
        seen += [await cache.aget("z"), await cache.aget("y")]
        await cache.ainvalidate_tags("t")
        seen += [await cache.aget("a"), await cache.aacquire("a"), await cache.await_value("a")]
        await cache.arelease("a", "")
        await cache.aclear()
        await cache.aclose()
        seen.append(cache.counts())
        return seen

    expected = [1, 2, MISSING, (0, MISSING), 0, 3, 3, MISSING]
    expected += [MISSING, MISSING, MISSING, "", MISSING, (0, 0)]
    assert asyncio.run(scenario(MemoryCache())) == expected
    cache = MemoryCache()
    cache.set("a", 1, None, ("t",))
    cache.set("b", 2, 60, ())
    assert [cache.get("a"), cache.peek("b"), cache.get("c")] == expected[:3]
    assert cache.acquire("a") == ""
    assert cache.wait("a") is MISSING
    cache.release("a", "")


def test_an_entry_with_a_ttl_expires_and_one_without_does_not() -> None:
    cache = MemoryCache()
    cache.set("short", 1, 0.01, ())
    cache.set("long", 2, 60, ())
    cache.set("forever", 3, None, ())
    cache.set("gone", 4, 0, ())  # already expired: kept nowhere
    time.sleep(0.02)
    assert [cache.get(k) for k in ("short", "long", "forever", "gone")] == [MISSING, 2, 3, MISSING]
    assert "gone" not in cache.entries


def test_a_forked_child_starts_with_a_free_lock_and_no_misses_in_flight() -> None:
    """After ``os.fork`` only the forking thread lives on: a lock another held stays held."""
    cache = MemoryCache()
    lease = cache.begin("k", ())
    cache.delete("k")
    assert cache._lock.acquire(blocking=False)  # what a parent thread mid-write leaves
    cache.after_fork()
    cache.set("k", "v", None)  # would wait forever on the parent's lock
    assert cache.get("k") == "v"
    assert cache._loading == 0
    assert cache._touched == {}
    del lease


def test_a_zero_ttl_write_drops_what_was_there_and_expired_entries_go_at_the_next_write() -> None:
    cache = MemoryCache()
    cache.set("k", 1, None, ())
    cache.set("k", 2, 0, ())  # expired at once: the old value must not survive it
    assert cache.get("k") is MISSING
    assert "k" not in cache.entries
    cache.set("short", 1, 0.01, ())
    time.sleep(0.02)
    cache.set("next", 2, None, ())
    assert set(cache.entries) == {"next"}  # swept: expired entries do not pile up


def test_misses_in_flight_each_keep_their_invalidations_until_the_last_ends() -> None:
    cache = MemoryCache()
    first = cache.begin("a", ())
    second = cache.begin("b", ())
    cache.delete("b")  # overtakes the second miss
    cache.store("a", first, "A", None, ())
    cache.end("a", first)  # the first miss ends: the second still flies
    cache.store("b", second, "stale", None, ())
    cache.end("b", second)
    assert cache.get("a") == "A"
    assert cache.get("b") is MISSING
    assert cache._touched == {}  # nothing remembered once no miss flies
    cache.delete("c")
    assert cache._touched == {}


def test_a_sampled_hit_on_an_entry_invalidated_since_does_not_break_the_next_write() -> None:
    cache = MemoryCache()

    @cached(cache=cache)
    def ident(x: int) -> int:
        return x

    ident(0)
    for _ in range(64):  # sampled hits on 0, waiting for the next write
        ident(0)
    assert cache._reads
    ident.invalidate(0)
    assert ident(1) == 1
    assert ident(0) == 0


def test_a_memory_cache_reads_as_its_settings() -> None:
    assert repr(MemoryCache()) == "MemoryCache(maxsize=1024, policy='lru', size=0)"
    cache = MemoryCache(maxsize=1, policy="rr")
    cache.set("k", 1, None)
    assert repr(cache) == "MemoryCache(maxsize=1, policy='rr', size=1)"


@pytest.mark.parametrize("maxsize", [0, -1, 1.5, "8", True])
def test_a_bad_maxsize_is_refused_with_what_to_pass(maxsize: Any) -> None:
    with pytest.raises(ConfigurationError) as raised:
        MemoryCache(maxsize=maxsize)
    assert str(raised.value) == (
        f"MemoryCache maxsize must be a positive integer, got {maxsize!r}: pass how many "
        "entries to keep, such as maxsize=1024"
    )
