"""`check`: find what would fail in a container before the first request does."""

from __future__ import annotations

import inspect
import sys
from typing import TYPE_CHECKING, Any

from dependency_injector import containers, providers

from buttress.di._graph import effective, resources_in_use
from buttress.errors import ButtressError, ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["check"]

_BUILT = (providers.Callable, providers.Factory, providers.BaseSingleton, providers.Resource)
_LONG_LIVED = (providers.BaseSingleton, providers.Resource)
_PER_CONTEXT = tuple(
    getattr(providers, name)
    for name in ("ContextLocalSingleton", "ContextLocalResource")
    if hasattr(providers, name)
)


def check(container: containers.Container) -> None:
    """Check every provider of ``container`` (and of the containers in it) at once.

    It finds, without building anything but settings and message buses:

    - a provider whose callable needs an argument nobody gives (the first
      resolve would fail with a `TypeError`);
    - a `providers.Dependency` nobody provides;
    - settings that cannot be read (a missing or invalid environment variable);
    - a request-scoped object (a unit of work, a session, a context-local
      provider) injected into a singleton or resource, which would keep one
      for every request.
    - a message bus (a provider of `buttress.messaging`'s `MessageBus` or
      `AsyncMessageBus`) with a handler it could not run: a parameter no
      dependency provides, or an ``async def`` handler on a sync bus. The bus
      is built to ask it (its `problems`; building one does no I/O).

    Args:
        container: The container to check, as the application will use it
            (overrides included).

    Raises:
        ConfigurationError: Listing every problem found, each naming its provider.
    """
    problems: list[str] = []
    walked = list(_walk(container, ""))
    names = {id(provider): name for name, provider in walked}
    for name, provider in walked:
        if isinstance(provider, providers.Dependency) and not provider.is_defined:
            problems.append(f"{name} is a dependency nobody provides: override it or pass it in")
            continue
        if not isinstance(provider, _BUILT):
            continue
        if _is_settings(provider.provides):  # fields come from the environment: build it
            try:
                provider()
            except (ButtressError, ValueError) as error:
                problems.append(f"{name} cannot read its settings: {error}")
            continue
        missing = _missing_arguments(provider)
        if missing:
            problems.append(
                f"{name} calls {_describe(provider.provides)} without {', '.join(missing)}: "
                "give the provider those arguments"
            )
            continue
        problems.extend(_bus_problems(name, provider))
        if isinstance(provider, _LONG_LIVED):
            problems.extend(
                f"{name} is built once but holds {held}, which is made per request: inject "
                f"{held}.provider (a factory) instead, or make {name} a Factory"
                for held in _request_scoped(provider, names)
            )
    problems.extend(_engine_problems(container, names))
    if problems:
        raise ConfigurationError.from_problems(
            f"{type(container).__name__} cannot be built as wired", problems
        )


def _engine_problems(container: Any, names: dict[int, str]) -> Iterator[str]:
    """What would stop an engine in use from being built: its URL's driver, a missing package.

    Only engines something reaches are looked at (see `resources_in_use`): an asyncio
    engine behind an overridden unit of work needs no driver.
    """
    from buttress.di._engines import (  # noqa: PLC0415 - imports SQLAlchemy
        async_engine_resource,
        engine_options,
        engine_resource,
    )

    kinds: dict[object, bool] = {engine_resource: False, async_engine_resource: True}
    for resource in resources_in_use(container):
        answering = effective(resource)
        made_by = getattr(answering, "provides", None)
        asynchronous = kinds.get(inspect.unwrap(made_by) if made_by is not None else None)
        settings = getattr(answering, "kwargs", {}).get("settings")
        if asynchronous is None or not isinstance(settings, providers.Provider):
            continue
        try:
            engine_options(settings(), asynchronous=asynchronous)
        except (ButtressError, ValueError) as error:
            name = names.get(id(answering), names.get(id(resource), "an engine"))
            yield f"{name} cannot be built: {error}"


def _bus_problems(name: str, provider: Any) -> Iterator[str]:
    """Why a message bus ``provider`` makes could not run every handler (its own `check`)."""
    messaging = sys.modules.get("buttress.messaging")  # a bus provider imported it
    made = provider.provides
    if messaging is None or not (
        isinstance(made, type)
        and issubclass(made, (messaging.MessageBus, messaging.AsyncMessageBus))
    ):
        return
    try:
        problems = provider().problems()
    except Exception as error:  # noqa: BLE001 - whatever stops it is a problem to list
        yield f"{name} cannot be built: {error}"
        return
    yield from (f"{name}: {problem}" for problem in problems)


def _walk(container: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """Every provider of ``container``, overridden ones replaced, by dotted name."""
    for name, provider in container.providers.items():
        path = f"{prefix}{name}"
        answering = effective(provider)
        if isinstance(answering, providers.Container):
            yield from _walk(answering.container, f"{path}.")
        elif isinstance(answering, providers.DependenciesContainer):
            for inner, dependency in answering.providers.items():
                yield f"{path}.{inner}", effective(dependency)
        else:
            yield path, answering


def _describe(target: object) -> str:
    return getattr(target, "__qualname__", repr(target))


def _missing_arguments(provider: Any) -> list[str]:
    """The required parameters of the provider's callable that it does not pass."""
    try:
        signature = inspect.signature(provider.provides)
    except (TypeError, ValueError):
        return []  # a builtin or an extension type: nothing to read
    given_positionally = len(provider.args)
    given = set(provider.kwargs)
    missing = []
    for index, parameter in enumerate(signature.parameters.values()):
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if parameter.default is not parameter.empty:
            continue
        positional = parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
        if positional and index < given_positionally:
            continue
        if parameter.name in given and parameter.kind != parameter.POSITIONAL_ONLY:
            continue
        missing.append(parameter.name)
    return missing


def _is_settings(target: object) -> bool:
    return isinstance(target, type) and any(
        (klass.__module__, klass.__name__) == ("pydantic_settings.main", "BaseSettings")
        for klass in target.__mro__
    )


def _request_scoped(provider: Any, names: dict[int, str]) -> Iterator[str]:
    """Names of request-scoped providers whose products ``provider`` receives, transitively."""
    seen: set[int] = set()
    stack = [*provider.args, *provider.kwargs.values()]
    while stack:
        injected = stack.pop()
        if not isinstance(injected, providers.Provider) or id(injected) in seen:
            continue
        seen.add(id(injected))
        injected = effective(injected)
        if isinstance(injected, (providers.Delegate, *_LONG_LIVED)):
            continue  # a provider passed as such, or a long-lived one checked on its own
        if _makes_per_request(injected):
            yield names.get(id(injected), _describe(getattr(injected, "provides", injected)))
            continue
        if isinstance(injected, _BUILT):
            stack.extend([*injected.args, *injected.kwargs.values()])


def _makes_per_request(provider: Any) -> bool:
    if _PER_CONTEXT and isinstance(provider, _PER_CONTEXT):
        return True
    if not isinstance(provider, providers.Factory):
        return False
    made = provider.provides
    if not isinstance(made, type):
        return False
    if hasattr(made, "repository") and hasattr(made, "collect_events"):
        return True  # a unit of work
    return any(
        klass.__module__.startswith("sqlalchemy.") and klass.__name__ in ("Session", "AsyncSession")
        for klass in made.__mro__
    )
