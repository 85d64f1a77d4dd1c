"""pytest fixtures for applications built on Buttress."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from dependency_injector import containers

__all__ = ["provider_overrides"]


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
