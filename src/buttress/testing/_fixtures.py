"""pytest fixtures for applications built on Buttress."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from dependency_injector import containers

__all__ = ["fresh_breakers", "provider_overrides"]


@pytest.fixture
def provider_overrides() -> Iterator[Callable[..., None]]:
    """Replace container providers for the rest of the test; they are restored after it.

    Call it as `buttress.di.override` is called, without the ``with``:
    ``provider_overrides(container, unit_of_work=InMemoryUnitOfWork)``. The
    originals come back when the test ends, passed or failed.

    Yields:
        The function that overrides.
    """
    from buttress.di import override  # noqa: PLC0415 - only tests that use it pay for DI

    with contextlib.ExitStack() as stack:

        def replace(container: containers.Container, **replacements: Any) -> None:
            stack.enter_context(override(container, **replacements))

        yield replace


@pytest.fixture
def fresh_breakers() -> Iterator[None]:
    """Give the test fresh circuit breakers; put the registry and their states back after.

    Every breaker starts the test closed with no failures counted, whatever an
    earlier test did to it; breakers the test makes are forgotten when it ends,
    so the next test may make one of the same name with other settings. It is
    `buttress.resilience.isolated_breakers` around the test. To give it to
    every test, in your ``conftest.py``:

    ```python
    @pytest.fixture(autouse=True)
    def _fresh_breakers(fresh_breakers): ...
    ```

    Yields:
        Nothing: the test runs inside the isolation.
    """
    from buttress.resilience import isolated_breakers  # noqa: PLC0415 - only tests that use it

    with isolated_breakers():
        yield
