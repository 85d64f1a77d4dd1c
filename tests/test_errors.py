"""The error tree: every error is a ButtressError and the stdlib error it means."""

from __future__ import annotations

import pickle

import pytest

import buttress.errors as errors_module
from buttress.errors import (
    BulkheadFullError,
    ButtressError,
    CacheKeyError,
    CircuitOpenError,
    ConcurrencyError,
    ConfigurationError,
    ConflictError,
    DeadlineExceededError,
    DecodeError,
    DeliveryError,
    MissingDependencyError,
    NotFoundError,
    QueryError,
    RetryError,
    UnavailableError,
)

EXAMPLES: list[ButtressError] = [
    NotFoundError(entity="Order", key=42),
    ConflictError(entity="Order", key=42),
    ConcurrencyError(entity="Order", key=42),
    UnavailableError("payments refused the call", retry_after=1.5),
    CircuitOpenError("payments", 12.5),
    BulkheadFullError("reports", 4, 2),
    RetryError("deadline passed before the first attempt", attempts=0),
    DeadlineExceededError("lookup", 0.5, 0.75),
    DecodeError("cursor was tampered with"),
    CacheKeyError("cannot cache the call to f: argument 1 (list) is not hashable"),
    QueryError("Order has no field 'colour'; its fields are: id, total"),
    ConfigurationError.from_problems("invalid settings", ["A: bad", "B: worse"]),
    MissingDependencyError("redis", "redis", "RedisCache"),
    DeliveryError("1 durable handler(s) of orders.placed failed", failures=("a failure",)),
]


def test_the_documented_tree_and_stdlib_bases() -> None:
    assert issubclass(NotFoundError, LookupError)
    assert issubclass(ConfigurationError, ValueError)
    assert issubclass(DecodeError, ValueError)
    assert issubclass(CacheKeyError, TypeError)
    assert issubclass(QueryError, ValueError)
    assert issubclass(MissingDependencyError, ImportError)
    assert issubclass(DeadlineExceededError, TimeoutError)
    assert issubclass(CircuitOpenError, UnavailableError)
    assert issubclass(BulkheadFullError, UnavailableError)
    # A stale version is not a duplicate: handlers can tell them apart.
    assert not issubclass(ConcurrencyError, ConflictError)
    assert not issubclass(ConflictError, ConcurrencyError)


def test_every_exported_error_derives_from_buttress_error() -> None:
    exported = [getattr(errors_module, name) for name in errors_module.__all__]
    assert all(issubclass(cls, ButtressError) for cls in exported)
    assert {type(example) for example in EXAMPLES} == set(exported) - {ButtressError}


def test_the_module_docstring_draws_every_error() -> None:
    doc = errors_module.__doc__ or ""
    for name in errors_module.__all__:
        assert name in doc, name


@pytest.mark.parametrize("error", EXAMPLES, ids=lambda e: type(e).__name__)
def test_errors_pickle_with_their_details(error: ButtressError) -> None:
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is type(error)
    assert str(clone) == str(error)
    assert clone.__dict__ == error.__dict__


@pytest.mark.parametrize(
    ("error", "what", "advice"),
    [
        (NotFoundError(entity="Order", key=42), "was not found", "use get_or_none()"),
        (ConflictError(entity="Order", key=42), "conflicts with stored data", "choose another key"),
        (ConcurrencyError(entity="Order", key=42), "changed by someone else", "load it again"),
        (CircuitOpenError("payments", 1.0), "is open", "serve a fallback"),
        (BulkheadFullError("reports", 4), "is full", "shed the load"),
        (MissingDependencyError("redis", "redis"), "is not installed", "pip install"),
        (DeadlineExceededError("lookup", 0.5, 0.75), "exceeded its time limit", "retry"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else "",
)
def test_generated_messages_say_what_happened_and_what_to_do(
    error: ButtressError, what: str, advice: str
) -> None:
    assert str(error) == error.message
    assert what in str(error)
    assert advice in str(error)
    assert str(error).index(what) < str(error).index(advice)


def test_not_found_names_the_entity_and_key_and_suggests_get_or_none() -> None:
    error = NotFoundError(entity="Order", key=42)
    assert (error.entity, error.key) == ("Order", 42)
    assert "Order with key 42 was not found" in str(error)
    assert "get_or_none()" in str(error)
    with pytest.raises(LookupError):
        raise error


def test_circuit_open_carries_the_name_and_time_left() -> None:
    error = CircuitOpenError("payments", 12.5)
    assert (error.name, error.remaining, error.retry_after) == ("payments", 12.5, 12.5)
    assert "'payments'" in str(error)
    assert "12.500s" in str(error)
    assert CircuitOpenError("payments", -3).remaining == 0.0


def test_missing_dependency_names_the_extra_to_install() -> None:
    error = MissingDependencyError("redis", "redis", "RedisCache")
    assert "pip install 'buttress[redis]'" in str(error)
    assert "RedisCache needs it" in str(error)
    assert error.name == "redis"
    with pytest.raises(ImportError):
        raise error


def test_configuration_error_lists_every_problem() -> None:
    error = ConfigurationError.from_problems("invalid settings", ["A: bad", "B: worse"])
    assert error.problems == ("A: bad", "B: worse")
    assert str(error) == "invalid settings:\n  - A: bad\n  - B: worse"


def test_a_custom_message_replaces_the_generated_one() -> None:
    assert str(NotFoundError("no such order")) == "no such order"
    assert str(BulkheadFullError("x", 1, message="full")) == "full"
