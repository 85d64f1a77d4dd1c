"""RedisCache against a real Redis: serializers, key text, TTLs, tags, leases, outages."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import json
import logging
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr

from buttress.caching import cached
from buttress.caching._backend import MISSING
from buttress.caching._keys import InstanceToken
from buttress.caching._redis import RedisCache
from buttress.caching._serial import (
    MAX_READABLE,
    JsonSerializer,
    PickleSerializer,
    encode_key,
)
from buttress.errors import (
    CacheKeyError,
    ConfigurationError,
    DecodeError,
    MissingDependencyError,
    UnavailableError,
)
from buttress.settings import CacheSettings, RedisSettings
from fault_proxy import FaultProxy

HERE = Path(__file__).parent
KEY = "k" * 32
LOGGER = "buttress.caching"


# -- values that go through JSON ---------------------------------------------------------


class Address(BaseModel):
    street: str
    moved_in: dt.date


class Customer(BaseModel):
    id: uuid.UUID
    name: str
    joined: dt.datetime
    balance: Decimal
    addresses: list[Address]


@dataclasses.dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str | None = None


class Shade(enum.Enum):
    LIGHT = "light"
    DARK = "dark"


class Number(enum.IntEnum):
    ONE = 1


class Word(enum.StrEnum):
    ONE = "1"


class Loud:
    """Records being unpickled: a tampered pickle must never get that far."""

    loaded: list[str] = []  # noqa: RUF012 - a class-level record on purpose

    def __init__(self, word: str) -> None:
        self.word = word

    def __reduce__(self) -> tuple[Any, ...]:
        return (_loud, (self.word,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Loud) and other.word == self.word

    __hash__ = None  # type: ignore[assignment]


def _loud(word: str) -> Loud:
    Loud.loaded.append(word)
    return Loud(word)


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def make(redis_url: str, namespace: str) -> Iterator[Callable[..., RedisCache]]:
    made: list[RedisCache] = []

    def make(**options: Any) -> RedisCache:
        options.setdefault("namespace", namespace)
        cache = RedisCache(options.pop("url", redis_url), **options)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()


@pytest.fixture
def cache(make: Callable[..., RedisCache]) -> RedisCache:
    return make()


def key(*parts: Any) -> tuple[Any, ...]:
    """A canonical key as the decorator builds it: identity, values, then their types."""
    return (object(), *parts, *map(type, parts))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def warnings_in(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == LOGGER and record.levelno == logging.WARNING
    ]


def wait_until(condition: Callable[[], bool], seconds: float = 2.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


# -- JSON -----------------------------------------------------------------------------


CUSTOMER = Customer(
    id=uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e"),
    name="Ada",
    joined=dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=dt.UTC),
    balance=Decimal("1234.50"),
    addresses=[Address(street="1 Loop Road", moved_in=dt.date(2020, 1, 31))],
)

ROUND_TRIPS: list[tuple[Any, Any]] = [
    (Customer, CUSTOMER),
    (list[Customer], [CUSTOMER, CUSTOMER]),
    (Point, Point(1.5, -2.0, "origin-ish")),
    (dt.datetime, dt.datetime(2023, 12, 31, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=5)))),
    (dt.date, dt.date(1999, 12, 31)),
    (uuid.UUID, uuid.UUID("12345678-1234-5678-1234-567812345678")),
    (Decimal, Decimal("0.10")),
    (Shade, Shade.DARK),
    (tuple[int, str], (1, "a")),
    (frozenset[int], frozenset({1, 2, 3})),
    (dict[str, list[int]], {"a": [1, 2], "b": []}),
    (float, float("inf")),
    (int | None, None),
    (bytes, b"\x00\xff"),
    (Any, {"plain": ["json", 1, 2.5, True, None]}),
]


@pytest.mark.parametrize(("returns", "value"), ROUND_TRIPS, ids=lambda item: repr(item)[:30])
def test_json_round_trips_to_the_annotated_type(
    cache: RedisCache, returns: Any, value: Any
) -> None:
    view = cache.bind("tests.round_trip", returns)
    k = key("x")
    view.set(k, value, 60, ())
    back = view.get(k)
    assert back == value
    assert type(back) is type(value)


@pytest.mark.asyncio
async def test_json_round_trips_through_the_async_client(cache: RedisCache) -> None:
    view = cache.bind("tests.async_round_trip", Customer)
    k = key(7)
    await view.aset(k, CUSTOMER, 60, ())
    assert await view.aget(k) == CUSTOMER
    assert view.get(k) == CUSTOMER  # the sync client reads what the async one wrote
    await cache.aclose()


def test_json_nan_survives(cache: RedisCache) -> None:
    view = cache.bind("tests.nan", float)
    view.set(key(1), float("nan"), 60, ())
    value = view.get(key(1))
    assert value != value  # noqa: PLR0124 - NaN is the only value unequal to itself


def test_a_value_that_does_not_match_the_annotation_is_not_stored(
    cache: RedisCache, raw: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    view = cache.bind("tests.mismatch", int)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        view.set(key(1), "not an int", 60, ())
        view.set(key(2), "still not", 60, ())
    assert view.get(key(1)) is MISSING
    assert list(raw.scan_iter(f"{cache.prefix}*")) == []
    [warning] = warnings_in(caplog)  # once per function, not per call
    assert "tests.mismatch" in warning
    assert "pickle" in warning  # says what to do


def test_without_an_annotation_only_plain_json_is_stored(
    cache: RedisCache, caplog: pytest.LogCaptureFixture
) -> None:
    view = cache.bind("tests.plain", Any)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        view.set(key(1), dt.datetime(2024, 1, 1, tzinfo=dt.UTC), 60, ())
    assert view.get(key(1)) is MISSING  # would read back as a str: refused
    assert len(warnings_in(caplog)) == 1


def test_a_return_type_pydantic_cannot_serialize_is_refused_at_bind(cache: RedisCache) -> None:
    class Opaque:
        pass

    with pytest.raises(ConfigurationError, match="serializer='pickle'"):
        cache.bind("tests.opaque", Opaque)


def test_json_serializer_decode_errors_are_decode_errors() -> None:
    with pytest.raises(DecodeError) as caught:
        JsonSerializer(int).loads(b'"nope"')
    assert isinstance(caught.value, ValueError)
    with pytest.raises(DecodeError):
        JsonSerializer().loads(b"{not json")


# -- pickle ---------------------------------------------------------------------------


def test_pickle_round_trips_anything_picklable(make: Callable[..., RedisCache]) -> None:
    cache = make(serializer="pickle", signing_key=SecretStr(KEY))
    view = cache.bind("tests.pickled", Any)
    value = {"set": {1, 2}, "point": Point(1, 2), "when": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}
    view.set(key(1), value, 60, ())
    assert view.get(key(1)) == value


def test_a_tampered_pickle_is_refused_deleted_and_never_unpickled(
    make: Callable[..., RedisCache], raw: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    cache = make(serializer="pickle", signing_key=KEY)
    view = cache.bind("tests.tampered", Any)
    k = key(1)
    view.set(k, Loud("genuine"), 60, ())
    text = view.text(k)
    stored = raw.get(text)
    assert isinstance(stored, bytes)
    assert stored[32:] == pickle.dumps(Loud("genuine"), protocol=pickle.HIGHEST_PROTOCOL)
    Loud.loaded.clear()
    raw.set(text, stored[:32] + pickle.dumps(Loud("evil")))  # a valid pickle, wrong signature
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert view.get(k) is MISSING
    assert Loud.loaded == []  # never unpickled
    assert raw.exists(text) == 0  # deleted
    [warning] = warnings_in(caplog)
    assert "signature" in warning
    assert KEY not in warning


def test_a_pickle_signed_with_another_key_is_refused() -> None:
    data = PickleSerializer("a" * 32).dumps([1, 2])
    with pytest.raises(DecodeError, match="signature"):
        PickleSerializer("b" * 32).loads(data)
    with pytest.raises(DecodeError):
        PickleSerializer("b" * 32).loads(b"short")
    assert PickleSerializer("a" * 32).loads(data) == [1, 2]


@pytest.mark.parametrize("signing_key", [None, "s3cr3t-but-short", SecretStr("x" * 31)])
def test_pickle_needs_a_long_signing_key(redis_url: str, signing_key: Any) -> None:
    with pytest.raises(ConfigurationError, match="32 characters") as caught:
        RedisCache(redis_url, serializer="pickle", signing_key=signing_key)
    if signing_key is not None:
        secret = (
            signing_key.get_secret_value() if isinstance(signing_key, SecretStr) else signing_key
        )
        assert secret not in str(caught.value)


def test_the_signing_key_never_shows() -> None:
    serializer = PickleSerializer(KEY)
    assert KEY not in repr(serializer)


# -- key text ---------------------------------------------------------------------------


def test_equal_looking_keys_of_different_types_differ() -> None:
    lookalikes: list[Any] = [
        1,
        1.0,
        True,
        "1",
        b"1",
        (1,),
        frozenset({1}),
        Decimal(1),
        Number.ONE,
        Word.ONE,
        0,
        0.0,
        -0.0,
        False,
        None,
        "None",
        "",
        b"",
        (),
        frozenset(),
        ((),),
        (frozenset(),),
        "i1",
        "(i1)",
        ("1",),
        int,
        "builtins:int",
        dt.date(2024, 1, 1),
        dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        "2024-01-01",
        uuid.UUID(int=1),
        Shade.LIGHT,
        "light",
    ]
    texts = [encode_key((item,)) for item in lookalikes]
    assert len(set(texts)) == len(lookalikes), texts


def test_key_text_is_readable_when_short_and_hashed_when_long() -> None:
    assert encode_key((1, "a", None, (True, 1.5), b"\x01")) == '(i1,s"a",n,(T,f1.5),b01)'
    assert encode_key((Shade.DARK, int)) == (f'(e"{__name__}:Shade"s"dark",c"builtins:int")')
    long = encode_key(("x" * MAX_READABLE,))
    assert long.startswith("#")
    assert len(long) == 41
    assert long != encode_key(("x" * (MAX_READABLE + 1),))


def test_frozensets_are_keyed_by_sorted_item_text() -> None:
    assert encode_key((frozenset({"b", "a", "c"}),)) == '({s"a",s"b",s"c"})'


def test_huge_integers_have_a_key_text() -> None:
    huge = 10**5000
    assert encode_key((huge,)) != encode_key((huge + 1,))


@pytest.mark.parametrize(
    "value", [object(), [1], {"a": 1}, Point(1, 2), InstanceToken(), 1j, dt.timedelta(1)]
)
def test_values_without_a_stable_text_are_refused(value: Any) -> None:
    with pytest.raises(CacheKeyError, match="key=") as caught:
        encode_key((1, value))
    assert isinstance(caught.value, TypeError)
    assert "0x" not in str(caught.value)  # no repr of arbitrary objects


def test_a_method_instance_is_named_as_such() -> None:
    with pytest.raises(CacheKeyError, match=r"method's instance \(self\)"):
        encode_key((InstanceToken(),))


def test_a_redis_view_refuses_unkeyable_arguments(cache: RedisCache) -> None:
    view = cache.bind("tests.unkeyable", int)
    with pytest.raises(CacheKeyError):
        view.get(key(object()))


def canon(value: Any) -> Any:  # noqa: PLR0911 - one case per kind of item
    """A structure equal for two values exactly when they are the same key item."""
    if isinstance(value, enum.Enum):
        return ("enum", type(value).__qualname__, value.name)
    if isinstance(value, tuple):
        return ("tuple", tuple(canon(item) for item in value))
    if isinstance(value, frozenset):
        return ("frozenset", frozenset(canon(item) for item in value))
    if isinstance(value, float):
        return ("float", repr(value))
    if isinstance(value, type):
        return ("type", value.__module__, value.__qualname__)
    if isinstance(value, Decimal | dt.datetime | dt.time):
        return (type(value).__name__, str(value))
    return (type(value).__name__, value)


LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.uuids(),
    st.dates(),
    st.datetimes(timezones=st.sampled_from([None, dt.UTC, dt.timezone(dt.timedelta(hours=-3))])),
    st.times(),
    st.decimals(allow_nan=False, allow_infinity=False, places=3),
    st.sampled_from([*Shade, *Number, *Word]),
    st.sampled_from([int, float, str, bool, bytes, Shade, Number, dt.date]),
)
ITEMS = st.recursive(
    LEAVES,
    lambda children: (
        st.lists(children, max_size=3).map(tuple) | st.frozensets(children, max_size=3)
    ),
    max_leaves=8,
)


@given(st.lists(ITEMS, max_size=12))
def test_key_text_is_injective(items: list[Any]) -> None:
    seen: dict[str, Any] = {}
    for item in items:
        text = encode_key((item,))
        identity = canon(item)
        assert seen.setdefault(text, identity) == identity, (text, item)
        assert encode_key((item,)) == text  # and deterministic


@given(ITEMS, ITEMS)
def test_key_text_of_a_tuple_is_injective_in_its_items(first: Any, second: Any) -> None:
    assert (encode_key((first, second)) == encode_key((second, first))) == (
        canon(first) == canon(second)
    )


PRINT_ENCODINGS = "import cache_peer, json; print(json.dumps(cache_peer.encodings()))"


def test_key_text_is_the_same_in_another_process() -> None:
    import cache_peer  # noqa: PLC0415 - the same module the subprocess imports

    here = cache_peer.encodings()
    texts = set()
    for seed in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-c", PRINT_ENCODINGS],
            cwd=HERE,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        texts.add(tuple(json.loads(done.stdout)))
    assert texts == {tuple(here)}


# -- storage layout, TTL, tags, clear ---------------------------------------------------


def test_keys_are_namespaced_and_the_function_identity_is_left_out(
    cache: RedisCache, raw: redis.Redis, namespace: str
) -> None:
    view = cache.bind("tests.layout", int)
    view.set(key(1, "a"), 5, 60, ())
    [stored] = raw.scan_iter(f"{namespace}:*")
    text = '(i1,s"a",c"builtins:int",c"builtins:str")'
    assert stored == f"{namespace}:1:tests.layout:{text}".encode()
    other = cache.bind("tests.layout", int)
    assert other.get(key(1, "a")) == 5  # another identity object, the same entry


def test_ttl_is_set_in_milliseconds(cache: RedisCache, raw: redis.Redis) -> None:
    view = cache.bind("tests.ttl", int)
    view.set(key(1), 1, 30.5, ())
    assert 29_000 < raw.pttl(view.text(key(1))) <= 30_500
    view.set(key(2), 2, None, ())
    assert raw.pttl(view.text(key(2))) == -1
    view.set(key(3), 3, 0.05, ())
    assert wait_until(lambda: view.get(key(3)) is MISSING)


def test_tags_drop_their_entries_and_nothing_else(cache: RedisCache, raw: redis.Redis) -> None:
    view = cache.bind("tests.tags", int)
    view.set(key(1), 1, 60, ("red",))
    view.set(key(2), 2, 600, ("red", "blue"))
    view.set(key(3), 3, 60, ("blue",))
    view.set(key(4), 4, 60, ())
    tag = cache.tag_key("red")
    assert raw.smembers(tag) == {view.text(key(1)).encode(), view.text(key(2)).encode()}
    assert 590_000 < raw.pttl(tag) <= 600_000  # lives as long as its longest entry
    cache.invalidate_tags("red")
    assert [view.get(key(n)) for n in (1, 2, 3, 4)] == [MISSING, MISSING, 3, 4]
    assert raw.exists(tag) == 0
    cache.invalidate_tags("blue", "unknown")
    assert [view.get(key(n)) for n in (3, 4)] == [MISSING, 4]
    cache.invalidate_tags()


def test_a_tag_set_of_an_entry_without_ttl_never_expires(
    cache: RedisCache, raw: redis.Redis
) -> None:
    view = cache.bind("tests.forever", int)
    view.set(key(1), 1, 60, ("t",))
    view.set(key(2), 2, None, ("t",))
    view.set(key(3), 3, 1, ("t",))
    assert raw.pttl(cache.tag_key("t")) == -1


@pytest.mark.asyncio
async def test_async_tags_and_clear(cache: RedisCache) -> None:
    view = cache.bind("tests.async_tags", int)
    await view.aset(key(1), 1, 60, ("t",))
    await view.aset(key(2), 2, 60, ())
    await cache.ainvalidate_tags("t")
    assert [await view.aget(key(1)), await view.aget(key(2))] == [MISSING, 2]
    await view.adelete(key(2))
    assert await view.aget(key(2)) is MISSING
    await view.aset(key(3), 3, 60, ())
    await cache.aclear()
    assert await view.aget(key(3)) is MISSING
    await cache.aclose()


def test_clear_touches_only_its_namespace_and_version(
    make: Callable[..., RedisCache], raw: redis.Redis, namespace: str
) -> None:
    mine = make()
    newer = make(version="2")
    other = make(namespace=f"{namespace}-other")
    for cache in (mine, newer, other):
        cache.bind("tests.clear", int).set(key(1), 1, 60, ("t",))
    raw.set(f"{namespace}-stranger", b"keep")
    try:
        mine.clear()
        assert mine.bind("tests.clear", int).get(key(1)) is MISSING
        assert newer.bind("tests.clear", int).get(key(1)) == 1
        assert other.bind("tests.clear", int).get(key(1)) == 1
        assert raw.get(f"{namespace}-stranger") == b"keep"
    finally:
        other.clear()
        raw.delete(f"{namespace}-stranger")


def test_a_view_clears_only_its_function(cache: RedisCache) -> None:
    first = cache.bind("tests.f", int)
    colon = cache.bind("tests.f:more", int)  # a name that extends the first one
    glob = cache.bind("tests.[f]*", int)  # SCAN pattern characters in a name
    for view in (first, colon, glob):
        view.set(key(1), 1, 60, ())
    glob.clear()
    assert [first.get(key(1)), colon.get(key(1)), glob.get(key(1))] == [1, 1, MISSING]
    first.clear()
    assert [first.get(key(1)), colon.get(key(1))] == [MISSING, 1]


def test_a_redis_view_is_shared_not_local_and_holds_nothing(cache: RedisCache) -> None:
    view = cache.bind("tests.flags", int)
    view.set(key(1), 1, 60, ())
    assert (view.local, view.shared) == (False, True)
    assert view.peek(key(1)) is MISSING
    assert cache.counts() == (None, None)


# -- garbage and decode errors -----------------------------------------------------------


def test_garbage_under_a_key_is_a_miss_deleted_with_one_warning(
    cache: RedisCache, raw: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    view = cache.bind("tests.garbage", Customer)
    text = view.text(key(1))
    raw.set(text, b"\x80not json at all")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert view.get(key(1)) is MISSING
        assert view.get(key(1)) is MISSING  # gone now: a plain miss
    assert raw.exists(text) == 0
    [warning] = warnings_in(caplog)
    assert "tests.garbage" in warning
    assert "version" in warning  # says what to do


@pytest.mark.asyncio
async def test_garbage_is_dropped_by_the_async_driver_too(
    cache: RedisCache, raw: redis.Redis
) -> None:
    view = cache.bind("tests.async_garbage", int)
    text = view.text(key(1))
    raw.set(text, b"[1, 2]")
    assert await view.aget(key(1)) is MISSING
    assert raw.exists(text) == 0
    await cache.aclose()


# -- leases -----------------------------------------------------------------------------


def test_only_one_of_two_acquirers_gets_the_lease(make: Callable[..., RedisCache]) -> None:
    here, there = make().bind("tests.lease", int), make().bind("tests.lease", int)
    k = key(1)
    token = here.acquire(k)
    assert token
    assert there.acquire(k) is None
    there.release(k, "not-the-token")
    assert here.acquire(k) is None  # still held
    here.release(k, token)
    other = there.acquire(k)
    assert other
    assert other != token
    there.release(k, other)


def test_the_lease_expires_after_lease_ttl(
    make: Callable[..., RedisCache], raw: redis.Redis
) -> None:
    view = make(lease_ttl=0.3).bind("tests.lease_ttl", int)
    view.acquire(key(1))
    assert 0 < raw.pttl(view.text(key(1)) + ":lease") <= 300


def test_wait_returns_the_value_once_the_holder_stores_it(
    make: Callable[..., RedisCache],
) -> None:
    holder, waiter = make().bind("tests.wait", int), make().bind("tests.wait", int)
    k = key(1)
    token = holder.acquire(k)
    assert token

    def compute() -> None:
        time.sleep(0.05)
        holder.set(k, 42, 60, ())
        holder.release(k, token)

    worker = threading.Thread(target=compute)
    worker.start()
    try:
        assert waiter.wait(k) == 42
    finally:
        worker.join(5)


def test_wait_gives_up_when_the_lease_lapses_or_is_released_empty(
    make: Callable[..., RedisCache],
) -> None:
    holder = make(lease_ttl=0.2).bind("tests.lapse", int)
    waiter = make(lease_ttl=0.2).bind("tests.lapse", int)
    assert waiter.wait(key(1)) is MISSING  # nobody holds it: no waiting at all
    assert holder.acquire(key(1))
    started = time.monotonic()
    assert waiter.wait(key(1)) is MISSING  # the holder died without a value
    assert time.monotonic() - started < 5  # bounded by lease_ttl (generous: no flaky bound)
    token = holder.acquire(key(2))
    assert token
    threading.Timer(0.05, holder.release, (key(2), token)).start()
    assert waiter.wait(key(2)) is MISSING  # released without a value (the call failed)


@pytest.mark.asyncio
async def test_async_leases(make: Callable[..., RedisCache]) -> None:
    first = make(lease_ttl=0.5)
    second = make(lease_ttl=0.5)
    holder, waiter = first.bind("tests.alease", int), second.bind("tests.alease", int)
    k = key(1)
    token = await holder.aacquire(k)
    assert token
    assert await waiter.aacquire(k) is None

    async def compute() -> None:
        await asyncio.sleep(0.05)
        await holder.aset(k, 7, 60, ())
        await holder.arelease(k, token)

    task = asyncio.create_task(compute())
    assert await waiter.await_value(k) == 7
    await task
    assert await waiter.aacquire(key(2))
    assert await holder.await_value(key(2)) is MISSING  # lapses after lease_ttl
    await first.aclose()
    await second.aclose()


# -- through the decorator ---------------------------------------------------------------


def test_cached_functions_share_entries_across_caches(make: Callable[..., RedisCache]) -> None:
    calls: list[int] = []

    def body(n: int) -> Point:
        calls.append(n)
        return Point(float(n), float(n))  # floats, as annotated: an int would read back as one

    here = cached(cache=make(), ttl=60, name="tests.shared")(body)
    there = cached(cache=make(), ttl=60, name="tests.shared")(body)
    assert here(1) == Point(1, 1)
    assert there(1) == Point(1, 1)  # another "process": read from Redis
    assert calls == [1]
    here.invalidate(1)
    assert there(1) == Point(1, 1)
    assert calls == [1, 1]


@pytest.mark.asyncio
async def test_cached_async_function_through_redis(make: Callable[..., RedisCache]) -> None:
    cache = make()
    calls: list[int] = []

    @cached(cache=cache, ttl=60, name="tests.async_cached")
    async def double(n: int) -> int:
        calls.append(n)
        return n * 2

    assert await double(2) == 4
    assert await double(2) == 4
    assert calls == [2]
    await cache.aclose()


def test_async_clients_are_per_event_loop_and_closed_with_it(cache: RedisCache) -> None:
    view = cache.bind("tests.loops", int)
    clients = []

    async def use(n: int) -> Any:
        clients.append(cache.async_client())
        await view.aset(key(n), n, 60, ())
        return await view.aget(key(n))

    assert asyncio.run(use(1)) == 1
    assert asyncio.run(use(2)) == 2  # a new loop: a new client, not the old loop's
    assert clients[0] is not clients[1]
    assert len(cache._async_clients) == 0  # each was closed when its loop shut down


# -- trouble ----------------------------------------------------------------------------


def test_a_dead_server_degrades_to_misses_with_one_warning_and_no_round_trips(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cache = RedisCache(
        f"redis://:hunter2-secret@127.0.0.1:{closed_port()}/0",
        namespace=f"dead-{uuid.uuid4().hex[:8]}",
        retry_after_failure=60,
    )
    view = cache.bind("tests.dead", int)
    k = key(1)
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        assert view.get(k) is MISSING  # the one round trip (refused)
        attempts: list[str] = []
        real = cache.sync_client

        def counting() -> Any:
            attempts.append("connect")
            return real()

        monkeypatch.setattr(cache, "sync_client", counting)
        for _ in range(5):
            assert view.get(k) is MISSING
            view.set(k, 1, 60, ("t",))
            view.delete(k)
            assert view.acquire(k) == ""  # compute locally
            assert view.wait(k) is MISSING
            view.release(k, "")
            cache.invalidate_tags("t")
            cache.clear()
        assert attempts == []  # skipped entirely during the pause
    # one incident; invalidations kept, said once (other tests' caches may log meanwhile)
    [warning, deferred] = [w for w in warnings_in(caplog) if cache.health.label in w]
    assert "served as cache misses" in warning
    assert "kept and applied as soon as Redis answers" in deferred
    assert len(cache.pending) == 1  # the clear made every earlier invalidation redundant
    assert "hunter2" not in caplog.text
    assert "hunter2" not in repr(cache)
    cache.close()


@pytest.mark.asyncio
async def test_a_dead_server_degrades_for_async_callers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = RedisCache(
        f"redis://127.0.0.1:{closed_port()}/0",
        namespace=f"adead-{uuid.uuid4().hex[:8]}",
        retry_after_failure=0,
    )
    view = cache.bind("tests.adead", int)
    k = key(1)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert await view.aget(k) is MISSING
        await view.aset(k, 1, 60, ("t",))
        await view.adelete(k)
        assert await view.aacquire(k) == ""
        assert await view.await_value(k) is MISSING
        await view.arelease(k, "token")
        await cache.ainvalidate_tags("t")
        with pytest.raises(UnavailableError, match="kept and applied"):
            await view.adelete(k, strict=True)
        await cache.aclear()
    # every call failed: still one incident (other tests' caches may log meanwhile)
    outage, deferred = [w for w in warnings_in(caplog) if cache.health.label in w]
    assert "served as cache misses" in outage
    assert "kept and applied" in deferred
    assert len(cache.pending) == 1  # the clear made every earlier invalidation redundant
    await cache.aclose()


def test_a_cut_link_degrades_then_recovers_one_warning_per_incident(
    redis_url: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    parts = urlsplit(redis_url)
    with FaultProxy(parts.hostname or "127.0.0.1", parts.port or 6379) as proxy:
        cache = RedisCache(proxy.url, namespace=namespace, retry_after_failure=0.05)
        view = cache.bind("tests.cut", int)
        k = key(1)
        view.set(k, 1, 60, ())
        assert view.get(k) == 1
        with caplog.at_level(logging.INFO, logger=LOGGER):
            for incident in range(2):
                proxy.cut()
                assert view.get(k) is MISSING
                view.set(k, 2, 60, ())  # a no-op, not an error
                assert view.get(k) is MISSING
                proxy.restore()
                assert wait_until(lambda: view.get(k) is not MISSING, 5)
                assert view.get(k) == 1  # the write during the outage went nowhere
                assert len(warnings_in(caplog)) == incident + 1
        assert sum("reachable again" in record.getMessage() for record in caplog.records) == 2
        cache.close()


# -- configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lease_ttl": -1}, "lease_ttl must be a positive"),
        ({"lease_ttl": 0}, "lease_ttl must be a positive"),
        ({"retry_after_failure": float("nan")}, "retry_after_failure"),
        ({"namespace": "a b"}, "namespace must be"),
        ({"namespace": ""}, "namespace must be"),
        ({"version": "v*"}, "version must be"),
        ({"serializer": "yaml"}, "serializer must be"),
        ({"listeners": [object()]}, "CacheListener"),
    ],
)
def test_bad_arguments_are_configuration_errors(
    redis_url: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RedisCache(redis_url, **options)


def test_where_redis_is_must_be_said_once(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        with pytest.raises(ConfigurationError, match="not both"):
            RedisCache(redis_url, client=client)
        with pytest.raises(ConfigurationError, match="tell the cache where Redis is"):
            RedisCache()
        with pytest.raises(ConfigurationError, match="decode_responses=False"):
            RedisCache(client=redis.Redis(decode_responses=True))
        with pytest.raises(ConfigurationError, match="not a Redis URL") as caught:
            RedisCache("http://user:pw-secret@host")
        assert "pw-secret" not in str(caught.value)
    finally:
        client.close()


@pytest.mark.asyncio
async def test_given_clients_are_used_and_left_open(redis_url: str, namespace: str) -> None:
    client = redis.Redis.from_url(redis_url)
    async_client = redis.asyncio.Redis.from_url(redis_url)
    cache = RedisCache(client=client, async_client=async_client, namespace=namespace)
    view = cache.bind("tests.given", int)
    view.set(key(1), 1, 60, ())
    assert await view.aget(key(1)) == 1
    await cache.aclose()
    assert client.ping()  # still open: the caller owns it
    assert await async_client.ping()
    client.close()
    await async_client.aclose()


@pytest.mark.asyncio
async def test_a_sync_only_cache_refuses_async_use_with_advice(
    redis_url: str, namespace: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    view = RedisCache(client=client, namespace=namespace).bind("tests.sync_only", int)
    with pytest.raises(ConfigurationError, match="async_client="):
        await view.aget(key(1))
    client.close()


def test_from_settings(redis_url: str, namespace: str) -> None:
    cache = RedisCache.from_settings(
        RedisSettings(url=SecretStr(redis_url), socket_timeout=0.5),
        CacheSettings(namespace=namespace, serializer="pickle", signing_key=SecretStr(KEY)),
    )
    assert (cache.namespace, cache.serializer) == (namespace, "pickle")
    view = cache.bind("tests.settings", Any)
    view.set(key(1), {1, 2}, 60, ())
    assert view.get(key(1)) == {1, 2}
    assert cache.sync_client().connection_pool.connection_kwargs["socket_timeout"] == 0.5
    cache.close()


def test_redis_is_not_imported_until_a_redis_cache_is_made() -> None:
    code = (
        "import sys, buttress.caching, buttress.caching._redis, buttress.caching._tiered, "
        "buttress.caching._serial; print('redis' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"


def test_a_missing_redis_package_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(MissingDependencyError, match=r"buttress\[redis\]"):
        RedisCache("redis://127.0.0.1:6379/0")


# -- what the first tests left unsaid ------------------------------------------------------


def test_from_settings_gives_every_setting_to_the_cache_and_its_clients(
    redis_url: str, namespace: str
) -> None:
    cache = RedisCache.from_settings(
        RedisSettings(url=SecretStr(redis_url), max_connections=7, pool_timeout=0.25),
        CacheSettings(namespace=namespace, version="v2"),
        client_name="buttress-settings-test",
    )
    try:
        assert cache.prefix == f"{namespace}:v2:"
        client = cache.sync_client()
        assert client.client_getname() == "buttress-settings-test"
        pool = client.connection_pool
        assert (pool.max_connections, pool.timeout) == (7, 0.25)
    finally:
        cache.close()
    unnamed = RedisCache.from_settings(
        RedisSettings(url=SecretStr(redis_url)), CacheSettings(namespace=namespace)
    )
    try:
        assert unnamed.sync_client().client_getname() is None
    finally:
        unnamed.close()


@pytest.mark.parametrize("tags", [(), ("t",)], ids=["untagged", "tagged"])
def test_async_writes_and_leases_expire_like_sync_ones(
    cache: RedisCache, raw: redis.Redis, tags: tuple[str, ...]
) -> None:
    view = cache.bind("tests.async_ttl", int)

    async def use() -> None:
        await view.aset(key(1), 1, 30.5, tags)
        token = await view.aacquire(key(2))
        assert token
        assert 0 < raw.pttl(view.text(key(2)) + ":lease") <= 5000  # lease_ttl
        await view.arelease(key(2), token)
        assert raw.exists(view.text(key(2)) + ":lease") == 0
        assert await view.aacquire(key(2))

    asyncio.run(use())
    assert 29_000 < raw.pttl(view.text(key(1))) <= 30_500


POISONS: dict[str, Callable[[redis.Redis, str], Any]] = {
    "garbage": lambda raw, text: raw.set(text, b"\x80not json"),
    "hash": lambda raw, text: raw.hset(text, "field", "value"),
}


@pytest.mark.parametrize("poison", sorted(POISONS))
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_waiter_finding_a_bad_entry_deletes_it_and_names_its_key(
    cache: RedisCache,
    raw: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    poison: str,
    asynchronous: bool,
) -> None:
    view = cache.bind("tests.bad_wait", int)
    texts = [view.text(key(n)) for n in (1, 2)]
    for text in texts:
        POISONS[poison](raw, text)

    async def await_both() -> list[Any]:
        return [await view.await_value(key(n)) for n in (1, 2)]

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        found = asyncio.run(await_both()) if asynchronous else [view.wait(key(n)) for n in (1, 2)]
    assert found == [MISSING, MISSING]
    assert [raw.exists(text) for text in texts] == [0, 0]
    warnings = [w for w in warnings_in(caplog) if cache.health.label in w]
    assert len(warnings) == 2, warnings  # one per key, each naming its own
    assert all(text in warning for text, warning in zip(texts, warnings, strict=True))


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_waiter_with_nobody_holding_the_lease_returns_without_waiting_out_lease_ttl(
    make: Callable[..., RedisCache], asynchronous: bool
) -> None:
    view = make(lease_ttl=60).bind("tests.no_holder", int)
    found: list[Any] = []

    def wait() -> None:
        if asynchronous:
            found.append(asyncio.run(view.await_value(key(1))))
        else:
            found.append(view.wait(key(1)))

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    waiter.join(10)  # a bound far below lease_ttl, not a measure of speed
    assert found == [MISSING]


def test_callers_in_two_processes_compute_a_cold_key_once_and_both_get_it(
    make: Callable[..., RedisCache],
) -> None:
    calls: list[int] = []
    started, finish = threading.Event(), threading.Event()

    def body(n: int) -> int:
        calls.append(n)
        started.set()
        assert finish.wait(5)
        return n * 10

    here = cached(cache=make(), ttl=60, name="tests.cold")(body)
    there = cached(cache=make(), ttl=60, name="tests.cold")(body)
    results: dict[str, int] = {}
    holder = threading.Thread(target=lambda: results.update(here=here(4)))
    holder.start()
    assert started.wait(5)
    waiter = threading.Thread(target=lambda: results.update(there=there(4)))
    waiter.start()
    time.sleep(0.1)  # lets the waiter find the lease held and poll a few times
    finish.set()
    holder.join(10)
    waiter.join(10)
    assert results == {"here": 40, "there": 40}
    assert calls == [4]
    assert here(4) == 40
    assert calls == [4]


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_tiered_waiter_keeps_its_copy_no_longer_than_the_entry_lives(
    make: Callable[..., RedisCache], asynchronous: bool
) -> None:
    from buttress.caching import TieredCache  # noqa: PLC0415 - as the other tiered imports

    holder = make().bind("tests.tiered_wait", int)
    tiered = TieredCache(make(), local_ttl=30)
    try:
        view = tiered.bind("tests.tiered_wait", int)
        token = holder.acquire(key(1))
        assert token

        def store() -> None:
            holder.set(key(1), 5, 0.3, ())
            holder.release(key(1), token)

        timer = threading.Timer(0.05, store)
        timer.start()
        try:
            if asynchronous:
                assert asyncio.run(view.await_value(key(1))) == 5
            else:
                assert view.wait(key(1)) == 5
        finally:
            timer.join(5)
        assert view.peek(key(1)) == 5  # copied into memory...
        assert wait_until(lambda: view.peek(key(1)) is MISSING, 5)  # ... until Redis drops it
    finally:
        tiered.close()


def test_a_tag_invalidated_in_one_tiered_cache_drops_copies_another_read_from_redis(
    tiered_pair: tuple[Any, Any],
) -> None:
    writer, reader = tiered_pair
    here, there = writer.bind("tests.tiered_tags", int), reader.bind("tests.tiered_tags", int)
    here.set(key(1), 1, 60, ("red",))
    here.set(key(2), 2, 60, ())
    assert [there.get(key(1)), there.get(key(2))] == [1, 2]  # copied without tags
    writer.invalidate_tags("red")
    assert wait_until(lambda: there.peek(key(1)) is MISSING, 5)
    assert there.peek(key(2)) == 2


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_clearing_drops_every_entry_however_many_batches_it_takes(
    cache: RedisCache, raw: redis.Redis, namespace: str, asynchronous: bool
) -> None:
    view = cache.bind("tests.many", int)
    other = cache.bind("tests.many_other", int)
    other.set(key(1), 1, 60, ())
    with raw.pipeline(transaction=False) as pipe:
        for n in range(1234):  # more than one SCAN batch, and one UNLINK batch
            pipe.set(view.text(key(n)), b"1", px=60_000)
        pipe.execute()

    async def clear_async() -> None:
        await view.aclear()
        assert other.get(key(1)) == 1
        await cache.aclear()

    if asynchronous:
        asyncio.run(clear_async())
    else:
        view.clear()
        assert other.get(key(1)) == 1
        cache.clear()
    assert [k for k in raw.scan_iter(f"{namespace}:1:tests.many*") if b":gen" not in k] == []


def test_a_forked_child_can_use_the_cache_though_a_parent_thread_held_its_locks(
    make: Callable[..., RedisCache], redis_url: str
) -> None:
    cache = make()
    dead = make(url=f"redis://127.0.0.1:{closed_port()}/0", retry_after_failure=0)
    for each in (cache, dead):
        # what a parent thread, making a client or recording a failure at the fork, leaves
        assert each._lock.acquire(blocking=False)
        assert each.health._lock.acquire(blocking=False)
        each.after_fork()  # what os.register_at_fork runs in the child
    view = cache.bind("tests.fork", int)
    view.set(key(1), 1, 60, ())
    assert view.get(key(1)) == 1

    async def read() -> Any:
        return await view.aget(key(1))

    assert asyncio.run(read()) == 1
    assert dead.bind("tests.fork", int).get(key(1)) is MISSING  # a failure, recorded
    assert dead.health.incident


@pytest.fixture
def tiered_pair(make: Callable[..., RedisCache]) -> Iterator[tuple[Any, Any]]:
    """Two tiered caches on one namespace (two "processes"), the second one listening."""
    from buttress.caching import TieredCache  # noqa: PLC0415 - as the other tiered imports

    writer, reader = TieredCache(make(), local_ttl=30), TieredCache(make(), local_ttl=30)
    reader.start()
    assert wait_until(lambda: reader.listening, 5)
    yield writer, reader
    writer.close()
    reader.close()


@pytest.mark.parametrize("poison", sorted(POISONS))
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_tiered_read_of_a_bad_entry_deletes_it(
    tiered_pair: tuple[Any, Any], raw: redis.Redis, poison: str, asynchronous: bool
) -> None:
    view = tiered_pair[0].bind("tests.tiered_bad", int)
    text = view.l2.text(key(1))
    POISONS[poison](raw, text)
    if asynchronous:
        assert asyncio.run(view.aget(key(1))) is MISSING
    else:
        assert view.get(key(1)) is MISSING
    assert raw.exists(text) == 0


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_key_deleted_in_one_tiered_cache_is_dropped_from_anothers_memory(
    tiered_pair: tuple[Any, Any], asynchronous: bool
) -> None:
    writer, reader = tiered_pair
    here, there = writer.bind("tests.tiered_del", int), reader.bind("tests.tiered_del", int)
    here.set(key(1), 1, 60, ())
    assert there.get(key(1)) == 1
    if asynchronous:
        asyncio.run(here.adelete(key(1)))
    else:
        here.delete(key(1))
    assert wait_until(lambda: there.peek(key(1)) is MISSING, 5)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_tiered_copy_lives_as_long_as_the_redis_entry_it_was_read_from(
    tiered_pair: tuple[Any, Any], raw: redis.Redis, asynchronous: bool
) -> None:
    reader = tiered_pair[1]
    reader.local_ttl = 10_000.0  # longer than the entry: the entry bounds the copy
    view = reader.bind("tests.tiered_left", int)
    long_lived, short_lived = view.l2.text(key(1)), view.l2.text(key(2))
    raw.set(long_lived, b"7", px=1_000_000)
    raw.set(short_lived, b"8", px=300)

    async def read_async() -> list[Any]:
        return [await view.aget(key(1)), await view.aget(key(2))]

    found = asyncio.run(read_async()) if asynchronous else [view.get(key(1)), view.get(key(2))]
    assert found == [7, 8]
    assert 999.5 < reader.memory.entries[(long_lived,)][1] - time.monotonic() <= 1000
    assert wait_until(lambda: view.peek(key(2)) is MISSING, 5)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_tiered_tag_invalidation_keeps_other_copies_unless_redis_is_unreachable(
    make: Callable[..., RedisCache], asynchronous: bool
) -> None:
    """Applied: the tag's entries go. Kept for later: the keys are unknown, so memory empties."""
    from buttress.caching import TieredCache  # noqa: PLC0415 - as the other tiered imports

    up = TieredCache(make(), local_ttl=30)
    down = TieredCache(
        make(url=f"redis://127.0.0.1:{closed_port()}/0", retry_after_failure=60), local_ttl=30
    )
    try:
        for tiered, kept in ((up, 2), (down, MISSING)):
            view = tiered.bind("tests.tiered_kept", int)
            view.set(key(1), 1, 60, ("red",))
            view.set(key(2), 2, 60, ())
            if asynchronous:
                asyncio.run(tiered.ainvalidate_tags("red"))
            else:
                tiered.invalidate_tags("red")
            assert [view.peek(key(1)), view.peek(key(2))] == [MISSING, kept]
    finally:
        up.close()
        down.close()


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_invalidation_marks_expire_after_the_mark_window(
    cache: RedisCache, raw: redis.Redis, asynchronous: bool
) -> None:
    view = cache.bind("tests.marks", int)
    window = cache.mark_window * 1000
    invalidations: list[tuple[Callable[[], Any], Callable[[], Any], str]] = [
        (lambda: view.delete(key(1)), lambda: view.adelete(key(1)), view.text(key(1)) + ":gen"),
        (view.clear, view.aclear, cache.function_mark("tests.marks")),
        (
            lambda: cache.invalidate_tags("t"),
            lambda: cache.ainvalidate_tags("t"),
            cache.tag_mark("t"),
        ),
        (cache.clear, cache.aclear, cache.everything_mark),
    ]
    for sync, async_, mark in invalidations:
        view.set(key(1), 1, 60, ("t",))
        if asynchronous:
            asyncio.run(async_())
        else:
            sync()
        assert window - 5000 < raw.pttl(mark) <= window, mark


@pytest.mark.parametrize("poison", sorted(POISONS))
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_miss_beginning_on_a_bad_entry_deletes_it_and_takes_the_lease(
    cache: RedisCache,
    raw: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    poison: str,
    asynchronous: bool,
) -> None:
    view = cache.bind("tests.bad_begin", int)
    text = view.text(key(1))
    POISONS[poison](raw, text)

    async def begin_and_end() -> Any:
        lease = await view.abegin(key(1), ("t",))
        held = raw.exists(text + ":lease")
        await view.aend(key(1), lease)
        return lease, held

    def begin_and_end_sync() -> Any:
        lease = view.begin(key(1), ("t",))
        held = raw.exists(text + ":lease")
        view.end(key(1), lease)
        return lease, held

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        lease, held = asyncio.run(begin_and_end()) if asynchronous else begin_and_end_sync()
    assert (lease.value, lease.mine, held) == (MISSING, True, 1)
    assert raw.exists(text, text + ":lease") == 0  # the bad entry deleted, the lease released
    [warning] = [w for w in warnings_in(caplog) if cache.health.label in w]
    assert text in warning


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_tiered_miss_copies_its_value_into_memory_only_if_redis_took_it(
    tiered_pair: tuple[Any, Any], make: Callable[..., RedisCache], asynchronous: bool
) -> None:
    view = tiered_pair[0].bind("tests.tiered_store", int)
    elsewhere = make().bind("tests.tiered_store", int)  # another process, not announcing

    def miss(n: int, *, overtaken: bool) -> None:
        async def run_async() -> None:
            lease = await view.abegin(key(n), ())
            if overtaken:
                elsewhere.delete(key(n))
            await view.astore(key(n), lease, n, 60, ())
            await view.aend(key(n), lease)

        if asynchronous:
            asyncio.run(run_async())
            return
        lease = view.begin(key(n), ())
        if overtaken:
            elsewhere.delete(key(n))
        view.store(key(n), lease, n, 60, ())
        view.end(key(n), lease)

    miss(1, overtaken=False)
    assert view.peek(key(1)) == 1  # written to Redis, then copied
    miss(2, overtaken=True)
    assert view.peek(key(2)) is MISSING  # Redis refused it: an invalidation came first
    assert view.get(key(2)) is MISSING


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_clients_made_from_the_url_have_short_timeouts_one_retry_and_the_pool_asked_for(
    make: Callable[..., RedisCache], asynchronous: bool
) -> None:
    plain = make(max_connections=3, pool_timeout=0.5)
    tuned = make(client_options={"socket_timeout": 0.25})

    async def pools_async() -> list[Any]:
        return [plain.async_client().connection_pool, tuned.async_client().connection_pool]

    if asynchronous:
        pools = asyncio.run(pools_async())
    else:
        pools = [plain.sync_client().connection_pool, tuned.sync_client().connection_pool]
    options = pools[0].connection_kwargs
    assert (options["socket_timeout"], options["socket_connect_timeout"]) == (1.0, 1.0)
    assert options["retry"].get_retries() == 1
    assert (pools[0].max_connections, pools[0].timeout) == (3, 0.5)
    assert pools[1].connection_kwargs["socket_timeout"] == 0.25  # client_options win


def test_a_miss_that_ran_nearly_as_long_as_the_mark_window_writes_nothing(
    cache: RedisCache, raw: redis.Redis
) -> None:
    """Its marks may expire before the write is checked against them: it is not trusted."""
    view = cache.bind("tests.slow_miss", int)
    for n, ran in ((1, cache.mark_window - 1.5), (2, cache.mark_window - 0.5)):
        lease = view.begin(key(n), ())
        lease.started = time.monotonic() - ran  # as if the body had run that long
        view.store(key(n), lease, n, 60, ())
        view.end(key(n), lease)
    assert [view.get(key(1)), view.get(key(2))] == [1, MISSING]
    assert raw.exists(view.text(key(2)) + ":lease") == 0  # released all the same


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_miss_beginning_on_a_stored_value_returns_it_and_a_tiered_copy_expires_with_it(
    tiered_pair: tuple[Any, Any], raw: redis.Redis, asynchronous: bool
) -> None:
    tiered = tiered_pair[0]
    view = tiered.bind("tests.begin_found", int)
    text = view.l2.text(key(1))
    raw.set(text, b"8", px=300)

    async def begin_async() -> Any:
        lease = await view.abegin(key(1), ())
        await view.aend(key(1), lease)
        return lease

    def begin_sync() -> Any:
        lease = view.begin(key(1), ())
        view.end(key(1), lease)
        return lease

    lease = asyncio.run(begin_async()) if asynchronous else begin_sync()
    assert lease.value == 8
    assert raw.exists(text + ":lease") == 0  # found: no lease taken
    assert view.peek(key(1)) == 8  # copied into memory...
    assert wait_until(lambda: view.peek(key(1)) is MISSING, 5)  # ... for as long as Redis keeps it
