"""Compose the resilience decorators in the one order that works."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeAlias, TypeVar

from buttress.errors import ConfigurationError
from buttress.resilience._base import (
    check_callable,
    check_seconds,
    described,
    is_async,
    is_number,
    name_of,
    part_of,
)
from buttress.resilience._breaker import CircuitBreaker
from buttress.resilience._bulkhead import bulkhead as make_bulkhead
from buttress.resilience._fused import Core, fused
from buttress.resilience._retry import retry as make_retry
from buttress.resilience._timeout import timeout as make_timeout

__all__ = ["Policy"]

P = ParamSpec("P")
T = TypeVar("T")

Decorator: TypeAlias = Callable[[Callable[..., Any]], Callable[..., Any]]


class Policy:
    """Retry, circuit breaker, timeouts, bulkhead and fallback, composed in the right order.

    Stacking resilience decorators by hand is easy to get wrong: a timeout
    outside the retry cuts the whole retrying short instead of each attempt; a
    breaker outside the retry counts one failure for three attempts; a
    bulkhead inside the retry holds its slot through every backoff. A policy
    takes the parts by name and always applies them in this order, from the
    caller in (the order of Polly's standard pipeline):

    1. ``fallback`` — the last answer, once everything else has given up;
    2. ``bulkhead`` — limits the calls in progress, waits included;
    3. ``deadline`` — bounds the whole call, all attempts and waits: the
       retry takes no wait that would cross it, and an ``async def`` is
       cancelled when it passes (a ``def`` is reported afterwards, as with
       `timeout`);
    4. ``retry`` — attempts again on the errors it is given; an open circuit
       is never retried;
    5. ``breaker`` — counts each attempt, and refuses at once when open;
    6. ``timeout`` — bounds each attempt, so a hung attempt counts as a
       failure for the breaker and can be retried;
    7. the function.

    Every part is optional and is spelled as its own decorator
    (``retry=retry(on=...)``, ``timeout=timeout(0.5)``,
    ``bulkhead=bulkhead(10)``, ``fallback=fallback(...)``), or, for the
    simplest ones, as a number (``timeout=0.5`` seconds, ``bulkhead=10``
    calls). One policy may decorate many functions: they share its breaker and
    its bulkhead.

    Args:
        retry: What `retry` returns.
        breaker: A `CircuitBreaker`.
        timeout: Seconds per attempt, or what `timeout` returns.
        deadline: Seconds for the whole call, attempts and waits included.
        bulkhead: Calls allowed at once, or what `bulkhead` returns.
        fallback: What `fallback` returns.

    Raises:
        ConfigurationError: A part is not what its name says (a `timeout`
            given as ``retry=``, say), or a number is out of range.

    Example:
        ```python
        import asyncio

        from buttress.resilience import CircuitBreaker, Policy, resilience_testing, retry

        replies = iter([ConnectionError("reset"), {"sku": "A-1", "stock": 4}])

        inventory = Policy(
            retry=retry(on=ConnectionError, attempts=3),
            breaker=CircuitBreaker("inventory-policy-example", fail_max=5),
            timeout=0.5,
            deadline=2.0,
        )

        @inventory
        async def stock(sku: str) -> dict[str, object]:
            reply = next(replies)
            if isinstance(reply, Exception):
                raise reply
            return reply

        with resilience_testing():
            assert asyncio.run(stock("A-1")) == {"sku": "A-1", "stock": 4}
        ```
    """

    def __init__(
        self,
        *,
        retry: Decorator | None = None,
        breaker: CircuitBreaker | None = None,
        timeout: float | Decorator | None = None,
        deadline: float | None = None,
        bulkhead: int | Decorator | None = None,
        fallback: Decorator | None = None,
    ) -> None:
        check_seconds(deadline, "Policy(deadline=...)", allow_zero=False, optional=True)
        self.deadline = deadline
        self.retry = _retry_within(_part(retry, "retry"), deadline)
        if breaker is not None and not isinstance(breaker, CircuitBreaker):
            raise ConfigurationError(
                f"Policy(breaker=...) takes a CircuitBreaker, got {breaker!r}; "
                'write breaker=CircuitBreaker("name", ...)'
            )
        self.breaker = breaker
        self.timeout = (
            make_timeout(timeout)
            if is_number(timeout)
            else _part(timeout, "timeout", "a number of seconds")
        )
        self.bulkhead = (
            make_bulkhead(bulkhead)
            if isinstance(bulkhead, int) and not isinstance(bulkhead, bool)
            else _part(bulkhead, "bulkhead", "a number of calls")
        )
        self.fallback = _part(fallback, "fallback")

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Decorate ``fn`` (a ``def`` or ``async def``) with every part, in order.

        Returns:
            The wrapper, with ``fn``'s signature for type checkers.

        Raises:
            ConfigurationError: ``fn`` cannot be decorated.
        """
        check_callable(fn, "Policy")
        wrapped: Callable[..., Any] = fn
        if self.timeout is not None:
            wrapped = self.timeout(wrapped)
        if self.breaker is not None:
            wrapped = self.breaker(wrapped)
        attempt = wrapped  # one attempt, as the retry makes it
        if self.retry is not None:
            wrapped = self.retry(wrapped)
        if attempt is not fn:
            # A time limit or a breaker, maybe a retry: one wrapper makes the common call.
            core = Core(
                fn,
                layered=wrapped,
                attempt=attempt,
                retrier=part_of(self.retry, fn) if self.retry is not None else None,
                breaker=self.breaker,
                limit=part_of(self.timeout, fn) if self.timeout is not None else None,
            )
            wrapped = fused(core, is_async=is_async(fn))
        if self.deadline is not None:
            wrapped = make_timeout(self.deadline, name=f"{name_of(fn)} (deadline)")(wrapped)
        if self.bulkhead is not None:
            wrapped = self.bulkhead(wrapped)
        if self.fallback is not None:
            wrapped = self.fallback(wrapped)
        return wrapped

    def __repr__(self) -> str:
        parts = [
            f"{label}={value!r}"
            for label, value in (
                ("retry", self.retry),
                ("breaker", self.breaker),
                ("timeout", self.timeout),
                ("deadline", self.deadline),
                ("bulkhead", self.bulkhead),
                ("fallback", self.fallback),
            )
            if value is not None
        ]
        return f"Policy({', '.join(parts)})"


def _part(value: object, kind: str, alternative: str | None = None) -> Decorator | None:
    """Check that ``value`` is what the ``kind`` factory returns (or None)."""
    if value is None:
        return None
    found = described(value)
    if found is not None and found[0] == kind:
        return value  # type: ignore[return-value]  # a labelled decorator
    what = f"a {found[0]}(...) decorator" if found else repr(value)
    also = f" or {alternative}" if alternative else ""
    raise ConfigurationError(
        f"Policy({kind}=...) takes what {kind}(...) returns{also}, got {what}; "
        f"write {kind}={kind}(...)"
    )


def _retry_within(retry: Decorator | None, deadline: float | None) -> Decorator | None:
    """The same retry, with no wait allowed past the policy's deadline."""
    if retry is None or deadline is None:
        return retry
    _, settings = described(retry) or ("retry", {})
    own = settings.get("deadline")
    return make_retry(**{**settings, "deadline": deadline if own is None else min(own, deadline)})
