"""Retry, circuit breaker and time limit in one wrapper: the success path of a `Policy`."""

from __future__ import annotations

import asyncio
import functools
import time
from typing import TYPE_CHECKING, Any, cast

from buttress.resilience._timer import CANCELLING, EXPIRED

if TYPE_CHECKING:
    from collections.abc import Callable

    from buttress.resilience._breaker import CircuitBreaker
    from buttress.resilience._retry import Retrier
    from buttress.resilience._timer import Limit

__all__ = ["Core", "fused"]

get_running_loop, current_task = asyncio.get_running_loop, asyncio.current_task


class _Retry(Exception):  # noqa: N818 - a marker, never raised
    """What `Core.failed` returns for an error the retry takes over."""


_RETRY = _Retry()


class Core:
    """The retry, breaker and per-attempt time limit around one function.

    Stacked as decorators, the three cost three wrappers per call. `fused`
    makes them one: a call whose breaker is closed (and not due to sync with
    its storage) makes its first attempt inside one wrapper that does what the
    three layers would do on that attempt — the breaker's closed path (as
    `CircuitBreaker.__call__` writes it), the retry's counting, the time
    limit. Every other call takes ``layered``, the stacked decorators
    themselves: an open, half-open or due-to-sync breaker decides there. A
    failed first attempt goes on in the retry's own driver, with ``attempt``
    (the stacked breaker and time limit) for the next attempts. The Policy
    property test holds the fused and stacked forms to the same outcomes.

    Args:
        fn: The function.
        layered: ``fn`` under the stacked decorators (used when not fused).
        attempt: ``fn`` under the stacked breaker and time limit.
        retrier: The retry's decisions, if any.
        breaker: The breaker, if any.
        limit: The per-attempt time limit, if any.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        layered: Callable[..., Any] | None = None,
        attempt: Callable[..., Any] | None = None,
        retrier: Retrier | None = None,
        breaker: CircuitBreaker | None = None,
        limit: Limit | None = None,
    ) -> None:
        self.fn, self.layered, self.attempt = fn, layered or fn, attempt or fn
        self.retrier, self.breaker, self.limit = retrier, breaker, limit
        budget = retrier.budget if retrier is not None else None
        self.count = budget.record_call if budget is not None else None
        self.retry_timed = retrier is not None and retrier.deadline is not None
        # A breaker with a storage must look at the clock to know when to sync.
        self.synced = breaker is not None and breaker.storage is not None

    def failed(self, error: BaseException, gen: int) -> BaseException:
        """The first attempt raised ``error``: count it; return it, or `_RETRY` to retry."""
        breaker = self.breaker
        if breaker is not None and isinstance(error, Exception):
            breaker._failed_closed(error, gen)  # noqa: SLF001 - the closed path, fused
        if self.retrier is None or not self.retrier.retryable(error):
            return error
        return _RETRY

    async def afailed(self, error: BaseException, gen: int) -> BaseException:
        """`failed` for a breaker with a storage: its I/O runs off the event loop."""
        breaker = self.breaker
        if breaker is not None and isinstance(error, Exception):
            await breaker._afailed_closed(error, gen)  # noqa: SLF001 - the closed path, fused
        if self.retrier is None or not self.retrier.retryable(error):
            return error
        return _RETRY

    def succeeded(self, gen: int) -> None:
        """The first attempt succeeded after earlier failures: the breaker forgets them."""
        cast("CircuitBreaker", self.breaker)._succeeded_closed(gen)  # noqa: SLF001

    async def asucceeded(self, gen: int) -> None:
        """`succeeded` for async callers: with a storage, its I/O runs off the event loop."""
        breaker = cast("CircuitBreaker", self.breaker)
        if self.synced:
            await breaker._asucceeded_closed(gen)  # noqa: SLF001 - the closed path, fused
        else:
            breaker._succeeded_closed(gen)  # noqa: SLF001

    def retry_sync(self, args: Any, kwargs: Any, first: BaseException, began: float) -> Any:
        """Go on after a failed first attempt, in the retry's own driver."""
        return cast("Retrier", self.retrier).run(self.attempt, args, kwargs, first, began)

    async def retry_async(self, args: Any, kwargs: Any, first: BaseException, began: float) -> Any:
        """Go on after a failed first attempt, in the retry's own async driver."""
        return await cast("Retrier", self.retrier).arun(self.attempt, args, kwargs, first, began)


def fused(core: Core, *, is_async: bool) -> Callable[..., Any]:
    """The one wrapper for ``core``'s function (a ``def`` or, if ``is_async``, an ``async def``)."""
    if not is_async:
        return _fused_sync(core)
    if core.limit is None:
        return _fused_async(core)
    return _fused_async_limited(core)


def _fused_sync(core: Core) -> Callable[..., Any]:
    fn, layered, breaker = core.fn, core.layered, core.breaker
    count, failed, succeeded, synced = core.count, core.failed, core.succeeded, core.synced
    go_on, retry_timed = core.retry_sync, core.retry_timed
    limit = core.limit.limit if core.limit is not None else None
    overrun = core.limit.overrun if core.limit is not None else None
    timed = retry_timed or limit is not None
    monotonic = time.monotonic

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        gen = 0
        if breaker is not None:
            closed = breaker._closed_gen  # noqa: SLF001 - the closed path, fused
            if closed is None or (synced and breaker._clock() >= breaker._fresh_until):  # noqa: SLF001
                return layered(*args, **kwargs)
            gen = closed
        began = monotonic() if timed else 0.0
        if count is not None:
            count()
        try:
            result = fn(*args, **kwargs)
        except BaseException as error:
            if failed(error, gen) is not _RETRY:
                raise
            first = error
        else:
            if limit is not None and (spent := monotonic() - began) > limit:
                # A def cannot be stopped: its overrun is reported when it returns.
                late = cast("Callable[[float], BaseException]", overrun)(spent)
                if failed(late, gen) is not _RETRY:
                    raise late
                first = late
            else:
                if breaker is not None and breaker._failures:  # noqa: SLF001
                    succeeded(gen)
                return result
        return go_on(args, kwargs, first, began if retry_timed else monotonic())

    return wrapper


def _fused_async(core: Core) -> Callable[..., Any]:
    fn, layered, breaker = core.fn, core.layered, core.breaker
    count, failed, synced = core.count, core.failed, core.synced
    go_on, retry_timed = core.retry_async, core.retry_timed
    # A breaker with a storage counts and writes in a worker thread, off the loop.
    afailed, asucceeded = core.afailed, core.asucceeded
    monotonic = time.monotonic

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        gen = 0
        if breaker is not None:
            closed = breaker._closed_gen  # noqa: SLF001 - the closed path, fused
            if closed is None or (synced and breaker._clock() >= breaker._fresh_until):  # noqa: SLF001
                return await layered(*args, **kwargs)
            gen = closed
        began = monotonic() if retry_timed else 0.0
        if count is not None:
            count()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as error:
            verdict = await afailed(error, gen) if synced else failed(error, gen)
            if verdict is not _RETRY:
                raise
            first = error
        else:
            if breaker is not None and breaker._failures:  # noqa: SLF001
                await asucceeded(gen)
            return result
        return await go_on(args, kwargs, first, began)

    return wrapper


def _fused_async_limited(core: Core) -> Callable[..., Any]:
    """`_fused_async` with the time limit's bookkeeping written out (see `Limit`)."""
    fn, layered, breaker = core.fn, core.layered, core.breaker
    count, failed, synced = core.count, core.failed, core.synced
    go_on, retry_timed = core.retry_async, core.retry_timed
    # A breaker with a storage counts and writes in a worker thread, off the loop.
    afailed, asucceeded = core.afailed, core.asucceeded
    limit = cast("Limit", core.limit)
    seconds, overrun, loops, running_on = limit.limit, limit.overrun, limit.loops, limit.running
    monotonic, cancelled = time.monotonic, asyncio.CancelledError

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:  # noqa: PLR0912 - written out for speed
        gen = 0
        if breaker is not None:
            closed = breaker._closed_gen  # noqa: SLF001 - the closed path, fused
            if closed is None or (synced and breaker._clock() >= breaker._fresh_until):  # noqa: SLF001
                return await layered(*args, **kwargs)
            gen = closed
        began = monotonic() if retry_timed else 0.0
        if count is not None:
            count()
        loop = get_running_loop()
        running = loops.get(loop) or running_on(loop)
        task = current_task(loop)
        if task is None:
            raise RuntimeError("a time limit can only be used inside an asyncio task")
        started = running.clock()
        call: list[Any] = [started + seconds, task, task.cancelling(), False]
        key, calls = id(call), running.calls
        calls[key] = call
        if not running.armed:
            running.arm(started + seconds)
        try:
            try:
                result = await fn(*args, **kwargs)
            except BaseException as error:
                if not call[EXPIRED]:
                    del calls[key]
                elif task.uncancel() <= call[CANCELLING] and type(error) is cancelled:
                    raise overrun(running.clock() - started) from error  # our cancellation
                raise
            if call[EXPIRED]:
                # The coroutine swallowed its cancellation and returned late anyway.
                task.uncancel()
                raise overrun(running.clock() - started)  # noqa: TRY301 - counted below
            del calls[key]
        except BaseException as error:
            verdict = await afailed(error, gen) if synced else failed(error, gen)
            if verdict is not _RETRY:
                raise
            first = error
        else:
            if breaker is not None and breaker._failures:  # noqa: SLF001
                await asucceeded(gen)
            return result
        return await go_on(args, kwargs, first, began)

    return wrapper
