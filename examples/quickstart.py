"""Buttress quickstart: the foundation blocks, as a user writes them.

Run it with ``uv run python examples/quickstart.py``. It grows with the library:
persistence, caching and resilience join this script as they land.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from buttress.domain import AggregateRoot, DomainEvent, ValueObject
from buttress.errors import ConfigurationError
from buttress.settings import ButtressSettings


class Money(ValueObject):
    amount: Decimal
    currency: str


class OrderPlaced(DomainEvent, name="quickstart.order-placed"):
    order_id: int
    total: Money


@dataclass
class Order(AggregateRoot):
    id: int
    total: Money
    placed: bool = False

    def place(self) -> None:
        self.placed = True
        self.record_event(OrderPlaced(order_id=self.id, total=self.total))


def main() -> int:
    settings = ButtressSettings(database={"url": "postgresql://shop:s3cret@db:5432/shop"})
    print(f"database  {settings.database.safe_url} (pool of {settings.database.pool_size})")
    print(f"cache     {settings.cache.backend}, up to {settings.cache.maxsize} entries")

    try:
        ButtressSettings(database={"pool_size": -1})
    except ConfigurationError as error:
        print(f"rejected  {error.problems[0]}")

    order = Order(1, Money(amount=Decimal("42.50"), currency="EUR"))
    order.place()
    [event] = order.pull_events()
    wire = event.to_json()
    print(f"event     {type(event).__name__} for order {event.order_id}: {len(wire)} bytes")
    assert DomainEvent.from_json(wire) == event
    print("event     read back from JSON as the same event")
    assert order == Order(1, Money(amount=Decimal(0), currency="EUR"))
    print("entity    equal to any Order with id 1, whatever its fields")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
