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
import threading
import uuid
import weakref
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy.orm import attributes

from buttress.errors import (
    ButtressError,
    ConcurrencyError,
    ConfigurationError,
    ConflictError,
    QueryError,
)
from buttress.persistence._cursor import decode_cursor, encode_cursor
from buttress.persistence._model import ModelInfo, Tracker, check_size, check_window, model_info
from buttress.persistence._protocols import Page
from buttress.persistence._query import after_in_python, sort_in_python, where

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from buttress.domain import Specification

__all__ = ["InMemoryStore", "Transaction"]

Row = dict[str, Any]
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
        "info",
        "mapper",
        "on_update",
        "references",
        "required",
        "uniques",
        "version",
    )

    def __init__(self, model: type[Any]) -> None:
        info = model_info(model)
        mapper = sa.inspect(model)
        if mapper.relationships:
            raise ConfigurationError(
                f"the in-memory repositories store column attributes only, and {info.name} maps "
                f"relationships ({', '.join(mapper.relationships.keys())}); test it against "
                "SQLite instead (SqlAlchemyUnitOfWork on sqlite:///:memory:)"
            )
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
        self.references = [
            _Reference(info.name, mapper, fk) for fk in table.foreign_key_constraints
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

    def __init__(self, name: str, mapper: Any, constraint: sa.ForeignKeyConstraint) -> None:
        for action in (constraint.ondelete, constraint.onupdate):
            if action is not None and action.upper() not in {"NO ACTION", "RESTRICT"}:
                raise ConfigurationError(
                    f"{name} has a foreign key with ON DELETE/UPDATE {action}, which the "
                    "in-memory repositories cannot carry out; test it against SQLite with "
                    "PRAGMA foreign_keys=ON instead"
                )
        by_column = {prop.columns[0]: prop.key for prop in mapper.column_attrs}
        self.fields = tuple(by_column[element.parent] for element in constraint.elements)
        target_table = constraint.referred_table
        targets = [m for m in mapper.registry.mappers if m.local_table is target_table]
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


class InMemoryStore:
    """The data several in-memory units of work share, as a database would hold it.

    Pass one store to several `InMemoryUnitOfWork` (or async) instances to have
    them see each other's commits.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[type[Any], dict[Any, Row]] = {}
        self._tables: dict[type[Any], _Table] = {}
        self._sequences: dict[type[Any], int] = {}
        # every entity handed out, by id; weak, so entities die when users drop them
        self._issued: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()

    def table(self, model: type[Any]) -> _Table:
        """What the store enforces for ``model``, read from its metadata once."""
        table = self._tables.get(model)
        if table is None:
            table = self._tables[model] = _Table(model)
        return table

    def issue(self, entity: Any) -> None:
        """Remember that ``entity`` came from this store (loaded or added)."""
        self._issued[id(entity)] = entity

    def issued(self, entity: Any) -> bool:
        """Whether ``entity`` was loaded from or added to this store before."""
        return self._issued.get(id(entity)) is entity

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

    def __init__(self, store: InMemoryStore, tracker: Tracker) -> None:
        self.store = store
        self.tracker = tracker
        self.changes: dict[type[Any], dict[Any, _Change]] = {}
        self.objects: dict[tuple[type[Any], Any], Any] = {}  # identity map
        self.flushed: dict[int, Row] = {}  # id(object) -> the row last written or read
        self.new: set[int] = set()  # objects added in this transaction
        # objects removed in this transaction, kept alive so their ids stay theirs
        self.removed: dict[int, tuple[tuple[type[Any], Any], Any]] = {}
        self.deleted: dict[int, Any] = {}  # ... and those whose removal was committed
        self.savepoints: list[tuple[Any, ...]] = []

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
        entity = self.store.table(info.model).mapper.class_manager.new_instance()
        _load(entity, row)
        self.store.issue(entity)
        self.objects[info.model, key] = entity
        self.flushed[id(entity)] = row
        return entity

    def get(self, info: ModelInfo, key: Any) -> Any:
        """The entity with ``key``, from the identity map first."""
        key = info.check_key(key)
        found = self.objects.get((info.model, key))
        if found is not None:
            return found
        self.flush()
        row = self.current(info.model).get(key)
        return None if row is None else self._object(info, key, row)

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
        views = [_View(key, row) for key, row in self.current(info.model).items()]
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
        return sum(1 for key, row in rows if spec.is_satisfied_by(_View(key, row)))

    def check_spec(self, info: ModelInfo, spec: Specification | None) -> None:
        """Make the checks the SQL repositories make when they compile ``spec``."""
        if spec is not None:
            where(spec, info.model)  # the same field and value checks as SQL, clause discarded

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
            for entity in items:
                if id(entity) in self.flushed:
                    continue  # added or loaded already: a no-op, as session.add is
                filled.append((entity, table.fill(entity, self.store)))
                self._insert(table, entity)
            self.flush()
        except ButtressError:
            for entity, before in filled:
                for name, value in before.items():
                    setattr(entity, name, value)
            raise

    def _insert(self, table: _Table, entity: Any) -> None:
        info = table.info
        key = info.key_of(entity)
        self.store.note_key(info.model, key)
        row = _row_of(table, entity)
        self._check_required(table, row)
        if key in self.current(info.model) or (info.model, key) in self.objects:
            raise self.tracker.fail(ConflictError(entity=info.name, key=key))
        self._check_unique(table, key, row)
        self._check_references(table, row)
        self._write(info.model, key, row, None)
        self.objects[info.model, key] = entity
        self.flushed[id(entity)] = row
        self.new.add(id(entity))
        self.store.issue(entity)

    def remove(self, info: ModelInfo, entity: Any) -> None:
        """Delete an entity of this transaction's identity map."""
        info.check_entity(entity, "remove")
        if id(entity) not in self.flushed:
            raise QueryError(
                f"cannot remove {entity!r}: it was not loaded or added through this unit of "
                "work; load it with get() first"
            )
        self.flush()
        table = self.store.table(info.model)
        key = info.key_of(entity)
        if table.version is not None or key in self.current(info.model):
            # an unversioned row someone else removed: DELETE matches nothing, as in SQL
            self._check_version(table, key, self.flushed[id(entity)])
        self._check_referrers(table, self.flushed[id(entity)])
        self._write(info.model, key, _DELETED, None)
        del self.objects[info.model, key]
        del self.flushed[id(entity)]
        self.new.discard(id(entity))
        self.removed[id(entity)] = ((info.model, key), entity)

    def flush(self) -> None:
        """Write every changed object's row, checking versions and unique values."""
        for (model, key), entity in list(self.objects.items()):
            last = self.flushed[id(entity)]
            table = self.store.table(model)
            row = _row_of(table, entity)
            if row == last:
                continue
            info = table.info
            if info.key_of(entity) != key:
                raise ConfigurationError(
                    f"the key of {entity!r} was changed; the in-memory repositories cannot "
                    "move an entity to another key: remove it and add a new one"
                )
            self._check_version(table, key, last)
            for name, default in table.on_update.items():
                if row[name] == last[name]:  # not set by the caller: the UPDATE sets it
                    value = default.arg(None) if default.is_callable else default.arg
                    setattr(entity, name, value)
                    row[name] = _own(value)
            version = table.version
            # A version the application set is written as it is, as SQL writes it.
            if version is not None and row[version] == last[version] and not table.assigned_version:
                new_version = table.mapper.version_id_generator(last[version])
                setattr(entity, version, new_version)
                row[version] = new_version
            changed = {name for name, value in row.items() if last.get(name, _UNSET) != value}
            self._check_required(table, row)
            self._check_unique(table, key, row, changed=changed)
            self._check_references(table, row)
            self._write(model, key, row, last)
            self.flushed[id(entity)] = row

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
        self, table: _Table, row: Row, rows: Callable[[type[Any]], dict[Any, Row]] | None = None
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
        self, table: _Table, row: Row, rows: Callable[[type[Any]], dict[Any, Row]] | None = None
    ) -> None:
        """Refuse to remove a row that rows of another model still refer to."""
        rows = rows or self.current
        for other in list(self.store._tables.values()):  # noqa: SLF001 - one unit with the store
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
        table: _Table,
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

    def commit(self) -> None:
        """Apply this transaction's changes to the store, all or none of them.

        Raises:
            ConflictError: Another unit committed a row with the same key or unique value.
            ConcurrencyError: Another unit changed or removed a row this one changed.
        """
        self.flush()
        store = self.store
        with store._lock:  # noqa: SLF001 - the store and its transactions are one unit
            tables = {
                model: self._merged(store.table(model), dict(store.rows(model)), changes)
                for model, changes in self.changes.items()
            }
            self._check_links(tables)
            store._rows.update(tables)  # noqa: SLF001
        self.changes.clear()
        self.new.clear()
        self.deleted.update(self.removed)
        self.removed.clear()

    def _merged(
        self, table: _Table, rows: dict[Any, Row], changes: dict[Any, _Change]
    ) -> dict[Any, Row]:
        """``rows`` with ``changes`` applied, checked against what others committed."""
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
            self._check_unique(table, key, row, rows)
            rows[key] = row
        return rows

    def _check_links(self, tables: dict[type[Any], dict[Any, Row]]) -> None:
        """Check this transaction's foreign keys again against what others committed."""

        def rows(model: type[Any]) -> dict[Any, Row]:
            found = tables.get(model)
            return self.store.rows(model) if found is None else found

        for model, changes in self.changes.items():
            table = self.store.table(model)
            for key, change in changes.items():
                if change.row is not None:
                    self._check_references(table, rows(model)[key], rows)
                elif change.base is not None:
                    self._check_referrers(table, change.base, rows)

    def rollback(self) -> None:
        """Forget this transaction's changes; loaded objects get their stored values back."""
        self.changes.clear()
        for key in [key for key, entity in self.objects.items() if id(entity) in self.new]:
            entity = self.objects.pop(key)
            del self.flushed[id(entity)]
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


_UNSET: Final = object()


class _View:
    """A stored row read through attributes, as specifications and sorting read entities."""

    __slots__ = ("key_", "row_")

    def __init__(self, key: Any, row: Row) -> None:
        self.key_ = key
        self.row_ = row

    def __getattr__(self, name: str) -> Any:
        return self.row_[name]


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


def _dangling(table: _Table, reference: _Reference, values: tuple[Any, ...]) -> ConflictError:
    return ConflictError(
        f"writing {table.info.name} violates a constraint of the stored data: its foreign "
        f"key {reference.text} names {values!r}, which is not stored; store that first",
        entity=table.info.name,
    )


def _referred(table: _Table, reference: _Reference) -> ConflictError:
    return ConflictError(
        f"removing {table.info.name} violates a constraint of the stored data: "
        f"{reference.text} still refers to it; remove those first",
        entity=table.info.name,
    )


def _stale(info: ModelInfo, key: Any) -> ConcurrencyError:
    return ConcurrencyError(entity=info.name, key=key)


def page_of(
    transaction: Transaction,
    *,
    info: ModelInfo,
    spec: Specification | None,
    order_by: str | Sequence[str],
    size: int,
    after: str | None,
) -> Page[Any]:
    """One keyset page, as the SQL repositories compute it."""
    check_size(size)
    pairs = info.order(order_by)
    transaction.check_spec(info, spec)
    secret = transaction.tracker.secret
    values = None if after is None else decode_cursor(info.model, pairs, after, secret=secret)
    items = transaction.select(info, spec, pairs, values, slice(size + 1))
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
) -> list[Any]:
    """The entities ``find`` returns, as the SQL repositories compute them."""
    check_window(limit, offset)
    pairs = info.order(order_by)
    transaction.check_spec(info, spec)
    end = None if limit is None else offset + limit
    return transaction.select(info, spec, pairs, window=slice(offset, end))
