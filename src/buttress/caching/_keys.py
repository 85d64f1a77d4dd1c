"""Canonical cache keys: one key per distinct call, however the arguments were spelled.

Arguments are bound to the function's signature with defaults applied, so
``f(1)``, ``f(x=1)`` and ``f(1, y=2)`` (``y`` defaulting to 2) are one key. The
key is a tuple: the function's identity in this process, every parameter's
*exact form* in signature order (``*args`` as a tuple, ``**kwargs`` as sorted
``(name, value, type)`` triples), then the type of each value.

**The key rule.** Two calls share an entry exactly when their arguments are
*interchangeable*: equal, of the same type, and equal in everything equality
ignores. Python's ``==`` calls some values equal that a function may well treat
differently, so their exact form spells the difference out (see `exact`):

- ``1``, ``1.0``, ``True`` and ``IntEnum`` members: the type tells them apart, at
  every depth (inside tuples, frozensets, ``*args`` and ``**kwargs`` too);
- ``0.0`` / ``-0.0`` and NaNs (floats and complex numbers): by their ``repr``;
- ``Decimal("1.0")`` / ``Decimal("1.00")``: by their text, which keeps the exponent;
- aware datetimes and times: by wall time, ``fold`` and zone, so the same instant
  in UTC and in +01:00 are two keys (naive ones with ``fold=0`` are themselves);
- any other value: by its own ``==`` and ``hash``, and its type.

The exact form is made of the values themselves, strings, tuples, frozensets and
types, so a cache outside the process encodes it to the same text in every
process (`buttress.caching._serial.encode_key`).

A method (a function whose first parameter is ``self``) is keyed by an instance
token instead of the instance: a fresh token per live instance, never reused, held
in a side table with a weak reference. An entry written for an object is never
served to another object that happens to get the same address later, and the
cache does not keep instances alive.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import itertools
import keyword
import threading
import uuid
import weakref
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, final

from buttress.errors import CacheKeyError

if TYPE_CHECKING:
    from collections.abc import Callable

    from buttress.caching._backend import Key

__all__ = ["PLAIN", "Binding", "InstanceToken", "KeyMaker", "exact", "exact_kwargs", "unhashable"]

_STARS: Final[dict[inspect._ParameterKind, str]] = {
    inspect.Parameter.VAR_POSITIONAL: "*",
    inspect.Parameter.VAR_KEYWORD: "**",
}

_POSITIONAL: Final = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)

PLAIN: Final[frozenset[type]] = frozenset(
    {int, str, bool, type(None), bytes, dt.date, dt.timedelta, uuid.UUID, type}
)
"""Types whose ``==`` is interchangeability: their values are their own exact form."""


def _float(value: float) -> object:
    # 0.0 == -0.0 and nan != nan: spell those out; every other float is itself.
    return value if value and value == value else repr(value)  # noqa: PLR0124 - NaN test


def _zone(zone: dt.tzinfo | None, value: dt.datetime | dt.time) -> object:
    """A zone's text, the same in every process (``repr`` for stdlib zones)."""
    if zone is None:
        return None
    if isinstance(zone, dt.timezone):
        return repr(zone)  # offset and name: timezone(+1h) and timezone(+1h, "CET") differ
    key = getattr(zone, "key", None)  # zoneinfo.ZoneInfo
    if isinstance(key, str):
        return f"zoneinfo:{key}"
    kind = type(zone)
    return f"{kind.__module__}:{kind.__qualname__}:{zone}:{value.utcoffset()}"


def _datetime(value: dt.datetime) -> object:
    if value.tzinfo is None and not value.fold:
        return value
    return (value.replace(tzinfo=None, fold=0), value.fold, _zone(value.tzinfo, value))


def _time(value: dt.time) -> object:
    if value.tzinfo is None and not value.fold:
        return value
    return (value.replace(tzinfo=None, fold=0), value.fold, _zone(value.tzinfo, value))


def _tuple(value: tuple[Any, ...]) -> object:
    # n exact forms, then n types: equal only for interchangeable items, position by position.
    return (*map(exact, value), *map(type, value))


def _frozenset(value: frozenset[Any]) -> object:
    return frozenset([(exact(item), type(item)) for item in value])


_EXACT: Final[dict[type, Callable[[Any], object]]] = {
    float: _float,
    complex: repr,
    Decimal: str,  # keeps the exponent: "1.0" and "1.00" differ, and so do 0 and -0
    dt.datetime: _datetime,
    dt.time: _time,
    tuple: _tuple,
    frozenset: _frozenset,
}

_BASES: Final[tuple[type, ...]] = tuple(_EXACT)  # subclasses (named tuples...) by their base


def exact(value: Any) -> Any:
    """The exact form of a key item: equal for interchangeable values only.

    Values of a `PLAIN` type are returned as they are; floats, complex numbers,
    Decimals, aware datetimes and times, tuples and frozensets (and their
    subclasses) are spelled out as the module docstring says; anything else is
    returned as it is (its own ``==`` decides). The type of ``value`` is not
    part of the result: keys hold it beside.

    Args:
        value: One argument of a call (or an item inside one).

    Returns:
        A hashable stand-in, when ``value`` is hashable.
    """
    kind = type(value)
    if kind in PLAIN:
        return value
    spell = _EXACT.get(kind)
    if spell is not None:
        return spell(value)
    if isinstance(value, _BASES):
        for base in _BASES:
            if isinstance(value, base):
                return _EXACT[base](value)
    return value


def exact_kwargs(kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """The exact form of ``**kwargs``: ``(name, exact value, type)`` triples, sorted by name."""
    return tuple([(name, exact(value), type(value)) for name, value in sorted(kwargs.items())])


@final
class InstanceToken:
    """Stands for one instance in method keys; equal only to itself."""

    __slots__ = ("__weakref__", "number")

    _numbers = itertools.count(1)

    def __init__(self) -> None:
        self.number = next(self._numbers)

    def __repr__(self) -> str:
        return f"<instance {self.number}>"


class _Tokens:
    """Instance -> token, without holding the instance or requiring it to be hashable."""

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[weakref.ref[Any], InstanceToken]] = {}
        # Reentrant: _new allocates under the lock, and a collection it sets off may run
        # the weak-reference callback of another dying instance on this very thread.
        self._lock = threading.RLock()

    def __call__(self, instance: object) -> InstanceToken:
        found = self._by_id.get(id(instance))
        if found is not None and found[0]() is instance:
            return found[1]
        return self._new(instance)

    def _new(self, instance: object) -> InstanceToken:
        ident = id(instance)
        with self._lock:
            found = self._by_id.get(ident)
            if found is not None and found[0]() is instance:
                return found[1]
            try:
                ref = weakref.ref(instance, self._forget(ident))
            except TypeError:
                raise CacheKeyError(
                    f"cannot cache a method per instance of {type(instance).__qualname__}: its "
                    "instances cannot be weakly referenced (it uses __slots__ without "
                    "'__weakref__'). Add '__weakref__' to its __slots__, or pass key= to cached "
                    "to say how calls are keyed"
                ) from None
            token = InstanceToken()
            self._by_id[ident] = (ref, token)
            return token

    def _forget(self, ident: int) -> Callable[[weakref.ref[Any]], None]:
        def forget(ref: weakref.ref[Any]) -> None:
            with self._lock:
                found = self._by_id.get(ident)
                if found is not None and found[0] is ref:
                    del self._by_id[ident]

        return forget

    def __len__(self) -> int:
        return len(self._by_id)


tokens: Final = _Tokens()


def unhashable(args: tuple[Any, ...], kwargs: dict[str, Any], name: str) -> CacheKeyError | None:
    """The error for a call whose arguments cannot be hashed, naming the culprits.

    Returns ``None`` when every argument hashes on its own.
    """
    culprits = [
        f"{where} ({type(value).__qualname__})"
        for where, value in [
            *((f"argument {i + 1}", value) for i, value in enumerate(args)),
            *((f"argument {key!r}", value) for key, value in kwargs.items()),
        ]
        if not _hashable(value)
    ]
    if not culprits:
        return None
    return CacheKeyError(
        f"cannot cache the call to {name}: {', '.join(culprits)} is not hashable. Pass "
        "hashable values "
        "(a tuple instead of a list, a frozenset instead of a set), or pass key= to cached "
        "to say how calls are keyed"
    )


def _hashable(value: object) -> bool:
    try:
        hash(exact(value))
    except Exception:  # noqa: BLE001 - a __hash__ may raise anything: then it is the culprit
        return False
    return True


class _Kwargs(dict[str, Any]):
    """The ``**kwargs`` of a call, told apart from a dict passed as an argument."""

    __slots__ = ()


@dataclasses.dataclass(frozen=True)
class Binding:
    """Source fragments of a wrapper that takes a function's own parameters.

    A wrapper generated with these fragments lets the interpreter bind each call
    (keywords, defaults, errors for calls that do not fit), then builds the
    canonical key from its locals: the same key `KeyMaker.general` gives.

    Attributes:
        prefix: The start of every name the fragments define besides parameters.
        parameters: The parameter list, defaults taken from `constants`.
        key: An expression of the call's key.
        args: An expression of the positional arguments to call the function with.
        kwargs: An expression of the keyword arguments to call the function with.
        constants: Names the fragments use, to define around the wrapper.
    """

    prefix: str
    parameters: str
    key: str
    args: str
    kwargs: str
    constants: dict[str, Any]


class KeyMaker:
    """Builds the canonical key of a call to one function.

    Args:
        function: The decorated function.
        identity: The first item of every key: the function's identity in this process.
        method: Whether the first argument is an instance to key by token.
    """

    def __init__(self, function: Callable[..., Any], identity: object, *, method: bool) -> None:
        self.identity = identity
        self.method = method
        self.signature = inspect.signature(function)
        params = list(self.signature.parameters.values())
        kinds = {param.kind for param in params}
        self.variadic = bool(
            kinds & {inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD}
        )
        positional = [param for param in params if param.kind in _POSITIONAL]
        self.positional = tuple(param.name for param in positional)
        self.keyword_only = tuple(
            param.name for param in params if param.kind is inspect.Parameter.KEYWORD_ONLY
        )
        self.positional_only = frozenset(
            param.name for param in params if param.kind is inspect.Parameter.POSITIONAL_ONLY
        )
        self.defaults = {
            param.name: param.default
            for param in params
            if param.default is not inspect.Parameter.empty
        }

    def binding(self, prefix: str) -> Binding | None:
        """Source fragments for a wrapper with the function's own parameter list.

        Every name the fragments define besides the parameters starts with
        ``prefix``, which no parameter name may start with. Parameter names come
        from the signature, where `inspect.Parameter` has checked each is an
        identifier; a name that is not (or is a keyword) gives None, and the
        caller falls back to ``*args, **kwargs``.

        Args:
            prefix: The start of every name the fragments define.

        Returns:
            The fragments, or None where the signature cannot be written out.
        """
        params = list(self.signature.parameters.values())
        names = [param.name for param in params]
        if any(not name.isidentifier() or keyword.iskeyword(name) for name in names):
            return None
        if any(name.startswith(prefix) for name in names):
            raise ValueError(f"a parameter name starts with {prefix!r}")
        constants: dict[str, Any] = {
            f"{prefix}identity": self.identity,
            f"{prefix}token": tokens,
            f"{prefix}Token": InstanceToken,
            f"{prefix}type": type,
            f"{prefix}tuple": tuple,
            f"{prefix}plain": PLAIN,
            f"{prefix}exact": exact,
            f"{prefix}exact_kwargs": exact_kwargs,
        }
        kind = inspect.Parameter
        written: list[str] = []  # the parameter list
        values: list[str] = []  # the key's values, then
        types: list[str] = []  # their types
        positional: list[str] = []  # the call's positional arguments
        keywords: list[str] = []  # the call's keyword arguments
        kinds = [param.kind for param in params]
        slash = max((i for i, k in enumerate(kinds) if k is kind.POSITIONAL_ONLY), default=-1)
        star = kinds.index(kind.KEYWORD_ONLY) if kind.KEYWORD_ONLY in kinds else -1
        if kind.VAR_POSITIONAL in kinds:
            star = -1  # *args already ends the positional parameters
        for i, param in enumerate(params):
            name = param.name
            if i == star:
                written.append("*")
            default = "" if param.default is kind.empty else f"={prefix}d{i}"
            constants[f"{prefix}d{i}"] = param.default
            stars = _STARS.get(param.kind, "")
            written.append(f"{stars}{name}{default}")
            if i == slash:
                written.append("/")
            if param.kind is kind.KEYWORD_ONLY:
                keywords.append(f"{name!r}: {name}")
            elif param.kind is kind.VAR_KEYWORD:
                keywords.append(f"**{name}")
            else:
                positional.append(f"{stars}{name}")
            if param.kind is kind.VAR_KEYWORD:
                values.append(f"{prefix}exact_kwargs({name})")
                types.append(f"{prefix}tuple")
            elif i == 0 and self.method:
                values.append(f"{prefix}token({name})")
                types.append(f"{prefix}Token")
            else:  # a value of a plain type is its own exact form: no call on the hot path
                kept = f"{prefix}t{i}"
                values.append(
                    f"{name} if ({kept} := {prefix}type({name})) in {prefix}plain "
                    f"else {prefix}exact({name})"
                )
                types.append(kept)
        return Binding(
            prefix=prefix,
            parameters=", ".join(written),
            key=f"({', '.join([f'{prefix}identity', *values, *types])},)",
            args=f"({', '.join(positional)},)" if positional else "()",
            kwargs=f"{{{', '.join(keywords)}}}",
            constants=constants,
        )

    def general(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Key:
        """The key of any call, bound in Python (for `invalidate`; calls bind in the wrapper)."""
        if self.variadic:
            bound = self.signature.bind(*args, **kwargs)  # raises the TypeError a call would
            bound.apply_defaults()
            values: list[Any] = []
            for name, value in bound.arguments.items():
                kind = self.signature.parameters[name].kind
                if kind is inspect.Parameter.VAR_KEYWORD:
                    values.append(_Kwargs(value))
                else:
                    values.append(value)
        else:
            values = self._bind(args, kwargs)
        types = [tuple if isinstance(value, _Kwargs) else type(value) for value in values]
        forms = [
            exact_kwargs(value) if isinstance(value, _Kwargs) else exact(value) for value in values
        ]
        if self.method and values:
            forms[0], types[0] = tokens(values[0]), InstanceToken
        return (self.identity, *forms, *types)

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
        positional = self.positional
        if len(args) > len(positional):
            raise self._refusal(args, kwargs)
        values = list(args)
        used = 0
        for name in itertools.chain(positional[len(args) :], self.keyword_only):
            if name in kwargs and name not in self.positional_only:
                values.append(kwargs[name])
                used += 1
            elif name in self.defaults:
                values.append(self.defaults[name])
            else:
                raise self._refusal(args, kwargs)
        if used != len(kwargs):
            raise self._refusal(args, kwargs)  # unknown or repeated keyword
        return values

    def _refusal(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TypeError:
        """The TypeError calling the function with these arguments would raise."""
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as error:
            return error
        return TypeError(f"arguments {args!r}, {kwargs!r} do not fit {self.signature}")
