"""`override`: swap providers for fakes in a block, and put them back however it ends.

Nothing built from a replaced provider may outlive the block, and nothing built
before it may leak into it: every singleton and resource that depends on a
replaced provider, directly or through others, anywhere in the tree of
containers, is shadowed for the block by a fresh copy of itself. The copy is
built on first use from the replacements and shut down when the block ends;
the originals (and whatever they had already built) come back untouched.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import logging
from typing import TYPE_CHECKING, Any

from dependency_injector import providers, resources

from buttress.di._graph import effective
from buttress.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Iterable
    from types import TracebackType

__all__ = ["Override", "is_async", "override"]

_log = logging.getLogger("buttress.di")

_STATEFUL = (providers.BaseSingleton, providers.Resource)
"""Providers that keep what they built: the ones a replacement must not reach through."""


def override(container: Any, **replacements: Any) -> Override:
    """Replace providers of ``container`` by name for a block, restoring them on exit.

    Use it as ``with override(...):`` or ``async with override(...):`` (the
    latter also awaits the shutdown of asyncio resources built in the block).

    A replacement that is not a provider is wrapped in ``providers.Object``
    (given as is) or, for a class or function, ``providers.Factory`` (called on
    each resolve). Where the replaced provider is asynchronous (an asyncio
    resource, or anything built from one), the wrapper is too, so call sites
    ``await`` it whether or not it is overridden.

    Every singleton and resource that depends on a replaced provider, directly
    or transitively, anywhere in the tree of containers ``container`` belongs to,
    is shadowed by a fresh copy for the block: an engine built from overridden
    settings, the session factory bound to it, and your own singletons built
    from them are made anew from the replacements, and the ones made before the
    block come back after it. Resources made in the block are shut down when
    it ends. The originals come back even when the block raises.

    Example:
        ```python
        from buttress.di import PersistenceContainer, override
        from buttress.persistence import InMemoryUnitOfWork
        from buttress.settings import DatabaseSettings

        container = PersistenceContainer()
        with override(container, unit_of_work=InMemoryUnitOfWork):
            assert isinstance(container.unit_of_work(), InMemoryUnitOfWork)
        assert not isinstance(container.unit_of_work(), InMemoryUnitOfWork)

        with override(container, settings=DatabaseSettings(url="sqlite:///:memory:")):
            assert container.engine().url.database == ":memory:"
        ```

    Args:
        container: The container whose providers to replace (a container
            instance, or a ``providers.Container`` of a container you include).
        **replacements: Provider name to its replacement.

    Returns:
        The context manager.

    Raises:
        ConfigurationError: A name the container has no provider for.
    """
    own = _providers_of(container)
    unknown = sorted(set(replacements) - set(own))
    if unknown:
        raise ConfigurationError(
            f"{_name_of(container)} has no provider {', '.join(map(repr, unknown))}; "
            f"its providers are: {', '.join(sorted(own))}"
        )
    return Override(container, {own[name]: value for name, value in replacements.items()})


class Override:
    """The block `override` opens: a sync and an asyncio context manager.

    Args:
        container: The container the replaced providers belong to.
        replacements: Each replaced provider and what replaces it.
    """

    def __init__(self, container: Any, replacements: dict[providers.Provider[Any], Any]) -> None:
        self._container = container
        self._replacements = replacements
        self._shadows: list[providers.Provider[Any]] = []
        self._undo: list[providers.Provider[Any]] = []

    def __enter__(self) -> None:
        """Put the replacements and the shadows of their dependents in place."""
        self._start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Restore the originals; shut the resources made in the block down."""
        pending = self._stop()
        if pending:
            _finish_elsewhere(pending)

    async def __aenter__(self) -> None:
        """As ``with``."""
        self._start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """As ``with``, awaiting the shutdown of asyncio resources made in the block."""
        await _finish(self._stop())

    def _start(self) -> None:
        if self._undo:
            raise ConfigurationError("this override is already active; call override() again")
        targets = set(self._replacements)
        every = list(_every_provider(self._container))
        # What a provider resolves to now: an earlier override's shadow, say, for nested blocks.
        dependents = [
            (provider, answering)
            for provider in every
            if provider not in targets
            and isinstance(answering := effective(provider), _STATEFUL)
            and not targets.isdisjoint(answering.traverse())
        ]
        try:
            for target, replacement in self._replacements.items():
                target.override(_as_provider(replacement, asynchronous=is_async(target)))
                self._undo.append(target)
            for dependent, answering in dependents:
                shadow = _fresh(answering, every)
                dependent.override(shadow)
                self._undo.append(dependent)
                self._shadows.append(shadow)
        except BaseException:
            self._stop()
            raise

    def _stop(self) -> list[Awaitable[Any]]:
        while self._undo:
            self._undo.pop().reset_last_overriding()
        pending: list[Awaitable[Any]] = []
        for shadow in reversed(self._shadows):
            if isinstance(shadow, providers.Resource) and shadow.initialized:
                try:
                    result = shadow.shutdown()
                except Exception:  # noqa: BLE001 - a failed disposal must not hide the block's outcome
                    _log.warning(_SHUTDOWN_FAILED, exc_info=True)
                    continue
                if inspect.isawaitable(result):
                    pending.append(result)
        self._shadows.clear()
        return pending


def _finish_elsewhere(pending: list[Awaitable[Any]]) -> None:
    """Shut asyncio resources down after a plain ``with``: on the running loop, or a new one."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(_finish(pending))
        return
    task = loop.create_task(_finish(pending))
    _FINISHING.add(task)  # keep a reference until it is done
    task.add_done_callback(_FINISHING.discard)


_FINISHING: set[asyncio.Task[None]] = set()

_SHUTDOWN_FAILED = "a resource made under override() failed to shut down"


async def _finish(pending: list[Awaitable[Any]]) -> None:
    for shutdown in pending:
        try:
            await shutdown
        except Exception:  # noqa: BLE001 - a failed disposal must not hide the block's outcome
            _log.warning(_SHUTDOWN_FAILED, exc_info=True)


def is_async(provider: providers.Provider[Any]) -> bool:
    """Whether resolving ``provider`` gives an awaitable: it, or what it is built from, is asyncio.

    Args:
        provider: Any provider.

    Returns:
        True for an asyncio resource or coroutine provider, one in async mode,
        and anything that depends on one of them.
    """
    return any(_async_itself(each) for each in (provider, *provider.traverse()))


def _async_itself(provider: providers.Provider[Any]) -> bool:
    if provider.is_async_mode_enabled() or isinstance(provider, providers.Coroutine):
        return True
    if isinstance(provider, providers.Resource):
        made_by = provider.provides
        if made_by is not None:  # generator functions come wrapped in contextlib's helpers
            made_by = inspect.unwrap(made_by)
        return (
            inspect.isasyncgenfunction(made_by)
            or inspect.iscoroutinefunction(made_by)
            or (isinstance(made_by, type) and issubclass(made_by, resources.AsyncResource))
        )
    return False


def _fresh(
    provider: providers.Provider[Any], every: Iterable[providers.Provider[Any]]
) -> providers.Provider[Any]:
    """A copy of ``provider`` with the same dependencies (the same provider objects), unbuilt."""
    if isinstance(provider, providers.Resource):  # dependency-injector copies no started one
        fresh: providers.Provider[Any] = providers.Resource(
            provider.provides, *provider.args, **provider.kwargs
        )
        if provider.is_async_mode_enabled():
            fresh.enable_async_mode()
        return fresh
    keep = {id(each): each for each in every if each is not provider}
    fresh = copy.deepcopy(provider, keep)
    fresh.reset_override()
    return fresh


def _providers_of(container: Any) -> dict[str, providers.Provider[Any]]:
    found = getattr(container, "providers", None)
    if not isinstance(found, dict):
        raise ConfigurationError(
            "override() takes a container (or a providers.Container), "
            f"not {type(container).__name__}"
        )
    return found


def _name_of(container: Any) -> str:
    if isinstance(container, providers.Container):
        container = container.container
    parent = getattr(container, "declarative_parent", None)
    return parent.__name__ if parent is not None else type(container).__name__


def _root_of(container: Any) -> Any:
    """The outermost container ``container`` is part of (walking up through ``parent``)."""
    node, seen = container, set()
    while getattr(node, "parent", None) is not None and id(node) not in seen:
        seen.add(id(node))
        node = node.parent
    return node


def _every_provider(container: Any) -> Iterable[providers.Provider[Any]]:
    """Every provider of the tree of containers ``container`` belongs to, each once."""
    root = _root_of(container)
    seen: dict[int, providers.Provider[Any]] = {}
    for start in (root, container):
        walk = start.traverse() if hasattr(start, "traverse") else ()
        for provider in walk:
            seen.setdefault(id(provider), provider)
    return seen.values()


def _as_provider(replacement: Any, *, asynchronous: bool) -> providers.Provider[Any]:
    if isinstance(replacement, providers.Provider):
        return replacement
    made: providers.Provider[Any] = (
        providers.Factory(replacement) if callable(replacement) else providers.Object(replacement)
    )
    if asynchronous:
        made.enable_async_mode()  # awaited at the call site, as the original is
    return made
