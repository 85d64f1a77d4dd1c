"""Commands: requests to change the system, each handled by exactly one handler."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field

from buttress.domain._named import NameRegistry

__all__ = ["Command"]

_registry: NameRegistry[Command] = NameRegistry(
    "command", "command", "Command.to_json()", ("command_id",)
)


class Command(BaseModel):
    """A request to change the system, handled by exactly one handler.

    Where a `DomainEvent` says what happened (any number of handlers, or none,
    may react), a command says what should happen: the bus runs its one
    handler and lets that handler's error reach the caller. Subclass it and add
    the fields the command carries. Every command is a frozen pydantic model
    with a unique ``command_id``; `to_json` and `from_json` carry its name, so
    a command can cross a process boundary and come back as its own class.

    Each subclass is registered under ``command_name``: its module and
    qualified name by default, or the ``name`` class argument
    (``class Allocate(Command, name="allocation.allocate")``), which keeps
    stored commands readable after the class moves. Two different classes
    cannot take the same name.

    Example:
        ```python
        from buttress.messaging import Command

        class SendInvoice(Command, name="billing.send-invoice"):
            invoice_id: int

        command = SendInvoice(invoice_id=7)
        assert Command.from_json(command.to_json()) == command
        ```
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    command_name: ClassVar[str] = "Command"
    _json_head: ClassVar[str] = '{"command":"Command","data":'

    command_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    """Unique id of this request; handlers and consumers use it to drop duplicates."""

    def __init_subclass__(cls, *, name: str | None = None, **kwargs: Any) -> None:
        """Register the subclass under ``name`` (default: ``module.QualifiedName``)."""
        super().__init_subclass__(**kwargs)
        cls.command_name = _registry.register(cls, name)
        cls._json_head = _registry.head(cls.command_name)

    def to_json(self) -> str:
        """Serialise the command with its name, for `from_json`.

        Returns:
            A JSON object ``{"command": <command_name>, "data": {...fields}}``.
        """
        return f"{self._json_head}{self.model_dump_json()}}}"

    @classmethod
    def from_json(cls, raw: str | bytes) -> Self:
        """Rebuild a command serialised by `to_json`, choosing its class by name.

        Called on a subclass, the command must be of that class (or one of its
        own subclasses).

        Args:
            raw: The JSON produced by `to_json`.

        Returns:
            The command, equal to the one serialised.

        Raises:
            DecodeError: The JSON is not a command envelope; names a command
                class not defined (imported) in this process, or one that is not
                a subclass of the class called; lacks the ``command_id``; or holds
                data that does not fit the command's class.
        """
        return _registry.decode(raw, cls)

    @classmethod
    def registered(cls) -> dict[str, type[Command]]:
        """Return the command classes known by name in this process.

        Returns:
            A copy of the registry, mapping ``command_name`` to class.
        """
        return _registry.registered()


_registry.register(Command, Command.command_name)
