"""Dependency injection: containers wired from settings, a startup check, test overrides.

dependency-injector does the injecting. Buttress gives you containers for its
blocks, built from the pydantic settings models, that you can include in your
own (`PersistenceContainer`, `CachingContainer`, `ResilienceContainer`); `check`
finds what would fail before the first request; `override` swaps providers for
fakes in tests.
"""

from buttress.di._blocks import CircuitBreakers, RetryPolicy
from buttress.di._check import check
from buttress.di._containers import (
    CachingContainer,
    Container,
    PersistenceContainer,
    ResilienceContainer,
)
from buttress.di._override import override

__all__ = [
    "CachingContainer",
    "CircuitBreakers",
    "Container",
    "PersistenceContainer",
    "ResilienceContainer",
    "RetryPolicy",
    "check",
    "override",
]
