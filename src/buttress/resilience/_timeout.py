"""A time limit on each call: enforced for ``async def``, reported for ``def``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from buttress.resilience._base import (
    check_callable,
    check_listeners,
    check_seconds,
    describe,
    is_async,
    name_of,
    refuse_bare,
    with_part,
)
from buttress.resilience._fused import Core, fused
from buttress.resilience._timer import Limit

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from buttress.resilience._base import ResilienceListener

__all__ = ["timeout"]

P = ParamSpec("P")
T = TypeVar("T")


def timeout(
    seconds: float,
    *,
    listeners: Sequence[ResilienceListener] = (),
    name: str | None = None,
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Limit how long each call of a function may take.

    On an ``async def`` the limit is enforced: when it passes, the call is
    cancelled (with ``asyncio.timeout``) and `DeadlineExceededError` — a
    `TimeoutError` — is raised.

    On a plain ``def`` the limit **cannot be enforced**: Python offers no safe
    way to stop a running thread, so the call runs to its end however long it
    takes. What this decorator does is tell the truth afterwards: a call that
    returned after the limit raises `DeadlineExceededError` (its result is
    discarded), so a retry or a circuit breaker around it counts it as the
    failure it was. A call that raised keeps its own exception. To really bound
    blocking I/O, set the client's own timeouts (socket, HTTP client, database
    ``statement_timeout``), or make the call ``async``.

    Args:
        seconds: The limit, more than zero.
        listeners: `ResilienceListener`s told of each call over the limit.
        name: Name in errors, logs and listener calls; the function's
            qualified name by default.

    Returns:
        A decorator that keeps the function's signature for type checkers.

    Raises:
        ConfigurationError: At decoration time, for a limit that is not a
            positive number, or something that is not callable.

    Example:
        ```python
        import asyncio

        from buttress.errors import DeadlineExceededError
        from buttress.resilience import timeout

        @timeout(0.05)
        async def slow_lookup() -> str:
            await asyncio.sleep(10)
            return "never"

        try:
            asyncio.run(slow_lookup())
        except DeadlineExceededError as error:
            assert isinstance(error, TimeoutError)
        ```
    """
    refuse_bare(seconds, "timeout(2.0)")
    check_seconds(seconds, "timeout(seconds=...)", allow_zero=False, optional=False)
    checked_listeners = check_listeners(listeners, "timeout")
    limit = float(seconds)

    def build(fn: Callable[..., Any]) -> Limit:
        return Limit(name or name_of(fn), limit, checked_listeners)

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        check_callable(fn, "timeout")
        return cast("Callable[P, T]", fused(Core(fn, limit=build(fn)), is_async=is_async(fn)))

    with_part(decorate, build)
    return describe(decorate, "timeout", seconds=seconds, listeners=listeners, name=name)
