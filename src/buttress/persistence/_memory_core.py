"""The in-memory store and its transactions: what the in-memory twins do, without I/O.

The store keeps, per model, a table of rows: a row is a dict of the model's
column values, never changed once stored (a change stores a new dict), so a
snapshot of a table is a shallow copy and readers never see half a commit.

A `Transaction` is one ``with uow:`` block. Like a SQLAlchemy session it keeps
an identity map (one object per key) and "flushes" before every query: it
compares each object it handed out with the row it last wrote, checks keys,
unique constraints and versions, and writes the changes into its own overlay.
`commit` checks the overlay against what other units committed meanwhile and
applies it under the store's lock. It reads the model's SQLAlchemy metadata for
everything it enforces, and raises `ConfigurationError` for what it cannot
reproduce (server-side defaults, relationships) rather than differ from SQL.
"""

from __future__ import annotations

import copy
import datetime as dt
import decimal
import enum
import functools
import threading
import uuid
from typing import TYPE_CHECKING, Any, Final, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import attributes
from sqlalchemy.orm import exc as orm_exc
from sqlalchemy.orm.base import LoaderCallableStatus, PassiveFlag

from buttress.domain._entity import event_clock, event_count
from buttress.errors import (
    ButtressError,
    ConcurrencyError,
    ConfigurationError,
    ConflictError,
    QueryError,
)
from buttress.persistence._aggregate import guarded
from buttress.persistence._cursor import decode_cursor, encode_cursor
from buttress.persistence._links import Link, check_load, link_of, links_of, owners_of
from buttress.persistence._model import (
    ModelInfo,
    Tracker,
    check_size,
    check_window,
    model_info,
    outbox_rows,
)
from buttress.persistence._protocols import OutboxWriter, Page
from buttress.persistence._query import after_in_python, sort_in_python, where

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from buttress.domain import Specification

__all__ = ["InMemoryStore", "Transaction"]

Row = dict[str, Any]
T = TypeVar("T")
_ISSUED: Final = "buttress.memory.store"  # the store an entity came from, on its state
_LOADER: Final = "buttress.memory.unit"  # the transaction that loads its relationships
_DELETED: Final[Any] = None  # an overlay entry of None: the row was deleted


def _assigned_version(info: ModelInfo, mapper: Any) -> bool:
    """Whether the application sets every version (``version_id_generator=False``).

    Raises:
        ConfigurationError: The database makes the versions (a server default or a
            trigger the twin cannot run).
    """
    if info.version is None or mapper.version_id_generator is not False:
        return False
    column = mapper.version_id_col
    if column.server_default is not None or column.server_onupdate is not None:
        raise ConfigurationError(
            f"{info.name} has a version counter the database generates; the in-memory "
            "repositories cannot reproduce it: use a Python-side version_id_generator, or "
            "assign the versions in your code (version_id_generator=False, no server default)"
        )
    return True


class _Table:
    """How the store enforces one model's metadata."""

    __slots__ = (
        "assigned_version",
        "autoincrement",
        "defaults",
        "guarded",
        "info",
        "links",
        "loaders",
        "mapper",
        "mutable",
        "on_update",
        "references",
        "required",
        "uniques",
        "version",
    )

    def __init__(self, model: type[Any]) -> None:
        info = model_info(model)
        mapper = sa.inspect(model)
        self.links = links_of(model)  # refuses what the twin cannot carry out, named
        # lazy loaders, one per relationship, shared: each finds its transaction on the state
        self.loaders: dict[str, Callable[..., Any]] = {
            link.key: functools.partial(_load_link, link) for link in self.links
        }
        self.guarded = guarded(model)
        self.info = info
        self.mapper = mapper
        self.version: str | None = info.version
        # version_id_generator=False: the application sets every version (still checked),
        # unless the database makes it (a server default or trigger the twin cannot run).
        self.assigned_version = _assigned_version(info, mapper)
        self.defaults: dict[str, Any] = {}
        self.on_update: dict[str, Any] = {}
        self.required: list[str] = []
        self.autoincrement: str | None = None
        table = mapper.local_table
        auto = getattr(table, "autoincrement_column", None)
        # the columns whose values can change in place: copied between rows and entities
        self.mutable = tuple(
            prop.key
            for prop in mapper.column_attrs
            if _python_type(prop.columns[0]) not in _IMMUTABLE
        )
        for prop in mapper.column_attrs:
            column = prop.columns[0]
            if column is auto:
                self.autoincrement = prop.key
            elif column.default is not None:
                self.defaults[prop.key] = column.default
            elif column.server_default is not None:
                self.defaults[prop.key] = None  # refused when the value is missing
            if not column.nullable and (prop.key != self.version or self.assigned_version):
                self.required.append(prop.key)
            if column.server_onupdate is not None or (
                column.onupdate is not None
                and not (column.onupdate.is_scalar or column.onupdate.is_callable)
            ):
                raise ConfigurationError(
                    f"{info.name}.{prop.key} is updated by the database (onupdate computed in "
                    "SQL), which the in-memory repositories cannot do; use a Python-side "
                    "onupdate, or test it against SQLite"
                )
            if column.onupdate is not None:
                self.on_update[prop.key] = column.onupdate
        by_column = {prop.columns[0].name: prop.key for prop in mapper.column_attrs}
        groups = [
            constraint.columns
            for constraint in table.constraints
            if isinstance(constraint, sa.UniqueConstraint)
        ]
        for index in table.indexes:
            if not index.unique:
                continue
            partial = any(
                key.endswith("_where") and value is not None
                for key, value in index.dialect_kwargs.items()
            )
            if partial or not all(isinstance(e, sa.Column) for e in index.expressions):
                raise ConfigurationError(
                    f"{info.name} has the unique index {index.name} on an expression or "
                    "with a WHERE clause, which the in-memory repositories cannot evaluate; "
                    "test it against SQLite instead (SqlAlchemyUnitOfWork on sqlite:///:memory:)"
                )
            groups.append(index.columns)
        self.uniques = [tuple(by_column[column.name] for column in group) for group in groups]
        checks = [c for c in table.constraints if isinstance(c, sa.CheckConstraint)]
        if checks:
            raise ConfigurationError(
                f"{info.name} has CHECK constraints ({', '.join(str(c.sqltext) for c in checks)}), "
                "which are SQL the in-memory repositories cannot evaluate; test it against "
                "SQLite instead (SqlAlchemyUnitOfWork on sqlite:///:memory:)"
            )
        by_column = {prop.columns[0]: prop.key for prop in mapper.column_attrs}
        self.references = [
            _Reference(info.name, by_column, fk, mapper.registry)
            for fk in table.foreign_key_constraints
        ]

    def fill(self, entity: Any, store: InMemoryStore) -> dict[str, Any]:
        """Give a new entity its generated key, defaults and first version, as an insert does.

        Returns:
            The attributes it set, with their values before, to undo a refused insert.
        """
        names = [*self.defaults, self.autoincrement, self.version]
        before = {name: getattr(entity, name) for name in names if name is not None}
        missing = [name for name in self.defaults if getattr(entity, name) is None]
        for name in missing:  # refuse before changing anything
            default = self.defaults[name]
            if default is None or not (default.is_scalar or default.is_callable):
                raise ConfigurationError(
                    f"{self.info.name}.{name} is missing and its default is computed by the "
                    "database, which the in-memory repositories cannot do: set it before add()"
                )
        for name in missing:
            default = self.defaults[name]
            setattr(entity, name, default.arg(None) if default.is_callable else default.arg)
        if self.autoincrement is not None and getattr(entity, self.autoincrement) is None:
            setattr(entity, self.autoincrement, store.next_key(self.info.model))
        if self.version is not None and not self.assigned_version:
            setattr(entity, self.version, self.mapper.version_id_generator(None))
        return before


class _Reference:
    """A foreign key of a model: its fields, and the model and fields it refers to."""

    __slots__ = ("fields", "target", "target_fields", "text")

    def __init__(
        self,
        name: str,
        by_column: dict[Any, str],
        constraint: sa.ForeignKeyConstraint,
        registry: Any,
    ) -> None:
        for action in (constraint.ondelete, constraint.onupdate):
            if action is not None and action.upper() not in {"NO ACTION", "RESTRICT"}:
                raise ConfigurationError(
                    f"{name} has a foreign key with ON DELETE/UPDATE {action}, which the "
                    "in-memory repositories cannot carry out; test it against SQLite with "
                    "PRAGMA foreign_keys=ON instead"
                )
        self.fields = tuple(by_column[element.parent] for element in constraint.elements)
        target_table = constraint.referred_table
        targets = [m for m in registry.mappers if m.local_table is target_table]
        if not targets:
            raise ConfigurationError(
                f"{name} refers to the table {target_table.name}, which no class in its "
                "registry maps; the in-memory repositories keep rows of mapped classes only"
            )
        target = targets[0]
        target_by_column = {prop.columns[0]: prop.key for prop in target.column_attrs}
        self.target: type[Any] = target.class_
        self.target_fields = tuple(
            target_by_column[element.column] for element in constraint.elements
        )
        self.text = f"{name}({', '.join(self.fields)}) -> {target.class_.__name__}"

    def values(self, row: Row) -> tuple[Any, ...] | None:
        """The referring values of ``row``, or None when one is NULL (nothing is checked)."""
        values = tuple(row[name] for name in self.fields)
        return None if None in values else values


class _Named:
    """What checks read of a model: its name, and the key it is stored under."""

    __slots__ = ("model", "name")

    def __init__(self, model: Any, name: str) -> None:
        self.model = model
        self.name = name


class _Secondary:
    """How the store keeps the pairs of a many-to-many relationship's secondary table.

    Rows are keyed by the table's primary key (every column when it has none);
    they hold column values by column name, and their foreign keys are checked
    as a mapped model's are.
    """

    __slots__ = ("columns", "info", "key_columns", "references", "uniques", "version")

    def __init__(self, table: sa.Table, registry: Any) -> None:
        self.info = _Named(table, table.name)
        self.version: str | None = None
        self.uniques: list[tuple[str, ...]] = []
        self.columns = tuple(column.name for column in table.columns)
        primary = tuple(column.name for column in table.primary_key.columns)
        self.key_columns = primary or self.columns
        by_column = {column: column.name for column in table.columns}
        self.references = [
            _Reference(table.name, by_column, fk, registry) for fk in table.foreign_key_constraints
        ]

    def key(self, row: Row) -> tuple[Any, ...]:
        """The key a pair's row is stored under."""
        return tuple(row[name] for name in self.key_columns)


class InMemoryStore:
    """The data several in-memory units of work share, as a database would hold it.

    Pass one store to several `InMemoryUnitOfWork` (or async) instances to have
    them see each other's commits.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[type[Any], dict[Any, Row]] = {}
        self._tables: dict[type[Any], _Table] = {}
        self._secondaries: dict[sa.Table, _Secondary] = {}
        self._sequences: dict[type[Any], int] = {}
        self.linked = False  # some model has relationships: flushes walk them
        self._indexes: dict[tuple[Any, tuple[str, ...]], tuple[Any, dict[Any, list[Any]]]] = {}
        self._outboxes: dict[str, list[Row]] = {}  # outbox table name -> its rows, by id
        self._outbox_ids: dict[str, set[Any]] = {}  # ... and the message ids they hold
        self._outbox_next: dict[str, int] = {}  # ... and the id the next row gets

    def outbox_rows(self, table: str) -> list[dict[str, Any]]:
        """The rows units of work wrote to the outbox table named ``table``, oldest first.

        Each is the row its outbox made, with the ``id`` the store gave it (1, 2, ...).
        Copies: changing them changes nothing stored.
        """
        with self._lock:
            return [dict(row) for row in self._outboxes.get(table, ())]

    def edit_outbox(self, table: str, edit: Callable[[list[dict[str, Any]]], T]) -> T:
        """Run ``edit`` on the live rows of the outbox table ``table``, under the store's lock.

        What a relay does to the rows (leases them, marks them, removes the
        delivered ones) it does here, atomically with respect to every commit
        and every other edit, as one statement would in a database.

        Args:
            table: The outbox table's name.
            edit: Changes the rows in place (oldest first) and returns what it found.

        Returns:
            What ``edit`` returned.
        """
        with self._lock:
            rows = self._outboxes.setdefault(table, [])
            count = len(rows)
            try:
                return edit(rows)
            finally:
                if len(rows) != count:  # removed rows give their message ids back
                    self._outbox_ids[table] = {row["message_id"] for row in rows}

    def table(self, model: type[Any]) -> _Table:
        """What the store enforces for ``model``, read from its metadata once."""
        table = self._tables.get(model)
        if table is None:
            table = _Table(model)
            for link in table.links:
                if link.secondary is not None and link.secondary not in self._secondaries:
                    self._secondaries[link.secondary] = _Secondary(
                        link.secondary, table.mapper.registry
                    )
            self._tables[model] = table
            self.linked = self.linked or bool(table.links)
        return table

    def index(
        self, model: Any, fields: tuple[str, ...]
    ) -> dict[tuple[Any, ...], list[tuple[Any, Row]]]:
        """The committed ``(key, row)`` of ``model`` by their values of ``fields``.

        Built once per commit: a committed table is never changed in place, so
        an index built from it stays true until a commit replaces the table.
        """
        rows = self.rows(model)
        cached = self._indexes.get((model, fields))
        if cached is not None and cached[0] is rows:
            return cached[1]
        index: dict[tuple[Any, ...], list[tuple[Any, Row]]] = {}
        for key, row in rows.items():
            index.setdefault(tuple(row[name] for name in fields), []).append((key, row))
        self._indexes[model, fields] = (rows, index)
        return index

    def secondary(self, table: sa.Table) -> _Secondary:
        """How the store keeps the pairs of ``table`` (registered with its models)."""
        return self._secondaries[table]

    def kept(self, model: Any) -> _Table | _Secondary:
        """How the store keeps the rows of ``model``: a mapped class or a secondary table."""
        if isinstance(model, sa.Table):
            return self._secondaries[model]
        return self.table(model)

    def holders(self) -> list[_Table | _Secondary]:
        """Everything the store keeps rows of: what foreign keys may refer from."""
        return [*self._tables.values(), *self._secondaries.values()]

    def issue(self, entity: Any, state: Any = None) -> None:
        """Remember that ``entity`` came from this store (loaded or added).

        The mark lives on the entity's SQLAlchemy state (``state``, when the
        caller has it at hand): it goes when the entity goes, and a copy of the
        entity does not carry it.
        """
        (attributes.instance_state(entity) if state is None else state).info[_ISSUED] = self

    def issued(self, entity: Any) -> bool:
        """Whether ``entity`` was loaded from or added to this store before."""
        return attributes.instance_state(entity).info.get(_ISSUED) is self

    def rows(self, model: type[Any]) -> dict[Any, Row]:
        """The committed rows of ``model`` (a table never changed in place)."""
        return self._rows.get(model, {})

    def next_key(self, model: type[Any]) -> int:
        """The next generated key of ``model``: past every key seen, never reused."""
        with self._lock:
            key = self._sequences.get(model, 0) + 1
            self._sequences[model] = key
            return key

    def note_key(self, model: type[Any], key: object) -> None:
        """Keep generated keys past ``key``, a key the caller chose."""
        if type(key) is int and key > self._sequences.get(model, 0):
            with self._lock:
                self._sequences[model] = max(self._sequences.get(model, 0), key)


class _Change:
    """One row a transaction wrote: the row it read first, the row now, the fields changed."""

    __slots__ = ("base", "fields", "row")

    def __init__(self, base: Row | None, row: Row | None, fields: frozenset[str]) -> None:
        self.base = base
        self.row = row
        self.fields = fields


class Transaction:
    """One transaction of an in-memory unit of work (see the module docstring)."""

    def __init__(self, store: InMemoryStore, tracker: Tracker, *, lazy: bool = True) -> None:
        self.store = store
        self.tracker = tracker
        # False for asyncio units: an unloaded relationship read outside load= is an
        # error, as SQLAlchemy's asyncio session cannot load it on access either
        self.lazy = lazy
        self.changes: dict[type[Any], dict[Any, _Change]] = {}
        self.objects: dict[tuple[type[Any], Any], Any] = {}  # identity map
        self.flushed: dict[int, Row] = {}  # id(object) -> the row last written or read
        self.new: set[int] = set()  # objects added in this transaction
        # objects removed in this transaction, kept alive so their ids stay theirs
        self.removed: dict[int, tuple[tuple[type[Any], Any], Any]] = {}
        self.deleted: dict[int, Any] = {}  # ... and those whose removal was committed
        self.savepoints: list[tuple[Any, ...]] = []
        self.pending: list[Any] = []  # added, inserted by the next flush
        self.doomed: dict[int, Any] = {}  # removed, deleted by the next flush
        # the related objects of each loaded relationship as last loaded or flushed
        self.links: dict[tuple[int, str], tuple[Any, ...]] = {}
        self.counted: dict[int, int] = {}  # events of an aggregate its version covers
        self.clock = -1  # the event clock when they were last counted
        self.flushing = False

    # -- reading -----------------------------------------------------------------------

    def current(self, model: type[Any]) -> dict[Any, Row]:
        """The rows of ``model`` as this transaction sees them."""
        rows = self.store.rows(model)
        changes = self.changes.get(model)
        if not changes:
            return rows
        merged = dict(rows)
        for key, change in changes.items():
            if change.row is _DELETED:
                merged.pop(key, None)
            else:
                merged[key] = change.row
        return merged

    def _object(self, info: ModelInfo, key: Any, row: Row) -> Any:
        found = self.objects.get((info.model, key))
        if found is not None:
            return found
        table = self.store.table(info.model)
        entity = table.mapper.class_manager.new_instance()
        state = attributes.instance_state(entity)
        # a new instance has no history to clear: its values go in as a load puts them
        values = entity.__dict__
        values.update(row)
        for name in table.mutable:
            values[name] = _own(values[name])
        self.store.issue(entity, state)
        self.objects[info.model, key] = entity
        self.flushed[id(entity)] = row
        if table.links:
            state.info[_LOADER] = self
            state.callables = dict(table.loaders)
        return entity

    def get(self, info: ModelInfo, key: Any, *, load: object = ()) -> Any:
        """The entity with ``key``, from the identity map first, with ``load`` loaded."""
        key = info.check_key(key)
        paths = check_load(info.model, load)
        found = self.objects.get((info.model, key))
        if found is None:
            self.flush()
            row = self.current(info.model).get(key)
            found = None if row is None else self._object(info, key, row)
        if found is not None and paths:
            self.load([found], paths)
        return found

    def load(self, entities: Iterable[Any], paths: tuple[str, ...]) -> None:
        """Load the relationships along ``paths`` of ``entities``, as eager loading does.

        The unit flushed before the query that found ``entities``; like SQL's
        eager loads, the loads that follow do not flush again.
        """
        entities = list(entities)
        self.flushing = True  # the loaders' autoflush: done already
        try:
            for path in paths:
                level = entities
                for step in path.split("."):
                    following: list[Any] = []
                    for entity in level:
                        following.extend(self._eager(entity, step))
                    level = following
        finally:
            self.flushing = False

    def _eager(self, entity: Any, key: str) -> list[Any]:
        """Load ``entity``'s relationship ``key`` unless loaded; the related objects."""
        state = attributes.instance_state(entity)
        value = state.dict.get(key, _UNSET)
        if value is _UNSET:
            link = link_of(type(entity), key)
            related = self._related(entity, link)
            self.links[id(entity), key] = tuple(related)
            impl: Any = state.manager[key].impl  # as set_committed_value(), the state at hand
            impl.set_committed_value(
                state, state.dict, related if link.uselist else (related[0] if related else None)
            )
            return related
        if value is None:
            return []
        return list(value) if isinstance(value, (list, set)) else [value]

    def select(
        self,
        info: ModelInfo,
        spec: Specification | None,
        pairs: Sequence[tuple[str, bool]],
        after: Sequence[Any] | None = None,
        window: slice = slice(None),
    ) -> list[Any]:
        """The entities satisfying ``spec``, sorted by ``pairs``, after ``after``, in ``window``."""
        self.flush()
        views = [_View(self, info.model, key, row) for key, row in self.current(info.model).items()]
        if spec is not None:
            views = [view for view in views if spec.is_satisfied_by(view)]
        if after is not None:
            views = [view for view in views if after_in_python(view, pairs, after)]
        sort_in_python(views, pairs)
        return [self._object(info, view.key_, view.row_) for view in views[window]]

    def count(self, info: ModelInfo, spec: Specification | None) -> int:
        """How many stored entities satisfy ``spec``."""
        self.flush()
        rows = self.current(info.model).items()
        if spec is None:
            return len(rows)
        model = info.model
        return sum(1 for key, row in rows if spec.is_satisfied_by(_View(self, model, key, row)))

    def check_spec(self, info: ModelInfo, spec: Specification | None) -> None:
        """Make the checks the SQL repositories make when they compile ``spec``."""
        if spec is not None:
            where(spec, info.model)  # the same field and value checks as SQL, clause discarded

    # -- relationships -----------------------------------------------------------------

    def _expect_loads(self, entity: Any, table: _Table) -> None:
        """Have ``entity``'s unloaded relationships load from this transaction on access."""
        state = attributes.instance_state(entity)
        present = state.dict
        state.info[_LOADER] = self
        state.callables = {key: load for key, load in table.loaders.items() if key not in present}

    def load_link(self, link: Link, state: Any, passive: Any) -> Any:
        """Load one relationship of ``state``'s object, as a lazy load does."""
        if not passive & PassiveFlag.SQL_OK:
            return LoaderCallableStatus.PASSIVE_NO_RESULT
        entity = state.obj()
        if id(entity) not in self.flushed:
            raise orm_exc.DetachedInstanceError(
                f"{link.name} of {entity!r} was not loaded while its unit of work was open: "
                "read it inside the unit, or name it in load= when you get the entity"
            )
        if not (self.lazy or self.flushing):
            raise sa.exc.MissingGreenlet(
                f"{link.name} of {entity!r} was not loaded, and an asyncio unit of work "
                "cannot load it on access (SQLAlchemy's asyncio session raises "
                "MissingGreenlet here too): name it in load= when you get or find the "
                f"entity, such as load={link.key!r}"
            )
        if not passive & PassiveFlag.NO_AUTOFLUSH:
            self.flush()  # as SQL's lazy load autoflushes (not when a set reads the old value)
        related = self._related(entity, link)
        self.links[id(entity), link.key] = tuple(related)
        if link.uselist:
            return related
        return related[0] if related else None

    def _related(self, entity: Any, link: Link) -> list[Any]:
        """The objects ``link`` relates ``entity`` to, as stored now (ordered)."""
        target = model_info(link.target)
        related = [
            self._object(target, key, row)
            for key, row in self.related_rows(self.flushed[id(entity)], link)
        ]
        link.sort(related)
        return related

    def related_rows(self, row: Row, link: Link) -> list[tuple[Any, Row]]:
        """The stored rows ``link`` relates ``row`` to, as this transaction sees them."""
        values = link.read(row)
        if None in values:
            return []
        target = model_info(link.target)
        if link.secondary is None:
            return self._rows_where(target.model, target.key_names, link.matches, values)
        pairs = [
            tuple(pair[column] for _, column in link.target_pairs)
            for _, pair in self._rows_where(link.secondary, (), link.matches, values)
        ]
        return [
            hit
            for found in pairs
            for hit in self._rows_where(target.model, target.key_names, link.target_reads, found)
        ]

    def _rows_where(
        self,
        model: Any,
        key_names: tuple[str, ...],
        fields: tuple[str, ...],
        values: tuple[Any, ...],
    ) -> list[tuple[Any, Row]]:
        """The rows of ``model`` (keyed by ``key_names``) whose ``fields`` hold ``values``."""
        changes = self.changes.get(model)
        if fields == key_names:
            key = values[0] if len(values) == 1 else values
            row = self.current(model).get(key)
            return [] if row is None else [(key, row)]
        found = self.store.index(model, fields).get(values, [])
        found = [pair for pair in found if pair[0] not in changes] if changes else list(found)
        if changes:
            found += [
                (key, change.row)
                for key, change in changes.items()
                if change.row is not None and tuple(change.row[name] for name in fields) == values
            ]
        return found

    def _members(self, entity: Any, link: Link, *, load: bool = False) -> tuple[Any, ...] | None:
        """The objects ``entity`` holds through ``link`` now; None when never loaded."""
        state = attributes.instance_state(entity)
        value = state.dict.get(link.key, _UNSET)
        if value is _UNSET:
            if not load or id(entity) not in self.flushed:
                return None
            value = getattr(entity, link.key)
        if link.uselist:
            return tuple(value)
        return () if value is None else (value,)

    def _gone(self, entity: Any) -> bool:
        eid = id(entity)
        return eid in self.doomed or eid in self.removed or eid in self.deleted

    def _cascade_new(self, pending: list[Any]) -> list[Any]:
        """``pending`` and every new object reachable from the unit through save-update.

        Raises:
            QueryError: A reachable object came from another unit of work.
        """
        found = list(pending)
        seen = {id(entity) for entity in pending}
        queue = [*self.objects.values(), *pending]
        while queue:
            entity = queue.pop()
            for link in self.store.table(type(entity)).links:
                if not link.save_update:
                    continue
                for other in self._members(entity, link) or ():
                    if id(other) in seen or id(other) in self.flushed or self._gone(other):
                        continue
                    info = model_info(type(other))
                    if self.store.issued(other):
                        info.refuse_not_new(other)
                    seen.add(id(other))
                    self.store.table(info.model).fill(other, self.store)
                    found.append(other)
                    queue.append(other)
        return found

    def _cascade_removal(self, doomed: dict[int, Any]) -> dict[int, Any]:
        """``doomed`` with what it takes along: delete cascades and delete-orphans."""
        result = dict(doomed)
        queue = list(doomed.values())
        for entity in list(self.objects.values()):  # orphans: removed from their parent
            if id(entity) in result:
                continue
            for link in self.store.table(type(entity)).links:
                if link.delete_orphan and link.one_to_many:
                    for orphan in self._dropped(entity, link):
                        if id(orphan) in self.flushed and not self._held(orphan, link):
                            result[id(orphan)] = orphan
                            queue.append(orphan)
        while queue:
            entity = queue.pop()
            for link in self.store.table(type(entity)).links:
                if not link.delete:
                    continue
                for other in self._members(entity, link, load=True) or ():
                    if id(other) in self.flushed and id(other) not in result:
                        result[id(other)] = other
                        queue.append(other)
        return result

    def _before(self, entity: Any, link: Link) -> tuple[Any, ...]:
        """What ``entity`` held through ``link`` when last loaded or flushed.

        A relationship set without being loaded (a many-to-one assigned, say)
        was holding what is stored: it is read now, as SQL reads it at flush.
        """
        key = (id(entity), link.key)
        found = self.links.get(key)
        if found is None:
            if id(entity) not in self.flushed:
                return ()
            found = self.links[key] = tuple(self._related(entity, link))
        return found

    def _dropped(self, entity: Any, link: Link) -> list[Any]:
        """What ``entity`` held through ``link`` when last flushed and holds no more."""
        now = self._members(entity, link)
        before = None if now is None else self._before(entity, link)
        if not before or now is None:
            return []
        kept = {id(other) for other in now}
        return [other for other in before if id(other) not in kept]

    def _held(self, entity: Any, link: Link) -> bool:
        """Whether some object of the unit now holds ``entity`` through ``link``."""
        for owner in self.objects.values():
            if isinstance(owner, link.model):
                members = self._members(owner, link)
                if members and any(member is entity for member in members):
                    return True
        return any(
            isinstance(owner, link.model) and entity in (self._members(owner, link) or ())
            for owner in self.pending
        )

    def _sync_keys(self, new: list[Any], doomed: dict[int, Any]) -> None:
        """Set foreign keys from relationships, as a flush does before its statements.

        First what lets go (taken out of a collection, or a removed parent's
        children), then what holds (added to a collection, or assigned), so a
        part moved between parents ends with its new parent's key.
        """
        owners = [e for e in self.objects.values() if id(e) not in doomed]
        for entity in [*owners, *new]:
            for link in self.store.table(type(entity)).links:
                if link.one_to_many and not link.viewonly and not link.delete_orphan:
                    for other in self._dropped(entity, link):
                        if not self._gone(other) and id(other) not in doomed:
                            _set_key(other, link, None)
        self._release_children(doomed)
        new_ids = {id(entity) for entity in new}
        for entity in [*owners, *new]:
            for link in self.store.table(type(entity)).links:
                if not (link.viewonly or link.many_to_many):
                    self._hold(entity, link, doomed, fresh=id(entity) in new_ids)

    def _release_children(self, doomed: dict[int, Any]) -> None:
        """The parts of removed objects, not removed along, let go of them (as SQL does)."""
        for entity in doomed.values():
            for link in self.store.table(type(entity)).links:
                if link.one_to_many and not (link.viewonly or link.delete or link.passive_deletes):
                    values = [getattr(entity, source) for source, _ in link.pairs]
                    for other in self._members(entity, link, load=True) or ():
                        held = [getattr(other, dest) for _, dest in link.pairs]
                        if id(other) not in doomed and held == values:
                            _set_key(other, link, None)

    def _hold(self, entity: Any, link: Link, doomed: dict[int, Any], *, fresh: bool) -> None:
        """Give the keys of what ``entity`` holds through ``link`` now, where it changed."""
        now = self._members(entity, link)
        if now is None:
            return
        before = () if fresh else self._before(entity, link)
        if link.one_to_many:
            held = _ids(before)
            for other in now:
                if id(other) not in held and id(other) not in doomed:
                    _set_key(other, link, entity)
        elif fresh or _ids(now) != _ids(before):
            parent = now[0] if now else None
            for source, dest in link.pairs:
                setattr(entity, dest, None if parent is None else getattr(parent, source))

    def _pairs(self, new: list[Any], doomed: dict[int, Any]) -> dict[Any, dict[Any, Row | None]]:
        """The rows of secondary tables to write: added pairs, and removed ones (None)."""
        writes: dict[Any, dict[Any, Row | None]] = {}
        new_ids = {id(entity) for entity in new}
        for entity in [*self.objects.values(), *new, *doomed.values()]:
            for link in self.store.table(type(entity)).links:
                if not link.many_to_many or link.viewonly:
                    continue
                gone = id(entity) in doomed
                now = self._members(entity, link, load=gone)
                if now is None:
                    continue
                if gone:
                    now = ()
                before = () if id(entity) in new_ids else self._before(entity, link)
                held = {id(other) for other in now}
                had = {id(other) for other in before}
                secondary = self.store.secondary(link.secondary)  # type: ignore[arg-type]
                table_writes = writes.setdefault(link.secondary, {})
                for other in before:
                    if id(other) not in held:
                        row = _pair_row(link, entity, other)
                        table_writes.setdefault(secondary.key(row), None)
                for other in now:
                    if id(other) not in had:
                        row = _pair_row(link, entity, other)
                        table_writes[secondary.key(row)] = row
        return {table: rows for table, rows in writes.items() if rows}

    def _parents(self, entity: Any, rows: tuple[Row | None, Row | None]) -> Iterator[Any]:
        """The objects that hold ``entity`` as a part, before and after this flush."""
        for link in owners_of(type(entity)):
            owner = model_info(link.model)
            for row in rows:
                if row is None:
                    continue
                values = tuple(row[dest] for dest in link.dests)
                if None in values:
                    continue
                for key, found in self._rows_where(
                    owner.model, owner.key_names, link.sources, values
                ):
                    yield self._object(owner, key, found)
            if link.reverse is not None:
                yield from self._members(entity, link_of(type(entity), link.reverse)) or ()

    def _roots(self, seeds: list[tuple[Any, Row | None, Row | None]]) -> set[int]:
        """The guarded aggregate roots whose parts ``seeds`` (object, before, after) are."""
        roots: set[int] = set()
        seen: set[int] = set()
        queue: list[Any] = []
        for entity, before, after in seeds:  # a seed's parents: by its rows before and after
            seen.add(id(entity))
            if self.store.table(type(entity)).guarded:
                roots.add(id(entity))
            queue.extend(self._parents(entity, (before, after)))
        while queue:  # their parents: by the rows stored
            entity = queue.pop()
            if id(entity) in seen:
                continue
            seen.add(id(entity))
            if self.store.table(type(entity)).guarded:
                roots.add(id(entity))
            queue.extend(self._parents(entity, (self.flushed.get(id(entity)), None)))
        return roots

    # -- writing -----------------------------------------------------------------------

    def add(self, info: ModelInfo, entities: Iterable[Any]) -> None:
        """Insert new entities (all checked first), as a flush of pending objects does.

        A refused insert leaves every entity of the call as it was given.
        """
        items = list(entities)
        for entity in items:
            info.check_entity(entity, "add")
            if id(entity) in self.removed or id(entity) in self.deleted:
                info.refuse_removed(entity)
            if id(entity) not in self.flushed and self.store.issued(entity):
                info.refuse_not_new(entity)
        table = self.store.table(info.model)
        filled: list[tuple[Any, dict[str, Any]]] = []
        try:
            queued = {id(entity) for entity in self.pending}
            for entity in items:
                if id(entity) in self.flushed or id(entity) in queued:
                    continue  # added or loaded already: a no-op, as session.add is
                queued.add(id(entity))
                filled.append((entity, table.fill(entity, self.store)))
                self.pending.append(entity)
            self.flush()
        except ButtressError:
            self.pending.clear()
            for entity, before in filled:
                for name, value in before.items():
                    setattr(entity, name, value)
            raise

    def _insert(self, table: _Table, entity: Any) -> Row:
        info = table.info
        key = info.key_of(entity)
        self.store.note_key(info.model, key)
        row = _row_of(table, entity)
        self._check_required(table, row)
        if key in self.current(info.model) or (info.model, key) in self.objects:
            raise self.tracker.fail(ConflictError(entity=info.name, key=key))
        self._check_unique(table, key, row)
        self._write(info.model, key, row, None)
        self.objects[info.model, key] = entity
        self.flushed[id(entity)] = row
        self.new.add(id(entity))
        self.store.issue(entity)
        if table.links:
            self._expect_loads(entity, table)
        return row

    def upsert(self, info: ModelInfo, entity: Any, key: Any) -> Any:
        """Write ``entity``'s row under ``key``, as ``INSERT ... ON CONFLICT DO UPDATE`` does.

        Without a row of that key the row is inserted; with one, every non-key field
        is written over it. A field left None takes its default (as on insert), and
        on update its Python-side onupdate instead. ``entity`` itself is not changed.

        Returns:
            The object of the identity map with that key, holding the written row:
            the one loaded (refreshed), or a new one.
        """
        self.flush()
        model = info.model
        table = self.store.table(model)
        stored = self.current(model).get(key)
        row = _row_of(table, entity)
        for name, default in table.defaults.items():
            if row[name] is not None:
                continue
            if default is None or not (default.is_scalar or default.is_callable):
                raise ConfigurationError(
                    f"{info.name}.{name} is missing and its default is computed by the "
                    "database, which the in-memory repositories cannot do: set it before upsert()"
                )
            row[name] = _own(default.arg(None) if default.is_callable else default.arg)
        if stored is not None:  # the UPDATE of ON CONFLICT: onupdate for fields left None
            for name, update in table.on_update.items():
                if getattr(entity, name) is None:
                    row[name] = _own(update.arg(None) if update.is_callable else update.arg)
        self._check_required(table, row)
        self._check_unique(table, key, row)
        self._check_references(table, row)
        self.store.note_key(model, key)
        self._write(model, key, row, None)  # SET names every non-key column
        found = self.objects.get((model, key))
        if found is None:
            found = self._object(info, key, row)
            if stored is None:
                self.new.add(id(found))  # inserted here: gone again on rollback
        else:
            _load(found, row)
            self.flushed[id(found)] = row
        return found

    def remove(self, info: ModelInfo, entity: Any) -> None:
        """Delete an entity of this transaction's identity map (and what it cascades to)."""
        info.check_entity(entity, "remove")
        if id(entity) not in self.flushed:
            raise QueryError(
                f"cannot remove {entity!r}: it was not loaded or added through this unit of "
                "work; load it with get() first"
            )
        self.doomed[id(entity)] = entity
        self.flush()

    def flush(self, *, committing: bool = False) -> None:
        """Write every change: new objects, changed rows, removals, secondary pairs.

        Foreign keys are checked once all rows are written, as they hold at the
        end of SQL's ordered statements.
        """
        if self.flushing or not (self.objects or self.pending or self.doomed or committing):
            return  # nothing loaded or added: nothing to write
        self.flushing = True
        try:
            self._flush(committing=committing)
        finally:
            self.flushing = False

    def _flush(self, *, committing: bool) -> None:
        pending, self.pending = self.pending, []
        doomed, self.doomed = self.doomed, {}
        linked = self.store.linked
        if linked:
            new = self._cascade_new(pending)
            doomed = self._cascade_removal(doomed)
            self._sync_keys(new, doomed)
            pairs = self._pairs(new, doomed)
        else:
            new, pairs = pending, {}
        updates, seeds = self._changed(doomed, linked=linked)
        if committing or new or doomed or pairs or updates:
            seeds += self._recorded()
        roots: set[int] = set()
        if seeds or new or doomed:
            roots = self._bumped(seeds, new, doomed, updates)
        written: list[tuple[Any, Row]] = []
        removed: list[tuple[Any, Row]] = []
        replaced = {
            (type(entity), self.store.table(type(entity)).info.key_of(entity)): entity
            for entity in doomed.values()
        }
        for entity in new:
            table = self.store.table(type(entity))
            old = replaced.pop((type(entity), table.info.key_of(entity)), None) if doomed else None
            if old is None:
                written.append((table, self._insert(table, entity)))
            else:  # removed and added under one key: SQL's "row switch", an UPDATE
                del doomed[id(old)]
                written.append((table, self._switch(table, entity, old)))
        for key, entity, table, last in updates:
            bump = id(entity) in roots
            if bump or _row_of(table, entity) != last:
                written.append((table, self._update(table, key, entity, last, bump=bump)))
        removed += [self._delete(entity) for entity in doomed.values()]
        self._write_pairs(pairs, written, removed)
        for table, row in written:
            self._check_references(table, row)
        for table, row in removed:
            self._check_referrers(table, row)
        if linked:
            self._remember_links()

    def _changed(
        self, doomed: dict[int, Any], *, linked: bool
    ) -> tuple[list[tuple[Any, Any, _Table, Row]], list[tuple[Any, Row | None, Row | None]]]:
        """The loaded objects whose row or relationships changed, as updates and as seeds."""
        updates = []
        seeds: list[tuple[Any, Row | None, Row | None]] = []
        for (model, key), entity in list(self.objects.items()):
            if id(entity) in doomed:
                continue
            table = self.store.table(model)
            last = self.flushed[id(entity)]
            row = _row_of(table, entity)
            moved = linked and any(
                self._members(entity, link) is not None
                and _ids(self._members(entity, link)) != _ids(self._before(entity, link))
                for link in table.links
                if not link.viewonly
            )
            if row != last or moved:
                updates.append((key, entity, table, last))
                seeds.append((entity, last, row))
        return updates, seeds

    def _recorded(self) -> list[tuple[Any, Row | None, Row | None]]:
        """The aggregates that recorded events since the last flush that wrote."""
        seeds: list[tuple[Any, Row | None, Row | None]] = []
        if event_clock() == self.clock:
            return seeds  # no aggregate recorded anything since the last count
        self.clock = event_clock()
        counted = self.counted
        for aggregate in self.tracker.aggregates():
            events = event_count(aggregate)
            if events > counted.get(id(aggregate), 0):
                seeds.append((aggregate, None, None))
                counted[id(aggregate)] = events
        return seeds

    def _bumped(
        self,
        seeds: list[tuple[Any, Row | None, Row | None]],
        new: list[Any],
        doomed: dict[int, Any],
        updates: list[tuple[Any, Any, _Table, Row]],
    ) -> set[int]:
        """The guarded roots this flush bumps; those unchanged join ``updates``."""
        seeds += [(entity, None, _row_of(self.store.table(type(entity)), entity)) for entity in new]
        seeds += [(entity, self.flushed[id(entity)], None) for entity in doomed.values()]
        roots = self._roots(seeds) - {id(entity) for entity in new} - set(doomed)
        known = {id(update[1]) for update in updates}
        for (model, key), entity in list(self.objects.items()):
            if id(entity) in roots and id(entity) not in known:
                updates.append((key, entity, self.store.table(model), self.flushed[id(entity)]))
        return roots

    def _write_pairs(
        self,
        pairs: dict[Any, dict[Any, Row | None]],
        written: list[tuple[Any, Row]],
        removed: list[tuple[Any, Row]],
    ) -> None:
        """Write the pairs of secondary tables: new ones inserted, dropped ones deleted."""
        for secondary, rows in pairs.items():
            table = self.store.secondary(secondary)
            current = self.current(secondary)
            for key, row in rows.items():
                if row is None:
                    if key in current:
                        removed.append((table, current[key]))
                        self._write(secondary, key, _DELETED, None)
                elif key not in current:
                    self._write(secondary, key, row, None)
                    written.append((table, row))

    def _update(self, table: _Table, key: Any, entity: Any, last: Row, *, bump: bool) -> Row:
        """Write ``entity``'s changed row, with its next version (``bump``: even unchanged)."""
        row = _row_of(table, entity)
        info = table.info
        if info.key_of(entity) != key:
            raise ConfigurationError(
                f"the key of {entity!r} was changed; the in-memory repositories cannot "
                "move an entity to another key: remove it and add a new one"
            )
        self._check_version(table, key, last)
        if row != last:
            for name, default in table.on_update.items():
                if row[name] == last[name]:  # not set by the caller: the UPDATE sets it
                    value = default.arg(None) if default.is_callable else default.arg
                    setattr(entity, name, value)
                    row[name] = _own(value)
        version = table.version
        # A version the application set is written as it is, as SQL writes it.
        if version is not None and row[version] == last[version]:
            if not table.assigned_version:
                new_version = table.mapper.version_id_generator(last[version])
            elif bump and type(last[version]) is int:
                new_version = last[version] + 1
            else:
                new_version = last[version]
            setattr(entity, version, new_version)
            row[version] = new_version
        changed = {name for name, value in row.items() if last.get(name, _UNSET) != value}
        self._check_required(table, row)
        self._check_unique(table, key, row, changed=changed)
        self._write(info.model, key, row, last)
        self.flushed[id(entity)] = row
        return row

    def _switch(self, table: _Table, entity: Any, old: Any) -> Row:
        """Store new ``entity`` over the row of ``old``, removed in the same flush."""
        info = table.info
        key = info.key_of(entity)
        last = self.flushed.pop(id(old))
        self._check_version(table, key, last)
        row = _row_of(table, entity)
        version = table.version
        if version is not None and not table.assigned_version:
            setattr(entity, version, table.mapper.version_id_generator(last[version]))
            row[version] = getattr(entity, version)
        self._check_required(table, row)
        self._check_unique(table, key, row)
        self._write(info.model, key, row, last)
        self.objects[info.model, key] = entity
        self.flushed[id(entity)] = row
        self.new.add(id(entity))
        self.new.discard(id(old))
        self.removed[id(old)] = ((info.model, key), old)
        self.store.issue(entity)
        if table.links:
            self._expect_loads(entity, table)
        return row

    def _delete(self, entity: Any) -> tuple[_Table, Row]:
        table = self.store.table(type(entity))
        info = table.info
        key = info.key_of(entity)
        last = self.flushed[id(entity)]
        if table.version is not None or key in self.current(info.model):
            # an unversioned row someone else removed: DELETE matches nothing, as in SQL
            self._check_version(table, key, last)
        self._write(info.model, key, _DELETED, None)
        del self.objects[info.model, key]
        del self.flushed[id(entity)]
        self.new.discard(id(entity))
        self.removed[id(entity)] = ((info.model, key), entity)
        return table, last

    def _remember_links(self) -> None:
        """Note every loaded relationship's objects: the next flush compares with them."""
        links = self.links
        for entity in self.objects.values():
            for link in self.store.table(type(entity)).links:
                now = self._members(entity, link)
                if now is not None:
                    links[id(entity), link.key] = now

    def _write(self, model: type[Any], key: Any, row: Row | None, previous: Row | None) -> None:
        """Record ``row`` (None: deleted) for ``key``; ``previous`` is the row it replaces.

        The fields that differ from ``previous``, the row this transaction read or
        wrote last, are the ones an UPDATE sets, and the only ones commit writes
        over what other units committed meanwhile.
        """
        changes = self.changes.setdefault(model, {})
        change = changes.get(key)
        base = self.store.rows(model).get(key) if change is None else change.base
        fields = change.fields if change is not None else frozenset()
        if row is not None:
            fields |= {
                name
                for name, value in row.items()
                if previous is None or previous.get(name, _UNSET) != value
            }
        changes[key] = _Change(base, row, fields)

    def _check_version(self, table: _Table, key: Any, last: Row) -> None:
        """Refuse to write over a row another unit changed or removed since it was read."""
        stored = self.current(table.info.model).get(key)
        if stored is None or (
            table.version is not None and stored[table.version] != last[table.version]
        ):
            raise self.tracker.fail(_stale(table.info, key))

    def _check_references(
        self,
        table: _Table | _Secondary,
        row: Row,
        rows: Callable[[type[Any]], dict[Any, Row]] | None = None,
    ) -> None:
        """Refuse a row whose foreign key names a row that does not exist.

        ``rows`` reads a model's rows (default: as this transaction sees them).
        """
        rows = rows or self.current
        for reference in table.references:
            values = reference.values(row)
            if values is None:
                continue
            self.store.table(reference.target)
            if not any(
                tuple(target[name] for name in reference.target_fields) == values
                for target in rows(reference.target).values()
            ):
                raise self.tracker.fail(_dangling(table, reference, values))

    def _check_referrers(
        self,
        table: _Table | _Secondary,
        row: Row,
        rows: Callable[[type[Any]], dict[Any, Row]] | None = None,
    ) -> None:
        """Refuse to remove a row that rows of another model still refer to."""
        rows = rows or self.current
        for other in self.store.holders():
            for reference in other.references:
                if reference.target is not table.info.model:
                    continue
                values = tuple(row[name] for name in reference.target_fields)
                if any(reference.values(r) == values for r in rows(other.info.model).values()):
                    raise self.tracker.fail(_referred(table, reference))

    def _check_required(self, table: _Table, row: Row) -> None:
        for name in table.required:
            if row.get(name) is None:
                raise self.tracker.fail(
                    ConflictError(
                        f"writing {table.info.name} violates a constraint of the stored data: "
                        f"{name} cannot be NULL; give it a value",
                        entity=table.info.name,
                    )
                )

    def _check_unique(
        self,
        table: _Table | _Secondary,
        key: Any,
        row: Row,
        rows: dict[Any, Row] | None = None,
        changed: set[str] | None = None,
    ) -> None:
        if not table.uniques:
            return
        current = self.current(table.info.model) if rows is None else rows
        for names in table.uniques:
            if changed is not None and changed.isdisjoint(names):
                continue  # an UPDATE that leaves these fields alone cannot break them
            values = tuple(row[name] for name in names)
            if None in values:
                continue  # NULLs never clash, in SQL either
            for other_key, other in current.items():
                if other_key != key and tuple(other[name] for name in names) == values:
                    raise self.tracker.fail(
                        ConflictError(
                            f"writing {table.info.name} violates a constraint of the stored "
                            f"data: another {table.info.name} has {', '.join(names)} = "
                            f"{values if len(values) > 1 else values[0]!r}; choose another value",
                            entity=table.info.name,
                            key=key,
                        )
                    )

    # -- ending ------------------------------------------------------------------------

    def commit(self, outbox: OutboxWriter | None = None) -> list[Any]:
        """Apply this transaction's changes to the store, all or none of them.

        With ``outbox``, the events of the aggregates the unit saw are pulled
        after the last flush and written as its rows with the changes; they are
        returned (as `Tracker.pull_sourced` gives them) for the unit's queue.

        Raises:
            ConflictError: Another unit committed a row with the same key or unique value.
            ConcurrencyError: Another unit changed or removed a row this one changed.
        """
        self.flush(committing=True)
        self.counted.clear()  # the events move on with the commit
        pulled = self.tracker.pull_sourced() if outbox is not None else []
        rows = outbox_rows(outbox, pulled) if pulled else []
        name = outbox.table.name if outbox is not None else ""
        store = self.store
        with store._lock:  # noqa: SLF001 - the store and its transactions are one unit
            tables = {
                model: self._merged(store.kept(model), dict(store.rows(model)), changes)
                for model, changes in self.changes.items()
            }
            self._check_links(tables)
            ids = self._outbox_ids(store, name, rows)
            store._rows.update(tables)  # noqa: SLF001
            if rows:
                written = store._outboxes.setdefault(name, [])  # noqa: SLF001
                first = store._outbox_next.get(name, 1)  # noqa: SLF001
                written.extend({**row, "id": first + n} for n, row in enumerate(rows))
                store._outbox_next[name] = first + len(rows)  # noqa: SLF001
                store._outbox_ids.setdefault(name, set()).update(ids)  # noqa: SLF001
        self.changes.clear()
        self.new.clear()
        self.deleted.update(self.removed)
        self.removed.clear()
        return pulled

    def _outbox_ids(self, store: InMemoryStore, name: str, rows: list[Row]) -> set[Any]:
        """The message ids of ``rows``, refused when one is taken (as the unique index does)."""
        taken = store._outbox_ids.get(name, set())  # noqa: SLF001
        ids: set[Any] = set()
        for row in rows:
            message_id = row["message_id"]
            if message_id in taken or message_id in ids:
                raise self.tracker.fail(
                    ConflictError(
                        f"writing the outbox {name} violates a constraint of the stored data: "
                        f"the message id {message_id} is taken (an event recorded on two "
                        "aggregates? record a new event on each)",
                        entity=name,
                        key=message_id,
                    )
                )
            ids.add(message_id)
        return ids

    def _merged(
        self, table: _Table | _Secondary, rows: dict[Any, Row], changes: dict[Any, _Change]
    ) -> dict[Any, Row]:
        """``rows`` with ``changes`` applied, checked against what others committed.

        Unique values are checked once every change is applied, as a database checks
        them at the end of the transaction's statements: a row may take a value
        another row of this transaction gave up, whatever the order of the changes.
        """
        written: list[Any] = []
        for key, change in changes.items():
            stored = rows.get(key)
            base, row = change.base, change.row
            if base is None:
                if row is None:
                    continue  # added and removed in this transaction
                if stored is not None:
                    raise self.tracker.fail(ConflictError(entity=table.info.name, key=key))
            elif stored is None:
                if row is None and table.version is None:
                    continue  # removed by someone else too: DELETE matches nothing, as in SQL
                raise self.tracker.fail(_stale(table.info, key))
            elif table.version is not None and stored[table.version] != base[table.version]:
                raise self.tracker.fail(_stale(table.info, key))
            if row is None:
                rows.pop(key, None)
                continue
            if stored is not None:  # only the fields this transaction changed, as UPDATE does
                row = {**stored, **{name: row[name] for name in change.fields}}
            rows[key] = row
            written.append(key)
        for key in written:
            self._check_unique(table, key, rows[key], rows)
        return rows

    def _check_links(self, tables: dict[type[Any], dict[Any, Row]]) -> None:
        """Check this transaction's foreign keys again against what others committed."""

        def rows(model: type[Any]) -> dict[Any, Row]:
            found = tables.get(model)
            return self.store.rows(model) if found is None else found

        for model, changes in self.changes.items():
            table = self.store.kept(model)
            for key, change in changes.items():
                if change.row is not None:
                    self._check_references(table, rows(model)[key], rows)
                elif change.base is not None:
                    self._check_referrers(table, change.base, rows)

    def rollback(self) -> None:
        """Forget this transaction's changes; loaded objects get their stored values back."""
        self.changes.clear()
        self.pending.clear()
        self.doomed.clear()
        self.counted.clear()
        for key in [key for key, entity in self.objects.items() if id(entity) in self.new]:
            entity = self.objects.pop(key)
            del self.flushed[id(entity)]
            _forget_loads(entity)
        self.new.clear()
        for identity, entity in self.removed.values():  # a removal undone: loaded again
            self.objects[identity] = entity
            self.flushed[id(entity)] = {}
        self.removed.clear()
        self._restore(self.objects)
        self.savepoints.clear()

    def _restore(self, objects: dict[tuple[type[Any], Any], Any]) -> None:
        for (model, key), entity in list(objects.items()):
            row = self.current(model).get(key)
            if row is None:
                del self.objects[model, key]
                del self.flushed[id(entity)]
                continue
            _load(entity, row)
            self.flushed[id(entity)] = row
            table = self.store.table(model)
            if table.links:  # relationships load again, as after SQL's expire
                state = attributes.instance_state(entity)
                for link in table.links:
                    state.dict.pop(link.key, None)
                    state.committed_state.pop(link.key, None)
                    state._pending_mutations.pop(link.key, None)  # noqa: SLF001
                self._expect_loads(entity, table)
        self.links.clear()

    def begin_savepoint(self) -> None:
        """Remember the state a savepoint rolls back to."""
        self.flush()
        self.savepoints.append(
            (
                {model: dict(changes) for model, changes in self.changes.items()},
                dict(self.objects),
                dict(self.flushed),
                set(self.new),
                dict(self.removed),
            )
        )

    def release_savepoint(self) -> None:
        """Keep the savepoint's work."""
        self.flush()
        self.savepoints.pop()

    def rollback_savepoint(self) -> None:
        """Undo the savepoint's work: rows, added objects and changed values.

        Objects loaded inside the savepoint stay in the identity map (with their
        stored values), as SQLAlchemy keeps them in the session.
        """
        changes, objects, flushed, new, removed = self.savepoints.pop()
        self.counted.clear()  # events are counted again, as after SQL's savepoint rollback
        added_inside = self.new - new
        kept = dict(objects)
        loaded_inside = [
            *self.objects.items(),
            *(pair for eid, pair in self.removed.items() if eid not in removed),
        ]
        for identity, entity in loaded_inside:
            if identity not in kept and id(entity) not in added_inside:
                kept[identity] = entity
        self.changes = changes
        for entity in self.objects.values():
            if id(entity) in added_inside:
                _forget_loads(entity)
        self.objects = kept
        self.flushed = {id(entity): flushed.get(id(entity), {}) for entity in kept.values()}
        self.new = new
        self.removed = removed
        self._restore(kept)

    def discarded(self) -> tuple[int, int, int]:
        """What ending now would throw away: new, changed and removed rows (for DEBUG logs)."""
        new = changed = removed = 0
        for changes in self.changes.values():
            for change in changes.values():
                if change.row is _DELETED:
                    removed += change.base is not None  # added, then removed: nothing lost
                elif change.base is None:
                    new += 1
                else:
                    changed += 1
        for (model, key), entity in self.objects.items():
            written = self.changes.get(model, {}).get(key)
            if written is None and _row_of(self.store.table(model), entity) != self.flushed.get(
                id(entity)
            ):
                changed += 1  # changed in place, not flushed yet
        return new, changed, removed

    def close(self) -> None:
        """Forget everything: the block ended (entities keep the values they have)."""
        self.changes.clear()
        self.objects.clear()
        self.flushed.clear()
        self.new.clear()
        self.removed.clear()
        self.savepoints.clear()
        self.pending.clear()
        self.doomed.clear()
        self.links.clear()
        self.counted.clear()


def _ids(objects: Iterable[Any] | None) -> frozenset[int]:
    """The identities of ``objects``: what a relationship holds, whatever the order."""
    return frozenset(id(item) for item in objects or ())


def _set_key(part: Any, link: Link, owner: Any) -> None:
    """Point ``part``'s foreign key of one-to-many ``link`` at ``owner`` (None: nothing)."""
    for source, dest in link.pairs:
        setattr(part, dest, None if owner is None else getattr(owner, source))


def _load_link(link: Link, state: Any, passive: Any) -> Any:
    """The lazy loader of ``link``: loads it from the transaction that loaded the object."""
    transaction: Transaction = state.info[_LOADER]
    return transaction.load_link(link, state, passive)


def _forget_loads(entity: Any) -> None:
    """Drop the loaders of an object whose insert was undone: it is new again."""
    state = attributes.instance_state(entity)
    if state.callables:
        state.callables = {}


def _pair_row(link: Link, entity: Any, other: Any) -> Row:
    """The secondary table's row pairing ``entity`` with ``other`` through ``link``."""
    row = {column: getattr(entity, source) for source, column in link.pairs}
    row.update({column: getattr(other, source) for source, column in link.target_pairs})
    return row


_UNSET: Final = object()


class _View:
    """A stored row read through attributes, as specifications and sorting read entities.

    A relationship's name reads the related rows (views too), as stored now.
    """

    __slots__ = ("key_", "model_", "row_", "unit_")

    def __init__(self, unit: Transaction, model: type[Any], key: Any, row: Row) -> None:
        self.unit_ = unit
        self.model_ = model
        self.key_ = key
        self.row_ = row

    def __getattr__(self, name: str) -> Any:
        row = self.row_
        if name in row:
            return row[name]
        try:
            link = link_of(self.model_, name)
        except KeyError:
            raise AttributeError(name) from None
        views = [
            _View(self.unit_, link.target, key, found)
            for key, found in self.unit_.related_rows(row, link)
        ]
        if link.uselist:
            return views
        return views[0] if views else None


_IMMUTABLE: Final = (
    str,
    int,
    float,
    bool,
    bytes,
    decimal.Decimal,
    dt.date,
    dt.time,
    dt.timedelta,
    uuid.UUID,
    enum.Enum,
    type(None),
)


def _python_type(column: Any) -> type[Any] | None:
    """The Python type of ``column``'s values, None when its type does not say."""
    try:
        found: type[Any] = column.type.python_type
    except NotImplementedError:
        return None
    return found


def _own(value: Any) -> Any:
    """``value``, or a deep copy of it when it can change in place (a dict, a list ...).

    Rows never share a mutable value with an entity, as a database shares nothing
    with the objects it loads: changing a dict in place changes the store only
    through a flush, and a rollback undoes it.
    """
    return value if isinstance(value, _IMMUTABLE) else copy.deepcopy(value)


def _row_of(table: _Table, entity: Any) -> Row:
    return {prop.key: _own(getattr(entity, prop.key)) for prop in table.mapper.column_attrs}


def _load(entity: Any, row: Row) -> None:
    """Set ``entity``'s attributes to ``row``'s values, as a load from the database does."""
    for name, value in row.items():
        attributes.set_committed_value(entity, name, _own(value))


def _dangling(
    table: _Table | _Secondary, reference: _Reference, values: tuple[Any, ...]
) -> ConflictError:
    return ConflictError(
        f"writing {table.info.name} violates a constraint of the stored data: its foreign "
        f"key {reference.text} names {values!r}, which is not stored; store that first",
        entity=table.info.name,
    )


def _referred(table: _Table | _Secondary, reference: _Reference) -> ConflictError:
    return ConflictError(
        f"removing {table.info.name} violates a constraint of the stored data: "
        f"{reference.text} still refers to it; remove those first",
        entity=table.info.name,
    )


def _stale(info: ModelInfo | _Named, key: Any) -> ConcurrencyError:
    return ConcurrencyError(entity=info.name, key=key)


def page_of(
    transaction: Transaction,
    *,
    info: ModelInfo,
    spec: Specification | None,
    order_by: str | Sequence[str],
    size: int,
    after: str | None,
    load: object = (),
) -> Page[Any]:
    """One keyset page, as the SQL repositories compute it."""
    check_size(size)
    paths = check_load(info.model, load)
    pairs = info.order(order_by)
    transaction.check_spec(info, spec)
    secret = transaction.tracker.secret
    values = None if after is None else decode_cursor(info.model, pairs, after, secret=secret)
    items = transaction.select(info, spec, pairs, values, slice(size + 1))
    if paths:
        transaction.load(items[:size], paths)
    if len(items) <= size:
        return Page(items, None)
    del items[size:]
    return Page(
        items, encode_cursor(info.model, pairs, info.values_of(items[-1], pairs), secret=secret)
    )


def find_in(
    transaction: Transaction,
    *,
    info: ModelInfo,
    spec: Specification | None,
    order_by: str | Sequence[str],
    limit: int | None,
    offset: int,
    load: object = (),
) -> list[Any]:
    """The entities ``find`` returns, as the SQL repositories compute them."""
    check_window(limit, offset)
    paths = check_load(info.model, load)
    pairs = info.order(order_by)
    transaction.check_spec(info, spec)
    end = None if limit is None else offset + limit
    found = transaction.select(info, spec, pairs, window=slice(offset, end))
    if paths:
        transaction.load(found, paths)
    return found
