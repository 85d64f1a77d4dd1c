"""A composite key is given as a tuple or as a mapping of its columns, on every backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from persistence_backends import BACKENDS, own_units
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from buttress.errors import QueryError


class Base(DeclarativeBase):
    pass


class Line(Base):
    __tablename__ = "composite_line"
    order: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    number: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    sku: Mapped[str] = mapped_column(sa.String(20))


@pytest.fixture(params=BACKENDS)
def make_uow(request: pytest.FixtureRequest, tmp_path) -> Iterator[Callable[[], Any]]:
    for units, _engine in own_units(request, tmp_path, Base.metadata):
        with units() as uow:
            uow.repository(Line).add_many(
                [Line(order="A-1", number=1, sku="LAMP"), Line(order="A-1", number=2, sku="DESK")]
            )
            uow.commit()
        yield units


def test_a_mapping_and_a_tuple_find_the_same_line(make_uow):
    with make_uow() as uow:
        lines = uow.repository(Line)
        by_tuple = lines.get(("A-1", 2))
        by_mapping = lines.get({"number": 2, "order": "A-1"})  # any order of names
        assert by_tuple is by_mapping
        assert by_mapping.sku == "DESK"
        assert lines.get_or_none({"order": "A-1", "number": 3}) is None


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ({"order": "A-1"}, r"a mapping must name exactly those, got \['order'\]"),
        ({"order": "A-1", "number": 1, "sku": "x"}, "must name exactly those"),
        ({"order": "A-1", "number": "1"}, "number is an int key"),
    ],
)
def test_a_mapping_that_is_not_the_key_is_refused(make_uow, key, says):
    with make_uow() as uow, pytest.raises(QueryError, match=says):
        uow.repository(Line).get(key)
