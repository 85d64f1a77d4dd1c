"""Input no backend can answer alike is a QueryError before any SQL is sent, on every backend.

A datetime against a date column (SQLite compares text and matches; the twin does
not), an integer beyond the column type's range (PostgreSQL refuses it, SQLite
overflows, the twin answers nothing), ``==`` on a JSON column (PostgreSQL has no
equality for ``json``) and an ``order_by`` that is not a field name.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from persistence_backends import BACKENDS, own_units
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from buttress.domain import F
from buttress.errors import QueryError
from buttress.persistence import InMemoryUnitOfWork


class Base(DeclarativeBase):
    pass


class Booking(Base):
    __tablename__ = "bad_input_booking"

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[dt.date] = mapped_column(sa.Date)
    seats: Mapped[int] = mapped_column(sa.SmallInteger)
    guests: Mapped[int]
    extra: Mapped[dict[str, Any]] = mapped_column(sa.JSON)


@pytest.fixture(params=BACKENDS)
def make_uow(request: pytest.FixtureRequest, tmp_path) -> Iterator[Callable[[], Any]]:
    for units, engine in own_units(request, tmp_path, Base.metadata):
        if engine is not None:
            with sessionmaker(engine).begin() as session:
                session.add(
                    Booking(id=1, day=dt.date(2026, 12, 3), seats=2, guests=2, extra={"a": 1})
                )
            sa.event.listen(engine, "before_cursor_execute", lambda *a: SENT.append(a[2]))
        yield units


SENT: list[str] = []
"""Statements the SQL backends sent: a refusal comes before any."""


@pytest.fixture(autouse=True)
def _nothing_sent_yet() -> None:
    SENT.clear()


def seed_memory(make_uow: Callable[[], Any]) -> None:
    uow = make_uow()
    if isinstance(uow, InMemoryUnitOfWork):
        with uow:
            uow.repository(Booking).add(
                Booking(id=1, day=dt.date(2026, 12, 3), seats=2, guests=2, extra={"a": 1})
            )
            uow.commit()


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        (F("day") == dt.datetime(2026, 12, 3, tzinfo=dt.UTC), r"cannot compare 'day' \(date\)"),
        (
            F("day") >= dt.datetime(2026, 12, 3),  # noqa: DTZ001 - naive on purpose
            r"cannot compare 'day' \(date\)",
        ),
        (F("seats") == 2**15, r"'seats' \(SmallInteger\) holds integers from -32768 to 32767"),
        (F("guests") > 2**31, r"'guests' \(Integer\) holds integers from"),
        (F("guests").in_([1, -(2**64)]), r"holds integers from"),
        (F("extra") == {"a": 1}, r"Booking.extra \(JSON\) cannot be compared"),
        (F("extra").in_([{"a": 1}]), r"Booking.extra \(JSON\) cannot be compared"),
    ],
)
def test_a_filter_no_backend_answers_alike_is_refused(make_uow, spec, says):
    seed_memory(make_uow)
    with make_uow() as uow:
        bookings = uow.repository(Booking, int)
        for call in (bookings.find, bookings.count, bookings.first, bookings.exists):
            with pytest.raises(QueryError, match=says):
                call(spec)
    assert SENT == []


def test_a_key_beyond_the_column_type_is_refused(make_uow):
    seed_memory(make_uow)
    with make_uow() as uow:
        bookings = uow.repository(Booking, int)
        for key in (2**31, 2**63, -(2**70)):
            with pytest.raises(QueryError, match=r"Booking.id' \(Integer\) holds integers"):
                bookings.get_or_none(key)
        assert SENT == []
        assert bookings.get(1).guests == 2  # in range: found


@pytest.mark.parametrize("order_by", [None, 123, 1.5, {"day"}])
def test_an_order_that_is_not_field_names_is_refused(make_uow, order_by):
    seed_memory(make_uow)
    with make_uow() as uow, pytest.raises(QueryError, match="order_by takes"):
        uow.repository(Booking, int).find(order_by=order_by)
    assert SENT == []
