"""The page cursor of keyset pagination: opaque to clients, and tamper-evident.

A page sorted by ``(field, descending)`` pairs, which end with the primary key,
continues after the last row's values of those fields. `encode_cursor` hands
those values to the client as one URL-safe string, and `decode_cursor` takes
them back from it, typed as the model's columns are:

- the payload is JSON of the order (spelled as an ``order_by`` string such as
  ``"-total,id"``) and the values, written and read by a pydantic adapter of the
  columns' Python types, so integers, floats, decimals, text, bytes, booleans,
  dates, datetimes (naive and aware), UUIDs, enums and ``None`` come back equal
  to what went in;
- the string is base64url, without padding, of a MAC and the payload; the MAC is
  HMAC-SHA256, cut to 16 bytes, keyed by the model's qualified name and the
  repository's secret.

A cursor that was altered, is malformed, or was made for another model or with
another secret raises `DecodeError`; a genuine cursor of another order raises
`QueryError`. Without a secret the key follows from the model's name alone, so
the MAC catches accidents (a truncated or edited URL) but not a client that
forges a cursor on purpose; pass a secret to stop that too. A forged cursor can
at worst start a page at chosen values: they are validated against the column
types and bound as parameters, never spliced into SQL.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import hmac
import json
from typing import TYPE_CHECKING, Annotated, Any, Final, NamedTuple

from pydantic import ConfigDict, TypeAdapter, ValidationError, WrapSerializer
from pydantic_core import PydanticSerializationError

from buttress.errors import DecodeError, QueryError
from buttress.persistence._query import _column

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pydantic import SerializerFunctionWrapHandler

__all__ = ["decode_cursor", "encode_cursor"]

MAX_CURSOR_LENGTH: Final = 4096
"""The longest cursor `decode_cursor` reads, in characters."""

_MAC_SIZE: Final = 16
_CONFIG: Final = ConfigDict(
    ser_json_bytes="base64",
    val_json_bytes="base64",
    ser_json_inf_nan="constants",  # inf is a value to sort by, not a missing one
    allow_inf_nan=True,  # also for Decimal, which refuses them by default
)


class _Codec(NamedTuple):
    """How one model's cursors for one order are written and read."""

    order: str
    adapter: TypeAdapter[tuple[str, tuple[Any, ...]]]


def _whole_minute_offset(value: Any, handler: SerializerFunctionWrapHandler) -> Any:
    """Write an aware datetime whose UTC offset has seconds in UTC.

    JSON datetimes carry offsets in whole minutes, so ``+00:19:32`` (a local mean
    time, found in time zone data before 1940) would come back 32 seconds off.
    """
    if isinstance(value, dt.datetime):
        offset = value.utcoffset()
        if offset is not None and offset % dt.timedelta(minutes=1):
            value = value.astimezone(dt.UTC)  # OverflowError at the ends of the calendar
    return handler(value)


def _python_type(column: Any) -> Any:
    try:
        python_type: Any = column.type.python_type
    except NotImplementedError:
        return Any  # a custom type under SQLAlchemy 2.0 (2.1 says object): any JSON value
    if isinstance(python_type, type) and issubclass(python_type, dt.datetime):
        return Annotated[python_type, WrapSerializer(_whole_minute_offset, when_used="json")]
    return python_type


@functools.lru_cache(maxsize=256)
def _codec(model: type, pairs: tuple[tuple[str, bool], ...]) -> _Codec:
    order = ",".join(f"-{name}" if descending else name for name, descending in pairs)
    types = tuple(_python_type(_column(model, name)) | None for name, _ in pairs)
    shape: Any = tuple[str, tuple[types]]  # type: ignore[valid-type]
    adapter: TypeAdapter[tuple[str, tuple[Any, ...]]] = TypeAdapter(shape, config=_CONFIG)
    return _Codec(order, adapter)


@functools.lru_cache(maxsize=256)
def _key(model: type, secret: bytes | None) -> bytes:
    name = f"{model.__module__}.{model.__qualname__}".encode()
    return hmac.new(secret or b"", b"buttress-cursor:" + name, hashlib.sha256).digest()


def _mac(model: type, secret: bytes | None, payload: bytes) -> bytes:
    return hmac.new(_key(model, secret), payload, hashlib.sha256).digest()[:_MAC_SIZE]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _seal(model: type, secret: bytes | None, payload: bytes) -> str:
    """The cursor string of ``payload``: base64url of its MAC and itself."""
    return _b64(_mac(model, secret, payload) + payload)


def _not_issued(reason: str) -> DecodeError:
    return DecodeError(
        f"the page cursor is not one this repository issued ({reason}): pass the "
        "next_cursor of a previous page unchanged, or start again from the first page "
        "without a cursor"
    )


def _unseal(model: type, secret: bytes | None, cursor: object) -> bytes:
    """The payload of ``cursor`` once its MAC is checked; `DecodeError` for anything else."""
    if not isinstance(cursor, str):
        raise _not_issued(f"a cursor is a string, not {type(cursor).__name__}")
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise _not_issued(f"longer than {MAX_CURSOR_LENGTH} characters")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except ValueError as error:  # binascii.Error, or text that is not ASCII
        raise _not_issued("not base64url") from error
    if _b64(raw) != cursor:  # stray characters, padding or trailing bits: not our spelling
        raise _not_issued("not base64url")
    if len(raw) <= _MAC_SIZE:
        raise _not_issued("too short")
    mac, payload = raw[:_MAC_SIZE], raw[_MAC_SIZE:]
    if not hmac.compare_digest(mac, _mac(model, secret, payload)):
        raise _not_issued("altered, or made for another model or with another secret")
    return payload


def _order_in(payload: bytes) -> str | None:
    """The order a payload was made for, if it is shaped as `encode_cursor` writes it."""
    try:
        content = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if isinstance(content, list) and content and isinstance(content[0], str):
        return content[0]
    return None


def _other_order(made: str, asked: str) -> QueryError:
    return QueryError(
        f"the page cursor was made for order_by={made!r} and the page asks for "
        f"order_by={asked!r}: pass the same order_by with a cursor as for the page "
        "that returned it"
    )


def encode_cursor(
    model: type[Any],
    pairs: tuple[tuple[str, bool], ...],
    values: Sequence[Any],
    *,
    secret: bytes | None = None,
) -> str:
    """The cursor of the page that continues after ``values`` in the order of ``pairs``.

    Args:
        model: The mapped class paged through.
        pairs: Checked ``(field, descending)`` pairs (from ``parse_order``), ending
            with the primary key.
        values: The last row's value of each field of ``pairs``, in order.
        secret: The repository's secret; a cursor decodes only with the same one.

    Returns:
        A string of at most 4096 characters from ``[A-Za-z0-9_-]``.

    Raises:
        QueryError: A field is not mapped, the values do not match the pairs or the
            columns' types, or they are too long for a cursor.
    """
    mapped: type = model  # the same class: mypy sees a bare type as hashable, type[Any] not
    codec = _codec(mapped, pairs)
    if len(values) != len(pairs):
        raise QueryError(
            f"a page cursor for order_by={codec.order!r} takes {len(pairs)} values, "
            f"got {len(values)}: pass the last row's value of each field"
        )
    try:
        payload = codec.adapter.dump_json((codec.order, tuple(values)), warnings="error")
    except PydanticSerializationError as error:
        raise QueryError(
            f"cannot write {tuple(values)!r} into a page cursor of {model.__name__} for "
            f"order_by={codec.order!r}: each value must be None or of its column's Python "
            "type (a float in a Numeric column, say, would not come back the same)"
        ) from error
    cursor = _seal(mapped, secret, payload)
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise QueryError(
            f"the page cursor after {tuple(values)!r} would be {len(cursor)} characters "
            f"long, more than {MAX_CURSOR_LENGTH}: order by fields with short values, such "
            "as dates, numbers or the primary key"
        )
    return cursor


def decode_cursor(
    model: type[Any],
    pairs: tuple[tuple[str, bool], ...],
    cursor: str,
    *,
    secret: bytes | None = None,
) -> tuple[Any, ...]:
    """The values `encode_cursor` put into ``cursor``, typed as the model's columns.

    Args:
        model: The mapped class paged through.
        pairs: The ``(field, descending)`` pairs of the page asked for.
        cursor: A cursor from `encode_cursor`, as the client sent it back.
        secret: The secret the cursor was made with.

    Returns:
        The value of each field of ``pairs``, in order.

    Raises:
        DecodeError: The cursor was not made by `encode_cursor` for this model with
            this secret, was altered, or is not a string of at most 4096 characters.
        QueryError: The cursor was made for another order than ``pairs``, or a field
            of ``pairs`` is not mapped.
    """
    mapped: type = model  # as in encode_cursor
    payload = _unseal(mapped, secret, cursor)
    codec = _codec(mapped, pairs)
    try:
        order, values = codec.adapter.validate_json(payload)
    except ValidationError as error:
        made = _order_in(payload)
        if made is None or made == codec.order:
            raise _not_issued("unreadable content") from error
        raise _other_order(made, codec.order) from None
    if order != codec.order:
        raise _other_order(order, codec.order)
    return values
