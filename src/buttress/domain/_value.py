"""Value objects: immutable values that are equal when their attributes are equal."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict

__all__ = ["ValueObject"]


class ValueObject(BaseModel):
    """An immutable value, equal to any other of its class with the same attributes.

    A frozen pydantic model: fields are validated on construction, assignment
    raises, equal values hash equally, and unknown fields are rejected. Derive a
    changed value with `replace` (or ``copy.replace`` on Python 3.13+), which
    validates the result; pydantic's ``model_copy(update=...)`` does not.
    Freezing is shallow:
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
        assert one_euro.replace(amount="2.50") == Money(amount=Decimal("2.50"), currency="EUR")
        ```
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    def replace(self, **changes: Any) -> Self:
        """Return a copy with some fields changed, validated like a new value.

        Args:
            **changes: New values for fields, by name.

        Returns:
            A new value of the same class; this one is unchanged.

        Raises:
            pydantic.ValidationError: A changed field is invalid, or unknown.
        """
        return self.model_validate({**self.__dict__, **changes})

    __replace__ = replace
