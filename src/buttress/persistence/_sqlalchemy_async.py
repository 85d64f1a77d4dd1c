"""The repository and unit of work over a SQLAlchemy ``AsyncSession``."""

# The source of _sqlalchemy.py (scripts/unasync.py writes it).  # unasync: drop

from __future__ import annotations

import functools
import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, Generic, Self, TypeVar, cast, overload

import sqlalchemy as sa
from sqlalchemy.orm.attributes import instance_state

from buttress.errors import ConfigurationError, ConflictError, NotFoundError, QueryError
from buttress.persistence._aggregate import AggregateGuard
from buttress.persistence._cursor import decode_cursor, encode_cursor
from buttress.persistence._links import check_load, load_options, loaded
from buttress.persistence._model import (
    CLOSED,
    DEFAULT_PAGE_SIZE,
    DRIVER_ERRORS,
    FlushedWrites,
    ModelInfo,
    Tracker,
    already_in_transaction,
    check_isolation_level,
    check_removal,
    check_size,
    check_upsert,
    check_window,
    loaded_versions,
    logger,
    model_info,
    not_in_transaction,
    outbox_failed,
    outbox_rows,
    restore_versions,
    secret_bytes,
    the_one,
    translate,
    upsert_statement,
    upserted,
    use_async_with,  # unasync: drop
)
from buttress.persistence._protocols import OutboxWriter, Page
from buttress.persistence._query import keyset_filter, order_by_clauses, where

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
    from types import TracebackType

    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session as SyncSession

    from buttress.domain import DomainEvent, Specification

__all__ = ["AsyncSqlAlchemyRepository", "AsyncSqlAlchemyUnitOfWork"]

T = TypeVar("T")
ID = TypeVar("ID")

_REFRESH: Final = {"populate_existing": True}
"""Rows a statement returns overwrite the identity map's entities (as upsert needs)."""


class AsyncSqlAlchemyRepository(Generic[T, ID]):
    """The repository of one mapped model over a SQLAlchemy `AsyncSession`.

    `get` looks in the session's identity map before it queries, so an entity
    already loaded costs no SQL. `add` and `remove` flush at once, so a
    generated key is assigned and a duplicate raises `ConflictError` right there.
    Nothing is refreshed behind your back: after a commit the entities keep
    their values without another query.

    Usually obtained from a unit of work (``uow.repository(Order)``); it can
    also be built on a session you manage.

    Args:
        session: The session to read and write through.
        model: A mapped class (declarative, or a plain class mapped imperatively).
        cursor_secret: Signs page cursors (see `AsyncSqlAlchemyUnitOfWork`).

    Raises:
        QueryError: ``model`` is not mapped.
    """

    __slots__ = ("_info", "_session", "_tracker")

    def __init__(
        self,
        session: AsyncSession,
        model: type[T],
        *,
        cursor_secret: bytes | str | None = None,
        _tracker: Tracker | None = None,
    ) -> None:
        self._session = session
        self._info: ModelInfo = model_info(model)
        self._tracker = _tracker if _tracker is not None else Tracker(secret_bytes(cursor_secret))

    @property
    def model(self) -> type[T]:
        """The mapped class this repository stores."""
        return self._info.model

    async def add(self, entity: T) -> T:
        """Store a new entity now; it is kept only if the transaction commits.

        Args:
            entity: An instance of the model, not stored yet.

        Returns:
            The same entity, with its generated key assigned.

        Raises:
            ConflictError: Its key or a unique value is taken (the driver error chained).
            QueryError: ``entity`` is not an instance of the model.
        """
        self._tracker.check()
        self._check_new(entity)
        session = self._session
        session.add(entity)
        await self._flush()
        if self._info.aggregate:
            self._tracker.see(entity)  # type: ignore[arg-type]
        return entity

    async def add_many(self, entities: Iterable[T]) -> list[T]:
        """Store several new entities in one flush.

        Args:
            entities: Instances of the model, not stored yet.

        Returns:
            The entities, in the order given, with their generated keys assigned.

        Raises:
            ConflictError: A key or a unique value is taken; none of them is stored.
            QueryError: One of them is not an instance of the model; none is stored.
        """
        self._tracker.check()
        items = list(entities)
        for entity in items:
            self._check_new(entity)
        self._session.add_all(items)
        await self._flush()
        if self._info.aggregate:
            self._tracker.see_all(items)  # type: ignore[arg-type]
        return items

    async def get(self, key: ID, *, load: str | Sequence[str] = ()) -> T:
        """The entity with primary key ``key``, from the identity map if loaded.

        Args:
            key: The primary key (a tuple or a mapping for a composite one).
            load: Relationship paths to load with it (``"batches"``,
                ``"batches.allocations"``), in one statement per relationship.

        Raises:
            NotFoundError: No entity has that key.
            QueryError: ``key`` is not of the primary key's type.
        """
        entity = await self.get_or_none(key, load=load)
        if entity is None:
            raise NotFoundError(entity=self._info.name, key=key)
        return entity

    async def get_or_none(self, key: ID, *, load: str | Sequence[str] = ()) -> T | None:
        """The entity with primary key ``key``, or ``None``.

        Args:
            key: The primary key (a tuple or a mapping for a composite one).
            load: Relationship paths to load with it, as `get` takes them.

        Raises:
            QueryError: ``key`` is not of the primary key's type, or ``load``
                names no relationship.
        """
        self._tracker.check()
        info = self._info
        key = info.check_key(key)
        paths = check_load(info.model, load)
        session = self._session
        try:
            entity: T | None = session.sync_session.identity_map.get(
                session.sync_session.identity_key(info.model, key)
            )
            if entity is None:
                entity = await session.get(info.model, key, options=load_options(info.model, paths))
            elif paths and not loaded(entity, paths):
                # in the identity map already: load what is missing, keep its changes
                statement = sa.select(info.model).where(_key_clause(info, key))
                await session.scalars(statement.options(*load_options(info.model, paths)))
        except DRIVER_ERRORS as error:
            raise self._tracker.fail(info.translate(error, self._session.sync_session)) from error
        if entity is not None and info.aggregate:
            self._tracker.see(entity)  # type: ignore[arg-type]
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
        """The entities satisfying ``spec`` (all of them without one), in order.

        Args:
            spec: A filter such as ``F("total") > 100``, or on a relationship's
                field, ``F("batches.reference") == "b1"`` (some batch matches).
            order_by: Field names, ``-`` in front for descending; the primary key
                breaks ties.
            limit: At most this many entities.
            offset: Skip this many first.
            load: Relationship paths to load with them, one statement per
                relationship whatever the number of entities.

        Raises:
            QueryError: An unknown field or relationship, or a bad ``limit`` or
                ``offset``.
        """
        self._tracker.check()
        check_window(limit, offset)
        paths = check_load(self._info.model, load)
        statement = self._select(spec, self._info.order(order_by), paths)
        if limit is not None:
            statement = statement.limit(limit)
        if offset:
            statement = statement.offset(offset)
        return await self._all(statement)

    async def first(
        self,
        spec: Specification | None = None,
        *,
        order_by: str | Sequence[str] = (),
        load: str | Sequence[str] = (),
    ) -> T | None:
        """The first entity satisfying ``spec`` in order, or ``None``.

        Raises:
            QueryError: An unknown field or relationship.
        """
        found = await self.find(spec, order_by=order_by, limit=1, load=load)
        return found[0] if found else None

    async def count(self, spec: Specification | None = None) -> int:
        """How many entities satisfy ``spec`` (all of them without one).

        Raises:
            QueryError: An unknown field.
        """
        self._tracker.check()
        statement = sa.select(sa.func.count()).select_from(self._info.model)
        if spec is not None:
            statement = statement.where(self._where(spec))
        counted: int = await self._scalar(statement)
        return counted

    async def exists(self, spec: Specification | None = None) -> bool:
        """Whether any entity satisfies ``spec``.

        Raises:
            QueryError: An unknown field.
        """
        self._tracker.check()
        inner = sa.select(sa.literal(1)).select_from(self._info.model)
        if spec is not None:
            inner = inner.where(self._where(spec))
        found: bool = await self._scalar(sa.select(inner.exists()))
        return found

    async def get_by(self, spec: Specification, *, load: str | Sequence[str] = ()) -> T:
        """The one entity satisfying ``spec`` (a lookup by a unique field, say).

        Raises:
            NotFoundError: None does.
            QueryError: Several do (the message says how to narrow it), or an
                unknown field.
        """
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
        """The entities `find` returns, and how many satisfy ``spec`` in all (for a pager).

        Raises:
            QueryError: An unknown field, or a bad ``limit`` or ``offset``.
        """
        found = await self.find(spec, order_by=order_by, limit=limit, offset=offset, load=load)
        return found, await self.count(spec)

    async def remove_many(self, spec: Specification) -> int:
        """Remove every entity satisfying ``spec``, as `remove` would one by one.

        Each is loaded and removed through the unit of work, so version checks,
        cascades and events behave as for `remove`.

        Returns:
            How many were removed.

        Raises:
            ConcurrencyError: One of them changed since it was loaded.
            QueryError: An unknown field.
        """
        check_removal(spec)
        found = await self.find(spec)
        for entity in found:
            await self.remove(entity)
        return len(found)

    async def upsert(self, entity: T) -> T:
        """Store ``entity``, or write its values over the stored entity with its key.

        One statement, ``INSERT ... ON CONFLICT (key) DO UPDATE``: when no row has
        the entity's key it is inserted, and otherwise every non-key field of that
        row is set to the entity's value. A field left ``None`` takes its column's
        default, as on insert; on update, a Python-side ``onupdate`` instead. The
        unit's pending changes are flushed first.

        Returns:
            The entity the unit of work tracks for that key, holding the stored
            values: the one already loaded (refreshed), or a newly loaded one. It
            is not the object passed unless that object was the loaded one; use
            the returned entity from here on. The events the passed aggregate
            recorded go with it, and are collected once after commit.

        Raises:
            ConflictError: A unique value is taken, or a foreign key names a missing
                row (the driver error chained).
            ConfigurationError: The database is neither PostgreSQL nor SQLite.
            QueryError: ``entity`` is not of the model, has no key, or the model has
                a version column (upsert would write over changes unseen).
        """
        self._tracker.check()
        info = self._info
        session = self._session
        if isinstance(entity, info.model) and entity in session:
            state = sa.inspect(entity)
            unloaded = state.unloaded  # expired by a commit, or deferred
            unread = [prop.key for prop in state.mapper.column_attrs if prop.key in unloaded]
            if unread:  # its values are written: read them now, once
                # An asyncio session cannot load them on access.  # unasync: drop
                await self._flush()
                await session.refresh(entity, unread)
        key = check_upsert(info, entity)
        await self._flush()
        dialect = session.get_bind(mapper=info.model).dialect
        statement = upsert_statement(info, entity, dialect)
        try:
            result = await session.execute(statement, execution_options=_REFRESH)
            managed = result.scalar_one_or_none() if dialect.insert_returning else None
            if managed is None:  # no RETURNING, or nothing written (a table of keys only)
                managed = await session.get_one(info.model, key, populate_existing=True)
        except DRIVER_ERRORS as error:
            raise self._tracker.fail(info.translate(error, session.sync_session)) from error
        found: T = upserted(entity, managed, info, self._tracker)
        return found

    async def remove(self, entity: T) -> None:
        """Delete an entity this unit of work loaded or added, now.

        Raises:
            QueryError: ``entity`` is not of the model, or was not loaded or added
                through this session.
            ConcurrencyError: Someone else changed or removed it since it was loaded.
        """
        self._tracker.check()
        info = self._info
        info.check_entity(entity, "remove")
        session = self._session
        if entity not in session:
            raise QueryError(
                f"cannot remove {entity!r}: it was not loaded or added through this unit of "
                f"work; load it with get() first"
            )
        await session.delete(entity)
        await self._flush()

    async def page(
        self,
        spec: Specification | None = None,
        *,
        order_by: str | Sequence[str] = (),
        size: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
        load: str | Sequence[str] = (),
    ) -> Page[T]:
        """One page of the entities satisfying ``spec``, in order, after ``after``.

        Keyset pagination: the next page starts after the last entity's values
        of the ordered fields (and key), so pages neither skip nor repeat an
        entity when others are added or removed meanwhile, and a deep page
        costs what the first one does when an index matches the order.

        Args:
            spec: A filter.
            order_by: Field names, ``-`` in front for descending.
            size: At most this many entities (1 to 10,000).
            after: ``next_cursor`` of the previous page; ``None`` for the first page.
            load: Relationship paths to load with the page's entities.

        Returns:
            The page; its ``next_cursor`` is ``None`` when no entity follows.

        Raises:
            DecodeError: ``after`` is not a cursor this repository issued.
            QueryError: ``after`` was issued for another ``order_by``, an unknown
                field, or a bad ``size``.
        """
        self._tracker.check()
        check_size(size)
        info = self._info
        pairs = info.order(order_by)
        statement = self._select(spec, pairs, check_load(info.model, load))
        parameters = None
        if after is not None:
            values = decode_cursor(info.model, pairs, after, secret=self._tracker.secret)
            keyset, parameters = keyset_filter(pairs, values, info.model)
            statement = statement.where(keyset)
        items = await self._all(statement.limit(size + 1), parameters)
        if len(items) <= size:
            return Page(items, None)
        del items[size:]
        cursor = encode_cursor(
            info.model, pairs, info.values_of(items[-1], pairs), secret=self._tracker.secret
        )
        return Page(items, cursor)

    def _check_new(self, entity: object) -> None:
        info = self._info
        info.check_entity(entity, "add")
        state = instance_state(entity)
        if state.key is not None:  # stored: removed, or of another session (or a no-op)
            if state.deleted or state.was_deleted:
                info.refuse_removed(entity)
            if entity not in self._session:
                info.refuse_not_new(entity)
            return
        key = info.key_of(entity)
        parts = key if isinstance(key, tuple) else (key,)
        identity_map = self._session.sync_session.identity_map
        # a key the caller chose: taken by an object loaded here (if any is)?
        if None not in parts and len(identity_map):
            taken = identity_map.get(state.mapper.identity_key_from_primary_key(parts))
            if taken is not None and taken is not entity:
                raise self._tracker.fail(ConflictError(entity=info.name, key=key))

    def _where(self, spec: Specification) -> Any:
        return where(spec, self._info.model)  # checks the fields and values first

    def _select(
        self,
        spec: Specification | None,
        pairs: Sequence[tuple[str, bool]],
        paths: tuple[str, ...] = (),
    ) -> Any:
        model = self._info.model
        statement = sa.select(model).options(*load_options(model, paths))
        if spec is not None:
            statement = statement.where(self._where(spec))
        return statement.order_by(*order_by_clauses(pairs, model))

    async def _all(self, statement: Any, parameters: dict[str, Any] | None = None) -> list[T]:
        try:
            result = await self._session.scalars(statement, parameters)
        except DRIVER_ERRORS as error:  # an autoflush of earlier changes
            raise self._tracker.fail(
                self._info.translate(error, self._session.sync_session)
            ) from error
        items: list[T] = list(result.all())
        if self._info.aggregate:
            self._tracker.see_all(items)  # type: ignore[arg-type]
        return items

    async def _scalar(self, statement: Any) -> Any:
        try:
            return await self._session.scalar(statement)
        except DRIVER_ERRORS as error:
            raise self._tracker.fail(
                self._info.translate(error, self._session.sync_session)
            ) from error

    async def _flush(self) -> None:
        try:
            await self._session.flush()
        except DRIVER_ERRORS as error:
            raise self._tracker.fail(
                self._info.translate(error, self._session.sync_session)
            ) from error


def _key_clause(info: ModelInfo, key: Any) -> Any:
    """``primary key = key`` for ``info``'s model (a tuple for a composite key)."""
    parts = key if len(info.key_names) > 1 else (key,)
    return sa.and_(
        *(
            getattr(info.model, name) == part
            for name, part in zip(info.key_names, parts, strict=True)
        )
    )


class AsyncSqlAlchemyUnitOfWork:
    """A unit of work over sessions from a SQLAlchemy `async_sessionmaker`.

    Each ``async with uow:`` opens a session and a transaction; leaving the block
    rolls back whatever was not committed and closes the session, so the unit
    can be entered again. Entities keep their values after a commit (the
    session does not expire them) unless ``expire_on_commit=True``.

    The persistence guide shows it at work.

    Args:
        session_factory: Makes a new session: `async_sessionmaker(engine)`, for one.
        cursor_secret: A secret that signs page cursors, so clients cannot forge
            one. Without it cursors are still checked for damage, with a key
            derived from the model.
        expire_on_commit: Expire entities on commit (the next attribute read
            queries the database again).
        isolation_level: ``"READ COMMITTED"``, ``"REPEATABLE READ"`` or
            ``"SERIALIZABLE"`` for each transaction of the unit; the engine's
            (``DatabaseSettings.isolation_level``) by default. A serialization
            failure or a deadlock is then a `ConcurrencyError`: run the unit again.
        outbox: Where each commit writes the events it carries, in its own
            transaction, with one INSERT (`buttress.messaging.Outbox`): the
            events are stored exactly when the changes that caused them are.
    """

    __enter__ = __exit__ = use_async_with  # unasync: drop

    def __init__(
        self,
        session_factory: Callable[[], AsyncSession],
        *,
        cursor_secret: bytes | str | None = None,
        expire_on_commit: bool = False,
        isolation_level: str | None = None,
        outbox: OutboxWriter | None = None,
    ) -> None:
        if not callable(session_factory):
            raise ConfigurationError(
                f"session_factory must make sessions, such as async_sessionmaker(engine); "
                f"got {session_factory!r}"
            )
        check_isolation_level(isolation_level)
        self._isolation_level = isolation_level
        self._outbox = outbox
        self._guard: AggregateGuard | None = None
        self._factory = session_factory
        self._secret = secret_bytes(cursor_secret)
        self._expire_on_commit = expire_on_commit
        self._session: AsyncSession | None = None
        self._tracker = Tracker(self._secret)
        self._repositories: dict[type[Any], AsyncSqlAlchemyRepository[Any, Any]] = {}
        self._flushed: FlushedWrites | None = None  # counted only while DEBUG is on

    @property
    def session(self) -> AsyncSession:
        """The session of the current transaction, for what repositories do not cover.

        Raises:
            ConfigurationError: The unit of work is not entered.
        """
        session = self._session
        if session is None:
            raise not_in_transaction()
        return session

    async def __aenter__(self) -> Self:
        """Open a session and begin a transaction.

        Raises:
            ConfigurationError: The unit of work is already entered.
        """
        if self._session is not None:
            raise already_in_transaction()
        session = self._factory()
        if not all(hasattr(session, name) for name in ("get", "scalars", "close")):
            raise ConfigurationError(
                f"session_factory made {session!r}, not a session: pass a factory such as "
                "async_sessionmaker(engine)"
            )
        sync = session.sync_session
        sync.expire_on_commit = self._expire_on_commit
        sync.autoflush = True  # queries see the unit's changes, on every backend
        self._session = session
        self._repositories = {}
        self._flushed = FlushedWrites(sync) if logger.isEnabledFor(logging.DEBUG) else None
        self._guard = AggregateGuard(sync, self._tracker)
        if self._isolation_level is not None:
            try:
                await self._begin_isolated(session)
            except BaseException:
                self._session = None
                await session.close()
                raise
        return self

    async def _begin_isolated(self, session: AsyncSession) -> None:
        """Begin the transaction at the unit's isolation level (before any statement)."""
        level = self._isolation_level
        if session.sync_session.get_bind().dialect.name == "sqlite":
            level = "SERIALIZABLE"  # SQLite's only level besides READ UNCOMMITTED: all of them
        options = {"isolation_level": level}
        try:
            await session.connection(execution_options=options)
        except DRIVER_ERRORS as error:
            raise self._tracker.fail(translate(error, session=session.sync_session)) from error

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Roll back what was not committed and close the session."""
        session = self.session
        self._session = None
        if self._flushed is not None:
            self._flushed.report(type(self).__name__)
            self._flushed = None
        self._tracker.rolled_back()
        for repository in self._repositories.values():
            repository._session = CLOSED  # noqa: SLF001 - a repository kept after the block fails
        self._repositories = {}
        await session.close()  # closing rolls the transaction back

    @overload
    def repository(self, model: type[T]) -> AsyncSqlAlchemyRepository[T, Any]: ...
    @overload
    def repository(self, model: type[T], key: type[ID]) -> AsyncSqlAlchemyRepository[T, ID]: ...
    def repository(
        self, model: type[T], key: type[ID] | None = None
    ) -> AsyncSqlAlchemyRepository[T, Any]:
        """The repository of ``model`` in the current transaction.

        Args:
            model: A mapped class.
            key: The type of its primary key, for type checkers (``repository(Order, int)``).

        Raises:
            ConfigurationError: The unit of work is not entered.
            QueryError: ``model`` is not mapped.
        """
        del key  # it only tells type checkers the type of the repository's keys
        repositories = self._repositories
        found = repositories.get(model)
        if found is None:
            found = AsyncSqlAlchemyRepository(self.session, model, _tracker=self._tracker)
            repositories[model] = found
        return found

    async def commit(self) -> None:
        """Keep the work done so far; the unit goes on in a new transaction.

        The events of the aggregates its repositories returned or added are
        queued for `collect_events`.

        Raises:
            ConflictError: Writing violates a constraint; nothing is kept.
            ConcurrencyError: An entity changed since it was loaded, or the
                database refused the transaction as a serialization failure or
                a deadlock; nothing is kept.
            UnavailableError: The connection was lost; nothing is kept.
        """
        session = self.session
        tracker = self._tracker
        tracker.check_outside_savepoint("commit")
        tracker.check()
        pulled: list[Any] = []
        try:
            if self._outbox is not None:
                pulled = await self._write_outbox(session, self._outbox)
            await session.commit()
        except DRIVER_ERRORS as error:
            raise tracker.fail(translate(error, session=session.sync_session)) from error
        except BaseException as error:
            if self._outbox is not None and tracker.failure is None:
                tracker.fail(outbox_failed(error))  # its events are off their aggregates
            raise
        tracker.committed(pulled)
        if pulled:
            cast("OutboxWriter", self._outbox).written()  # wake this process's relays
        if self._isolation_level is not None:
            await self._begin_isolated(session)  # the next transaction: at the same level

    async def _write_outbox(self, session: AsyncSession, outbox: OutboxWriter) -> list[Any]:
        """Flush, then insert the events of the aggregates seen into ``outbox``; return them.

        One INSERT (an executemany for several rows) carries every event.
        """
        pull = functools.partial(self._pull_events, outbox=outbox)
        pulled, rows = await session.run_sync(pull)  # unasync: sync: pulled, rows = pull(session)
        if rows:  # one statement, compiled once and cached
            await session.execute(sa.insert(outbox.table), rows[0] if len(rows) == 1 else rows)
        return pulled

    def _pull_events(
        self, session: SyncSession, *, outbox: OutboxWriter
    ) -> tuple[list[Any], list[dict[str, Any]]]:
        """Bump the roots whose events are new, flush, pull the events and make their rows.

        Run in the session's own context (SQLAlchemy's greenlet under asyncio): reading
        an expired attribute may load it.
        """
        if self._guard is not None:
            self._guard.before_commit(session)
        session.flush()
        pulled = self._tracker.pull_sourced()
        return pulled, outbox_rows(outbox, pulled) if pulled else []

    async def rollback(self) -> None:
        """Undo the work done since the last commit, and drop its events."""
        session = self.session
        self._tracker.check_outside_savepoint("roll back")
        self._tracker.rolled_back()
        await session.rollback()
        if self._isolation_level is not None:
            await self._begin_isolated(session)

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A nested transaction (``SAVEPOINT``): its work is undone if the block raises.

        The exception still propagates; the outer transaction goes on. Events
        recorded inside an undone block are dropped. A write that failed inside
        the block fails the block even if the block caught its error: the block
        is undone and the error raised again as it ends.

        Raises:
            ConfigurationError: The unit of work is not entered.
        """
        session = self.session
        tracker = self._tracker
        tracker.check()
        nested = await session.begin_nested()
        versions = loaded_versions(session.sync_session)
        tracker.mark()
        try:
            yield
            tracker.check()  # a write failed in the block and was caught: undo the block
            await session.flush()
        except BaseException as error:
            await nested.rollback()  # also after a failed flush deactivated it
            restore_versions(versions)
            tracker.undo()
            if isinstance(error, DRIVER_ERRORS):
                raise translate(error, session=session.sync_session) from error
            raise
        await nested.commit()
        tracker.release()

    def collect_events(self) -> Iterator[DomainEvent]:
        """Yield the domain events of committed work, each once, oldest first.

        Events are queued when `commit` succeeds, from every aggregate the
        repositories returned or added, in the order they were seen; work that
        is rolled back queues nothing.
        """
        return self._tracker.collect()
