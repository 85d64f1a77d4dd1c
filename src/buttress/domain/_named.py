"""Message classes known by name, and the JSON envelope that carries the name.

Domain events and commands are both frozen pydantic models registered under a
stable name, so a consumer can rebuild the right class from JSON it did not
choose. One `NameRegistry` per kind of message holds the classes and reads the
envelopes ``{"<kind>": <name>, "data": {...}}``.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from pydantic_core import from_json

from buttress._text import a
from buttress.errors import ConfigurationError, DecodeError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["NameRegistry"]

M = TypeVar("M", bound=BaseModel)
B = TypeVar("B", bound=BaseModel)


class NameRegistry(Generic[M]):
    """The classes of one kind of message, by name.

    Args:
        kind: The kind of message, as the envelope's key (``"event"``, ``"command"``).
        title: How messages speak of it (``"domain event"``).
        writer: What writes the envelopes (``"DomainEvent.to_json()"``).
        identity: Fields that must be read back, never invented on reading.
    """

    def __init__(self, kind: str, title: str, writer: str, identity: Iterable[str]) -> None:
        self.kind = kind
        self.title = title
        self.writer = writer
        self.identity = tuple(identity)
        self._classes: dict[str, type[M]] = {}
        self._lock = threading.Lock()
        self._envelopes: dict[type[BaseModel], type[BaseModel]] = {}

    def register(self, cls: type[M], name: str | None) -> str:
        """Register ``cls`` under ``name`` (default ``module.QualifiedName``); return the name.

        Re-defining the same class (a module reloaded, a test run again) replaces it.

        Raises:
            ConfigurationError: The name is empty, or taken by another class.
        """
        chosen = name if name is not None else f"{cls.__module__}.{cls.__qualname__}"
        if not chosen:
            raise ConfigurationError(
                f"{self.kind} class {cls.__qualname__} was given an empty name; "
                "pass a non-empty name= or leave it out"
            )
        with self._lock:
            existing = self._classes.get(chosen)
            if existing is not None and (existing.__module__, existing.__qualname__) != (
                cls.__module__,
                cls.__qualname__,
            ):
                raise ConfigurationError(
                    f"the {self.kind} name {chosen!r} of {cls.__module__}.{cls.__qualname__} is "
                    f"already taken by {existing.__module__}.{existing.__qualname__}; "
                    "give one of them another name="
                )
            self._classes[chosen] = cls
        return chosen

    def head(self, name: str) -> str:
        """The start of the envelope of a message named ``name``, up to its data."""
        return f'{{"{self.kind}":{json.dumps(name)},"data":'

    def registered(self) -> dict[str, type[M]]:
        """A copy of the registry: name to class."""
        with self._lock:
            return dict(self._classes)

    def decode(self, raw: str | bytes, base: type[B]) -> B:
        """Rebuild the message of envelope ``raw``, which must be ``base`` or a subclass.

        Raises:
            DecodeError: Not an envelope of this kind; a name no class is
                registered under (in this process) or of a class outside
                ``base``; identity fields missing; data that does not fit.
        """
        kind = self.kind
        envelope: object = None
        cause: ValueError | None = None
        try:
            envelope = from_json(raw)
        except ValueError as exc:
            cause = exc
        name = envelope.get(kind) if isinstance(envelope, dict) else None
        data = envelope.get("data") if isinstance(envelope, dict) else None
        if not isinstance(name, str) or not isinstance(data, dict):
            raise DecodeError(
                f"not a serialised {self.title}: expected the JSON object "
                f'{{"{kind}": <name>, "data": {{...}}}} written by {self.writer}'
            ) from cause
        found = self._classes.get(name)  # a plain dict read is atomic
        if found is None:
            raise DecodeError(
                f"no {kind} class is registered under the name {name!r}; import the "
                f"module that defines it before reading such {kind}s"
            )
        if not issubclass(found, base):
            raise DecodeError(
                f"the {kind} {name!r} is {a(found.__qualname__)}, "
                f"not {a(base.__qualname__)}; call from_json on a common base class"
            )
        missing = [field for field in self.identity if field not in data]
        if missing:
            raise DecodeError(
                f"the {kind} {name!r} has no {' or '.join(missing)}; {a(kind)} read back must "
                f"keep the identity and time it was written with: serialise it with to_json()"
            )
        try:
            # Validated in JSON mode, as model_validate_json would: strict models and
            # JSON-only conversions behave the same as on the class itself.
            message: B = self._envelope(found).model_validate_json(raw).data  # type: ignore[attr-defined]
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc'][1:])}: {error['msg']}"
                for error in exc.errors(include_url=False, include_input=False)
            )
            raise DecodeError(
                f"the data of {kind} {name!r} does not fit {found.__qualname__} "
                f"({problems}); was it written by an incompatible version of the class?"
            ) from exc
        return message

    def _envelope(self, cls: type[BaseModel]) -> type[BaseModel]:
        """The model of ``{"<kind>": ..., "data": <cls>}`` (cached)."""
        model = self._envelopes.get(cls)
        if model is None:
            fields: dict[str, Any] = {self.kind: (str, ...), "data": (cls, ...)}
            model = create_model(
                f"{cls.__name__}Envelope", __config__=ConfigDict(extra="forbid"), **fields
            )
            self._envelopes[cls] = model
        return model
