"""Domain events: immutable records of something that happened in the domain."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from buttress.domain._named import NameRegistry

__all__ = ["DomainEvent"]

_registry: NameRegistry[DomainEvent] = NameRegistry(
    "event", "domain event", "DomainEvent.to_json()", ("event_id", "occurred_at")
)


def _now() -> datetime:
    return datetime.now(UTC)


class DomainEvent(BaseModel):
    """Something that happened in the domain, worth telling other parts of the system.

    Subclass it and add the fields the event carries. Every event is a frozen
    pydantic model with a unique ``event_id`` and a timezone-aware
    ``occurred_at`` (UTC now by default; a naive datetime is rejected). Events
    compare by value and serialise to JSON and back with pydantic
    (``model_dump_json`` / ``model_validate_json``); `to_json` and `from_json`
    add the event's name, so a consumer can rebuild the right class from a
    message it did not choose.

    Each subclass is registered under ``event_name``: its module and qualified
    name by default, or the ``name`` class argument
    (``class OrderPlaced(DomainEvent, name="order.placed")``), which keeps
    stored events readable after the class moves. Two different classes cannot
    take the same name.

    Example:
        ```python
        from buttress.domain import DomainEvent

        class InvoiceSent(DomainEvent, name="billing.invoice-sent"):
            invoice_id: int
            total_cents: int

        event = InvoiceSent(invoice_id=7, total_cents=1250)
        assert DomainEvent.from_json(event.to_json()) == event
        ```
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_name: ClassVar[str] = "DomainEvent"
    _json_head: ClassVar[str] = '{"event":"DomainEvent","data":'

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    """Unique id of this occurrence; consumers use it to drop duplicates."""

    occurred_at: AwareDatetime = Field(default_factory=_now)
    """When it happened; always timezone-aware."""

    def __init_subclass__(cls, *, name: str | None = None, **kwargs: Any) -> None:
        """Register the subclass under ``name`` (default: ``module.QualifiedName``)."""
        super().__init_subclass__(**kwargs)
        cls.event_name = _registry.register(cls, name)
        cls._json_head = _registry.head(cls.event_name)

    def to_json(self) -> str:
        """Serialise the event with its name, for `from_json`.

        Returns:
            A JSON object ``{"event": <event_name>, "data": {...fields}}``.
        """
        return f"{self._json_head}{self.model_dump_json()}}}"

    @classmethod
    def from_json(cls, raw: str | bytes) -> Self:
        """Rebuild an event serialised by `to_json`, choosing its class by name.

        Called on a subclass, the event must be of that class (or one of its own
        subclasses).

        Args:
            raw: The JSON produced by `to_json`.

        Returns:
            The event, equal to the one serialised.

        Raises:
            DecodeError: The JSON is not an event envelope; names an event class
                that is not defined (imported) in this process, or one that is
                not a subclass of the class called; lacks the event's
                ``event_id`` or ``occurred_at`` (which must never be invented on
                reading); or holds data that does not fit the event's class.
        """
        return _registry.decode(raw, cls)

    @classmethod
    def registered(cls) -> dict[str, type[DomainEvent]]:
        """Return the event classes known by name in this process.

        Returns:
            A copy of the registry, mapping ``event_name`` to class.
        """
        return _registry.registered()


# The base class is registered too, so a bare DomainEvent written with to_json reads back.
_registry.register(DomainEvent, DomainEvent.event_name)
