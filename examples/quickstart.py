"""Buttress quickstart: every block working together, as a user writes them.

Run it with ``uv run python examples/quickstart.py``. It needs no server: SQLite in a
temporary directory and an in-process cache. It prints a short transcript:

- settings, read and checked (secrets masked, bad values refused);
- an order saved through a unit of work, its domain event collected after commit;
- a cached read, served again from the cache, then invalidated after a change;
- a flaky dependency retried until it answers, then a dead one tripping a breaker.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
from decimal import Decimal

import sqlalchemy as sa
from dependency_injector import containers, providers
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from buttress.caching import cached
from buttress.di import CachingContainer, PersistenceContainer, ResilienceContainer, check
from buttress.domain import AggregateRoot, DomainEvent, F, ValueObject
from buttress.errors import CircuitOpenError, ConfigurationError
from buttress.resilience import resilience_testing
from buttress.settings import ButtressSettings, DatabaseSettings, ResilienceSettings


class Money(ValueObject):
    amount: Decimal
    currency: str


class OrderPlaced(DomainEvent, name="quickstart.order-placed"):
    order_id: int
    total: Money


class Base(DeclarativeBase):
    pass


class Order(AggregateRoot, Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(sa.String(20), unique=True)
    amount: Mapped[Decimal] = mapped_column(sa.Numeric(10, 2))
    currency: Mapped[str] = mapped_column(sa.String(3))
    placed: Mapped[bool] = mapped_column(default=False)
    version: Mapped[int] = mapped_column(nullable=False)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy's spelling

    @property
    def total(self) -> Money:
        return Money(amount=self.amount, currency=self.currency)

    def place(self) -> None:
        self.placed = True
        self.record_event(OrderPlaced(order_id=self.id, total=self.total))


class App(containers.DeclarativeContainer):
    """The application's composition root: Buttress's containers, included."""

    persistence = providers.Container(PersistenceContainer)
    caching = providers.Container(CachingContainer)
    resilience = providers.Container(ResilienceContainer)


def settings_section() -> None:
    settings = ButtressSettings(database={"url": "postgresql://shop:s3cret@db:5432/shop"})
    print(f"database  {settings.database.safe_url} (pool of {settings.database.pool_size})")
    try:
        ButtressSettings(database={"pool_size": -1})
    except ConfigurationError as error:
        print(f"rejected  {error.problems[0]}")


def persistence_section(app: App) -> int:
    with app.persistence.unit_of_work() as uow:
        orders = uow.repository(Order, int)
        order = orders.add(Order(ref="Q-1", amount=Decimal("42.50"), currency="EUR"))
        order.place()
        uow.commit()
    [event] = uow.collect_events()
    wire = event.to_json()
    assert DomainEvent.from_json(wire) == event
    print(f"saved     order {order.ref} (id {order.id}, version {order.version})")
    print(f"event     {type(event).__name__} for order {event.order_id}: {len(wire)} bytes")
    print("event     read back from JSON as the same event")
    with app.persistence.unit_of_work() as uow:
        placed = uow.repository(Order, int).count(F("placed") == True)  # noqa: E712 - a filter
        print(f"query     {placed} placed order(s) in the database")
    return order.id


def caching_section(app: App, order_id: int) -> None:
    reads = []

    @cached(cache=app.caching.cache, ttl=60)
    def order_total(key: int) -> str:
        reads.append(key)
        with app.persistence.unit_of_work() as uow:
            order = uow.repository(Order, int).get(key)
            return f"{order.amount} {order.currency}"

    first, second = order_total(order_id), order_total(order_id)
    assert first == second
    print(f"cached    total {first}: {len(reads)} database read for 2 calls")
    with app.persistence.unit_of_work() as uow:
        uow.repository(Order, int).get(order_id).amount = Decimal("40.00")
        uow.commit()
    order_total.invalidate(order_id)
    print(f"cached    after a discount and invalidate(): {order_total(order_id)}")
    stats = order_total.stats()
    print(f"cached    {stats.hits} hit, {stats.misses} misses")


def resilience_section(app: App) -> None:
    attempts = []
    failures_before_answer = 2

    @app.resilience.retry()(on=ConnectionError)
    def exchange_rate() -> Decimal:
        attempts.append(1)
        if len(attempts) <= failures_before_answer:
            raise ConnectionError("rates service timed out")
        return Decimal("1.08")

    with resilience_testing(no_wait=True):  # skip the backoff waits in a demo
        rate = exchange_rate()
    print(f"retried   exchange rate {rate} after {len(attempts)} attempts")

    breaker = app.resilience.breakers()("quickstart-shipping")

    @breaker
    def ship() -> None:
        raise ConnectionError("shipping service is down")

    for _ in range(2):
        with contextlib.suppress(ConnectionError):
            ship()
    try:
        ship()
    except CircuitOpenError as error:
        print(
            f"breaker   {breaker.state.name.lower()}: refused without calling, retry in "
            f"{error.remaining:.0f}s"
        )


def main() -> int:
    # Buttress logs under "buttress.*": show its warnings (a breaker opening) in the transcript.
    logging.basicConfig(stream=sys.stdout, format="log       %(message)s", level=logging.WARNING)
    settings_section()
    with tempfile.TemporaryDirectory() as directory:
        app = App()
        app.persistence.settings.override(DatabaseSettings(url=f"sqlite:///{directory}/shop.db"))
        app.resilience.settings.override(
            ResilienceSettings(retry={"attempts": 3}, breaker={"fail_max": 2})
        )
        check(app)
        print("wiring    checked: every provider can be built")
        Base.metadata.create_all(app.persistence.engine())
        order_id = persistence_section(app)
        caching_section(app, order_id)
        resilience_section(app)
        app.shutdown_resources()
        print("shutdown  engine disposed, cache closed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
