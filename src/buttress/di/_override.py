"""`override`: swap providers for fakes in a block, and put them back however it ends."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from dependency_injector import providers

from buttress.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from dependency_injector import containers

__all__ = ["override"]


@contextlib.contextmanager
def override(container: containers.Container, **replacements: Any) -> Iterator[None]:
    """Replace providers of ``container`` by name for the block, restoring them on exit.

    A replacement that is not a provider is wrapped in ``providers.Object``
    (given as is) or, for a class or function, ``providers.Factory`` (called on
    each resolve). Singletons are reset on entry and on exit, so none keeps an
    object built from a replaced provider. The originals come back even when
    the block raises.

    Example:
        ```python
        from buttress.di import PersistenceContainer, override
        from buttress.persistence import InMemoryUnitOfWork

        container = PersistenceContainer()
        with override(container, unit_of_work=InMemoryUnitOfWork):
            assert isinstance(container.unit_of_work(), InMemoryUnitOfWork)
        assert not isinstance(container.unit_of_work(), InMemoryUnitOfWork)
        ```

    Args:
        container: The container whose providers to replace.
        **replacements: Provider name to its replacement.

    Raises:
        ConfigurationError: A name the container has no provider for.
    """
    unknown = sorted(set(replacements) - set(container.providers))
    if unknown:
        raise ConfigurationError(
            f"{type(container).__name__} has no provider {', '.join(map(repr, unknown))}; "
            f"its providers are: {', '.join(sorted(container.providers))}"
        )
    with contextlib.ExitStack() as stack:
        for name, replacement in replacements.items():
            stack.enter_context(container.providers[name].override(_as_provider(replacement)))
        stack.callback(container.reset_singletons)
        container.reset_singletons()
        yield


def _as_provider(replacement: Any) -> providers.Provider[Any]:
    if isinstance(replacement, providers.Provider):
        return replacement
    if callable(replacement):
        return providers.Factory(replacement)
    return providers.Object(replacement)
