"""The asyncio in-memory repository and unit of work, twins of the SQLAlchemy ones.

The work is done by ``_memory_core``; these classes give it the protocols' shape.
"""

# The source of _memory.py (scripts/unasync.py writes it).  # unasync: drop

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, cast, overload

from buttress.errors import NotFoundError
from buttress.persistence._memory_core import InMemoryStore, Transaction, find_in, page_of
from buttress.persistence._model import (
    CLOSED,
    DEFAULT_PAGE_SIZE,
    Tracker,
    already_in_transaction,
    check_isolation_level,
    check_removal,
    check_upsert,
    logger,
    model_info,
    not_in_transaction,
    outbox_failed,
    report_discarded,
    secret_bytes,
    the_one,
    upserted,
    use_async_with,  # unasync: drop
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
    from types import TracebackType

    from buttress.domain import DomainEvent, Specification
    from buttress.persistence._protocols import OutboxWriter, Page

__all__ = ["AsyncInMemoryRepository", "AsyncInMemoryUnitOfWork"]

T = TypeVar("T")
ID = TypeVar("ID")


LAZY_LOADS = False  # unasync: sync: LAZY_LOADS = True
"""Whether an unloaded relationship loads on access (as SQLAlchemy's session: not under asyncio)."""


class AsyncInMemoryRepository(Generic[T, ID]):
    """A repository that keeps entities in memory and behaves as the SQLAlchemy one does.

    It enforces what the model's SQLAlchemy metadata declares (primary key,
    generated keys, defaults, NOT NULL, unique constraints, the version
    column) and raises the same errors, in the same calls, as
    `AsyncSqlAlchemyRepository`; the contract suite in `buttress.testing`
    runs both. Built alone it keeps its own store and transaction, which is
    handy in a unit test; inside a unit of work its writes are kept on commit.

    Args:
        model: A mapped class (declarative, or a plain class mapped imperatively).
        store: The store to read and write (default: a new one).
        cursor_secret: Signs page cursors.

    Raises:
        ConfigurationError: The model maps relationships, which it cannot store.
        QueryError: ``model`` is not mapped.
    """

    __slots__ = ("_info", "_transaction")

    def __init__(
        self,
        model: type[T],
        *,
        store: InMemoryStore | None = None,
        cursor_secret: bytes | str | None = None,
        _transaction: Transaction | None = None,
    ) -> None:
        self._info = model_info(model)
        if _transaction is None:
            store = InMemoryStore() if store is None else store
            tracker = Tracker(secret_bytes(cursor_secret))
            _transaction = Transaction(store, tracker, lazy=LAZY_LOADS)
        _transaction.store.table(model)
        self._transaction = _transaction

    @property
    def model(self) -> type[T]:
        """The mapped class this repository stores."""
        return self._info.model

    async def add(self, entity: T) -> T:
        """See `AsyncSqlAlchemyRepository.add`."""
        tracker = self._transaction.tracker
        tracker.check()
        self._transaction.add(self._info, (entity,))
        if self._info.aggregate:
            tracker.see(entity)  # type: ignore[arg-type]
        return entity

    async def add_many(self, entities: Iterable[T]) -> list[T]:
        """See `AsyncSqlAlchemyRepository.add_many`."""
        tracker = self._transaction.tracker
        tracker.check()
        items = list(entities)
        self._transaction.add(self._info, items)
        if self._info.aggregate:
            tracker.see_all(items)  # type: ignore[arg-type]
        return items

    async def get(self, key: ID, *, load: str | Sequence[str] = ()) -> T:
        """See `AsyncSqlAlchemyRepository.get`."""
        entity = await self.get_or_none(key, load=load)
        if entity is None:
            raise NotFoundError(entity=self._info.name, key=key)
        return entity

    async def get_or_none(self, key: ID, *, load: str | Sequence[str] = ()) -> T | None:
        """See `AsyncSqlAlchemyRepository.get_or_none`."""
        tracker = self._transaction.tracker
        tracker.check()
        entity: T | None = self._transaction.get(self._info, key, load=load)
        if entity is not None and self._info.aggregate:
            tracker.see(entity)  # type: ignore[arg-type]
        return entity

    async def find(
        self,
        spec: Specification | None = None,
        *,
        order_by: str | Sequence[str] = (),
        limit: int | None = None,
        offset: int = 0,
        load: str | Sequence[str] = (),
    ) -> list[T]:
        """See `AsyncSqlAlchemyRepository.find`."""
        tracker = self._transaction.tracker
        tracker.check()
        items: list[T] = find_in(
            self._transaction,
            info=self._info,
            spec=spec,
            order_by=order_by,
            limit=limit,
            offset=offset,
            load=load,
        )
        if self._info.aggregate:
            tracker.see_all(items)  # type: ignore[arg-type]
        return items

    async def first(
        self,
        spec: Specification | None = None,
        *,
        order_by: str | Sequence[str] = (),
        load: str | Sequence[str] = (),
    ) -> T | None:
        """See `AsyncSqlAlchemyRepository.first`."""
        found = await self.find(spec, order_by=order_by, limit=1, load=load)
        return found[0] if found else None

    async def count(self, spec: Specification | None = None) -> int:
        """See `AsyncSqlAlchemyRepository.count`."""
        self._transaction.tracker.check()
        self._transaction.check_spec(self._info, spec)
        return self._transaction.count(self._info, spec)

    async def exists(self, spec: Specification | None = None) -> bool:
        """See `AsyncSqlAlchemyRepository.exists`."""
        return await self.count(spec) > 0

    async def get_by(self, spec: Specification, *, load: str | Sequence[str] = ()) -> T:
        """See `AsyncSqlAlchemyRepository.get_by`."""
        found: T = the_one(await self.find(spec, limit=2, load=load), self._info.name, spec)
        return found

    async def find_and_count(
        self,
        spec: Specification | None = None,
        *,
        order_by: str | Sequence[str] = (),
        limit: int | None = None,
        offset: int = 0,
        load: str | Sequence[str] = (),
    ) -> tuple[list[T], int]:
        """See `AsyncSqlAlchemyRepository.find_and_count`."""
        found = await self.find(spec, order_by=order_by, limit=limit, offset=offset, load=load)
        return found, await self.count(spec)

    async def remove_many(self, spec: Specification) -> int:
        """See `AsyncSqlAlchemyRepository.remove_many`."""
        check_removal(spec)
        found = await self.find(spec)
        for entity in found:
            await self.remove(entity)
        return len(found)

    async def upsert(self, entity: T) -> T:
        """See `AsyncSqlAlchemyRepository.upsert`."""
        transaction = self._transaction
        transaction.tracker.check()
        key = check_upsert(self._info, entity)
        managed = transaction.upsert(self._info, entity, key)
        found: T = upserted(entity, managed, self._info, transaction.tracker)
        return found

    async def remove(self, entity: T) -> None:
        """See `AsyncSqlAlchemyRepository.remove`."""
        self._transaction.tracker.check()
        self._transaction.remove(self._info, entity)

    async def page(
        self,
        spec: Specification | None = None,
        *,
        order_by: str | Sequence[str] = (),
        size: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
        load: str | Sequence[str] = (),
    ) -> Page[T]:
        """See `AsyncSqlAlchemyRepository.page`."""
        tracker = self._transaction.tracker
        tracker.check()
        found: Page[T] = page_of(
            self._transaction,
            info=self._info,
            spec=spec,
            order_by=order_by,
            size=size,
            after=after,
            load=load,
        )
        if self._info.aggregate:
            tracker.see_all(found.items)  # type: ignore[arg-type]
        return found


class AsyncInMemoryUnitOfWork:
    """A unit of work over an `InMemoryStore`, the twin of `AsyncSqlAlchemyUnitOfWork`.

    It needs no arguments: it learns each model from ``repository(Model)``.
    Commit, rollback, savepoints, re-entry and events behave as they do over
    SQL; pass the same ``store`` to several units of work to share data.

    The persistence guide shows it at work.

    Args:
        store: The data to work on (default: a new, empty store).
        cursor_secret: Signs page cursors.
        isolation_level: Accepted (and checked) as `AsyncSqlAlchemyUnitOfWork`
            takes it, so code can pass it to either; the twin's transactions
            read a consistent view and refuse lost updates at every level.
        outbox: Where each commit writes the events it carries, with its
            changes (`buttress.messaging.Outbox`); the rows are kept in the
            store (`InMemoryStore.outbox_rows`).
    """

    __enter__ = __exit__ = use_async_with  # unasync: drop

    def __init__(
        self,
        *,
        store: InMemoryStore | None = None,
        cursor_secret: bytes | str | None = None,
        isolation_level: str | None = None,
        outbox: OutboxWriter | None = None,
    ) -> None:
        check_isolation_level(isolation_level)
        self._outbox = outbox
        self._store = InMemoryStore() if store is None else store
        self._tracker = Tracker(secret_bytes(cursor_secret))
        self._transaction: Transaction | None = None
        self._repositories: dict[type[Any], AsyncInMemoryRepository[Any, Any]] = {}

    @property
    def store(self) -> InMemoryStore:
        """The data this unit of work reads and writes; pass it to another to share it."""
        return self._store

    def _active(self) -> Transaction:
        transaction = self._transaction
        if transaction is None:
            raise not_in_transaction()
        return transaction

    async def __aenter__(self) -> Self:
        """Begin a transaction.

        Raises:
            ConfigurationError: The unit of work is already entered.
        """
        if self._transaction is not None:
            raise already_in_transaction()
        self._transaction = Transaction(self._store, self._tracker, lazy=LAZY_LOADS)
        self._repositories = {}
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Roll back what was not committed and end the transaction."""
        transaction = self._active()
        self._transaction = None
        if logger.isEnabledFor(logging.DEBUG):
            report_discarded(type(self).__name__, *transaction.discarded())
        self._tracker.rolled_back()
        for repository in self._repositories.values():
            repository._transaction = CLOSED  # noqa: SLF001 - a repository kept after the block fails
        self._repositories = {}
        transaction.close()

    @overload
    def repository(self, model: type[T]) -> AsyncInMemoryRepository[T, Any]: ...
    @overload
    def repository(self, model: type[T], key: type[ID]) -> AsyncInMemoryRepository[T, ID]: ...
    def repository(
        self, model: type[T], key: type[ID] | None = None
    ) -> AsyncInMemoryRepository[T, Any]:
        """See `AsyncSqlAlchemyUnitOfWork.repository`."""
        del key  # it only tells type checkers the type of the repository's keys
        transaction = self._active()
        found = self._repositories.get(model)
        if found is None:
            found = AsyncInMemoryRepository(model, _transaction=transaction)
            self._repositories[model] = found
        return found

    async def commit(self) -> None:
        """See `AsyncSqlAlchemyUnitOfWork.commit`."""
        transaction = self._active()
        self._tracker.check_outside_savepoint("commit")
        self._tracker.check()
        try:
            pulled = transaction.commit(self._outbox)
        except BaseException as error:
            if self._outbox is not None and self._tracker.failure is None:
                self._tracker.fail(outbox_failed(error))  # its events are off their aggregates
            raise
        self._tracker.committed(pulled)
        if pulled:
            cast("OutboxWriter", self._outbox).written()  # wake this process's relays

    async def rollback(self) -> None:
        """See `AsyncSqlAlchemyUnitOfWork.rollback`."""
        transaction = self._active()
        self._tracker.check_outside_savepoint("roll back")
        self._tracker.rolled_back()
        transaction.rollback()

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """See `AsyncSqlAlchemyUnitOfWork.savepoint`."""
        transaction = self._active()
        tracker = self._tracker
        tracker.check()
        transaction.begin_savepoint()
        tracker.mark()
        try:
            yield
            tracker.check()  # a write failed in the block and was caught: undo the block
            transaction.release_savepoint()
        except BaseException:
            transaction.rollback_savepoint()
            tracker.undo()
            raise
        tracker.release()

    def collect_events(self) -> Iterator[DomainEvent]:
        """See `AsyncSqlAlchemyUnitOfWork.collect_events`."""
        return self._tracker.collect()
