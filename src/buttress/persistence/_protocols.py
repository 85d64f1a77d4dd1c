"""The repository and unit-of-work protocols every implementation satisfies."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Generic, Protocol, Self, TypeVar, overload

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence
    from contextlib import AbstractAsyncContextManager, AbstractContextManager
    from types import TracebackType

    import sqlalchemy as sa

    from buttress.domain import DomainEvent, Specification

__all__ = [
    "AsyncRepository",
    "AsyncUnitOfWork",
    "OutboxWriter",
    "Page",
    "Repository",
    "UnitOfWork",
]

T = TypeVar("T")
ID = TypeVar("ID")
ID_contra = TypeVar("ID_contra", contravariant=True)
ItemT_co = TypeVar("ItemT_co", covariant=True)


@dataclasses.dataclass(frozen=True, slots=True)
class Page(Generic[ItemT_co]):
    """One page of a keyset-paginated query.

    Attributes:
        items: The entities of this page, in the query's order.
        next_cursor: Pass it as ``after=`` to get the next page; ``None`` on the last page.
            It is opaque and signed: a changed cursor raises `DecodeError`.
    """

    items: Sequence[ItemT_co]
    next_cursor: str | None


class Repository(Protocol[T, ID_contra]):
    """A collection of entities of one model, keyed by their primary key of type ``ID``.

    Reads return entities in a defined order: ``order_by`` names fields (``-`` in
    front for descending) and the primary key breaks ties, ascending; without
    ``order_by`` entities come in primary-key order. A filter is a
    `buttress.domain.Specification`.
    """

    def add(self, entity: T) -> T:
        """Store a new entity now; it is kept only if the unit of work commits.

        Returns:
            The same entity, its generated key assigned.

        Raises:
            ConflictError: Its key or a unique value is taken.
            QueryError: ``entity`` is not of this repository's model.
        """
        ...

    def add_many(self, entities: Iterable[T]) -> list[T]:
        """Store several new entities, as `add` stores one."""
        ...

    def get(self, key: ID_contra, *, load: str | Sequence[str] = ()) -> T:
        """The entity with primary key ``key``.

        Raises:
            NotFoundError: No entity has that key.
            QueryError: ``key`` is not of the primary key's type.
        """
        ...

    def get_or_none(self, key: ID_contra, *, load: str | Sequence[str] = ()) -> T | None:
        """The entity with primary key ``key``, or ``None``."""
        ...

    def find(
        self,
        spec: Specification | None = None,
        *,
        order_by: str | Sequence[str] = (),
        limit: int | None = None,
        offset: int = 0,
        load: str | Sequence[str] = (),
    ) -> list[T]:
        """The entities satisfying ``spec`` (all without one), in order.

        Raises:
            QueryError: An unknown field, or a negative ``limit`` or ``offset``.
        """
        ...

    def first(
        self,
        spec: Specification | None = None,
        *,
        order_by: str | Sequence[str] = (),
        load: str | Sequence[str] = (),
    ) -> T | None:
        """The first entity satisfying ``spec`` in order, or ``None``."""
        ...

    def count(self, spec: Specification | None = None) -> int:
        """How many entities satisfy ``spec``."""
        ...

    def exists(self, spec: Specification | None = None) -> bool:
        """Whether any entity satisfies ``spec``."""
        ...

    def get_by(self, spec: Specification, *, load: str | Sequence[str] = ()) -> T:
        """The one entity satisfying ``spec``.

        Raises:
            NotFoundError: None does.
            QueryError: Several do.
        """
        ...

    def find_and_count(
        self,
        spec: Specification | None = None,
        *,
        order_by: str | Sequence[str] = (),
        limit: int | None = None,
        offset: int = 0,
        load: str | Sequence[str] = (),
    ) -> tuple[list[T], int]:
        """The entities `find` returns, and how many satisfy ``spec`` in all."""
        ...

    def remove_many(self, spec: Specification) -> int:
        """Remove every entity satisfying ``spec`` as `remove` would; return how many."""
        ...

    def upsert(self, entity: T) -> T:
        """Store ``entity``, or write its non-key values over the stored one with its key.

        Returns:
            The entity the unit of work tracks for that key, with the stored values
            (not necessarily the object passed); it carries the passed one's events.

        Raises:
            ConflictError: A unique value is taken, or a reference names a missing row.
            QueryError: ``entity`` has no key, or its model has a version column.
        """
        ...

    def remove(self, entity: T) -> None:
        """Delete an entity this unit of work loaded or added.

        Raises:
            QueryError: The entity was not loaded or added through this unit of work.
            ConcurrencyError: Someone else changed or removed it since it was loaded.
        """
        ...

    def page(
        self,
        spec: Specification | None = None,
        *,
        order_by: str | Sequence[str] = (),
        size: int = 50,
        after: str | None = None,
        load: str | Sequence[str] = (),
    ) -> Page[T]:
        """One page of the entities satisfying ``spec``, after the cursor ``after``.

        Raises:
            DecodeError: ``after`` is not a cursor this repository issued.
            QueryError: ``after`` was issued for another ``order_by``, or a bad ``size``.
        """
        ...


class AsyncRepository(Protocol[T, ID_contra]):
    """`Repository` for asyncio: the same methods, awaited."""

    async def add(self, entity: T) -> T:
        """See `Repository.add`."""
        ...

    async def add_many(self, entities: Iterable[T]) -> list[T]:
        """See `Repository.add_many`."""
        ...

    async def get(self, key: ID_contra, *, load: str | Sequence[str] = ()) -> T:
        """See `Repository.get`."""
        ...

    async def get_or_none(self, key: ID_contra, *, load: str | Sequence[str] = ()) -> T | None:
        """See `Repository.get_or_none`."""
        ...

    async def find(
        self,
        spec: Specification | None = None,
        *,
        order_by: str | Sequence[str] = (),
        limit: int | None = None,
        offset: int = 0,
        load: str | Sequence[str] = (),
    ) -> list[T]:
        """See `Repository.find`."""
        ...

    async def first(
        self,
        spec: Specification | None = None,
        *,
        order_by: str | Sequence[str] = (),
        load: str | Sequence[str] = (),
    ) -> T | None:
        """See `Repository.first`."""
        ...

    async def count(self, spec: Specification | None = None) -> int:
        """See `Repository.count`."""
        ...

    async def exists(self, spec: Specification | None = None) -> bool:
        """See `Repository.exists`."""
        ...

    async def get_by(self, spec: Specification, *, load: str | Sequence[str] = ()) -> T:
        """See `Repository.get_by`."""
        ...

    async def find_and_count(
        self,
        spec: Specification | None = None,
        *,
        order_by: str | Sequence[str] = (),
        limit: int | None = None,
        offset: int = 0,
        load: str | Sequence[str] = (),
    ) -> tuple[list[T], int]:
        """See `Repository.find_and_count`."""
        ...

    async def remove_many(self, spec: Specification) -> int:
        """See `Repository.remove_many`."""
        ...

    async def upsert(self, entity: T) -> T:
        """See `Repository.upsert`."""
        ...

    async def remove(self, entity: T) -> None:
        """See `Repository.remove`."""
        ...

    async def page(
        self,
        spec: Specification | None = None,
        *,
        order_by: str | Sequence[str] = (),
        size: int = 50,
        after: str | None = None,
        load: str | Sequence[str] = (),
    ) -> Page[T]:
        """See `Repository.page`."""
        ...


class UnitOfWork(Protocol):
    """One business transaction: what its repositories change is kept only on `commit`.

    Use it as ``with uow:``; anything not committed is rolled back when the block
    ends, normally or by an exception. The same object can be entered again
    afterwards, for a fresh transaction.
    """

    def __enter__(self) -> Self:
        """Begin a transaction."""
        ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Roll back what was not committed and end the transaction."""
        ...

    @overload
    def repository(self, model: type[T]) -> Repository[T, Any]: ...
    @overload
    def repository(self, model: type[T], key: type[ID]) -> Repository[T, ID]: ...
    def repository(self, model: type[T], key: type[ID] | None = None) -> Repository[T, Any]:
        """The repository of ``model`` in this transaction.

        Args:
            model: A mapped class.
            key: The type of its primary key, for type checkers (``repository(Order, int)``).
        """
        ...

    def commit(self) -> None:
        """Keep the work done so far; the unit goes on in a new transaction."""
        ...

    def rollback(self) -> None:
        """Undo the work done since the last commit."""
        ...

    def savepoint(self) -> AbstractContextManager[None]:
        """A nested transaction: the block's work is undone if the block raises."""
        ...

    def collect_events(self) -> Iterator[DomainEvent]:
        """The domain events of committed work, each yielded once, oldest first."""
        ...


class AsyncUnitOfWork(Protocol):
    """`UnitOfWork` for asyncio: ``async with uow:`` and awaited methods."""

    async def __aenter__(self) -> Self:
        """Begin a transaction."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Roll back what was not committed and end the transaction."""
        ...

    @overload
    def repository(self, model: type[T]) -> AsyncRepository[T, Any]: ...
    @overload
    def repository(self, model: type[T], key: type[ID]) -> AsyncRepository[T, ID]: ...
    def repository(self, model: type[T], key: type[ID] | None = None) -> AsyncRepository[T, Any]:
        """The repository of ``model`` in this transaction.

        Args:
            model: A mapped class.
            key: The type of its primary key, for type checkers (``repository(Order, int)``).
        """
        ...

    async def commit(self) -> None:
        """See `UnitOfWork.commit`."""
        ...

    async def rollback(self) -> None:
        """See `UnitOfWork.rollback`."""
        ...

    def savepoint(self) -> AbstractAsyncContextManager[None]:
        """See `UnitOfWork.savepoint`; used as ``async with uow.savepoint():``."""
        ...

    def collect_events(self) -> Iterator[DomainEvent]:
        """See `UnitOfWork.collect_events`."""
        ...


class OutboxWriter(Protocol):
    """Where a unit of work writes the events of each commit, in that commit's transaction.

    Pass one as ``outbox=`` to a unit of work (`buttress.messaging.Outbox` is
    one): at each commit that carries events, the unit flushes, then inserts
    ``rows(...)`` into ``table`` with one statement, then commits, so the events
    are stored exactly when the changes that caused them are. The in-memory
    units keep the rows in their store (`InMemoryStore.outbox_rows`).
    """

    @property
    def table(self) -> sa.Table:
        """The outbox table (on the application's metadata, so migrations see it)."""
        ...

    def rows(self, events: Sequence[tuple[DomainEvent, str]]) -> list[dict[str, Any]]:
        """The rows of ``events``, each given with its stream (``"<Model>:<key>"``), in order."""
        ...

    def written(self) -> None:
        """Called after a commit that wrote rows: wakes the relays waiting in this process."""
        ...
