"""Domain primitives: entities, aggregate roots, value objects, domain events, specifications.

`Entity` and `AggregateRoot` are plain mixins with no fields of their own, so they
can be mapped by SQLAlchemy declaratively (including ``MappedAsDataclass``) or
imperatively. `ValueObject` and `DomainEvent` are frozen pydantic models.
`F` builds `Specification` filters that evaluate in Python and compile to SQL.
"""

from buttress.domain._entity import AggregateRoot, Entity
from buttress.domain._events import DomainEvent
from buttress.domain._spec import F, Specification
from buttress.domain._value import ValueObject

__all__ = ["AggregateRoot", "DomainEvent", "Entity", "F", "Specification", "ValueObject"]
