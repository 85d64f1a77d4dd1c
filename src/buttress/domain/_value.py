"""Value objects: immutable values that are equal when their attributes are equal."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["ValueObject"]


class ValueObject(BaseModel):
    """An immutable value, equal to any other of its class with the same attributes.

    A frozen pydantic model: fields are validated on construction, assignment
    raises, equal values hash equally, and unknown fields are rejected. Use
    `model_copy(update=...)` to derive a changed value. Freezing is shallow:
    give fields immutable types (``tuple`` rather than ``list``,
    ``frozenset`` rather than ``set``), or hashing fails.

    Values of different classes are never equal, even with the same fields.

    Example:
        ```python
        from decimal import Decimal
        from buttress.domain import ValueObject

        class Money(ValueObject):
            amount: Decimal
            currency: str

        assert Money(amount=Decimal("1.50"), currency="EUR") == Money(
            amount=Decimal("1.50"), currency="EUR"
        )
        one_euro = Money(amount=Decimal(1), currency="EUR")
        assert {one_euro, Money(amount=Decimal("1"), currency="EUR")} == {one_euro}
        ```
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
