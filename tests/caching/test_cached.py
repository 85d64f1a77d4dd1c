"""The `cached` decorator itself: listeners, stats, key errors, leases and bindings.

Each test says what a caller of `cached` relies on; most run over every cache
(`MemoryCache`, `RedisCache`, `TieredCache`) and for a ``def`` and an ``async def``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from caching_flavours import Flavour

from buttress.caching import CacheListener, MemoryCache, RedisCache, TieredCache, cached
from buttress.errors import CacheKeyError, ConfigurationError, UnavailableError


class Heard(CacheListener):
    """Records every hit and miss with the key it was told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, Any]] = []

    def on_hit(self, name: str, key: Any) -> None:
        self.events.append(("hit", name, key))

    def on_miss(self, name: str, key: Any) -> None:
        self.events.append(("miss", name, key))


class Broken(CacheListener):
    def __repr__(self) -> str:
        return "<broken listener>"

    def on_hit(self, name: str, key: Any) -> None:
        raise RuntimeError("metrics down")

    def on_miss(self, name: str, key: Any) -> None:
        raise RuntimeError("metrics down")


class Grumpy:
    """Compares fine, but its hash raises."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Grumpy)

    def __hash__(self) -> int:
        raise ValueError("no hash for you")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- listeners and stats -------------------------------------------------------------------


def test_listeners_hear_each_hit_and_miss_with_its_key(cache: Any, flavour: Flavour) -> None:
    heard = Heard()
    cached_double = cached(cache=cache, listeners=[heard], name=f"double-{uuid.uuid4().hex}")(
        flavour.twin(lambda x: 2 * x)
    )
    name = cached_double.name
    assert [flavour.call(cached_double, x) for x in (1, 1, 2)] == [2, 2, 4]
    assert [(event, told) for event, told, _ in heard.events] == [
        ("miss", name),
        ("hit", name),
        ("miss", name),
    ]
    first, again, second = (key for _, _, key in heard.events)
    assert first == again != second
    assert name in repr(first)  # a key says whose it is


def test_a_failing_listener_is_logged_with_what_failed_and_the_call_goes_on(
    cache: Any, flavour: Flavour, caplog: pytest.LogCaptureFixture
) -> None:
    cached_double = cached(cache=cache, listeners=[Broken()])(flavour.twin(lambda x: 2 * x))
    with caplog.at_level(logging.ERROR, logger="buttress.caching"):
        assert flavour.call(cached_double, 1) == 2
        assert flavour.call(cached_double, 1) == 2
    messages = [record.getMessage() for record in caplog.records]
    assert any("<broken listener>" in text and "on_miss" in text for text in messages)
    assert any("<broken listener>" in text and "on_hit" in text for text in messages)


def test_stats_report_the_size_and_evictions_of_the_memory_cache(flavour: Flavour) -> None:
    cached_ident = cached(cache=MemoryCache(maxsize=2))(flavour.twin(lambda x: x))
    for x in (1, 2, 3):
        flavour.call(cached_ident, x)
    stats = cached_ident.stats()
    assert (stats.hits, stats.misses, stats.size, stats.evictions) == (0, 3, 2, 1)


# -- calls keyed and computed right ----------------------------------------------------------


def test_keyword_only_bodies_get_their_keywords(cache: Any, flavour: Flavour) -> None:
    def options(**chosen: int) -> str:
        return ",".join(f"{name}={value}" for name, value in sorted(chosen.items()))

    cached_options = cached(cache=cache)(flavour.twin(options))
    assert flavour.call(cached_options, b=2, a=1) == "a=1,b=2"
    assert flavour.call(cached_options, a=1) == "a=1"


@pytest.mark.parametrize("single_flight", [True, False], ids=["single-flight", "each-alone"])
def test_each_key_gets_its_own_value_with_or_without_single_flight(
    cache: Any, flavour: Flavour, single_flight: bool
) -> None:
    runs: list[int] = []

    def square(x: int) -> int:
        runs.append(x)
        return x * x

    cached_square = cached(cache=cache, single_flight=single_flight)(flavour.twin(square))
    assert [flavour.call(cached_square, x) for x in (2, 3, 2, 3)] == [4, 9, 4, 9]
    assert runs == [2, 3]


@pytest.mark.asyncio
@pytest.mark.parametrize("cache_kind", ["memory", "redis"])
async def test_concurrent_async_misses_on_different_keys_each_get_their_own_value(
    cache_kind: str, request: pytest.FixtureRequest
) -> None:
    store: Any = MemoryCache()
    if cache_kind == "redis":
        store = RedisCache(request.getfixturevalue("redis_url"), namespace=uuid.uuid4().hex)

    @cached(cache=store)
    async def square(x: int) -> int:
        await asyncio.sleep(0.01)
        return x * x

    try:
        assert await asyncio.gather(square(2), square(3), square(4)) == [4, 9, 16]
    finally:
        store.clear()
        store.close()


def test_without_single_flight_concurrent_threads_each_run_the_body() -> None:
    both_inside = threading.Barrier(2, timeout=10)  # broken if one caller waits for the other

    @cached(single_flight=False)
    def slow(x: int) -> int:
        both_inside.wait()
        return x

    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(slow(1))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [1, 1]
    assert not both_inside.broken


def test_a_key_function_gets_the_call_as_made_and_its_type_stays_in_the_key(
    cache: Any, flavour: Flavour
) -> None:
    runs: list[tuple[Any, str]] = []

    def price(sku: Any, *, region: str) -> str:
        runs.append((sku, region))
        return f"{sku!r}@{region}"

    by_sku = cached(cache=cache, key=lambda sku, *, region: sku)(flavour.twin(price))
    assert by_sku.cache is cache
    calls = [(1, "eu"), (True, "eu"), (1, "us")]
    results = [flavour.call(by_sku, sku, region=region) for sku, region in calls]
    assert results == ["1@eu", "True@eu", "1@eu"]  # 1 and True differ; the region is no key
    assert runs == [(1, "eu"), (True, "eu")]


# -- arguments that cannot be keyed ------------------------------------------------------------


def test_an_unhashable_argument_is_a_cache_key_error_naming_it(
    cache: Any, flavour: Flavour
) -> None:
    def size(items: Any) -> int:
        return len(items)

    cached_size = cached(cache=cache)(flavour.twin(size))
    with pytest.raises(CacheKeyError, match=r"argument 1 \(list\)"):
        flavour.call(cached_size, [1, 2])


def test_an_argument_whose_hash_raises_is_a_cache_key_error_caused_by_it(
    cache: Any, flavour: Flavour
) -> None:
    cached_one = cached(cache=cache)(flavour.twin(lambda value: 1))
    with pytest.raises(CacheKeyError, match=r"argument 1 \(Grumpy\)") as raised:
        flavour.call(cached_one, Grumpy())
    assert isinstance(raised.value.__cause__, ValueError)
    assert flavour.call(cached_one, 1) == 1


def test_a_key_function_that_fails_is_a_cache_key_error_naming_the_fix(flavour: Flavour) -> None:
    def refuse(x: int) -> int:
        raise LookupError("no such record")

    cached_ident = cached(key=refuse)(flavour.twin(lambda x: x))
    with pytest.raises(CacheKeyError) as raised:
        flavour.call(cached_ident, 1)
    message = str(raised.value)
    assert "keying its arguments raised LookupError: no such record" in message
    assert "Pass arguments whose == and hash work, or pass key= to cached" in message
    assert isinstance(raised.value.__cause__, LookupError)


def test_a_too_deeply_nested_argument_names_the_fix(flavour: Flavour) -> None:
    cached_one = cached()(flavour.twin(lambda value: 1))
    deep: Any = ()
    for _ in range(100_000):
        deep = (deep,)
    with pytest.raises(CacheKeyError, match="nested too deeply to be keyed") as raised:
        flavour.call(cached_one, deep)
    assert "Pass key= to cached to say how calls are keyed" in str(raised.value)
    assert isinstance(raised.value.__cause__, RecursionError)


# -- invalidate_strict ---------------------------------------------------------------------------


def test_invalidate_strict_drops_the_entry(cache: Any, flavour: Flavour) -> None:
    runs: list[int] = []

    def square(x: int) -> int:
        runs.append(x)
        return x * x

    cached_square = cached(cache=cache)(flavour.twin(square))
    flavour.call(cached_square, 2)
    flavour.call(cached_square, 3)
    strict = (
        cached_square.ainvalidate_strict if flavour.is_async else cached_square.invalidate_strict
    )
    flavour.run(strict(2))
    assert [flavour.call(cached_square, x) for x in (2, 3)] == [4, 9]
    assert runs == [2, 3, 2]


def test_invalidate_strict_says_when_redis_could_not_take_it(flavour: Flavour) -> None:
    cache = RedisCache(f"redis://127.0.0.1:{closed_port()}/0", namespace="dead")
    cached_square = cached(cache=cache)(flavour.twin(lambda x: x * x))
    try:
        if flavour.is_async:
            flavour.run(cached_square.ainvalidate(2))  # kept for later, no error
            with pytest.raises(UnavailableError):
                flavour.run(cached_square.ainvalidate_strict(2))
        else:
            cached_square.invalidate(2)
            with pytest.raises(UnavailableError):
                cached_square.invalidate_strict(2)
    finally:
        cache.close()


# -- another process computing the same key ---------------------------------------------------


class Holder:
    """A call of one key through its own RedisCache, as another process would make it.

    Its body starts, then waits for `finish`; it returns ``"theirs"`` or raises.
    """

    def __init__(self, url: str, namespace: str, name: str) -> None:
        self.cache = RedisCache(url, namespace=namespace)
        self.inside = threading.Event()
        self.go = threading.Event()
        self.fail = False

        @cached(cache=self.cache, name=name)
        def body(x: int) -> str:
            self.inside.set()
            assert self.go.wait(timeout=10)
            if self.fail:
                raise RuntimeError("the other process failed")
            return "theirs"

        self.thread = threading.Thread(target=self.run, args=(body,))
        self.thread.start()
        assert self.inside.wait(timeout=10)  # it holds the lease now

    def run(self, body: Callable[[int], str]) -> None:
        with contextlib.suppress(RuntimeError):  # the failure is the point
            body(1)

    def finish(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.go.set()
        self.thread.join(timeout=10)

    def close(self) -> None:
        self.finish()
        self.cache.clear()
        self.cache.close()


class Waiter:
    """The same function through another RedisCache: called in a thread, told when it missed."""

    def __init__(
        self, url: str, namespace: str, name: str, flavour: Flavour, **options: Any
    ) -> None:
        self.cache = RedisCache(url, namespace=namespace, **options)
        self.runs = 0
        self.missed = threading.Event()
        self.result: list[Any] = []
        waiter = self

        class Missed(CacheListener):
            def on_miss(self, name: str, key: Any) -> None:
                waiter.missed.set()

        def body(x: int) -> str:
            self.runs += 1
            return "mine"

        self.function = cached(cache=self.cache, name=name, listeners=[Missed()])(
            flavour.twin(body)
        )
        self.is_async = flavour.is_async
        self.thread = threading.Thread(target=self.call)
        self.thread.start()
        assert self.missed.wait(timeout=10)

    def call(self) -> None:
        called = self.function(1)
        self.result.append(asyncio.run(called) if self.is_async else called)

    def outcome(self) -> Any:
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()
        return self.result[0]

    def close(self) -> None:
        self.cache.close()


@pytest.fixture
def two_processes(redis_url: str) -> Iterator[Callable[..., tuple[Holder, Waiter]]]:
    made: list[Holder | Waiter] = []
    namespace, name = f"test-{uuid.uuid4().hex[:12]}", "tests.lease"

    def make(flavour: Flavour, **options: Any) -> tuple[Holder, Waiter]:
        holder = Holder(redis_url, namespace, name)
        made.append(holder)
        waiter = Waiter(redis_url, namespace, name, flavour, **options)
        made.append(waiter)
        return holder, waiter

    yield make
    for party in reversed(made):
        party.close()


def test_a_caller_waits_for_the_lease_holders_value(
    two_processes: Callable[..., tuple[Holder, Waiter]], flavour: Flavour
) -> None:
    holder, waiter = two_processes(flavour)
    threading.Event().wait(0.2)  # let the waiter start polling the lease
    holder.finish()
    assert waiter.outcome() == "theirs"
    assert waiter.runs == 0


def test_a_caller_computes_itself_when_the_lease_holder_fails(
    two_processes: Callable[..., tuple[Holder, Waiter]], flavour: Flavour
) -> None:
    holder, waiter = two_processes(flavour)
    threading.Event().wait(0.2)  # let the waiter start polling the lease
    holder.finish(fail=True)
    assert waiter.outcome() == "mine"
    assert waiter.runs == 1


def test_a_caller_computes_itself_after_three_lease_waits_in_vain(
    two_processes: Callable[..., tuple[Holder, Waiter]],
    flavour: Flavour,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from buttress.caching import _redis  # noqa: PLC0415 - counts the lease attempts

    begins: list[str] = []
    for method in ("run", "arun"):
        original = getattr(RedisCache, method)

        def counting(self: Any, script: Any, *args: Any, _original: Any = original) -> Any:
            if script is _redis._BEGIN and self.lease_ttl < 1:
                begins.append("begin")
            return _original(self, script, *args)

        monkeypatch.setattr(RedisCache, method, counting)
    _, waiter = two_processes(flavour, lease_ttl=0.1)  # the holder keeps its lease throughout
    assert waiter.outcome() == "mine"
    assert waiter.runs == 1
    assert len(begins) == 4  # the first lookup, then one after each of three waits


# -- binding a cache outside the process to the return annotation ------------------------------


def test_an_annotation_that_never_resolves_is_refused_at_the_first_call_with_the_fix(
    flavour: Flavour,
) -> None:
    cache = RedisCache(f"redis://127.0.0.1:{closed_port()}/0", namespace="never-connected")

    def load(x: int) -> Nowhere:  # type: ignore[name-defined] # noqa: F821 - on purpose
        return x

    try:
        cached_load = cached(cache=cache)(flavour.twin(load))
        with pytest.raises(ConfigurationError) as raised:
            flavour.call(cached_load, 1)
    finally:
        cache.close()
    message = str(raised.value)
    assert "cannot resolve the return annotation of" in message
    assert "Nowhere" in message
    assert "A cache outside the process decodes values to that type" in message
    assert "make the annotation resolvable at module level" in message


def test_an_unstorable_annotation_is_refused_at_decoration() -> None:
    cache = RedisCache(f"redis://127.0.0.1:{closed_port()}/0", namespace="never-connected")

    def make() -> Callable[[], int]:
        return lambda: 1

    try:
        with pytest.raises(ConfigurationError):
            cached(cache=cache)(make)
    finally:
        cache.close()


@dataclasses.dataclass(frozen=True)
class Receipt:
    """Named by a function decorated before the name resolves (see below)."""

    total: int


def test_a_function_returning_a_class_defined_later_is_bound_at_its_first_call(
    redis_url: str, flavour: Flavour
) -> None:
    cache = RedisCache(redis_url, namespace=f"test-{uuid.uuid4().hex[:12]}")
    runs: list[int] = []

    def receipt(total: int) -> Later:  # type: ignore[name-defined] # noqa: F821 - on purpose
        runs.append(total)
        return Receipt(total)

    cached_receipt = cached(cache=cache)(flavour.twin(receipt))
    globals()["Later"] = Receipt
    try:
        first = flavour.call(cached_receipt, 5)
        again = flavour.call(cached_receipt, 5)
    finally:
        globals().pop("Later", None)
        cache.clear()
        cache.close()
    assert first == again == Receipt(5)
    assert type(again) is Receipt
    assert runs == [5]


# -- names, lifetimes and the memory tier ----------------------------------------------------


def plain(x: int) -> int:
    return x


class Pricer:
    def __call__(self, x: int) -> int:
        return x


def test_the_default_name_is_module_and_qualname() -> None:
    assert cached()(plain).name == f"{__name__}.plain"
    assert cached()(Pricer()).name == f"{__name__}.Pricer"  # the class, not __call__
    assert cached()(Pricer.__call__).name == f"{__name__}.Pricer.__call__"  # a function
    assert cached()(abs).name == "builtins.abs"  # builtins and classes: named as they are
    assert cached()(Receipt).name == f"{__name__}.Receipt"


def test_the_wrapper_runs_under_the_functions_own_name(flavour: Flavour) -> None:
    def area(width: int) -> int:
        return width * width

    cached_area = cached()(flavour.twin(area))
    assert flavour.call(cached_area, 3) == 9
    code = cached_area.__code__  # what tracebacks and profilers show
    assert (code.co_name, code.co_qualname) == ("area", area.__qualname__)


@pytest.mark.parametrize("ttl", [100.0, None])
def test_ttl_jitter_only_ever_lengthens_a_ttl(flavour: Flavour, ttl: float | None) -> None:
    cache = MemoryCache()
    cached_ident = cached(ttl=ttl, ttl_jitter=0.5, cache=cache)(flavour.twin(lambda x: x))
    before = time.monotonic()
    for x in range(20):
        assert flavour.call(cached_ident, x) == x
    after = time.monotonic()
    expiries = [expires for _, expires in cache.entries.values()]
    if ttl is None:
        assert expiries == [math.inf] * 20  # nothing to jitter: entries never expire
    else:
        assert all(before + ttl <= expires <= after + 1.5 * ttl for expires in expiries)


def test_a_tiered_memory_copy_is_served_for_local_ttl_only(
    redis_url: str, flavour: Flavour
) -> None:
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    redis_cache = RedisCache(redis_url, namespace=namespace)
    tiered = TieredCache(redis_cache, local_ttl=1.0)  # ample for a loaded machine
    runs: list[int] = []

    def square(x: int) -> int:
        runs.append(x)
        return x * x

    cached_square = cached(cache=tiered)(flavour.twin(square))
    try:
        assert flavour.call(cached_square, 3) == 9
        raw = redis.Redis.from_url(redis_url)
        for name in raw.scan_iter(match=f"*{namespace}*"):  # gone from Redis, unannounced
            raw.delete(name)
        raw.close()
        assert flavour.call(cached_square, 3) == 9  # the memory copy
        assert runs == [3]
        time.sleep(1.1)
        assert flavour.call(cached_square, 3) == 9  # the copy lapsed: computed again
        assert runs == [3, 3]
    finally:
        tiered.clear()
        tiered.close()
        redis_cache.close()


def test_hits_served_from_the_tiered_memory_copy_keep_it_recently_used(redis_url: str) -> None:
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    redis_cache = RedisCache(redis_url, namespace=namespace)
    tiered = TieredCache(redis_cache, maxsize=2)
    runs: list[int] = []

    @cached(cache=tiered)
    def square(x: int) -> int:
        runs.append(x)
        return x * x

    try:
        square(1)
        square(2)
        for _ in range(64):  # hits from memory, some recorded for the policy
            square(1)
        square(3)  # memory holds two: the least recently used copy, of 2, goes
        raw = redis.Redis.from_url(redis_url)
        for name in raw.scan_iter(match=f"*{namespace}*"):  # gone from Redis, unannounced
            raw.delete(name)
        raw.close()
        assert [square(x) for x in (1, 2)] == [1, 4]
        assert runs == [1, 2, 3, 2]  # 1 still came from memory, 2 did not
    finally:
        tiered.clear()
        tiered.close()
        redis_cache.close()


# -- what decoration refuses, and how it says so -----------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"maxsize": True}, "maxsize must be a positive integer, got True"),
        ({"maxsize": "10"}, "maxsize must be a positive integer, got '10'"),
        ({"ttl_jitter": 1}, "ttl_jitter must be a fraction of ttl in [0, 1), got 1"),
        ({"ttl_jitter": True}, "ttl_jitter must be a fraction of ttl in [0, 1), got True"),
        ({"ttl_jitter": "0.1"}, "ttl_jitter must be a fraction of ttl in [0, 1), got '0.1'"),
        (
            {"maxsize": 10, "cache": MemoryCache()},
            (
                "maxsize sizes the memory cache cached makes when no cache is given; "
                "size the cache you pass instead (MemoryCache(maxsize=...))"
            ),
        ),
    ],
)
def test_each_refused_argument_is_one_problem_saying_what_to_pass(
    kwargs: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        cached(**kwargs)
    assert raised.value.problems == (problem,)
    assert str(raised.value).startswith("cached got invalid arguments:\n")


def test_the_smallest_sizes_and_jitters_are_accepted(flavour: Flavour) -> None:
    cached_ident = cached(ttl=60, maxsize=1, ttl_jitter=0)(flavour.twin(lambda x: x))
    assert [flavour.call(cached_ident, x) for x in (1, 2, 2)] == [1, 2, 2]
    assert cached_ident.stats().hits == 1


def test_a_static_or_class_method_object_is_refused_with_where_to_put_cached() -> None:
    with pytest.raises(ConfigurationError) as raised:
        cached()(classmethod(plain))  # type: ignore[arg-type]
    assert "with @classmethod or @staticmethod, put @cached below it" in str(raised.value)


def test_a_generator_function_is_refused_by_its_name() -> None:
    def numbers() -> Iterator[int]:
        yield 1

    with pytest.raises(ConfigurationError, match="cannot store what .*numbers returns"):
        cached()(numbers)


def test_a_method_on_a_shared_cache_is_refused_with_the_key_to_pass() -> None:
    cache = RedisCache(f"redis://127.0.0.1:{closed_port()}/0", namespace="never-connected")

    class Orders:
        def total(self, order_id: int) -> int:
            return order_id

    try:
        with pytest.raises(ConfigurationError) as raised:
            cached(cache=cache, name="orders.total")(Orders.total)
    finally:
        cache.close()
    assert str(raised.value) == (
        "orders.total is a method and its cache is shared between processes, where an "
        "instance has no identity: pass key= to say how calls are keyed, such as "
        "key=lambda self, order_id: order_id"
    )


def test_a_memory_cache_needs_no_resolvable_annotation(flavour: Flavour) -> None:
    def load(x: int) -> Nowhere:  # type: ignore[name-defined] # noqa: F821 - on purpose
        return x

    cached_load = cached()(flavour.twin(load))
    assert flavour.call(cached_load, 1) == flavour.call(cached_load, 1) == 1


@pytest.mark.asyncio
async def test_an_async_def_on_a_cache_with_only_an_async_client_never_needs_a_sync_one(
    redis_url: str,
) -> None:
    import redis.asyncio  # noqa: PLC0415 - the async client only

    client = redis.asyncio.Redis.from_url(redis_url)
    cache = RedisCache(async_client=client, namespace=f"test-{uuid.uuid4().hex[:12]}")
    runs: list[int] = []

    @cached(cache=cache)
    async def square(x: int) -> int:
        runs.append(x)
        return x * x

    try:
        assert [await square(x) for x in (2, 2, 3)] == [4, 4, 9]
        assert runs == [2, 3]
        await cache.aclear()
    finally:
        await cache.aclose()
        await client.aclose()
