"""Domain primitives: entities, aggregate roots, value objects and domain events.

`Entity` and `AggregateRoot` are plain mixins with no fields of their own, so they
can be mapped by SQLAlchemy declaratively (including ``MappedAsDataclass``) or
imperatively. `ValueObject` and `DomainEvent` are frozen pydantic models.
"""

from buttress.domain._entity import AggregateRoot, Entity
from buttress.domain._events import DomainEvent
from buttress.domain._value import ValueObject

__all__ = ["AggregateRoot", "DomainEvent", "Entity", "ValueObject"]
