"""Page cursors bring back exactly the values they carry, and nothing else decodes."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import enum
import math
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from buttress.errors import DecodeError, QueryError
from buttress.persistence._cursor import _seal, decode_cursor, encode_cursor
from buttress.persistence._query import parse_order


class Base(DeclarativeBase):
    pass


class Colour(enum.Enum):
    RED = "red"
    GREEN = 2


class Opaque(sa.types.UserDefinedType[Any]):
    """A custom type with no Python type: its values travel as JSON's own."""

    cache_ok = True

    @property
    def python_type(self) -> type[Any]:
        raise NotImplementedError  # SQLAlchemy 2.0's default; 2.1 says object

    def get_col_spec(self, **_kw: Any) -> str:
        return "OPAQUE"


class Row(Base):
    __tablename__ = "cursor_row"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    x: Mapped[float | None] = mapped_column(sa.Float)
    amount: Mapped[decimal.Decimal | None] = mapped_column(sa.Numeric(20, 6))
    s: Mapped[str | None] = mapped_column(sa.String)
    blob: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    flag: Mapped[bool | None] = mapped_column(sa.Boolean)
    at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    day: Mapped[dt.date | None] = mapped_column(sa.Date)
    ref: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    colour: Mapped[Colour | None] = mapped_column(sa.Enum(Colour))
    other: Mapped[Any] = mapped_column(Opaque)


class Twin(Base):
    """The same columns as `Row` under another name: its cursors are not `Row`'s."""

    __tablename__ = "cursor_twin"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    s: Mapped[str | None] = mapped_column(sa.String)


OFFSETS = st.timedeltas(
    min_value=dt.timedelta(hours=-23, minutes=-59), max_value=dt.timedelta(hours=23, minutes=59)
)
AWARE = st.datetimes(
    min_value=dt.datetime(2, 1, 1),  # noqa: DTZ001 - bounds of naive datetimes
    max_value=dt.datetime(9998, 12, 31),  # noqa: DTZ001
    timezones=OFFSETS.map(dt.timezone),
)
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "id": st.integers(),
    "x": st.floats(allow_nan=False),
    "amount": st.decimals(allow_nan=False),
    "s": st.text(),
    "blob": st.binary(),
    "flag": st.booleans(),
    "at": st.datetimes() | AWARE,
    "day": st.dates(),
    "ref": st.uuids(),
    "colour": st.sampled_from(Colour),
    "other": st.integers() | st.text() | st.booleans(),
}

UNICODE = settings(suppress_health_check=[HealthCheck.too_slow])
"""The first full-Unicode strategy of a fresh checkout builds Hypothesis' character tables."""

PAIRS = parse_order(["-x", "s", "id"], Row)
CURSOR = encode_cursor(Row, PAIRS, [2.5, "b", 7])


def same(a: Any, b: Any) -> bool:
    """Equal and alike: the same type, the sign of zero, awareness of a datetime."""
    if isinstance(a, float):
        return (
            isinstance(b, float)
            and (a == b or (math.isnan(a) and math.isnan(b)))
            and math.copysign(1, a) == math.copysign(1, b)
        )
    if isinstance(a, dt.datetime):
        return type(b) is dt.datetime and a == b and (a.tzinfo is None) == (b.tzinfo is None)
    if isinstance(a, decimal.Decimal):
        return isinstance(b, decimal.Decimal) and str(a) == str(b)
    return type(a) is type(b) and a == b


@UNICODE
@given(st.data(), st.permutations(list(VALUES)), st.booleans(), st.binary(max_size=8) | st.none())
def test_values_come_back_exactly(data, names, descending, secret):
    names = [*[name for name in names if name != "id"][: data.draw(st.integers(0, 4))], "id"]
    pairs = tuple((name, descending) for name in names)
    values = [data.draw(VALUES[name] | st.none()) for name in names]
    cursor = encode_cursor(Row, pairs, values, secret=secret)
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    back = decode_cursor(Row, pairs, cursor, secret=secret)
    assert len(back) == len(values)
    assert all(same(a, b) for a, b in zip(values, back, strict=True)), (values, back)


@pytest.mark.parametrize(
    "value",
    [
        math.inf,
        -math.inf,
        -0.0,
        decimal.Decimal("-Infinity"),
        decimal.Decimal("1.10E-7"),
        "\U0001f600\x00\u2028",
        b"\xff\xfe\x00",
        dt.datetime(1890, 5, 1, 12, tzinfo=dt.timezone(dt.timedelta(minutes=19, seconds=32))),
    ],
)
def test_edge_values_come_back(value):
    name = {float: "x", decimal.Decimal: "amount", str: "s", bytes: "blob", dt.datetime: "at"}[
        type(value)
    ]
    pairs = ((name, False), ("id", False))
    assert same(decode_cursor(Row, pairs, encode_cursor(Row, pairs, [value, 1]))[0], value)


def test_a_cursor_of_another_order_is_a_query_error():
    with pytest.raises(
        QueryError, match=r"made for order_by='-x,s,id' and the page asks for order_by='x,s,id'"
    ):
        decode_cursor(Row, parse_order(["x", "s", "id"], Row), CURSOR)
    with pytest.raises(QueryError, match=r"order_by='-x,s,id' .* order_by='at,id'.*same order_by"):
        decode_cursor(Row, parse_order(["at", "id"], Row), CURSOR)  # values that do not fit


def not_issued():
    return pytest.raises(
        DecodeError,
        match=r"not one this repository issued.*next_cursor of a previous page unchanged.*first",
    )


@UNICODE
@given(st.data())
def test_changing_any_character_or_byte_is_detected(data):
    i = data.draw(st.integers(0, len(CURSOR) - 1))
    char = data.draw(st.characters().filter(lambda c: c != CURSOR[i]))
    with not_issued():
        decode_cursor(Row, PAIRS, CURSOR[:i] + char + CURSOR[i + 1 :])
    raw = bytearray(base64.urlsafe_b64decode(CURSOR + "=" * (-len(CURSOR) % 4)))
    raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    with not_issued():
        decode_cursor(Row, PAIRS, base64.urlsafe_b64encode(raw).rstrip(b"=").decode())


def test_a_cursor_only_decodes_with_its_secret_and_model():
    secret_cursor = encode_cursor(Row, PAIRS, [1.0, "a", 1], secret=b"s3cret")
    assert decode_cursor(Row, PAIRS, secret_cursor, secret=b"s3cret") == (1.0, "a", 1)
    for secret in (None, b"other"):
        with not_issued():
            decode_cursor(Row, PAIRS, secret_cursor, secret=secret)
    with not_issued():
        decode_cursor(Row, PAIRS, CURSOR, secret=b"s3cret")
    twin_pairs = (("s", False), ("id", False))
    with not_issued():
        decode_cursor(Row, twin_pairs, encode_cursor(Twin, twin_pairs, ["a", 1]))


@pytest.mark.parametrize(
    "cursor",
    [
        None,
        42,
        b"bytes",
        "",
        "A",
        "AAAA",
        "é" * 30,
        CURSOR + "=",
        CURSOR + "!",
        CURSOR[:-1] + "+",
        "A" * 4097,
        CURSOR * 80,
    ],
)
def test_garbage_is_a_decode_error(cursor):
    with not_issued():
        decode_cursor(Row, PAIRS, cursor)


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"\xff",
        b'{"order": "-x,s,id"}',
        b'["-x,s,id", [1.0, "a"]]',
        b'["-x,s,id", [1.0, "a", "seven"]]',
        b"[" * 2000,
    ],
)
def test_a_signed_payload_that_encode_cursor_would_not_write_is_a_decode_error(payload):
    with not_issued() as caught:
        decode_cursor(Row, PAIRS, _seal(Row, None, payload))
    assert isinstance(caught.value.__cause__, ValueError)  # the validation error, for debugging


def test_values_that_cannot_make_a_cursor_are_query_errors():
    with pytest.raises(QueryError, match="takes 3 values, got 2"):
        encode_cursor(Row, PAIRS, [1.0, 1])
    with pytest.raises(QueryError, match="column's Python type"):
        encode_cursor(Row, (("amount", False), ("id", False)), [1.5, 1])  # a float, not a Decimal
    with pytest.raises(QueryError, match="column's Python type"):
        encode_cursor(
            Row, (("at", False), ("id", False)), ["2020-01-01", 1]
        )  # text, not a datetime
    with pytest.raises(QueryError, match="column's Python type"):  # out of range once in UTC
        encode_cursor(
            Row,
            (("at", False), ("id", False)),
            [dt.datetime.min.replace(tzinfo=dt.timezone(dt.timedelta(seconds=1))), 1],
        )
    with pytest.raises(QueryError, match="more than 4096"):
        encode_cursor(Row, PAIRS, [1.0, "a" * 4000, 1])
    with pytest.raises(QueryError, match="no_such"):
        encode_cursor(Row, (("no_such", False),), [1])
