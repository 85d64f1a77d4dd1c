"""Domain events: frozen, unique, timezone-aware, and round-tripped through JSON."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ConfigDict, ValidationError

from buttress.domain import AggregateRoot, DomainEvent, ValueObject
from buttress.errors import ConfigurationError, DecodeError


class Money(ValueObject):
    amount: Decimal
    currency: str


class OrderPlaced(DomainEvent, name="test.orders.placed"):
    order_id: int
    lines: tuple[str, ...]
    total: Money
    note: str | None = None


class OrderCancelled(DomainEvent):
    order_id: int
    reason: str


class OtherEvent(DomainEvent):
    pass


aware_datetimes = st.datetimes(
    min_value=datetime(1970, 1, 2),  # noqa: DTZ001 - hypothesis attaches the zone
    max_value=datetime(2200, 1, 1),  # noqa: DTZ001 - hypothesis attaches the zone
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), UTC]),
)
moneys = st.builds(
    Money,
    amount=st.decimals(allow_nan=False, allow_infinity=False, places=2, max_value=10**9),
    currency=st.sampled_from(["EUR", "GBP"]),
)
placed = st.builds(
    OrderPlaced,
    order_id=st.integers(),
    lines=st.lists(st.text(), max_size=3).map(tuple),
    total=moneys,
    note=st.none() | st.text(),
    event_id=st.uuids(),
    occurred_at=aware_datetimes,
)
cancelled = st.builds(
    OrderCancelled, order_id=st.integers(), reason=st.text(), occurred_at=aware_datetimes
)
events = st.one_of(placed, cancelled)


@given(events)
def test_an_event_round_trips_through_json_with_its_class(event: DomainEvent) -> None:
    restored = DomainEvent.from_json(event.to_json())
    assert type(restored) is type(event)
    assert restored == event
    assert restored.occurred_at == event.occurred_at
    assert restored.occurred_at.utcoffset() == event.occurred_at.utcoffset()


@given(events)
def test_an_event_round_trips_through_plain_pydantic_json(event: DomainEvent) -> None:
    assert type(event).model_validate_json(event.model_dump_json()) == event


def test_defaults_give_a_unique_id_and_an_aware_utc_time() -> None:
    before = datetime.now(UTC)
    first = OrderCancelled(order_id=1, reason="x")
    second = OrderCancelled(order_id=1, reason="x")
    assert isinstance(first.event_id, uuid.UUID)
    assert first.event_id != second.event_id
    assert first != second  # two occurrences, not one value
    assert first.occurred_at.tzinfo is not None
    assert before <= first.occurred_at <= datetime.now(UTC)


def test_a_naive_time_is_rejected() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        OrderCancelled(order_id=1, reason="x", occurred_at=datetime(2024, 1, 1))  # noqa: DTZ001


def test_events_are_frozen_and_hashable() -> None:
    event = OrderCancelled(order_id=1, reason="x")
    with pytest.raises(ValidationError, match="frozen"):
        event.reason = "y"  # type: ignore[misc]
    assert {event, event.model_copy()} == {event}


def test_event_names_default_to_the_qualified_class_name() -> None:
    assert OrderPlaced.event_name == "test.orders.placed"
    assert OrderCancelled.event_name == f"{__name__}.OrderCancelled"
    assert DomainEvent.registered()["test.orders.placed"] is OrderPlaced


def test_two_classes_cannot_share_a_name() -> None:
    with pytest.raises(ConfigurationError, match="already taken by .*OrderPlaced"):

        class Impostor(DomainEvent, name="test.orders.placed"):
            pass


def test_an_empty_name_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="empty name"):

        class Nameless(DomainEvent, name=""):
            pass


def test_redefining_the_same_class_replaces_it() -> None:
    def define() -> type[DomainEvent]:
        class Redefined(DomainEvent, name="test.redefined"):
            value: int

        return Redefined

    first, second = define(), define()
    assert DomainEvent.registered()["test.redefined"] is second
    assert type(DomainEvent.from_json(first(value=1).to_json())) is second


def test_from_json_on_a_subclass_checks_the_class() -> None:
    raw = OrderCancelled(order_id=1, reason="x").to_json()
    assert OrderCancelled.from_json(raw).order_id == 1
    with pytest.raises(DecodeError, match="is an OrderCancelled, not an OtherEvent"):
        OtherEvent.from_json(raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("not json", "not a serialised domain event"),
        ('{"data": {}}', "not a serialised domain event"),
        ('{"event": "nobody.knows", "data": {}}', "no event class is registered"),
    ],
)
def test_undecodable_input_raises_decode_error(raw: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message) as caught:
        DomainEvent.from_json(raw)
    assert isinstance(caught.value, ValueError)


def test_data_that_does_not_fit_the_class_is_a_decode_error_naming_the_field() -> None:
    event = OrderCancelled(order_id=1, reason="x")
    raw = event.to_json().replace('"order_id":1', '"order_id":"one"')
    with pytest.raises(DecodeError, match=r"does not fit OrderCancelled \(order_id: ") as caught:
        DomainEvent.from_json(raw)
    assert isinstance(caught.value.__cause__, ValidationError)


@pytest.mark.parametrize("field", ["event_id", "occurred_at"])
def test_an_event_without_its_identity_or_time_is_not_given_new_ones(field: str) -> None:
    data = OrderCancelled(order_id=1, reason="x").model_dump(mode="json")
    del data[field]
    raw = json.dumps({"event": OrderCancelled.event_name, "data": data})
    with pytest.raises(DecodeError, match=f"has no {field}"):
        DomainEvent.from_json(raw)


class StrictEvent(DomainEvent):
    model_config = ConfigDict(strict=True)

    count: int


def test_strict_events_read_back_as_pydantic_reads_their_json() -> None:
    event = StrictEvent(count=3)
    assert DomainEvent.from_json(event.to_json()) == event
    assert StrictEvent.model_validate_json(event.model_dump_json()) == event


def test_a_bare_domain_event_round_trips() -> None:
    event = DomainEvent()
    assert DomainEvent.from_json(event.to_json()) == event


@dataclass
class Ledger(AggregateRoot):
    id: int


def test_aggregates_hand_out_events_once_in_order() -> None:
    ledger = Ledger(1)
    assert ledger.pending_events == ()
    first = OrderCancelled(order_id=1, reason="a")
    second = OrderCancelled(order_id=2, reason="b")
    ledger.record_event(first)
    ledger.record_event(second)
    assert ledger.pending_events == (first, second)
    assert ledger.pull_events() == [first, second]
    assert ledger.pull_events() == []
    assert ledger.pending_events == ()


def test_recorded_events_do_not_change_equality_or_leak_between_instances() -> None:
    a, b = Ledger(1), Ledger(1)
    a.record_event(OrderCancelled(order_id=1, reason="a"))
    assert a == b
    assert b.pending_events == ()
