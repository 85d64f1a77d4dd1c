"""How values and keys leave the process: value serializers and stable key text.

A cache outside the process (Redis) stores bytes under text keys, so it needs:

- a **serializer** per function, turning the function's results into bytes and
  back into the same type. `JsonSerializer` (the default) uses the function's
  return annotation through a pydantic ``TypeAdapter``, so models, dataclasses,
  datetimes and UUIDs come back as what the function returned. `PickleSerializer`
  stores any picklable value, signed with HMAC-SHA256: nothing read from the
  store is unpickled unless its signature checks out.
- `encode_key`, turning the canonical arguments of a call into text that is the
  same in every process and every run, and different for different arguments.

The key text is a small type-tagged grammar: ``n`` (None), ``T``/``F`` (bools),
``i<decimal>`` (int), ``f<repr>`` (float), ``s<json string>`` (str), ``b<hex>``
(bytes), ``(a,b)`` (tuple), ``{a,b}`` (frozenset, items sorted by their text),
``e<json class name><value>`` (enum member), ``u<hex>`` (UUID), ``D``/``d``/``t``
followed by ISO 8601 (datetime, date, time), ``m<decimal>`` (Decimal) and
``c<json "module:qualname">`` (a class). The whole key is a tuple, so it starts
with ``(``; a key longer than `MAX_READABLE` characters is replaced by ``#``
and the hex BLAKE2b digest (20 bytes) of its text.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import json
import pickle
import uuid
from decimal import Decimal
from enum import Enum
from json.encoder import encode_basestring_ascii as _quoted  # json.dumps of a str, minus overhead
from typing import TYPE_CHECKING, Any, Final, Protocol

from pydantic import ConfigDict, PydanticUserError, SecretStr, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from buttress.errors import CacheKeyError, ConfigurationError, DecodeError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "MAX_READABLE",
    "MIN_SIGNING_KEY",
    "JsonSerializer",
    "PickleSerializer",
    "Serializer",
    "encode_key",
    "signing_secret",
]

MAX_READABLE: Final = 128
"""Key texts longer than this are replaced by ``#`` and their BLAKE2b digest."""

MIN_SIGNING_KEY: Final = 32
"""The shortest signing key `PickleSerializer` accepts, in characters."""

_DIGEST_SIZE: Final = 20
_MAC_SIZE: Final = hashlib.sha256().digest_size


class Serializer(Protocol):
    """Turns one function's results into bytes and back."""

    def dumps(self, value: Any) -> bytes:
        """Return ``value`` as bytes.

        Raises:
            ConfigurationError: The value cannot be stored this way.
        """
        ...

    def loads(self, data: bytes) -> Any:
        """Return the value ``data`` holds.

        Raises:
            DecodeError: ``data`` is corrupt, tampered with or of another shape.
        """
        ...


# -----------------------------------------------------------------------------
# JSON through pydantic
# -----------------------------------------------------------------------------

_PLAIN: Final[frozenset[Any]] = frozenset({Any, object})
_ROUND_TRIP: Final = ConfigDict(
    ser_json_inf_nan="constants", ser_json_bytes="base64", val_json_bytes="base64"
)
"""NaN and infinities as JSON constants, bytes as base64: both read back as written."""


def _build_adapter(returns: Any) -> TypeAdapter[Any]:
    try:
        return TypeAdapter(returns, config=_ROUND_TRIP)
    except PydanticUserError as error:
        if error.code != "type-adapter-config-unused":
            raise
    return TypeAdapter(returns)  # models, dataclasses, TypedDicts: their own config


@functools.lru_cache(maxsize=512)
def _cached_adapter(returns: Any) -> TypeAdapter[Any]:
    return _build_adapter(returns)


def _adapter(returns: Any) -> TypeAdapter[Any]:
    """The (shared) TypeAdapter of ``returns``, built once per annotation."""
    try:
        return _cached_adapter(returns)
    except TypeError as error:
        if "unhashable" not in str(error):
            raise
    return _build_adapter(returns)  # an annotation that cannot be a cache key itself


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return f"{annotation.__module__}.{annotation.__qualname__}"
    return repr(annotation)


class JsonSerializer:
    """Stores a function's results as JSON, read back as its return annotation.

    Values are written with pydantic's ``TypeAdapter(returns).dump_json`` and read
    with ``validate_json``, so a function annotated ``-> Order`` (a pydantic model
    or a dataclass), ``-> datetime`` or ``-> list[UUID]`` gets the same type back
    from Redis. A value that does not match the annotation is refused rather than
    stored in a shape that would read back differently. Without an annotation
    (``Any``), values are plain JSON: dicts, lists, strings, numbers, booleans and
    ``None`` (a tuple reads back as a list).

    Args:
        returns: The function's return annotation; ``Any`` for plain JSON.

    Raises:
        ConfigurationError: pydantic cannot serialize the annotated type.

    Example:
        ```python
        import datetime as dt

        from buttress.caching._serial import JsonSerializer

        serializer = JsonSerializer(dt.date)
        assert serializer.loads(serializer.dumps(dt.date(2024, 2, 29))) == dt.date(2024, 2, 29)
        ```
    """

    __slots__ = ("_adapter", "returns")

    def __init__(self, returns: Any = Any) -> None:
        self.returns = returns
        self._adapter: TypeAdapter[Any] | None = None
        if returns not in _PLAIN:
            try:
                self._adapter = _adapter(returns)
            except Exception as error:  # pydantic raises several kinds for a type it cannot use
                raise ConfigurationError(
                    f"cannot store values of type {_type_name(returns)} as JSON ({error}). "
                    "Annotate the function's return type with something pydantic can serialize "
                    "(a pydantic model, a dataclass, a TypedDict, builtin types), or use "
                    "RedisCache(serializer='pickle', signing_key=...)"
                ) from error

    def __repr__(self) -> str:
        return f"JsonSerializer({_type_name(self.returns)})"

    def dumps(self, value: Any) -> bytes:
        """Return ``value`` as JSON bytes.

        Args:
            value: A value of the annotated type.

        Returns:
            The JSON text, UTF-8 encoded.

        Raises:
            ConfigurationError: The value does not match the annotation (it would
                read back as something else), or, without an annotation, it is not
                plain JSON.
        """
        adapter = self._adapter
        try:
            if adapter is None:
                return json.dumps(value, separators=(",", ":")).encode()
            return adapter.dump_json(value, warnings="error")
        except (PydanticSerializationError, TypeError, ValueError) as error:
            expected = "plain JSON" if adapter is None else _type_name(self.returns)
            raise ConfigurationError(
                f"cannot store a {type(value).__qualname__} as {expected}: {error}. Make the "
                "return annotation say what the function returns, or use "
                "RedisCache(serializer='pickle', signing_key=...)"
            ) from error

    def loads(self, data: bytes) -> Any:
        """Return the value held by JSON ``data``, as the annotated type.

        Args:
            data: Bytes written by `dumps`.

        Returns:
            The value.

        Raises:
            DecodeError: ``data`` is not JSON of the annotated shape.
        """
        adapter = self._adapter
        try:
            if adapter is None:
                return json.loads(data)
            return adapter.validate_json(data)
        except (ValidationError, ValueError) as error:
            raise DecodeError(
                f"a cached value is not JSON of type {_type_name(self.returns)}; it was "
                "written by other code or is corrupt. Change RedisCache(version=...) when "
                "a function's return type changes"
            ) from error


# -----------------------------------------------------------------------------
# Signed pickles
# -----------------------------------------------------------------------------


def signing_secret(signing_key: str | SecretStr | None) -> bytes:
    """Check a signing key and return its bytes.

    Args:
        signing_key: The key, at least `MIN_SIGNING_KEY` characters.

    Returns:
        The key, UTF-8 encoded.

    Raises:
        ConfigurationError: The key is missing, not text, or too short.
    """
    if signing_key is None:
        raise ConfigurationError(
            "pickled cache values need a signing_key: unsigned pickles read from a shared "
            "store can run arbitrary code. Pass signing_key= (a random secret of at least "
            f"{MIN_SIGNING_KEY} characters, the same in every process), or use the JSON "
            "serializer"
        )
    secret = signing_key.get_secret_value() if isinstance(signing_key, SecretStr) else signing_key
    if not isinstance(secret, str):
        raise ConfigurationError(
            f"signing_key must be a str or a SecretStr, got a {type(signing_key).__qualname__}"
        )
    if len(secret) < MIN_SIGNING_KEY:
        # The key itself is never echoed, not even its length.
        raise ConfigurationError(
            f"signing_key is too short: use a random secret of at least {MIN_SIGNING_KEY} "
            "characters, such as the output of `python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'`"
        )
    return secret.encode()


class PickleSerializer:
    """Stores any picklable value as a pickle signed with HMAC-SHA256.

    The stored bytes are the 32-byte signature followed by the pickle. Reading
    checks the signature (in constant time) before anything is unpickled: data
    written without the key, or changed since, is refused with `DecodeError`
    and never reaches ``pickle.loads``. Every process sharing the cache needs
    the same key.

    Args:
        signing_key: A random secret of at least 32 characters.

    Raises:
        ConfigurationError: The key is missing or too short.

    Example:
        ```python
        from buttress.caching._serial import PickleSerializer

        serializer = PickleSerializer("k" * 32)
        assert serializer.loads(serializer.dumps({1, 2})) == {1, 2}
        ```
    """

    __slots__ = ("_key",)

    def __init__(self, signing_key: str | SecretStr | None) -> None:
        self._key = signing_secret(signing_key)

    def __repr__(self) -> str:
        return "PickleSerializer(signing_key=**********)"

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()

    def dumps(self, value: Any) -> bytes:
        """Return ``value`` pickled and signed.

        Args:
            value: Any picklable value.

        Returns:
            The signature followed by the pickle.

        Raises:
            ConfigurationError: The value cannot be pickled.
        """
        try:
            payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as error:  # pickling raises several kinds: TypeError, PicklingError...
            raise ConfigurationError(
                f"cannot pickle a {type(value).__qualname__}: {error}. Cache values that "
                "can be pickled, or pass key=/a different return value"
            ) from error
        return self._sign(payload) + payload

    def loads(self, data: bytes) -> Any:
        """Return the value of signed pickle ``data``, after checking its signature.

        Args:
            data: Bytes written by `dumps` with the same key.

        Returns:
            The value.

        Raises:
            DecodeError: The signature is missing or wrong (the data was not
                written with this key, or was changed), or the pickle cannot be
                loaded (a class it names is gone).
        """
        signature, payload = data[:_MAC_SIZE], data[_MAC_SIZE:]
        if len(signature) < _MAC_SIZE or not hmac.compare_digest(signature, self._sign(payload)):
            raise DecodeError(
                "a cached pickle has a bad signature: it was written with another "
                "signing_key or changed in the store, so it was not unpickled. Check that "
                "every process uses the same signing_key"
            )
        try:
            return pickle.loads(payload)  # noqa: S301 - signed by us, checked above
        except Exception as error:  # unpickling raises anything a class's code raises
            raise DecodeError(
                f"a signed cached pickle cannot be loaded ({type(error).__name__}); the "
                "code that wrote it differs. Change RedisCache(version=...) when cached "
                "types change"
            ) from error


# -----------------------------------------------------------------------------
# Key text
# -----------------------------------------------------------------------------


def _int(value: int) -> str:
    try:
        return f"i{value}"
    except ValueError:  # more digits than int-to-str conversion allows
        return f"h{value:x}"


def _tuple(value: tuple[Any, ...]) -> str:
    return "(" + ",".join(map(_item, value)) + ")"


def _frozenset(value: frozenset[Any]) -> str:
    return "{" + ",".join(sorted(map(_item, value))) + "}"


@functools.lru_cache(maxsize=1024)
def _class(value: type) -> str:
    return "c" + _quoted(f"{value.__module__}:{value.__qualname__}")


_EXACT: Final[dict[type, Callable[[Any], str]]] = {
    str: lambda value: "s" + _quoted(value),
    int: _int,
    bool: lambda value: "T" if value else "F",
    type(None): lambda _value: "n",
    float: lambda value: f"f{value!r}",
    bytes: lambda value: "b" + value.hex(),
    tuple: _tuple,
    frozenset: _frozenset,
    uuid.UUID: lambda value: "u" + value.hex,
    dt.datetime: lambda value: "D" + value.isoformat(),
    dt.date: lambda value: "d" + value.isoformat(),
    dt.time: lambda value: "t" + value.isoformat(),
    Decimal: lambda value: f"m{value}",
    type: _class,
}

# Checked in order for subclasses: bool before int, datetime before date, enums first.
_SUBCLASSES: Final[tuple[type, ...]] = (
    bool,
    int,
    float,
    str,
    bytes,
    tuple,
    frozenset,
    uuid.UUID,
    dt.datetime,
    dt.date,
    dt.time,
    Decimal,
    type,
)


def _item(value: object) -> str:
    """The text of one key item (raises `CacheKeyError` for what has none)."""
    encode = _EXACT.get(type(value))
    if encode is not None:
        return encode(value)
    if isinstance(value, Enum):
        return "e" + _quoted(_qualified(type(value))) + _item(value.value)
    for base in _SUBCLASSES:
        if isinstance(value, base):
            return _EXACT[base](value)
    raise _unkeyable(value)


def _qualified(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _unkeyable(value: object) -> CacheKeyError:
    kind = type(value)
    if kind.__name__ == "InstanceToken" and kind.__module__ == "buttress.caching._keys":
        what = "a method's instance (self)"
    else:
        what = f"an argument of type {_qualified(kind)}"
    return CacheKeyError(
        f"{what} cannot be part of a key shared between processes: it has no stable text "
        "form (only str, int, float, bool, None, bytes, tuples, frozensets, enums, UUIDs, "
        "datetimes, dates, times, Decimals and classes do). Pass key= to cached to say how "
        "calls are keyed, such as key=lambda order: order.id"
    )


def encode_key(parts: tuple[Any, ...]) -> str:
    """Return the stable text of a call's canonical arguments.

    The text is the same in every process and every run (no ``repr`` of
    arbitrary objects, no ``id``, no hash randomisation: frozensets are sorted by
    the text of their items), and different arguments give different texts,
    across types too: ``1``, ``1.0``, ``True``, ``"1"``, ``b"1"``, ``(1,)`` and
    ``frozenset({1})`` all differ. Texts longer than `MAX_READABLE` characters
    are replaced by ``#`` and a 160-bit BLAKE2b digest.

    Args:
        parts: The canonical key items after the function's identity.

    Returns:
        The key text: ``(...)`` or ``#<40 hex digits>``.

    Raises:
        CacheKeyError: An item has no stable text form (an arbitrary object).

    Example:
        ```python
        from buttress.caching._serial import encode_key

        assert encode_key((1, "a", None)) == '(i1,s"a",n)'
        assert encode_key((1,)) != encode_key((True,)) != encode_key((1.0,))
        ```
    """
    text = _tuple(parts)
    if len(text) <= MAX_READABLE:
        return text
    return "#" + hashlib.blake2b(text.encode(), digest_size=_DIGEST_SIZE).hexdigest()
