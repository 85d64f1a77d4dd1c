"""`Handlers`: which function handles each command, and which react to each event."""

from __future__ import annotations

import dataclasses
import inspect
from typing import TYPE_CHECKING, Any, TypeVar

from buttress.domain import DomainEvent
from buttress.errors import ConfigurationError
from buttress.messaging._commands import Command

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Handler", "Handlers"]

H = TypeVar("H", bound="Callable[..., Any]")

_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


@dataclasses.dataclass(frozen=True, slots=True)
class Handler:
    """A registered handler: the function and the dependencies it asks for by name."""

    function: Callable[..., Any]
    name: str
    """Its module and qualified name, as reports and errors name it."""
    required: tuple[str, ...]
    """Parameters after the message without a default: each must be provided."""
    optional: tuple[str, ...]
    """Parameters after the message with a default: provided if a dependency has the name."""
    is_async: bool
    durable: bool = False
    """Whether it runs when the relay delivers the event, instead of inline at dispatch."""

    @classmethod
    def of(
        cls, function: Callable[..., Any], message: type[Any], *, durable: bool = False
    ) -> Handler:
        """Read ``function``'s parameters: the message first, then dependencies by name.

        Raises:
            ConfigurationError: ``function`` is not callable, or takes no
                positional parameter for the message.
        """
        module = getattr(function, "__module__", None) or type(function).__module__
        qualname = getattr(function, "__qualname__", None) or type(function).__qualname__
        name = f"{module}.{qualname}"
        if not callable(function):
            raise ConfigurationError(
                f"cannot register {function!r} for {message.__qualname__}: it is not callable"
            )
        try:
            parameters = list(inspect.signature(function).parameters.values())
        except (TypeError, ValueError) as error:
            raise ConfigurationError(
                f"cannot register {name} for {message.__qualname__}: its parameters cannot be "
                f"read ({error}); wrap it in a def"
            ) from error
        first = parameters[0] if parameters else None
        if first is None or first.kind not in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.VAR_POSITIONAL,
        ):
            raise ConfigurationError(
                f"cannot register {name} for {message.__qualname__}: its first parameter must "
                "take the message (def handle(message, ...))"
            )
        rest = [p for p in parameters[1:] if p.kind in _KINDS]
        unusable = [p.name for p in parameters[1:] if p.kind is inspect.Parameter.POSITIONAL_ONLY]
        if unusable:
            raise ConfigurationError(
                f"cannot register {name}: {', '.join(unusable)} after the message are "
                "positional-only, and dependencies are passed by name; drop the /"
            )
        return cls(
            function=function,
            name=name,
            required=tuple(p.name for p in rest if p.default is inspect.Parameter.empty),
            optional=tuple(p.name for p in rest if p.default is not inspect.Parameter.empty),
            is_async=inspect.iscoroutinefunction(function)
            or inspect.iscoroutinefunction(type(function).__call__),  # an object, async __call__
            durable=durable,
        )


class Handlers:
    """The handlers of an application's commands and events, registered by decorator.

    Each command has exactly one handler; an event has any number (or none).
    A handler takes the message as its first parameter; the parameters after
    it are dependencies, provided by name by the bus that runs it (a unit of
    work, a gateway). One `Handlers` can serve several buses.

    Example:
        ```python
        from buttress.domain import DomainEvent
        from buttress.messaging import Command, Handlers

        class Greet(Command):
            name: str

        class Greeted(DomainEvent):
            name: str

        handlers = Handlers()

        @handlers.command(Greet)
        def greet(command: Greet, greetings: list[str]) -> str:
            greetings.append(command.name)
            return f"hello {command.name}"

        @handlers.event(Greeted)
        def log_greeting(event: Greeted) -> None: ...

        assert handlers.command_handler(Greet).name.endswith("greet")
        ```
    """

    def __init__(self) -> None:
        self._commands: dict[type[Command], Handler] = {}
        self._events: dict[type[DomainEvent], list[Handler]] = {}
        self.version = 0  # bumped at each registration: buses drop what they derived

    def command(self, command_type: type[Command]) -> Callable[[H], H]:
        """Register the decorated function as the one handler of ``command_type``.

        Args:
            command_type: A `Command` subclass.

        Returns:
            A decorator that registers its function and returns it unchanged.

        Raises:
            ConfigurationError: ``command_type`` is not a `Command` subclass, or
                already has a handler (raised as the second is registered).
        """
        if not _subclass(command_type, Command):
            raise ConfigurationError(
                f"handlers.command() takes a Command subclass, not {command_type!r}; "
                "for a DomainEvent use handlers.event()"
            )

        def register(function: H) -> H:
            handler = Handler.of(function, command_type)
            existing = self._commands.get(command_type)
            if existing is not None:
                raise ConfigurationError(
                    f"{command_type.__qualname__} already has a handler, {existing.name}; a "
                    f"command has exactly one, so {handler.name} cannot be registered too "
                    "(react to what happened with an event handler instead)"
                )
            self._commands[command_type] = handler
            self.version += 1
            return function

        return register

    def event(self, event_type: type[DomainEvent], *, durable: bool = False) -> Callable[[H], H]:
        """Register the decorated function as a handler of ``event_type`` (and its subclasses).

        Handlers of one event run in the order they were registered, those of
        the event's own class before those of its base classes.

        An inline handler (the default) runs in the process that committed the
        event, right after the commit, and is lost if that process dies first.
        A durable one runs when a relay delivers the event from the outbox
        (`MessageBus.deliver`, through `InProcessTransport` or a broker's
        consumer): at least once, retried until it succeeds, in order per
        aggregate. Make it idempotent with `Inbox` (``event.event_id`` is the
        message id).

        Args:
            event_type: A `DomainEvent` subclass (or `DomainEvent`, for every event).
            durable: Run it on delivery from the outbox, not inline.

        Returns:
            A decorator that registers its function and returns it unchanged.

        Raises:
            ConfigurationError: ``event_type`` is not a `DomainEvent` class, or
                the function is registered for it already.
        """
        if not _subclass(event_type, DomainEvent):
            raise ConfigurationError(
                f"handlers.event() takes a DomainEvent subclass, not {event_type!r}; "
                "for a Command use handlers.command()"
            )

        def register(function: H) -> H:
            handler = Handler.of(function, event_type, durable=durable)
            registered = self._events.setdefault(event_type, [])
            if any(other.function == function for other in registered):  # bound methods
                raise ConfigurationError(
                    f"{handler.name} is registered for {event_type.__qualname__} already"
                )
            registered.append(handler)
            self.version += 1
            return function

        return register

    def command_handler(self, command_type: type[Command]) -> Handler:
        """The handler of ``command_type``.

        Raises:
            ConfigurationError: No handler is registered for it.
        """
        handler = self._commands.get(command_type)
        if handler is None:
            raise ConfigurationError(
                f"no handler is registered for the command {command_type.__qualname__}: "
                f"register one with @handlers.command({command_type.__qualname__})"
            )
        return handler

    def event_handlers(
        self, event_type: type[DomainEvent], *, durable: bool = False
    ) -> tuple[Handler, ...]:
        """The inline (or durable) handlers of ``event_type``: its own, then its base classes'."""
        return tuple(
            handler
            for cls in event_type.__mro__
            if _subclass(cls, DomainEvent)
            for handler in self._events.get(cls, ())
            if handler.durable == durable
        )

    def all(self) -> tuple[Handler, ...]:
        """Every registered handler, commands' first, each once."""
        found: dict[int, Handler] = {}
        for handler in self._commands.values():
            found.setdefault(id(handler), handler)
        for handlers in self._events.values():
            for handler in handlers:
                found.setdefault(id(handler), handler)
        return tuple(found.values())


def _subclass(value: object, base: type[Any]) -> bool:
    return isinstance(value, type) and issubclass(value, base)
