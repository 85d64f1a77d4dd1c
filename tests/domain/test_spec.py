"""Specifications: SQL's three-valued logic in Python, refusals of bad input, and combining."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buttress.domain import F, Specification
from buttress.errors import QueryError


@dataclass(frozen=True)
class Row:
    n: int | None = None
    s: str | None = None


@dataclass(frozen=True)
class Anything:
    """A row whose field ``v`` can hold a value of any type."""

    v: object = None


UNKNOWN = None
ORDER = {False: 0, UNKNOWN: 1, True: 2}  # Kleene: false < unknown < true

numbers = st.integers(-3, 3)
texts = st.text(alphabet="ab%_", max_size=3)
rows = st.builds(Row, st.none() | numbers, st.none() | texts)
operators = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])


def compare(name: str, op: str, value: object) -> Specification:
    field = F(name)
    match op:
        case "==":
            return field == value
        case "!=":
            return field != value
        case "<":
            return field < value
        case "<=":
            return field <= value
        case ">":
            return field > value
        case _:
            return field >= value


leaves = st.one_of(
    st.builds(compare, st.just("n"), operators, numbers),
    st.builds(compare, st.just("s"), operators, texts),
    st.builds(compare, st.sampled_from(["n", "s"]), st.sampled_from(["==", "!="]), st.none()),
    st.builds(lambda values: F("n").in_(values), st.lists(st.none() | numbers, max_size=3)),
    st.builds(lambda name: F(name).is_none(), st.sampled_from(["n", "s"])),
    st.builds(lambda text: F("s").contains(text), texts),
    st.builds(lambda text: F("s").startswith(text), texts),
)


def _extend(children: st.SearchStrategy[Specification]) -> st.SearchStrategy[Specification]:
    return st.one_of(
        st.builds(lambda a, b: a & b, children, children),
        st.builds(lambda a, b: a | b, children, children),
        st.builds(lambda a: ~a, children),
    )


specs = st.recursive(leaves, _extend, max_leaves=8)


# -- laws of three-valued logic ----------------------------------------------------------------


@given(specs, rows)
def test_evaluation_is_true_false_or_unknown(a: Specification, row: Row) -> None:
    assert a.evaluate(row) in {True, False, UNKNOWN}


@given(specs, rows)
def test_is_satisfied_by_means_known_to_be_true(a: Specification, row: Row) -> None:
    assert a.is_satisfied_by(row) is (a.evaluate(row) is True)


@given(specs, specs, rows)
def test_and_is_the_minimum_and_or_the_maximum_of_false_unknown_true(
    a: Specification, b: Specification, row: Row
) -> None:
    both = [a.evaluate(row), b.evaluate(row)]
    assert (a & b).evaluate(row) is min(both, key=ORDER.__getitem__)
    assert (a | b).evaluate(row) is max(both, key=ORDER.__getitem__)


@given(specs, rows)
def test_not_flips_true_and_false_and_keeps_unknown(a: Specification, row: Row) -> None:
    value = a.evaluate(row)
    assert (~a).evaluate(row) is (UNKNOWN if value is UNKNOWN else not value)


@given(specs, specs, rows)
def test_de_morgan(a: Specification, b: Specification, row: Row) -> None:
    assert (~(a & b)).evaluate(row) is (~a | ~b).evaluate(row)
    assert (~(a | b)).evaluate(row) is (~a & ~b).evaluate(row)


@given(specs, rows)
def test_double_negation(a: Specification, row: Row) -> None:
    assert (~~a).evaluate(row) is a.evaluate(row)


@given(specs, rows)
def test_a_and_not_a_is_never_satisfied(a: Specification, row: Row) -> None:
    assert not (a & ~a).is_satisfied_by(row)


@given(specs, rows)
def test_a_or_not_a_is_satisfied_exactly_when_a_is_known(a: Specification, row: Row) -> None:
    assert (a | ~a).is_satisfied_by(row) is (a.evaluate(row) is not UNKNOWN)


@given(specs, specs, specs, rows)
def test_grouping_does_not_change_the_result(
    a: Specification, b: Specification, c: Specification, row: Row
) -> None:
    assert ((a & b) & c).evaluate(row) is (a & (b & c)).evaluate(row)
    assert ((a | b) | c).evaluate(row) is (a | (b | c)).evaluate(row)


@given(st.builds(compare, st.just("n"), operators, numbers), st.none() | numbers)
def test_a_comparison_is_unknown_exactly_when_the_value_is_missing(
    a: Specification, n: int | None
) -> None:
    assert (a.evaluate(Row(n=n)) is UNKNOWN) is (n is None)


# -- missing values and None -------------------------------------------------------------------


def test_equal_to_none_is_is_none_and_not_equal_to_none_its_negation() -> None:
    assert (F("n") == None) == F("n").is_none()  # noqa: E711 - the spelling under test
    assert (F("n") != None) == ~F("n").is_none()  # noqa: E711 - the spelling under test
    assert (None == F("n")) == F("n").is_none()  # noqa: E711, SIM300 - reflected, as Python calls it
    assert (F("n") == None).is_satisfied_by(Row(n=None))  # noqa: E711
    assert not (F("n") == None).is_satisfied_by(Row(n=0))  # noqa: E711
    assert (F("n") != None).is_satisfied_by(Row(n=0))  # noqa: E711
    assert not (F("n") != None).is_satisfied_by(Row(n=None))  # noqa: E711


def test_is_none_is_never_unknown() -> None:
    assert F("n").is_none().evaluate(Row(n=None)) is True
    assert F("n").is_none().evaluate(Row(n=0)) is False
    assert (~F("n").is_none()).evaluate(Row(n=None)) is False


@pytest.mark.parametrize("build", [F("n").__lt__, F("n").__le__, F("n").__gt__, F("n").__ge__])
def test_ordering_against_none_is_refused(build: object) -> None:
    with pytest.raises(QueryError, match=r"against None.*is_none\(\)"):
        build(None)  # type: ignore[operator]


def test_neither_equal_nor_not_equal_selects_a_missing_value() -> None:
    missing = Row(n=None)
    assert (F("n") == 1).evaluate(missing) is UNKNOWN
    assert (F("n") != 1).evaluate(missing) is UNKNOWN
    assert not (F("n") == 1).is_satisfied_by(missing)
    assert not (F("n") != 1).is_satisfied_by(missing)
    assert not (~(F("n") == 1)).is_satisfied_by(missing)
    assert (F("n").is_none() | (F("n") != 1)).is_satisfied_by(missing)


def test_unknown_loses_to_false_in_and_and_to_true_in_or() -> None:
    missing = Row(n=None, s="x")
    unknown = F("n") > 0
    assert (unknown & (F("s") == "y")).evaluate(missing) is False
    assert (unknown & (F("s") == "x")).evaluate(missing) is UNKNOWN
    assert (unknown | (F("s") == "x")).evaluate(missing) is True
    assert (unknown | (F("s") == "y")).evaluate(missing) is UNKNOWN


@pytest.mark.parametrize("op", ["==", "!=", "<", "<=", ">", ">="])
def test_nan_comparisons_are_refused(op: str) -> None:
    with pytest.raises(QueryError, match="NaN"):
        compare("n", op, math.nan)


def test_nan_in_a_list_is_refused() -> None:
    with pytest.raises(QueryError, match="NaN"):
        F("n").in_([1.0, float("nan")])


def test_comparing_values_of_unrelated_types_is_refused_when_evaluated() -> None:
    with pytest.raises(QueryError, match=r"'n' \(int\) with 'a' \(str\)"):
        (F("n") < "a").evaluate(Row(n=1))


def test_comparisons_compare_values() -> None:
    row = Row(n=2, s="b")
    assert (F("n") == 2).is_satisfied_by(row)
    assert not (F("n") == 3).is_satisfied_by(row)
    assert (F("n") != 3).is_satisfied_by(row)
    assert (F("n") < 3).is_satisfied_by(row)
    assert not (F("n") < 2).is_satisfied_by(row)
    assert (F("n") <= 2).is_satisfied_by(row)
    assert (F("n") > 1).is_satisfied_by(row)
    assert not (F("n") > 2).is_satisfied_by(row)
    assert (F("n") >= 2).is_satisfied_by(row)
    assert (F("s") > "a").is_satisfied_by(row)
    assert (2 < F("n")).evaluate(row) is False  # noqa: SIM300 - reflected: F("n") > 2


# -- in_ ---------------------------------------------------------------------------------------


def test_in_selects_listed_values() -> None:
    paid_or_shipped = F("s").in_(["paid", "shipped"])
    assert paid_or_shipped.is_satisfied_by(Row(s="paid"))
    assert paid_or_shipped.is_satisfied_by(Row(s="shipped"))
    assert paid_or_shipped.evaluate(Row(s="new")) is False
    assert paid_or_shipped.evaluate(Row(s=None)) is UNKNOWN


def test_in_with_none_listed_is_true_on_a_match_and_otherwise_unknown() -> None:
    spec = F("n").in_([1, None])
    assert spec.evaluate(Row(n=1)) is True
    assert spec.evaluate(Row(n=2)) is UNKNOWN
    assert spec.evaluate(Row(n=None)) is UNKNOWN  # None IN (..., NULL) is NULL in SQL
    # hence NOT IN a list holding None selects nothing, as in SQL
    assert not (~spec).is_satisfied_by(Row(n=2))
    assert not (~spec).is_satisfied_by(Row(n=1))


def test_empty_in_selects_nothing() -> None:
    assert F("n").in_([]).evaluate(Row(n=1)) is False
    assert F("n").in_(()).evaluate(Row(n=1)) is False
    assert (~F("n").in_([])).is_satisfied_by(Row(n=1))


def test_in_takes_any_collection_once() -> None:
    assert F("n").in_(iter([1, 2])).is_satisfied_by(Row(n=2))
    assert F("n").in_({1, 2}).is_satisfied_by(Row(n=1))
    assert F("n").in_(x for x in [1, 2]) == F("n").in_([1, 2])


@pytest.mark.parametrize("values", ["abc", b"abc", 3, None])
def test_in_refuses_a_string_or_a_single_value(values: object) -> None:
    with pytest.raises(QueryError, match=r"in_\(\) takes a collection"):
        F("s").in_(values)  # type: ignore[arg-type]


# -- contains and startswith ---------------------------------------------------------------------


def test_contains_and_startswith_are_case_sensitive() -> None:
    row = Row(s="Ada Lovelace")
    assert F("s").contains("Love").is_satisfied_by(row)
    assert not F("s").contains("love").is_satisfied_by(row)
    assert F("s").startswith("Ada").is_satisfied_by(row)
    assert not F("s").startswith("ada").is_satisfied_by(row)
    assert not F("s").startswith("Love").is_satisfied_by(row)


@pytest.mark.parametrize("wildcard", ["%", "_"])
def test_like_wildcards_are_plain_characters(wildcard: str) -> None:
    assert not F("s").contains(wildcard).is_satisfied_by(Row(s="abc"))
    assert not F("s").startswith(f"a{wildcard}").is_satisfied_by(Row(s="abc"))
    assert F("s").contains(f"5{wildcard}").is_satisfied_by(Row(s=f"up 5{wildcard} off"))
    assert F("s").startswith(f"a{wildcard}").is_satisfied_by(Row(s=f"a{wildcard}c"))


def test_text_matching_on_a_missing_value_is_unknown() -> None:
    assert F("s").contains("a").evaluate(Row(s=None)) is UNKNOWN
    assert F("s").startswith("a").evaluate(Row(s=None)) is UNKNOWN


@pytest.mark.parametrize("method", ["contains", "startswith"])
@pytest.mark.parametrize("needle", [1, None, b"a", ["a"]])
def test_text_matching_takes_a_string(method: str, needle: object) -> None:
    with pytest.raises(QueryError, match=rf"{method}\(\) takes a string"):
        getattr(F("s"), method)(needle)


@pytest.mark.parametrize("spec", [F("v").contains("1"), F("v").startswith("1")])
@pytest.mark.parametrize("value", [12, b"12", ["1"]])
def test_text_matching_refuses_a_value_that_is_not_text(spec: Specification, value: object) -> None:
    with pytest.raises(QueryError, match="'v' holds .*, not text"):
        spec.evaluate(Anything(value))


# -- field names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["__class__", "_x", "class", "None", "a b", "1st", "", "a.", ".b", "a._b", "a..b", 3]
)
def test_a_field_is_named_by_a_public_identifier(name: object) -> None:
    with pytest.raises(QueryError, match="cannot name a field"):
        F(name)  # type: ignore[arg-type]


@dataclass
class _Line:
    sku: str
    qty: int | None


@dataclass
class _Batch:
    lines: list[_Line]
    supplier: _Line | None = None


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (F("lines.sku") == "a", [True, False, False]),
        (F("lines.sku") != "a", [True, True, False]),  # some line is not "a"
        (~(F("lines.sku") == "a"), [False, True, True]),  # no line is "a"
        (F("lines.qty").is_none(), [False, True, False]),
        (F("lines.qty") > 1, [True, False, False]),  # an unknown qty is not a match
        (F("lines.sku").in_([]), [False, False, False]),
        (F("supplier.sku").startswith("s"), [False, True, False]),
        # each condition on a path is one "some": here line a and line b answer one each
        ((F("lines.sku") == "a") & (F("lines.qty") == 1), [True, False, False]),
    ],
)
def test_a_path_means_some_related_object_matches(
    spec: Specification, expected: list[bool]
) -> None:
    batches = [
        _Batch([_Line("a", 2), _Line("b", 1)]),
        _Batch([_Line("b", None)], supplier=_Line("s1", 1)),
        _Batch([]),
    ]
    assert [spec.evaluate(batch) for batch in batches] == expected


def test_fields_lists_every_field_read() -> None:
    spec = ((F("n") > 1) | ~F("s").contains("a")) & F("n").in_([1]) & F("t").is_none()
    assert spec.fields() == {"n", "s", "t"}
    assert (F("n") == 1).fields() == {"n"}


def test_check_fields_accepts_known_fields() -> None:
    spec = (F("n") > 1) & (F("s") == "a")
    spec.check_fields(["n", "s", "other"], model="Order")  # does not raise


def test_check_fields_names_the_unknown_field_and_the_valid_ones() -> None:
    spec = (F("n") > 1) & ~(F("colour") == "red")
    with pytest.raises(QueryError) as caught:
        spec.check_fields({"s", "n"}, model="Order")
    message = str(caught.value)
    assert "Order" in message
    assert "'colour'" in message
    assert message.endswith("n, s")  # the valid fields, sorted


def test_check_fields_names_every_unknown_field() -> None:
    spec = (F("b") == 1) | (F("a") == 1) | (F("n") == 1)
    with pytest.raises(QueryError, match=re.escape("Order has no field 'a', 'b'")):
        spec.check_fields(["n"], model="Order")


# -- combining -----------------------------------------------------------------------------------


def test_and_and_or_flatten() -> None:
    a, b, c = F("a") == 1, F("b") == 2, F("c") == 3
    assert len(((a & b) & c).parts) == 3  # type: ignore[attr-defined]
    assert len((a & (b & c)).parts) == 3  # type: ignore[attr-defined]
    assert (a & b) & c == a & (b & c)
    assert len(((a | b) | c).parts) == 3  # type: ignore[attr-defined]
    assert len(((a | b) & c).parts) == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize("other", [True, 1, None, "n > 1", F("n")])
def test_combining_with_something_else_is_a_type_error(other: object) -> None:
    spec = F("n") > 1
    with pytest.raises(TypeError, match="both sides must be specifications"):
        spec & other  # type: ignore[operator]
    with pytest.raises(TypeError, match="both sides must be specifications"):
        spec | other  # type: ignore[operator]


def test_a_specification_has_no_truth_value() -> None:
    a, b = F("n") > 1, F("n") < 5
    with pytest.raises(TypeError, match="no truth value"):
        bool(a)
    with pytest.raises(TypeError, match="no truth value"):
        a and b  # noqa: B018 - the mistake the error catches
    with pytest.raises(TypeError, match="no truth value"):
        not a  # noqa: B018 - the mistake the error catches


@pytest.mark.parametrize("other", [F("m"), F("m") > 1])
def test_a_field_compares_with_constants_only(other: object) -> None:
    with pytest.raises(QueryError, match="compare a field with a constant"):
        F("n") == other  # noqa: B015 - building is what raises
    with pytest.raises(QueryError, match="compare a field with a constant"):
        F("n") > other  # noqa: B015 - building is what raises


def test_specifications_are_immutable() -> None:
    spec = F("n") > 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.value = 2  # type: ignore[attr-defined]
    both = spec & (F("s") == "a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        both.parts = ()  # type: ignore[attr-defined]


def test_specifications_built_the_same_way_are_equal_and_hash_alike() -> None:
    def build() -> Specification:
        return ((F("n") > 1) & ~F("s").contains("a")) | F("n").in_([1, None]) | F("s").is_none()

    assert build() == build()
    assert hash(build()) == hash(build())
    assert len({build(), build()}) == 1
    assert (F("n") > 1) != (F("n") >= 1)
    assert (F("n") > 1) != (F("n") > 2)
    assert (F("n") > 1) != (F("m") > 1)
    assert F("s").contains("a") != F("s").startswith("a")
    assert (F("n") > 1) & (F("s") == "a") != (F("n") > 1) | (F("s") == "a")


def test_a_field_is_not_hashable() -> None:
    with pytest.raises(TypeError):
        hash(F("n"))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (F("age") > 18, "(F('age') > 18)"),
        (F("name") == "Ada", "(F('name') == 'Ada')"),
        (F("status").in_(("paid", None)), "F('status').in_(['paid', None])"),
        (F("email").is_none(), "F('email').is_none()"),
        (F("email") != None, "~F('email').is_none()"),  # noqa: E711
        (F("name").contains("a%"), "F('name').contains('a%')"),
        (F("name").startswith("Ad"), "F('name').startswith('Ad')"),
        (
            ((F("a") > 1) & (F("b") < 2)) | ~(F("c") == 3),
            "(((F('a') > 1) & (F('b') < 2)) | ~(F('c') == 3))",
        ),
    ],
)
def test_repr_reads_like_the_source(spec: Specification, expected: str) -> None:
    assert repr(spec) == expected
    assert repr(F("age")) == "F('age')"


@given(specs)
def test_repr_rebuilds_an_equal_specification(a: Specification) -> None:
    assert eval(repr(a), {"F": F}) == a  # noqa: S307 - our own repr, to show it is the source


@pytest.mark.parametrize("nan", [Decimal("NaN"), Decimal("sNaN")])
def test_decimal_nan_is_refused(nan: Decimal) -> None:
    with pytest.raises(QueryError, match="NaN"):
        F("n") == nan  # noqa: B015 - building the specification is what raises
    with pytest.raises(QueryError, match="NaN"):
        F("n").in_([nan])


def test_a_field_cannot_be_renamed_after_its_name_was_checked() -> None:
    field = F("n")
    with pytest.raises(AttributeError, match="immutable"):
        field.name = "__class__"  # type: ignore[misc]
    assert field.name == "n"


def test_specifications_with_values_of_other_types_differ():
    # 1 == True == 1.0 in Python, but they compile differently (a bool field refuses 1)
    assert (F("n") == 1) != (F("n") == True)  # noqa: E712 - the point of the test
    assert (F("n") == 1) != (F("n") == 1.0)
    assert F("n").in_([1]) != F("n").in_([True])
    assert {F("n") == 1, F("n") == 1} == {F("n") == 1}
    assert len({F("n") == 1, F("n") == True}) == 2  # noqa: E712
