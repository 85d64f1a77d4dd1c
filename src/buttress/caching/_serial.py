"""How values and keys leave the process: value serializers and stable key text.

A cache outside the process (Redis) stores bytes under text keys, so it needs:

- a **serializer** per function, turning the function's results into bytes and
  back into the same type. `JsonSerializer` (the default) uses the function's
  return annotation through a pydantic ``TypeAdapter``, so models, dataclasses,
  datetimes and UUIDs come back exactly as the function returned them: a value
  that would read back otherwise is not stored, and stored data of another
  shape is refused when read, never coerced. `PickleSerializer`
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

import dataclasses
import datetime as dt
import functools
import hashlib
import hmac
import inspect
import json
import math
import pickle
import re
import types
import typing
import uuid
from collections import defaultdict, deque
from decimal import Decimal
from enum import Enum
from json.encoder import encode_basestring_ascii as _quoted  # json.dumps of a str, minus overhead
from typing import TYPE_CHECKING, Any, Final, Protocol

from pydantic import (
    BaseModel,
    ConfigDict,
    PydanticUserError,
    SecretStr,
    TypeAdapter,
    ValidationError,
)

from buttress._text import a
from buttress.errors import CacheKeyError, ConfigurationError, DecodeError

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator, Sequence
    from collections.abc import Set as AbstractSet

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

_ROUND_TRIP: Final = ConfigDict(
    ser_json_inf_nan="constants", ser_json_bytes="base64", val_json_bytes="base64"
)
"""NaN and infinities as JSON constants, bytes as base64: both read back as written."""

_BY_NAME: Final = "by_name" in inspect.signature(TypeAdapter.validate_json).parameters
"""Whether validation can read fields by name whatever their aliases (pydantic >= 2.11).

If so, fields are written under their names and read back by name (only for types
with aliases: passing ``by_name`` costs every read); if not, they are written
under the aliases validation expects.
"""

_NEVER: Final = frozenset({"callable", "is-subclass", "is-instance"})
"""Core schemas of functions, classes and arbitrary instances: no JSON validates as one."""
_WRAPPERS: Final = frozenset({"custom-error", "definitions"})
"""Core schemas that only wrap another (``schema``) and validate as it does."""

_ANY: Final[tuple[Any, ...]] = (Any, object)
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
"""A UTF-16 surrogate code point, which JSON text may not give back as it was."""
_INT_BOUND: Final = 1 << 64
"""Ints proven to round-trip lie strictly within this bound (pydantic refuses huge ones)."""


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


def _schema_nodes(schema: Any) -> Iterator[dict[str, Any]]:
    """Every dict nested in a core schema (schemas, fields...), depth first."""
    pending, seen = [schema], set()
    while pending:
        item = pending.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, dict):
            yield item
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)


def _has_aliases(schema: Any) -> bool:
    """Whether a field somewhere in a core schema has an alias."""
    return any(
        "validation_alias" in node or "serialization_alias" in node
        for node in _schema_nodes(schema)
    )


def _never_round_trips(returns: Any, schema: Any) -> str | None:
    """Why no value of ``returns`` reads back from JSON as itself, if that is so."""
    outer = schema
    while outer.get("type") in _WRAPPERS:
        outer = outer["schema"]
    if outer.get("type") in _NEVER:
        return (
            f"cannot store values of type {_type_name(returns)} as JSON: JSON holds no "
            "functions or classes, so none would read back. Cache what they are made from "
            "instead, or use RedisCache(serializer='pickle', signing_key=...)"
        )
    if any(node.get("type") == "generator" for node in _schema_nodes(schema)):
        return (
            f"cannot store values of type {_type_name(returns)} as JSON: it is or holds an "
            "Iterable, Iterator or Generator, which writing would use up before the caller "
            "sees it, and which reads back as a one-shot iterator. Return and annotate a "
            "list or a tuple instead"
        )
    return None


# -- proofs: values that provably read back as themselves, without reading them back --

_Proof: typing.TypeAlias = "Callable[[Any], bool]"


def _plain(value: Any) -> bool:
    """Whether ``value`` is JSON made of exact builtins (str keys), so reads back as itself."""
    kind = type(value)
    if kind is str:
        return _text(value)
    if kind is float or kind is bool or value is None:
        return True
    if kind is int:
        return bool(-_INT_BOUND < value < _INT_BOUND)
    if kind is list:
        return all(map(_plain, value))
    if kind is dict:
        return all(type(key) is str and _text(key) and _plain(item) for key, item in value.items())
    return False


def _text(value: str) -> bool:
    """Whether a str has no surrogates, which JSON may not give back.

    The standard library writes a surrogate pair as two escapes, read back as one
    character; pydantic refuses a surrogate in a value but writes one in a key,
    read back as U+FFFD.
    """
    return value.isascii() or _SURROGATE.search(value) is None


def _exact_str(value: Any) -> bool:
    return type(value) is str and _text(value)


def _exact_int(value: Any) -> bool:
    return type(value) is int and -_INT_BOUND < value < _INT_BOUND


def _is_none(value: Any) -> bool:
    return value is None


def _exact_type(kind: type) -> _Proof:
    def proof(value: Any) -> bool:
        return type(value) is kind

    return proof


def _collection_of(kind: type[Collection[Any]], items: _Proof) -> _Proof:
    def proof(value: Any) -> bool:
        return type(value) is kind and all(map(items, value))

    return proof


def _fixed_tuple_of(*items: _Proof) -> _Proof:
    def proof(value: Any) -> bool:
        return (
            type(value) is tuple
            and len(value) == len(items)
            and all(item(part) for item, part in zip(items, value, strict=True))
        )

    return proof


def _dict_of(items: _Proof) -> _Proof:
    def proof(value: Any) -> bool:
        return type(value) is dict and all(
            type(key) is str and _text(key) and items(item) for key, item in value.items()
        )

    return proof


def _optional(proof: _Proof) -> _Proof:
    def optional(value: Any) -> bool:
        return value is None or proof(value)

    return optional


_SCALAR_PROOFS: Final[dict[Any, _Proof]] = {
    int: _exact_int,
    float: _exact_type(float),  # NaN and infinities as constants, -0.0 as -0.0
    str: _exact_str,
    bool: _exact_type(bool),
    bytes: _exact_type(bytes),  # base64
    None: _is_none,
    type(None): _is_none,
}


def _proof_of(returns: Any) -> _Proof | None:
    """A cheap test that a value of ``returns`` reads back exactly, where one is known.

    Only for annotations made of JSON's own types and plain containers: ``Any``,
    ``int``, ``float``, ``str``, ``bool``, ``None``, ``bytes``, ``list[T]``,
    ``set[T]``, ``frozenset[T]``, ``tuple[T, ...]``, ``tuple[A, B]``,
    ``dict[str, T]`` and ``T | None``. A value passing the test is made of exactly
    those types, so the strict reading of its JSON can only give it back; any
    other value (and any other annotation) is read back and compared instead.
    """
    if any(returns is plain for plain in _ANY):
        return _plain
    try:
        scalar = _SCALAR_PROOFS.get(returns)
    except TypeError:  # an unhashable annotation
        return None
    if scalar is not None:
        return scalar
    if returns is list:
        return _collection_of(list, _plain)
    if returns is dict:
        return _dict_of(_plain)
    return _generic_proof(typing.get_origin(returns), typing.get_args(returns))


def _generic_proof(origin: Any, args: tuple[Any, ...]) -> _Proof | None:
    """`_proof_of` a container of a proven type, or of ``T | None``."""
    if origin in {typing.Union, types.UnionType} and len(args) == 2 and type(None) in args:  # noqa: PLR2004
        return _wrapped(_optional, [arg for arg in args if arg is not type(None)])
    if origin is dict and len(args) == 2 and args[0] is str:  # noqa: PLR2004 - key and value
        return _wrapped(_dict_of, args[1:])
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:  # noqa: PLR2004
        return _wrapped(functools.partial(_collection_of, tuple), args[:1])
    if origin is tuple and args and Ellipsis not in args:
        return _wrapped(_fixed_tuple_of, args)
    if origin in {list, set, frozenset} and len(args) == 1:
        return _wrapped(functools.partial(_collection_of, origin), args)
    return None


def _wrapped(wrap: Callable[..., _Proof], args: Sequence[Any]) -> _Proof | None:
    """``wrap`` applied to the proofs of ``args``, if each has one."""
    proofs = [_proof_of(arg) for arg in args]
    return None if any(proof is None for proof in proofs) else wrap(*proofs)


# -- comparison: what a value would read back as, against the value ---------------------


def _kind(value: Any) -> str:
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else _type_name(kind)


def _difference(written: Any, read: Any) -> str | None:
    """Where ``read`` differs from ``written`` in value or type, or ``None`` if nowhere.

    The answer is a path into the value (``['id']``, ``[0]``, ``.field``) followed
    by ``": "`` and what differs there. Equal values of different types differ
    (``1`` and ``1.0``, a tuple and a list, a subclass and its base), as do
    ``0.0`` and ``-0.0``, ``Decimal("1.0")`` and ``Decimal("1.00")``; NaN is
    the same as NaN.
    """
    kind = type(written)
    if type(read) is not kind:
        return f": {_kind(written)} would read back as {_kind(read)}"
    if kind in _ATOMS:
        return None if written == read else f": {_kind(written)} would read back changed"
    compare = _COMPARE.get(kind)
    if compare is None:
        compare = _compare_of(written)
        if len(_COMPARE) < _TYPES_KEPT:
            _COMPARE[kind] = compare
    return compare(written, read)


def _compare_of(written: Any) -> Callable[[Any, Any], str | None]:
    """How to compare values of the type of ``written`` (`_COMPARE` remembers it)."""
    if isinstance(written, BaseModel):
        return _model_difference
    if dataclasses.is_dataclass(written):
        return _dataclass_difference
    if isinstance(written, dict):
        return _dict_difference
    if isinstance(written, list | tuple | deque):
        return _sequence_difference
    if isinstance(written, set | frozenset):
        return _set_difference
    return _equal_difference


def _equal_difference(written: Any, read: Any) -> str | None:
    """Compare by ``==`` (the types are already the same)."""
    try:
        same = bool(written == read)
    except Exception:  # noqa: BLE001 - a comparison that fails says the values are not the same
        same = False
    return None if same else f": {_kind(written)} would read back changed"


def _float_difference(written: float, read: float) -> str | None:
    if written == read:
        same = math.copysign(1.0, written) == math.copysign(1.0, read)  # 0.0 and -0.0
    else:
        same = math.isnan(written) and math.isnan(read)
    return None if same else ": float would read back as another float"


def _decimal_difference(written: Decimal, read: Decimal) -> str | None:
    if str(written) == str(read):  # 1.0 and 1.00 are equal, not the same; str is lossless
        return None
    return f": {_kind(written)} would read back with other digits or another exponent"


def _moment_difference(written: dt.datetime | dt.time, read: dt.datetime | dt.time) -> str | None:
    # The same instant at the same offset is the same wall time; fold is ignored by ==.
    if written != read or written.utcoffset() != read.utcoffset() or written.fold != read.fold:
        return f": {_kind(written)} would read back changed"
    zone = written.tzinfo
    if zone is None or type(zone) is dt.timezone or _fixed_offset(zone) is not None:
        return None  # a fixed offset reads back as the same fixed offset (pydantic's TzInfo)
    return (  # a zone with daylight saving time (ZoneInfo) reads back as a fixed offset
        f": {_kind(written)} in time zone {zone} would read back with the fixed offset of "
        f"{read.tzinfo}; use a fixed-offset zone (datetime.timezone, such as UTC)"
    )


def _fixed_offset(zone: dt.tzinfo) -> dt.timedelta | None:
    """The offset of a zone that has one all year round (``None`` for ZoneInfo's zones)."""
    try:
        return zone.utcoffset(None)
    except Exception:  # noqa: BLE001 - a tzinfo of the user's own may not answer for no time
        return None


_ATOMS: Final[frozenset[type]] = frozenset(
    {str, int, bool, type(None), bytes, uuid.UUID, dt.date, dt.timedelta}
)
"""Types whose == is exactness, once both sides are of the type."""

_TYPES_KEPT: Final = 1024
"""How many types `_COMPARE` learns the comparison of (classes can be made at run time)."""

_COMPARE: Final[dict[type, Callable[[Any, Any], str | None]]] = {
    float: _float_difference,
    Decimal: _decimal_difference,
    dt.datetime: _moment_difference,
    dt.time: _moment_difference,
}


def _dataclass_difference(written: Any, read: Any) -> str | None:
    # As a dataclass's own ==: its fields (all of them, compared or not).
    for name in (field.name for field in dataclasses.fields(written)):
        inner = _difference(getattr(written, name, _ABSENT), getattr(read, name, _ABSENT))
        if inner is not None:
            return f".{name}{inner}"
    return None


def _model_difference(written: BaseModel, read: BaseModel) -> str | None:
    # As pydantic's own ==: the fields, the extra fields and the private attributes.
    fields, back = written.__dict__, read.__dict__
    # Only fields, unless a cached_property put more into the value's __dict__.
    names = fields if len(fields) == len(back) else type(written).model_fields
    for name in names:
        inner = _difference(fields.get(name, _ABSENT), back.get(name, _ABSENT))
        if inner is not None:
            return f".{name}{inner}"
    for label, mine, theirs in (
        ("extra fields", written.__pydantic_extra__, read.__pydantic_extra__),
        ("private attributes", written.__pydantic_private__, read.__pydantic_private__),
    ):
        inner = _difference(mine, theirs)
        if inner is not None:
            return f" ({label}){inner}"
    return None


def _dict_difference(written: dict[Any, Any], read: dict[Any, Any]) -> str | None:
    if len(written) != len(read):
        return f": {_kind(written)} of {len(written)} items would read back with {len(read)}"
    if isinstance(written, defaultdict) and written.default_factory != read.default_factory:  # type: ignore[attr-defined]
        return ": defaultdict would read back with another default_factory"
    for (key, item), (key_back, item_back) in zip(written.items(), read.items(), strict=True):
        inner = _difference(key, key_back)
        if inner is not None:
            return f"[{_short(key)}] (the key){inner}"
        inner = _difference(item, item_back)
        if inner is not None:
            return f"[{_short(key)}]{inner}"
    return None


def _sequence_difference(written: Sequence[Any], read: Sequence[Any]) -> str | None:
    if len(written) != len(read):
        return f": {_kind(written)} of {len(written)} items would read back with {len(read)}"
    if isinstance(written, deque) and written.maxlen != read.maxlen:  # type: ignore[attr-defined]
        return ": deque would read back with another maxlen"
    kinds = [*map(type, written)]
    if _ATOMS.issuperset(kinds) and kinds == [*map(type, read)] and written == read:
        return None  # atoms only (ints, strs...), of the same types, all equal
    for index, (item, item_back) in enumerate(zip(written, read, strict=True)):
        inner = _difference(item, item_back)
        if inner is not None:
            return f"[{index}]{inner}"
    return None


def _set_difference(written: AbstractSet[Any], read: AbstractSet[Any]) -> str | None:
    if len(written) != len(read):
        return f": {_kind(written)} of {len(written)} items would read back with {len(read)}"
    members = {member: member for member in read}
    for item in written:
        inner = _difference(item, members.get(item, _ABSENT))
        if inner is not None:
            return f" (an item){inner}"
    return None


def _short(key: Any) -> str:
    text = repr(key)
    return text if len(text) <= _SHORT else text[: _SHORT - 3] + "..."


class _Absent:
    """The type of `_ABSENT`: an attribute or item one side of a comparison lacks."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<absent>"


_ABSENT: Final = _Absent()
_SHORT: Final = 40


def _problems(error: ValidationError) -> str:
    """A validation error's problems, without the input values (they may be secrets)."""
    return "; ".join(
        f"{'.'.join(map(str, problem['loc'])) or 'value'}: {problem['msg']}"
        for problem in error.errors(include_url=False, include_input=False)
    )


class JsonSerializer:
    """Stores a function's results as JSON, read back exactly as they were returned.

    Values are written with pydantic's ``TypeAdapter(returns).dump_json`` and read
    with ``validate_json`` in strict mode, so a function annotated ``-> Order`` (a
    pydantic model or a dataclass), ``-> datetime`` or ``-> list[UUID]`` gets the
    same type back from Redis, and data written under another schema (``"999"``
    for an ``int``, ``"yes"`` for a ``bool``) is refused (`DecodeError`: a miss)
    instead of coerced. Without an annotation (``Any`` or ``object``), values are
    plain JSON, written and read by the standard library.

    A value is stored only if it reads back exactly: equal, and of the same
    types all the way down. A UUID under ``dict[str, Any]`` (which would read
    back as a str), a tuple under ``Any`` (a list), an int under ``float`` (a
    float) or a subclass under its base class is refused by `dumps` with
    `ConfigurationError`, which the cache treats as "not cached". Values made of
    JSON's own types under annotations made of them (``int``, ``str``,
    ``dict[str, Any]``, ``list[float]`` ...) are proven exact by a walk over
    their types; any other value is read back and compared once, when written.

    Args:
        returns: The function's return annotation; ``Any`` for plain JSON.

    Raises:
        ConfigurationError: pydantic cannot serialize the annotated type, or no
            value of it can read back as itself (a function, a class, an iterator).

    Example:
        ```python
        import datetime as dt

        from buttress.caching._serial import JsonSerializer

        serializer = JsonSerializer(dt.date)
        assert serializer.loads(serializer.dumps(dt.date(2024, 2, 29))) == dt.date(2024, 2, 29)
        ```
    """

    __slots__ = ("_adapter", "_by_name", "_proof", "returns")

    def __init__(self, returns: Any = Any) -> None:
        self.returns = returns
        self._adapter: TypeAdapter[Any] | None = None
        self._by_name = False
        self._proof: _Proof | None = _proof_of(returns)
        if any(returns is plain for plain in _ANY):
            return
        try:
            adapter = _adapter(returns)
        except Exception as error:  # pydantic raises several kinds for a type it cannot use
            raise ConfigurationError(
                f"cannot store values of type {_type_name(returns)} as JSON ({error}). "
                "Annotate the function's return type with something pydantic can serialize "
                "(a pydantic model, a dataclass, a TypedDict, builtin types), or use "
                "RedisCache(serializer='pickle', signing_key=...)"
            ) from error
        schema = adapter.core_schema
        problem = _never_round_trips(returns, schema)
        if problem is not None:
            raise ConfigurationError(problem)
        self._adapter = adapter
        self._by_name = _BY_NAME and _has_aliases(schema)

    def __repr__(self) -> str:
        return f"JsonSerializer({_type_name(self.returns)})"

    def _expected(self) -> str:
        return "plain JSON" if self._adapter is None else _type_name(self.returns)

    def dumps(self, value: Any) -> bytes:
        """Return ``value`` as JSON bytes, if they read back as exactly ``value``.

        Args:
            value: A value of the annotated type.

        Returns:
            The JSON text, UTF-8 encoded.

        Raises:
            ConfigurationError: The value does not match the annotation, or would
                read back as something else (another type somewhere inside it, a
                changed value); without an annotation, it is not plain JSON.
        """
        adapter = self._adapter
        try:
            if adapter is None:
                data = json.dumps(value, separators=(",", ":")).encode()
            else:
                # round_trip: Json[...] fields as their JSON text, computed fields left out.
                data = adapter.serializer.to_json(
                    value, warnings="error", round_trip=True, by_alias=not _BY_NAME
                )
        except Exception as error:  # a serializer of the user's own may raise anything
            raise ConfigurationError(
                f"cannot store {a(_kind(value))} as {self._expected()}: "
                f"{_INPUT_VALUE.sub('', str(error))}. Make the "
                "return annotation say what the function returns, or use "
                "RedisCache(serializer='pickle', signing_key=...)"
            ) from error
        proof = self._proof
        try:
            if proof is None or not proof(value):
                self._check_exact(value, data)
        except RecursionError as error:
            raise self._inexact(value, ": it is nested too deeply to compare") from error
        return data

    def _check_exact(self, value: Any, data: bytes) -> None:
        """Raise `ConfigurationError` unless ``data`` reads back as exactly ``value``."""
        try:
            read = self.loads(data)
        except DecodeError as error:
            cause = error.__cause__
            why = _problems(cause) if isinstance(cause, ValidationError) else repr(cause)
            raise self._inexact(value, f": its JSON does not read back ({why})") from error
        difference = _difference(value, read)
        if difference is not None:
            raise self._inexact(value, difference)

    def _inexact(self, value: Any, difference: str) -> ConfigurationError:
        where = f"the value{difference}" if difference.startswith(":") else f"value{difference}"
        return ConfigurationError(
            f"cannot cache {a(_kind(value))} as {self._expected()} exactly: {where}. "
            "Annotate the function's return type with exactly what it returns (a pydantic "
            "model, a dataclass or a TypedDict with typed fields, tuple[...] for tuples), "
            "or use RedisCache(serializer='pickle', signing_key=...)"
        )

    def loads(self, data: bytes) -> Any:
        """Return the value held by JSON ``data``, as the annotated type.

        Decoding is strict: JSON of another type is refused, not coerced
        (``"999"`` is not an ``int``, ``"yes"`` not a ``bool``, ``1`` not a
        ``str``).

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
            if self._by_name:  # keywords spelled out: a ** call is slower, on every hit
                return adapter.validator.validate_json(
                    data, strict=True, by_alias=False, by_name=True
                )
            return adapter.validator.validate_json(data, strict=True)
        except Exception as error:  # a validator of the user's own may raise anything
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
            f"signing_key must be a str or a SecretStr, got {a(type(signing_key).__qualname__)}"
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
                f"cannot pickle {a(type(value).__qualname__)}: {error}. Cache values that "
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


_INPUT_VALUE = re.compile(r"input_value=.*?, (?=input_type=)", re.DOTALL)
"""pydantic's echo of a refused value: left out of messages, which reach logs."""


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
