"""FastAPI integration: a lifespan for containers, plain `Depends` adapters, error responses.

Routes take what they need with FastAPI's own ``Depends`` and no ``@inject``:

- `lifespan` checks the containers at startup and shuts their resources down
  at the end (engines disposed, Redis clients closed);
- `unit_of_work` gives a request its own unit of work, entered for the
  request and always left (so rolled back unless the handler commits);
- `provided` gives a request whatever a provider makes (a cache), and `breaker`
  one named circuit breaker;
- `install_error_handlers` turns Buttress errors into HTTP responses.

Needs the ``fastapi`` extra.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from typing import TYPE_CHECKING, Any

from buttress.di._check import check
from buttress.di._graph import resources_in_use
from buttress.errors import (
    ButtressError,
    CircuitOpenError,
    ConcurrencyError,
    ConflictError,
    DecodeError,
    MissingDependencyError,
    NotFoundError,
    QueryError,
    UnavailableError,
)

try:
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse
except ImportError as error:  # pragma: no cover - the extra is installed in CI
    raise MissingDependencyError("fastapi", "fastapi", "buttress.di.fastapi") from error

from dependency_injector import providers

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from dependency_injector import containers
    from fastapi import FastAPI, Request


__all__ = ["breaker", "install_error_handlers", "lifespan", "provided", "unit_of_work"]


def lifespan(
    *containers: containers.Container, check_wiring: bool = True, init: bool = True
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """A FastAPI lifespan that checks ``containers``, starts their resources, and stops them.

    At startup each container is checked (`buttress.di.check`) and the
    resources it uses are started (engines, caches), so a mistake fails the
    start, not the first request. A resource is in use when a provider nobody
    else depends on (a unit-of-work factory, a cache, a service of yours)
    reaches it through the providers that answer now: with the asyncio unit of
    work overridden by an in-memory one, the asyncio engine behind it is not
    started, and needs no driver. When the application stops, every resource
    that was started is shut down (awaited where it is asynchronous), in the
    reverse order of ``containers``, even if one of them fails.

    Args:
        *containers: The application's containers.
        check_wiring: Run `buttress.di.check` on each at startup.
        init: Start the resources in use at startup (else each on first use).
            A driver they need that is not installed is a
            `MissingDependencyError` naming the extra to install.

    Returns:
        The lifespan, for ``FastAPI(lifespan=...)``.
    """

    @contextlib.asynccontextmanager
    async def run(_app: FastAPI) -> AsyncIterator[None]:
        if check_wiring:
            for container in containers:
                check(container)
        try:
            if init:
                for container in containers:
                    for resource in resources_in_use(container):
                        started = resource()
                        if inspect.isawaitable(started):
                            await started
            yield
        finally:
            async with contextlib.AsyncExitStack() as stack:
                for container in containers:
                    stack.push_async_callback(_shut_down, container)

    return run


async def _shut_down(container: containers.Container) -> None:
    """Close what the resources opened in this event loop, then shut them down."""
    for provider in container.traverse(types=[providers.Resource]):
        if not provider.initialized:
            continue
        value = provider()
        if inspect.isawaitable(value):
            value = await value
        aclose = getattr(value, "aclose", None)
        if inspect.iscoroutinefunction(aclose):
            await aclose()  # a cache's asyncio Redis clients belong to this loop
    result = container.shutdown_resources()
    if inspect.isawaitable(result):
        await result


def unit_of_work(provider: providers.Provider[Any]) -> Callable[[], AsyncIterator[Any]]:
    """A dependency giving each request a new unit of work from ``provider``, entered.

    The unit of work is left when the request is done: what the handler did
    not commit is rolled back, and the session is closed, whatever happened.
    It works with sync and asyncio units of work (an asyncio one is awaited; a
    sync one that holds a connection is left in the thread pool, off the
    event loop, and one that never used its session is left at no cost).

    Use it as ``uow=Depends(unit_of_work(container.async_unit_of_work))``.

    Args:
        provider: A provider making units of work, such as
            ``PersistenceContainer.async_unit_of_work``.

    Returns:
        The dependency, for ``Depends``.
    """

    async def dependency() -> AsyncIterator[Any]:
        made = provider()
        uow = await made if inspect.isawaitable(made) else made
        if hasattr(uow, "__aenter__"):
            async with uow:
                yield uow
            return
        uow.__enter__()  # opening a unit of work does no I/O (the session connects lazily)
        try:
            yield uow
        except BaseException as error:
            await _leave(uow, type(error), error, error.__traceback__)
            raise
        await _leave(uow, None, None, None)

    return dependency


async def _leave(uow: Any, *exc_info: Any) -> None:
    """Leave a sync unit of work; in the thread pool if that rolls back over a connection."""
    try:
        session = getattr(uow, "session", None)
        busy = session is not None and session.in_transaction()
    except ButtressError:  # pragma: no cover - a unit of work without a session
        busy = False
    if busy:
        await run_in_threadpool(uow.__exit__, *exc_info)
    else:
        uow.__exit__(*exc_info)  # nothing to roll back: no I/O, no thread hop


def provided(provider: providers.Provider[Any]) -> Callable[[], Any]:
    """A dependency giving a request what ``provider`` makes (awaited if asynchronous).

    Args:
        provider: Any provider, such as ``CachingContainer.cache`` or
            ``ResilienceContainer.breakers``.

    Returns:
        The dependency, for ``Depends``.
    """

    async def dependency() -> Any:
        made = provider()
        return await made if inspect.isawaitable(made) else made

    return dependency


def breaker(provider: providers.Provider[Any], name: str) -> Callable[[], Any]:
    """A dependency giving a request the circuit breaker ``name`` of a breaker registry.

    Args:
        provider: A provider of `buttress.di.CircuitBreakers`, such as
            ``ResilienceContainer.breakers``.
        name: The breaker's name: one breaker per dependency it protects.

    Returns:
        The dependency, for ``Depends``.
    """

    async def dependency() -> Any:
        made = provider()
        registry = await made if inspect.isawaitable(made) else made
        return registry(name)

    return dependency


_STATUS: tuple[tuple[type[ButtressError], int], ...] = (
    (NotFoundError, 404),
    (ConflictError, 409),
    (ConcurrencyError, 409),
    (CircuitOpenError, 503),
    (UnavailableError, 503),
    (QueryError, 400),
    (DecodeError, 400),
)


def install_error_handlers(app: FastAPI) -> None:
    """Answer Buttress errors with HTTP responses: ``{"detail": message}`` and a status.

    ``NotFoundError`` is 404; ``ConflictError`` and ``ConcurrencyError`` 409;
    ``CircuitOpenError`` (and any `UnavailableError`) 503 with ``Retry-After``
    in whole seconds, rounded up; ``QueryError`` and ``DecodeError`` (a bad
    filter, order or page cursor from the client) 400.

    Args:
        app: The application.
    """
    for error_type, status in _STATUS:
        app.add_exception_handler(error_type, _handler(status))


def _handler(status: int) -> Callable[[Request, Exception], Any]:
    async def handle(_request: Request, error: Exception) -> JSONResponse:
        headers = {}
        retry_after = getattr(error, "retry_after", None)
        if status == 503 and retry_after is not None:  # noqa: PLR2004 - the status named above
            headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        return JSONResponse({"detail": str(error)}, status_code=status, headers=headers)

    return handle
