"""Entities compare by class and key, value objects by class and values: the laws."""

from __future__ import annotations

import copy
import pickle
from dataclasses import dataclass
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from buttress.domain import AggregateRoot, DomainEvent, Entity, ValueObject
from buttress.errors import ConfigurationError


@dataclass
class Customer(Entity):
    id: int | None
    name: str


@dataclass
class Supplier(Entity):
    id: int | None
    name: str


class Account(Entity, BaseModel):
    """An entity that is also a (mutable) pydantic model."""

    model_config = ConfigDict(validate_assignment=True)

    id: str
    balance: int = 0


class Sku(Entity):
    """An entity whose key attribute is not called ``id``."""

    __identity__ = "code"

    def __init__(self, code: str, title: str) -> None:
        self.code = code
        self.title = title


keys = st.none() | st.integers(-5, 5)
names = st.sampled_from(["ada", "grace", "edsger"])
customers = st.builds(Customer, keys, names)
entities = st.one_of(customers, st.builds(Supplier, keys, names))


@given(entities)
def test_equality_is_reflexive(entity: Customer | Supplier) -> None:
    assert entity == entity  # noqa: PLR0124 - the law under test
    assert entity == copy.copy(entity) or entity.id is None


@given(entities, entities)
def test_equality_is_symmetric(a: Entity, b: Entity) -> None:
    assert (a == b) == (b == a)
    assert (a != b) == (not a == b)  # noqa: SIM201 - __ne__ must agree with __eq__


@given(entities, entities, entities)
def test_equality_is_transitive(a: Entity, b: Entity, c: Entity) -> None:
    if a == b and b == c:
        assert a == c


@given(entities, entities)
def test_equal_entities_hash_equal(a: Customer | Supplier, b: Customer | Supplier) -> None:
    if a == b and a.id is not None:
        assert hash(a) == hash(b)


@given(entities, entities)
def test_equality_is_decided_by_class_and_key_alone(
    a: Customer | Supplier, b: Customer | Supplier
) -> None:
    same_identity = type(a) is type(b) and a.id is not None and a.id == b.id
    assert (a == b) == (same_identity or a is b)


@given(customers)
def test_changing_attributes_keeps_identity(customer: Customer) -> None:
    before = copy.copy(customer)
    customer.name += " (renamed)"
    assert (customer == before) == (customer.id is not None)


def test_entities_of_different_classes_with_one_key_differ() -> None:
    assert Customer(1, "ada") != Supplier(1, "ada")
    assert Customer(1, "ada") != 1


def test_an_entity_without_a_key_refuses_to_hash_with_advice() -> None:
    with pytest.raises(TypeError, match="Customer has no id yet.*assign the key"):
        hash(Customer(None, "ada"))


def test_a_custom_identity_attribute() -> None:
    assert Sku("A-1", "hammer") == Sku("A-1", "big hammer")
    with pytest.raises(TypeError, match="has no code yet"):
        hash(Sku(None, "x"))  # type: ignore[arg-type]


def test_entity_adds_no_attribute_that_could_clash_with_a_field() -> None:
    assert [name for name in vars(Entity) if not name.startswith("__")] == []

    @dataclass
    class Person(Entity):
        id: int
        identity: str
        key: str

    assert Person(1, "passport", "a") == Person(1, "licence", "b")
    assert Person(1, "passport", "a") != Person(2, "passport", "a")
    assert hash(Person(1, "a", "a")) == hash(Person(1, "b", "b"))


def test_pydantic_entities_compare_by_key() -> None:
    assert Account(id="a", balance=1) == Account(id="a", balance=99)
    assert {Account(id="a"), Account(id="a", balance=3)} == {Account(id="a")}


def test_entities_pickle_and_stay_equal() -> None:
    customer = Customer(1, "ada")
    assert pickle.loads(pickle.dumps(customer)) == customer


# --- ValueObject ----------------------------------------------------------------------


class Money(ValueObject):
    amount: Decimal
    currency: str


class Price(ValueObject):
    amount: Decimal
    currency: str


class Address(ValueObject):
    street: str
    lines: tuple[str, ...] = ()
    postcode: str | None = None


amounts = st.decimals(min_value=-100, max_value=100, places=2, allow_nan=False)
currencies = st.sampled_from(["EUR", "USD"])
monies = st.builds(Money, amount=amounts, currency=currencies)
prices = st.builds(Price, amount=amounts, currency=currencies)
addresses = st.builds(
    Address,
    street=st.sampled_from(["Main St", "High St"]),
    lines=st.lists(st.sampled_from(["flat 1", "rear"]), max_size=2).map(tuple),
    postcode=st.none() | st.sampled_from(["N1", "E2"]),
)
values = st.one_of(monies, prices, addresses)


@given(values)
def test_value_equality_is_reflexive_and_survives_copies(value: ValueObject) -> None:
    assert value == value  # noqa: PLR0124 - the law under test
    assert value == value.model_copy()
    assert value == type(value).model_validate(value.model_dump())
    assert value == pickle.loads(pickle.dumps(value))


@given(values, values)
def test_value_equality_is_symmetric_and_hash_consistent(a: ValueObject, b: ValueObject) -> None:
    assert (a == b) == (b == a)
    if a == b:
        assert hash(a) == hash(b)


@given(values, values, values)
def test_value_equality_is_transitive(a: ValueObject, b: ValueObject, c: ValueObject) -> None:
    if a == b and b == c:
        assert a == c


@given(values, values)
def test_values_are_equal_exactly_when_class_and_fields_are(a: ValueObject, b: ValueObject) -> None:
    assert (a == b) == (type(a) is type(b) and a.model_dump() == b.model_dump())


@given(st.sampled_from(["Main St", "High St"]))
def test_explicit_defaults_and_omitted_defaults_are_one_value(street: str) -> None:
    assert Address(street=street) == Address(street=street, lines=(), postcode=None)
    assert hash(Address(street=street)) == hash(Address(street=street, lines=(), postcode=None))


def test_values_are_immutable_and_strict_about_fields() -> None:
    money = Money(amount=Decimal(1), currency="EUR")
    with pytest.raises(ValidationError, match="frozen"):
        money.amount = Decimal(2)  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs"):
        Money(amount=Decimal(1), currency="EUR", note="x")  # type: ignore[call-arg]
    assert money.replace(amount="2").amount == Decimal(2)
    assert money.amount == Decimal(1)


class Percentage(ValueObject):
    value: int = Field(ge=0, le=100)


def test_replace_validates_like_construction() -> None:
    half = Percentage(value=50)
    assert half.replace(value="75") == Percentage(value=75)
    with pytest.raises(ValidationError, match="less than or equal to 100"):
        half.replace(value=150)
    with pytest.raises(ValidationError, match="Extra inputs"):
        half.replace(valu=1)
    assert half == Percentage(value=50)


def test_a_value_object_is_not_an_entity_and_an_aggregate_is() -> None:
    assert not issubclass(ValueObject, Entity)
    assert issubclass(AggregateRoot, Entity)


class FrozenAccount(Entity, BaseModel):
    """A frozen pydantic entity: pydantic must not hash it by its fields."""

    model_config = ConfigDict(frozen=True)

    id: int | None
    owner: str


pydantic_entities = st.builds(FrozenAccount, id=keys, owner=names) | st.builds(
    Account, id=st.sampled_from(["a", "b"]), balance=st.integers(0, 3)
)


@given(pydantic_entities, pydantic_entities)
def test_pydantic_entities_keep_the_laws(a: Entity, b: Entity) -> None:
    assert (a == b) == (b == a)
    key_a, key_b = getattr(a, "id", None), getattr(b, "id", None)
    assert (a == b) == (a is b or (type(a) is type(b) and key_a is not None and key_a == key_b))
    if a == b and key_a is not None:
        assert hash(a) == hash(b)


def test_a_frozen_pydantic_entity_with_base_model_first_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"class Wrong\(Entity, BaseModel\)"):

        class Wrong(BaseModel, Entity):
            model_config = ConfigDict(frozen=True)
            id: int

    with pytest.raises(ConfigurationError, match="list the entity base first"):

        class WrongByKeyword(BaseModel, Entity, frozen=True):
            id: int


def test_a_frozen_pydantic_entity_without_a_key_refuses_to_hash() -> None:
    with pytest.raises(TypeError, match="has no id yet"):
        hash(FrozenAccount(id=None, owner="ada"))


@dataclass
class Cart(AggregateRoot):
    id: int


class Added(DomainEvent):
    pass


def test_a_copy_of_an_aggregate_starts_without_the_originals_events() -> None:
    cart = Cart(1)
    cart.record_event(Added())
    for clone in (copy.copy(cart), copy.deepcopy(cart), pickle.loads(pickle.dumps(cart))):
        assert clone == cart
        assert clone.pending_events == ()
        clone.record_event(Added())
        assert len(clone.pending_events) == 1
    assert len(cart.pull_events()) == 1
