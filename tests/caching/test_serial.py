"""Serializers and key text as a `RedisCache` uses them, case by case.

A `RedisCache` that never connects (nothing here talks to Redis) hands out the
serializer of a return annotation (`RedisCache.serializer_for`) and spells the
Redis key of a call (`RedisCache.text_of`): what a cached function stores, reads
back and refuses, and what the refusals say.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Annotated, Any, NamedTuple

import pytest
from pydantic import BaseModel, PlainSerializer, SecretStr, field_serializer

from buttress.caching import RedisCache
from buttress.errors import CacheKeyError, ConfigurationError, DecodeError

UNREACHABLE = "redis://127.0.0.1:1"
KEY = "k" * 32


@pytest.fixture
def json_cache() -> Iterator[RedisCache]:
    cache = RedisCache(UNREACHABLE, namespace="never-connected")
    yield cache
    cache.close()


@pytest.fixture
def pickle_cache() -> Iterator[RedisCache]:
    cache = RedisCache(
        UNREACHABLE, namespace="never-connected", serializer="pickle", signing_key=KEY
    )
    yield cache
    cache.close()


# -- JSON: what a value would read back as, or why it is not stored -----------------------------


class Listed(list[int]):
    """A list subclass: reads back as a plain list."""


class Pair(NamedTuple):
    left: int
    right: str


class Texts(BaseModel):
    """Writes its ints as strs, which strict reading refuses."""

    a: int
    b: int

    @field_serializer("a", "b")
    def _as_text(self, value: int) -> str:
        return str(value)


class Nested(BaseModel):
    items: list[Annotated[int, PlainSerializer(str)]]


Unsigned = Annotated[float, PlainSerializer(abs)]  # -1.0 and 1.0 both written as 1.0
AsFloat = Annotated[int | float, PlainSerializer(float)]  # 1 written as 1.0


def refusal(cache: RedisCache, returns: Any, value: Any) -> str:
    """The message of the `ConfigurationError` with which ``value`` is not stored."""
    with pytest.raises(ConfigurationError) as caught:
        cache.serializer_for(returns).dumps(value)
    return str(caught.value)


@pytest.mark.parametrize(
    ("returns", "value", "difference"),
    [
        (float | None, 1, "the value: int would read back as float"),
        (object | None, (1, 2), "the value: tuple would read back as list"),
        (list[int], Listed([1]), f"the value: {__name__}.Listed would read back as list"),
        (tuple[int, str], (True, "a"), "value[0]: bool would read back as int"),
        (tuple[int, str], Pair(1, "b"), f"the value: {__name__}.Pair would read back as tuple"),
        (tuple[Any, Any], ((1, 2), 3), "value[0]: tuple would read back as list"),
        (set[Unsigned], {1.0, -1.0}, "the value: set of 2 items would read back with 1"),
        (set[AsFloat], {1}, "value (an item): int would read back as float"),
    ],
    ids=[
        "optional",
        "optional-any",
        "subclass",
        "tuple-item",
        "named-tuple",
        "tuple-of-any",
        "set-size",
        "set-item",
    ],
)
def test_a_value_of_json_types_that_would_read_back_otherwise_is_refused(
    json_cache: RedisCache, returns: Any, value: Any, difference: str
) -> None:
    """Values that look like the annotation (no shortcut may wave them through)."""
    message = refusal(json_cache, returns, value)
    assert f" exactly: {difference}. Annotate the function's return type" in message


@pytest.mark.parametrize(
    ("returns", "value", "problems"),
    [
        (
            Texts,
            Texts(a=1, b=2),
            "a: Input should be a valid integer; b: Input should be a valid integer",
        ),
        (Nested, Nested(items=[1]), "items.0: Input should be a valid integer"),
        (Annotated[int, PlainSerializer(str)], 1, "value: Input should be a valid integer"),
    ],
    ids=["two-fields", "nested", "the-value"],
)
def test_json_that_strict_reading_refuses_is_not_stored_and_says_where(
    json_cache: RedisCache, returns: Any, value: Any, problems: str
) -> None:
    message = refusal(json_cache, returns, value)
    assert f"the value: its JSON does not read back ({problems})." in message
    assert "serializer='pickle'" in message


def test_a_json_serializer_names_its_type(json_cache: RedisCache) -> None:
    assert repr(json_cache.serializer_for(int)) == "JsonSerializer(builtins.int)"
    assert repr(json_cache.serializer_for(list[int])) == "JsonSerializer(list[int])"
    assert repr(json_cache.serializer_for(Any)) == "JsonSerializer(typing.Any)"


# -- signed pickles ---------------------------------------------------------------------------


NO_KEY = (
    "pickled cache values need a signing_key: unsigned pickles read from a shared store can "
    "run arbitrary code. Pass signing_key= (a random secret of at least 32 characters, the "
    "same in every process), or use the JSON serializer"
)
SHORT_KEY = (
    "signing_key is too short: use a random secret of at least 32 characters, such as the "
    "output of `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
)


@pytest.mark.parametrize(
    ("signing_key", "problem"),
    [
        (None, NO_KEY),
        ("s" * 31, SHORT_KEY),
        (SecretStr("s" * 31), SHORT_KEY),
        (b"b" * 32, "signing_key must be a str or a SecretStr, got a bytes"),
        (SecretStr(42), "signing_key must be a str or a SecretStr, got a SecretStr"),  # type: ignore[arg-type]
    ],
    ids=["missing", "short", "short-secret", "bytes", "secret-of-int"],
)
def test_a_pickle_cache_refuses_a_missing_short_or_non_text_key_saying_what_to_pass(
    signing_key: Any, problem: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RedisCache(UNREACHABLE, serializer="pickle", signing_key=signing_key)
    assert str(caught.value) == f"invalid RedisCache:\n  - {problem}"


@pytest.mark.parametrize(
    "signing_key", [KEY, SecretStr(KEY), "é" * 32], ids=["str", "secret", "non-ascii"]
)
def test_a_key_of_32_characters_is_enough(signing_key: Any) -> None:
    cache = RedisCache(UNREACHABLE, serializer="pickle", signing_key=signing_key)
    try:
        serializer = cache.serializer_for(Any)
        assert serializer.loads(serializer.dumps({1, 2})) == {1, 2}
    finally:
        cache.close()


def test_the_pickle_serializer_never_shows_its_key(pickle_cache: RedisCache) -> None:
    assert repr(pickle_cache.serializer_for(int)) == "PickleSerializer(signing_key=**********)"


def test_a_value_that_cannot_be_pickled_is_refused_saying_what_to_cache(
    pickle_cache: RedisCache,
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        pickle_cache.serializer_for(Any).dumps(lambda: 1)
    message = str(caught.value)
    assert message.startswith("cannot pickle a function: ")
    assert message.endswith(
        ". Cache values that can be pickled, or pass key=/a different return value"
    )


def test_a_pickle_with_a_bad_signature_is_refused_saying_what_to_check(
    pickle_cache: RedisCache,
) -> None:
    serializer = pickle_cache.serializer_for(Any)
    data = serializer.dumps([1, 2])
    for bad in (data[:31], data[:32] + pickle.dumps([1, 3]), b"x" * 32 + data[32:]):
        with pytest.raises(DecodeError) as caught:
            serializer.loads(bad)
        assert str(caught.value) == (
            "a cached pickle has a bad signature: it was written with another signing_key or "
            "changed in the store, so it was not unpickled. Check that every process uses the "
            "same signing_key"
        )
    assert serializer.loads(data) == [1, 2]


def _gone() -> Any:
    raise LookupError("the class is gone")


class Vanishing:
    """Pickles as a call that fails when loaded, as a renamed class would."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_gone, ())


def test_a_signed_pickle_that_cannot_be_loaded_says_to_change_the_version(
    pickle_cache: RedisCache,
) -> None:
    serializer = pickle_cache.serializer_for(Any)
    with pytest.raises(DecodeError) as caught:
        serializer.loads(serializer.dumps(Vanishing()))
    assert str(caught.value) == (
        "a signed cached pickle cannot be loaded (LookupError); the code that wrote it "
        "differs. Change RedisCache(version=...) when cached types change"
    )
    assert isinstance(caught.value.__cause__, LookupError)


# -- key text ---------------------------------------------------------------------------------


def key_text(cache: RedisCache, *arguments: Any) -> str:
    """The Redis key of a call with canonical ``arguments``, after the function's name."""
    text = cache.text_of("f")((object(), *arguments))
    prefix = f"{cache.prefix}f:"
    assert text.startswith(prefix)
    return text[len(prefix) :]


REFUSED_TAIL = (
    " cannot be part of a key shared between processes: it has no stable text form (only "
    "str, int, float, bool, None, bytes, tuples, frozensets, enums, UUIDs, datetimes, dates, "
    "times, Decimals and classes do). Pass key= to cached to say how calls are keyed, such "
    "as key=lambda order: order.id"
)


class InstanceToken:
    """Named like the token of a method's instance, but an ordinary argument."""


def test_an_argument_without_a_stable_text_is_refused_saying_how_to_key(
    json_cache: RedisCache,
) -> None:
    for argument, named in [
        (InstanceToken(), f"an argument of type {__name__}:InstanceToken"),
        (1j, "an argument of type builtins:complex"),
    ]:
        with pytest.raises(CacheKeyError) as caught:
            key_text(json_cache, 1, argument)
        assert str(caught.value) == named + REFUSED_TAIL


def test_a_method_instance_is_refused_as_such() -> None:
    # Not reachable through cached: a shared cache refuses methods without key= up front.
    from buttress.caching._keys import InstanceToken as Token  # noqa: PLC0415

    cache = RedisCache(UNREACHABLE, namespace="never-connected")
    try:
        with pytest.raises(CacheKeyError) as caught:
            key_text(cache, Token())
    finally:
        cache.close()
    assert str(caught.value) == "a method's instance (self)" + REFUSED_TAIL


def test_a_refused_value_is_not_echoed_into_the_message(json_cache: RedisCache) -> None:
    """The message reaches the logs: it names the type, never the value."""
    message = refusal(json_cache, int, "hunter2-secret")
    assert "hunter2-secret" not in message
    assert "cannot store a str as" in message
