"""Specifications and sort orders select and order the same rows in Python and in SQL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, registry

from buttress.domain import F, Specification
from buttress.errors import QueryError
from buttress.persistence._query import (
    after_in_python,
    column_names,
    keyset_filter,
    order_by_clauses,
    parse_order,
    sort_in_python,
    where,
)


class Base(DeclarativeBase):
    pass


class Row(Base):
    __tablename__ = "query_row"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    n: Mapped[int | None]
    x: Mapped[float | None]
    s: Mapped[str | None]
    flag: Mapped[bool | None]


@dataclass
class Plain:
    """The same fields as `Row`, as a plain object (what the in-memory twins hold)."""

    id: int
    n: int | None
    x: float | None
    s: str | None
    flag: bool | None


TEXT = st.text(alphabet="aAbB%_ é\u00df\u00c9\u4e2d\U0001f600", max_size=4)
"""Text where databases and Python tend to differ: case, LIKE wildcards, accents, non-BMP."""

VALUES: dict[str, st.SearchStrategy[Any]] = {
    "n": st.integers(-3, 3),
    "x": st.floats(-2.5, 2.5, allow_nan=False, allow_subnormal=False).map(lambda v: round(v, 2)),
    "s": TEXT,
    "flag": st.booleans(),
}


def leaves() -> st.SearchStrategy[Specification]:
    def comparisons(field: str) -> st.SearchStrategy[Specification]:
        value = VALUES[field]
        options = [
            st.builds(lambda v: F(field) == v, value),
            st.builds(lambda v: F(field) != v, value),
            st.builds(lambda v: F(field) < v, value),
            st.builds(lambda v: F(field) >= v, value),
            st.builds(
                lambda vs: F(field).in_(vs), st.lists(st.one_of(st.none(), value), max_size=3)
            ),
            st.just(F(field).is_none()),
        ]
        if field == "s":
            options += [
                st.builds(lambda v: F("s").contains(v), TEXT),
                st.builds(lambda v: F("s").startswith(v), TEXT),
            ]
        return st.one_of(options)

    return st.one_of([comparisons(field) for field in VALUES])


SPECS = st.recursive(
    leaves(),
    lambda inner: st.one_of(
        st.builds(lambda a, b: a & b, inner, inner),
        st.builds(lambda a, b: a | b, inner, inner),
        st.builds(lambda a: ~a, inner),
    ),
    max_leaves=6,
)

ROWS = st.lists(
    st.fixed_dictionaries({field: st.one_of(st.none(), value) for field, value in VALUES.items()}),
    max_size=12,
).map(lambda rows: [Plain(id=i, **row) for i, row in enumerate(rows)])

ORDERS = st.lists(
    st.sampled_from(["n", "-n", "x", "-x", "s", "-s", "flag", "-flag"]),
    min_size=1,
    max_size=3,
    unique_by=lambda name: name.lstrip("-"),
)


@pytest.fixture
def table(engine: sa.Engine) -> sa.Engine:
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    return engine


def load(engine: sa.Engine, rows: list[Plain]) -> None:
    with engine.begin() as connection:
        connection.execute(sa.delete(Row))
        if rows:
            connection.execute(sa.insert(Row), [vars(row) for row in rows])


SLOW = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SLOW
@given(rows=ROWS, spec=SPECS)
def test_a_specification_selects_the_same_rows_in_python_and_sql(
    table: sa.Engine, rows: list[Plain], spec: Specification
) -> None:
    load(table, rows)
    with table.connect() as connection:
        selected = connection.execute(
            sa.select(Row.id).where(where(spec, Row)).order_by(Row.id)
        ).scalars()
        assert list(selected) == [row.id for row in rows if spec.is_satisfied_by(row)]


@SLOW
@given(rows=ROWS, order=ORDERS)
def test_an_order_sorts_the_same_in_python_and_sql(
    table: sa.Engine, rows: list[Plain], order: list[str]
) -> None:
    load(table, rows)
    pairs = (*parse_order(order, Row), ("id", False))  # the key breaks ties, as pages do
    with table.connect() as connection:
        ordered = connection.execute(
            sa.select(Row.id).order_by(*order_by_clauses(pairs, Row))
        ).scalars()
        expected = list(rows)
        sort_in_python(expected, pairs)
        assert list(ordered) == [row.id for row in expected]


@SLOW
@given(rows=ROWS, order=ORDERS, size=st.integers(1, 4))
def test_walking_keyset_pages_visits_every_row_once_in_order(
    table: sa.Engine, rows: list[Plain], order: list[str], size: int
) -> None:
    """Page after page, each starting after the last row of the one before, in SQL and Python."""
    load(table, rows)
    pairs = (*parse_order(order, Row), ("id", False))
    names = [name for name, _ in pairs]
    expected = list(rows)
    sort_in_python(expected, pairs)
    sql_walk: list[int] = []
    python_walk: list[int] = []
    last: list[Any] | None = None
    with table.connect() as connection:
        for _ in range(len(rows) + 1):
            query = sa.select(Row).order_by(*order_by_clauses(pairs, Row)).limit(size)
            parameters = None
            if last is not None:
                keyset, parameters = keyset_filter(pairs, last, Row)
                query = query.where(keyset)
            page = list(connection.execute(query, parameters))  # an attribute per column
            remaining = [
                row for row in expected if last is None or after_in_python(row, pairs, last)
            ]
            assert [row.id for row in page] == [row.id for row in remaining[:size]]
            sql_walk += [row.id for row in page]
            python_walk += [row.id for row in remaining[:size]]
            if len(page) < size:
                break
            last = [getattr(page[-1], name) for name in names]
    assert sql_walk == python_walk == [row.id for row in expected]


def test_unknown_fields_are_refused_before_any_sql_naming_the_valid_ones() -> None:
    with pytest.raises(QueryError, match=r"Row has no field 'colour'; its fields are: flag, id"):
        where(F("colour") == "red", Row)
    with pytest.raises(QueryError, match="'colour'"):
        parse_order(["n", "-colour"], Row)
    with pytest.raises(QueryError, match="cannot name a field"):
        parse_order("-__class__", Row)
    with pytest.raises(QueryError, match="names 'n' twice"):
        parse_order(["n", "-n"], Row)
    with pytest.raises(QueryError, match="must be a Specification"):
        where("n > 1", Row)  # type: ignore[arg-type]


def test_values_of_another_type_than_the_column_are_refused() -> None:
    for spec in [F("n") == "1", F("n") == True, F("flag") == 1, F("s").in_([1]), F("s") > 2]:  # noqa: E712
        with pytest.raises(QueryError, match="compare with a value of the field's type"):
            where(spec, Row)
    where(F("x") == 1, Row)  # an int is a fine float
    where(F("n").in_([1, None]), Row)


def test_values_are_bound_never_spliced_into_the_sql() -> None:
    clause = where(F("s") == "'; DROP TABLE query_row; --", Row)
    compiled = clause.compile(dialect=sa.dialects.sqlite.dialect())
    assert "DROP" not in str(compiled)
    assert "'; DROP TABLE query_row; --" in compiled.params.values()


def test_an_unmapped_class_is_refused() -> None:
    with pytest.raises(QueryError, match="is not a mapped class"):
        column_names(Plain)


def test_imperatively_mapped_plain_classes_are_queried_by_their_attributes(
    engine: sa.Engine,
) -> None:
    class Order:
        def __init__(self, ref: str, total: int) -> None:
            self.ref = ref
            self.total = total

    mapper_registry = registry()
    orders = sa.Table(
        "query_order",
        mapper_registry.metadata,
        sa.Column("ref", sa.String, primary_key=True),
        sa.Column("total", sa.Integer),
    )
    mapper_registry.map_imperatively(Order, orders)
    mapper_registry.metadata.create_all(engine)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.insert(orders), [{"ref": "a", "total": 5}, {"ref": "b", "total": 50}]
            )
            found = connection.execute(
                sa.select(orders.c.ref).where(where(F("total") > 10, Order))
            ).scalars()
            assert list(found) == ["b"]
    finally:
        mapper_registry.metadata.drop_all(engine)
        mapper_registry.dispose()
