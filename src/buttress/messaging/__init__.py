"""The service layer: commands, handlers and the message bus.

A `Command` asks for a change and has exactly one handler; a `DomainEvent`
(from `buttress.domain`) says what changed and has any number. `Handlers`
registers both by decorator. `MessageBus` (and `AsyncMessageBus`) runs a
command's handler with its dependencies provided by name (a unit-of-work
factory gives every dispatch its own unit), lets its error reach the caller,
then hands the events of the work it committed to the events' handlers,
breadth-first, each failure isolated and reported in a `DispatchReport`.
"""

from buttress.messaging._bus import AsyncMessageBus, DispatchReport, HandlerFailure, MessageBus
from buttress.messaging._commands import Command
from buttress.messaging._handlers import Handler, Handlers

__all__ = [
    "AsyncMessageBus",
    "Command",
    "DispatchReport",
    "Handler",
    "HandlerFailure",
    "Handlers",
    "MessageBus",
]
