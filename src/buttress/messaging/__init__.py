"""The service layer: commands, handlers and the message bus.

A `Command` asks for a change and has exactly one handler; a `DomainEvent`
(from `buttress.domain`) says what changed and has any number. `Handlers`
registers both by decorator. `MessageBus` (and `AsyncMessageBus`) runs a
command's handler with its dependencies provided by name (a unit-of-work
factory gives every dispatch its own unit), lets its error reach the caller,
then hands the events of the work it committed to the events' handlers,
breadth-first, each failure isolated and reported in a `DispatchReport`.
`Outbox` is where a unit of work writes the events of each commit, in that
commit's transaction; `Relay` (and `AsyncRelay`) delivers them to a
`Transport`, at least once and in order per aggregate; `Inbox` makes a
redelivered message's effect happen once.
"""

import importlib
from typing import TYPE_CHECKING, Any

from buttress.messaging._bus import MessageBus
from buttress.messaging._bus_async import AsyncMessageBus
from buttress.messaging._commands import Command
from buttress.messaging._dispatch import DispatchReport, HandlerFailure
from buttress.messaging._handlers import Handler, Handlers
from buttress.messaging._transport import (
    AsyncInProcessTransport,
    AsyncTransport,
    InProcessTransport,
    Message,
    Transport,
)

if TYPE_CHECKING:
    from buttress.messaging._inbox import Inbox
    from buttress.messaging._outbox import Outbox
    from buttress.messaging._rabbitmq import (
        AsyncRabbitMQConsumer,
        AsyncRabbitMQTransport,
        RabbitMQConsumer,
        RabbitMQTransport,
    )
    from buttress.messaging._relay import Relay
    from buttress.messaging._relay_async import AsyncRelay
    from buttress.messaging._relay_core import Backlog, DeadLetter, RelayReport

__all__ = [
    "AsyncInProcessTransport",
    "AsyncMessageBus",
    "AsyncRabbitMQConsumer",
    "AsyncRabbitMQTransport",
    "AsyncRelay",
    "AsyncTransport",
    "Backlog",
    "Command",
    "DeadLetter",
    "DispatchReport",
    "Handler",
    "HandlerFailure",
    "Handlers",
    "InProcessTransport",
    "Inbox",
    "Message",
    "MessageBus",
    "Outbox",
    "RabbitMQConsumer",
    "RabbitMQTransport",
    "Relay",
    "RelayReport",
    "Transport",
]

_LAZY = {
    "Outbox": "_outbox",
    "Inbox": "_inbox",
    "Relay": "_relay",
    "AsyncRelay": "_relay_async",
    "Backlog": "_relay_core",
    "DeadLetter": "_relay_core",
    "RelayReport": "_relay_core",
    "AsyncRabbitMQConsumer": "_rabbitmq",
    "AsyncRabbitMQTransport": "_rabbitmq",
    "RabbitMQConsumer": "_rabbitmq",
    "RabbitMQTransport": "_rabbitmq",
}
"""Names imported on first use: the bus alone does not load SQLAlchemy."""


def __getattr__(name: str) -> Any:
    """The outbox, the inbox and the relays are imported on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
