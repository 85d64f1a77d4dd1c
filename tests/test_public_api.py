"""The public face: exported names are pinned, and importing is cheap."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

import buttress

EXPORTS = {
    "buttress": ["ButtressError", "__version__"],
    "buttress.errors": [
        "BulkheadFullError",
        "ButtressError",
        "CacheKeyError",
        "CircuitOpenError",
        "ConcurrencyError",
        "ConfigurationError",
        "ConflictError",
        "DeadlineExceededError",
        "DecodeError",
        "DeliveryError",
        "MissingDependencyError",
        "NotFoundError",
        "QueryError",
        "RetryError",
        "UnavailableError",
    ],
    "buttress.domain": [
        "AggregateRoot",
        "DomainEvent",
        "Entity",
        "F",
        "Specification",
        "ValueObject",
    ],
    "buttress.persistence": [
        "AsyncInMemoryRepository",
        "AsyncInMemoryUnitOfWork",
        "AsyncRepository",
        "AsyncSqlAlchemyRepository",
        "AsyncSqlAlchemyUnitOfWork",
        "AsyncUnitOfWork",
        "InMemoryRepository",
        "InMemoryStore",
        "InMemoryUnitOfWork",
        "OutboxWriter",
        "Page",
        "Repository",
        "SqlAlchemyRepository",
        "SqlAlchemyUnitOfWork",
        "UnitOfWork",
    ],
    "buttress.testing": [
        "Allocated",
        "AsyncRecordingTransport",
        "AsyncUnitOfWorkContract",
        "ContractAllocation",
        "ContractBatch",
        "ContractDetail",
        "ContractLabel",
        "ContractLine",
        "ContractNote",
        "ContractOrder",
        "ContractProduct",
        "ContractSetting",
        "ContractTag",
        "NoteEdited",
        "OrderPaid",
        "RecordingTransport",
        "TransportContract",
        "UnitOfWorkContract",
        "contract_metadata",
        "fresh_breakers",
        "provider_overrides",
    ],
    "buttress.di.fastapi": [
        "PROBLEM_JSON",
        "Problem",
        "breaker",
        "install_error_handlers",
        "lifespan",
        "provided",
        "unit_of_work",
    ],
    "buttress.di": [
        "CachingContainer",
        "CircuitBreakers",
        "Container",
        "PersistenceContainer",
        "ResilienceContainer",
        "RetryPolicy",
        "check",
        "override",
    ],
    "buttress.caching": [
        "MISSING",
        "CacheListener",
        "CacheStats",
        "CacheView",
        "Cached",
        "MemoryCache",
        "RedisCache",
        "SharedCache",
        "TieredCache",
        "cached",
    ],
    "buttress.resilience": [
        "CircuitBreaker",
        "CircuitState",
        "Policy",
        "ResilienceListener",
        "ResilienceTesting",
        "RetryBudget",
        "bulkhead",
        "circuit_breaker",
        "fallback",
        "isolated_breakers",
        "resilience_testing",
        "retry",
        "timeout",
    ],
    "buttress.messaging": [
        "AsyncInProcessTransport",
        "AsyncMessageBus",
        "AsyncRabbitMQConsumer",
        "AsyncRabbitMQTransport",
        "AsyncRelay",
        "AsyncTransport",
        "Backlog",
        "Command",
        "DeadLetter",
        "DispatchReport",
        "Handler",
        "HandlerFailure",
        "Handlers",
        "InProcessTransport",
        "Inbox",
        "Message",
        "MessageBus",
        "Outbox",
        "RabbitMQConsumer",
        "RabbitMQTransport",
        "Relay",
        "RelayReport",
        "Transport",
    ],
    "buttress.settings": [
        "BreakerSettings",
        "ButtressSettings",
        "CacheSettings",
        "DatabaseSettings",
        "RedisSettings",
        "ResilienceSettings",
        "RetrySettings",
        "mask_url",
    ],
}


@pytest.mark.parametrize("module_name", sorted(EXPORTS))
def test_exported_names_are_exactly_the_documented_ones(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert module.__all__ == EXPORTS[module_name]
    # sorted as isort (and ruff) sort it: constants, then the rest in ASCII order
    constant = lambda name: name.isupper() and len(name) > 1  # noqa: E731 - ruff: "F" is a class
    assert module.__all__ == sorted(module.__all__, key=lambda name: (not constant(name), name))
    for name in module.__all__:
        assert hasattr(module, name), name


@pytest.mark.parametrize("module_name", sorted(EXPORTS))
def test_every_public_name_has_a_docstring(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert module.__doc__
    for name in module.__all__:
        value = getattr(module, name)
        if callable(value):
            assert value.__doc__, name


HEAVY = ("sqlalchemy", "redis", "dependency_injector", "tenacity", "pybreaker", "cachetools")


@pytest.mark.parametrize(
    "modules",
    [
        "buttress, buttress.errors, buttress.settings, buttress.domain",
        "buttress.resilience",  # not even tenacity: it waits for the first failure
        "buttress.messaging",  # the bus alone: the outbox's SQL comes with the outbox
    ],
)
def test_importing_a_block_loads_no_database_redis_or_di_library(modules: str) -> None:
    code = (
        "import json, sys\n"
        f"import {modules}\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(result.stdout) == []


def test_the_version_is_a_string() -> None:
    assert isinstance(buttress.__version__, str)
    assert buttress.__version__.count(".") >= 2
