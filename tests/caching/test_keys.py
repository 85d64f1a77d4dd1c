"""Canonical keys: one key per distinct call, however spelled; never one for two calls."""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import functools
import gc
import inspect
import re
import subprocess
import sys
import weakref
import zoneinfo
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from buttress.caching import MemoryCache, cached
from buttress.caching._keys import KeyMaker, _Tokens, exact, tokens
from buttress.errors import CacheKeyError

VALUES = st.one_of(
    st.integers(-3, 3),
    st.booleans(),
    st.sampled_from([0.0, 1.0, -1.0, 2.5]),
    st.sampled_from(["", "a", "1"]),
    st.none(),
    st.tuples(st.integers(0, 2)),
)


@st.composite
def signatures(draw: st.DrawFn) -> inspect.Signature:
    """A signature of positional-only, ordinary and keyword-only parameters, with defaults."""
    kinds = [inspect.Parameter.POSITIONAL_ONLY] * draw(st.integers(0, 2)) + [
        inspect.Parameter.POSITIONAL_OR_KEYWORD
    ] * draw(st.integers(0, 3))
    positional_defaults = draw(st.integers(0, len(kinds)))
    parameters = []
    for i, kind in enumerate(kinds):
        default = draw(VALUES) if i >= len(kinds) - positional_defaults else inspect.Parameter.empty
        parameters.append(inspect.Parameter(f"p{i}", kind, default=default))
    for j in range(draw(st.integers(0, 2))):
        default = draw(st.one_of(st.just(inspect.Parameter.empty), VALUES))
        parameters.append(
            inspect.Parameter(f"k{j}", inspect.Parameter.KEYWORD_ONLY, default=default)
        )
    if draw(st.booleans()):
        parameters.append(inspect.Parameter("rest", inspect.Parameter.VAR_KEYWORD))
    return inspect.Signature(parameters)


def function_with(signature: inspect.Signature) -> Any:
    def function(*args: Any, **kwargs: Any) -> None:
        return None

    function.__signature__ = signature  # type: ignore[attr-defined]
    return function


@st.composite
def calls(draw: st.DrawFn, signature: inspect.Signature) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """One way to spell a call: a positional prefix, then keywords, defaults sometimes omitted."""
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    values = {
        p.name: p.default if p.default is not p.empty and draw(st.booleans()) else draw(VALUES)
        for p in params
        if p.kind is not p.VAR_KEYWORD
    }
    only = sum(p.kind is p.POSITIONAL_ONLY for p in positional)
    prefix = draw(st.integers(only, len(positional)))
    args = [values[p.name] for p in positional[:prefix]]
    kwargs = {p.name: values[p.name] for p in positional[prefix:]}
    for p in params:
        if p.kind is p.KEYWORD_ONLY:
            kwargs[p.name] = values[p.name]
        if p.kind is p.VAR_KEYWORD and draw(st.booleans()):
            kwargs["extra"] = draw(VALUES)
    # drop keywords equal to their default (same type) at random: the key must not change
    for name in list(kwargs):
        default = signature.parameters[name].default if name in signature.parameters else None
        same = default is not inspect.Parameter.empty and type(default) is type(kwargs[name])
        if same and default == kwargs[name] and draw(st.booleans()):
            del kwargs[name]
    return tuple(args), kwargs


def expected_key(
    identity: object, signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    forms, types = [], []
    for name, value in bound.arguments.items():
        if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
            forms.append(tuple((k, exact(v), type(v)) for k, v in sorted(value.items())))
            types.append(tuple)
        else:
            forms.append(exact(value))
            types.append(type(value))
    return (identity, *forms, *types)


@given(data=st.data(), signature=signatures())
def test_keys_are_the_bound_arguments_with_defaults_and_types(
    data: st.DataObject, signature: inspect.Signature
) -> None:
    identity = object()
    make_key = KeyMaker(function_with(signature), identity, method=False).general
    args, kwargs = data.draw(calls(signature))
    try:
        expected = expected_key(identity, signature, args, kwargs)
    except TypeError:
        with pytest.raises(TypeError):
            make_key(args, kwargs)
        return
    assert make_key(args, kwargs) == expected
    # the same call spelled all-positionally (where it can be) gives the same key
    bound = signature.bind(*args, **kwargs)
    assert make_key(bound.args, bound.kwargs) == expected


@given(signature=signatures(), data=st.data())
def test_different_calls_never_share_a_key(
    signature: inspect.Signature, data: st.DataObject
) -> None:
    make_key = KeyMaker(function_with(signature), "f", method=False).general
    first, second = data.draw(calls(signature)), data.draw(calls(signature))
    try:
        a = expected_key("f", signature, *first)
        b = expected_key("f", signature, *second)
    except TypeError:
        return
    assert (make_key(*first) == make_key(*second)) == (a == b)


@given(data=st.data(), signature=signatures(), asynchronous=st.booleans())
def test_a_cached_call_is_stored_under_its_canonical_key(
    data: st.DataObject, signature: inspect.Signature, asynchronous: bool
) -> None:
    """The wrapper binds calls itself; its keys must be the ones `invalidate` computes."""
    body = function_with(signature)
    if asynchronous:

        async def body(*args: Any, **kwargs: Any) -> None:
            return None

        body.__signature__ = signature  # type: ignore[attr-defined]
    cache = MemoryCache()
    f = cached(cache=cache)(body)
    args, kwargs = data.draw(calls(signature))
    try:
        expected = expected_key("f", signature, args, kwargs)
    except TypeError:
        with pytest.raises(TypeError):
            asyncio.run(f(*args, **kwargs)) if asynchronous else f(*args, **kwargs)
        return
    _ = asyncio.run(f(*args, **kwargs)) if asynchronous else f(*args, **kwargs)
    [stored] = cache.entries
    assert stored[1:] == expected[1:]
    f.invalidate(*signature.bind(*args, **kwargs).args, **signature.bind(*args, **kwargs).kwargs)
    assert not cache.entries


def test_any_parameter_list_is_bound_as_the_function_binds_it() -> None:
    seen: list[tuple[Any, ...]] = []

    @cached()
    def f(
        type: Any,  # noqa: A002
        _c_key: Any = 1,
        /,
        *tuple: Any,  # noqa: A002
        sorted: Any = 2,  # noqa: A002
        TypeError: Any = 3,  # noqa: A002, N803
        _c_hits: Any,
        **identity: Any,
    ) -> tuple[Any, ...]:
        seen.append((type, _c_key, tuple, sorted, _c_hits, identity))
        assert TypeError == 3
        return seen[-1]

    expected = ("t", 1, (), 2, "h", {})
    assert f("t", _c_hits="h") == expected
    assert f("t", 1, sorted=2, _c_hits="h") == expected
    assert len(seen) == 1
    assert f("t", 1, 9, _c_hits="h", type="x") == ("t", 1, (9,), 2, "h", {"type": "x"})
    assert f("t", 1, 9, type="x", _c_hits="h") == ("t", 1, (9,), 2, "h", {"type": "x"})
    assert len(seen) == 2
    f.invalidate("t", _c_hits="h")
    assert f("t", _c_hits="h") == expected
    assert len(seen) == 3
    with pytest.raises(TypeError, match=r"f\(\) missing 1 required keyword-only argument"):
        f("t")
    with pytest.raises(CacheKeyError, match="argument 1 \\(list\\) is not hashable"):
        f([], _c_hits="h")


def test_a_traceback_through_the_wrapper_shows_its_source() -> None:
    @cached()
    def fail(x: int) -> int:
        raise ValueError(x)

    with pytest.raises(ValueError, match="3") as raised:
        fail(3)
    lines = [entry.statement for entry in raised.traceback if entry.frame.code.name == "fail"]
    assert any("_c_slow(" in str(line) for line in lines)  # the wrapper's own line


def test_arguments_that_do_not_fit_raise_a_type_error_as_the_call_would() -> None:
    @cached()
    def f(x: int, /, y: int = 1, *, z: int) -> int:
        return x + y + z

    for args, kwargs in [
        ((), {"z": 1}),
        ((1, 2, 3), {"z": 1}),
        ((1,), {"x": 1, "z": 1}),
        ((1,), {}),
    ]:
        with pytest.raises(TypeError) as raised:
            f(*args, **kwargs)
        with pytest.raises(TypeError):
            f.__wrapped__(*args, **kwargs)
        assert not isinstance(raised.value, CacheKeyError)  # the call is wrong, not its key


def test_unhashable_arguments_are_a_clear_error_never_a_silent_miss() -> None:
    @cached()
    def total(items: Any, *, scale: Any = 1) -> int:
        return len(items) * 2

    with pytest.raises(CacheKeyError, match=r"argument 1 \(list\) is not hashable") as raised:
        total([1, 2])
    assert isinstance(raised.value, TypeError)
    with pytest.raises(CacheKeyError, match=r"argument 'scale' \(dict\)"):
        total((1,), scale={})
    assert total((1, 2)) == 4


def test_a_freed_objects_entry_is_never_served_to_a_new_object() -> None:
    calls: list[int] = []

    class Box:
        def __init__(self, content: int) -> None:
            self.content = content

        @cached()
        def read(self) -> int:
            calls.append(self.content)
            return self.content

    seen = set()
    for content in range(200):  # addresses are reused quickly by objects of one size
        box = Box(content)
        seen.add(id(box))
        assert box.read() == content
        assert box.read() == content
        del box
    assert calls == list(range(200))
    assert len(seen) < 200  # some address was reused, and still no stale value came back
    assert len(tokens) < 10  # tokens of dead instances are forgotten


def test_a_method_call_has_one_key_however_spelled() -> None:
    calls: list[tuple[int, int]] = []

    class Grid:
        @cached()
        def cell(self, row: int, column: int = 0) -> int:
            calls.append((row, column))
            return row * 10 + column

    grid = Grid()
    assert grid.cell(1) == grid.cell(row=1) == grid.cell(1, 0) == grid.cell(1, column=0) == 10
    assert Grid.cell(grid, 1) == 10
    assert calls == [(1, 0)]
    Grid.cell.invalidate(grid, row=1)
    assert grid.cell(1, 0) == 10
    assert calls == [(1, 0), (1, 0)]


def test_methods_do_not_keep_their_instances_alive() -> None:
    class Service:
        @cached()
        def lookup(self, key: str) -> str:
            return key.upper()

    service = Service()
    assert service.lookup("a") == "A"
    alive = weakref.ref(service)
    del service
    gc.collect()
    assert alive() is None


def test_a_method_of_a_class_without_weakrefs_asks_for_a_key() -> None:
    class Slotted:
        __slots__ = ("n",)

        def __init__(self) -> None:
            self.n = 1

        @cached()
        def get(self) -> int:
            return self.n

    with pytest.raises(CacheKeyError, match="pass key="):
        Slotted().get()


def test_a_custom_key_replaces_binding() -> None:
    cache = MemoryCache()

    @cached(cache=cache, key=lambda user, **_: user["id"])
    def name(user: dict[str, Any], *, loud: bool = False) -> str:
        return str(user["name"])

    assert name({"id": 1, "name": "ada"}) == "ada"
    assert name({"id": 1, "name": "changed"}) == "ada"
    assert name.stats().hits == 1
    name.invalidate({"id": 1})
    assert name({"id": 1, "name": "changed"}) == "changed"


# -- the key rule: one entry exactly for interchangeable arguments -----------------------

UTC = dt.UTC
PLUS_ONE = dt.timezone(dt.timedelta(hours=1))
INSTANT = dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


class Level(enum.IntEnum):
    ONE = 1


def spelled(value: Any) -> Any:
    """What a function could tell apart about ``value``: the oracle of interchangeability.

    Written independently of `exact`: type, then everything ``==`` ignores.
    """
    kind = type(value)
    if isinstance(value, float | complex):
        return (kind, repr(value))
    if isinstance(value, Decimal):
        return (kind, str(value))
    if isinstance(value, dt.datetime | dt.time):
        return (kind, value.isoformat(), value.fold, repr(value.tzinfo))
    if isinstance(value, tuple):
        return (kind, tuple(spelled(item) for item in value))
    if isinstance(value, frozenset):
        return (kind, frozenset(spelled(item) for item in value))
    return (kind, value)


EQUALS: list[list[Any]] = [  # each list: values Python calls equal to each other
    [0, False, 0.0, -0.0, Decimal(0), Decimal("-0"), Decimal("0.0"), complex(0, 0)],
    [1, True, 1.0, Level.ONE, Decimal(1), Decimal("1.0"), Decimal("1.00"), complex(1, 0)],
    [float("nan"), float("-nan")],
    [
        INSTANT,
        INSTANT.astimezone(PLUS_ONE),
        INSTANT.astimezone(dt.timezone(dt.timedelta(hours=1), "CET")),
        INSTANT.replace(fold=1),
    ],
    [INSTANT.replace(tzinfo=None), INSTANT.replace(tzinfo=None, fold=1)],
    [dt.time(12, 0, tzinfo=UTC), dt.time(13, 0, tzinfo=PLUS_ONE)],
    [dt.date(2024, 3, 1)],
    ["1"],
    [b"1"],
    [None],
]
LEAVES = st.sampled_from([value for group in EQUALS for value in group])
ARGUMENTS = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(tuple), st.frozensets(inner, max_size=3)
    ),
    max_leaves=6,
)


def twin(draw: st.DrawFn, value: Any) -> Any:
    """A value equal to ``value``, each leaf swapped for an equal one (maybe itself)."""
    if isinstance(value, tuple):
        return tuple(twin(draw, item) for item in value)
    if isinstance(value, frozenset):
        items = [twin(draw, item) for item in value]
        made = frozenset(items)
        return made if len(made) == len(value) else value  # two items became equal: keep it
    for group in EQUALS:
        if any(value is member for member in group):
            return draw(st.sampled_from(group))
    return value


@pytest.mark.parametrize("spelling", ["positional", "star-args", "star-kwargs", "custom key"])
@settings(max_examples=300)
@given(data=st.data())
def test_two_calls_share_an_entry_exactly_when_their_arguments_are_interchangeable(
    spelling: str, data: st.DataObject
) -> None:
    first = data.draw(ARGUMENTS)
    second = data.draw(
        st.one_of(
            ARGUMENTS, st.builds(lambda: first), st.composite(lambda draw: twin(draw, first))()
        )
    )
    runs: list[Any] = []

    def body(value: Any) -> Any:
        runs.append(value)
        return len(runs)

    if spelling == "positional":
        call = cached()(body)
    elif spelling == "star-args":
        g = cached()(lambda *args: body(args[0]))
        call = g
    elif spelling == "star-kwargs":
        h = cached()(lambda **kwargs: body(kwargs["x"]))
        call = lambda x: h(x=x)  # noqa: E731 - a spelling of the call
    else:
        call = cached(key=lambda value: value)(body)
    call(first)
    call(second)
    same = spelled(first) == spelled(second)
    assert (len(runs) == 1) == same, (first, second)


def test_the_cases_the_rule_names_get_their_own_entries() -> None:
    @cached()
    def echo(*args: Any, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        return args, kwargs

    pairs = [
        (1, True),
        (1, 1.0),
        (0.0, -0.0),
        (Decimal("1.0"), Decimal("1.00")),
        (INSTANT, INSTANT.astimezone(PLUS_ONE)),
        ((1,), (True,)),
        (frozenset({1}), frozenset({True})),
        (Level.ONE, 1),
    ]
    for left, right in pairs:
        assert left == right  # Python calls them equal...
        assert echo(left)[0][0] is left
        assert echo(right)[0][0] is right, (left, right)  # ... the cache does not
        assert echo(x=right)[1]["x"] is right
        assert echo(x=left)[1]["x"] is left


REDIS_TEXTS = """
import datetime as dt, json, sys
from decimal import Decimal
sys.path.insert(0, {tests!r})
from test_keys import INSTANT, PLUS_ONE, Level
from buttress.caching._keys import KeyMaker
from buttress.caching._serial import encode_key

def f(*args, **kwargs):
    return None

make = KeyMaker(f, "f", method=False).general
values = [1, True, 1.0, -0.0, 0.0, float("nan"), Decimal("1.0"), Decimal("1.00"), INSTANT,
          INSTANT.astimezone(PLUS_ONE), INSTANT.replace(fold=1), (1, (True,)),
          frozenset({{1, "a", (2.5,)}}), Level.ONE, dt.time(1, tzinfo=PLUS_ONE)]
print(json.dumps([encode_key(make((value,), {{"k": value}})[1:]) for value in values]))
"""


def test_the_redis_key_of_a_call_is_the_same_in_two_fresh_processes() -> None:
    import json  # noqa: PLC0415
    import os  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    script = REDIS_TEXTS.format(tests=str(Path(__file__).parent))
    texts = []
    for seed in ("1", "2"):  # another string-hash seed: frozenset order differs
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
        )
        texts.append(json.loads(done.stdout))
    assert texts[0] == texts[1]
    assert len(set(texts[0])) == len(texts[0])  # and every value has a text of its own


# -- what can be decorated, and what cannot be keyed ------------------------------------


def test_partials_callable_objects_and_bound_methods_are_cached_under_their_functions_name() -> (
    None
):
    runs: list[Any] = []

    def scaled(x: int, factor: int) -> int:
        runs.append((x, factor))
        return x * factor

    double = cached()(functools.partial(scaled, factor=2))
    assert double(3) == double(3) == 6
    assert double.name.endswith("scaled")

    class Pricer:
        def __call__(self, sku: str) -> int:
            runs.append(sku)
            return len(sku)

        def price(self, sku: str) -> int:
            runs.append(("price", sku))
            return 2 * len(sku)

    priced = cached()(Pricer())
    assert priced("abc") == priced("abc") == 3
    assert priced.name.endswith("Pricer")
    bound = cached()(Pricer().price)
    assert bound("ab") == bound("ab") == 4
    assert bound.name.endswith("Pricer.price")
    assert runs == [(3, 2), "abc", ("price", "ab")]


@pytest.mark.asyncio
async def test_an_async_callable_object_and_partial_are_awaited_not_cached_as_coroutines() -> None:
    class Fetch:
        async def __call__(self, x: int) -> int:
            return x + 1

    async def add(x: int, y: int) -> int:
        return x + y

    fetch = cached()(Fetch())
    plus = cached()(functools.partial(add, y=10))
    assert inspect.iscoroutinefunction(fetch)
    assert await fetch(1) == await fetch(1) == 2
    assert await plus(1) == await plus(1) == 11


class Grumpy:
    """Hashes by raising: a broken __hash__ is the argument's fault, said clearly."""

    def __hash__(self) -> int:
        raise ValueError("no hash for you")


def test_a_hash_that_raises_and_a_deeply_nested_argument_are_cache_key_errors() -> None:
    @cached()
    def f(x: Any) -> int:
        return 1

    with pytest.raises(CacheKeyError, match=r"argument 1 \(Grumpy\)") as raised:
        f(Grumpy())
    assert isinstance(raised.value.__cause__, ValueError)
    with pytest.raises(CacheKeyError, match=r"argument 'x' \(Grumpy\)"):
        f.invalidate(x=Grumpy())
    deep: Any = ()
    for _ in range(100_000):
        deep = (deep,)
    with pytest.raises(CacheKeyError, match="nested too deeply"):
        f(deep)
    assert f(1) == 1  # and the function still works


# -- instance tokens: one per live instance, forgotten with it ---------------------------


class Plain:
    """Any weakly referenceable instance."""


def test_dead_instances_leave_no_entry_in_the_token_table() -> None:
    """Instances alive together hold distinct addresses: none may be left behind by its death.

    (One instance at a time would reuse one address, and overwriting its entry hides a leak.)
    """

    class Box:
        @cached()
        def read(self) -> int:
            return 1

    gc.collect()  # nothing else dies during the test
    before = len(tokens)
    boxes = [Box() for _ in range(100)]
    assert [box.read() for box in boxes] == [1] * 100
    assert len(tokens) == before + 100
    del boxes
    assert len(tokens) <= before  # freed by reference counting, no collector needed


def test_the_token_table_rechecks_under_its_lock_and_forgets_the_dead() -> None:
    table = _Tokens()
    first, second = Plain(), Plain()
    token = table(first)
    assert table(first) is token
    # what the loser of a race between two first calls runs, under the lock: the same token
    assert table._new(first) is token
    assert table(second) is not token
    assert len(table) == 2
    del first
    assert len(table) == 1
    del second
    assert len(table) == 0


def test_tokens_read_as_their_instance_numbers() -> None:
    table = _Tokens()
    one, two = Plain(), Plain()
    texts = {repr(table(one)), repr(table(two))}
    assert len(texts) == 2
    assert all(re.fullmatch(r"<instance \d+>", text) for text in texts)


def test_the_collector_freeing_an_instance_mid_call_does_not_deadlock() -> None:
    """Instances in reference cycles die whenever the cyclic collector runs: maybe mid-call."""
    script = """
import gc, os, threading
from buttress.caching import cached

class Node:
    def __init__(self, n):
        self.n = n
        self.me = self  # a reference cycle: only the cyclic collector frees a Node

    @cached()
    def read(self):
        return self.n

def churn():
    for threshold in range(1, 11):  # collections at every few allocations
        gc.set_threshold(threshold)
        for n in range(100):
            assert Node(n).read() == n

worker = threading.Thread(target=churn, daemon=True)
worker.start()
worker.join(timeout=1.5)  # the whole churn takes a few milliseconds
print("deadlock" if worker.is_alive() else "done", flush=True)
os._exit(0)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "done"


# -- error messages say what went wrong and what to do -----------------------------------


def test_a_method_of_a_class_without_weakrefs_is_refused_with_the_fix() -> None:
    class Slotted:
        __slots__ = ()

        @cached()
        def get(self) -> int:
            return 1

    with pytest.raises(CacheKeyError) as raised:
        Slotted().get()
    assert str(raised.value) == (
        "cannot cache a method per instance of "
        "test_a_method_of_a_class_without_weakrefs_is_refused_with_the_fix.<locals>.Slotted: "
        "its instances cannot be weakly referenced (it uses __slots__ without '__weakref__'). "
        "Add '__weakref__' to its __slots__, or pass key= to cached to say how calls are keyed"
    )


def test_every_unhashable_argument_is_named_in_one_message() -> None:
    @cached(name="report")
    def report(rows: Any, *, columns: Any) -> int:
        return 1

    with pytest.raises(CacheKeyError) as raised:
        report([], columns={"a"})
    assert str(raised.value) == (
        "cannot cache the call to report: argument 1 (list), argument 'columns' (set) is not "
        "hashable. Pass hashable values (a tuple instead of a list, a frozenset instead of a "
        "set), or pass key= to cached to say how calls are keyed"
    )


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((1, 2, 3), {"z": 1}),  # too many positional arguments
        ((), {"z": 1}),  # a required one missing
        ((1,), {}),  # a required keyword-only one missing
        ((1,), {"x": 1, "z": 1}),  # a positional-only one passed by keyword
        ((1,), {"z": 1, "w": 1}),  # an unknown keyword
    ],
)
def test_invalidating_with_arguments_that_do_not_fit_says_why(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    def f(x: int, /, y: int = 1, *, z: int) -> int:
        return x + y + z

    cached_f = cached()(f)
    with pytest.raises(TypeError) as expected:
        inspect.signature(f).bind(*args, **kwargs)
    with pytest.raises(TypeError) as raised:
        cached_f.invalidate(*args, **kwargs)
    assert not isinstance(raised.value, CacheKeyError)
    assert str(raised.value) == str(expected.value)


# -- signatures the wrapper cannot spell out, and values keyed by their base ------------


@pytest.mark.parametrize("name", ["from", "class", "lambda"])
def test_a_positional_only_parameter_named_by_a_keyword_is_still_cached(name: str) -> None:
    """Signatures of builtins may name a positional-only parameter ``from``: no source for it."""
    runs: list[Any] = []

    def body(*args: Any) -> Any:
        runs.append(args)
        return args

    body.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(name, inspect.Parameter.POSITIONAL_ONLY)]
    )
    f = cached()(body)
    assert f(1) == f(1) == (1,)
    assert runs == [(1,)]
    f.invalidate(1)
    assert f(1) == (1,)
    assert len(runs) == 2


class Meters(float):
    """A float subclass: keyed by its value, as a float is."""


class Point(tuple[int, int]):
    """A tuple subclass (as named tuples are): keyed item by item."""

    __slots__ = ()


@pytest.mark.parametrize(
    ("first", "second"),
    [(Meters(1.5), Meters(2.5)), (Point((1, 2)), Point((1, 3)))],
    ids=["float subclass", "tuple subclass"],
)
def test_values_of_a_subclass_are_keyed_by_their_value(first: Any, second: Any) -> None:
    runs: list[Any] = []

    @cached()
    def measure(value: Any) -> Any:
        runs.append(value)
        return value

    assert measure(first) == first
    assert measure(second) == second
    assert measure(type(first)(first)) == first
    assert runs == [first, second]


# -- zones: the same wall clock in two zones is two calls -------------------------------


class Shifted(dt.tzinfo):
    """A zone of our own (neither `datetime.timezone` nor `zoneinfo.ZoneInfo`)."""

    def __init__(self, hours: int) -> None:
        self.hours = hours

    def utcoffset(self, value: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(hours=self.hours)

    def dst(self, value: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(0)

    def __repr__(self) -> str:
        return f"Shifted({self.hours})"


class Twin(Shifted):
    """Another class of zone that reads the same as `Shifted`."""


PARIS = zoneinfo.ZoneInfo("Europe/Paris")
LISBON = zoneinfo.ZoneInfo("Europe/Lisbon")
ZONE_PAIRS = [(UTC, PLUS_ONE), (PARIS, LISBON), (Shifted(1), Shifted(2)), (Shifted(1), Twin(1))]


@pytest.mark.parametrize("kind", ["datetime", "time"])
@pytest.mark.parametrize(("left", "right"), ZONE_PAIRS, ids=["fixed", "zoneinfo", "own", "class"])
def test_one_wall_clock_in_two_zones_is_two_entries(
    kind: str, left: dt.tzinfo, right: dt.tzinfo
) -> None:
    runs: list[Any] = []

    @cached()
    def at(moment: Any) -> Any:
        runs.append(moment)
        return moment.tzinfo

    def moment(zone: dt.tzinfo) -> Any:
        if kind == "datetime":
            return dt.datetime(2024, 3, 1, 12, tzinfo=zone)
        return dt.time(12, tzinfo=zone)

    assert at(moment(left)) is left
    assert at(moment(right)) is right
    assert at(moment(left)) is left
    assert len(runs) == 2


def test_exact_forms_are_the_documented_ones() -> None:
    """The exact form is the key's text in Redis: a change re-keys every stored entry.

    So it is pinned here, as the module docstring spells it.
    """
    naive = INSTANT.replace(tzinfo=None)
    assert exact(naive) is naive
    assert exact(dt.time(12)) == dt.time(12)
    assert type(exact(dt.time(12))) is dt.time
    assert exact(2.5) == 2.5
    assert type(exact(2.5)) is float
    assert exact(naive.replace(fold=1)) == (naive, 1, None)
    assert exact(dt.time(12, fold=1)) == (dt.time(12), 1, None)
    for zone, text in [
        (PLUS_ONE, "datetime.timezone(datetime.timedelta(seconds=3600))"),
        (PARIS, "zoneinfo:Europe/Paris"),
        (Shifted(2), f"{__name__}:Shifted:Shifted(2):2:00:00"),
    ]:
        moment = dt.datetime(2024, 3, 1, 12, tzinfo=zone)
        form = exact(moment)
        assert form == (naive, 0, text)
        assert form[0].tzinfo is None
        form = exact(dt.time(12, tzinfo=zone))
        assert form == (dt.time(12), 0, text)
        assert form[0].tzinfo is None
