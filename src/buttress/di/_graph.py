"""Which resources a container really uses, overrides taken into account.

A resource is in use when something nobody else depends on (a unit-of-work
factory, a cache, a service of yours: an entry point) reaches it through the
providers that answer now. A test that overrides the asyncio unit of work with
an in-memory one leaves the asyncio engine behind it unused: starting it would
need a driver the test does not have.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dependency_injector import providers

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["effective", "resources_in_use"]


def effective(provider: providers.Provider[Any]) -> providers.Provider[Any]:
    """The provider that answers for ``provider`` now: its last overriding one, followed down."""
    seen: set[int] = set()
    while id(provider) not in seen:
        seen.add(id(provider))
        last = provider.last_overriding
        if last is None:
            break
        provider = last
    return provider


def resources_in_use(container: Any) -> list[providers.Resource[Any]]:
    """The resources of ``container``'s tree that its entry points reach, in dependency order.

    Args:
        container: A container (its nested containers included).

    Returns:
        Each resource provider as named in the container (call it to start it),
        dependencies before what depends on them.
    """
    nodes = list(_nodes(container))
    known = {id(node) for node in nodes}
    depended_on: set[int] = set()
    for node in nodes:
        depended_on.update(id(each) for each in _dependencies(node, known))
    order: list[providers.Provider[Any]] = []
    visited: set[int] = set()

    def visit(node: providers.Provider[Any]) -> None:
        if id(node) in visited:
            return
        visited.add(id(node))
        for dependency in _dependencies(effective(node), known):
            visit(dependency)
        order.append(node)

    for node in nodes:
        if id(node) not in depended_on:  # an entry point
            visit(node)
    return [node for node in order if isinstance(effective(node), providers.Resource)]  # type: ignore[misc]


def _nodes(container: Any) -> Iterator[providers.Provider[Any]]:
    """Every named provider of ``container`` and of the containers in it, each once."""
    seen: set[int] = set()
    stack = [container]
    while stack:
        current = stack.pop()
        for provider in current.providers.values():
            answering = effective(provider)
            if isinstance(answering, providers.Container):
                stack.append(answering.container)
                continue
            if id(provider) not in seen:
                seen.add(id(provider))
                yield provider


def _dependencies(
    provider: providers.Provider[Any], known: set[int]
) -> Iterator[providers.Provider[Any]]:
    """The named providers ``provider`` is built from, seen through unnamed ones (delegates)."""
    seen: set[int] = set()
    overriding = {id(each) for each in provider.overridden}
    stack = [each for each in provider.related if id(each) not in overriding]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if id(current) in known:
            yield current
            continue
        stack.extend(current.related)
