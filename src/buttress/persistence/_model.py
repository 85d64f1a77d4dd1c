"""What the repositories know about one mapped model, and what a unit of work tracks.

Both are shared by every repository (SQLAlchemy and in-memory, sync and async),
so the checks a call makes and the errors it raises are written once:

- `ModelInfo` reads the mapper once: the key fields, the columns a query may
  name, the version column, whether instances are aggregates with events; it
  checks entities, keys, limits and orders before anything reaches a database.
- `Tracker` is the state of one transaction of a unit of work: the aggregates
  its repositories returned or added (``seen``), a failure that ended it, and
  the events of committed work waiting for `collect_events`.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import logging
import re
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, NoReturn

import sqlalchemy as sa
from sqlalchemy.orm.attributes import instance_dict, set_committed_value
from sqlalchemy.orm.exc import StaleDataError

from buttress._text import a
from buttress.domain._entity import (
    AggregateRoot,
    discard_events_after,
    event_clock,
    event_count,
    move_events,
    pull_numbered_events,
    pull_sourced_events,
)
from buttress.domain._spec import Specification
from buttress.errors import (
    ButtressError,
    ConcurrencyError,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    QueryError,
    UnavailableError,
)
from buttress.persistence._query import check_range, mapper_of, parse_order

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from buttress.domain._events import DomainEvent

__all__ = [
    "DRIVER_ERRORS",
    "ISOLATION_LEVELS",
    "FlushedWrites",
    "ModelInfo",
    "Tracker",
    "check_isolation_level",
    "check_removal",
    "check_upsert",
    "model_info",
    "outbox_rows",
    "report_discarded",
    "stream_of",
    "the_one",
    "translate",
    "upsert_statement",
    "upserted",
]

logger = logging.getLogger("buttress.persistence")


def report_discarded(kind: str, new: int, changed: int, removed: int) -> None:
    """Log at DEBUG what a unit of work left without commit() threw away, if anything."""
    if new or changed or removed:
        logger.debug(
            "%s left without commit(): discarded %d new, %d changed and %d removed "
            "entities; call commit() to keep work",
            kind,
            new,
            changed,
            removed,
        )


class FlushedWrites:
    """What a session flushed since its last commit or rollback, for `report_discarded`.

    Attached only while DEBUG logging is on, so a unit of work pays nothing otherwise.
    """

    __slots__ = ("counts", "session")

    def __init__(self, session: Any) -> None:
        self.session = session
        self.counts = [0, 0, 0]
        sa.event.listen(session, "after_flush", self._flushed)
        sa.event.listen(session, "after_commit", self._forget)
        sa.event.listen(session, "after_rollback", self._forget)

    def _flushed(self, session: Any, _context: Any) -> None:
        # In after_flush the session still shows what it was about to write.
        self.counts[0] += len(session.new)
        self.counts[1] += sum(1 for entity in session.dirty if session.is_modified(entity))
        self.counts[2] += len(session.deleted)

    def _forget(self, _session: Any) -> None:
        self.counts = [0, 0, 0]

    def report(self, kind: str) -> None:
        """Log what would be discarded now, and stop counting."""
        session = self.session
        new, changed, removed = self.counts
        changed += sum(1 for entity in session.dirty if session.is_modified(entity))
        report_discarded(kind, new + len(session.new), changed, removed + len(session.deleted))
        sa.event.remove(session, "after_flush", self._flushed)
        sa.event.remove(session, "after_commit", self._forget)
        sa.event.remove(session, "after_rollback", self._forget)


DRIVER_ERRORS: Final = (sa.exc.DBAPIError, StaleDataError)
"""The database errors a repository translates (those `translate` knows) to its own."""

_RETRY_THE_UNIT: Final = frozenset({"40001", "40P01"})
"""SQLSTATEs of a serialization failure and a deadlock: the unit's work may be retried."""

ISOLATION_LEVELS: Final = ("READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE")
"""The isolation levels a unit of work may ask for (SQLite has only SERIALIZABLE's kind)."""


def check_isolation_level(level: object) -> None:
    """Refuse an isolation level a unit of work cannot ask every backend for.

    Raises:
        ConfigurationError: ``level`` is not one of `ISOLATION_LEVELS` (or None).
    """
    if level is not None and level not in ISOLATION_LEVELS:
        raise ConfigurationError(
            f"isolation_level must be one of {', '.join(map(repr, ISOLATION_LEVELS))}, or "
            f"None for the engine's; got {level!r}"
        )


MAX_ROWS: Final = 2**63 - 1
"""The largest ``limit`` or ``offset`` a database takes (a signed 64-bit integer)."""

DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 10_000


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class ModelInfo:
    """The facts about one mapped model every repository call relies on."""

    model: type[Any]
    name: str
    key_names: tuple[str, ...]
    key_types: tuple[type[Any] | None, ...]
    version: str | None
    aggregate: bool
    orders: dict[tuple[str, ...], tuple[tuple[str, bool], ...]] = dataclasses.field(
        default_factory=dict
    )
    key_columns: tuple[Any, ...] = ()
    """The SQL types of the primary key's columns, for range checks."""

    def check_entity(self, entity: object, action: str) -> None:
        """Refuse an object of another class than the repository's model.

        Raises:
            QueryError: ``entity`` is not an instance of the model.
        """
        if not isinstance(entity, self.model):
            raise QueryError(
                f"cannot {action} {entity!r} in the repository of {self.name}: it is a "
                f"{type(entity).__name__}; use the repository of its own model "
                f"(uow.repository({type(entity).__name__}))"
            )

    def refuse_removed(self, entity: object) -> None:
        """Refuse to add again an entity that was removed.

        Raises:
            QueryError: Always; the message says to build a new object.
        """
        raise QueryError(
            f"cannot add {entity!r} to {self.name}: it was removed; build a new object to "
            "store it again"
        )

    def refuse_not_new(self, entity: object) -> None:
        """Refuse to add an entity that was loaded or added by another unit of work.

        Raises:
            QueryError: Always; the message says what to do instead.
        """
        raise QueryError(
            f"cannot add {entity!r} to {self.name}: it is not new, it was loaded or added by "
            "another unit of work; get it through this one and change it there, or build a "
            "new object"
        )

    def check_key(self, key: object) -> Any:
        """Refuse a key the model's primary key cannot hold; return it as the store wants it.

        A composite key may be given as a tuple, in the order of the primary key's
        columns, or as a mapping of their names (``{"order": "A-1", "number": 2}``).

        Returns:
            The key: the value itself, or a tuple for a composite key.

        Raises:
            QueryError: ``key`` is None, of another type, or of another length.
        """
        if len(self.key_names) == 1:
            self._check_key_part(self.key_names[0], self.key_types[0], key)
            if self.key_columns:
                check_range(self.key_columns[0], f"{self.name}.{self.key_names[0]}", key)
            return key
        if isinstance(key, Mapping):
            if set(key) != set(self.key_names):
                raise QueryError(
                    f"the key of {self.name} is ({', '.join(self.key_names)}); a mapping must "
                    f"name exactly those, got {sorted(map(str, key))}"
                )
            key = tuple(key[name] for name in self.key_names)
        if not isinstance(key, tuple) or len(key) != len(self.key_names):
            raise QueryError(
                f"the key of {self.name} has {len(self.key_names)} parts "
                f"({', '.join(self.key_names)}); pass them as a tuple, got {key!r}"
            )
        for index, (name, expected, part) in enumerate(
            zip(self.key_names, self.key_types, key, strict=True)
        ):
            self._check_key_part(name, expected, part)
            if self.key_columns:
                check_range(self.key_columns[index], f"{self.name}.{name}", part)
        return key

    def _check_key_part(self, name: str, expected: type[Any] | None, part: object) -> None:
        if type(part) is expected:
            return
        if part is None:
            raise QueryError(f"a key of {self.name} cannot be None: pass its {name}")
        if expected is None or expected is object:
            return  # a custom type: the database decides
        fits = isinstance(part, expected) and not (isinstance(part, bool) and expected is not bool)
        if not fits and not (expected is float and type(part) is int):
            raise QueryError(
                f"{self.name}.{name} is {a(expected.__name__)} key, got {part!r} "
                f"({type(part).__name__}): pass {a(expected.__name__)}"
            )

    def key_of(self, entity: Any) -> Any:
        """The primary key of ``entity``: one value, or a tuple for a composite key."""
        if len(self.key_names) == 1:
            return getattr(entity, self.key_names[0])
        return tuple(getattr(entity, name) for name in self.key_names)

    def order(self, order_by: str | Sequence[str]) -> tuple[tuple[str, bool], ...]:
        """The checked ``(field, descending)`` pairs of ``order_by``, ending with the key.

        The primary key breaks ties (ascending, after the named fields), so every
        backend returns rows in one order and keyset pages never skip a row.

        Raises:
            QueryError: An unknown field, a field named twice, or not a field name.
        """
        names: tuple[Any, ...] = ()
        try:
            names = (order_by,) if isinstance(order_by, str) else tuple(order_by)
            return self.orders[names]
        except KeyError:
            pass
        except TypeError:  # not a sequence, or an unhashable entry: parse_order says which
            names = ()
        pairs = parse_order(order_by, self.model)
        named = {name for name, _ in pairs}
        pairs += tuple((key, False) for key in self.key_names if key not in named)
        if names and len(self.orders) < 256:  # noqa: PLR2004 - a bound, not a magic value
            self.orders[names] = pairs
        return pairs

    def values_of(self, entity: Any, pairs: Sequence[tuple[str, bool]]) -> list[Any]:
        """The values of the ordered fields of ``entity``, for a page cursor."""
        return [getattr(entity, name) for name, _ in pairs]

    def translate(self, error: Exception, session: Any = None) -> ButtressError:
        """The Buttress error for a database error (the caller chains the original)."""
        return translate(error, self.name, session=session)


def translate(error: Exception, name: str | None = None, *, session: Any = None) -> ButtressError:
    """The Buttress error for a database error about ``name`` (the caller chains it).

    For a stale version, ``session`` (the sync session the write failed in) tells
    which entity it was: the versioned one of the table the database named.
    """
    what = name or "an entity"
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return UnavailableError(
            f"the database connection was lost while working on {what}: nothing of this "
            "unit of work since its last commit was stored. Start a new unit of work (leave "
            f"this block) and do the work again ({_first_line(error)})"
        )
    if _sqlstate(error) in _RETRY_THE_UNIT:
        return ConcurrencyError(
            f"the database stopped this unit of work to keep concurrent ones consistent (a "
            f"serialization failure or a deadlock, while working on {what}): start a new "
            f"unit of work and do the work again ({_first_line(error)})",
            entity=name,
        )
    if isinstance(error, sa.exc.DataError):
        return QueryError(
            f"the database cannot hold a value of {what}: {_first_line(error)}; "
            "check its size and type against the column"
        )
    if isinstance(error, StaleDataError):
        entity, key = _stale_subject(error, session) if session is not None else (None, None)
        entity = entity or name
        subject = f"{entity} with key {key!r}" if key is not None else entity or "an entity"
        return ConcurrencyError(
            f"{subject} was changed or removed by someone else since it was loaded: load it "
            f"again, reapply the change and commit, or report the conflict ({error})",
            entity=entity,
            key=key,
        )
    if not isinstance(error, sa.exc.IntegrityError):
        raise error  # not one of ours to translate: the driver's own error, as it was
    return ConflictError(
        f"writing {what} violates a constraint of the stored data (a duplicate key or "
        "unique value, or a missing referenced row): change the conflicting value, or load "
        f"the stored entity and change it instead (the database said: {_first_line(error)})",
        entity=name,
    )


_STALE_TABLE = re.compile(r"on table '([^']+)'")


def _stale_subject(error: Exception, session: Any) -> tuple[str | None, Any]:
    """The class name and key of the versioned entity whose write went stale, if one fits.

    SQLAlchemy names only the table; the session still holds the entities it
    flushed. One versioned entity of that table names both; several name the class.
    """
    found = _STALE_TABLE.search(str(error))
    if found is None:
        return None, None
    table = found[1]
    candidates = []
    for identity, entity in list(session.identity_map.items()):
        mapper = sa.inspect(type(entity))
        if mapper.version_id_col is not None and mapper.local_table.name == table:
            candidates.append((type(entity).__name__, identity[1]))
    if not candidates:
        return None, None
    names = {entity for entity, _ in candidates}
    if len(candidates) > 1:
        return (names.pop(), None) if len(names) == 1 else (None, None)
    entity, key = candidates[0]
    return entity, key[0] if len(key) == 1 else key


def _sqlstate(error: Exception) -> str | None:
    """The SQLSTATE of a driver error, whichever driver (psycopg, asyncpg) raised it."""
    original = getattr(error, "orig", None)
    code = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    return code if isinstance(code, str) else None


def _first_line(error: Exception) -> str:
    text = str(getattr(error, "orig", error))
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


_INFOS: dict[type[Any], ModelInfo] = {}


_VERSION_NAMES: dict[type[Any], str | None] = {}


def loaded_versions(session: Any) -> list[tuple[Any, str, Any]]:
    """``(object, version attribute, value)`` of every versioned object ``session`` holds loaded.

    Taken as a savepoint begins: rolling the savepoint back expires what it
    changed, and a reload would read a version another unit committed since,
    so a later change would not be checked against the version it was based on.
    """
    found = []
    for entity in session.identity_map.values():
        kind = type(entity)
        name = _VERSION_NAMES.get(kind, "")
        if name == "":
            mapper = sa.inspect(kind)
            column = mapper.version_id_col
            name = _VERSION_NAMES[kind] = (
                None if column is None else mapper.get_property_by_column(column).key
            )
        if name is not None:
            value = instance_dict(entity).get(name)
            if value is not None:
                found.append((entity, name, value))
    return found


def restore_versions(versions: list[tuple[Any, str, Any]]) -> None:
    """Give objects a savepoint's rollback expired back the version they were loaded with.

    The rest of each reloads as it is read; the version stays what this unit's
    changes were based on, so the next flush of a change conflicts if another unit
    committed the row meanwhile (as the in-memory twin, which keeps it, does).
    """
    for entity, name, value in versions:
        if name not in instance_dict(entity):  # expired by the rollback
            set_committed_value(entity, name, value)


def stream_of(aggregate: Any) -> str:
    """The stream of an aggregate's events: ``"<Model>:<key>"`` (a composite key joined by ,).

    The key is read from the identity SQLAlchemy holds for a stored object (no
    attribute is loaded, even an expired one), else from the object itself.
    """
    info = model_info(type(aggregate))
    identity = sa.inspect(aggregate).identity
    key = identity if identity is not None else info.key_of(aggregate)
    parts = key if isinstance(key, tuple) else (key,)
    return f"{info.name}:{','.join(str(part) for part in parts)}"


def outbox_failed(error: BaseException) -> ButtressError:
    """What a unit whose commit failed after its events left their aggregates says next."""
    return ButtressError(
        f"the commit failed after its events were taken for the outbox ({error!r}): nothing "
        "was kept; roll back (leave the with block or call rollback()) and run the unit again"
    )


def outbox_rows(
    outbox: Any, pulled: Sequence[tuple[int, DomainEvent, AggregateRoot]]
) -> list[dict[str, Any]]:
    """The rows ``outbox`` writes for the events of one commit, in recording order."""
    return list(outbox.rows([(event, stream_of(aggregate)) for _, event, aggregate in pulled]))


def model_info(model: type[Any]) -> ModelInfo:
    """The `ModelInfo` of a mapped class, read from its mapper once.

    Raises:
        QueryError: ``model`` is not a mapped class.
    """
    info = _INFOS.get(model)
    if info is None:
        info = _INFOS[model] = _read_info(model)
    return info


def _read_info(model: type[Any]) -> ModelInfo:
    if not isinstance(model, type):
        raise QueryError(f"a repository needs a mapped class, got {model!r}")
    mapper = mapper_of(model)
    key_names = tuple(mapper.get_property_by_column(column).key for column in mapper.primary_key)
    key_types = tuple(_python_type(column) for column in mapper.primary_key)
    version_column = mapper.version_id_col
    version = None if version_column is None else mapper.get_property_by_column(version_column).key
    return ModelInfo(
        model=model,
        name=model.__name__,
        key_names=key_names,
        key_types=key_types,
        version=version,
        aggregate=issubclass(model, AggregateRoot),
        key_columns=tuple(column.type for column in mapper.primary_key),
    )


def _python_type(column: Any) -> type[Any] | None:
    try:
        python_type: type[Any] = column.type.python_type
    except NotImplementedError:
        return None
    return python_type


def the_one(found: list[Any], name: str, spec: object) -> Any:
    """The single entity of ``found`` (at most two, from ``find(spec, limit=2)``), for get_by.

    Raises:
        NotFoundError: ``found`` is empty.
        QueryError: It holds several.
    """
    if not found:
        raise NotFoundError(entity=name, key=spec)
    if len(found) > 1:
        raise QueryError(
            f"get_by expected one {name} matching {spec!r}, and several do: narrow the "
            "specification to a unique field, or use find() or first()"
        )
    return found[0]


def check_removal(spec: object) -> None:
    """Refuse anything but a specification for remove_many (None would mean everything).

    Raises:
        QueryError: ``spec`` is not a `Specification`.
    """
    if not isinstance(spec, Specification):
        raise QueryError(
            f"remove_many takes a Specification, such as F('total') == 0; got {spec!r}; "
            "to remove everything, say so: remove_many(F('<key>').is_not_none())"
        )


def check_upsert(info: ModelInfo, entity: object) -> Any:
    """Refuse an entity `upsert` cannot write; return its key as the store wants it.

    Raises:
        QueryError: ``entity`` is not of the model, the model has a version column,
            or the entity's key is missing.
    """
    info.check_entity(entity, "upsert")
    if info.version is not None:
        raise QueryError(
            f"cannot upsert {info.name}: it has a version column ({info.version}), and upsert "
            "writes over whatever is stored, which defeats the version check; load it with "
            "get_or_none(), then add() a new one or change the one loaded"
        )
    key = info.key_of(entity)
    if any(part is None for part in (key if len(info.key_names) > 1 else (key,))):
        raise QueryError(
            f"cannot upsert {entity!r}: its key ({', '.join(info.key_names)}) is missing; "
            "upsert matches the stored row by key, so give the key, or use add() to have "
            "one generated"
        )
    return info.check_key(key)


def _python_default(default: Any) -> Any:
    """The value a Python-side column default (or onupdate) gives: a constant, or a call."""
    return default.arg(None) if default.is_callable else default.arg


_EXCLUDED: Final = object()
"""In an upsert's SET clause: the value the INSERT proposed (``EXCLUDED.column``)."""


def upsert_statement(info: ModelInfo, entity: object, dialect: Any) -> Any:
    """``INSERT ... ON CONFLICT (key) DO UPDATE SET`` every non-key column, for ``entity``.

    A field left None is left out of the INSERT when its column has a default,
    so the default applies (the UPDATE writes the same value); on UPDATE, a
    field left None whose column has an ``onupdate`` gets that value instead,
    since the database applies no ``onupdate`` to ``ON CONFLICT``. Where the
    database has ``RETURNING`` (PostgreSQL, SQLite 3.35+), the statement returns
    the stored row as an entity of the model.

    Raises:
        ConfigurationError: ``dialect`` has no ``ON CONFLICT`` (only PostgreSQL's
            and SQLite's are used), or the model is mapped with inheritance.
        QueryError: ``entity`` is not loaded in the unit and holds related
            entities, which one row cannot store.
    """
    from sqlalchemy.dialects import postgresql, sqlite  # noqa: PLC0415 - only upsert needs them

    inserts: dict[str, Any] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
    insert = inserts.get(dialect.name)
    if insert is None:
        raise ConfigurationError(
            f"upsert needs INSERT ... ON CONFLICT, which Buttress uses on PostgreSQL and "
            f"SQLite only, and this session's database is {dialect.name}; load the entity with "
            "get_or_none(), then add() a new one or change the one loaded"
        )
    mapper = sa.inspect(info.model)
    table = mapper.local_table
    if mapper.inherits is not None or mapper.polymorphic_on is not None:
        raise ConfigurationError(
            f"upsert writes one table, and {info.name} is mapped with inheritance; load the "
            "entity with get_or_none(), then add() a new one or change the one loaded"
        )
    state = sa.inspect(entity)
    linked = (
        [] if state.persistent else [r.key for r in mapper.relationships if state.dict.get(r.key)]
    )
    if linked:
        raise QueryError(
            f"cannot upsert {entity!r}: upsert writes the row of {info.name} alone, and its "
            f"{', '.join(linked)} would be left out; store related entities through their own "
            "repositories and set the foreign keys, or load it with get_or_none() and change it"
        )
    keys = set(mapper.primary_key)
    values: dict[Any, Any] = {}
    written: list[tuple[Any, Any]] = []  # (non-key column, its onupdate value or _EXCLUDED)
    for prop in mapper.column_attrs:
        column = prop.columns[0]
        if not isinstance(column, sa.Column) or column.table is not table or column.computed:
            continue  # an expression, or a value the database computes
        value = getattr(entity, prop.key)
        if value is not None or (column.default is None and column.server_default is None):
            values[column] = value
        if column in keys:
            continue
        onupdate: Any = column.onupdate
        if value is None and onupdate is not None:
            update = onupdate.arg if onupdate.is_clause_element else _python_default(onupdate)
            written.append((column, update))
        else:
            written.append((column, _EXCLUDED))
    statement = insert(info.model).values(values)
    set_ = {
        column: statement.excluded[column.key] if update is _EXCLUDED else update
        for column, update in written
    }
    key_columns = list(mapper.primary_key)
    if set_:
        statement = statement.on_conflict_do_update(index_elements=key_columns, set_=set_)
    else:  # a table of keys only: nothing to write over, and no row returned
        statement = statement.on_conflict_do_nothing(index_elements=key_columns)
    return statement.returning(info.model) if dialect.insert_returning else statement


def upserted(entity: Any, managed: Any, info: ModelInfo, tracker: Tracker) -> Any:
    """``managed``, the unit's object for the key `upsert` wrote, with ``entity``'s events.

    When the unit tracks another object than the one passed, the events the
    passed aggregate recorded move to the tracked one, so `collect_events`
    yields them once, after commit.
    """
    if info.aggregate:
        move_events(entity, managed)
        tracker.see(managed)
    return managed


def not_in_transaction() -> ConfigurationError:
    """The error for using a unit of work outside its ``with`` block."""
    return ConfigurationError(
        "this unit of work is not in a transaction: use it inside `with uow:` "
        "(`async with uow:` for an asyncio one)"
    )


def use_async_with(self: object, *_: object) -> NoReturn:
    """``with`` on an asyncio unit of work: refused, naming ``async with``.

    Raises:
        ConfigurationError: Always.
    """
    raise ConfigurationError(
        f"{type(self).__name__} is an asyncio unit of work: write `async with uow:` "
        "(and `await uow.commit()`), not `with uow:`"
    )


def already_in_transaction() -> ConfigurationError:
    """The error for entering a unit of work that is already entered."""
    return ConfigurationError(
        "this unit of work is already in a transaction: it cannot be entered twice at "
        "once; use uow.savepoint() for a nested transaction, or another unit of work"
    )


def check_window(limit: object, offset: object) -> None:
    """Refuse a ``limit`` or ``offset`` that is not a whole number of rows.

    Raises:
        QueryError: ``limit`` is not None or an int >= 0, or ``offset`` not an int >= 0.
    """
    if limit is not None and (type(limit) is not int or not 0 <= limit <= MAX_ROWS):
        raise QueryError(f"limit must be None or a whole number from 0 to 2**63-1, got {limit!r}")
    if type(offset) is not int or not 0 <= offset <= MAX_ROWS:
        raise QueryError(f"offset must be a whole number from 0 to 2**63-1, got {offset!r}")


def check_size(size: object) -> int:
    """Return a page ``size`` after checking it.

    Raises:
        QueryError: ``size`` is not an int from 1 to `MAX_PAGE_SIZE`.
    """
    if type(size) is not int or not 1 <= size <= MAX_PAGE_SIZE:
        raise QueryError(f"size must be a whole number from 1 to {MAX_PAGE_SIZE}, got {size!r}")
    return size


def secret_bytes(secret: bytes | str | None) -> bytes | None:
    """The cursor secret as bytes (a str is hashed, so any length works)."""
    if secret is None or isinstance(secret, bytes):
        return secret
    if isinstance(secret, str):
        return hashlib.sha256(secret.encode()).digest()
    raise ConfigurationError(
        f"cursor_secret must be bytes or str (a secret from your settings), got "
        f"{type(secret).__name__}"
    )


class _Closed:
    """Stands for the session or transaction of a unit of work that has ended."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        raise not_in_transaction()

    def __contains__(self, item: object) -> bool:
        raise not_in_transaction()


CLOSED: Final[Any] = _Closed()
"""What a repository holds once its unit of work has ended: any use raises."""


class Tracker:
    """The bookkeeping of one unit of work: seen aggregates, failure, collected events.

    The aggregates seen in the current transaction are held (a change or an event
    on one must not be lost with it); once their transaction commits, only
    weakly: a long unit that commits as it goes keeps no more alive than its
    caller does, and an aggregate the caller still holds is still tracked.
    """

    __slots__ = ("clock", "events", "failure", "kept", "marks", "secret", "seen")

    def __init__(self, secret: bytes | None = None) -> None:
        self.secret = secret
        self.seen: dict[int, AggregateRoot] = {}
        # made at the first commit that saw an aggregate (most units never need it)
        self.kept: weakref.WeakValueDictionary[int, AggregateRoot] | None = None
        self.failure: ButtressError | None = None
        self.events: collections.deque[DomainEvent] = collections.deque()
        self.marks: list[dict[int, int]] = []
        # the event clock at the last pull: while it stands, no seen aggregate has
        # events to pull (-2: one was seen holding events, pull at the next commit)
        self.clock = -1

    def aggregates(self) -> list[AggregateRoot]:
        """Every tracked aggregate: those seen in this transaction, then earlier ones alive."""
        seen = self.seen
        kept = self.kept
        if not kept:
            return list(seen.values())
        return [*seen.values(), *(a for key, a in kept.items() if key not in seen)]

    def check(self) -> None:
        """Refuse to go on after a failed write, until the unit rolls back.

        Raises:
            ButtressError: The error that failed the unit, raised again (its class).
        """
        failure = self.failure
        if failure is not None:
            raise type(failure)(
                f"this unit of work failed earlier ({failure.message}); roll it back "
                "(leave the with block or call rollback()) before using it again"
            ) from failure

    def check_outside_savepoint(self, action: str) -> None:
        """Refuse to commit or roll back the whole unit from inside a savepoint block.

        Raises:
            ConfigurationError: A savepoint block is open.
        """
        if self.marks:
            raise ConfigurationError(
                f"cannot {action} the unit of work inside a savepoint block: leave the block "
                "first (raise to undo its work, or let it end to keep it)"
            )

    def fail(self, error: ButtressError) -> ButtressError:
        """Remember ``error`` as the failure that ends this transaction, and return it."""
        self.failure = error
        return error

    def see(self, entity: AggregateRoot) -> None:
        """Track an aggregate a repository returned or added."""
        self.seen[id(entity)] = entity
        if event_count(entity):
            self.clock = -2

    def see_all(self, entities: Iterable[AggregateRoot]) -> None:
        """Track aggregates a repository returned."""
        seen = self.seen
        for entity in entities:
            seen[id(entity)] = entity
            if event_count(entity):
                self.clock = -2

    def pull_sourced(self) -> list[tuple[int, DomainEvent, AggregateRoot]]:
        """Pull the events of every seen aggregate, each with its aggregate, for an outbox.

        Called just before the commit that writes them; pass them to `committed`.
        """
        now = event_clock()
        if now == self.clock:  # no event recorded since the last pull
            return []
        self.clock = now
        return pull_sourced_events(self.aggregates())

    def committed(self, pulled: Sequence[tuple[int, DomainEvent, AggregateRoot]] = ()) -> None:
        """Move the events of every seen aggregate (and ``pulled``) to the queue, in order."""
        if pulled:
            self.events.extend(event for _, event, _ in pulled)
        now = event_clock()
        if now != self.clock:  # an event was recorded since the last pull
            self.events.extend(event for _, event in pull_numbered_events(self.aggregates()))
            self.clock = now
        self.marks.clear()
        if self.seen:
            if self.kept is None:
                self.kept = weakref.WeakValueDictionary(self.seen)
            else:
                self.kept.update(self.seen)
            self.seen.clear()

    def rolled_back(self) -> None:
        """Drop the events of undone work and forget what was seen and failed."""
        if event_clock() != self.clock:  # else no seen aggregate holds an event
            for aggregate in self.aggregates():
                aggregate.pull_events()
        self.seen.clear()
        self.kept = None
        self.marks.clear()
        self.failure = None

    def mark(self) -> None:
        """Note how many events each seen aggregate has, as a savepoint begins."""
        self.marks.append({id(a): len(a.pending_events) for a in self.aggregates()})

    def release(self) -> None:
        """Forget the innermost mark: the savepoint's work stands."""
        self.marks.pop()

    def undo(self) -> None:
        """Drop the events recorded since the innermost mark: its work was undone."""
        counts = self.marks.pop()
        for aggregate in self.aggregates():
            discard_events_after(aggregate, counts.get(id(aggregate), 0))
        self.failure = None

    def collect(self) -> Iterator[DomainEvent]:
        """Yield the queued events of committed work once each, oldest first."""
        events = self.events
        while events:
            yield events.popleft()
