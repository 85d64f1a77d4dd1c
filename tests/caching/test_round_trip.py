"""Exact round trips through `JsonSerializer`, and what a Redis hit returns.

A value read back from Redis is exactly the value the miss returned (equal, and of
the same types all the way down), or it is not cached at all; data written under
another schema is a miss, never coerced.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import enum
import math
import uuid
import zoneinfo
from collections.abc import Callable, Generator, Iterable, Iterator
from decimal import Decimal
from typing import Any, Generic, Literal, NamedTuple, TypeVar

import pydantic
import pytest
import redis
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Json,
    PrivateAttr,
    RootModel,
    computed_field,
)
from pydantic.alias_generators import to_camel
from typing_extensions import TypedDict

from buttress.caching import cached
from buttress.caching._redis import RedisCache
from buttress.caching._serial import JsonSerializer, _proof_of
from buttress.errors import ConfigurationError, DecodeError

T = TypeVar("T")

# -- types a cached function may return ------------------------------------------------------


class Shade(enum.Enum):
    LIGHT = "light"
    DARK = "dark"


class Number(enum.IntEnum):
    ONE = 1
    TWO = 2


class Word(enum.StrEnum):
    ONE = "one"


class Tag(BaseModel):
    name: str
    weight: float


class Order(BaseModel):
    id: uuid.UUID
    placed: dt.datetime
    total: Decimal
    lines: tuple[int, ...]
    tags: list[Tag]
    meta: dict[str, Any] = {}


class SpecialOrder(Order):
    note: str = ""


class Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel)

    user_id: int
    created_on: dt.date


class Renamed(BaseModel):
    x: int = Field(serialization_alias="X")


class Hexed(BaseModel):
    model_config = ConfigDict(ser_json_bytes="hex", val_json_bytes="hex")

    blob: bytes


class Forbidding(BaseModel):
    model_config = ConfigDict(extra="forbid")

    a: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def double(self) -> int:
        return self.a * 2


class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")

    a: int


class Tree(BaseModel):
    value: int
    children: list[Tree] = []


class WithJson(BaseModel):
    payload: Json[list[int]]


class Counted(BaseModel):
    a: int
    _seen: int = PrivateAttr(default=0)


class Page(BaseModel, Generic[T]):
    items: list[T]


class Secretive(BaseModel):
    password: pydantic.SecretStr


class Rounded(BaseModel):
    """Writes what reads back equal but not the same: 0.0 for -0.0, 1.1 for 1.10."""

    x: float
    d: Decimal

    @pydantic.field_serializer("x")
    def _unsigned(self, x: float) -> float:
        return abs(x)

    @pydantic.field_serializer("d")
    def _normal(self, d: Decimal) -> str:
        return str(d.normalize())


@dataclasses.dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str | None = None


@pydantic.dataclasses.dataclass
class Checked:
    n: int
    when: dt.time


class Movie(TypedDict):
    title: str
    year: int
    released: dt.date


class Pair(NamedTuple):
    left: int
    right: str


Box = RootModel[list[int]]

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
SEEN = Counted(a=1)
SEEN._seen = 3  # private state the JSON does not hold
ORDER = Order(
    id=uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e"),
    placed=dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=dt.UTC),
    total=Decimal("1234.50"),
    lines=(1, 2, 3),
    tags=[Tag(name="fragile", weight=-0.0)],
    meta={"source": "web", "attempt": 2, "score": 1.5, "ok": True, "parent": None},
)


# -- an oracle of exactness, independent of the serializer's own comparison --------------


def shape(value: Any) -> Any:
    """A hashable description of ``value``: equal for exact copies only.

    Types at every level, floats bit for bit (NaN as NaN), Decimals digit for
    digit, datetimes with their offset and whether their zone is fixed.
    """
    kind = type(value)
    for base, describe in SHAPES:
        if isinstance(value, base):
            return (kind, describe(value))
    if dataclasses.is_dataclass(value):
        return (kind, tuple(shape(getattr(value, f.name)) for f in dataclasses.fields(value)))
    return (kind, value)


def _moment(value: dt.datetime | dt.time) -> Any:
    zone = value.tzinfo
    return (value.isoformat(), value.fold, None if zone is None else zone.utcoffset(None))


def _model(value: BaseModel) -> Any:
    fields = {name: value.__dict__[name] for name in type(value).model_fields}
    return (shape(fields), shape(value.__pydantic_extra__), shape(value.__pydantic_private__))


SHAPES: list[tuple[Any, Callable[[Any], Any]]] = [
    (float, lambda value: "nan" if math.isnan(value) else float(value).hex()),
    (Decimal, str),
    (dt.datetime | dt.time, _moment),
    (BaseModel, _model),
    (dict, lambda value: tuple((shape(k), shape(v)) for k, v in value.items())),
    (list | tuple | collections.deque, lambda value: tuple(map(shape, value))),
    (set | frozenset, lambda value: frozenset(map(shape, value))),
    (pydantic.SecretStr, lambda value: value.get_secret_value()),
]


def short(item: Any) -> str:
    """A test id: the start of ``repr(item)``."""
    try:
        return repr(item)[:40]
    except ValueError:  # an int too long to print
        return type(item).__name__


def exact(value: Any, back: Any) -> bool:
    return bool(shape(value) == shape(back))


def round_trip(returns: Any, value: Any) -> Any:
    serializer = JsonSerializer(returns)
    return serializer.loads(serializer.dumps(value))


# -- what reads back exactly, under strict decoding ------------------------------------------


EXACT: list[tuple[Any, Any]] = [
    (int, 7),
    (int, -(10**30)),
    (float, 1.5),
    (float, -0.0),
    (float, float("nan")),
    (float, float("inf")),
    (float, float("-inf")),
    (float, 5e-324),
    (str, "naïve ☃"),
    (bool, False),
    (bytes, b"\x00\xff"),
    (None, None),
    (Decimal, Decimal("0.10")),
    (Decimal, Decimal("-0")),
    (Decimal, Decimal("1E+5")),
    (uuid.UUID, uuid.UUID("12345678-1234-5678-1234-567812345678")),
    (dt.datetime, dt.datetime(2023, 12, 31, 8, 0)),  # noqa: DTZ001 - naive on purpose
    (dt.datetime, dt.datetime(2023, 12, 31, 8, 0, tzinfo=dt.UTC)),
    (dt.datetime, dt.datetime(2023, 12, 31, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))),
    (dt.date, dt.date(1999, 12, 31)),
    (dt.time, dt.time(23, 59, 1, 5)),
    (dt.timedelta, dt.timedelta(days=-1, microseconds=3)),
    (Shade, Shade.DARK),
    (Number, Number.TWO),
    (Word, Word.ONE),
    (Literal["a", 1], 1),
    (tuple[int, str], (1, "a")),
    (tuple[int, ...], ()),
    (Pair, Pair(1, "b")),
    (set[int], {1, 2, 3}),
    (frozenset[str], frozenset({"a", "b"})),
    (collections.deque[int], collections.deque([3, 1])),
    (dict[str, list[int]], {"a": [1, 2], "b": []}),
    (dict[int, str], {1: "a", -2: "b"}),
    (dict[uuid.UUID, dt.date], {uuid.UUID(int=3): dt.date(2020, 1, 1)}),
    (collections.OrderedDict[str, int], collections.OrderedDict(b=1, a=2)),
    (int | None, None),
    (int | None, 3),
    (int | str, "1"),
    (int | str, 1),
    (float | int, 1),
    (float | int, 1.0),
    (tuple[float, float], (float("nan"), -0.0)),  # read back and compared: NaN is NaN
    (Shade | None, Shade.LIGHT),
    (list[int | None], [1, None]),
    (Order, ORDER),
    (Order | None, None),
    (list[Order], [ORDER, ORDER]),
    (SpecialOrder, SpecialOrder(**ORDER.model_dump(), note="rush")),
    (Camel, Camel(userId=1, createdOn=dt.date(2020, 2, 2))),
    (Renamed, Renamed(x=4)),
    (Hexed, Hexed(blob=b"\x00\x01")),
    (Forbidding, Forbidding(a=2)),
    (Loose, Loose(a=1, extra="kept", more=[1, 2])),
    (Tree, Tree(value=1, children=[Tree(value=2, children=[Tree(value=3)])])),
    (WithJson, WithJson(payload="[1, 2]")),
    (Counted, Counted(a=1)),
    (Page[int], Page[int](items=[1, 2])),
    (Box, Box([1, 2])),
    (Point, Point(1.5, -2.0, "origin-ish")),
    (Checked, Checked(n=1, when=dt.time(1, 2, tzinfo=dt.UTC))),
    (Movie, {"title": "Alien", "year": 1979, "released": dt.date(1979, 5, 25)}),
    (Any, {"plain": ["json", 1, 2.5, True, None, float("nan"), -0.0, 10**20]}),
    (object, [1, "a", {"b": None}]),
    (dict[str, Any], {"nested": {"deep": [1, [2.5, {"x": None}]]}}),
    (list[Any], [1, "two", 3.0, [False]]),
    (list, [1, {"a": 2}]),
    (Any, ["\ud800", "\udfff"]),  # lone surrogates, escaped in the JSON
    (dict, {"a": [1]}),
]


@pytest.mark.parametrize(("returns", "value"), EXACT, ids=short)
def test_values_read_back_exactly_under_strict_decoding(returns: Any, value: Any) -> None:
    back = round_trip(returns, value)
    assert exact(value, back), (value, back)


# -- what would not read back exactly is not stored --------------------------------------------


INEXACT: list[tuple[Any, Any, str]] = [
    (Any, (1, 2), "tuple would read back as list"),
    (Any, {"ids": (1,)}, r"\['ids'\]: tuple would read back as list"),
    (Any, {1: "a"}, r"\[1\] \(the key\): int would read back as str"),
    (object, {"n": Number.ONE}, r"\['n'\]: test_round_trip.Number would read back as int"),
    (Any, Decimal("1.5"), "Decimal"),
    (dict[str, Any], {"id": uuid.UUID(int=1)}, r"\['id'\]: uuid.UUID would read back as str"),
    (dict[str, Any], {"on": dt.date(2024, 1, 1)}, "date would read back as str"),
    (dict[str, Any], {"price": Decimal("9.99")}, "Decimal would read back as str"),
    (dict[str, Any], {"pair": (1, 2)}, "tuple would read back as list"),
    (dict[str, Any], {"tags": {"a"}}, "set would read back as list"),
    (dict[str, Any], {"n": 10**5000}, "does not read back"),
    (list[Any], [b"raw"], "bytes would read back as str"),
    (dict[str, object], {"when": dt.date(2024, 1, 1)}, "date would read back as str"),
    (float, 1, "int would read back as float"),
    (int, True, "bool would read back as int"),
    (int, Number.ONE, "Number would read back as int"),
    (str, Word.ONE, "Word would read back as str"),
    (int, 10**5000, "does not read back"),
    (Decimal, Decimal("NaN"), "does not read back"),
    (Decimal, Decimal("Infinity"), "does not read back"),
    (Order, SpecialOrder(**ORDER.model_dump()), "SpecialOrder would read back as"),
    (Order, ORDER.model_copy(update={"meta": {"id": uuid.UUID(int=1)}}), r"\.meta\['id'\]"),
    (list[Tag], [Tag.model_construct(name="a", weight=1)], r"\[0\]\.weight: int would read back"),
    (Point, Point(1, 2), r"\.x: int would read back as float"),
    (Counted, SEEN, r"\(private attributes\)\['_seen'\]: int would read back changed"),
    (dt.datetime, dt.datetime(2024, 7, 1, tzinfo=PARIS), "fixed-offset zone"),
    (Secretive, Secretive(password=pydantic.SecretStr("hunter2")), r"\.password"),
    (Rounded, Rounded(x=-0.0, d=Decimal(1)), r"\.x: float would read back as another float"),
    (Rounded, Rounded(x=1.0, d=Decimal("1.10")), r"\.d: decimal.Decimal would read back with"),
    (Any, "\ud800\udc00", "str would read back changed"),  # a pair of escapes: one character
    (dict[str, int], {"\ud800": 1}, r"\(the key\): str would read back changed"),  # as U+FFFD
]


@pytest.mark.parametrize(("returns", "value", "message"), INEXACT, ids=short)
def test_a_value_that_would_read_back_otherwise_is_refused(
    returns: Any, value: Any, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        JsonSerializer(returns).dumps(value)
    assert "serializer='pickle'" in str(caught.value)  # says what to do


def test_the_refusal_says_where_and_never_shows_the_value() -> None:
    with pytest.raises(ConfigurationError) as caught:
        JsonSerializer(dict[str, Any]).dumps({"user": {"id": uuid.UUID(int=7)}})
    message = str(caught.value)
    assert "value['user']['id']: uuid.UUID would read back as str" in message
    assert "Annotate the function's return type" in message
    assert "00000000-0000-0000-0000-000000000007" not in message


# -- data of another schema is a miss, not a coercion ------------------------------------------


FOREIGN: list[tuple[Any, bytes]] = [
    (int, b'"999"'),
    (int, b"1.0"),
    (int, b"true"),
    (bool, b'"yes"'),
    (bool, b"1"),
    (bool, b'"true"'),
    (str, b"1"),
    (str, b"null"),
    (float, b'"1.5"'),
    (bytes, b'"not base64!"'),
    (uuid.UUID, b"5"),
    (dt.date, b"19000"),
    (dt.datetime, b"1700000000"),
    (Shade, b'"LIGHT"'),
    (list[int], b'["1"]'),
    (dict[str, int], b'{"a": "1"}'),
    (tuple[int, str], b"[1, 2]"),
    (Tag, b'{"name": "a", "weight": "1.5"}'),
    (Order, b'{"id": 5}'),
    (Point, b'{"x": "1", "y": 2}'),
    (Movie, b'{"title": "Alien", "year": "1979", "released": "1979-05-25"}'),
    (int | None, b'"3"'),
    (Any, b"{not json"),
    (Any, b"\xff"),
    (Any, b"[" * 100_000),
]


@pytest.mark.parametrize(("returns", "data"), FOREIGN, ids=short)
def test_data_of_another_schema_is_a_decode_error(returns: Any, data: bytes) -> None:
    with pytest.raises(DecodeError):
        JsonSerializer(returns).loads(data)


# -- annotations no value of which can read back ---------------------------------------------


class Streaming(BaseModel):
    rows: Iterable[int]


@pytest.mark.parametrize(
    ("returns", "message"),
    [
        (Iterable[int], "list or a tuple"),
        (Iterator[str], "cannot store values of type"),
        (Generator[int, None, None], "list or a tuple"),
        (Iterable[int] | None, "list or a tuple"),
        (Streaming, "list or a tuple"),
        (list[Streaming], "list or a tuple"),
        (Callable[[], int], "no functions or classes"),
        (type[int], "no functions or classes"),
        (type, "no functions or classes"),
    ],
    ids=repr,
)
def test_annotations_that_never_read_back_are_refused_up_front(returns: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        JsonSerializer(returns)


def test_an_iterator_is_refused_before_anything_uses_it_up() -> None:
    made = iter([1, 2, 3])
    cache = RedisCache("redis://127.0.0.1:1", namespace="never-connected")

    def rows() -> Iterable[int]:
        return made

    try:
        with pytest.raises(ConfigurationError, match="list or a tuple"):
            cached(cache=cache)(rows)  # refused at decoration, before anything runs
    finally:
        cache.close()
    assert list(made) == [1, 2, 3]


def test_an_annotation_naming_a_later_class_is_checked_at_the_first_call() -> None:
    cache = RedisCache("redis://127.0.0.1:1", namespace="never-connected")

    @cached(cache=cache)
    def rows() -> Later:  # type: ignore[name-defined] # noqa: F821 - defined below, on purpose
        return iter([1])

    globals()["Later"] = Iterable[int]
    try:
        with pytest.raises(ConfigurationError, match="list or a tuple"):
            rows()
    finally:
        globals().pop("Later", None)
        cache.close()


# -- properties: exactly the value, or refused -------------------------------------------------

HASHABLE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=4),
    st.uuids(),
    st.dates(),
    st.sampled_from(Number),
    st.sampled_from(Word),
)
LEAVES = st.one_of(
    HASHABLE,
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_subnormal=True),
    st.text(st.characters(min_codepoint=0xD7FF, max_codepoint=0xE000), max_size=3),
    st.binary(max_size=4),
    st.decimals(),
    st.datetimes(timezones=st.none() | st.just(dt.UTC) | st.timezones()),
    st.times(),
    st.timedeltas(),
    st.sampled_from(Shade),
    st.just(ORDER),
    st.just(Point(1.0, 2.0)),
    st.just(Point(1, 2)),
)
ANYTHING = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=4), inner, max_size=4),
        st.dictionaries(HASHABLE, inner, max_size=3),
        st.sets(HASHABLE, max_size=3),
        st.frozensets(HASHABLE, max_size=3),
    ),
    max_leaves=10,
)
PLAIN = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats()
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)

PRECISE: dict[Any, st.SearchStrategy[Any]] = {
    int: st.integers(),
    float: st.floats(),
    str: st.text(),
    bool: st.booleans(),
    bytes: st.binary(),
    list[int]: st.lists(st.integers()),
    dict[str, float]: st.dictionaries(st.text(), st.floats()),
    tuple[int, ...]: st.lists(st.integers()).map(tuple),
    tuple[str, int]: st.tuples(st.text(), st.integers()),
    set[int]: st.sets(st.integers()),
    frozenset[str]: st.frozensets(st.text()),
    dt.datetime: st.datetimes(timezones=st.none() | st.just(dt.UTC) | st.timezones()),
    dt.date: st.dates(),
    uuid.UUID: st.uuids(),
    Decimal: st.decimals(),
    int | None: st.none() | st.integers(),
    int | str: st.integers() | st.text(),
    float | int: st.floats() | st.integers(),
    Shade: st.sampled_from(Shade),
    Order: st.builds(
        Order,
        id=st.uuids(),
        placed=st.datetimes(timezones=st.just(dt.UTC)),
        total=st.decimals(allow_nan=False, allow_infinity=False),
        lines=st.lists(st.integers(), max_size=3).map(tuple),
        tags=st.lists(st.builds(Tag, name=st.text(), weight=st.floats()), max_size=2),
        meta=st.dictionaries(st.text(max_size=3), LEAVES, max_size=2),
    ),
}
LOOSE: list[Any] = [Any, object, dict[str, Any], list[Any]]


def assert_exact_or_refused(returns: Any, value: Any) -> None:
    serializer = JsonSerializer(returns)
    try:
        data = serializer.dumps(value)
    except ConfigurationError:
        return
    back = serializer.loads(data)
    assert exact(value, back), (value, back)


@pytest.mark.parametrize("returns", LOOSE + list(PRECISE), ids=repr)
@given(data=st.data())
@settings(max_examples=150, deadline=None)
def test_every_value_reads_back_exactly_or_is_refused(returns: Any, data: st.DataObject) -> None:
    strategy = ANYTHING if returns in LOOSE else PRECISE[returns] | ANYTHING
    assert_exact_or_refused(returns, data.draw(strategy))


@pytest.mark.parametrize("returns", [Any, object, dict[str, Any], list[Any]], ids=repr)
@given(value=PLAIN)
@settings(max_examples=200, deadline=None)
def test_plain_json_is_always_stored_and_reads_back_exactly(returns: Any, value: Any) -> None:
    if returns == dict[str, Any]:
        value = {"v": value}
    elif returns == list[Any]:
        value = [value]
    back = round_trip(returns, value)  # never refused
    assert exact(value, back), (value, back)


@pytest.mark.parametrize("returns", list(PRECISE), ids=repr)
@given(data=st.data())
@settings(max_examples=100, deadline=None)
def test_values_of_the_annotated_type_are_mostly_stored(returns: Any, data: st.DataObject) -> None:
    value = data.draw(PRECISE[returns])
    if returns in {dt.datetime, Decimal, Order}:  # zones, NaN, a UUID in meta: refused
        assert_exact_or_refused(returns, value)
    else:
        back = round_trip(returns, value)  # never refused
        assert exact(value, back), (value, back)


TEXT = st.text(st.characters(codec=None, categories=None), max_size=6)  # surrogates too
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
PROVABLE: dict[Any, st.SearchStrategy[Any]] = {
    int: st.integers(min_value=-(2**70), max_value=2**70),
    float: st.floats(allow_subnormal=True),
    str: TEXT,
    bool: st.booleans(),
    bytes: st.binary(),
    None: st.none(),
    list[float]: st.lists(st.floats()),
    dict[str, int | None]: st.dictionaries(TEXT, st.none() | st.integers()),
    tuple[int, ...]: st.lists(st.integers()).map(tuple),
    tuple[str, float]: st.tuples(TEXT, st.floats()),
    set[int]: st.sets(st.integers()),
    set[float]: st.sets(st.floats()),
    frozenset[str]: st.frozensets(TEXT),
    list[tuple[int, str]]: st.lists(st.tuples(st.integers(), TEXT)),
    Any: st.recursive(SCALARS, lambda inner: st.lists(inner) | st.dictionaries(TEXT, inner)),
    dict[str, Any]: st.dictionaries(TEXT, st.recursive(SCALARS, st.lists)),
}


@pytest.mark.parametrize("returns", list(PROVABLE), ids=repr)
@given(data=st.data())
@settings(max_examples=150, deadline=None)
def test_values_proven_exact_without_reading_them_back_are_exact(
    returns: Any, data: st.DataObject
) -> None:
    proof = _proof_of(returns)
    assert proof is not None
    value = data.draw(PROVABLE[returns])
    assume(proof(value))  # dumps skips reading these back: the proof must be sound
    assert_exact_or_refused(returns, value)


# -- through the decorator, against a real Redis ------------------------------------------------


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def shared_cache(redis_url: str, namespace: str) -> Iterator[RedisCache]:
    cache = RedisCache(redis_url, namespace=namespace)
    yield cache
    cache.close()  # the namespace fixture deletes the keys


def entries(raw: redis.Redis, namespace: str) -> list[bytes]:
    return [k for k in raw.scan_iter(f"{namespace}:*") if not k.endswith(b":lease")]


def test_a_hit_returns_exactly_what_the_miss_returned(
    shared_cache: RedisCache, raw: redis.Redis, namespace: str
) -> None:
    calls: list[int] = []

    @cached(cache=shared_cache, ttl=60)
    def profile(n: int) -> dict[str, Any]:
        calls.append(n)
        return {"name": f"user {n}", "score": 1.5, "tags": ["a"], "parent": None}

    first = profile(1)
    second = profile(1)
    assert calls == [1]  # the second call was a hit
    assert exact(first, second)
    assert len(entries(raw, namespace)) == 1


def test_a_value_that_would_read_back_changed_is_recomputed_never_served_changed(
    shared_cache: RedisCache, raw: redis.Redis, namespace: str
) -> None:
    calls: list[int] = []
    account = uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e")

    @cached(cache=shared_cache, ttl=60)
    def profile(n: int) -> dict[str, Any]:
        calls.append(n)
        return {"id": account, "joined": dt.date(2024, 1, 1), "n": n}

    first = profile(1)
    second = profile(1)
    assert type(second["id"]) is uuid.UUID
    assert exact(first, second)
    assert calls == [1, 1]  # not cached: computed again
    assert entries(raw, namespace) == []


def test_a_value_of_another_schema_in_redis_is_recomputed_not_coerced(
    shared_cache: RedisCache, raw: redis.Redis, namespace: str
) -> None:
    calls: list[int] = []

    @cached(cache=shared_cache, ttl=60)
    def price(sku: str) -> int:
        calls.append(1)
        return 5

    assert price("a") == 5
    [key] = entries(raw, namespace)
    assert raw.get(key) == b"5"
    raw.set(key, b'"999"')  # another version of the code stored a str here
    back = price("a")
    assert back == 5
    assert type(back) is int
    assert len(calls) == 2  # a miss, not 999
    assert raw.get(key) == b"5"  # the bad entry was replaced


def test_a_bool_of_another_schema_is_recomputed_not_coerced(
    shared_cache: RedisCache, raw: redis.Redis, namespace: str
) -> None:
    calls: list[int] = []

    @cached(cache=shared_cache, ttl=60)
    def enabled(flag: str) -> bool:
        calls.append(1)
        return False

    assert enabled("x") is False
    [key] = entries(raw, namespace)
    raw.set(key, b'"yes"')
    assert enabled("x") is False
    assert len(calls) == 2


@pytest.mark.asyncio
async def test_an_async_hit_returns_exactly_what_the_miss_returned(
    shared_cache: RedisCache, raw: redis.Redis, namespace: str
) -> None:
    calls: list[int] = []

    @cached(cache=shared_cache, ttl=60)
    async def order(n: int) -> Order:
        calls.append(n)
        return ORDER

    first = await order(1)
    second = await order(1)
    assert calls == [1]
    assert exact(first, second)
    assert second is not first  # it really came from Redis
    await shared_cache.aclose()
