"""Specifications: filters written once, evaluated in Python and compiled to SQL.

``F("total") > 100`` is a `Specification`; ``&``, ``|`` and ``~`` combine them.
A specification is a small immutable tree of named fields and constant values:
`Specification.is_satisfied_by` evaluates it against an object, and
`buttress.persistence` compiles the same tree into a SQLAlchemy where-clause.
Nothing is ever built from strings into SQL: values become bound parameters, and
field names are checked against the model's mapped columns before use.

Both evaluations follow SQL's three-valued logic, so they agree row for row: a
comparison with a missing value (``None``, SQL ``NULL``) is *unknown*, ``~``
of unknown is unknown, and only a specification that is true selects an object.
Write ``F("x").is_none()`` (or ``F("x") == None``) to select missing values.
Comparisons no backend defines the same way are refused when the specification
is built: ordering against ``None``, and NaN anywhere.
"""

from __future__ import annotations

import dataclasses
import decimal
import keyword
import math
import operator
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, final

from buttress.errors import QueryError

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator

__all__ = [
    "OPERATORS",
    "And",
    "Compare",
    "Contains",
    "F",
    "In",
    "IsNone",
    "Not",
    "Operator",
    "Or",
    "Specification",
    "StartsWith",
    "check_field_name",
]

Operator = Literal["==", "!=", "<", "<=", ">", ">="]

OPERATORS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def check_field_name(name: object) -> str:
    """Return ``name`` if it can name a field: a public identifier, never a dunder.

    Args:
        name: The candidate field name.

    Returns:
        The name.

    Raises:
        QueryError: ``name`` is not a string, not an identifier, a keyword, or
            starts with an underscore.
    """
    if not isinstance(name, str) or not all(
        part.isidentifier() and not keyword.iskeyword(part) and not part.startswith("_")
        for part in name.split(".")
    ):
        raise QueryError(
            f"{name!r} cannot name a field: use the name of a mapped attribute, a public "
            "identifier such as 'created_at', or a path through relationships such as "
            "'batches.reference'"
        )
    return name


def _plain(value: object, field: str) -> None:
    """Refuse values no backend compares the same way."""
    if (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, decimal.Decimal) and value.is_nan()
    ):
        raise QueryError(
            f"cannot compare {field!r} with NaN: SQLite stores NaN as NULL and PostgreSQL "
            "orders it above every number. Filter on a real number or on is_none()"
        )


class Specification:
    """A condition on an object's fields, combinable with ``&``, ``|`` and ``~``.

    Build one from `F`; never subclass it (the persistence block compiles the
    node types it knows). Specifications are immutable and compare equal when
    they are the same tree.

    Example:
        ```python
        from buttress.domain import F

        adult_in_paris = (F("age") >= 18) & (F("city") == "Paris")
        assert adult_in_paris.fields() == {"age", "city"}
        ```
    """

    __slots__ = ()

    def is_satisfied_by(self, candidate: object) -> bool:
        """Whether ``candidate`` meets this condition (unknown counts as no, as in SQL).

        Args:
            candidate: An object with the fields named by the specification.

        Returns:
            True only when the condition is known to hold.
        """
        return self.evaluate(candidate) is True

    def evaluate(self, candidate: object) -> bool | None:
        """The condition's three-valued truth for ``candidate``: True, False or None (unknown)."""
        raise NotImplementedError  # pragma: no cover - every node overrides it

    def fields(self) -> frozenset[str]:
        """The names of every field the condition reads."""
        return frozenset(self._fields())

    def _fields(self) -> Iterator[str]:
        raise NotImplementedError  # pragma: no cover - every node overrides it

    def check_fields(self, valid: Collection[str], *, model: str) -> None:
        """Raise `QueryError` unless every field read is in ``valid``.

        Args:
            valid: The names the model maps (its column attributes).
            model: The model's name, for the message.

        Raises:
            QueryError: Naming the unknown fields and the valid ones.
        """
        unknown = sorted(self.fields() - set(valid))
        if unknown:
            raise QueryError(unknown_fields(unknown, valid, model))

    def __and__(self, other: Specification) -> Specification:
        return And((*_parts(self, And), *_parts(_spec(other, "&"), And)))

    def __or__(self, other: Specification) -> Specification:
        return Or((*_parts(self, Or), *_parts(_spec(other, "|"), Or)))

    def __invert__(self) -> Specification:
        return Not(self)

    def __bool__(self) -> bool:
        raise TypeError(
            "a specification has no truth value of its own: combine specifications with "
            "& (and), | (or) and ~ (not), and test objects with is_satisfied_by()"
        )


class _OnField(Specification):
    """A condition on one field (the subclass declares ``field``)."""

    __slots__ = ()
    field: str

    def _fields(self) -> Iterator[str]:
        yield self.field


class _Junction(Specification):
    """``&`` or ``|`` of parts (the subclass declares ``parts``)."""

    __slots__ = ()
    parts: tuple[Specification, ...]

    decisive: ClassVar[bool]
    """The value that decides alone: False for ``&``, True for ``|``."""
    symbol: ClassVar[str]

    def evaluate(self, candidate: object) -> bool | None:
        """Kleene logic: a part evaluating to `decisive` decides, then unknown, then not."""
        decisive = self.decisive
        result: bool | None = not decisive
        for part in self.parts:
            value = part.evaluate(candidate)
            if value is decisive:
                return decisive
            if value is None:
                result = None
        return result

    def _fields(self) -> Iterator[str]:
        for part in self.parts:
            yield from part._fields()

    def __repr__(self) -> str:
        return "(" + f" {self.symbol} ".join(map(repr, self.parts)) + ")"


def _some(spec: Any, candidate: object) -> bool:
    """A condition on a path (``batches.reference``): some related object meets it.

    As SQL's ``EXISTS``: true or false, never unknown; no related object is false.
    """
    head, rest = spec.field.split(".", 1)
    found = getattr(candidate, head)
    if found is None:
        return False
    items = found if isinstance(found, (list, tuple, set, frozenset)) else (found,)
    inner = dataclasses.replace(spec, field=rest)
    return any(inner.evaluate(item) is True for item in items)


def unknown_fields(unknown: Iterable[str], valid: Iterable[str], model: str) -> str:
    """The message for fields a model does not map."""
    names = ", ".join(repr(name) for name in unknown)
    return f"{model} has no field {names}; its fields are: {', '.join(sorted(valid))}"


def _spec(value: object, symbol: str) -> Specification:
    if not isinstance(value, Specification):
        raise TypeError(
            f"cannot combine a specification with {value!r} by {symbol}: both sides must "
            "be specifications, such as F('age') > 18"
        )
    return value


def _parts(spec: Specification, kind: type[And | Or]) -> tuple[Specification, ...]:
    """Flatten ``(a & b) & c`` into one ``And`` of three."""
    return spec.parts if isinstance(spec, kind) else (spec,)


def _typed(values: tuple[Any, ...]) -> tuple[tuple[type[Any], Any], ...]:
    """Values with their types, so ``1``, ``1.0`` and ``True`` make different specifications."""
    return tuple((type(value), value) for value in values)


@final
@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Compare(_OnField):
    """``field <op> value``, with ``value`` not None (see `IsNone`)."""

    field: str
    op: Operator
    value: Any

    def __eq__(self, other: object) -> bool:
        if type(other) is not Compare:
            return NotImplemented
        return (self.field, self.op, _typed((self.value,))) == (
            other.field,
            other.op,
            _typed((other.value,)),
        )

    def __hash__(self) -> int:
        return hash((Compare, self.field, self.op, _typed((self.value,))))

    def evaluate(self, candidate: object) -> bool | None:
        """See `Specification.evaluate`."""
        if "." in self.field:
            return _some(self, candidate)
        found = getattr(candidate, self.field)
        if found is None:
            return None
        try:
            return bool(OPERATORS[self.op](found, self.value))
        except TypeError:
            raise QueryError(
                f"cannot compare {self.field!r} ({type(found).__name__}) with "
                f"{self.value!r} ({type(self.value).__name__}): compare with a value "
                "of the field's type"
            ) from None

    def __repr__(self) -> str:
        return f"(F({self.field!r}) {self.op} {self.value!r})"


@final
@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class In(_OnField):
    """``field IN values``: true for a listed value, unknown for a missing one.

    An empty ``values`` is false for every object, a missing value included (as
    SQL's ``x IN ()``), so its negation selects everything.
    """

    field: str
    values: tuple[Any, ...]

    def __eq__(self, other: object) -> bool:
        if type(other) is not In:
            return NotImplemented
        return (self.field, _typed(self.values)) == (other.field, _typed(other.values))

    def __hash__(self) -> int:
        return hash((In, self.field, _typed(self.values)))

    def evaluate(self, candidate: object) -> bool | None:
        """See `Specification.evaluate`."""
        if "." in self.field:
            return _some(self, candidate)
        if not self.values:
            return False
        found = getattr(candidate, self.field)
        if found is None:
            return None
        if any(value is not None and found == value for value in self.values):
            return True
        return None if any(value is None for value in self.values) else False

    def __repr__(self) -> str:
        return f"F({self.field!r}).in_({list(self.values)!r})"


@final
@dataclasses.dataclass(frozen=True, slots=True, eq=True)
class IsNone(_OnField):
    """``field IS NULL``: never unknown."""

    field: str

    def evaluate(self, candidate: object) -> bool | None:
        """See `Specification.evaluate`."""
        if "." in self.field:
            return _some(self, candidate)
        return getattr(candidate, self.field) is None

    def __repr__(self) -> str:
        return f"F({self.field!r}).is_none()"


@final
@dataclasses.dataclass(frozen=True, slots=True, eq=True)
class Contains(_OnField):
    """The text field holds ``text`` anywhere, case-sensitively (no wildcards)."""

    field: str
    text: str

    def evaluate(self, candidate: object) -> bool | None:
        """See `Specification.evaluate`."""
        if "." in self.field:
            return _some(self, candidate)
        found = getattr(candidate, self.field)
        if found is None:
            return None
        return self.text in _text(found, self.field)

    def __repr__(self) -> str:
        return f"F({self.field!r}).contains({self.text!r})"


@final
@dataclasses.dataclass(frozen=True, slots=True, eq=True)
class StartsWith(_OnField):
    """The text field starts with ``text``, case-sensitively (no wildcards)."""

    field: str
    text: str

    def evaluate(self, candidate: object) -> bool | None:
        """See `Specification.evaluate`."""
        if "." in self.field:
            return _some(self, candidate)
        found = getattr(candidate, self.field)
        if found is None:
            return None
        return _text(found, self.field).startswith(self.text)

    def __repr__(self) -> str:
        return f"F({self.field!r}).startswith({self.text!r})"


def _text(found: object, field: str) -> str:
    if not isinstance(found, str):
        raise QueryError(
            f"{field!r} holds {type(found).__name__}, not text: contains() and startswith() "
            "apply to text fields"
        )
    return found


@final
@dataclasses.dataclass(frozen=True, slots=True, eq=True, repr=False)  # _Junction's repr
class And(_Junction):
    """Every part holds (Kleene logic: false wins, then unknown)."""

    parts: tuple[Specification, ...]

    decisive: ClassVar[bool] = False
    symbol: ClassVar[str] = "&"


@final
@dataclasses.dataclass(frozen=True, slots=True, eq=True, repr=False)  # _Junction's repr
class Or(_Junction):
    """Some part holds (Kleene logic: true wins, then unknown)."""

    parts: tuple[Specification, ...]

    decisive: ClassVar[bool] = True
    symbol: ClassVar[str] = "|"


@final
@dataclasses.dataclass(frozen=True, slots=True, eq=True)
class Not(Specification):
    """The part does not hold (unknown stays unknown)."""

    part: Specification

    def evaluate(self, candidate: object) -> bool | None:
        """See `Specification.evaluate`."""
        value = self.part.evaluate(candidate)
        return None if value is None else not value

    def _fields(self) -> Iterator[str]:
        return self.part._fields()

    def __repr__(self) -> str:
        return f"~{self.part!r}"


@final
class F:
    """A field of the objects a specification filters, by attribute name.

    Compare it to build a `Specification`: ``F("age") >= 18``,
    ``F("status").in_(["paid", "shipped"])``, ``F("email").is_none()``,
    ``F("name").startswith("Ad")``. The name must be a public identifier; it is
    checked against the model's mapped columns wherever the specification is
    used.

    Args:
        name: The attribute name.

    Raises:
        QueryError: ``name`` is not a public identifier.

    Example:
        ```python
        from dataclasses import dataclass

        from buttress.domain import F


        @dataclass
        class Order:
            total: int
            status: str
            note: str | None = None


        big_unpaid = (F("total") > 100) & ~(F("status") == "paid")
        assert big_unpaid.is_satisfied_by(Order(total=120, status="new"))
        assert not big_unpaid.is_satisfied_by(Order(total=120, status="paid"))
        # a missing value compares as unknown, as in SQL: neither == nor != selects it
        assert not (F("note") == "gift").is_satisfied_by(Order(1, "new"))
        assert not (F("note") != "gift").is_satisfied_by(Order(1, "new"))
        assert F("note").is_none().is_satisfied_by(Order(1, "new"))
        ```
    """

    __slots__ = ("name",)

    __hash__: ClassVar[None] = None  # type: ignore[assignment]

    name: str

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "name", check_field_name(name))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"F is immutable: build F({value!r}) instead")

    def __repr__(self) -> str:
        return f"F({self.name!r})"

    def _compare(self, op: Operator, value: object) -> Specification:
        if isinstance(value, (F, Specification)):
            raise QueryError(
                f"cannot compare {self!r} with {value!r}: specifications compare a field "
                "with a constant value"
            )
        if value is None:
            if op == "==":
                return IsNone(self.name)
            if op == "!=":
                return Not(IsNone(self.name))
            raise QueryError(
                f"cannot order {self!r} against None: SQL has no answer for it. Use "
                f"F({self.name!r}).is_none() to select missing values"
            )
        _plain(value, self.name)
        return Compare(self.name, op, value)

    def __eq__(self, value: object) -> Specification:  # type: ignore[override]
        return self._compare("==", value)

    def __ne__(self, value: object) -> Specification:  # type: ignore[override]
        return self._compare("!=", value)

    def __lt__(self, value: object) -> Specification:
        return self._compare("<", value)

    def __le__(self, value: object) -> Specification:
        return self._compare("<=", value)

    def __gt__(self, value: object) -> Specification:
        return self._compare(">", value)

    def __ge__(self, value: object) -> Specification:
        return self._compare(">=", value)

    def in_(self, values: Iterable[object]) -> Specification:
        """The field equals one of ``values`` (an empty collection selects nothing).

        Args:
            values: The accepted values (a list, tuple, set...; not a string).

        Returns:
            The specification.

        Raises:
            QueryError: ``values`` is a string or not iterable, or holds NaN.
        """
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise QueryError(
                f"F({self.name!r}).in_() takes a collection of values, got {values!r}: "
                "pass a list or a tuple"
            )
        collected = tuple(values)
        for value in collected:
            _plain(value, self.name)
        return In(self.name, collected)

    def is_none(self) -> Specification:
        """The field holds no value (``None``; SQL ``NULL``)."""
        return IsNone(self.name)

    def contains(self, text: str) -> Specification:
        """The text field holds ``text`` anywhere; case-sensitive, no wildcards.

        Args:
            text: The text to look for (``%`` and ``_`` are plain characters).

        Returns:
            The specification.

        Raises:
            QueryError: ``text`` is not a string.
        """
        return Contains(self.name, _needle(text, "contains"))

    def startswith(self, text: str) -> Specification:
        """The text field starts with ``text``; case-sensitive, no wildcards.

        Args:
            text: The prefix (``%`` and ``_`` are plain characters).

        Returns:
            The specification.

        Raises:
            QueryError: ``text`` is not a string.
        """
        return StartsWith(self.name, _needle(text, "startswith"))


def _needle(text: object, method: str) -> str:
    if not isinstance(text, str):
        raise QueryError(f"{method}() takes a string, got {text!r}")
    return text
