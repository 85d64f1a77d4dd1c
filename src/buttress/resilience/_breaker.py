"""A circuit breaker: stop calling a dependency that keeps failing, then probe it.

The state machine lives here once; the sync and async paths only differ in
whether they await the protected call and, with a storage, in where its I/O
runs: async callers hand it to a worker thread, never blocking the event loop.
A lock guards the counters and is never held while the protected function runs
or the storage is read or written. With a pybreaker storage, the state is
shared between processes and cached locally for ``sync_interval`` seconds, so a
closed circuit costs no round trip per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import functools
import itertools
import math
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    NamedTuple,
    ParamSpec,
    TypeAlias,
    TypeVar,
    cast,
)

from buttress.errors import CircuitOpenError, ConfigurationError
from buttress.resilience._base import (
    check_callable,
    check_count,
    check_exception_filter,
    check_listeners,
    check_seconds,
    is_async,
    is_exception_types,
    logger,
    notify,
    refuse_bare,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from buttress.resilience._base import ResilienceListener

__all__ = ["CircuitBreaker", "CircuitState", "circuit_breaker", "isolated_breakers"]

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")

Exclude: TypeAlias = (
    type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
)

# What a finished call tells the breaker.
_SUCCESS, _FAILURE, _NEUTRAL = 1, 2, 3
# The ticket of a call admitted while closed: it holds no half-open permit.
_CLOSED_TICKET = 0
# What `_enter` answers, without writing, when admission would write a state change.
_DEFERRED = (-1, -1)
# How long a trial may hold its permit before another caller may take it over.
_DEFAULT_LEASE = 30.0


class CircuitState(enum.Enum):
    """The state of a `CircuitBreaker`; values are pybreaker's state names."""

    CLOSED = "closed"
    """Calls go through; consecutive failures are counted."""
    OPEN = "open"
    """Calls are refused with `CircuitOpenError` until ``reset_timeout`` passes."""
    HALF_OPEN = "half-open"
    """A few trial calls go through; their outcome closes or re-opens the circuit."""


class BreakerSnapshot(NamedTuple):
    """A circuit breaker's local state, as `CircuitBreaker.snapshot` takes it."""

    state: CircuitState
    """The state."""
    failures: int
    """Consecutive failures counted while closed."""
    opened_at: float
    """When the circuit opened, on the breaker's clock."""


FRESH = BreakerSnapshot(CircuitState.CLOSED, 0, 0.0)
"""The state of a new breaker: closed, no failures."""


class _Registry(type):
    """Makes ``CircuitBreaker(name, ...)`` return the live breaker of that name."""

    _breakers: weakref.WeakValueDictionary[str, CircuitBreaker]
    _every: weakref.WeakSet[CircuitBreaker]
    _lock: threading.Lock

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        candidate = cast("CircuitBreaker", super().__call__(*args, **kwargs))
        with cls._lock:
            existing = cls._breakers.get(candidate.name)
            if existing is None:
                candidate.claim_storage(cls._breakers.values())
                cls._breakers[candidate.name] = candidate
                cls._every.add(candidate)
                return candidate
        if existing.settings() != candidate.settings():
            differences = ", ".join(
                f"{key}={theirs!r} (existing: {ours!r})"
                for (key, ours), (_, theirs) in zip(
                    existing.settings(), candidate.settings(), strict=True
                )
                if ours != theirs
            )
            raise ConfigurationError(
                f"a circuit breaker named {candidate.name!r} already exists with other "
                f"settings: {differences}; use the same settings to share it, or another "
                "name for a separate breaker"
            )
        return existing


class CircuitBreaker(metaclass=_Registry):
    """Stop calling a failing dependency for a while, then let a few trial calls through.

    While the circuit is **closed**, calls go through and consecutive failures
    are counted; a success resets the count. At ``fail_max`` failures the
    circuit **opens**: calls fail at once with `CircuitOpenError` (carrying
    the breaker's name and the seconds left) without calling the function.
    After ``reset_timeout`` seconds it is **half-open**: exactly
    ``half_open_max_calls`` trial calls are let through and the others are
    refused. One failed trial re-opens the circuit; when every trial has
    succeeded, it closes. A trial's outcome counts however long it takes, so a
    dependency slower than ``reset_timeout`` but healthy closes the circuit.
    Only a trial still running after ``probe_lease`` seconds (30 by default,
    whatever ``reset_timeout`` is) may have its permit taken over by the next
    caller, and then its outcome no longer counts.

    Excluded exceptions pass through and count neither way (a "not found" is
    an answer, not an outage). ``asyncio.CancelledError``,
    ``KeyboardInterrupt`` and other ``BaseException`` subclasses do not count
    either.
    A call that started before the circuit changed state does not count in the
    new state.

    Breakers are registered by name: ``CircuitBreaker("payments")`` returns
    the breaker already named ``"payments"`` if there is one (with the same
    settings; other settings are a `ConfigurationError`), so every part of a
    service guarding one dependency shares its state.

    Use a breaker as a decorator (on ``def`` and ``async def``), or call
    through it with `call` and `acall`. No lock is held while the protected
    function runs, and a call through a closed circuit does no more than read
    two attributes around the call.

    **Shared state.** Pass a ``redis.Redis`` client as ``storage`` to share the
    state between processes through Redis, under keys named after the breaker
    (or any pybreaker storage, such as ``pybreaker.CircuitRedisStorage`` with
    ``namespace=``). Given a client, the breaker writes nothing until its first
    state change, so it can be made, and used on its local state, while Redis
    is down; it joins the shared state when Redis answers.
    Each process then reads the shared state at most once per
    ``sync_interval`` seconds and trusts its copy in between: a circuit opened
    by another process is seen within ``sync_interval`` seconds, and a closed
    circuit costs no round trip per call. Failures are counted in the storage
    (so every process's failures add up), state changes are written at once,
    counters are never reset when a process starts, and the half-open trial
    limit applies per process. If the storage fails, the breaker logs it and
    goes on with its local state. For ``async def`` callers the storage is read
    and written in the event loop's default executor, never on the loop itself,
    so listeners may then be called from a worker thread.

    Args:
        name: Identifies the breaker in the registry, errors, logs and listener
            calls.
        fail_max: Consecutive failures that open the circuit, at least 1.
        reset_timeout: Seconds the circuit stays open before trial calls.
        exclude: Exceptions that do not count: an exception class, a tuple of
            them, or a predicate taking the exception and returning True to
            exclude it.
        half_open_max_calls: Trial calls let through when half-open, and the
            successes needed to close the circuit again.
        storage: A ``redis.Redis`` client, or a ``pybreaker.CircuitBreakerStorage``,
            to share the state between processes; local memory by default.
        listeners: `ResilienceListener` objects told of state changes and
            refused calls.
        probe_lease: Seconds after which a trial call still running may have its
            permit taken over by another caller (its outcome then no longer
            counts); 30 by default, independent of ``reset_timeout``. Make it
            longer than the dependency's slowest healthy answer.
        sync_interval: With a storage, seconds between reads of the shared
            state.
        clock: Seconds, for tests; time.monotonic (and, with a storage, the
            wall clock) by default.

    Raises:
        ConfigurationError: For an invalid setting, a Redis storage without a
            namespace or with one another breaker uses, or a name already used
            with other settings.

    Example:
        ```python
        from buttress.errors import CircuitOpenError
        from buttress.resilience import CircuitBreaker, CircuitState

        inventory = CircuitBreaker("inventory-example", fail_max=2, reset_timeout=30.0)

        @inventory
        def stock(sku: str) -> int:
            raise ConnectionError("inventory service is down")

        for _ in range(2):
            try:
                stock("A-1")
            except ConnectionError:
                pass
        assert inventory.state is CircuitState.OPEN
        try:
            stock("A-1")  # refused at once: the service is not called
        except CircuitOpenError as error:
            assert error.name == "inventory-example" and error.remaining > 29
        ```
    """

    _breakers: ClassVar[weakref.WeakValueDictionary[str, CircuitBreaker]] = (
        weakref.WeakValueDictionary()
    )
    _every: ClassVar[weakref.WeakSet[CircuitBreaker]] = weakref.WeakSet()
    _lock: ClassVar[threading.Lock] = threading.Lock()

    __slots__ = (
        "__weakref__",
        "_clock",
        "_closed_gen",
        "_excluded",
        "_failures",
        "_fresh_until",
        "_gen",
        "_io_lock",
        "_mutex",
        "_opened_at",
        "_probe_ok",
        "_probes",
        "_reachable",
        "_redis",
        "_resolution",
        "_state",
        "_syncing",
        "_tickets",
        "_unsynced",
        "_wall",
        "exclude",
        "fail_max",
        "half_open_max_calls",
        "listeners",
        "name",
        "probe_lease",
        "reset_timeout",
        "storage",
        "sync_interval",
    )

    def __init__(
        self,
        name: str,
        *,
        fail_max: int = 5,
        reset_timeout: float = 30.0,
        exclude: Exclude = (),
        half_open_max_calls: int = 1,
        storage: object | None = None,
        listeners: Sequence[ResilienceListener] = (),
        probe_lease: float | None = None,
        sync_interval: float = 1.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        refuse_bare(name, 'circuit_breaker("payments")')
        if not name or not isinstance(name, str):
            raise ConfigurationError(
                f"CircuitBreaker needs a name (a non-empty str naming the dependency), got {name!r}"
            )
        check_count(fail_max, f"CircuitBreaker {name!r} fail_max", 1)
        check_seconds(
            reset_timeout, f"CircuitBreaker {name!r} reset_timeout", allow_zero=True, optional=False
        )
        check_count(half_open_max_calls, f"CircuitBreaker {name!r} half_open_max_calls", 1)
        check_seconds(
            probe_lease, f"CircuitBreaker {name!r} probe_lease", allow_zero=False, optional=True
        )
        check_seconds(
            sync_interval,
            f"CircuitBreaker {name!r} sync_interval",
            allow_zero=True,
            optional=False,
        )
        if math.isinf(reset_timeout):
            raise ConfigurationError(
                f"CircuitBreaker {name!r} reset_timeout must be finite, got {reset_timeout!r}"
            )
        self.name = name
        self.fail_max = fail_max
        self.reset_timeout = float(reset_timeout)
        self.exclude = exclude
        self._excluded = _exclusion(exclude, name)
        self.half_open_max_calls = half_open_max_calls
        self.storage = _check_storage(storage, name)
        self._redis = _is_redis_storage(self.storage)  # read and written through its client
        # pybreaker's Redis storage keeps opened_at to the whole second.
        self._resolution = 1.0 if self._redis else 0.0
        self.listeners = check_listeners(listeners, f"CircuitBreaker {name!r}")
        self.probe_lease = float(_DEFAULT_LEASE if probe_lease is None else probe_lease)
        self.sync_interval = float(sync_interval)
        self._clock = clock or time.monotonic
        self._wall = clock or time.time
        self._mutex = threading.Lock()
        self._io_lock = threading.Lock()  # storage writers take turns, outside the mutex
        self._state = CircuitState.CLOSED
        self._gen = 0
        # The generation while closed, None otherwise: the one read on the fast path.
        self._closed_gen: int | None = 0
        self._failures = 0
        self._opened_at = 0.0
        self._probes: dict[int, float] = {}  # half-open permits: ticket -> lease end
        self._probe_ok = 0
        self._tickets = itertools.count(1)
        # With a storage, the local copy is trusted until then (read on the first call).
        self._fresh_until = math.inf if self.storage is None else -math.inf
        self._syncing = False
        self._reachable = True  # False after a storage error, until a sync succeeds
        self._unsynced = False  # local changes not written to the storage yet

    # --- registry -------------------------------------------------------------------------

    def settings(self) -> tuple[tuple[str, object], ...]:
        """The settings two breakers of one name must share, as ``(name, value)`` pairs."""
        return (
            ("fail_max", self.fail_max),
            ("reset_timeout", self.reset_timeout),
            ("exclude", self.exclude),
            ("half_open_max_calls", self.half_open_max_calls),
            ("storage", _Same(self.storage)),
            ("listeners", self.listeners),
            ("probe_lease", self.probe_lease),
            ("sync_interval", self.sync_interval),
            ("clock", self._clock),
        )

    def claim_storage(self, others: Any) -> None:
        """Refuse a storage (or Redis namespace) that a breaker of another name already uses."""
        if self.storage is None:
            return
        mine = _storage_key(self.storage)
        for other in list(others):
            if other.storage is not None and _storage_key(other.storage) == mine:
                raise ConfigurationError(
                    f"CircuitBreaker {self.name!r} was given the storage that breaker "
                    f"{other.name!r} uses; breakers sharing keys would trip each other: give "
                    f"each its own storage (for Redis, namespace={self.name!r})"
                )

    @classmethod
    def registered(cls) -> dict[str, CircuitBreaker]:
        """Every live breaker by name, for health checks and dashboards.

        Returns:
            A snapshot: name to breaker.
        """
        with cls._lock:
            return dict(cls._breakers)

    @classmethod
    def live(cls, name: str) -> CircuitBreaker | None:
        """The breaker registered under ``name`` now, if any (no copy, no lock)."""
        return cls._breakers.get(name)

    @classmethod
    @contextlib.contextmanager
    def isolated(cls) -> Iterator[None]:
        """Every breaker starts closed in the block; the registry and states come back after.

        `isolated_breakers` is this, for test suites.
        """
        with cls._lock:
            registered = dict(cls._breakers)
            every = list(cls._every)
        saved = [(breaker, breaker.snapshot()) for breaker in every]
        for breaker in every:
            breaker.restore(FRESH)
        try:
            yield
        finally:
            with cls._lock:
                for name, breaker in list(cls._breakers.items()):
                    if registered.get(name) is not breaker:  # made in the block: forgotten
                        del cls._breakers[name]
                for name, breaker in registered.items():
                    cls._breakers.setdefault(name, breaker)
            for breaker, snapshot in saved:
                breaker.restore(snapshot)

    def snapshot(self) -> BreakerSnapshot:
        """The breaker's local state now, to put back later with `restore`."""
        with self._mutex:
            return BreakerSnapshot(self._state, self._failures, self._opened_at)

    def restore(self, snapshot: BreakerSnapshot) -> None:
        """Put back a state taken by `snapshot`, telling no listener.

        Calls in flight when it happens do not count (a new generation starts).
        A storage is neither read nor written: shared state stays shared.
        """
        with self._mutex:
            self._state = snapshot.state
            self._gen += 1
            self._closed_gen = self._gen if snapshot.state is CircuitState.CLOSED else None
            self._probes.clear()
            self._probe_ok = 0
            self._failures = snapshot.failures
            self._opened_at = snapshot.opened_at

    # --- what users read ----------------------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """The state the next call will meet.

        An open circuit whose ``reset_timeout`` has passed reads as half-open.
        With a storage, a stale local copy is refreshed first.
        """
        if self._clock() >= self._fresh_until:
            self._sync()
        with self._mutex:
            if self._state is CircuitState.OPEN and self._remaining(self._clock()) <= 0:
                return CircuitState.HALF_OPEN
            return self._state

    @property
    def failures(self) -> int:
        """Consecutive failures counted while closed (with a storage: as last seen there)."""
        return self._failures

    def open(self) -> None:
        """Open the circuit now, as if ``fail_max`` failures had happened (for operators)."""
        self._force(CircuitState.OPEN)

    def close(self) -> None:
        """Close the circuit now and forget counted failures (for operators and tests)."""
        self._force(CircuitState.CLOSED)

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker({self.name!r}, state={self._state.value}, "
            f"failures={self._failures}/{self.fail_max})"
        )

    # --- calling ----------------------------------------------------------------------------

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn(*args, **kwargs)`` through the breaker.

        Returns:
            What ``fn`` returns.

        Raises:
            CircuitOpenError: The circuit is open (or half-open with every trial
                permit taken); ``fn`` was not called.
        """
        gen = self._closed_gen
        if gen is None or (self.storage is not None and self._clock() >= self._fresh_until):
            return self._guarded(fn, args, kwargs)
        try:
            result = fn(*args, **kwargs)
        except Exception as error:
            self._failed_closed(error, gen)
            raise
        if self._failures:
            self._succeeded_closed(gen)
        return result

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await ``fn(*args, **kwargs)`` through the breaker.

        Returns:
            What the awaited call returns.

        Raises:
            CircuitOpenError: The circuit is open (or half-open with every trial
                permit taken); ``fn`` was not called.
        """
        gen = self._closed_gen
        shared = self.storage is not None
        if gen is None or (shared and self._clock() >= self._fresh_until):
            return cast("R", await self._aguarded(fn, args, kwargs))
        try:
            result = await fn(*args, **kwargs)
        except Exception as error:
            if shared:
                await self._afailed_closed(error, gen)
            else:
                self._failed_closed(error, gen)
            raise
        if self._failures:
            if shared:
                await self._asucceeded_closed(gen)
            else:
                self._succeeded_closed(gen)
        return result

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Decorate ``fn`` (a ``def`` or ``async def``) so every call goes through the breaker.

        Returns:
            The wrapper, with ``fn``'s signature for type checkers.

        Raises:
            ConfigurationError: ``fn`` is not something a breaker can guard.
        """
        check_callable(fn, f"CircuitBreaker({self.name!r})")
        breaker = self
        failed, succeeded = self._failed_closed, self._succeeded_closed
        # Without a storage the local state is always fresh: skip the clock.
        timed = self.storage is not None
        clock = self._clock

        if is_async(fn):
            afn = cast("Callable[P, Any]", fn)
            guarded = self._aguarded
            # With a storage, failures and successes are written from a worker thread.
            afailed, asucceeded = self._afailed_closed, self._asucceeded_closed

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                gen = breaker._closed_gen
                if gen is None or (timed and clock() >= breaker._fresh_until):
                    return await guarded(afn, args, kwargs)
                try:
                    result = await afn(*args, **kwargs)
                except Exception as error:
                    if timed:
                        await afailed(error, gen)
                    else:
                        failed(error, gen)
                    raise
                if breaker._failures:
                    if timed:
                        await asucceeded(gen)
                    else:
                        succeeded(gen)
                return result

            return cast("Callable[P, T]", async_wrapper)

        sync_guarded = self._guarded

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            gen = breaker._closed_gen
            if gen is None or (timed and clock() >= breaker._fresh_until):
                return sync_guarded(fn, args, kwargs)
            try:
                result = fn(*args, **kwargs)
            except Exception as error:
                failed(error, gen)
                raise
            if breaker._failures:
                succeeded(gen)
            return result

        return wrapper

    # --- the general path: admission with a ticket, then the outcome -----------------------

    def _guarded(self, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
        ticket, gen = self._admit()
        try:
            result = fn(*args, **kwargs)
        except Exception as error:
            self._finish(ticket, gen, _NEUTRAL if self._excluded(error) else _FAILURE)
            raise
        except BaseException:
            self._finish(ticket, gen, _NEUTRAL)
            raise
        self._finish(ticket, gen, _SUCCESS)
        return result

    async def _aguarded(self, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        # With a storage, whatever may read or write it runs in a worker thread.
        shared = self.storage is not None
        ticket, gen = await self._aadmit() if shared else self._admit()
        try:
            result = await fn(*args, **kwargs)
        except Exception as error:
            outcome = _NEUTRAL if self._excluded(error) else _FAILURE
            if shared and outcome == _FAILURE:
                await _off_loop(self._finish, ticket, gen, outcome)
            else:
                self._finish(ticket, gen, outcome)
            raise
        except BaseException:  # cancelled: give a trial permit back at once (no storage I/O)
            self._finish(ticket, gen, _NEUTRAL)
            raise
        if not shared:
            self._finish(ticket, gen, _SUCCESS)
        elif ticket != _CLOSED_TICKET or self._failures:  # else there is nothing to write
            await _off_loop(self._finish, ticket, gen, _SUCCESS)
        return result

    def _admit(self) -> tuple[int, int]:
        """Let a call in (its ticket and generation) or raise `CircuitOpenError`."""
        now = self._clock()
        if self._sync_due(now):
            self._sync()  # also before a trial: another process may have closed it
            now = self._clock()
        return self._enter(now)

    async def _aadmit(self) -> tuple[int, int]:
        """`_admit` for async callers with a storage: a due sync runs in a worker thread.

        A caller cancelled meanwhile gives back the trial permit it may have got.
        """
        now = self._clock()
        if not self._sync_due(now):
            admitted = self._enter(now, write=False)
            if admitted is not _DEFERRED:
                return admitted
        admission = _in_thread(self._admit)
        try:
            return await asyncio.shield(admission)
        except asyncio.CancelledError:
            admission.add_done_callback(self._give_back)
            raise

    def _give_back(self, admission: asyncio.Future[tuple[int, int]]) -> None:
        """Return the permit of an admission nobody waits for any more (no storage I/O)."""
        if not admission.cancelled() and admission.exception() is None:
            ticket, gen = admission.result()
            self._finish(ticket, gen, _NEUTRAL)

    def _sync_due(self, now: float) -> bool:
        """Whether admission must read the storage first: the copy is stale, or a trial is due."""
        return now >= self._fresh_until or (
            self.storage is not None
            and self._state is CircuitState.OPEN
            and self._remaining(now) <= 0
        )

    def _enter(self, now: float, *, write: bool = True) -> tuple[int, int]:
        """Admit or refuse on the local state.

        Only a move to half-open writes to the storage; without ``write``, such
        a move is left undone and `_DEFERRED` returned, for `_admit` in a worker
        thread.
        """
        changes: list[tuple[CircuitState, CircuitState]] = []
        refused: float | None = None
        admitted = (_CLOSED_TICKET, 0)
        with self._mutex:
            if self._state is CircuitState.OPEN:
                remaining = self._remaining(now)
                if remaining > 0:
                    refused = remaining
                elif write:
                    self._move(CircuitState.HALF_OPEN, now, changes)
                else:
                    return _DEFERRED
            if refused is not None:
                pass
            elif self._state is CircuitState.CLOSED:
                admitted = (_CLOSED_TICKET, self._gen)
            else:
                refused = self._take_permit(now)
                if refused is None:
                    admitted = (next(self._tickets), self._gen)
                    self._probes[admitted[0]] = now + self.probe_lease
        if changes:
            self._announce(changes)
        if refused is not None:
            self._refuse(refused)
        return admitted

    def _take_permit(self, now: float) -> float | None:
        """In half-open (under the mutex): None if a permit is free, else the wait for one.

        A trial past its lease keeps its permit (and its outcome counts) until
        another caller needs the permit: then it is handed over, and the old
        trial's outcome no longer counts.
        """
        probes = self._probes
        if len(probes) + self._probe_ok < self.half_open_max_calls:
            return None
        oldest = min(probes, key=probes.__getitem__, default=None)
        if oldest is not None and probes[oldest] <= now:  # a trial that hung: hand its permit on
            del probes[oldest]
            return None
        return min(probes.values(), default=now) - now

    def _refuse(self, remaining: float) -> None:
        logger.debug("circuit %s refused a call (%.3fs left)", self.name, remaining)
        notify(self.listeners, "on_circuit_rejected", self.name, max(0.0, remaining))
        raise CircuitOpenError(self.name, remaining)

    def _finish(self, ticket: int, gen: int, outcome: int) -> None:
        if ticket == _CLOSED_TICKET:
            if outcome == _FAILURE:
                self._count_failure(gen)
            elif outcome == _SUCCESS and self._failures:
                self._succeeded_closed(gen)
            return
        changes: list[tuple[CircuitState, CircuitState]] = []
        with self._mutex:
            now = self._clock()
            lease_end = self._probes.pop(ticket, None) if gen == self._gen else None
            if lease_end is None:
                return  # a stale trial: its permit was handed to another caller
            if outcome == _FAILURE:
                self._move(CircuitState.OPEN, now, changes)
            elif outcome == _SUCCESS:
                self._probe_ok += 1
                if self._probe_ok >= self.half_open_max_calls:
                    self._move(CircuitState.CLOSED, now, changes)
        if changes:  # a neutral outcome never writes: `_give_back` relies on it
            self._announce(changes)

    # --- closed-state bookkeeping -----------------------------------------------------------

    def _failed_closed(self, error: Exception, gen: int) -> None:
        if not self._excluded(error):
            self._count_failure(gen)

    async def _afailed_closed(self, error: Exception, gen: int) -> None:
        """`_failed_closed` for async callers with a storage: counted in a worker thread."""
        if gen == self._gen and not self._excluded(error):
            await _off_loop(self._count_failure, gen)

    def _count_failure(self, gen: int) -> None:
        if gen != self._gen:
            return  # began in another state: not even the shared count hears of it
        shared = self._add_shared_failure() if self.storage is not None else None
        changes: list[tuple[CircuitState, CircuitState]] = []
        with self._mutex:
            if gen != self._gen:
                return  # the call began in another state: it does not count now
            # The shared count includes this failure (and every process's others).
            failures = self._failures + 1 if shared is None else max(self._failures, shared)
            self._failures = failures
            if failures >= self.fail_max:
                self._move(CircuitState.OPEN, self._clock(), changes)
        self._announce(changes)

    def _succeeded_closed(self, gen: int) -> None:
        with self._mutex:
            if gen != self._gen or not self._failures:
                return
            self._failures = 0
        if self.storage is not None:
            self._publish()

    async def _asucceeded_closed(self, gen: int) -> None:
        """`_succeeded_closed` for async callers with a storage: written in a worker thread."""
        await _off_loop(self._succeeded_closed, gen)

    # --- transitions ------------------------------------------------------------------------

    def _remaining(self, now: float) -> float:
        return self._opened_at + self.reset_timeout - now

    def _move(
        self,
        new: CircuitState,
        now: float,
        changes: list[tuple[CircuitState, CircuitState]],
        *,
        write: bool = True,
    ) -> None:
        """Change state (under the mutex); storage writes happen here, in order."""
        old = self._state
        self._state = new
        self._gen += 1
        self._closed_gen = self._gen if new is CircuitState.CLOSED else None
        self._probes.clear()
        self._probe_ok = 0
        if new is CircuitState.OPEN:
            self._opened_at = now
        elif new is CircuitState.CLOSED:
            self._failures = 0
        changes.append((old, new))
        if write and self.storage is not None:
            self._unsynced = True  # written by _announce, once the mutex is released

    def _announce(self, changes: list[tuple[CircuitState, CircuitState]]) -> None:
        """Write, log and tell listeners of state changes, outside the mutex."""
        if self._unsynced:
            self._publish()
        for old, new in changes:
            if new is CircuitState.OPEN:
                logger.warning(
                    "circuit %s opened (was %s): calls are refused for %.3fs",
                    self.name,
                    old.value,
                    self.reset_timeout,
                )
            else:
                logger.info("circuit %s is %s (was %s)", self.name, new.value, old.value)
            notify(self.listeners, "on_state_change", self.name, old, new)

    def _force(self, new: CircuitState) -> None:
        changes: list[tuple[CircuitState, CircuitState]] = []
        with self._mutex:
            self._move(new, self._clock(), changes)
        self._announce(changes)

    # --- shared state -----------------------------------------------------------------------

    def _publish(self) -> None:
        """Write the local state to the storage, outside the mutex.

        Writers take turns and each writes the state as it is when its turn
        comes, so the last write is always the newest state.
        """
        storage = self.storage
        if storage is None or not self._reachable:
            return  # written back by the first sync that reaches the storage
        with self._io_lock:
            with self._mutex:
                self._unsynced = False
                state, failures = self._state, self._failures
                opened = self._wall() - (self._clock() - self._opened_at)
            try:
                _write_shared(storage, state, failures, opened, redis=self._redis)
            except Exception:  # noqa: BLE001 - a storage fault must not break the call
                self._unsynced = True
                self._lost("writing the state")

    def _add_shared_failure(self) -> int | None:
        """Count a failure in the storage; the new shared count, or None if unreachable."""
        if not self._reachable:
            self._unsynced = True
            return None
        try:
            return _increment_shared(self.storage, redis=self._redis)
        except Exception:  # noqa: BLE001 - a storage fault must not break the call
            self._unsynced = True
            self._lost("counting a failure")
            return None

    def _lost(self, what: str) -> None:
        """The storage failed: go on locally, and try it again at the next sync."""
        if self._reachable:
            logger.warning(
                "circuit %s: the shared state is unreachable (%s failed); going on with the "
                "local state, and writing it back once the storage answers again",
                self.name,
                what,
                exc_info=True,
            )
        self._reachable = False

    def _sync(self) -> None:
        """Bring the local copy up to date with the storage (one thread at a time)."""
        storage = self.storage
        if storage is None:
            return
        with self._mutex:
            if self._syncing:
                return  # another thread is reading it: use the copy meanwhile
            self._syncing = True
            gen = self._gen
        reachable = True
        try:
            remote, shared_failures, opened_at = _read_shared(storage, redis=self._redis)
        except Exception:  # noqa: BLE001 - an unreachable store must not break the call
            self._lost("reading the state")
            reachable, remote, shared_failures, opened_at = False, None, 0, None
        finally:
            with self._mutex:
                self._syncing = False
        changes: list[tuple[CircuitState, CircuitState]] = []
        with self._mutex:
            if self._gen != gen:
                return  # the state changed while reading: what was read is older; read again
            now = self._clock()
            self._fresh_until = now + self.sync_interval
            if reachable:
                self._adopt(remote, shared_failures, opened_at, now, changes)
        self._announce(changes)

    def _adopt(
        self,
        remote: str | None,
        shared_failures: int,
        opened_at: datetime | None,
        now: float,
        changes: list[tuple[CircuitState, CircuitState]],
    ) -> None:
        """Take the state read from the storage as the local one (under the mutex)."""
        if not self._reachable:
            logger.info("circuit %s: the shared state is reachable again", self.name)
            self._reachable = True
        if self._unsynced:
            return  # local changes made while the storage was away are newer: _announce writes
        if remote is None:
            return  # nothing stored yet: keep the local state
        try:
            state = CircuitState(remote)
        except ValueError:
            logger.warning("circuit %s: storage holds no valid state: %r", self.name, remote)
            return
        if state is not self._state:
            self._move(state, now, changes, write=False)
            if state is CircuitState.OPEN:
                self._opened_at = self._local_time(opened_at, now)
        elif state is CircuitState.OPEN:  # re-opened elsewhere, later than we know?
            elsewhere = self._local_time(opened_at, now)
            if elsewhere > self._opened_at + self._resolution:
                self._opened_at = elsewhere
        if self._state is CircuitState.CLOSED:
            self._failures = shared_failures
            if shared_failures >= self.fail_max:
                self._move(CircuitState.OPEN, now, changes)

    def _local_time(self, opened_at: object, now: float) -> float:
        """When ``opened_at`` (a wall-clock datetime) was, on the local clock."""
        if not isinstance(opened_at, datetime):
            return now
        moment = opened_at.timestamp()
        moment += self._resolution  # stored to the second (Redis): never trial too early
        return now - max(0.0, self._wall() - moment)


class _Same:
    """Compares by identity: two breakers share a storage only if it is the same object."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and other.value is self.value

    def __hash__(self) -> int:
        return id(self.value)

    def __repr__(self) -> str:
        return repr(self.value)


def _exclusion(exclude: object, name: str) -> Callable[[BaseException], bool]:
    if isinstance(exclude, tuple) and not exclude:
        return _nothing
    check_exception_filter(exclude, f"CircuitBreaker {name!r} exclude", "exclude it")
    if is_exception_types(exclude):
        types = cast("tuple[type[BaseException], ...] | type[BaseException]", exclude)
        return lambda error: isinstance(error, types)
    return cast("Callable[[BaseException], bool]", exclude)


def _nothing(error: BaseException) -> bool:  # noqa: ARG001 - the signature of a predicate
    return False


def _check_storage(storage: object, name: str) -> object | None:
    """Accept a pybreaker storage; refuse a Redis storage without a namespace (pybreaker #88).

    A ``redis.Redis`` client becomes a Redis storage named after the breaker that
    touches Redis only when the state is first read or written.
    """
    if storage is None:
        return None
    redis = sys.modules.get("redis")
    if redis is not None and isinstance(storage, redis.Redis):
        return _deferred_redis_storage(storage, name)
    # Whoever built a pybreaker storage has imported pybreaker; do not import it here.
    pybreaker = sys.modules.get("pybreaker")
    if pybreaker is None or not isinstance(storage, pybreaker.CircuitBreakerStorage):
        raise ConfigurationError(
            f"CircuitBreaker {name!r} storage takes a pybreaker.CircuitBreakerStorage, such as "
            f"pybreaker.CircuitRedisStorage(..., namespace={name!r}); got {storage!r}"
        )
    if _is_redis_storage(storage) and not getattr(storage, "_namespace_name", None):
        raise ConfigurationError(
            f"CircuitBreaker {name!r} was given a CircuitRedisStorage without a namespace: "
            "every breaker would share the same Redis keys and trip together. Pass "
            f"CircuitRedisStorage(pybreaker.STATE_CLOSED, redis, namespace={name!r})"
        )
    return cast("object", storage)


def _deferred_redis_storage(client: Any, name: str) -> object:
    """A pybreaker Redis storage on ``client``, under ``name``, that connects on first use.

    pybreaker's own writes initial keys when it is made, so it cannot be made while
    Redis is down; the breaker reads missing keys as "nothing shared yet".
    """
    storage: object = _deferred_storage_class()(STATE_CLOSED_NAME, client, namespace=name)
    return storage


STATE_CLOSED_NAME = "closed"
"""pybreaker's name of the closed state."""


@functools.cache
def _deferred_storage_class() -> type:
    import pybreaker  # noqa: PLC0415 - only breakers sharing state through Redis need it

    class DeferredRedisStorage(pybreaker.CircuitRedisStorage):
        def _initialize_redis_state(self, state: str) -> None:
            """Write nothing now: the breaker writes its state at its first change."""

    return DeferredRedisStorage


def _is_redis_storage(storage: object) -> bool:
    pybreaker = sys.modules.get("pybreaker")
    return pybreaker is not None and isinstance(storage, pybreaker.CircuitRedisStorage)


def _in_thread(fn: Callable[..., R], *args: Any) -> asyncio.Future[R]:
    """Start ``fn(*args)`` in the running loop's default executor, in the caller's context."""
    call = functools.partial(contextvars.copy_context().run, fn, *args)
    return asyncio.get_running_loop().run_in_executor(None, call)


async def _off_loop(fn: Callable[..., R], *args: Any) -> R:
    """Run blocking storage I/O in a worker thread, to its end even if the caller is cancelled."""
    return await asyncio.shield(_in_thread(fn, *args))


def _storage_key(storage: object) -> object:
    namespace = getattr(storage, "_namespace_name", None)
    return ("redis", namespace) if namespace else id(storage)


def _write_shared(
    storage: Any, state: CircuitState, failures: int, opened: float, *, redis: bool
) -> None:
    """Write a whole state; raises if the store is unreachable.

    pybreaker's Redis storage (``redis``) logs and swallows write errors, so for
    it write its keys in one transaction through its own client, errors included.
    """
    if redis:
        pipe = storage._redis.pipeline(transaction=True)  # noqa: SLF001 - see above
        key = storage._namespace  # noqa: SLF001
        pipe.set(key("fail_counter"), failures)
        pipe.set(key("success_counter"), 0)
        if state is CircuitState.OPEN:
            pipe.set(key("opened_at"), int(opened))
        pipe.set(key("state"), state.value)
        pipe.execute()
        return
    storage.reset_success_counter()
    storage.reset_counter()
    for _ in range(failures):  # the storage API can only count up
        storage.increment_counter()
    if state is CircuitState.OPEN:
        storage.opened_at = datetime.fromtimestamp(opened, UTC)
    storage.state = state.value


def _increment_shared(storage: Any, *, redis: bool) -> int:
    """Count one failure in the storage; the new count. Raises if unreachable."""
    if redis:
        return int(storage._redis.incr(storage._namespace("fail_counter")))  # noqa: SLF001
    storage.increment_counter()
    return int(storage.counter)


def _read_shared(storage: Any, *, redis: bool) -> tuple[str | None, int, datetime | None]:
    """The shared state, failure count and opening time; raises if the store is unreachable.

    pybreaker's Redis storage (``redis``) answers "closed" when Redis is down,
    which would close an open circuit; so for it, read its keys in one round
    trip, errors included, through its own client and key names.
    """
    if redis:
        pipe = storage._redis.pipeline(transaction=False)  # noqa: SLF001 - see above
        for key in ("state", "fail_counter", "opened_at"):
            pipe.get(storage._namespace(key))  # noqa: SLF001
        state, counter, opened = pipe.execute()
        return (
            state.decode() if state is not None else None,
            int(counter or 0),
            datetime.fromtimestamp(int(opened), UTC) if opened else None,
        )
    return storage.state, int(storage.counter or 0), storage.opened_at


def circuit_breaker(
    name: str,
    *,
    fail_max: int = 5,
    reset_timeout: float = 30.0,
    exclude: Exclude = (),
    half_open_max_calls: int = 1,
    storage: object | None = None,
    listeners: Sequence[ResilienceListener] = (),
    probe_lease: float | None = None,
    sync_interval: float = 1.0,
) -> CircuitBreaker:
    """The decorator-factory spelling of `CircuitBreaker`: ``@circuit_breaker("name", ...)``.

    Functions decorated with the same name share one breaker (see
    `CircuitBreaker` for every argument).

    Returns:
        The registered `CircuitBreaker` of that name, which decorates functions.

    Example:
        ```python
        from buttress.resilience import CircuitState, circuit_breaker

        @circuit_breaker("search-example", fail_max=3)
        async def search(query: str) -> list[str]:
            return [query]

        @circuit_breaker("search-example", fail_max=3)
        async def suggest(prefix: str) -> list[str]:
            return [prefix]

        assert circuit_breaker("search-example", fail_max=3).state is CircuitState.CLOSED
        ```
    """
    return CircuitBreaker(
        name,
        fail_max=fail_max,
        reset_timeout=reset_timeout,
        exclude=exclude,
        half_open_max_calls=half_open_max_calls,
        storage=storage,
        listeners=listeners,
        probe_lease=probe_lease,
        sync_interval=sync_interval,
    )


def isolated_breakers() -> contextlib.AbstractContextManager[None]:
    """Give a block (a test) fresh circuit breakers, and put everything back after it.

    In the block, every live breaker starts closed with no failures counted, so a
    test never meets a circuit an earlier test opened. When it ends, breakers
    made in the block leave the registry, so a later test may make one of the
    same name with other settings, and the breakers that existed before get
    back the state they had. Listeners are not told of these resets. A breaker
    with a storage keeps sharing its state through it: give each test run its
    own storage namespace. The ``fresh_breakers`` fixture of `buttress.testing`
    wraps every test that asks for it in this block.

    Example:
        ```python
        from buttress.resilience import CircuitBreaker, CircuitState, isolated_breakers

        payments = CircuitBreaker("payments-isolation-example", fail_max=1)
        payments.open()  # an earlier test left it open
        with isolated_breakers():
            assert payments.state is CircuitState.CLOSED  # fresh for this test
            scratch = CircuitBreaker("scratch-example", fail_max=1)
        assert payments.state is CircuitState.OPEN  # as it was before the block
        assert "scratch-example" not in CircuitBreaker.registered()
        assert CircuitBreaker("scratch-example", fail_max=9) is not scratch  # no collision
        ```

    Returns:
        The context manager.
    """
    return CircuitBreaker.isolated()
