"""Retry on chosen exceptions, with tenacity's waits and stops, free on the success path."""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeAlias, TypeVar, cast, overload

from buttress.errors import CircuitOpenError, ConfigurationError
from buttress.resilience import _testing
from buttress.resilience._base import (
    carries,
    check_callable,
    check_count,
    check_exception_filter,
    check_listeners,
    check_seconds,
    describe,
    is_async,
    is_number,
    logger,
    name_of,
    notify,
    refuse_bare,
    with_part,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    import tenacity

    from buttress.resilience._base import ResilienceListener

__all__ = ["RetryBudget", "retry"]

P = ParamSpec("P")
T = TypeVar("T")

ExceptionTypes: TypeAlias = type[BaseException] | tuple[type[BaseException], ...]
RetryOn: TypeAlias = ExceptionTypes | Callable[[BaseException], bool]

# Never retried, whatever `on` says: retrying these would fight the caller (a
# cancellation, an interrupt, an exit) or the breaker that refused the call.
_NEVER_RETRIED = (
    asyncio.CancelledError,
    KeyboardInterrupt,
    SystemExit,
    GeneratorExit,
    CircuitOpenError,
)


class RetryBudget:
    """A token bucket shared by every caller of one dependency, bounding retries.

    Without a budget, an outage multiplies the load on the failing dependency
    by the number of attempts — a retry storm. With one, retries may add at
    most ``ratio`` of the first attempts (0.2: 20 % more calls), plus a small
    reserve of ``min_per_second`` so rarely used dependencies can still retry.
    When the bucket is empty, the call fails at once with its own error.

    Pass one budget to every `retry` that protects the same dependency. The
    success path only counts the call (an atomic increment); the bucket is
    refilled and spent under a lock on the failure path.

    Args:
        ratio: Retries allowed per first attempt, between 0 and 1.
        min_per_second: Retries allowed per second regardless of traffic.
        capacity: Most tokens the bucket holds (the largest burst of retries);
            by default ten seconds' worth of ``min_per_second``, and at least 10.
        clock: Monotonic clock in seconds (injectable for tests).

    Example:
        ```python
        from buttress.resilience import RetryBudget, retry

        payments = RetryBudget(ratio=0.2, min_per_second=2.0)

        @retry(on=ConnectionError, budget=payments)
        def charge(order_id: int) -> str:
            return f"charged {order_id}"

        @retry(on=ConnectionError, budget=payments)
        def refund(order_id: int) -> str:
            return f"refunded {order_id}"

        assert charge(1) == "charged 1"
        ```
    """

    def __init__(
        self,
        *,
        ratio: float = 0.2,
        min_per_second: float = 1.0,
        capacity: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not is_number(ratio) or not 0 <= ratio <= 1:
            raise ConfigurationError(
                f"RetryBudget ratio must be between 0 and 1 (0.2 allows 20 % extra calls), "
                f"got {ratio!r}"
            )
        check_seconds(min_per_second, "RetryBudget min_per_second", allow_zero=True, optional=False)
        if capacity is None:
            capacity = max(10.0, min_per_second * 10)
        if not is_number(capacity) or capacity < 1:
            raise ConfigurationError(f"RetryBudget capacity must be at least 1, got {capacity!r}")
        self.ratio = float(ratio)
        self.min_per_second = float(min_per_second)
        self.capacity = float(capacity)
        self._clock = clock
        self._calls = itertools.count()
        self.record_call: Callable[[], object] = self._calls.__next__
        """Count one first attempt (called by `retry` on every call; a C-level increment)."""
        self._lock = threading.Lock()
        self._tokens = self.capacity
        self._counted = 0
        self._refilled_at = clock()

    def try_spend(self) -> bool:
        """Take one retry from the budget.

        Returns:
            Whether the retry may go ahead.
        """
        with self._lock:
            now = self._clock()
            # Reading a count advances it; subtract our own read.
            calls = next(self._calls) - self._counted
            self._counted += calls + 1
            refill = self.ratio * calls + self.min_per_second * max(0.0, now - self._refilled_at)
            self._refilled_at = now
            self._tokens = min(self.capacity, self._tokens + refill)
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False

    @property
    def available(self) -> float:
        """Tokens in the bucket as of the last spend (whole tokens are retries)."""
        return self._tokens


class Retrier:
    """The decisions of one `retry`: held once, used by both drivers."""

    def __init__(
        self,
        *,
        name: str,
        on: RetryOn,
        attempts: int,
        wait_initial: float,
        wait_max: float,
        wait_jitter: float,
        deadline: float | None,
        budget: RetryBudget | None,
        listeners: tuple[ResilienceListener, ...],
    ) -> None:
        self.name = name
        self.on = on
        self.attempts = attempts
        self.wait_initial = wait_initial
        self.wait_max = wait_max
        self.wait_jitter = wait_jitter
        self.deadline = deadline
        self.budget = budget
        self.listeners = listeners
        self._machine: tenacity.Retrying | None = None

    def retryable(self, error: BaseException) -> bool:
        if carries(error, _NEVER_RETRIED):
            return False
        if isinstance(self.on, type | tuple):
            return isinstance(error, self.on)
        return bool(self.on(error))

    def machine(self) -> tenacity.Retrying:
        """Build tenacity's retrying object on the first failure (it is not needed before)."""
        if self._machine is None:
            import tenacity  # noqa: PLC0415 - only failures pay for importing it

            stops: list[Callable[[tenacity.RetryCallState], bool]] = [
                tenacity.stop_after_attempt(self.attempts)
            ]
            if self.deadline is not None:
                stops.append(tenacity.stop_before_delay(self.deadline))
            if self.budget is not None:
                stops.append(self._budget_stop)  # last: spent only if nothing else stops
            self._machine = tenacity.Retrying(
                retry=tenacity.retry_if_exception(self.retryable),
                stop=tenacity.stop_any(*cast("list[Any]", stops)),  # plain callables work
                wait=_RetryAfter(_exponential_jitter(self), self.wait_max),
                before_sleep=self._before_sleep,
                reraise=True,
            )
        return self._machine

    def _budget_stop(self, state: tenacity.RetryCallState) -> bool:
        budget = cast("RetryBudget", self.budget)
        if budget.try_spend():
            return False
        state.buttress_reason = "budget"  # type: ignore[attr-defined]
        return True

    def _before_sleep(self, state: tenacity.RetryCallState) -> None:
        error = cast("BaseException", cast("Any", state.outcome).exception())
        wait = state.upcoming_sleep
        logger.info(
            "retrying %s in %.3fs after attempt %d/%d failed: %r",
            self.name,
            wait,
            state.attempt_number,
            self.attempts,
            error,
        )
        notify(self.listeners, "on_retry", self.name, state.attempt_number, error, wait)

    def start(
        self, fn: Callable[..., Any], args: Any, kwargs: Any, error: BaseException, began: float
    ) -> tuple[tenacity.Retrying, tenacity.RetryCallState]:
        import tenacity  # noqa: PLC0415 - already imported by machine()

        # A copy per failing call, as tenacity's own decorator does: its iteration
        # state is per object and thread, and a predicate or listener may re-enter.
        machine = self.machine().copy()
        machine.begin()
        state = tenacity.RetryCallState(machine, fn, args, kwargs)
        state.start_time = began
        state.set_exception((type(error), error, error.__traceback__))
        return machine, state

    def gave_up(self, state: tenacity.RetryCallState, error: BaseException) -> None:
        attempts = state.attempt_number
        # One note per exception object, however often it is raised again.
        noted = any(note.startswith("buttress.retry:") for note in getattr(error, "__notes__", ()))
        if not self.retryable(error):
            if attempts > 1 and not noted:
                error.add_note(f"buttress.retry: {self.name} failed on attempt {attempts}")
            return
        reason = getattr(state, "buttress_reason", None)
        if reason is None:
            reason = "attempts" if attempts >= self.attempts else "deadline"
        if not noted:
            error.add_note(
                f"buttress.retry: gave up on {self.name} after {attempts} attempt"
                f"{'s' if attempts != 1 else ''} ({_REASONS[reason]})"
            )
        logger.warning(
            "giving up on %s after %d attempts (%s): %r", self.name, attempts, reason, error
        )
        notify(self.listeners, "on_give_up", self.name, attempts, error, reason)

    def run(
        self, fn: Callable[..., Any], args: Any, kwargs: Any, error: BaseException, began: float
    ) -> Any:
        """The sync driver: call and sleep as tenacity decides."""
        import tenacity  # noqa: PLC0415 - already imported by machine()

        machine, state = self.start(fn, args, kwargs, error, began)
        try:
            while True:
                action = machine.iter(state)
                if isinstance(action, tenacity.DoAttempt):
                    try:
                        result = fn(*args, **kwargs)
                    except BaseException:  # noqa: BLE001 - tenacity decides what to retry
                        state.set_exception(cast("Any", sys.exc_info()))
                    else:
                        state.set_result(result)
                elif isinstance(action, tenacity.DoSleep):
                    state.prepare_for_next_attempt()
                    # A skipped wait (resilience_testing) still counts for the deadline.
                    state.start_time -= _testing.sleep(float(action))
                else:
                    return action
        except BaseException as final:
            self.gave_up(state, final)
            raise

    async def arun(
        self, fn: Callable[..., Any], args: Any, kwargs: Any, error: BaseException, began: float
    ) -> Any:
        """The async driver: the same decisions, awaiting the call and the sleep."""
        import tenacity  # noqa: PLC0415 - already imported by machine()

        machine, state = self.start(fn, args, kwargs, error, began)
        try:
            while True:
                action = machine.iter(state)
                if isinstance(action, tenacity.DoAttempt):
                    try:
                        result = await fn(*args, **kwargs)
                    except BaseException:  # noqa: BLE001 - tenacity decides what to retry
                        state.set_exception(cast("Any", sys.exc_info()))
                    else:
                        state.set_result(result)
                elif isinstance(action, tenacity.DoSleep):
                    state.prepare_for_next_attempt()
                    state.start_time -= await _testing.asleep(float(action))
                else:
                    return action
        except BaseException as final:
            self.gave_up(state, final)
            raise


def _exponential_jitter(retrier: Retrier) -> Callable[[tenacity.RetryCallState], float]:
    """Exponential backoff with jitter, tenacity's, with jitter, starting at ``wait_initial``."""
    return exponential_jitter(retrier.wait_initial, retrier.wait_max, retrier.wait_jitter)


def exponential_jitter(
    initial: float, maximum: float, jitter: float
) -> Callable[[tenacity.RetryCallState], float]:
    """Exponential wait by tenacity: ``initial * 2**(n-1)`` plus up to ``jitter``, capped."""
    import tenacity  # noqa: PLC0415 - only failures pay for importing it

    # tenacity 9.2 renamed the first wait from `initial` to `multiplier`.
    first = (
        "multiplier"
        if "multiplier" in inspect.signature(tenacity.wait_exponential_jitter).parameters
        else "initial"
    )
    return tenacity.wait_exponential_jitter(**{first: initial}, max=maximum, jitter=jitter)


def wait_before(attempt: int, wait: Callable[[tenacity.RetryCallState], float]) -> float:
    """The seconds ``wait`` (a tenacity wait) gives after failed attempt number ``attempt``."""
    import tenacity  # noqa: PLC0415 - only failures pay for importing it

    state = tenacity.RetryCallState(cast("Any", None), None, (), {})
    state.attempt_number = attempt
    return wait(state)


_REASONS = {
    "attempts": "no attempts left",
    "deadline": "the next wait would cross the deadline",
    "budget": "the retry budget is spent",
}


class _RetryAfter:
    """Tenacity's wait, raised to the delay a server asked for (``error.retry_after``)."""

    def __init__(self, wait: Callable[[tenacity.RetryCallState], float], wait_max: float) -> None:
        self.wait = wait
        self.wait_max = wait_max

    def __call__(self, state: tenacity.RetryCallState) -> float:
        seconds = self.wait(state)
        outcome = state.outcome
        asked = getattr(outcome.exception(), "retry_after", None) if outcome else None
        if is_number(asked) and asked > seconds:
            return min(float(asked), self.wait_max)
        return seconds


_NOT_GIVEN: Any = object()
"""``on`` left out: refused at once with what to write."""


@overload
def retry(
    *,
    on: RetryOn,
    attempts: int = 3,
    wait_initial: float = 0.05,
    wait_max: float = 5.0,
    wait_jitter: float = 0.05,
    deadline: float | None = None,
    budget: RetryBudget | None = None,
    listeners: Sequence[ResilienceListener] = (),
    name: str | None = None,
) -> Callable[[Callable[P, T]], Callable[P, T]]: ...


@overload
def retry(function: Callable[..., Any], /) -> NoReturn: ...


def retry(
    *bare: Callable[..., Any],
    on: RetryOn = _NOT_GIVEN,
    attempts: int = 3,
    wait_initial: float = 0.05,
    wait_max: float = 5.0,
    wait_jitter: float = 0.05,
    deadline: float | None = None,
    budget: RetryBudget | None = None,
    listeners: Sequence[ResilienceListener] = (),
    name: str | None = None,
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Retry a function (``def`` or ``async def``) when it raises one of the given errors.

    The success path is a plain call: nothing is imported, allocated or locked
    until a call fails. Then tenacity takes over and decides, with exponential
    backoff and jitter (``wait_initial * 2 ** (attempt - 1) + random(0,
    wait_jitter)``, at most ``wait_max``), whether and when to call again.

    ``asyncio.CancelledError``, ``KeyboardInterrupt``, ``SystemExit``,
    ``GeneratorExit`` and `CircuitOpenError` are never retried, alone or inside
    an exception group (as a task group raises them). When retrying
    stops, the last exception is raised as itself (not wrapped), with a note
    saying how many attempts were made and why retrying stopped. An exception
    with a numeric ``retry_after`` attribute (seconds, as a server's
    ``Retry-After`` header says) makes the next wait at least that long, up to
    ``wait_max``.

    Args:
        *bare: Nothing: ``@retry`` without its options is refused, saying what to write.
        on: What to retry: an exception class, a tuple of them, or a predicate
            that takes the exception and returns whether to retry.
        attempts: Calls in all, the first included (1 means no retry).
        wait_initial: Seconds before the first retry; doubled after each one.
        wait_max: Longest single wait, in seconds.
        wait_jitter: Up to this many seconds added at random to each wait, so
            that callers failing together do not retry together.
        deadline: Seconds the whole call may take, waits included: a wait that
            would end past it is not taken, and the last error is raised.
        budget: A `RetryBudget` shared by all callers of one dependency, so an
            outage cannot turn into a retry storm.
        listeners: `ResilienceListener`s told of each retry and give-up.
        name: Name in logs and listener calls; the function's qualified name
            by default.

    Returns:
        A decorator that keeps the function's signature for type checkers.

    Raises:
        ConfigurationError: At decoration time, for an invalid argument or
            something that is not callable.

    Example:
        ```python
        from buttress.resilience import resilience_testing, retry

        replies = iter([TimeoutError("slow"), ConnectionError("reset"), {"id": 7}])

        @retry(on=(ConnectionError, TimeoutError), attempts=3)
        def fetch_user(user_id: int) -> dict[str, int]:
            reply = next(replies)
            if isinstance(reply, Exception):
                raise reply
            return reply

        with resilience_testing():  # no real sleeping in examples and tests
            assert fetch_user(7) == {"id": 7}
        ```
    """
    if bare:
        refuse_bare(bare[0], "retry(on=ConnectionError)")
    if on is _NOT_GIVEN:
        raise ConfigurationError(
            "retry needs on=: the exceptions (or a predicate) worth another try, such as "
            "retry(on=ConnectionError); nothing is retried by default"
        )
    checked_on = cast("RetryOn", check_exception_filter(on, "retry(on=...)", "retry"))
    check_count(attempts, "retry(attempts=...), which counts every call, the first included,", 1)
    check_seconds(wait_initial, "retry(wait_initial=...)", allow_zero=True, optional=False)
    check_seconds(wait_max, "retry(wait_max=...)", allow_zero=True, optional=False)
    check_seconds(wait_jitter, "retry(wait_jitter=...)", allow_zero=True, optional=False)
    check_seconds(deadline, "retry(deadline=...)", allow_zero=False, optional=True)
    if wait_max < wait_initial:
        raise ConfigurationError(
            f"retry(wait_max={wait_max!r}) is below wait_initial={wait_initial!r}; "
            "raise wait_max or lower wait_initial"
        )
    if budget is not None and not isinstance(budget, RetryBudget):
        raise ConfigurationError(f"retry(budget=...) takes a RetryBudget, got {budget!r}")
    checked_listeners = check_listeners(listeners, "retry")

    def build(fn: Callable[..., Any]) -> Retrier | None:
        if attempts == 1:
            return None  # nothing to retry
        return Retrier(
            name=name or name_of(fn),
            on=checked_on,
            attempts=attempts,
            wait_initial=float(wait_initial),
            wait_max=float(wait_max),
            wait_jitter=float(wait_jitter),
            deadline=deadline,
            budget=budget,
            listeners=checked_listeners,
        )

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        check_callable(fn, "retry")
        retrier = build(fn)
        if retrier is None:
            return fn  # the decorator costs nothing at all
        return _wrap(fn, retrier)

    with_part(decorate, build)
    return describe(
        decorate,
        "retry",
        on=on,
        attempts=attempts,
        wait_initial=wait_initial,
        wait_max=wait_max,
        wait_jitter=wait_jitter,
        deadline=deadline,
        budget=budget,
        listeners=listeners,
        name=name,
    )


def _wrap(fn: Callable[P, T], retrier: Retrier) -> Callable[P, T]:
    """Choose, once, the lightest wrapper that does what ``retrier`` needs."""
    on = retrier.on
    # Exceptions outside `on` are never caught; a predicate must see everything.
    catch: ExceptionTypes = on if isinstance(on, type | tuple) else BaseException
    retryable = retrier.retryable
    monotonic = time.monotonic
    count = retrier.budget.record_call if retrier.budget is not None else None
    timed = retrier.deadline is not None

    if is_async(fn):
        afn = cast("Callable[P, Any]", fn)

        @functools.wraps(fn)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            began = monotonic() if timed else 0.0
            if count is not None:
                count()
            try:
                return await afn(*args, **kwargs)
            except catch as error:
                if not retryable(error):
                    raise
                failed = error
            # Outside the except block: later attempts do not chain onto the first.
            return await retrier.arun(afn, args, kwargs, failed, began)

        return cast("Callable[P, T]", async_wrapper)

    if not timed and count is not None:

        @functools.wraps(fn)
        def counted_wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            count()
            try:
                return fn(*args, **kwargs)
            except catch as error:
                if not retryable(error):
                    raise
                failed = error
            return cast("T", retrier.run(fn, args, kwargs, failed, monotonic()))

        return counted_wrapper

    if not timed:

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return fn(*args, **kwargs)
            except catch as error:
                if not retryable(error):
                    raise
                failed = error
            # Without a deadline, the first attempt's duration does not matter.
            return cast("T", retrier.run(fn, args, kwargs, failed, monotonic()))

        return wrapper

    @functools.wraps(fn)
    def timed_wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        began = monotonic()
        if count is not None:
            count()
        try:
            return fn(*args, **kwargs)
        except catch as error:
            if not retryable(error):
                raise
            failed = error
        return cast("T", retrier.run(fn, args, kwargs, failed, began))

    return timed_wrapper
