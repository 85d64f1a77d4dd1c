"""Resilience decorators on the success path: what a call costs when nothing goes wrong.

Every group but one wraps the same trivially cheap function (``x + 1``), so the
decorator's own work dominates. The baseline is a pass-through decorator (a
``functools.wraps`` wrapper that only calls through, or awaits); the
``reference`` row is the bare, undecorated call, the floor under every wrapper.
The exception is ``resilience.breaker-4-threads``: `THREADS` threads each make
one slow call (`SLOW_CALL` seconds) through one shared breaker, and a row is the
wall time of the whole batch, so a breaker that holds a lock while the
protected function runs shows as the calls done one after another.

Sync groups time one call. pytest-benchmark cannot await, so async groups time
one ``loop.run_until_complete(batch(fn))`` on an event loop made for the test,
where ``batch`` awaits ``fn`` `BATCH` times in a row: every async row of a group
goes through this same harness, so the loop's fixed cost (about 10 µs a run on
a small machine) is shared and spread over `BATCH` calls, and a ratio still
measures the decorators. Medians of async rows are per batch, not per call.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import threading
import time
from typing import TYPE_CHECKING, Any

import backoff
import circuitbreaker
import purgatory
import pybreaker
import pytest
import stamina
import tenacity

from buttress.resilience import (
    CircuitBreaker,
    Policy,
    RetryBudget,
    bulkhead,
    fallback,
    retry,
    timeout,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

BATCH = 1000
"""Awaits per timed async run: enough that the loop's fixed cost is a few percent."""

EXPECTED = sum(range(1, BATCH + 1))
"""What `batch` returns when every call returned its argument plus one."""


def add_one(x: int) -> int:
    return x + 1


async def async_add_one(x: int) -> int:
    return x + 1


def pass_through(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The baseline: the least a decorator can do."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


def async_pass_through(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """The async baseline: an ``async def`` wrapper that awaits the call."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return await fn(*args, **kwargs)

    return wrapper


async def batch(fn: Callable[[int], Awaitable[int]]) -> int:
    """Await ``fn`` `BATCH` times and add up the results (the same loop for every row)."""
    total = 0
    for i in range(BATCH):
        total += await fn(i)
    return total


@pytest.fixture
def drive() -> Iterator[Callable[[Callable[[int], Awaitable[int]]], Callable[[], int]]]:
    """Turn a coroutine function into a sync callable that runs one `batch` of it.

    One new event loop per test, closed at teardown; it is never the thread's
    current loop, so nothing else sees it.
    """
    loop = asyncio.new_event_loop()

    def runner(fn: Callable[[int], Awaitable[int]]) -> Callable[[], int]:
        def run() -> int:
            return loop.run_until_complete(batch(fn))

        return run

    try:
        yield runner
    finally:
        loop.close()


# Retry ------------------------------------------------------------------------------------------


def tenacity_retry(fn: Callable[..., Any]) -> Callable[..., Any]:
    return tenacity.retry(
        stop=tenacity.stop_after_attempt(3),
        retry=tenacity.retry_if_exception_type(ConnectionError),
    )(fn)


def stamina_retry(fn: Callable[..., Any]) -> Callable[..., Any]:
    return stamina.retry(on=ConnectionError, attempts=3)(fn)


def backoff_retry(fn: Callable[..., Any]) -> Callable[..., Any]:
    return backoff.on_exception(backoff.expo, ConnectionError, max_tries=3)(fn)


def buttress_retry(fn: Callable[..., Any]) -> Callable[..., Any]:
    return retry(on=ConnectionError, attempts=3)(fn)


def buttress_retry_deadline(fn: Callable[..., Any]) -> Callable[..., Any]:
    return retry(on=ConnectionError, attempts=3, deadline=5.0)(fn)


def buttress_retry_budget(fn: Callable[..., Any]) -> Callable[..., Any]:
    return retry(on=ConnectionError, attempts=3, budget=RetryBudget())(fn)


@pytest.mark.benchmark(group="resilience.retry-success-sync")
class TestRetrySuccessSync:
    def test_bare_call(self, reference):
        assert reference(add_one, 1) == 2

    def test_pass_through(self, baseline):
        assert baseline(pass_through(add_one), 1) == 2

    def test_tenacity(self, peer):
        assert peer(tenacity_retry(add_one), 1) == 2

    def test_stamina(self, peer):
        assert peer(stamina_retry(add_one), 1) == 2

    def test_backoff(self, peer):
        assert peer(backoff_retry(add_one), 1) == 2

    def test_retry(self, ours):
        assert ours(buttress_retry(add_one), 1) == 2

    def test_retry_deadline(self, ours):
        assert ours(buttress_retry_deadline(add_one), 1) == 2

    def test_retry_budget(self, ours):
        assert ours(buttress_retry_budget(add_one), 1) == 2


@pytest.mark.benchmark(group="resilience.retry-success-async")
class TestRetrySuccessAsync:
    def test_bare_call(self, reference, drive):
        assert reference(drive(async_add_one)) == EXPECTED

    def test_pass_through(self, baseline, drive):
        assert baseline(drive(async_pass_through(async_add_one))) == EXPECTED

    def test_tenacity(self, peer, drive):
        assert peer(drive(tenacity_retry(async_add_one))) == EXPECTED

    def test_stamina(self, peer, drive):
        assert peer(drive(stamina_retry(async_add_one))) == EXPECTED

    def test_backoff(self, peer, drive):
        assert peer(drive(backoff_retry(async_add_one))) == EXPECTED

    def test_retry(self, ours, drive):
        assert ours(drive(buttress_retry(async_add_one))) == EXPECTED

    def test_retry_deadline(self, ours, drive):
        assert ours(drive(buttress_retry_deadline(async_add_one))) == EXPECTED

    def test_retry_budget(self, ours, drive):
        assert ours(drive(buttress_retry_budget(async_add_one))) == EXPECTED


# Timeout ----------------------------------------------------------------------------------------


def wait_for_wrapper(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """The standard library's way to bound a coroutine: ``asyncio.wait_for``."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return await asyncio.wait_for(fn(*args, **kwargs), 5.0)

    return wrapper


@pytest.mark.benchmark(group="resilience.timeout-success-sync")
class TestTimeoutSuccessSync:
    def test_bare_call(self, reference):
        assert reference(add_one, 1) == 2

    def test_pass_through(self, baseline):
        assert baseline(pass_through(add_one), 1) == 2

    def test_timeout(self, ours):
        assert ours(timeout(5.0)(add_one), 1) == 2


@pytest.mark.benchmark(group="resilience.timeout-success-async")
class TestTimeoutSuccessAsync:
    def test_bare_call(self, reference, drive):
        assert reference(drive(async_add_one)) == EXPECTED

    def test_pass_through(self, baseline, drive):
        assert baseline(drive(async_pass_through(async_add_one))) == EXPECTED

    def test_asyncio_wait_for(self, peer, drive):
        assert peer(drive(wait_for_wrapper(async_add_one))) == EXPECTED

    def test_asyncio_timeout(self, peer, drive):
        """``async with asyncio.timeout(...)`` around the call: a timer per call."""
        assert peer(drive(asyncio_timeout(async_add_one))) == EXPECTED

    def test_timeout(self, ours, drive):
        assert ours(drive(timeout(5.0)(async_add_one))) == EXPECTED


# Bulkhead ---------------------------------------------------------------------------------------


class Full(Exception):  # noqa: N818 - named after the bulkhead state, as BulkheadFullError is
    """The semaphore wrappers' refusal, as `bulkhead` refuses a call over its limit."""


def semaphore_wrapper(fn: Callable[..., Any], limit: int) -> Callable[..., Any]:
    """``bulkhead(limit)`` by hand: a ``threading.BoundedSemaphore``, refusing when full."""
    slots = threading.BoundedSemaphore(limit)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not slots.acquire(blocking=False):
            raise Full
        try:
            return fn(*args, **kwargs)
        finally:
            slots.release()

    return wrapper


def async_semaphore_wrapper(
    fn: Callable[..., Awaitable[Any]], limit: int
) -> Callable[..., Awaitable[Any]]:
    """``bulkhead(limit)`` by hand for tasks: an ``asyncio.Semaphore``, refusing when full."""
    slots = asyncio.Semaphore(limit)

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if slots.locked():
            raise Full
        async with slots:
            return await fn(*args, **kwargs)

    return wrapper


@pytest.mark.benchmark(group="resilience.bulkhead-success-sync")
class TestBulkheadSuccessSync:
    def test_bare_call(self, reference):
        assert reference(add_one, 1) == 2

    def test_pass_through(self, baseline):
        assert baseline(pass_through(add_one), 1) == 2

    def test_bounded_semaphore(self, peer):
        assert peer(semaphore_wrapper(add_one, 8), 1) == 2

    def test_bulkhead(self, ours):
        assert ours(bulkhead(8)(add_one), 1) == 2


@pytest.mark.benchmark(group="resilience.bulkhead-success-async")
class TestBulkheadSuccessAsync:
    def test_bare_call(self, reference, drive):
        assert reference(drive(async_add_one)) == EXPECTED

    def test_pass_through(self, baseline, drive):
        assert baseline(drive(async_pass_through(async_add_one))) == EXPECTED

    def test_asyncio_semaphore(self, peer, drive):
        assert peer(drive(async_semaphore_wrapper(async_add_one, 8))) == EXPECTED

    def test_bulkhead(self, ours, drive):
        assert ours(drive(bulkhead(8)(async_add_one))) == EXPECTED


# Fallback ---------------------------------------------------------------------------------------


@pytest.mark.benchmark(group="resilience.fallback-success-sync")
class TestFallbackSuccessSync:
    def test_bare_call(self, reference):
        assert reference(add_one, 1) == 2

    def test_pass_through(self, baseline):
        assert baseline(pass_through(add_one), 1) == 2

    def test_fallback(self, ours):
        assert ours(fallback(None, on=ConnectionError)(add_one), 1) == 2


@pytest.mark.benchmark(group="resilience.fallback-success-async")
class TestFallbackSuccessAsync:
    def test_bare_call(self, reference, drive):
        assert reference(drive(async_add_one)) == EXPECTED

    def test_pass_through(self, baseline, drive):
        assert baseline(drive(async_pass_through(async_add_one))) == EXPECTED

    def test_fallback(self, ours, drive):
        assert ours(drive(fallback(None, on=ConnectionError)(async_add_one))) == EXPECTED


# Circuit breaker --------------------------------------------------------------------------------
#
# Every breaker is closed, counts every Exception, and opens after 5 consecutive failures for
# 30 s: the same settings under each library's spelling. Each benchmark decorates with a fresh
# breaker (Buttress's registry hands back the live breaker of a name, so each gets its own).

FAIL_MAX = 5
RESET_TIMEOUT = 30

_breaker_names = itertools.count()


def buttress_breaker(fn: Callable[..., Any]) -> Callable[..., Any]:
    name = f"bench-{fn.__name__}-{next(_breaker_names)}"
    return CircuitBreaker(name, fail_max=FAIL_MAX, reset_timeout=RESET_TIMEOUT)(fn)


def pybreaker_breaker(fn: Callable[..., Any]) -> Callable[..., Any]:
    return pybreaker.CircuitBreaker(fail_max=FAIL_MAX, reset_timeout=RESET_TIMEOUT)(fn)


def circuitbreaker_breaker(fn: Callable[..., Any]) -> Callable[..., Any]:
    return circuitbreaker.CircuitBreaker(
        failure_threshold=FAIL_MAX, recovery_timeout=RESET_TIMEOUT
    )(fn)


def purgatory_breaker(fn: Callable[..., Any]) -> Callable[..., Any]:
    factory = purgatory.SyncCircuitBreakerFactory(
        default_threshold=FAIL_MAX, default_ttl=RESET_TIMEOUT
    )
    return factory("bench")(fn)


def purgatory_async_breaker(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    factory = purgatory.AsyncCircuitBreakerFactory(
        default_threshold=FAIL_MAX, default_ttl=RESET_TIMEOUT
    )
    return factory("bench")(fn)


@pytest.mark.benchmark(group="resilience.breaker-closed")
class TestBreakerClosed:
    def test_bare_call(self, reference):
        assert reference(add_one, 1) == 2

    def test_pass_through(self, baseline):
        assert baseline(pass_through(add_one), 1) == 2

    def test_pybreaker(self, peer):
        assert peer(pybreaker_breaker(add_one), 1) == 2

    def test_circuitbreaker(self, peer):
        assert peer(circuitbreaker_breaker(add_one), 1) == 2

    def test_purgatory(self, peer):
        assert peer(purgatory_breaker(add_one), 1) == 2

    def test_circuit_breaker(self, ours):
        assert ours(buttress_breaker(add_one), 1) == 2


@pytest.mark.benchmark(group="resilience.breaker-closed-async")
class TestBreakerClosedAsync:
    def test_bare_call(self, reference, drive):
        assert reference(drive(async_add_one)) == EXPECTED

    def test_pass_through(self, baseline, drive):
        assert baseline(drive(async_pass_through(async_add_one))) == EXPECTED

    def test_pybreaker_uncounted(self, peer, drive):
        """pybreaker on ``async def``: what users get, but not a breaker's work.

        Its decorator is a plain ``def`` that returns the coroutine unawaited, so
        pybreaker records a success when the coroutine is created and never sees
        an exception raised when it is awaited: async failures never open its
        circuit (its ``call_async`` needs Tornado). The row times that wrapper.
        """
        assert peer(drive(pybreaker_breaker(async_add_one))) == EXPECTED

    def test_circuitbreaker(self, peer, drive):
        assert peer(drive(circuitbreaker_breaker(async_add_one))) == EXPECTED

    def test_purgatory(self, peer, drive):
        assert peer(drive(purgatory_async_breaker(async_add_one))) == EXPECTED

    def test_circuit_breaker(self, ours, drive):
        assert ours(drive(buttress_breaker(async_add_one))) == EXPECTED


THREADS = 4
"""Threads calling through one breaker at once in ``resilience.breaker-4-threads``."""

SLOW_CALL = 0.2
"""Seconds each of those calls sleeps: a slow dependency, far above any breaker's overhead."""

JOIN_TIMEOUT = 10.0
"""Seconds a batch of threads may take before the benchmark gives up on it."""

THREADS_EXPECTED = sum(range(1, THREADS + 1))
"""What `in_threads` returns when every call returned its argument plus one."""


def slow_add_one(x: int) -> int:
    time.sleep(SLOW_CALL)
    return x + 1


def in_threads(fn: Callable[[int], int]) -> Callable[[], int]:
    """Turn ``fn`` into a callable that runs it once in each of `THREADS` threads at once.

    The callable starts the threads, joins them within `JOIN_TIMEOUT` seconds
    in all, and returns the sum of their results; a call that raised or did not
    finish in time makes it raise.
    """

    def run() -> int:
        results: list[int | None] = [None] * THREADS

        def work(i: int) -> None:
            results[i] = fn(i)

        threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(THREADS)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + JOIN_TIMEOUT
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in threads):
            raise TimeoutError(f"{THREADS} threads did not finish within {JOIN_TIMEOUT}s")
        done = [result for result in results if result is not None]
        if len(done) != THREADS:
            raise RuntimeError(f"{THREADS - len(done)} of {THREADS} calls raised")
        return sum(done)

    return run


def timed_batches(benchmark: Any, fn: Callable[[int], int]) -> int:
    """Time 3 batches of `in_threads` (a batch is about `SLOW_CALL` seconds, or more)."""
    return benchmark.pedantic(in_threads(fn), rounds=3, iterations=1)


@pytest.mark.benchmark(group="resilience.breaker-4-threads")
class TestBreakerFourThreads:
    def test_bare_call(self, reference):
        assert timed_batches(reference, slow_add_one) == THREADS_EXPECTED

    def test_pass_through(self, baseline):
        assert timed_batches(baseline, pass_through(slow_add_one)) == THREADS_EXPECTED

    def test_pybreaker(self, peer):
        assert timed_batches(peer, pybreaker_breaker(slow_add_one)) == THREADS_EXPECTED

    def test_circuitbreaker(self, peer):
        assert timed_batches(peer, circuitbreaker_breaker(slow_add_one)) == THREADS_EXPECTED

    def test_purgatory(self, peer):
        assert timed_batches(peer, purgatory_breaker(slow_add_one)) == THREADS_EXPECTED

    def test_circuit_breaker(self, ours):
        assert timed_batches(ours, buttress_breaker(slow_add_one)) == THREADS_EXPECTED


# Policy -----------------------------------------------------------------------------------------
#
# The three concerns most services stack: retry (3 attempts on ConnectionError), a circuit breaker
# (the settings above) and a 5 s limit on each attempt, applied from the caller in as
# retry > breaker > timeout > function. Buttress's `Policy` applies them in that order; the
# "hand-stacked" row writes the same three Buttress decorators out by hand, so the two rows show
# whether `Policy` costs anything beyond its parts. Each peer row stacks the libraries a user would
# otherwise pick, in the same order. The cost of each layer alone is in the groups above.

ATTEMPT_LIMIT = 5.0
"""Seconds each attempt may take, in every row of the Policy groups (never reached)."""


def buttress_policy(fn: Callable[..., Any]) -> Callable[..., Any]:
    name = f"bench-policy-{fn.__name__}-{next(_breaker_names)}"
    return Policy(
        retry=retry(on=ConnectionError, attempts=3),
        breaker=CircuitBreaker(name, fail_max=FAIL_MAX, reset_timeout=RESET_TIMEOUT),
        timeout=ATTEMPT_LIMIT,
    )(fn)


def buttress_stacked(fn: Callable[..., Any]) -> Callable[..., Any]:
    """What `buttress_policy` builds, written as three decorators."""
    return buttress_retry(buttress_breaker(timeout(ATTEMPT_LIMIT)(fn)))


def elapsed_check(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A limit on a ``def`` by hand: time the call and raise if it ran over.

    No peer bounds a ``def`` cheaply: a thread per call (``func_timeout``) or
    ``SIGALRM`` (main thread only, Unix only) would dwarf the rest. Like
    Buttress's `timeout` on a ``def``, this reports the overrun afterwards.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        began = time.monotonic()
        result = fn(*args, **kwargs)
        if time.monotonic() - began > ATTEMPT_LIMIT:
            raise TimeoutError(f"{fn.__name__} took over {ATTEMPT_LIMIT}s")
        return result

    return wrapper


def asyncio_timeout(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """The standard library's per-call limit for a coroutine: ``asyncio.timeout``."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        async with asyncio.timeout(ATTEMPT_LIMIT):
            return await fn(*args, **kwargs)

    return wrapper


@pytest.mark.benchmark(group="resilience.policy-success")
class TestPolicySuccess:
    def test_bare_call(self, reference):
        assert reference(add_one, 1) == 2

    def test_pass_through(self, baseline):
        assert baseline(pass_through(add_one), 1) == 2

    def test_tenacity_pybreaker_elapsed_check(self, peer):
        """tenacity over pybreaker over `elapsed_check`: the sync stack users would write."""
        stacked = tenacity_retry(pybreaker_breaker(elapsed_check(add_one)))
        assert peer(stacked, 1) == 2

    def test_stamina_pybreaker_elapsed_check(self, peer):
        """The same stack with stamina for the retry."""
        stacked = stamina_retry(pybreaker_breaker(elapsed_check(add_one)))
        assert peer(stacked, 1) == 2

    def test_hand_stacked(self, ours):
        assert ours(buttress_stacked(add_one), 1) == 2

    def test_policy(self, ours):
        assert ours(buttress_policy(add_one), 1) == 2


@pytest.mark.benchmark(group="resilience.policy-success-async")
class TestPolicySuccessAsync:
    def test_bare_call(self, reference, drive):
        assert reference(drive(async_add_one)) == EXPECTED

    def test_pass_through(self, baseline, drive):
        assert baseline(drive(async_pass_through(async_add_one))) == EXPECTED

    def test_tenacity_purgatory_asyncio_timeout(self, peer, drive):
        """tenacity over purgatory over `asyncio_timeout`.

        purgatory, not pybreaker: pybreaker never counts an async failure (see
        ``resilience.breaker-closed-async``), so it would not be a breaker here.
        """
        stacked = tenacity_retry(purgatory_async_breaker(asyncio_timeout(async_add_one)))
        assert peer(drive(stacked)) == EXPECTED

    def test_stamina_purgatory_asyncio_timeout(self, peer, drive):
        """The same stack with stamina for the retry."""
        stacked = stamina_retry(purgatory_async_breaker(asyncio_timeout(async_add_one)))
        assert peer(drive(stacked)) == EXPECTED

    def test_hand_stacked(self, ours, drive):
        assert ours(drive(buttress_stacked(async_add_one))) == EXPECTED

    def test_policy(self, ours, drive):
        assert ours(drive(buttress_policy(async_add_one))) == EXPECTED
