"""Commands: frozen pydantic models known by name, read back from JSON as their own class."""

from __future__ import annotations

import json
import uuid

import pytest
from pydantic import ValidationError

from buttress.domain import DomainEvent
from buttress.errors import ConfigurationError, DecodeError
from buttress.messaging import Command


class PlaceOrder(Command, name="tests.orders.place"):
    customer: str
    lines: dict[str, int]


class CancelOrder(Command):
    order_id: int


class SameNameEvent(DomainEvent, name="tests.orders.place"):  # another registry: allowed
    pass


def test_a_command_round_trips_through_json_as_its_class() -> None:
    command = PlaceOrder(customer="ada", lines={"chair": 2})
    raw = command.to_json()
    assert json.loads(raw)["command"] == "tests.orders.place"
    back = Command.from_json(raw)
    assert type(back) is PlaceOrder
    assert back == command
    assert back.command_id == command.command_id
    assert PlaceOrder.from_json(raw.encode()) == command


def test_commands_are_frozen_have_unique_ids_and_refuse_unknown_fields() -> None:
    one, two = CancelOrder(order_id=1), CancelOrder(order_id=1)
    assert isinstance(one.command_id, uuid.UUID)
    assert one.command_id != two.command_id
    with pytest.raises(ValidationError):
        one.order_id = 2  # type: ignore[misc]
    with pytest.raises(ValidationError):
        CancelOrder(order_id=1, reason="x")  # type: ignore[call-arg]


def test_names_default_to_the_qualified_class_name_and_are_registered() -> None:
    assert CancelOrder.command_name == f"{__name__}.CancelOrder"
    assert Command.registered()["tests.orders.place"] is PlaceOrder
    assert DomainEvent.registered()["tests.orders.place"] is SameNameEvent


def test_two_commands_cannot_share_a_name_nor_take_an_empty_one() -> None:
    with pytest.raises(ConfigurationError, match="command name 'tests.orders.place'.*taken"):

        class Impostor(Command, name="tests.orders.place"):
            pass

    with pytest.raises(ConfigurationError, match="empty name"):

        class Nameless(Command, name=""):
            pass


_NO_ID = '{"command": "tests.orders.place", "data": {"customer": "a", "lines": {}}}'


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("not json", "not a serialised command"),
        (SameNameEvent().to_json(), "not a serialised command"),  # an event, not a command
        ('{"command": "nobody.knows", "data": {}}', "no command class is registered"),
        (_NO_ID, "has no command_id"),
    ],
)
def test_what_is_not_a_command_is_a_decode_error(raw: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        Command.from_json(raw)


def test_from_json_checks_the_class_and_the_data() -> None:
    raw = CancelOrder(order_id=1).to_json()
    with pytest.raises(DecodeError, match="is a CancelOrder, not a PlaceOrder"):
        PlaceOrder.from_json(raw)
    with pytest.raises(DecodeError, match=r"does not fit CancelOrder \(order_id: "):
        Command.from_json(raw.replace('"order_id":1', '"order_id":"one"'))


def test_a_bare_command_round_trips() -> None:
    command = Command()
    assert Command.from_json(command.to_json()) == command
