"""What users see in a type checker. Checked by mypy --strict, never run."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import assert_type

from pydantic import SecretStr
from sqlalchemy.orm import DeclarativeBase, Mapped, MappedAsDataclass, mapped_column

from buttress.domain import AggregateRoot, DomainEvent, Entity, ValueObject
from buttress.errors import CircuitOpenError, ConfigurationError, NotFoundError
from buttress.settings import ButtressSettings, DatabaseSettings


class Money(ValueObject):
    amount: Decimal
    currency: str


class Paid(DomainEvent, name="typing.paid"):
    order_id: int


class Base(MappedAsDataclass, DeclarativeBase):
    pass


class Order(AggregateRoot, Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    total: Mapped[int] = mapped_column(default=0)

    def pay(self) -> None:
        self.record_event(Paid(order_id=self.id))


@dataclass
class Customer(Entity):
    id: int
    name: str


def events() -> None:
    order = Order(id=1)
    order.pay()
    assert_type(order.pull_events(), list[DomainEvent])
    assert_type(order.pending_events, tuple[DomainEvent, ...])
    assert_type(Paid.from_json("{}"), Paid)
    assert_type(DomainEvent.from_json("{}"), DomainEvent)
    assert_type(Paid(order_id=1).to_json(), str)
    assert_type(order.id, int)


def values() -> None:
    money = Money(amount=Decimal(1), currency="EUR")
    assert_type(money.amount, Decimal)
    assert_type(money.model_copy(update={"amount": Decimal(2)}), Money)
    assert_type(Customer(1, "ada") == Customer(1, "x"), bool)


def settings() -> None:
    loaded = ButtressSettings()
    assert_type(loaded.database, DatabaseSettings)
    assert_type(loaded.database.url, SecretStr)
    assert_type(loaded.database.safe_url, str)
    assert_type(loaded.resilience.retry.attempts, int)
    assert_type(loaded.database.statement_timeout, float | None)


def errors() -> None:
    try:
        pass
    except NotFoundError as error:
        assert_type(error.key, object)
    except CircuitOpenError as error:
        assert_type(error.remaining, float)
        assert_type(error.retry_after, float | None)
    except ConfigurationError as error:
        assert_type(error.problems, tuple[str, ...])
