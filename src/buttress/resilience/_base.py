"""What every resilience decorator shares: checks at decoration time, names, listeners."""

from __future__ import annotations

import functools
import inspect
import logging
import math
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar, cast

from buttress.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from buttress.resilience._breaker import CircuitState

__all__ = ["ResilienceListener"]

logger = logging.getLogger("buttress.resilience")

D = TypeVar("D")


class ResilienceListener:
    """Hooks called when a resilience decorator acts; override the ones you need.

    Attach listeners with ``listeners=[...]`` on `retry`, `CircuitBreaker`,
    `bulkhead` and `timeout`, for metrics or tracing. Each hook runs in the caller's thread
    (or task), after the decision and before any wait; an exception raised by a
    hook is logged and swallowed, so observing never changes what the protected
    call does.

    Example:
        ```python
        from buttress.resilience import ResilienceListener, resilience_testing, retry

        class CountRetries(ResilienceListener):
            def __init__(self) -> None:
                self.retries = 0

            def on_retry(self, name, attempt, error, wait):
                self.retries += 1

        counter = CountRetries()
        calls = iter([ConnectionError("reset"), "ok"])

        @retry(on=ConnectionError, listeners=[counter])
        def fetch() -> str:
            outcome = next(calls)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

        with resilience_testing(no_wait=True):
            assert fetch() == "ok"
        assert counter.retries == 1
        ```
    """

    def on_retry(self, name: str, attempt: int, error: BaseException, wait: float) -> None:
        """Attempt ``attempt`` of ``name`` failed with ``error``; retrying after ``wait`` s."""

    def on_give_up(self, name: str, attempts: int, error: BaseException, reason: str) -> None:
        """``name`` failed for good after ``attempts`` attempts.

        ``reason`` is ``"attempts"``, ``"deadline"`` or ``"budget"``: what stopped
        the retrying.
        """

    def on_bulkhead_rejected(self, name: str, max_concurrent: int, max_waiting: int) -> None:
        """A call to ``name`` was refused because its bulkhead was full."""

    def on_timeout(self, name: str, seconds: float, elapsed: float) -> None:
        """A call to ``name`` took ``elapsed`` s, more than its limit of ``seconds`` s."""

    def on_state_change(self, name: str, old: CircuitState, new: CircuitState) -> None:
        """Circuit breaker ``name`` went from ``old`` to ``new``.

        Also called when a breaker with a storage sees a change made by another
        process.
        """

    def on_circuit_rejected(self, name: str, remaining: float) -> None:
        """Circuit breaker ``name`` refused a call; a trial is allowed in ``remaining`` s."""


_KIND = "__buttress_resilience__"
_PART = "__buttress_resilience_part__"


def describe(decorator: D, kind: str, **settings: Any) -> D:
    """Label a decorator made by a resilience factory, so `Policy` can tell what it is."""
    setattr(decorator, _KIND, (kind, settings))
    return decorator


def described(decorator: object) -> tuple[str, dict[str, Any]] | None:
    """What `describe` recorded on ``decorator``: its kind and the factory's arguments."""
    found = getattr(decorator, _KIND, None)
    return cast("tuple[str, dict[str, Any]] | None", found)


def carries(error: BaseException, types: tuple[type[BaseException], ...]) -> bool:
    """Whether ``error`` is one of ``types`` or an exception group holding one of them."""
    if isinstance(error, types):
        return True
    return isinstance(error, BaseExceptionGroup) and error.subgroup(types) is not None


def with_part(decorator: D, build: Callable[[Callable[..., Any]], Any]) -> D:
    """Record how ``decorator`` builds its per-function state, so `Policy` can fuse layers."""
    setattr(decorator, _PART, build)
    return decorator


def part_of(decorator: object, fn: Callable[..., Any]) -> Any:
    """The per-function state ``decorator`` would build for ``fn`` (see `with_part`)."""
    return getattr(decorator, _PART)(fn)


def notify(listeners: Sequence[ResilienceListener], hook: str, *args: Any) -> None:
    """Call ``hook`` on every listener, logging (never raising) what a listener raises."""
    for listener in listeners:
        try:
            getattr(listener, hook)(*args)
        except Exception:
            logger.exception("resilience listener %r failed in %s", listener, hook)


def check_listeners(listeners: Sequence[ResilienceListener], where: str) -> tuple[Any, ...]:
    """Validate ``listeners`` at decoration time and freeze them into a tuple."""
    frozen = tuple(listeners)
    for listener in frozen:
        if not isinstance(listener, ResilienceListener):
            raise ConfigurationError(
                f"{where}: listeners must be ResilienceListener instances, got {listener!r}; "
                "subclass buttress.resilience.ResilienceListener and override its hooks"
            )
    return frozen


def check_callable(fn: object, decorator: str) -> None:
    """Refuse, at decoration time, what cannot be called or cannot be guarded per call."""
    if isinstance(fn, staticmethod | classmethod):
        raise ConfigurationError(
            f"@{decorator} must be applied below @{type(fn).__name__}, not above it: "
            f"write @{type(fn).__name__} first, then @{decorator}(...), then the def"
        )
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise ConfigurationError(
            f"@{decorator} cannot guard a generator: calling it only creates the generator, "
            "and the work (and its failures) happen later, while it is iterated; guard a "
            "function that consumes it instead"
        )
    if not callable(fn):
        raise ConfigurationError(
            f"@{decorator} decorates functions and methods, got {fn!r}; "
            f"write @{decorator}(...) above a def or async def"
        )


def is_async(fn: Callable[..., Any]) -> bool:
    """Tell whether calling ``fn`` returns a coroutine (``async def``)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


def name_of(fn: Callable[..., Any]) -> str:
    """A readable name for ``fn``: its qualified name, or its repr."""
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def check_count(value: object, what: str, least: int) -> int:
    """Refuse anything but a whole number of at least ``least``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigurationError(
            f"{what} must be a whole number of at least {least}, got {value!r}"
        )
    return value


def is_exception_types(value: object) -> bool:
    """Tell whether ``value`` is an exception class or a non-empty tuple of them."""
    if isinstance(value, tuple):
        return bool(value) and all(is_exception_types(item) for item in value)
    return isinstance(value, type) and issubclass(value, BaseException)


def is_number(value: object) -> TypeGuard[float]:
    """Tell whether ``value`` is a real number: not a bool, not NaN."""
    return isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)


def check_exception_filter(value: object, option: str, purpose: str) -> object:
    """Accept an exception class, a non-empty tuple of them, or a predicate on exceptions.

    ``option`` names the argument in the message (``"retry(on=...)"``), and
    ``purpose`` says what the predicate's True means (``"retry"``).
    """
    if is_exception_types(value) or (callable(value) and not isinstance(value, type)):
        return value
    raise ConfigurationError(
        f"{option} takes an exception class, a non-empty tuple of them, or a predicate "
        f"taking the exception and returning True to {purpose}; got {value!r}"
    )


def check_seconds(value: object, what: str, *, allow_zero: bool, optional: bool) -> None:
    """Refuse a negative (or zero, or missing) number of seconds with a clear message."""
    if value is None:
        if optional:
            return
        raise ConfigurationError(f"{what} is required: give a number of seconds")
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ConfigurationError(f"{what} must be a number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "more than zero"
        raise ConfigurationError(f"{what} must be {bound} seconds, got {value!r}")


def refuse_bare(value: object, spelling: str) -> None:
    """Refuse a decorator used without its parentheses (``@timeout`` for ``@timeout(2.0)``).

    Raises:
        ConfigurationError: ``value`` is a function or a class: the decorated one.
    """
    if inspect.isroutine(value) or inspect.isclass(value):
        name = getattr(value, "__qualname__", repr(value))
        raise ConfigurationError(
            f"{spelling.partition('(')[0]} was given the function {name} to decorate: it "
            f"takes its options first. Write @{spelling}, with the parentheses"
        )
