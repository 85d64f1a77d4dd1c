"""FastAPI integration: a lifespan for containers, plain `Depends` adapters, error responses.

Routes take what they need with FastAPI's own ``Depends`` and no ``@inject``:

- `lifespan` checks the containers at startup and shuts their resources down
  at the end (engines disposed, Redis clients closed);
- `unit_of_work` gives a request its own unit of work, entered for the
  request and always left (so rolled back unless the handler commits);
- `provided` gives a request whatever a provider makes (a cache), and `breaker`
  one named circuit breaker;
- `install_error_handlers` turns Buttress errors (and your own) into RFC 9457
  problem details, declared in the OpenAPI schema.

Needs the ``fastapi`` extra.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http
import inspect
import logging
import math
import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from buttress.di._check import check
from buttress.di._graph import resources_in_use
from buttress.errors import (
    BulkheadFullError,
    ButtressError,
    CircuitOpenError,
    ConcurrencyError,
    ConfigurationError,
    ConflictError,
    DecodeError,
    MissingDependencyError,
    NotFoundError,
    QueryError,
    UnavailableError,
)

try:
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException
except ImportError as error:  # pragma: no cover - the extra is installed in CI
    raise MissingDependencyError("fastapi", "fastapi", "buttress.di.fastapi") from error

from dependency_injector import providers

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping

    from dependency_injector import containers
    from fastapi import FastAPI, Request


__all__ = [
    "PROBLEM_JSON",
    "Problem",
    "breaker",
    "install_error_handlers",
    "lifespan",
    "provided",
    "unit_of_work",
]

logger = logging.getLogger("buttress.di.fastapi")


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


class Problem(BaseModel):
    """An error response body: RFC 9457 problem details (``application/problem+json``)."""

    type: str = "about:blank"
    """A URI naming the problem type; ``about:blank``: the status says it all."""
    title: str
    """The HTTP status's phrase, such as ``"Conflict"``."""
    status: int
    """The HTTP status code."""
    detail: str
    """What went wrong, in words safe to show a client."""
    code: str
    """A stable, machine-readable code: ``duplicate`` and ``concurrent_update`` are both 409."""


PROBLEM_JSON = "application/problem+json"
"""The media type of a `Problem`."""


@dataclasses.dataclass(frozen=True)
class _Answer:
    status: int
    code: str
    detail: Callable[[BaseException], str]


def _entity_detail(action: str, fallback: str) -> Callable[[BaseException], str]:
    def detail(error: BaseException) -> str:
        given = getattr(error, "detail", None)
        if given:
            return str(given)
        entity = getattr(error, "entity", None)
        key = getattr(error, "key", None)
        if entity and key is not None:
            return f"{entity} {key} {action}"
        if entity:
            return f"the {entity} {action}"
        return fallback

    return detail


def _fixed(text: str) -> Callable[[BaseException], str]:
    return lambda _error: text


_ANSWERS: tuple[tuple[type[Exception], _Answer], ...] = (
    (
        NotFoundError,
        _Answer(404, "not_found", _entity_detail("was not found", "the resource was not found")),
    ),
    (
        ConcurrencyError,
        _Answer(
            409,
            "concurrent_update",
            _entity_detail(
                "was changed by someone else: read it again and retry",
                "the resource was changed by someone else: read it again and retry",
            ),
        ),
    ),
    (
        ConflictError,
        _Answer(
            409,
            "duplicate",
            _entity_detail(
                "conflicts with data already stored",
                "the request conflicts with data already stored",
            ),
        ),
    ),
    (
        CircuitOpenError,
        _Answer(
            503, "dependency_unavailable", _fixed("a service this request needs is unavailable")
        ),
    ),
    (
        BulkheadFullError,
        _Answer(503, "overloaded", _fixed("too many requests of this kind are in progress")),
    ),
    (UnavailableError, _Answer(503, "unavailable", _fixed("the service is unavailable"))),
    (
        QueryError,
        _Answer(400, "invalid_query", _fixed("the query's filter, sort or page is invalid")),
    ),
    (DecodeError, _Answer(400, "invalid_cursor", _fixed("the page cursor is invalid or expired"))),
)


def install_error_handlers(
    app: FastAPI, statuses: Mapping[type[Exception], int] | None = None
) -> None:
    """Answer errors with RFC 9457 problem details, and declare them in the OpenAPI schema.

    The body is a `Problem` (``application/problem+json``): ``type``, ``title``,
    ``status``, ``detail`` and a stable ``code``. The detail is safe to show a
    client: it never carries a constraint or table name, SQL, or advice meant
    for developers; the full message is logged (``buttress.di.fastapi``,
    WARNING for 5xx, INFO otherwise). An entity error's ``detail=`` is used as
    given.

    | error                       | status | code                     |
    |-----------------------------|--------|--------------------------|
    | `NotFoundError`             | 404    | ``not_found``            |
    | `ConflictError`             | 409    | ``duplicate``            |
    | `ConcurrencyError`          | 409    | ``concurrent_update``    |
    | `CircuitOpenError`          | 503    | ``dependency_unavailable`` |
    | `BulkheadFullError`         | 503    | ``overloaded``           |
    | other `UnavailableError`    | 503    | ``unavailable``          |
    | `QueryError`                | 400    | ``invalid_query``        |
    | `DecodeError` (a cursor)    | 400    | ``invalid_cursor``       |

    A 503 carries ``Retry-After`` (whole seconds, rounded up) when the error
    knows when to try again. ``statuses`` maps your own exceptions (or
    others, such as the ``ConnectionError`` a `Policy` lets through after its
    last attempt) to a status; their code is the class name in snake case and
    their detail the status's standard description.

    Starlette's own errors (a body that is not JSON, an unknown path, a
    method not allowed, an ``HTTPException`` you raise) are answered as
    problems too, their detail as given. Every operation of the schema
    declares these responses (400, 404, 409, 503 with ``Retry-After``, and
    those of ``statuses``) with the `Problem` body; FastAPI's own 422 keeps
    its validation-error body.

    Args:
        app: The application.
        statuses: Further exception types and the status each answers with.

    Raises:
        ConfigurationError: A status in ``statuses`` is not a 4xx or 5xx code.
    """
    answers = list(_ANSWERS)
    for error_type, status in (statuses or {}).items():
        given: object = status
        if isinstance(given, bool) or not isinstance(given, int) or not 400 <= given < 600:  # noqa: PLR2004
            raise ConfigurationError(
                f"install_error_handlers(statuses=...) maps {error_type.__name__} to {status!r}: "
                "give an HTTP error status, 400 to 599"
            )
        code = re.sub(r"(?<!^)(?=[A-Z])", "_", error_type.__name__).lower()
        answers.append((error_type, _Answer(status, code, _fixed(_phrase(status, long=True)))))
    for error_type, answer in answers:
        app.add_exception_handler(error_type, _handler(answer))
    app.add_exception_handler(HTTPException, _http_handler)
    _declare(app, sorted({answer.status for _, answer in answers}))


def _phrase(status: int, *, long: bool = False) -> str:
    try:
        known = http.HTTPStatus(status)
    except ValueError:
        return "Client error" if status < 500 else "Server error"  # noqa: PLR2004
    return known.description.rstrip(".").lower() if long else known.phrase


def _handler(answer: _Answer) -> Callable[[Request, Exception], Any]:
    # Starlette picks the handler of the nearest class in the error's MRO.
    async def handle(request: Request, error: Exception) -> JSONResponse:
        level = logging.WARNING if answer.status >= 500 else logging.INFO  # noqa: PLR2004
        logger.log(
            level,
            "%s %s answered %d %s: %s",
            request.method,
            request.url.path,
            answer.status,
            answer.code,
            error,
        )
        headers = {}
        retry_after = getattr(error, "retry_after", None)
        if answer.status == 503 and retry_after is not None:  # noqa: PLR2004
            headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        body = Problem(
            title=_phrase(answer.status),
            status=answer.status,
            detail=answer.detail(error),
            code=answer.code,
        )
        return JSONResponse(
            body.model_dump(), status_code=answer.status, headers=headers, media_type=PROBLEM_JSON
        )

    return handle


async def _http_handler(_request: Request, error: Exception) -> Response:
    """Starlette's own errors (a body that does not parse, an unknown path) as problems too."""
    assert isinstance(error, HTTPException)  # noqa: S101 - registered for it alone
    if error.status_code < 400:  # noqa: PLR2004 - not an error: nothing to describe
        return Response(status_code=error.status_code, headers=error.headers)
    title = _phrase(error.status_code)
    body = Problem(
        title=title,
        status=error.status_code,
        detail=str(error.detail),
        code=re.sub(r"\W+", "_", title.lower()).strip("_"),
    )
    return JSONResponse(
        body.model_dump(),
        status_code=error.status_code,
        headers=error.headers,
        media_type=PROBLEM_JSON,
    )


def _declare(app: FastAPI, statuses: list[int]) -> None:
    """Add the error responses to every operation of the app's OpenAPI schema."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Problem"] = Problem.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        content = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                for status in statuses:
                    declared: dict[str, Any] = {"description": _phrase(status), "content": content}
                    if status == 503:  # noqa: PLR2004
                        declared["headers"] = {
                            "Retry-After": {
                                "description": "Seconds after which to try again",
                                "schema": {"type": "integer"},
                            }
                        }
                    operation["responses"].setdefault(str(status), declared)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
