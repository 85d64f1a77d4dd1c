"""What the message bus decides, without I/O: one brain for both buses.

`AsyncMessageBus` (``_bus_async.py``) and `MessageBus` (``_bus.py``, generated
from it) are thin drivers over `Core`: which handler, which dependencies, which
objects are units of work, what a failure does, what the plain bus refuses.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from buttress.errors import ConfigurationError, DeliveryError
from buttress.messaging._commands import Command

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from buttress.domain import DomainEvent
    from buttress.messaging._handlers import Handler, Handlers

__all__ = [
    "MAX_EVENTS",
    "Core",
    "DispatchReport",
    "HandlerFailure",
    "awaitable",
    "discard",
    "id_of",
]

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


class Core:
    """The bus's decisions: handlers, their dependencies, units of work, failures.

    ``asynchronous`` tells the bus it serves: the plain one refuses what it could
    not await (an ``async def`` handler or ``on_failure``, an awaitable).
    """

    __slots__ = (
        "_busy",
        "_durable",
        "_events",
        "_plans",
        "_providers",
        "_version",
        "asynchronous",
        "handlers",
        "on_failure",
    )

    def __init__(
        self,
        handlers: Handlers,
        dependencies: Mapping[str, Any] | Any,
        on_failure: Callable[[HandlerFailure], object] | None,
        *,
        asynchronous: bool,
    ) -> None:
        if on_failure is not None and not asynchronous and _asynchronous(on_failure):
            raise ConfigurationError(
                "on_failure is async def: a MessageBus cannot await it; pass a plain function "
                "or use an AsyncMessageBus"
            )
        self.asynchronous = asynchronous
        self.handlers = handlers
        self.on_failure = on_failure
        self._busy: dict[int, object] = {}  # units of work in use: id -> their dispatch
        self._version = -1
        self._plans: dict[int, tuple[Plan, tuple[str, ...]]] = {}
        self._events: dict[type[DomainEvent], tuple[Handler, ...]] = {}
        self._durable: dict[type[DomainEvent], tuple[Handler, ...]] = {}
        self._providers = _providers_of(dependencies)

    def _fresh(self) -> None:
        """Forget what was derived from the handlers if one was registered since."""
        if self._version != self.handlers.version:
            self._plans.clear()
            self._events.clear()
            self._durable.clear()
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

    def durable_handlers(self, event_type: type[DomainEvent]) -> tuple[Handler, ...]:
        self._fresh()
        found = self._durable.get(event_type)
        if found is None:
            found = self._durable[event_type] = self.handlers.event_handlers(
                event_type, durable=True
            )
        return found

    def undelivered(self, event: DomainEvent, failures: list[HandlerFailure]) -> DeliveryError:
        """The error `deliver` raises when durable handlers failed: the relay retries the event."""
        what = "; ".join(
            f"{failure.handler}: {type(failure.error).__qualname__}: {failure.error}"
            for failure in failures
        )
        error = DeliveryError(
            f"{len(failures)} durable handler(s) of {event.event_name} {event.event_id} "
            f"failed ({what}); the relay delivers it again",
            failures=tuple(failures),
        )
        error.__cause__ = failures[0].error
        return error

    def plan(self, handler: Handler) -> Plan:
        """The ``(name, provider)`` pairs ``handler`` is called with.

        Raises:
            ConfigurationError: A parameter without a default has no provider.
        """
        if handler.is_async and not self.asynchronous:
            raise ConfigurationError(_async_handler(handler))
        self._fresh()
        found = self._plans.get(id(handler))
        if found is None:
            providers = self._providers
            missing = self._missing_names(handler)
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
        units = [(name, value) for name, value in values.items() if is_unit(value)]
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

    def refuse(self, value: object, handler: Handler, provided: str | None = None) -> NoReturn:
        """What the plain bus does with an awaitable: close it, and refuse.

        ``provided`` names the parameter whose provider gave it; ``None`` when the
        handler returned it.

        Raises:
            ConfigurationError: Always.
        """
        discard(value)
        if provided is not None:
            raise ConfigurationError(
                f"the provider of {provided!r} for {handler.name} is asynchronous: "
                "use an AsyncMessageBus"
            )
        raise ConfigurationError(
            f"{handler.name} returned an awaitable, so it did not run: run it on an AsyncMessageBus"
        )

    @staticmethod
    def discard(value: object) -> None:
        """Close a coroutine that will not be awaited."""
        discard(value)

    def listener_failed(self, error: Exception) -> None:
        logger.error("the bus's on_failure listener raised; ignored", exc_info=error)

    def full(self, report: DispatchReport) -> bool:
        """Whether ``report`` reached `MAX_EVENTS`: the rest of its events are dropped."""
        return len(report.events) >= MAX_EVENTS

    def too_many(self, report: DispatchReport, event: DomainEvent) -> HandlerFailure:
        """Record that ``report`` reached `MAX_EVENTS` at ``event``."""
        error = ConfigurationError(
            f"one dispatch reached {MAX_EVENTS} events, the last {event.event_name}; the "
            "remaining events are dropped: do event handlers cause each other in a cycle?"
        )
        bus = "AsyncMessageBus" if self.asynchronous else "MessageBus"
        return self.failed(report, f"buttress.messaging.{bus}", event, error)

    def _missing_names(self, handler: Handler) -> tuple[str, ...]:
        return tuple(name for name in handler.required if name not in self._providers)

    def problems(self) -> list[str]:
        """Why some handlers could not run on this bus (empty when every one can)."""
        asynchronous = self.asynchronous
        found = []
        for handler in self.handlers.all():
            missing = self._missing_names(handler)
            if missing:
                found.append(_missing(handler, missing))
            if handler.is_async and not asynchronous:
                found.append(_async_handler(handler))
            if not asynchronous:
                found.extend(
                    f"{handler.name} gets {name!r} from an asynchronous provider: "
                    "run it on an AsyncMessageBus"
                    for name in (*handler.required, *handler.optional)
                    if name in self._providers and _asynchronous(self._providers[name])
                )
        return found

    def check(self) -> None:
        problems = self.problems()
        if problems:
            raise ConfigurationError.from_problems(
                "the message bus cannot run every handler", problems
            )


def _async_handler(handler: Handler) -> str:
    return f"{handler.name} is async def: run it on an AsyncMessageBus"


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


_UNIT_TYPES: dict[type[Any], bool] = {}


def is_unit(value: object) -> bool:
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


def id_of(message: Any) -> object:
    """The id of a command or event (``None`` for anything else, refused later)."""
    return (
        message.command_id if isinstance(message, Command) else getattr(message, "event_id", None)
    )


_AWAITABLE_TYPES: dict[type[Any], bool] = {}


def awaitable(value: object) -> bool:
    """Whether ``value`` is awaitable (a coroutine, a future): its type has ``__await__``."""
    kind = type(value)
    found = _AWAITABLE_TYPES.get(kind)
    if found is None:
        found = _AWAITABLE_TYPES[kind] = getattr(kind, "__await__", None) is not None
    return found


def discard(awaitable: Any) -> None:
    """Close a coroutine that will not be awaited (no "never awaited" warning)."""
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()
