"""Domain events: immutable records of something that happened in the domain."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic_core import from_json

from buttress._text import a
from buttress.errors import ConfigurationError, DecodeError

__all__ = ["DomainEvent"]

_registry: dict[str, type[DomainEvent]] = {}
_registry_lock = threading.Lock()


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
        event_name = name if name is not None else f"{cls.__module__}.{cls.__qualname__}"
        if not event_name:
            raise ConfigurationError(
                f"event class {cls.__qualname__} was given an empty name; "
                "pass a non-empty name= or leave it out"
            )
        cls.event_name = event_name
        cls._json_head = f'{{"event":{json.dumps(event_name)},"data":'
        with _registry_lock:
            existing = _registry.get(event_name)
            # Re-defining the same class (a module reloaded, a test run again) replaces it.
            if existing is not None and (existing.__module__, existing.__qualname__) != (
                cls.__module__,
                cls.__qualname__,
            ):
                raise ConfigurationError(
                    f"the event name {event_name!r} of {cls.__module__}.{cls.__qualname__} is "
                    f"already taken by {existing.__module__}.{existing.__qualname__}; "
                    "give one of them another name="
                )
            _registry[event_name] = cls

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
        envelope: object = None
        cause: ValueError | None = None
        try:
            envelope = from_json(raw)
        except ValueError as exc:
            cause = exc
        name = envelope.get("event") if isinstance(envelope, dict) else None
        data = envelope.get("data") if isinstance(envelope, dict) else None
        if not isinstance(name, str) or not isinstance(data, dict):
            raise DecodeError(
                "not a serialised domain event: expected the JSON object "
                '{"event": <name>, "data": {...}} written by DomainEvent.to_json()'
            ) from cause
        # A plain dict read is atomic; the lock only orders registrations.
        event_cls = _registry.get(name)
        if event_cls is None:
            raise DecodeError(
                f"no event class is registered under the name {name!r}; import the "
                "module that defines it before reading such events"
            )
        if not issubclass(event_cls, cls):
            raise DecodeError(
                f"the event {name!r} is {a(event_cls.__qualname__)}, "
                f"not {a(cls.__qualname__)}; call from_json on a common base class"
            )
        missing = [field for field in ("event_id", "occurred_at") if field not in data]
        if missing:
            raise DecodeError(
                f"the event {name!r} has no {' or '.join(missing)}; an event read back must "
                "keep the identity and time it was written with: serialise it with to_json()"
            )
        try:
            # Validated in JSON mode, as model_validate_json would: strict models and
            # JSON-only conversions behave the same as on the class itself.
            envelope_model = _envelope_model(event_cls)
            return envelope_model.model_validate_json(raw).data  # type: ignore[attr-defined, no-any-return]
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc'][1:])}: {error['msg']}"
                for error in exc.errors(include_url=False, include_input=False)
            )
            raise DecodeError(
                f"the data of event {name!r} does not fit {event_cls.__qualname__} "
                f"({problems}); was it written by an incompatible version of the class?"
            ) from exc

    @classmethod
    def registered(cls) -> dict[str, type[DomainEvent]]:
        """Return the event classes known by name in this process.

        Returns:
            A copy of the registry, mapping ``event_name`` to class.
        """
        with _registry_lock:
            return dict(_registry)


# The base class is registered too, so a bare DomainEvent written with to_json reads back.
_registry[DomainEvent.event_name] = DomainEvent

_envelopes: dict[type[DomainEvent], type[BaseModel]] = {}


def _envelope_model(event_cls: type[DomainEvent]) -> type[BaseModel]:
    """Return (and cache) the model of ``{"event": ..., "data": <event_cls>}``."""
    model = _envelopes.get(event_cls)
    if model is None:
        model = create_model(
            f"{event_cls.__name__}Envelope",
            __config__=ConfigDict(extra="forbid"),
            event=(str, ...),
            data=(event_cls, ...),
        )
        _envelopes[event_cls] = model
    return model
