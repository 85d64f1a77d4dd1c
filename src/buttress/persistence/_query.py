"""Specifications and sort orders, compiled to SQLAlchemy for one mapped model.

Everything here reads the model's mapper: a field is a column attribute it maps,
checked before any SQL is built; values are bound parameters. Where databases
disagree with Python, the compiled SQL says what Python means, so a
specification selects the same rows from memory, SQLite and PostgreSQL:

- ``contains`` and ``startswith`` are case-sensitive and treat ``%`` and ``_``
  as plain characters (``instr``/``strpos`` and ``substr``, never ``LIKE``);
- text is ordered by code point (``COLLATE "C"`` on PostgreSQL, ``BINARY`` on
  SQLite), as Python orders ``str``, whatever the database's collation;
- missing values (``NULL``) sort first in ascending order and last in
  descending order, on every backend.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from buttress.domain._spec import (
    OPERATORS,
    And,
    Compare,
    Contains,
    In,
    IsNone,
    Not,
    Or,
    Specification,
    StartsWith,
    check_field_name,
    unknown_fields,
)
from buttress.errors import QueryError
from buttress.persistence._links import nulls_first, parts_path

if TYPE_CHECKING:
    from sqlalchemy.orm import Mapper
    from sqlalchemy.sql.compiler import SQLCompiler
    from sqlalchemy.sql.elements import ColumnElement

__all__ = [
    "after_in_python",
    "check_range",
    "check_value",
    "column_names",
    "keyset_filter",
    "order_by_clauses",
    "parse_order",
    "sort_in_python",
    "where",
]


def mapper_of(model: type[Any]) -> Mapper[Any]:
    """The mapper of ``model``, or a `QueryError` saying it is not mapped."""
    try:
        mapper: Mapper[Any] = sa.inspect(model)
    except sa.exc.NoInspectionAvailable:
        raise QueryError(
            f"{model!r} is not a mapped class: map it with SQLAlchemy (declaratively or "
            "with registry.map_imperatively) before querying it"
        ) from None
    return mapper


def column_names(model: type[Any]) -> tuple[str, ...]:
    """The attribute names of the model's mapped columns, the only fields a query may use."""
    return tuple(mapper_of(model).column_attrs.keys())


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class _Field:
    """One mapped column of a model, with what queries need of it read once."""

    attribute: Any  # the instrumented attribute, Model.field
    type: Any  # its SQL type, bound to every value compared with it
    python_type: type[Any] | None  # None for a custom type: the database decides
    nullable: bool
    ordered: Any  # what ORDER BY and range comparisons use: code-point text or the attribute
    orderable: bool  # False where backends order differently (enums) or not at all (JSON)


_FIELDS: dict[type[Any], dict[str, _Field]] = {}

# SQLite orders an enum by name and PostgreSQL by declaration; JSON has no order.
_UNORDERED: Final = (sa.Enum, sa.JSON, sa.ARRAY, sa.PickleType)


def _orderable(column: _Field, name: str, model: type[Any]) -> _Field:
    if not column.orderable:
        raise QueryError(
            f"{model.__name__}.{name} ({type(column.type).__name__}) has no order every "
            "database agrees on, so it cannot be sorted or compared with < <= > >=; "
            "compare it with == != in_(), or sort by another field"
        )
    return column


_UNCOMPARABLE: Final = (sa.JSON, sa.PickleType, sa.ARRAY)
"""Column types whose values the backends cannot compare alike (PostgreSQL's json: not at all)."""


def _comparable(column: _Field, name: str, model: type[Any]) -> None:
    if isinstance(column.type, _UNCOMPARABLE):
        raise QueryError(
            f"{model.__name__}.{name} ({type(column.type).__name__}) cannot be compared "
            "with == != in_() alike on every database; filter on a plain column (store the "
            "value you filter by in one of its own), or test it for None with is_none()"
        )


def _fields_of(model: type[Any]) -> dict[str, _Field]:
    fields = _FIELDS.get(model)
    if fields is None:
        fields = {}
        for prop in mapper_of(model).column_attrs:
            attribute = getattr(model, prop.key)
            column_type = prop.columns[0].type
            try:
                python_type: type[Any] | None = column_type.python_type
            except NotImplementedError:
                python_type = None
            fields[prop.key] = _Field(
                attribute=attribute,
                type=column_type,
                python_type=None if python_type is object else python_type,
                nullable=any(column.nullable for column in prop.columns),
                ordered=(
                    _CodePointText(attribute)
                    if isinstance(column_type, sa.String) and not isinstance(column_type, sa.Enum)
                    else attribute
                ),
                orderable=not isinstance(column_type, _UNORDERED),
            )
        _FIELDS[model] = fields
    return fields


def _column(model: type[Any], name: str) -> _Field:
    """The mapped column ``name`` of ``model``; `QueryError` for anything else."""
    fields = _fields_of(model)
    found = fields.get(name)
    if found is None:
        check_field_name(name)
        raise QueryError(unknown_fields([name], fields.keys(), model.__name__))
    return found


_NUMBERS: Final = (int, float, decimal.Decimal)


def _check_value(field: _Field, name: str, value: object) -> None:
    """Refuse a value of another type than the column's: backends disagree on those."""
    if field.python_type is not None and type(value) is not field.python_type:
        check_value(field.python_type, name, value)
    check_range(field.type, name, value)


_INTEGER_BITS: Final = ((sa.SmallInteger, 16), (sa.BigInteger, 64), (sa.Integer, 32))
"""Bits of each integer column type, the narrowest first (BigInteger is an Integer)."""


def integer_bounds(column_type: Any) -> tuple[int, int] | None:
    """The smallest and largest value an integer column holds on every backend."""
    for kind, bits in _INTEGER_BITS:
        if isinstance(column_type, kind):
            return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return None


def check_range(column_type: Any, field: str, value: object) -> None:
    """Refuse an integer the column cannot hold on some backend (PostgreSQL's INTEGER).

    Raises:
        QueryError: ``value`` is outside the column type's range.
    """
    if not isinstance(value, int) or isinstance(value, bool):
        return
    bounds = integer_bounds(column_type)
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise QueryError(
            f"{field!r} ({type(column_type).__name__}) holds integers from {bounds[0]} to "
            f"{bounds[1]} on every database; {value} is out of range, so nothing can match it"
        )


def check_value(expected: type[Any], field: str, value: object) -> None:
    """Refuse ``value`` for a field of type ``expected`` (numbers are interchangeable).

    Raises:
        QueryError: ``value`` is of another type, or a bool where the field is not.
    """
    if expected is object:
        return  # a custom type (SQLAlchemy 2.1 says object): the database decides
    if isinstance(value, bool) != (expected is bool):
        fits = False
    elif expected is dt.date and isinstance(value, dt.datetime):
        fits = False  # a date column against an instant: SQLite and memory disagree
    elif expected in _NUMBERS:
        fits = isinstance(value, _NUMBERS)
    else:
        fits = isinstance(value, expected)
    if not fits:
        raise QueryError(
            f"cannot compare {field!r} ({expected.__name__}) with {value!r} "
            f"({type(value).__name__}): compare with a value of the field's type"
        )


class _CodePointText(FunctionElement[str]):
    """A text column compared and sorted by code point, whatever its collation."""

    name = "code_point_text"
    inherit_cache = True


@compiles(_CodePointText)
def _code_point_text(element: _CodePointText, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(_CodePointText, "postgresql")
def _code_point_text_postgresql(element: _CodePointText, compiler: SQLCompiler, **kw: Any) -> str:
    return f'({compiler.process(element.clauses, **kw)} COLLATE "C")'


@compiles(_CodePointText, "sqlite")
def _code_point_text_sqlite(element: _CodePointText, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({compiler.process(element.clauses, **kw)} COLLATE BINARY)"


class _TextContains(FunctionElement[bool]):
    """``needle`` occurs in ``haystack``, case-sensitively and without wildcards."""

    name = "text_contains"
    type = sa.Boolean()
    inherit_cache = True


@compiles(_TextContains)
def _text_contains(_element: _TextContains, compiler: SQLCompiler, **_kw: Any) -> str:
    raise QueryError(
        f"contains() is defined for SQLite and PostgreSQL, not for {compiler.dialect.name}"
    )


@compiles(_TextContains, "postgresql")
def _text_contains_postgresql(element: _TextContains, compiler: SQLCompiler, **kw: Any) -> str:
    haystack, needle = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"(strpos({haystack}, {needle}) > 0)"


@compiles(_TextContains, "sqlite")
def _text_contains_sqlite(element: _TextContains, compiler: SQLCompiler, **kw: Any) -> str:
    haystack, needle = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"(instr({haystack}, {needle}) > 0)"


_ORDERING: Final = frozenset({"<", "<=", ">", ">="})


def where(spec: Specification, model: type[Any]) -> ColumnElement[bool]:
    """Compile ``spec`` into a where-clause over ``model``'s columns.

    Args:
        spec: The specification.
        model: The mapped class it filters.

    Returns:
        The clause; every value in it is a bound parameter.

    Raises:
        QueryError: The specification reads a field the model does not map.
    """
    if not isinstance(spec, Specification):
        raise QueryError(
            f"a filter must be a Specification, such as F('total') > 100; got {spec!r}"
        )
    valid = _fields_of(model).keys()
    unknown = sorted(name for name in spec.fields() if "." not in name and name not in valid)
    if unknown:
        raise QueryError(unknown_fields(unknown, valid, model.__name__))
    return _where(spec, model)


def _where(spec: Specification, model: type[Any]) -> ColumnElement[bool]:  # noqa: PLR0911, PLR0912 - one branch per node
    field = getattr(spec, "field", None)
    if field is not None and "." in field:  # some related object matches: EXISTS
        head, rest = field.split(".", 1)
        prop = parts_path(model, head)[0]
        inner = _where(dataclasses.replace(spec, field=rest), prop.mapper.class_)  # type: ignore[type-var]
        attribute = prop.class_attribute
        return attribute.any(inner) if prop.uselist else attribute.has(inner)  # type: ignore[no-any-return]
    match spec:
        case Compare(field=field, op=op, value=value):
            column = _column(model, field)
            _comparable(column, field, model)
            _check_value(column, field, value)
            if op in _ORDERING:
                _orderable(column, field, model)
            compared = column.ordered if op in _ORDERING else column.attribute
            bound = sa.bindparam(None, value, type_=column.type)
            clause: ColumnElement[bool] = OPERATORS[op](compared, bound)  # __lt__ and so on
            return clause
        case In(field=field, values=values):
            column = _column(model, field)
            _comparable(column, field, model)
            for value in values:
                if value is not None:
                    _check_value(column, field, value)
            if not values:
                return sa.false()
            return column.attribute.in_(values)  # type: ignore[no-any-return]
        case IsNone(field=field):
            return _column(model, field).attribute.is_(None)  # type: ignore[no-any-return]
        case Contains(field=field, text=text):
            column = _column(model, field)
            _check_value(column, field, text)
            return _TextContains(column.attribute, sa.literal(text, sa.String()))
        case StartsWith(field=field, text=text):
            column = _column(model, field)
            _check_value(column, field, text)
            prefix = sa.func.substr(column.attribute, 1, len(text))
            return prefix == sa.literal(text, sa.String())
        case And(parts=parts):
            return sa.and_(*(_where(part, model) for part in parts))
        case Or(parts=parts):
            return sa.or_(*(_where(part, model) for part in parts))
        case Not(part=part):
            return sa.not_(_where(part, model))
    raise QueryError(f"cannot compile {spec!r}: build specifications with F")  # pragma: no cover


def parse_order(order_by: str | Sequence[str], model: type[Any]) -> tuple[tuple[str, bool], ...]:
    """Check an ``order_by`` and return its ``(field, descending)`` pairs.

    Args:
        order_by: A field name or a sequence of them; ``-`` in front sorts descending.
        model: The mapped class.

    Returns:
        The pairs, in order, without repeats.

    Raises:
        QueryError: An unknown field, an empty name, or a field named twice.
    """
    if not isinstance(order_by, str | Sequence):
        raise QueryError(
            f"order_by takes a field name or a sequence of them ('-total', ['ref', '-id']), "
            f"got {order_by!r}"
        )
    names = [order_by] if isinstance(order_by, str) else list(order_by)
    pairs: list[tuple[str, bool]] = []
    for raw in names:
        if not isinstance(raw, str):
            raise QueryError(f"order_by takes field names, got {raw!r}")
        words = raw.split()
        if len(words) == 2 and words[1].lower() in {"asc", "desc"}:  # noqa: PLR2004 - "field desc"
            spelling = f"-{words[0]}" if words[1].lower() == "desc" else words[0]
            raise QueryError(
                f"order_by takes field names, with - in front for descending: write "
                f"{spelling!r}, not {raw!r}"
            )
        descending = raw.startswith("-")
        name = raw[1:] if descending else raw
        _orderable(_column(model, name), name, model)
        if any(name == seen for seen, _ in pairs):
            raise QueryError(f"order_by names {name!r} twice: name each field once")
        pairs.append((name, descending))
    return tuple(pairs)


def order_by_clauses(pairs: Sequence[tuple[str, bool]], model: type[Any]) -> list[Any]:
    """ORDER BY clauses for checked pairs: code-point text, NULLs first ascending.

    A column that cannot hold NULL gets no ``NULLS FIRST``/``NULLS LAST``, so
    PostgreSQL can walk a plain index in either direction instead of sorting.
    The clauses are immutable and made once per model and order.
    """
    cache_key = (model, tuple(pairs))
    clauses = _ORDER_CLAUSES.get(cache_key)
    if clauses is None:
        clauses = []
        for name, descending in pairs:
            column = _column(model, name)
            ordered = column.ordered
            if descending:
                clauses.append(ordered.desc().nulls_last() if column.nullable else ordered.desc())
            else:
                clauses.append(ordered.asc().nulls_first() if column.nullable else ordered.asc())
        if len(_ORDER_CLAUSES) < _ORDER_CLAUSES_KEPT:
            _ORDER_CLAUSES[cache_key] = clauses
    return clauses


_ORDER_CLAUSES: dict[tuple[type[Any], tuple[tuple[str, bool], ...]], list[Any]] = {}
_ORDER_CLAUSES_KEPT: Final = 4096


def sort_in_python(items: list[Any], pairs: Sequence[tuple[str, bool]]) -> None:
    """Sort ``items`` in place as `order_by_clauses` sorts rows (for the in-memory twins).

    Args:
        items: Objects with the named attributes.
        pairs: Checked ``(field, descending)`` pairs; later pairs break ties.
    """
    for name, descending in reversed(pairs):  # stable sorts: the last key first
        items.sort(key=nulls_first(operator.attrgetter(name)), reverse=descending)


def keyset_filter(
    pairs: Sequence[tuple[str, bool]], values: Sequence[Any], model: type[Any]
) -> tuple[ColumnElement[bool], dict[str, Any]]:
    """The rows that come after ``values`` in the order of ``pairs`` (keyset pagination).

    ``pairs`` must end with the primary key, so no two rows tie and every row
    comes either before or after the last one of a page. The clause is the
    lexicographic "greater than" of `order_by_clauses`' order: for each field, the
    earlier fields equal and this one past its value, where a missing value sorts
    first ascending and last descending.

    The clause is made once per order: its values are named parameters
    (``buttress_after_0`` ...), returned alongside it to pass to ``execute``.
    Which values are missing (``NULL``) changes the clause's shape, so that is
    part of what it is made once for.

    Args:
        pairs: Checked ``(field, descending)`` pairs, ending with the primary key.
        values: The last row's value of each field.
        model: The mapped class.

    Returns:
        The where-clause and its parameters.
    """
    nulls = tuple(value is None for value in values)
    cache_key = (model, tuple(pairs), nulls)
    template = _KEYSETS.get(cache_key)
    if template is None:
        template = _keyset_template(pairs, nulls, model)
        if len(_KEYSETS) < _ORDER_CLAUSES_KEPT:
            _KEYSETS[cache_key] = template
    parameters = {
        f"buttress_after_{i}": value for i, value in enumerate(values) if value is not None
    }
    return template, parameters


_KEYSETS: dict[tuple[type[Any], tuple[tuple[str, bool], ...], tuple[bool, ...]], Any] = {}


def _keyset_template(
    pairs: Sequence[tuple[str, bool]], nulls: Sequence[bool], model: type[Any]
) -> ColumnElement[bool]:
    columns = [_column(model, name) for name, _ in pairs]
    bounds = [
        None if null else sa.bindparam(f"buttress_after_{i}", type_=column.type)
        for i, (column, null) in enumerate(zip(columns, nulls, strict=True))
    ]
    branches = []
    for i, (_, descending) in enumerate(pairs):
        same = [_same(columns[j], bounds[j]) for j in range(i)]
        branches.append(sa.and_(*same, _past(columns[i], bounds[i], descending=descending)))
    after = sa.or_(*branches)
    first = _not_before(columns[0], bounds[0], descending=pairs[0][1])
    # The bound says nothing the branches do not, but an index can seek to it, so a
    # deep page costs what the first one does instead of scanning the rows before it.
    return after if first is None else sa.and_(first, after)


def _not_before(column: _Field, bound: Any, *, descending: bool) -> ColumnElement[bool] | None:
    """A range on the first sort field that every row after ``bound`` is in."""
    if bound is None:
        return column.attribute.is_(None) if descending else None
    if not descending:
        return column.ordered >= bound  # type: ignore[no-any-return]
    if column.nullable:
        return sa.or_(column.ordered <= bound, column.attribute.is_(None))
    return column.ordered <= bound  # type: ignore[no-any-return]


def _same(column: _Field, bound: Any) -> ColumnElement[bool]:
    if bound is None:
        return column.attribute.is_(None)  # type: ignore[no-any-return]
    return column.attribute == bound  # type: ignore[no-any-return]


def _past(column: _Field, bound: Any, *, descending: bool) -> ColumnElement[bool]:
    if bound is None:
        # a missing value sorts first ascending (all values come after it), last descending
        return sa.false() if descending else column.attribute.is_not(None)
    if not descending:
        return column.ordered > bound  # type: ignore[no-any-return]
    if column.nullable:
        return sa.or_(column.ordered < bound, column.attribute.is_(None))
    return column.ordered < bound  # type: ignore[no-any-return]


def after_in_python(item: Any, pairs: Sequence[tuple[str, bool]], values: Sequence[Any]) -> bool:
    """Whether ``item`` comes after ``values`` in the order of ``pairs`` (as `keyset_filter`)."""
    for (name, descending), value in zip(pairs, values, strict=True):
        found = getattr(item, name)
        if found == value and (found is None) == (value is None):
            continue  # equal on this field: the next one decides
        if descending:
            return value is not None and (found is None or found < value)
        return found is not None and (value is None or found > value)
    return False  # the same row
