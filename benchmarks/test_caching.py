"""Caching: what a hit costs, and how often a cold key's body runs under a stampede.

Every hit group times a cache hit on a trivially cheap function (it returns its
argument), so the cache's own work dominates. Every cached row warms its keys
before timing and checks afterwards that the timed calls were hits (the body
ran only while warming) and that each returned its own key's value, so the
smoke run (``--benchmark-disable``) is a test of the benchmark itself.

- ``caching.hit-sync``: a hit on a one-argument ``def`` with a TTL. The baseline
  is ``cachetools.cached(TTLCache, lock=Lock())``, the thread-safe thing one
  writes without Buttress; ``functools.lru_cache`` (C, no TTL) and the bare call
  are references. The row "design: hits through the cachetools policy" is the
  design Buttress did not ship: the same inline key as ours, but every hit is a
  ``TLRUCache`` lookup under a lock (so recency is exact), beside `MemoryCache`'s
  plain-dict hit that records one hit in 32 for the policy to learn of at the
  next write.
- ``caching.hit-async``: the same on an ``async def``. As in
  ``test_resilience.py``, pytest-benchmark cannot await, so a row times one
  ``loop.run_until_complete`` of `BATCH` awaits (medians are per batch); the
  baseline is ``async_lru.alru_cache``.
- ``caching.hit-redis``: a hit through `RedisCache` against a hand-written cache:
  redis-py's ``GET`` of the same bytes under a key of the same length, then
  ``json.loads``. Needs a Redis server (``BUTTRESS_TEST_REDIS_URL``, default
  ``redis://127.0.0.1:6379/0``); each run writes under a namespace of its own
  and deletes it afterwards.
- ``caching.redis-concurrent``: `CONCURRENT` asyncio tasks at once on warm keys
  of a `RedisCache` (three times the pool's 100 connections, so callers wait for
  connections), against redis-py's own ``GET`` + ``json.loads`` through the same
  kind of pool. A row times one round of all of them.
- ``caching.hit-tiered``: a `TieredCache` hit served from its memory tier (the
  Redis copy is deleted behind its back, so only memory can answer) against a
  `MemoryCache` hit through `cached`.
- ``caching.stampede``: not a race of speed. `CALLERS` threads (or tasks) call
  at once on a cold key whose body sleeps `SLOW_BODY` seconds; a row is the
  wall time of that round, and ``extra_info["body_runs"]`` (a column of the
  report) is how many times the body ran in the worst of its rounds: 1 means the
  callers shared one run. Each round uses a fresh key.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import os
import threading
import time
import urllib.parse
import uuid
from typing import TYPE_CHECKING, Any

import aiocache
import async_lru
import cachetools
import pytest
import redis
from cashews import Cache as CashewsCache

from buttress.caching import MemoryCache, cached

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

REDIS_IMPORT_ERROR: ImportError | None = None
"""Why `RedisCache` or `TieredCache` cannot be imported (their groups then skip)."""
try:
    from buttress.caching._redis import RedisCache
    from buttress.caching._tiered import TieredCache
except ImportError as error:
    REDIS_IMPORT_ERROR = error

TTL = 600
"""Seconds every cached entry lives: far longer than any run, so a timed call is a hit."""

MAXSIZE = 1024
"""Entries every cache holds: more than the `BATCH` keys an async row warms."""

BATCH = 1000
"""Awaits per timed async run: enough that the loop's fixed cost is a few percent."""

EXPECTED = sum(range(BATCH))
"""What `batch` returns when every call returned its own argument."""

WARM = (0, 1, 2, 3)
"""Keys a sync row warms before timing calls on key 1: a mixed-up entry would show."""

CALLERS = 32
"""Threads or tasks calling at once on one cold key in ``caching.stampede``."""

SLOW_BODY = 0.02
"""Seconds the body sleeps in ``caching.stampede``: a slow query, far above any cache's work."""

JOIN_TIMEOUT = 10.0
"""Seconds a stampede round may take before the benchmark gives up on it."""

REDIS_URL = os.environ.get("BUTTRESS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class Body:
    """The bodies of the cached functions: cheap, and counting how often they ran."""

    def __init__(self) -> None:
        self.runs = 0

    def value_of(self) -> Callable[[int], int]:
        def value_of(x: int) -> int:
            self.runs += 1
            return x

        return value_of

    def pair(self) -> Callable[..., int]:
        def pair(x: int, y: int = 0) -> int:
            self.runs += 1
            return x + y

        return pair

    def async_value_of(self) -> Callable[[int], Awaitable[int]]:
        async def async_value_of(x: int) -> int:
            self.runs += 1
            return x

        return async_value_of

    def record(self) -> Callable[[int], dict[str, int | str]]:
        """A small record, as a function cached in Redis typically returns."""

        def record(x: int) -> dict[str, int | str]:
            self.runs += 1
            return {"id": x, "name": "widget"}

        return record


def value_of(x: int) -> int:
    """The bare, uncached body (the reference floor)."""
    return x


async def async_value_of(x: int) -> int:
    return x


def warm_sync(fn: Callable[[int], Any], body: Body) -> None:
    """Call ``fn`` on every key of `WARM` (each a miss) so that the timed calls hit."""
    for x in WARM:
        fn(x)
    assert body.runs == len(WARM)


def hit(benchmark: Any, fn: Callable[..., Any], body: Body, *args: Any, **kwargs: Any) -> Any:
    """Warm ``fn``, time a hit on ``fn(*args, **kwargs)`` and check the body ran only to warm."""
    warm_sync(fn, body)
    result = benchmark(fn, *args, **kwargs)
    assert body.runs == len(WARM), "a timed call missed"
    return result


def policy_design(fn: Callable[[Any], Any]) -> Callable[..., Any]:
    """The design not shipped: every hit is a lookup in the cachetools policy, under a lock.

    Same key as `cached`'s one-argument hit path (the function's identity, the
    value, its type), same TTL; the policy is a ``TLRUCache`` as in
    `MemoryCache`, but it holds the values and a hit moves its key up the
    recency order, exactly, under the lock.
    """
    identity = object()
    policy: cachetools.TLRUCache[Any, Any] = cachetools.TLRUCache(
        MAXSIZE, ttu=lambda _key, _value, now: now + TTL, timer=time.monotonic
    )
    lock = threading.Lock()

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if kwargs or len(args) != 1:
            raise TypeError("the design sketch takes one positional argument")
        value = args[0]
        key = (identity, value, type(value))
        with lock:
            try:
                return policy[key]
            except KeyError:
                pass
        result = fn(value)
        with lock:
            policy[key] = result
        return result

    return wrapper


def cachetools_locked(fn: Callable[..., Any]) -> Callable[..., Any]:
    return cachetools.cached(cachetools.TTLCache(MAXSIZE, TTL), lock=threading.Lock())(fn)


def cachetools_condition(fn: Callable[..., Any]) -> Callable[..., Any]:
    """cachetools' stampede-proof spelling: callers of a key being computed wait on a condition."""
    cache: cachetools.TTLCache[Any, Any] = cachetools.TTLCache(MAXSIZE, TTL)
    return cachetools.cached(cache, condition=threading.Condition())(fn)


@pytest.mark.benchmark(group="caching.hit-sync")
class TestHitSync:
    def test_bare_call(self, reference):
        assert reference(value_of, 1) == 1

    def test_lru_cache(self, reference):
        """functools.lru_cache: C, no TTL, one lock-free dict lookup; the floor of a cache."""
        body = Body()
        assert hit(reference, functools.lru_cache(maxsize=MAXSIZE)(body.value_of()), body, 1) == 1

    def test_cachetools_ttl_cache_locked(self, baseline):
        body = Body()
        assert hit(baseline, cachetools_locked(body.value_of()), body, 1) == 1

    def test_cachetools_ttl_cache_unlocked(self, reference):
        """Without a lock: what cachetools costs when the cache is not thread-safe."""
        body = Body()
        fn = cachetools.cached(cachetools.TTLCache(MAXSIZE, TTL))(body.value_of())
        assert hit(reference, fn, body, 1) == 1

    def test_cachetools_ttl_cache_condition(self, peer):
        body = Body()
        assert hit(peer, cachetools_condition(body.value_of()), body, 1) == 1

    def test_cachetools_ttl_cache_locked_keyword(self, reference):
        """The keyword call of ``test_cached_keyword``, through the baseline's cache."""
        body = Body()
        fn = cachetools_locked(body.pair())
        assert fn(1, y=2) == 3  # cachetools keys f(1, y=2) apart from f(1, 2): warm it as called
        body.runs = 0
        assert hit(reference, fn, body, 1, y=2) == 3

    def test_design_hits_through_the_cachetools_policy(self, reference):
        body = Body()
        assert hit(reference, policy_design(body.value_of()), body, 1) == 1

    def test_cached_ttl(self, ours):
        body = Body()
        assert hit(ours, cached(ttl=TTL)(body.value_of()), body, 1) == 1

    def test_cached_no_ttl(self, ours):
        """Default ``maxsize``, no TTL: entries never expire, so a hit reads no clock."""
        body = Body()
        assert hit(ours, cached()(body.value_of()), body, 1) == 1

    def test_cached_keyword(self, ours):
        """``f(1, y=2)`` on ``f(x, y=0)``: the canonical binding path, not the one-argument one."""
        body = Body()
        fn = cached(ttl=TTL)(body.pair())
        assert fn(1, y=2) == fn(1, 2) == fn(x=1, y=2) == 3  # one entry, however spelled
        assert body.runs == 1
        body.runs = 0
        assert hit(ours, fn, body, 1, y=2) == 3


# Async hits -------------------------------------------------------------------------------------


async def batch(fn: Callable[[int], Awaitable[int]]) -> int:
    """Await ``fn`` on each of `BATCH` keys and add up the results (the same loop for every row)."""
    total = 0
    for i in range(BATCH):
        total += await fn(i)
    return total


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One new event loop per test, closed at teardown; never the thread's current loop."""
    new = asyncio.new_event_loop()
    try:
        yield new
    finally:
        new.close()


@pytest.fixture
def drive(
    loop: asyncio.AbstractEventLoop,
) -> Callable[[Callable[[int], Awaitable[int]], Body | None], Callable[[], int]]:
    """Warm a coroutine function on the `BATCH` keys; return a callable running one `batch`.

    With a `Body`, it checks that warming ran the body once per key (each call
    was a miss); the test then checks that timing ran it no more.
    """

    def runner(fn: Callable[[int], Awaitable[int]], body: Body | None) -> Callable[[], int]:
        def run() -> int:
            return loop.run_until_complete(batch(fn))

        if body is not None:
            assert run() == EXPECTED
            assert body.runs == BATCH
        return run

    return runner


def cashews_cache(fn: Callable[[int], Awaitable[int]]) -> Callable[[int], Awaitable[int]]:
    """cashews' decorator over its in-memory backend (a Cache of its own per benchmark)."""
    cache = CashewsCache()
    cache.setup("mem://")
    return cache(ttl=TTL)(fn)


@pytest.mark.benchmark(group="caching.hit-async")
class TestHitAsync:
    def test_bare_call(self, reference, drive):
        assert reference(drive(async_value_of, None)) == EXPECTED

    def test_async_lru(self, baseline, drive):
        body = Body()
        fn = async_lru.alru_cache(maxsize=MAXSIZE, ttl=TTL)(body.async_value_of())
        assert baseline(drive(fn, body)) == EXPECTED
        assert body.runs == BATCH

    def test_aiocache(self, peer, drive):
        """aiocache's ``cached`` over its default in-memory cache."""
        body = Body()
        fn = aiocache.cached(ttl=TTL)(body.async_value_of())
        assert peer(drive(fn, body)) == EXPECTED
        assert body.runs == BATCH

    def test_cashews(self, peer, drive):
        body = Body()
        assert peer(drive(cashews_cache(body.async_value_of()), body)) == EXPECTED
        assert body.runs == BATCH

    def test_cached_ttl(self, ours, drive):
        body = Body()
        assert ours(drive(cached(ttl=TTL)(body.async_value_of()), body)) == EXPECTED
        assert body.runs == BATCH

    def test_cached_no_ttl(self, ours, drive):
        body = Body()
        assert ours(drive(cached()(body.async_value_of()), body)) == EXPECTED
        assert body.runs == BATCH


# Redis and tiered hits --------------------------------------------------------------------------


def where(url: str) -> str:
    """``host:port`` of a Redis URL, without any password it may carry."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.hostname or '?'}:{parts.port or 6379}"


@pytest.fixture(scope="module")
def redis_client() -> Iterator[redis.Redis]:
    """A raw client of the benchmark server, or a skip saying how to get one."""
    if REDIS_IMPORT_ERROR is not None:
        pytest.skip(f"RedisCache/TieredCache not importable yet: {REDIS_IMPORT_ERROR}")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1.0, socket_timeout=2.0)
    try:
        client.ping()
    except (redis.RedisError, OSError) as error:
        client.close()
        pytest.skip(
            f"no Redis at {where(REDIS_URL)} ({type(error).__name__}): start one "
            "(redis-server, or docker run -p 6379:6379 redis) or set BUTTRESS_TEST_REDIS_URL"
        )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def namespace(redis_client: redis.Redis) -> Iterator[str]:
    """A namespace of this benchmark's own, deleted with everything under it afterwards."""
    name = f"bench-{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        doomed = list(redis_client.scan_iter(match=f"{name}:*", count=1000))
        if doomed:
            redis_client.delete(*doomed)


@pytest.fixture
def redis_cache(namespace: str) -> Iterator[Any]:
    cache = RedisCache(REDIS_URL, namespace=namespace)
    try:
        yield cache
    finally:
        cache.close()


@pytest.fixture
def tiered_cache(redis_cache: Any) -> Iterator[Any]:
    tiered = TieredCache(redis_cache, maxsize=MAXSIZE, local_ttl=TTL)
    try:
        yield tiered
    finally:
        tiered.close()


RECORD = {"id": 1, "name": "widget"}
"""What ``record(1)`` returns."""


def compact(value: Any) -> bytes:
    """JSON without spaces, as pydantic writes it."""
    return json.dumps(value, separators=(",", ":")).encode()


def stored_keys(client: redis.Redis, namespace: str) -> dict[bytes, bytes]:
    """The value entries under ``namespace`` (leases and tag sets left out), by key."""
    found = {}
    for key in client.scan_iter(match=f"{namespace}:*", count=1000):
        if client.type(key) == b"string":
            value = client.get(key)
            if value is not None and value.startswith(b"{"):
                found[key] = value
    return found


@pytest.mark.benchmark(group="caching.hit-redis")
class TestHitRedis:
    def test_get_and_json_loads(self, baseline, redis_client, redis_cache, namespace):
        """A hand-written cache's hit: GET the key built from the argument, then json.loads.

        The key and the value are as long as the ones `RedisCache` stores for
        ``record(1)`` (written by a `cached` function first, then read back).
        """
        body = Body()
        warm_sync(cached(ttl=TTL, cache=redis_cache)(body.record()), body)
        ours = stored_keys(redis_client, namespace)
        assert len(ours) == len(WARM)
        key, raw = min(ours.items())
        assert json.loads(raw) in [{"id": x, "name": "widget"} for x in WARM]
        prefix = f"{namespace}:raw:"
        pad = "x" * (len(key) - len(prefix) - 1)
        for x in WARM:
            redis_client.set(f"{prefix}{pad}{x}", compact({"id": x, "name": "widget"}), ex=TTL)
        assert len(f"{prefix}{pad}1") == len(key)
        assert len(compact(RECORD)) == len(raw)
        client = redis.Redis.from_url(REDIS_URL)

        def hand_written(x: int) -> Any:
            return json.loads(client.get(f"{prefix}{pad}{x}"))

        try:
            assert baseline(hand_written, 1) == RECORD
        finally:
            client.close()

    def test_cached_redis(self, ours, redis_cache):
        body = Body()
        assert hit(ours, cached(ttl=TTL, cache=redis_cache)(body.record()), body, 1) == RECORD


CONCURRENT = 300
"""Async callers at once in ``caching.redis-concurrent``: three times redis-py's pool size."""

CONCURRENT_KEYS = 20
"""Warm keys the concurrent callers spread over."""


def redis_pool_client() -> Any:
    """An asyncio client with the pool `RedisCache` gives itself: 100 connections, waiting."""
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        REDIS_URL, max_connections=100, timeout=1.0, socket_timeout=1.0
    )
    return redis.asyncio.Redis.from_pool(pool)


@pytest.mark.benchmark(group="caching.redis-concurrent")
class TestRedisConcurrent:
    """`CONCURRENT` tasks at once on warm keys: a round is one ``gather`` of them all.

    The baseline is redis-py itself with the same pool (100 connections, callers
    waiting for one): ``GET`` then ``json.loads``, no pipelining. A busy pool is
    back-pressure for both; every call of ours must be a hit.
    """

    def test_raw_get_with_the_same_pool(self, baseline, loop, redis_client, namespace):
        for x in range(CONCURRENT_KEYS):
            redis_client.set(f"{namespace}:raw:{x}", compact({"id": x, "name": "widget"}), ex=TTL)
        client = redis_pool_client()

        async def get(x: int) -> Any:
            return json.loads(await client.get(f"{namespace}:raw:{x}"))

        async def round_() -> list[Any]:
            return await asyncio.gather(*(get(i % CONCURRENT_KEYS) for i in range(CONCURRENT)))

        try:
            results = baseline.pedantic(
                lambda: loop.run_until_complete(round_()), rounds=20, iterations=1
            )
            assert results[1] == {"id": 1, "name": "widget"}
        finally:
            loop.run_until_complete(client.aclose())

    def test_cached_redis(self, ours, loop, redis_cache):
        body = Body()
        record = body.record()

        @cached(ttl=TTL, cache=redis_cache, name="bench.concurrent")
        async def fetch(x: int) -> dict[str, int | str]:
            return record(x)

        async def round_() -> list[Any]:
            return await asyncio.gather(*(fetch(i % CONCURRENT_KEYS) for i in range(CONCURRENT)))

        loop.run_until_complete(round_())  # warm every key
        assert body.runs == CONCURRENT_KEYS
        try:
            results = ours.pedantic(
                lambda: loop.run_until_complete(round_()), rounds=20, iterations=1
            )
            assert results[1] == {"id": 1, "name": "widget"}
            assert body.runs == CONCURRENT_KEYS, "a timed call missed"
            assert not redis_cache.health.incident
        finally:
            loop.run_until_complete(redis_cache.aclose())


@pytest.mark.benchmark(group="caching.hit-tiered")
class TestHitTiered:
    def test_cached_memory(self, baseline):
        body = Body()
        fn = cached(ttl=TTL, cache=MemoryCache(MAXSIZE))(body.record())
        assert hit(baseline, fn, body, 1) == RECORD

    def test_cached_tiered_from_memory(self, ours, redis_client, tiered_cache, namespace):
        """A hit from L1: the Redis copies are deleted first, so memory alone can answer."""
        body = Body()
        fn = cached(ttl=TTL, cache=tiered_cache)(body.record())
        warm_sync(fn, body)
        doomed = list(stored_keys(redis_client, namespace))
        assert len(doomed) == len(WARM)
        redis_client.delete(*doomed)  # not announced: the memory tier keeps its copies
        assert hit(ours, fn, body, 1) == RECORD


# Stampede ---------------------------------------------------------------------------------------

_cold = itertools.count(1_000_000)
"""Arguments never used before: each stampede round calls on a key of its own."""


class SlowBody:
    """A cold key's body: sleeps `SLOW_BODY` seconds and returns its argument, counting runs."""

    def __init__(self) -> None:
        self.runs = 0
        self._lock = threading.Lock()

    def sync(self) -> Callable[[int], int]:
        def slow_value_of(x: int) -> int:
            with self._lock:
                self.runs += 1
            time.sleep(SLOW_BODY)
            return x

        return slow_value_of

    def coroutine(self) -> Callable[[int], Awaitable[int]]:
        async def async_slow_value_of(x: int) -> int:
            self.runs += 1
            await asyncio.sleep(SLOW_BODY)
            return x

        return async_slow_value_of


class Stampede:
    """Rounds of `CALLERS` concurrent calls, each on a fresh cold key, and their body runs."""

    def __init__(self, body: SlowBody) -> None:
        self.body = body
        self.runs: list[int] = []

    def threads(self, fn: Callable[[int], int]) -> Callable[[], int]:
        """One round: `CALLERS` threads released together by a barrier, each calling ``fn(x)``."""

        def run() -> int:
            x = next(_cold)
            before = self.body.runs
            barrier = threading.Barrier(CALLERS)
            results: list[int | None] = [None] * CALLERS

            def work(i: int) -> None:
                barrier.wait()
                results[i] = fn(x)

            threads = [
                threading.Thread(target=work, args=(i,), daemon=True) for i in range(CALLERS)
            ]
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + JOIN_TIMEOUT
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            if any(thread.is_alive() for thread in threads):
                raise TimeoutError(f"{CALLERS} threads did not finish within {JOIN_TIMEOUT}s")
            assert results == [x] * CALLERS, "a caller got a wrong value or raised"
            self.runs.append(self.body.runs - before)
            return self.runs[-1]

        return run

    def tasks(
        self, loop: asyncio.AbstractEventLoop, fn: Callable[[int], Awaitable[int]]
    ) -> Callable[[], int]:
        """One round: `CALLERS` tasks gathered on ``fn(x)``, started in the same loop turn."""

        async def gather(x: int) -> list[int]:
            return await asyncio.wait_for(
                asyncio.gather(*(fn(x) for _ in range(CALLERS))), JOIN_TIMEOUT
            )

        def run() -> int:
            x = next(_cold)
            before = self.body.runs
            assert loop.run_until_complete(gather(x)) == [x] * CALLERS
            self.runs.append(self.body.runs - before)
            return self.runs[-1]

        return run

    def record(self, benchmark: Any, run: Callable[[], int]) -> int:
        """Time three rounds; put the worst round's body runs in ``extra_info["body_runs"]``."""
        benchmark.pedantic(run, rounds=3, iterations=1)
        worst = max(self.runs)
        benchmark.extra_info["body_runs"] = worst
        return worst


@pytest.mark.benchmark(group="caching.stampede")
class TestStampede:
    def test_cachetools_ttl_cache_locked_threads(self, baseline):
        """The lock guards the cache, not the call: every caller runs the body."""
        body = SlowBody()
        stampede = Stampede(body)
        assert stampede.record(baseline, stampede.threads(cachetools_locked(body.sync()))) >= 1

    def test_cachetools_ttl_cache_condition_threads(self, peer):
        body = SlowBody()
        stampede = Stampede(body)
        assert stampede.record(peer, stampede.threads(cachetools_condition(body.sync()))) >= 1

    def test_async_lru_tasks(self, peer, loop):
        body = SlowBody()
        stampede = Stampede(body)
        fn = async_lru.alru_cache(maxsize=MAXSIZE, ttl=TTL)(body.coroutine())
        assert stampede.record(peer, stampede.tasks(loop, fn)) >= 1

    def test_aiocache_tasks(self, peer, loop):
        body = SlowBody()
        stampede = Stampede(body)
        fn = aiocache.cached(ttl=TTL)(body.coroutine())
        assert stampede.record(peer, stampede.tasks(loop, fn)) >= 1

    def test_aiocache_cached_stampede_tasks(self, peer, loop):
        """aiocache's opt-in ``cached_stampede``: one caller takes a lease, the others poll."""
        body = SlowBody()
        stampede = Stampede(body)
        fn = aiocache.cached_stampede(ttl=TTL, lease=2)(body.coroutine())
        assert stampede.record(peer, stampede.tasks(loop, fn)) >= 1

    def test_cashews_tasks(self, peer, loop):
        body = SlowBody()
        stampede = Stampede(body)
        assert stampede.record(peer, stampede.tasks(loop, cashews_cache(body.coroutine()))) >= 1

    def test_cached_threads(self, ours):
        body = SlowBody()
        stampede = Stampede(body)
        assert stampede.record(ours, stampede.threads(cached(ttl=TTL)(body.sync()))) == 1

    def test_cached_tasks(self, ours, loop):
        body = SlowBody()
        stampede = Stampede(body)
        assert stampede.record(ours, stampede.tasks(loop, cached(ttl=TTL)(body.coroutine()))) == 1
