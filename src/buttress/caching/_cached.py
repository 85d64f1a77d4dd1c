"""The `cached` decorator: canonical keys, single-flight misses, lock-free hits."""

from __future__ import annotations

import functools
import inspect
import itertools
import linecache
import logging
import math
import random
import threading
import time
import typing
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final, Generic, ParamSpec, Protocol, TypeVar, cast

from buttress.caching._backend import (
    MISSING,
    CacheListener,
    CacheStats,
    CacheView,
    LocalTier,
    SharedCache,
)
from buttress.caching._flight import AsyncFlights, Flights
from buttress.caching._keys import Binding, KeyMaker, exact, unhashable
from buttress.caching._memory import FOREVER, SAMPLE, MemoryCache
from buttress.errors import ButtressError, CacheKeyError, ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Sequence

    from buttress.caching._backend import Key

__all__ = ["Cached", "cached"]

logger = logging.getLogger("buttress.caching")

P = ParamSpec("P")
R = TypeVar("R")

_LEASE_ROUNDS: Final = 3
"""How many times a caller waits for another process's lease before computing anyway."""


_generated: Final = itertools.count(1)
"""Numbers the generated wrappers' file names, so each keeps its own source lines."""


def _prefix(params: Sequence[str]) -> str:
    """A start for generated names that no parameter name starts with."""
    prefix = "_c_"
    while any(name.startswith(prefix) for name in params):
        prefix = f"_{prefix}"
    return prefix


class Cached(Protocol[P, R]):
    """A function decorated with `cached`: call it as before, plus cache controls.

    For an ``async def``, ``R`` is the coroutine type, so awaiting a call
    gives the function's own result.
    """

    __wrapped__: Callable[P, R]
    name: str
    """The name entries are stored under (``module.qualname`` unless given)."""
    cache: SharedCache
    """The cache the entries live in (the provider, when `cached` was given one)."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Return the cached value for these arguments, computing it on a miss."""
        ...

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Drop the entry these arguments map to (keyed exactly as a call would be).

        With Redis unreachable, the invalidation is kept and applied, in order, as
        soon as Redis answers; meanwhile this process reads nothing from Redis.
        """
        ...

    async def ainvalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """`invalidate`, for async callers."""
        ...

    def invalidate_strict(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """`invalidate`, raising `UnavailableError` when Redis cannot be reached now.

        The invalidation is kept and applied when Redis answers all the same;
        the error tells the caller it has not been yet.
        """
        ...

    async def ainvalidate_strict(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """`invalidate_strict`, for async callers."""
        ...

    def clear(self) -> None:
        """Drop every entry of this function (other functions sharing the cache keep theirs)."""
        ...

    async def aclear(self) -> None:
        """`clear`, for async callers."""
        ...

    def invalidate_tags(self, *tags: str) -> None:
        """Drop every entry of the cache stored with any of ``tags``."""
        ...

    async def ainvalidate_tags(self, *tags: str) -> None:
        """`invalidate_tags`, for async callers."""
        ...

    def stats(self) -> CacheStats:
        """Hits and misses of this function, size and evictions of its cache."""
        ...


class _Identity:
    """The first item of every key of one decorated function: unique per decoration."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<cached {self.name}>"


_VIEW_METHODS: Final = (
    "get",
    "peek",
    "set",
    "delete",
    "begin",
    "store",
    "end",
    "abegin",
    "astore",
    "aend",
    "acquire",
    "wait",
    "release",
    "aget",
    "aset",
    "adelete",
    "aacquire",
    "await_value",
    "arelease",
    "clear",
    "aclear",
)


class _LazyView:
    """Binds a function to a cache on first use, when its return annotation resolves.

    Annotations may name classes defined after the function (a method returning
    its own class); the serialiser of a store outside the process needs the real
    type, so binding waits for the first call. After that, every method is the
    real view's own.
    """

    local = False
    shared = True

    def __init__(self, cache: SharedCache, name: str, function: Callable[..., Any]) -> None:
        self._cache = cache
        self._name = name
        self._function = function
        self._lock = threading.Lock()
        self._view: CacheView | None = None

    def bind(self) -> CacheView:
        with self._lock:
            if self._view is None:
                try:
                    hints = typing.get_type_hints(self._function)
                except (NameError, TypeError) as error:
                    raise ConfigurationError(
                        f"cannot resolve the return annotation of {self._name}: {error}. "
                        "A cache outside the process decodes values to that type: make the "
                        "annotation resolvable at module level"
                    ) from error
                view = self._cache.bind(self._name, hints.get("return", Any))
                for method in _VIEW_METHODS:
                    if hasattr(view, method):
                        setattr(self, method, getattr(view, method))
                self._view = view
            return self._view

    def __getattr__(self, method: str) -> Any:
        if method not in _VIEW_METHODS:
            raise AttributeError(method)
        return getattr(self.bind(), method)


def _target(function: Callable[..., Any]) -> Callable[..., Any]:
    """What names, annotations and async-ness come from: the function under wrappers.

    A ``functools.partial`` is named after (and annotated as) the function it
    wraps, a bound method after its function, and a callable object after its
    class's ``__call__``.
    """
    while isinstance(function, functools.partial):
        function = function.func
    if inspect.isfunction(function) or inspect.ismethod(function):
        return function
    if inspect.isroutine(function) or isinstance(function, type):
        return function  # builtins and classes: named as they are
    call = getattr(type(function), "__call__", None)  # noqa: B004 - the class's, not the object's
    return call if call is not None else function


def _name_of(function: Callable[..., Any]) -> str:
    target = _target(function)
    module = getattr(target, "__module__", None) or type(function).__module__
    qualname = getattr(target, "__qualname__", None) or type(function).__qualname__
    if qualname.endswith(".__call__") and not inspect.isfunction(function):
        qualname = qualname.removesuffix(".__call__")
    return f"{module}.{qualname}"


def _bound(store: SharedCache, name: str, target: Callable[..., Any]) -> CacheView:
    """The view of a cache outside the process: bound now if the annotation resolves.

    Binding at decoration refuses an annotation no value can be stored under
    (a function, a class, an iterator) where the mistake is made; an annotation
    naming a class defined later is bound at the first call instead.
    """
    lazy = _LazyView(store, name, target)
    try:
        typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - whatever keeps it from resolving now, retry at first call
        return lazy
    lazy.bind()
    return lazy


def _decoratable(function: object) -> bool:
    """Whether ``function`` is something to call (a staticmethod object is not, here)."""
    return callable(function) and not isinstance(function, staticmethod | classmethod)


def _check(  # noqa: PLR0917 - one check over every argument of cached
    ttl: object,
    maxsize: object,
    cache: object,
    key: object,
    ttl_jitter: object,
    negative_ttl: object,
    tags: object,
    listeners: Sequence[object],
) -> list[str]:
    if inspect.isroutine(ttl) or inspect.isclass(ttl):  # @cached without parentheses
        name = getattr(ttl, "__qualname__", repr(ttl))
        bare = (
            f"cached was given the function {name} to decorate: it takes its options "
            "first. Write @cached() (or @cached(ttl=60)), with the parentheses"
        )
        return [bare]
    problems = []
    for label, seconds in (("ttl", ttl), ("negative_ttl", negative_ttl)):
        if seconds is not None and (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not 0 < seconds < math.inf
        ):
            problems.append(
                f"{label} must be a positive number of seconds or None (no expiry), got {seconds!r}"
            )
    if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
        problems.append(f"maxsize must be a positive integer, got {maxsize!r}")
    elif cache is not None and maxsize != 1024:  # noqa: PLR2004 - the documented default
        problems.append(
            "maxsize sizes the memory cache cached makes when no cache is given; "
            "size the cache you pass instead (MemoryCache(maxsize=...))"
        )
    if cache is not None and not callable(getattr(cache, "bind", None)) and not callable(cache):
        problems.append(
            "cache must be a MemoryCache, RedisCache or TieredCache, or a provider (a "
            f"zero-argument callable) of one, got {cache!r}"
        )
    if key is not None and not callable(key):
        problems.append(f"key must be a callable taking the function's arguments, got {key!r}")
    if (
        isinstance(ttl_jitter, bool)
        or not isinstance(ttl_jitter, int | float)
        or not 0 <= ttl_jitter < 1
    ):
        problems.append(f"ttl_jitter must be a fraction of ttl in [0, 1), got {ttl_jitter!r}")
    if not callable(tags) and (
        isinstance(tags, str)
        or not isinstance(tags, Iterable)
        or not all(isinstance(tag, str) for tag in tags)
    ):
        problems.append(
            f"tags must be a sequence of strings or a callable returning one, got {tags!r}"
        )
    problems.extend(
        f"listeners must be CacheListener instances, got {listener!r}"
        for listener in listeners
        if not isinstance(listener, CacheListener)
    )
    return problems


def cached(
    ttl: float | None = None,
    maxsize: int = 1024,
    *,
    cache: SharedCache | Callable[[], Any] | None = None,
    key: Callable[..., Any] | None = None,
    ttl_jitter: float = 0.0,
    cache_none: bool = True,
    negative_ttl: float | None = None,
    tags: Iterable[str] | Callable[..., Iterable[str]] = (),
    single_flight: bool = True,
    listeners: Sequence[CacheListener] = (),
    name: str | None = None,
) -> Callable[[Callable[P, R]], Cached[P, R]]:
    """Cache a function's results, for ``def`` and ``async def``.

    Calls are keyed by their arguments bound to the signature with defaults
    applied: ``f(1)``, ``f(x=1)`` and ``f(1, y=<default>)`` share one entry, while
    ``f(1)`` and ``f("1")`` (or ``f(True)``) do not. A hit takes no lock.
    Concurrent misses on one key run the function once (threads and asyncio
    tasks alike; through Redis, processes too) and every caller gets the same
    value or the same exception. Exceptions are never cached.

    A method (first parameter ``self``) caches per instance: entries are keyed by
    a token of the instance, never by its ``id()`` or ``repr()``, and the cache
    does not keep the instance alive. With a cache shared between processes, a
    method needs ``key=`` (instances have no identity across processes).

    Args:
        ttl: Seconds an entry lives; ``None`` gives the cache's ``default_ttl``
            (``CacheSettings.ttl`` for a cache made from settings), and without
            one keeps entries until evicted or invalidated.
        maxsize: Size of the `MemoryCache` made for this function when ``cache``
            is not given.
        cache: Where entries live: a `MemoryCache` (possibly shared by several
            functions), a `RedisCache` or a `TieredCache`; or a provider of one
            (``container.cache``, any zero-argument callable), called on every
            call, so the cache is resolved at the first call, not at import, and
            a test's override of it applies (each cache it gives gets its own
            entries and stats; ``await``-ed in an ``async def``).
        key: Computes the key from the call's arguments instead of binding them
            (it receives them exactly as the function does).
        ttl_jitter: Up to this fraction of ``ttl`` is added at random to each
            entry, so entries written together do not expire together.
        cache_none: Whether a ``None`` result is cached.
        negative_ttl: Lifetime of a cached ``None`` result, when it should differ
            from ``ttl``.
        tags: Tags stored with every entry, or a callable computing them from the
            call's arguments; `Cached.invalidate_tags` drops them together.
        single_flight: Whether concurrent misses on one key share one run.
        listeners: Told of each hit and miss (`CacheListener`).
        name: The name entries are stored under in a shared cache and reported to
            listeners; ``module.qualname`` by default. Give a stable one when the
            function may move.

    Returns:
        A decorator. The decorated function keeps its signature and gains
        ``invalidate``, ``clear``, ``invalidate_tags``, ``stats`` and ``cache``
        (see `Cached`).

    Raises:
        ConfigurationError: An argument is invalid (checked here, at decoration).
        CacheKeyError: At call time, an argument cannot be part of a key.

    Example:
        ```python
        from buttress.caching import cached

        calls = []

        @cached(ttl=60)
        def area(width: int, height: int = 1) -> int:
            calls.append((width, height))
            return width * height

        assert area(3) == area(width=3) == area(3, height=1) == 3
        assert calls == [(3, 1)]
        area.invalidate(3)
        assert area(3) == 3 and len(calls) == 2
        assert area.stats().hits == 2
        ```
    """
    problems = _check(ttl, maxsize, cache, key, ttl_jitter, negative_ttl, tags, listeners)
    if problems:
        raise ConfigurationError.from_problems("cached got invalid arguments", problems)
    if cache is not None and not callable(getattr(cache, "bind", None)):
        follow = _Follow(
            cast("Callable[[], Any]", cache),
            {
                "ttl": ttl,
                "key": key,
                "ttl_jitter": ttl_jitter,
                "cache_none": cache_none,
                "negative_ttl": negative_ttl,
                "tags": tags,
                "single_flight": single_flight,
                "listeners": listeners,
                "name": name,
            },
        )
        return follow.decorate
    store = cast("SharedCache", cache) if cache is not None else MemoryCache(maxsize)
    tag_of: Callable[..., Iterable[str]] | None = tags if callable(tags) else None
    fixed_tags = () if callable(tags) else tuple(tags)
    hooks = tuple(listeners)

    def decorate(function: Callable[P, R]) -> Cached[P, R]:
        if not _decoratable(function):
            raise ConfigurationError(
                f"cached decorates functions, got {function!r}; with @classmethod or "
                "@staticmethod, put @cached below it"
            )
        target = _target(function)
        if inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target):
            raise ConfigurationError(
                f"cached cannot store what {_name_of(function)} returns: a generator "
                "runs once, so a cached one would be empty on every hit. Return a list "
                "or a tuple instead"
            )
        label = name or _name_of(function)
        identity = _Identity(label)
        params = list(inspect.signature(function).parameters)
        method = key is None and bool(params) and params[0] == "self"
        memory = isinstance(store, MemoryCache)
        if method and not memory:
            raise ConfigurationError(
                f"{label} is a method and its cache is shared between processes, where "
                "an instance has no identity: pass key= to say how calls are keyed, "
                "such as key=lambda self, order_id: order_id"
            )
        view: CacheView = store.bind(label, Any) if memory else _bound(store, label, target)
        binding = None
        if key is None:
            maker = KeyMaker(function, identity, method=method)
            make_key = maker.general
            binding = maker.binding(_prefix(params))
        else:
            custom = key

            def make_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Key:
                value = custom(*args, **kwargs)
                return (identity, exact(value), type(value))

        machinery: _Machinery[R] = _Machinery(
            function=function,
            name=label,
            identity=identity,
            view=view,
            make_key=make_key,
            binding=binding,
            # A cache made from settings has their ttl as its default.
            ttl=ttl if ttl is not None else getattr(store, "default_ttl", None),
            ttl_jitter=ttl_jitter,
            cache_none=cache_none,
            negative_ttl=negative_ttl,
            fixed_tags=fixed_tags,
            tag_of=tag_of,
            single_flight=single_flight,
            listeners=hooks,
            store=store,
        )
        if inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(target):
            wrapper: Any = machinery.async_wrapper()
        else:
            wrapper = machinery.sync_wrapper()
        functools.update_wrapper(wrapper, function)
        wrapper.name = label
        wrapper.cache = store
        wrapper.invalidate = machinery.invalidate
        wrapper.ainvalidate = machinery.ainvalidate
        wrapper.invalidate_strict = machinery.invalidate_strict
        wrapper.ainvalidate_strict = machinery.ainvalidate_strict
        wrapper.clear = machinery.clear
        wrapper.aclear = machinery.aclear
        wrapper.invalidate_tags = store.invalidate_tags
        wrapper.ainvalidate_tags = store.ainvalidate_tags
        wrapper.stats = machinery.stats
        return cast("Cached[P, R]", wrapper)

    return decorate


class _Machinery(Generic[R]):
    """Everything one decorated function needs, and its sync or async wrapper."""

    def __init__(
        self,
        *,
        function: Callable[..., Any],
        name: str,
        identity: _Identity,
        view: CacheView,
        make_key: Callable[[tuple[Any, ...], dict[str, Any]], Key],
        binding: Binding | None,
        ttl: float | None,
        ttl_jitter: float,
        cache_none: bool,
        negative_ttl: float | None,
        fixed_tags: tuple[str, ...],
        tag_of: Callable[..., Iterable[str]] | None,
        single_flight: bool,
        listeners: tuple[CacheListener, ...],
        store: SharedCache,
    ) -> None:
        self.function = function
        self.name = name
        self.identity = identity
        self.view = view
        self.make_key = make_key
        self.binding = binding
        self.ttl = ttl
        self.ttl_jitter = ttl_jitter
        self.cache_none = cache_none
        self.negative_ttl = negative_ttl
        self.fixed_tags = fixed_tags
        self.tag_of = tag_of
        self.single_flight = single_flight
        self.listeners = listeners
        self.store = store
        self.inline_hits: Callable[[], int] = lambda: 0
        """Hits the generated wrapper served from memory itself."""
        self.fetched = 0
        """Hits the cache's view served."""
        self.misses = 0

    # -- what every path shares ---------------------------------------------------

    def key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Key:
        """The canonical key, with a clear error for arguments that cannot be keyed."""
        key: Key | None = None
        try:
            key = self.make_key(args, kwargs)
            hash(key)
        except Exception as error:  # noqa: BLE001 - a __hash__ may raise anything
            raise self.refusal(error, args, kwargs)  # noqa: B904 - chained in refusal
        return key

    def refusal(self, error: Exception, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Exception:
        """The error to raise for a call whose key could not be made or looked up.

        A call that does not fit the signature keeps its ``TypeError``; an error of
        Buttress's own (a `CacheKeyError` from a cache, a `ConfigurationError` from
        binding a view) is raised as it is; anything else that went wrong while
        making, hashing or comparing the key is a `CacheKeyError` naming the
        argument where that can be told.
        """
        if isinstance(error, ButtressError):
            return error
        if isinstance(error, TypeError) and not self.fits(args, kwargs):
            return error  # the TypeError the call itself would raise
        if isinstance(error, RecursionError):
            made = CacheKeyError(
                f"cannot cache the call to {self.name}: an argument is nested too deeply "
                "to be keyed. Pass key= to cached to say how calls are keyed"
            )
        else:
            culprit = unhashable(args, kwargs, self.name)
            made = culprit or CacheKeyError(
                f"cannot cache the call to {self.name}: keying its arguments raised "
                f"{type(error).__name__}: {error}. Pass arguments whose == and hash "
                "work, or pass key= to cached to say how calls are keyed"
            )
        made.__cause__ = error
        return made

    def fits(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Whether a call with these arguments fits the function's signature."""
        try:
            inspect.signature(self.function).bind(*args, **kwargs)
        except TypeError:
            return False
        except ValueError:  # no signature to check against (some builtins)
            return True
        return True

    def lifetime(self, value: Any) -> tuple[bool, float | None]:
        """Whether to store ``value``, and for how long."""
        ttl = self.ttl
        if value is None:
            if not self.cache_none:
                return False, None
            if self.negative_ttl is not None:
                ttl = self.negative_ttl
        if ttl is not None and self.ttl_jitter:
            ttl *= 1.0 + self.ttl_jitter * random.random()  # noqa: S311 - spreading, not secrecy
        return True, ttl

    def tags(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, ...]:
        """The tags of an entry: the fixed ones, or what the tag function says."""
        if self.tag_of is None:
            return self.fixed_tags
        computed = self.tag_of(*args, **kwargs)
        if isinstance(computed, str):
            return (computed,)
        return tuple(computed)

    def notify(self, event: str, key: Key) -> None:
        """Tell each listener of a hit or miss; a failing listener is logged, not raised."""
        for listener in self.listeners:
            try:
                getattr(listener, event)(self.name, key)
            except Exception:
                logger.exception("cache listener %r failed in %s", listener, event)

    def stats(self) -> CacheStats:
        """Hits and misses of this function, size and evictions of its cache."""
        size, evictions = self.store.counts()
        return CacheStats(self.inline_hits() + self.fetched, self.misses, size, evictions)

    def invalidate(self, *args: Any, **kwargs: Any) -> None:
        """Drop the entry these arguments map to."""
        self.view.delete(self.key(args, kwargs))

    async def ainvalidate(self, *args: Any, **kwargs: Any) -> None:
        """`invalidate`, for async callers."""
        await self.view.adelete(self.key(args, kwargs))

    def invalidate_strict(self, *args: Any, **kwargs: Any) -> None:
        """`invalidate`, raising `UnavailableError` when it could not be applied now."""
        self.view.delete(self.key(args, kwargs), strict=True)

    async def ainvalidate_strict(self, *args: Any, **kwargs: Any) -> None:
        """`invalidate_strict`, for async callers."""
        await self.view.adelete(self.key(args, kwargs), strict=True)

    def clear(self) -> None:
        """Drop every entry of this function."""
        if isinstance(self.store, MemoryCache):
            identity = self.identity
            self.store.clear_where(lambda key: key[0] is identity)  # type: ignore[index]
        else:
            self.view.clear()

    async def aclear(self) -> None:
        """`clear`, for async callers."""
        if isinstance(self.store, MemoryCache):
            self.clear()
        else:
            await self.view.aclear()

    # -- def ----------------------------------------------------------------------------

    def load(self, key: Key, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Compute and store the value of a missed key (once per key across callers).

        The value is stored only if nothing invalidated the key since the miss
        began (see `Lease`): a miss never undoes an invalidation made while it ran.
        """
        view = self.view
        tags = self.tags(args, kwargs)
        lease = view.begin(key, tags)
        try:
            rounds = 0
            while lease.value is MISSING and not lease.mine and rounds < _LEASE_ROUNDS:
                value = view.wait(key)  # another process is computing it
                if value is not MISSING:
                    return value
                view.end(key, lease)
                lease = view.begin(key, tags)
                rounds += 1
            if lease.value is not MISSING:  # someone stored it since our lookup
                return lease.value
            value = self.function(*args, **kwargs)
            keep, ttl = self.lifetime(value)
            if keep:
                view.store(key, lease, value, ttl, tags)
            return value
        finally:
            view.end(key, lease)

    def sync_wrapper(self) -> Callable[..., Any]:
        """The wrapper of a ``def`` (see `generate`)."""
        load = self.load
        flights: Flights[Any] | None = Flights() if self.single_flight else None
        notify = self.notify if self.listeners else None
        view = self.view

        def miss(key: Key, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            self.misses += 1
            if notify is not None:
                notify("on_miss", key)
            if flights is None:
                return load(key, args, kwargs)
            return flights.run(key, lambda: load(key, args, kwargs))

        def fetch(key: Key, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            try:
                value = view.get(key)
            except Exception as error:  # noqa: BLE001 - told apart in refusal
                raise self.refusal(error, args, kwargs)  # noqa: B904 - chained in refusal
            if value is not MISSING:
                self.fetched += 1
                if notify is not None:
                    notify("on_hit", key)
                return value
            return miss(key, args, kwargs)

        return self.generate(
            miss if isinstance(self.store, MemoryCache) else fetch, asynchronous=False
        )

    # -- async def ----------------------------------------------------------------------

    async def aload(self, key: Key, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """`load` for an ``async def``: the shared computation of a missed key."""
        view = self.view
        local = view.local
        tags = self.tags(args, kwargs)
        lease = view.begin(key, tags) if local else await view.abegin(key, tags)
        try:
            rounds = 0
            while lease.value is MISSING and not lease.mine and rounds < _LEASE_ROUNDS:
                value = await view.await_value(key)
                if value is not MISSING:
                    return value
                await view.aend(key, lease)
                lease = await view.abegin(key, tags)
                rounds += 1
            if lease.value is not MISSING:
                return lease.value
            value = await self.function(*args, **kwargs)
            keep, ttl = self.lifetime(value)
            if keep:
                if local:
                    view.store(key, lease, value, ttl, tags)
                else:
                    await view.astore(key, lease, value, ttl, tags)
            return value
        finally:
            if local:
                view.end(key, lease)
            else:
                await view.aend(key, lease)

    def async_wrapper(self) -> Callable[..., Coroutine[Any, Any, Any]]:
        """The wrapper of an ``async def`` (see `generate`): a hit from memory never suspends."""
        aload = self.aload
        flights = AsyncFlights() if self.single_flight else None
        notify = self.notify if self.listeners else None
        view = self.view

        async def miss(key: Key, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            self.misses += 1
            if notify is not None:
                notify("on_miss", key)
            if flights is None:
                return await aload(key, args, kwargs)
            return await flights.run(key, lambda: aload(key, args, kwargs))

        async def fetch(key: Key, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            try:
                value = view.peek(key)
                if value is MISSING and not view.local:
                    value = await view.aget(key)
            except Exception as error:  # noqa: BLE001 - told apart in refusal
                raise self.refusal(error, args, kwargs)  # noqa: B904 - chained in refusal
            if value is not MISSING:
                self.fetched += 1
                if notify is not None:
                    notify("on_hit", key)
                return value
            return await miss(key, args, kwargs)

        return self.generate(
            miss if isinstance(self.store, MemoryCache) else fetch, asynchronous=True
        )

    # -- the wrapper ----------------------------------------------------------------------

    def generate(self, slow: Callable[..., Any], *, asynchronous: bool) -> Callable[..., Any]:
        """The wrapper of this function, written out for it and compiled once.

        The wrapper takes the function's own parameters (see `Binding`), so the
        interpreter binds each call, and builds the key from its locals in one
        expression. Where the cache keeps entries in this process (a
        `MemoryCache`, or a cache with a memory tier such as `TieredCache`), the
        hit is served inline: one dict lookup, no lock, no expiry check when no
        entry can expire, one hit in 32 recorded for the policy only where it
        keeps recency or frequency, a listener call only with listeners. Anything else goes to
        ``slow(key, args, kwargs)``: the miss, or the view's own lookup.
        """
        binding = self.binding
        prefix = binding.prefix if binding else "_c_"  # the fallback's parameters are prefixed
        if binding is None:
            binding = Binding(
                prefix=prefix,
                parameters=f"*{prefix}args, **{prefix}kwargs",
                key=f"{prefix}make_key({prefix}args, {prefix}kwargs)",
                args=f"{prefix}args",
                kwargs=f"{prefix}kwargs",
                constants={f"{prefix}make_key": self.make_key},
            )
        names: dict[str, Any] = {
            **binding.constants,
            f"{prefix}monotonic": time.monotonic,
            f"{prefix}forever": FOREVER,
            f"{prefix}notify": self.notify,
            f"{prefix}slow": slow,
            f"{prefix}refusal": self.refusal,
            f"{prefix}Exception": Exception,
        }
        arguments = f"{prefix}key, {binding.args}, {binding.kwargs}"
        refuse = f"""\
        except {prefix}Exception as {prefix}error:
            raise {prefix}refusal({prefix}error, {binding.args}, {binding.kwargs})
"""
        lookup = self.lookup(prefix, names)
        if lookup:
            hit = [f"{prefix}hits += 1"]
            if names[f"{prefix}record"] is not None:
                hit.append(f"if not {prefix}hits & {SAMPLE}: {prefix}record({prefix}slot)")
            if self.listeners:
                hit.append(f"{prefix}notify('on_hit', {prefix}key)")
            lookup = f"""\
            {prefix}slot = {lookup}
            {prefix}entry = {prefix}get({prefix}slot)
        except {prefix}Exception as {prefix}error:
            raise {prefix}refusal({prefix}error, {binding.args}, {binding.kwargs})
        if {prefix}entry is not None:
            {prefix}value, {prefix}expires = {prefix}entry
            if {self.fresh(prefix)}:
{"".join(f"                {line}{chr(10)}" for line in hit)}\
                return {prefix}value
"""
        source = f"""\
def {prefix}factory({", ".join(names)}):
    {prefix}hits = 0
    {"async " if asynchronous else ""}def {prefix}wrapper({binding.parameters}):
        nonlocal {prefix}hits
        try:
            {prefix}key = {binding.key}
{lookup or refuse}\
        return {"await " if asynchronous else ""}{prefix}slow({arguments})
    def {prefix}count():
        return {prefix}hits
    return {prefix}wrapper, {prefix}count
"""
        namespace: dict[str, Any] = {}
        filename = f"<cached {self.name} {next(_generated)}>"
        exec(  # noqa: S102 - parameter names come from the signature, checked by Binding
            compile(source, filename, "exec"), {}, namespace
        )
        # Tracebacks through the wrapper show its source, as they would for written code.
        linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
        wrapper, self.inline_hits = namespace[f"{prefix}factory"](**names)
        function = _target(self.function)
        wrapper.__code__ = wrapper.__code__.replace(
            co_name=getattr(function, "__name__", "wrapper"),
            co_qualname=getattr(function, "__qualname__", "wrapper"),
        )
        return cast("Callable[..., Any]", wrapper)

    def lookup(self, prefix: str, names: dict[str, Any]) -> str:
        """The expression of the memory slot a hit is served from ("" if none).

        Adds the names it uses (``get``, ``record``) to ``names``.
        """
        store = self.store
        if isinstance(store, MemoryCache):
            names[f"{prefix}get"] = store.entries.get
            names[f"{prefix}record"] = store.record if store.samples else None
            return f"{prefix}key"
        tier: LocalTier | None = getattr(store, "local_tier", lambda _: None)(self.name)
        if tier is None:
            return ""
        names[f"{prefix}get"] = tier.get
        names[f"{prefix}record"] = tier.record
        names[f"{prefix}texts_get"] = tier.texts_get
        names[f"{prefix}text_of"] = tier.text_of
        return f"({prefix}texts_get({prefix}key) or {prefix}text_of({prefix}key),)"

    def fresh(self, prefix: str) -> str:
        """The condition an entry found in memory is fresh on, for this function's settings."""
        if not isinstance(self.store, MemoryCache):
            return f"{prefix}expires > {prefix}monotonic()"  # a memory tier always expires
        if self.ttl is None and self.negative_ttl is None:
            return "True"  # every entry of this function lives until evicted
        if self.ttl is None:  # None values may get negative_ttl, the rest live on
            return f"{prefix}expires is {prefix}forever or {prefix}expires > {prefix}monotonic()"
        return f"{prefix}expires > {prefix}monotonic()"


class _Follow:
    """Functions cached in whatever cache ``source`` gives now (a provider, overridable).

    Each cache the source gives gets its own decorated function (made on first
    use, forgotten with the cache); a call costs one call of the source more than
    with a fixed cache. Mistakes a fixed cache reports at decoration (a method
    with a cache shared between processes) are reported at the first call.
    """

    def __init__(self, source: Callable[[], Any], options: dict[str, Any]) -> None:
        self.source = source
        self.options = options
        self.lock = threading.Lock()

    def decorate(self, function: Callable[P, R]) -> Cached[P, R]:
        inners: weakref.WeakKeyDictionary[Any, Cached[P, R]] = weakref.WeakKeyDictionary()
        label = _name_of(function)

        def inner(store: Any) -> Cached[P, R]:
            try:
                found = inners.get(store)
            except TypeError:  # not weakly referable: not one of the caches
                found = None
            if found is None:
                if not callable(getattr(store, "bind", None)):
                    raise ConfigurationError(
                        f"the cache provider of {label} gave {store!r}, not a "
                        "MemoryCache, RedisCache or TieredCache"
                    )
                with self.lock:
                    found = inners.get(store)
                    if found is None:
                        found = cached(cache=store, **self.options)(function)
                        inners[store] = found
            return found

        def now() -> Cached[P, R]:
            return inner(self.resolve(label))

        async def anow() -> Cached[P, R]:
            store = self.source()
            return inner(await store if inspect.isawaitable(store) else store)

        return self.wrap(function, now, anow)

    def resolve(self, label: str) -> Any:
        store = self.source()
        if inspect.isawaitable(store):
            close = getattr(store, "close", None)
            if callable(close):
                close()  # a coroutine never awaited would warn
            raise ConfigurationError(
                f"the cache provider of {label} is asynchronous: call the function (or "
                "its a-prefixed controls, such as ainvalidate) from async code, or give a "
                "synchronous provider"
            )
        return store

    def wrap(
        self,
        function: Callable[P, R],
        now: Callable[[], Cached[P, R]],
        anow: Callable[[], Awaitable[Cached[P, R]]],
    ) -> Cached[P, R]:
        wrapper: Any
        if inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(_target(function)):

            async def call_async(*args: Any, **kwargs: Any) -> Any:
                return await (await anow())(*args, **kwargs)  # type: ignore[misc]

            wrapper = call_async
        else:

            def call_sync(*args: Any, **kwargs: Any) -> Any:
                return now()(*args, **kwargs)

            wrapper = call_sync

        async def ainvalidate(*args: Any, **kwargs: Any) -> None:
            await (await anow()).ainvalidate(*args, **kwargs)

        async def ainvalidate_strict(*args: Any, **kwargs: Any) -> None:
            await (await anow()).ainvalidate_strict(*args, **kwargs)

        async def aclear() -> None:
            await (await anow()).aclear()

        async def ainvalidate_tags(*tags: str) -> None:
            await (await anow()).ainvalidate_tags(*tags)

        functools.update_wrapper(wrapper, function)
        wrapper.name = self.options["name"] or _name_of(function)
        wrapper.cache = self.source
        wrapper.invalidate = lambda *args, **kwargs: now().invalidate(*args, **kwargs)
        wrapper.ainvalidate = ainvalidate
        wrapper.invalidate_strict = lambda *a, **kw: now().invalidate_strict(*a, **kw)
        wrapper.ainvalidate_strict = ainvalidate_strict
        wrapper.clear = lambda: now().clear()
        wrapper.aclear = aclear
        wrapper.invalidate_tags = lambda *tags: now().invalidate_tags(*tags)
        wrapper.ainvalidate_tags = ainvalidate_tags
        wrapper.stats = lambda: now().stats()
        return cast("Cached[P, R]", wrapper)
