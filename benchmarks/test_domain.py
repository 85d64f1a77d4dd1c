"""Domain primitives: what a `DomainEvent` or `ValueObject` costs next to the alternatives.

Every class in a group carries the same fields with the same defaults (a random
``uuid4`` id and an aware UTC ``now()``), so a ratio measures the machinery and
not extra work.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from buttress.domain import DomainEvent, ValueObject

ORDER: dict[str, Any] = {"order_id": 7, "total_cents": 1250}
PRICE: dict[str, Any] = {"amount": Decimal("12.50"), "currency": "EUR"}

M = TypeVar("M", bound=BaseModel)


def utc_now() -> datetime:
    return datetime.now(UTC)


# Events -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataclassOrderPlaced:
    order_id: int
    total_cents: int
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)
    occurred_at: datetime = field(default_factory=utc_now)


class PydanticOrderPlaced(BaseModel):
    order_id: int
    total_cents: int
    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    occurred_at: AwareDatetime = Field(default_factory=utc_now)


class FrozenPydanticOrderPlaced(BaseModel):
    model_config = ConfigDict(frozen=True)

    order_id: int
    total_cents: int
    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    occurred_at: AwareDatetime = Field(default_factory=utc_now)


class OrderPlaced(DomainEvent, name="benchmarks.orders.placed"):
    order_id: int
    total_cents: int


def check_event(event: Any) -> None:
    assert event.order_id == 7
    assert event.total_cents == 1250
    assert isinstance(event.event_id, uuid.UUID)
    assert event.occurred_at.tzinfo is not None


@pytest.mark.benchmark(group="domain.event-construct")
class TestEventConstruct:
    def test_frozen_dataclass(self, baseline):
        check_event(baseline(DataclassOrderPlaced, **ORDER))

    def test_pydantic_model(self, peer):
        check_event(peer(PydanticOrderPlaced, **ORDER))

    def test_pydantic_frozen_model(self, peer):
        check_event(peer(FrozenPydanticOrderPlaced, **ORDER))

    def test_domain_event(self, ours):
        check_event(ours(OrderPlaced, **ORDER))


def dataclass_roundtrip(event: DataclassOrderPlaced) -> DataclassOrderPlaced:
    """What one writes by hand: a dict of JSON-ready values, and back."""
    raw = json.dumps(
        {
            "order_id": event.order_id,
            "total_cents": event.total_cents,
            "event_id": str(event.event_id),
            "occurred_at": event.occurred_at.isoformat(),
        }
    )
    data = json.loads(raw)
    return DataclassOrderPlaced(
        order_id=data["order_id"],
        total_cents=data["total_cents"],
        event_id=uuid.UUID(data["event_id"]),
        occurred_at=datetime.fromisoformat(data["occurred_at"]),
    )


def pydantic_roundtrip(event: M) -> M:
    return type(event).model_validate_json(event.model_dump_json())


def domain_event_roundtrip(event: OrderPlaced) -> OrderPlaced:
    """The envelope (event name, then class chosen by name) is part of what is measured."""
    return OrderPlaced.from_json(event.to_json())


@pytest.mark.benchmark(group="domain.event-json-roundtrip")
class TestEventJsonRoundtrip:
    def test_dataclass_json_module(self, baseline):
        event = DataclassOrderPlaced(**ORDER)
        assert baseline(dataclass_roundtrip, event) == event

    def test_pydantic_model(self, peer):
        event = PydanticOrderPlaced(**ORDER)
        assert peer(pydantic_roundtrip, event) == event

    def test_pydantic_frozen_model(self, peer):
        event = FrozenPydanticOrderPlaced(**ORDER)
        assert peer(pydantic_roundtrip, event) == event

    def test_domain_event_to_from_json(self, ours):
        event = OrderPlaced(**ORDER)
        restored = ours(domain_event_roundtrip, event)
        assert restored == event
        assert type(restored) is OrderPlaced

    def test_domain_event_model_dump_validate(self, ours):
        """The same class through pydantic's JSON methods: the envelope's cost, by difference."""
        event = OrderPlaced(**ORDER)
        assert ours(pydantic_roundtrip, event) == event


# Values -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataclassMoney:
    amount: Decimal
    currency: str


class PydanticMoney(BaseModel):
    amount: Decimal
    currency: str


class FrozenPydanticMoney(BaseModel):
    model_config = ConfigDict(frozen=True)

    amount: Decimal
    currency: str


class Money(ValueObject):
    amount: Decimal
    currency: str


def check_money(money: Any) -> None:
    assert money.amount == Decimal("12.50")
    assert money.currency == "EUR"


@pytest.mark.benchmark(group="domain.value-construct")
class TestValueConstruct:
    def test_frozen_dataclass(self, baseline):
        check_money(baseline(DataclassMoney, **PRICE))

    def test_pydantic_model(self, peer):
        check_money(peer(PydanticMoney, **PRICE))

    def test_pydantic_frozen_model(self, peer):
        check_money(peer(FrozenPydanticMoney, **PRICE))

    def test_value_object(self, ours):
        check_money(ours(Money, **PRICE))
