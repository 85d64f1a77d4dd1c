"""Serve a substitute result when a call fails."""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from buttress.errors import ConfigurationError
from buttress.resilience._base import (
    carries,
    check_callable,
    describe,
    is_async,
    is_exception_types,
    logger,
    name_of,
)

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["fallback"]

P = ParamSpec("P")
T = TypeVar("T")

# A fallback never swallows these: they stop the program or the task, not the call.
_NEVER_CAUGHT = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)


def fallback(
    value: Any,
    *,
    on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Return a substitute when the function raises one of the given errors.

    The substitute is ``value`` itself or, if ``value`` is callable, what it
    returns when called with the exception (awaited, for an ``async def``,
    when it returns an awaitable). A fallback is the last line of defence, so
    put it outermost: around a `retry` or a circuit breaker, it answers once
    they have given up or refused. The error is logged at warning level.
    Cancellation, ``KeyboardInterrupt``, ``SystemExit`` and ``GeneratorExit``
    are never caught, nor is an exception group that holds one of them (as a
    task group raises).

    Args:
        value: The substitute result, or a callable taking the exception and
            returning one. To return a callable itself, wrap it:
            ``fallback(lambda error: handler)``.
        on: The exception class (or tuple of classes) to catch;
            ``Exception`` by default.

    Returns:
        A decorator that keeps the function's signature for type checkers.

    Raises:
        ConfigurationError: At decoration time, for an ``on`` that is not an
            exception class or tuple of them, or something that is not callable.

    Example:
        ```python
        from buttress.resilience import fallback

        @fallback([], on=ConnectionError)
        def recommendations(user_id: int) -> list[str]:
            raise ConnectionError("recommender is down")

        assert recommendations(1) == []
        ```
    """
    if not is_exception_types(on):
        raise ConfigurationError(
            f"fallback(on=...) takes an exception class or a non-empty tuple of them, got {on!r}"
        )
    compute = callable(value)

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        check_callable(fn, "fallback")
        label = name_of(fn)

        def substitute(error: BaseException) -> Any:
            logger.warning("%s failed, serving its fallback: %r", label, error)
            return value(error) if compute else value

        if is_async(fn):
            afn = cast("Callable[P, Any]", fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                try:
                    return await afn(*args, **kwargs)
                except on as error:
                    if carries(error, _NEVER_CAUGHT):
                        raise
                    result = substitute(error)
                    return await result if inspect.isawaitable(result) else result

            return cast("Callable[P, T]", async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return fn(*args, **kwargs)
            except on as error:
                if carries(error, _NEVER_CAUGHT):
                    raise
                return cast("T", substitute(error))

        return wrapper

    return describe(decorate, "fallback", on=on)
