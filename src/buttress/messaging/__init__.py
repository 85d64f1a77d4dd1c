"""The service layer: commands, handlers and the message bus.

A `Command` asks for a change and has exactly one handler; a `DomainEvent`
(from `buttress.domain`) says what changed and has any number. `Handlers`
registers both by decorator. `MessageBus` (and `AsyncMessageBus`) runs a
command's handler with its dependencies provided by name (a unit-of-work
factory gives every dispatch its own unit), lets its error reach the caller,
then hands the events of the work it committed to the events' handlers,
breadth-first, each failure isolated and reported in a `DispatchReport`.
`Outbox` is where a unit of work writes the events of each commit, in that
commit's transaction; `Inbox` makes a redelivered message's effect happen once.
"""

from typing import TYPE_CHECKING, Any

from buttress.messaging._bus import MessageBus
from buttress.messaging._bus_async import AsyncMessageBus
from buttress.messaging._commands import Command
from buttress.messaging._dispatch import DispatchReport, HandlerFailure
from buttress.messaging._handlers import Handler, Handlers

if TYPE_CHECKING:
    from buttress.messaging._inbox import Inbox
    from buttress.messaging._outbox import Outbox

__all__ = [
    "AsyncMessageBus",
    "Command",
    "DispatchReport",
    "Handler",
    "HandlerFailure",
    "Handlers",
    "Inbox",
    "MessageBus",
    "Outbox",
]


def __getattr__(name: str) -> Any:
    """`Outbox` and `Inbox` are imported on first use: the bus alone does not load SQLAlchemy."""
    if name == "Outbox":
        from buttress.messaging._outbox import Outbox  # noqa: PLC0415

        return Outbox
    if name == "Inbox":
        from buttress.messaging._inbox import Inbox  # noqa: PLC0415

        return Inbox
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
