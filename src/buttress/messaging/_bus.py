"""The message bus: runs a command's handler, then the handlers of the events it caused.

`MessageBus` and `AsyncMessageBus` are thin drivers over one `_Core`, which
holds every decision without I/O: which handler, which dependencies, which
objects are units of work, what a failure does.
"""

from __future__ import annotations

import collections
import dataclasses
import inspect
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from buttress.domain import DomainEvent
from buttress.errors import ConfigurationError
from buttress.messaging._commands import Command
from buttress.messaging._context import CAUSATION, CORRELATION

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from buttress.messaging._handlers import Handler, Handlers

__all__ = ["AsyncMessageBus", "DispatchReport", "HandlerFailure", "MessageBus"]

logger = logging.getLogger("buttress.messaging")

MAX_EVENTS = 10_000
"""Events one dispatch handles at most: past it, a cycle of events is assumed."""


@dataclasses.dataclass(frozen=True, slots=True)
class HandlerFailure:
    """An event handler that raised; the other handlers ran on."""

    handler: str
    """The handler's module and qualified name."""
    event: DomainEvent
    """The event it was handling."""
    error: Exception
    """What it raised."""


@dataclasses.dataclass(slots=True)
class DispatchReport:
    """What one `handle` did: the command's result, the events handled, the failures.

    Event handlers' failures are reported here (and logged, and passed to the
    bus's ``on_failure``), never raised: the command's work is committed by then.
    """

    message: Command | DomainEvent
    """The command or event handled."""
    result: Any = None
    """What the command's handler returned (``None`` for an event)."""
    events: list[DomainEvent] = dataclasses.field(default_factory=list)
    """Every event handled, in the order handled (breadth-first)."""
    failures: list[HandlerFailure] = dataclasses.field(default_factory=list)
    """The event handlers that raised, in order."""

    @property
    def ok(self) -> bool:
        """Whether every event handler succeeded."""
        return not self.failures


Plan = tuple[tuple[str, Any], ...]


class _Core:
    """The bus's decisions: handlers, their dependencies, units of work, failures."""

    __slots__ = (
        "_busy",
        "_events",
        "_plans",
        "_providers",
        "_version",
        "handlers",
        "on_failure",
    )

    def __init__(
        self,
        handlers: Handlers,
        dependencies: Mapping[str, Any] | Any,
        on_failure: Callable[[HandlerFailure], object] | None,
    ) -> None:
        self.handlers = handlers
        self.on_failure = on_failure
        self._busy: dict[int, object] = {}  # units of work in use: id -> their dispatch
        self._version = -1
        self._plans: dict[int, tuple[Plan, tuple[str, ...]]] = {}
        self._events: dict[type[DomainEvent], tuple[Handler, ...]] = {}
        self._providers = _providers_of(dependencies)

    def _fresh(self) -> None:
        """Forget what was derived from the handlers if one was registered since."""
        if self._version != self.handlers.version:
            self._plans.clear()
            self._events.clear()
            self._version = self.handlers.version

    def command_handler(self, message: object) -> Handler:
        if not isinstance(message, Command):
            raise ConfigurationError(
                f"the bus handles Command and DomainEvent instances, not {message!r}"
            )
        return self.handlers.command_handler(type(message))

    def event_handlers(self, event_type: type[DomainEvent]) -> tuple[Handler, ...]:
        self._fresh()
        found = self._events.get(event_type)
        if found is None:
            found = self._events[event_type] = self.handlers.event_handlers(event_type)
        return found

    def plan(self, handler: Handler) -> Plan:
        """The ``(name, provider)`` pairs ``handler`` is called with.

        Raises:
            ConfigurationError: A parameter without a default has no provider.
        """
        self._fresh()
        found = self._plans.get(id(handler))
        if found is None:
            providers = self._providers
            missing = tuple(name for name in handler.required if name not in providers)
            names = handler.required + tuple(n for n in handler.optional if n in providers)
            plan = tuple((name, providers[name]) for name in names if name in providers)
            found = self._plans[id(handler)] = (plan, missing)
        plan, missing = found
        if missing:
            raise ConfigurationError(_missing(handler, missing))
        return plan

    def claim(self, handler: Handler, values: Mapping[str, Any]) -> list[Any]:
        """The units of work among ``values``, marked in use by this dispatch.

        Raises:
            ConfigurationError: One is in use by another dispatch running now
                (its provider is a singleton): nothing is marked.
        """
        units = [(name, value) for name, value in values.items() if _is_unit(value)]
        if not units:
            return []
        busy = self._busy
        token = object()  # this dispatch: setdefault and pop are atomic, no lock needed
        claimed: list[Any] = []
        for name, unit in units:
            if busy.setdefault(id(unit), token) is not token:
                for taken in claimed:
                    busy.pop(id(taken), None)
                raise ConfigurationError(
                    f"the dependency {name!r} gave {handler.name} a unit of work another "
                    "dispatch is using; every dispatch needs its own: provide units with a "
                    "factory (providers.Factory, or a function making one), not a singleton"
                )
            claimed.append(unit)
        return claimed

    def release(self, units: list[Any], events: list[DomainEvent]) -> None:
        """Add the events of ``units``' committed work to ``events``, then give them back.

        Collected before they are given back: a dispatch that takes a unit next
        cannot take this one's events.
        """
        try:
            for unit in units:
                events.extend(unit.collect_events())
        finally:
            busy = self._busy
            for unit in units:
                busy.pop(id(unit), None)

    def failed(
        self, report: DispatchReport, handler: str, event: DomainEvent, error: Exception
    ) -> HandlerFailure:
        """Record a handler's failure in ``report`` and log it (the bus tells the listener)."""
        failure = HandlerFailure(handler=handler, event=event, error=error)
        report.failures.append(failure)
        logger.error(
            "event handler %s failed on %s; the other handlers run on",
            handler,
            event.event_name,
            exc_info=error,
        )
        return failure

    def listener_failed(self, error: Exception) -> None:
        logger.error("the bus's on_failure listener raised; ignored", exc_info=error)

    def too_many(self, report: DispatchReport, event: DomainEvent, bus: str) -> HandlerFailure:
        """Record that ``report`` reached `MAX_EVENTS`: the rest is dropped."""
        error = ConfigurationError(
            f"one dispatch reached {MAX_EVENTS} events, the last {event.event_name}; the "
            "remaining events are dropped: do event handlers cause each other in a cycle?"
        )
        return self.failed(report, f"buttress.messaging.{bus}", event, error)

    def problems(self, *, asynchronous: bool) -> list[str]:
        """Why some handlers could not run on this bus (empty when every one can)."""
        found = []
        for handler in self.handlers.all():
            missing = [name for name in handler.required if name not in self._providers]
            if missing:
                found.append(_missing(handler, missing))
            if handler.is_async and not asynchronous:
                found.append(f"{handler.name} is async def: run it on an AsyncMessageBus")
            if not asynchronous:
                found.extend(
                    f"{handler.name} gets {name!r} from an asynchronous provider: "
                    "run it on an AsyncMessageBus"
                    for name in (*handler.required, *handler.optional)
                    if name in self._providers and _asynchronous(self._providers[name])
                )
        return found

    def check(self, *, asynchronous: bool) -> None:
        problems = self.problems(asynchronous=asynchronous)
        if problems:
            raise ConfigurationError.from_problems(
                "the message bus cannot run every handler", problems
            )


def _missing(handler: Handler, names: Iterable[str]) -> str:
    listed = ", ".join(repr(name) for name in names)
    return (
        f"{handler.name} needs {listed}, which no dependency provides: pass "
        "dependencies={name: provider} (or a container with providers of those names)"
    )


def _providers_of(dependencies: Mapping[str, Any] | Any) -> dict[str, Any]:
    """The providers by name: a mapping's items, or a dependency-injector container's."""
    if dependencies is None:
        return {}
    if isinstance(dependencies, Mapping):
        found = dict(dependencies)
    else:
        providers = getattr(dependencies, "providers", None)
        if not isinstance(providers, Mapping):
            raise ConfigurationError(
                f"dependencies= takes a mapping of names to providers, or a "
                f"dependency-injector container, not {dependencies!r}"
            )
        found = dict(providers)
    for name, provider in found.items():
        if not callable(provider):
            raise ConfigurationError(
                f"the dependency {name!r} is {provider!r}, not a provider: pass a "
                "dependency-injector provider or a function called at each dispatch "
                "(lambda: value for a constant)"
            )
    return found


class MessageBus:
    """Runs each command's handler, then the inline handlers of the events it caused.

    Every dispatch calls the providers of the dependencies its handler names,
    so a unit-of-work factory gives each its own unit; after the handler
    returns, the events of work its units committed are handled breadth-first
    (each handler in its own dispatch, events they cause queued after). A
    command handler's error reaches the caller (after the events of what it
    committed before failing are handled); an event handler's failure is
    isolated: logged under ``buttress.messaging``, passed to ``on_failure``,
    listed in the report, and the other handlers run on.

    Args:
        handlers: The registered handlers.
        dependencies: A mapping of parameter names to providers (any callable:
            a dependency-injector provider, a class, a function), or a
            dependency-injector container, whose providers are used by name.
            Each is called at every dispatch of a handler that names it.
        on_failure: Called with each event handler's `HandlerFailure`.

    Raises:
        ConfigurationError: A dependency is not callable.

    Example:
        ```python
        from buttress.messaging import Command, Handlers, MessageBus

        class Double(Command):
            value: int

        handlers = Handlers()

        @handlers.command(Double)
        def double(command: Double, factor: int) -> int:
            return command.value * factor

        bus = MessageBus(handlers, dependencies={"factor": lambda: 2})
        assert bus.handle(Double(value=21)).result == 42
        ```
    """

    __slots__ = ("_core",)

    def __init__(
        self,
        handlers: Handlers,
        *,
        dependencies: Mapping[str, Any] | Any = None,
        on_failure: Callable[[HandlerFailure], object] | None = None,
    ) -> None:
        if on_failure is not None and _asynchronous(on_failure):
            raise ConfigurationError(
                "on_failure is async def: a MessageBus cannot await it; pass a plain function "
                "or use an AsyncMessageBus"
            )
        self._core = _Core(handlers, dependencies, on_failure)

    def handle(self, message: Command | DomainEvent) -> DispatchReport:
        """Run the handler of a command (or the handlers of an event), then the events' handlers.

        Args:
            message: A command (its one handler runs) or an event (its inline
                handlers run, as if a handler's unit had committed it).

        Returns:
            The report: the command handler's result, every event handled,
            every event handler that failed.

        Raises:
            ConfigurationError: No handler is registered for the command, a
                dependency it names is not provided, it is ``async def``, or
                its unit of work is in use by another dispatch.
            Exception: Whatever the command's handler raised.
        """
        token = CORRELATION.set(_id_of(message)) if CORRELATION.get() is None else None
        try:
            return self._handle(message)
        finally:
            if token is not None:
                CORRELATION.reset(token)

    def _handle(self, message: Command | DomainEvent) -> DispatchReport:
        core = self._core
        report = DispatchReport(message)
        if isinstance(message, DomainEvent):
            self._publish([message], report)
            return report
        handler = core.command_handler(message)
        events: list[DomainEvent] = []
        try:
            report.result = self._run(handler, message, events)
        except Exception:
            if events:  # what it committed before it failed happened: handle those events
                self._publish(events, report)
            raise
        if events:
            self._publish(events, report)
        return report

    def check(self) -> None:
        """Prove every registered handler can run on this bus.

        `buttress.di.check` calls it for every bus a container provides.

        Raises:
            ConfigurationError: Listing each handler with a parameter no
                dependency provides, and each ``async def`` handler.
        """
        self._core.check(asynchronous=False)

    def problems(self) -> list[str]:
        """What `check` would raise for, one line per problem (empty when every handler can run)."""
        return self._core.problems(asynchronous=False)

    def _run(self, handler: Handler, message: Any, events: list[DomainEvent]) -> Any:
        core = self._core
        if handler.is_async:
            raise ConfigurationError(f"{handler.name} is async def: run it on an AsyncMessageBus")
        values = {}
        for name, provider in core.plan(handler):
            value = provider()
            if _awaitable(value):
                _discard(value)
                raise ConfigurationError(
                    f"the provider of {name!r} for {handler.name} is asynchronous: "
                    "use an AsyncMessageBus"
                )
            values[name] = value
        units = core.claim(handler, values)
        cause = CAUSATION.set(_id_of(message))
        try:
            result = handler.function(message, **values)
        finally:
            CAUSATION.reset(cause)
            if units:
                core.release(units, events)
        if _awaitable(result):
            _discard(result)
            raise ConfigurationError(
                f"{handler.name} returned an awaitable, so it did not run: run it on an "
                "AsyncMessageBus"
            )
        return result

    def _publish(self, events: list[DomainEvent], report: DispatchReport) -> None:
        core = self._core
        queue = collections.deque(events)
        while queue:
            event = queue.popleft()
            if len(report.events) >= MAX_EVENTS:
                self._tell(core.too_many(report, event, "MessageBus"))
                return
            report.events.append(event)
            for handler in core.event_handlers(type(event)):
                caused: list[DomainEvent] = []
                try:
                    self._run(handler, event, caused)
                except Exception as error:  # noqa: BLE001 - isolated, whatever it is
                    self._tell(core.failed(report, handler.name, event, error))
                queue.extend(caused)

    def _tell(self, failure: HandlerFailure) -> None:
        """Pass ``failure`` to ``on_failure``; a listener's own error is logged, not raised."""
        listener = self._core.on_failure
        if listener is None:
            return
        try:
            listener(failure)
        except Exception as error:  # noqa: BLE001 - the listener cannot fail the dispatch
            self._core.listener_failed(error)


class AsyncMessageBus:
    """`MessageBus` for asyncio: ``async def`` handlers are awaited.

    Plain ``def`` handlers are called as they are (they block the event loop
    while they run). Providers that return awaitables (dependency-injector's
    async providers) are awaited. Concurrent ``handle`` calls each get their
    own dependencies, so their own units of work.

    Args:
        handlers: The registered handlers.
        dependencies: As for `MessageBus`.
        on_failure: Called with each event handler's `HandlerFailure`.

    Raises:
        ConfigurationError: A dependency is not callable.
    """

    __slots__ = ("_core",)

    def __init__(
        self,
        handlers: Handlers,
        *,
        dependencies: Mapping[str, Any] | Any = None,
        on_failure: Callable[[HandlerFailure], object] | None = None,
    ) -> None:
        self._core = _Core(handlers, dependencies, on_failure)

    async def handle(self, message: Command | DomainEvent) -> DispatchReport:
        """Run the handler of a command (or the handlers of an event), then the events' handlers.

        Args:
            message: A command (its one handler runs) or an event (its inline
                handlers run, as if a handler's unit had committed it).

        Returns:
            The report: the command handler's result, every event handled,
            every event handler that failed.

        Raises:
            ConfigurationError: No handler is registered for the command, a
                dependency it names is not provided, or its unit of work is in
                use by another dispatch.
            Exception: Whatever the command's handler raised.
        """
        token = CORRELATION.set(_id_of(message)) if CORRELATION.get() is None else None
        try:
            return await self._handle(message)
        finally:
            if token is not None:
                CORRELATION.reset(token)

    async def _handle(self, message: Command | DomainEvent) -> DispatchReport:
        core = self._core
        report = DispatchReport(message)
        if isinstance(message, DomainEvent):
            await self._publish([message], report)
            return report
        handler = core.command_handler(message)
        events: list[DomainEvent] = []
        try:
            report.result = await self._run(handler, message, events)
        except Exception:  # not on cancellation: a cancelled dispatch stops at once
            if events:
                await self._publish(events, report)
            raise
        if events:
            await self._publish(events, report)
        return report

    def check(self) -> None:
        """Prove every registered handler can run on this bus.

        Raises:
            ConfigurationError: Listing each handler with a parameter no
                dependency provides.
        """
        self._core.check(asynchronous=True)

    def problems(self) -> list[str]:
        """What `check` would raise for, one line per problem (empty when every handler can run)."""
        return self._core.problems(asynchronous=True)

    async def _run(self, handler: Handler, message: Any, events: list[DomainEvent]) -> Any:
        core = self._core
        values = {}
        for name, provider in core.plan(handler):
            value = provider()
            if _awaitable(value):
                value = await value
            values[name] = value
        units = core.claim(handler, values)
        cause = CAUSATION.set(_id_of(message))
        try:
            result = handler.function(message, **values)
            if _awaitable(result):  # an async def, or anything returning an awaitable
                result = await result
            return result
        finally:
            CAUSATION.reset(cause)
            if units:
                core.release(units, events)

    async def _publish(self, events: list[DomainEvent], report: DispatchReport) -> None:
        core = self._core
        queue = collections.deque(events)
        while queue:
            event = queue.popleft()
            if len(report.events) >= MAX_EVENTS:
                await self._tell(core.too_many(report, event, "AsyncMessageBus"))
                return
            report.events.append(event)
            for handler in core.event_handlers(type(event)):
                caused: list[DomainEvent] = []
                try:
                    await self._run(handler, event, caused)
                except Exception as error:  # noqa: BLE001 - isolated, whatever it is
                    await self._tell(core.failed(report, handler.name, event, error))
                queue.extend(caused)

    async def _tell(self, failure: HandlerFailure) -> None:
        """Pass ``failure`` to ``on_failure`` (awaited if it is ``async def``)."""
        listener = self._core.on_failure
        if listener is None:
            return
        try:
            outcome: Any = listener(failure)
            if _awaitable(outcome):
                await outcome
        except Exception as error:  # noqa: BLE001 - the listener cannot fail the dispatch
            self._core.listener_failed(error)


_UNIT_TYPES: dict[type[Any], bool] = {}


def _is_unit(value: object) -> bool:
    """Whether ``value`` is a unit of work: its class defines ``collect_events``.

    Read on the class, so a class passed as a value or a ``Mock`` (whose
    attributes all exist) is not taken for one.
    """
    kind = type(value)
    found = _UNIT_TYPES.get(kind)
    if found is None:
        found = _UNIT_TYPES[kind] = callable(getattr(kind, "collect_events", None))
    return found


def _asynchronous(provider: object) -> bool:
    """Whether ``provider`` gives awaitables: an ``async def``, or an async-mode provider."""
    if inspect.iscoroutinefunction(provider):
        return True
    mode = getattr(provider, "is_async_mode_enabled", None)
    return bool(mode()) if callable(mode) else False


def _id_of(message: Any) -> object:
    """The id of a command or event (``None`` for anything else, refused later)."""
    return (
        message.command_id if isinstance(message, Command) else getattr(message, "event_id", None)
    )


_AWAITABLE_TYPES: dict[type[Any], bool] = {}


def _awaitable(value: object) -> bool:
    """Whether ``value`` is awaitable (a coroutine, a future): its type has ``__await__``."""
    kind = type(value)
    found = _AWAITABLE_TYPES.get(kind)
    if found is None:
        found = _AWAITABLE_TYPES[kind] = getattr(kind, "__await__", None) is not None
    return found


def _discard(awaitable: Any) -> None:
    """Close a coroutine that will not be awaited (no "never awaited" warning)."""
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()
