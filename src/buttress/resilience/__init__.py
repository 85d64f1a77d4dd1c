"""Resilience: retry, circuit breaker, timeout, bulkhead, fallback, for def and async def.

Every decorator checks its arguments when it is applied (a mistake is a
`ConfigurationError` at import time, not at the first call), keeps the
decorated function's signature for type checkers, and does the minimum on the
success path. Importing this package loads no database, Redis or
dependency-injection library, and not even tenacity: that waits for the first
failure.
"""

from buttress.resilience._base import ResilienceListener
from buttress.resilience._breaker import (
    CircuitBreaker,
    CircuitState,
    circuit_breaker,
    isolated_breakers,
)
from buttress.resilience._bulkhead import bulkhead
from buttress.resilience._fallback import fallback
from buttress.resilience._policy import Policy
from buttress.resilience._retry import RetryBudget, retry
from buttress.resilience._testing import ResilienceTesting, resilience_testing
from buttress.resilience._timeout import timeout

__all__ = [
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
]
