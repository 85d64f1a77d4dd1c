"""Every error Buttress raises, as one tree.

Each error derives from `ButtressError` and, where one fits, from the standard
library exception it means, so code that already catches `LookupError` or
`ValueError` keeps working:

```text
Exception
└── ButtressError
    ├── NotFoundError           (LookupError)  no entity has that key
    ├── ConflictError                          a write clashes with stored data (duplicate key)
    ├── ConcurrencyError                       a write was based on a stale version
    ├── UnavailableError                       a call was refused to protect a dependency
    │   ├── CircuitOpenError                   ... because its circuit breaker is open
    │   └── BulkheadFullError                  ... because its concurrency limit is reached
    ├── DeadlineExceededError   (TimeoutError) a call took longer than its time limit
    ├── RetryError                             retrying stopped with no exception to re-raise
    ├── DeliveryError                          a durable handler failed on a delivered message
    ├── DecodeError             (ValueError)   stored or received data cannot be decoded
    ├── CacheKeyError           (TypeError)    an argument cannot be part of a cache key
    ├── QueryError              (ValueError)   a query names an unknown field or a bad limit
    ├── ConfigurationError      (ValueError)   a setting, argument or wiring is invalid
    └── MissingDependencyError  (ImportError)  an optional extra is not installed
```

Every message says what happened and what to do about it. Errors translated from
a driver (a database or Redis client) chain the original as ``__cause__``.
Structured details are attributes (``NotFoundError.entity``,
``CircuitOpenError.remaining`` ...), so handlers never parse messages.
"""

from __future__ import annotations

from typing import Any, Self

__all__ = [
    "BulkheadFullError",
    "ButtressError",
    "CacheKeyError",
    "CircuitOpenError",
    "ConcurrencyError",
    "ConfigurationError",
    "ConflictError",
    "DeadlineExceededError",
    "DecodeError",
    "DeliveryError",
    "MissingDependencyError",
    "NotFoundError",
    "QueryError",
    "RetryError",
    "UnavailableError",
]


def _restore(cls: type[ButtressError], message: str) -> ButtressError:
    """Rebuild an error without calling its ``__init__`` (used by pickle)."""
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.message = message
    return error


class ButtressError(Exception):
    """Root of every error raised by Buttress.

    Catch it to handle anything Buttress raises; catch a subclass to handle one
    situation. ``str(error)`` is the whole message, ``error.message`` the same
    text as an attribute.

    Args:
        message: What happened and what to do about it.
    """

    message: str

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only details would be lost by Exception's default pickling;
        # restore the message through a plain constructor and the details as state.
        return (_restore, (type(self), self.message), self.__dict__.copy())


class _EntityError(ButtressError):
    """An error about one stored entity, named by its type and key."""

    entity: str | None
    key: object
    detail: str | None
    _what: str = ""  # "{what} with key {key!r} " is followed by this

    def __init__(
        self,
        message: str | None = None,
        *,
        entity: str | None = None,
        key: object = None,
        detail: str | None = None,
    ) -> None:
        self.entity = entity
        self.key = key
        self.detail = detail
        if message is None:
            message = f"{entity or 'entity'} with key {key!r} {self._what}"
        super().__init__(message)


class NotFoundError(_EntityError, LookupError):
    """No entity exists with the requested key.

    Args:
        message: Overrides the generated message.
        entity: The name of the entity type looked up, such as ``"Order"``.
        key: The key (primary key or criteria) that matched nothing.
        detail: Text safe to show a client (an HTTP error body uses it);
            the message is for developers and logs.
    """

    _what = "was not found; use get_or_none() when a missing entity is expected, or check the key"


class ConflictError(_EntityError):
    """A write clashes with data already stored: a duplicate key or a violated constraint.

    Args:
        message: Overrides the generated message.
        entity: The name of the entity type written, if known.
        key: The key of the entity written, if known.
        detail: Text safe to show a client (an HTTP error body uses it);
            the message is for developers and logs.
    """

    _what = (
        "conflicts with stored data (duplicate key or violated constraint); load the stored "
        "entity and change it instead, or choose another key"
    )


class ConcurrencyError(_EntityError):
    """A write was based on a stale version: someone else changed the entity first.

    Args:
        message: Overrides the generated message.
        entity: The name of the entity type written, if known.
        key: The key of the entity written, if known.
        detail: Text safe to show a client (an HTTP error body uses it);
            the message is for developers and logs.
    """

    _what = (
        "was changed by someone else since it was loaded; load it again, reapply the change "
        "and commit, or report the conflict to the user"
    )


class UnavailableError(ButtressError):
    """A call was refused without being made, to protect a struggling dependency.

    Args:
        message: What was refused and what to do.
        retry_after: Seconds after which trying again may succeed, if known.
    """

    retry_after: float | None

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class CircuitOpenError(UnavailableError):
    """The circuit breaker guarding a dependency is open, so the call was not made.

    Args:
        name: The breaker's name.
        remaining: Seconds until the breaker lets a trial call through.
        message: Overrides the generated message.
    """

    name: str
    remaining: float

    def __init__(self, name: str, remaining: float, message: str | None = None) -> None:
        self.name = name
        self.remaining = max(0.0, remaining)
        if message is None:
            message = (
                f"circuit {name!r} is open after repeated failures; the call was not made. "
                f"A trial call is allowed in {self.remaining:.3f}s: serve a fallback until then"
            )
        super().__init__(message, retry_after=self.remaining)


class BulkheadFullError(UnavailableError):
    """A bulkhead is at its concurrency limit and its waiting room is full.

    Args:
        name: The bulkhead's name (usually the protected function's).
        max_concurrent: How many calls may run at once.
        max_waiting: How many calls may wait for a slot.
        message: Overrides the generated message.
    """

    name: str
    max_concurrent: int
    max_waiting: int

    def __init__(
        self, name: str, max_concurrent: int, max_waiting: int = 0, message: str | None = None
    ) -> None:
        self.name = name
        self.max_concurrent = max_concurrent
        self.max_waiting = max_waiting
        if message is None:
            message = (
                f"bulkhead {name!r} is full ({max_concurrent} running, {max_waiting} waiting); "
                "the call was not made: shed the load, serve a fallback, or raise the limits"
            )
        super().__init__(message)


class DeadlineExceededError(ButtressError, TimeoutError):
    """A call took longer than its time limit.

    For ``async def`` the call was cancelled when the limit passed. A plain
    ``def`` cannot be interrupted from outside: it ran to the end, and this
    error reports the overrun after the fact (its result is discarded).

    Args:
        name: The limited function's name.
        seconds: The limit, in seconds.
        elapsed: How long the call ran, in seconds, when known.
        message: Overrides the generated message.
    """

    name: str
    seconds: float
    elapsed: float | None

    def __init__(
        self, name: str, seconds: float, elapsed: float | None = None, message: str | None = None
    ) -> None:
        self.name = name
        self.seconds = seconds
        self.elapsed = elapsed
        if message is None:
            took = f" (it ran {elapsed:.3f}s)" if elapsed is not None else ""
            message = (
                f"{name} exceeded its time limit of {seconds:.3f}s{took}; treat it as failed: "
                "retry, serve a fallback, or raise the limit if it is too tight"
            )
        super().__init__(message)


class RetryError(ButtressError):
    """Retrying stopped without an exception of the call's own to re-raise.

    Buttress re-raises the last exception of the call itself when attempts run
    out; this error is only for stops with nothing to re-raise, such as a
    deadline that passed before the first attempt.

    Args:
        message: Why retrying stopped and what to do.
        attempts: How many attempts were made.
    """

    attempts: int

    def __init__(self, message: str, *, attempts: int = 0) -> None:
        self.attempts = attempts
        super().__init__(message)


class DeliveryError(ButtressError):
    """A durable event handler failed on a delivered message; the message is tried again.

    Raised by ``MessageBus.deliver`` after every durable handler of the event
    ran, so a transport reports the message failed and the relay retries it
    (handlers that succeeded run again: make them idempotent with
    ``buttress.messaging.Inbox``).

    Args:
        message: Which handlers failed, on which event.
        failures: Each failed handler's `HandlerFailure` (handler, event, error).
    """

    failures: tuple[Any, ...]

    def __init__(self, message: str, *, failures: tuple[Any, ...] = ()) -> None:
        self.failures = failures
        super().__init__(message)


class DecodeError(ButtressError, ValueError):
    """Data read back (a serialised event, a page cursor, a cached value) cannot be decoded.

    The data is corrupt, was tampered with, or was written by an incompatible
    version. The original parsing error, if any, is chained as ``__cause__``.

    Args:
        message: What could not be decoded and what to do.
    """


class CacheKeyError(ButtressError, TypeError):
    """An argument of a cached call cannot be part of its cache key.

    Raised for an unhashable argument (a list, a dict) and, with a cache shared
    between processes, for an argument with no stable text form. Pass ``key=`` to
    `buttress.caching.cached` to say how such calls are keyed.

    Args:
        message: Which argument could not be keyed and what to do.
    """


class QueryError(ButtressError, ValueError):
    """A query cannot be run as asked; nothing was read or written.

    Raised for a filter or sort field the model does not have (the message
    lists the valid ones), a comparison no backend defines the same way (with
    ``None`` or NaN), and a negative limit, offset or page size.

    Args:
        message: What was wrong with the query and how to ask instead.
    """


class ConfigurationError(ButtressError, ValueError):
    """A setting, an argument or the wiring of components is invalid.

    Args:
        message: What is invalid and how to fix it.
        problems: One line per problem, when several were found at once.
    """

    problems: tuple[str, ...]

    def __init__(self, message: str, *, problems: tuple[str, ...] = ()) -> None:
        self.problems = problems
        super().__init__(message)

    @classmethod
    def from_problems(cls, summary: str, problems: list[str] | tuple[str, ...]) -> Self:
        """Build one error listing every problem, one per line.

        Args:
            summary: The first line, saying what was being checked.
            problems: Each problem, saying what is wrong and how to fix it.

        Returns:
            The error, with ``problems`` set.
        """
        lines = "\n".join(f"  - {problem}" for problem in problems)
        return cls(f"{summary}:\n{lines}", problems=tuple(problems))


class MissingDependencyError(ButtressError, ImportError):
    """An optional dependency is not installed.

    Args:
        package: The importable package that is missing, such as ``"redis"``.
        extra: The Buttress extra that installs it, such as ``"redis"``.
        feature: What needs the package, such as ``"RedisCache"``.
    """

    package: str
    extra: str

    def __init__(self, package: str, extra: str, feature: str | None = None) -> None:
        self.package = package
        self.extra = extra
        needed_by = f" {feature} needs it." if feature else ""
        super().__init__(
            f"the optional package {package!r} is not installed.{needed_by} Install it with "
            f"`pip install 'buttress[{extra}]'` or `uv add 'buttress[{extra}]'`"
        )
        self.name = package
