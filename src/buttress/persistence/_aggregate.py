"""The aggregate as the consistency boundary, for SQLAlchemy sessions.

An `AggregateRoot` with a version column guards its whole aggregate: at a flush
that adds, changes or removes anything it holds through cascading one-to-many
(or one-to-one) relationships, changes its many-to-many collections, or follows
events it recorded, its version is bumped, so two units of work that change
different parts of one aggregate conflict as if both had changed the root. One
flush bumps once; when the root's own row changes anyway, SQLAlchemy's own
version bump is the only one (no extra statement). A class sets
``consistency_boundary = False`` to guard its own row only.

The in-memory twin carries out the same rule on its rows (`_memory_core`).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm.attributes import instance_dict, instance_state

from buttress.domain import AggregateRoot
from buttress.domain._entity import event_clock, event_count
from buttress.persistence._links import owners_of

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from sqlalchemy.orm import Session

    from buttress.persistence._model import Tracker

__all__ = ["AggregateGuard", "guarded"]

_GUARDED: dict[type[Any], bool] = {}


def guarded(model: type[Any]) -> bool:
    """Whether ``model``'s version guards its whole aggregate."""
    found = _GUARDED.get(model)
    if found is None:
        mapper = sa.inspect(model, raiseerr=False)
        found = _GUARDED[model] = bool(
            mapper is not None
            and issubclass(model, AggregateRoot)
            and mapper.version_id_col is not None
            and getattr(model, "consistency_boundary", True) is not False
        )
    return found


_GUARD = "buttress.aggregate_guard"  # the guard of a unit's session, in session.info
_HOOKED: list[bool] = []  # whether the Session class is listened on (once, at first use)
_HOOKING = threading.Lock()


class AggregateGuard:
    """Bumps the versions of the aggregate roots a session's flush touches.

    The session events are listened to once, on SQLAlchemy's `Session` class
    (which covers every subclass, a sessionmaker's own included), not per
    session: registering listeners on every session of every unit cost a third
    of a unit's overhead over a bare session. Sessions without a guard in their
    ``info`` (the application's own) are left alone.

    Args:
        session: The (sync) session of one transaction of a unit of work.
        tracker: The unit's tracker: the aggregates whose events count.
    """

    __slots__ = ("clock", "counted", "tracker")

    def __init__(self, session: Session, tracker: Tracker) -> None:
        self.tracker = tracker
        self.counted: dict[int, int] = {}
        self.clock = -1  # the event clock when the aggregates' events were last counted
        session.info[_GUARD] = self
        if not _HOOKED:
            _hook()

    def before_commit(self, session: Session) -> None:
        """Guard as a commit does, before a unit pulls the events it is about to write."""
        self.guard(session, committing=True)

    def guard(self, session: Session, *, committing: bool) -> None:
        """Bump every guarded root whose aggregate this flush (or commit) writes."""
        new = session.new  # each read of these builds a set: read once
        deleted = session.deleted
        dirty = session.dirty
        seeds = [entity for entity in dirty if session.is_modified(entity)] if dirty else []
        if new:
            seeds += _attached(new)
        if deleted:
            seeds += deleted
        # events are counted at every flush that writes, inserts of new aggregates included,
        # so an aggregate inserted with its events is not bumped for them at commit
        if (seeds or new or committing) and event_clock() != self.clock:
            self.clock = event_clock()
            counted = self.counted
            for aggregate in self.tracker.aggregates():
                events = event_count(aggregate)
                if events > counted.get(id(aggregate), 0):
                    seeds.append(aggregate)
                    counted[id(aggregate)] = events
        if not seeds:
            return
        with session.no_autoflush:
            for root in _roots(session, seeds):
                if root in new or root in deleted:
                    continue
                if _row_changed(root):
                    continue  # its own UPDATE bumps the version already
                _bump(root)


def _hook() -> None:
    """Listen to every session's flushes and commits, once (two first units may race)."""
    with _HOOKING:
        if not _HOOKED:
            sa.event.listen(sa.orm.Session, "before_flush", _before_flush)
            sa.event.listen(sa.orm.Session, "before_commit", _before_commit)
            sa.event.listen(sa.orm.Session, "after_commit", _forget)
            sa.event.listen(sa.orm.Session, "after_soft_rollback", _forget_soft)
            _HOOKED.append(True)


def _guard_of(session: Session) -> AggregateGuard | None:
    guard: AggregateGuard | None = session.info.get(_GUARD)
    return guard


def _before_flush(session: Session, _context: Any, _instances: Any) -> None:
    guard = _guard_of(session)
    if guard is not None:
        guard.guard(session, committing=False)


def _before_commit(session: Session) -> None:
    # changes not flushed yet are guarded by the flush the commit makes; the commit
    # itself only has events recorded since the last count to guard
    guard = _guard_of(session)
    if guard is not None and event_clock() != guard.clock:
        guard.guard(session, committing=True)


def _forget(session: Session) -> None:
    guard = _guard_of(session)
    if guard is not None:
        guard.counted.clear()


def _forget_soft(session: Session, _previous: Any) -> None:
    _forget(session)


_ATTACHING: dict[type[Any], tuple[tuple[tuple[str, ...], str | None], ...]] = {}


def _attaching(model: type[Any]) -> tuple[tuple[tuple[str, ...], str | None], ...]:
    """The foreign-key fields and many-to-one of each relationship holding ``model``."""
    found = _ATTACHING.get(model)
    if found is None:
        found = _ATTACHING[model] = tuple((link.dests, link.reverse) for link in owners_of(model))
    return found


def _attached(new: Iterable[Any]) -> list[Any]:
    """The new objects that may be parts of a stored aggregate not otherwise changed.

    A new part added to a loaded collection changes its owner, itself a seed;
    only one attached by its foreign key or its many-to-one to a stored owner
    needs walking (every other new object is a seed of its own, or of a new
    aggregate, whose insert needs no bump). Run at every flush that inserts:
    kept to plain loops.
    """
    found = []
    for entity in new:
        links = _ATTACHING.get(type(entity))
        if links is None:
            links = _attaching(type(entity))
        if links and _held_by_stored(instance_dict(entity), links):
            found.append(entity)
    return found


def _held_by_stored(
    values: dict[str, Any], links: tuple[tuple[tuple[str, ...], str | None], ...]
) -> bool:
    for dests, reverse in links:
        for name in dests:
            if values.get(name) is not None:
                return True
        if reverse is not None:
            parent = values.get(reverse)
            if parent is not None and instance_state(parent).key is not None:
                return True
    return False


def _roots(session: Session, seeds: list[Any]) -> list[Any]:
    roots: list[Any] = []
    seen: set[int] = set()
    queue = list(seeds)
    while queue:
        entity = queue.pop()
        if id(entity) in seen:
            continue
        seen.add(id(entity))
        if guarded(type(entity)):
            roots.append(entity)
        queue.extend(_parents(session, entity))
    return roots


def _parents(session: Session, entity: Any) -> Iterator[Any]:
    """The objects holding ``entity`` as a part: by its foreign key, before and now."""
    owners = owners_of(type(entity))
    if not owners:
        return
    state = sa.inspect(entity)
    new = state.key is None
    values = state.dict
    for link in owners:
        if new:  # only what it holds now: its keys are not synced yet
            held = tuple(values.get(name) for name in link.dests)
            found = [] if None in held else [held]
        else:
            found = _fk_values(state, link.dests)
        for key in found:
            owner = _get(session, link.model, link.sources, key)
            if owner is not None:
                yield owner
        if link.reverse is None:
            continue
        if new:
            parent = values.get(link.reverse)
            if parent is not None:
                yield parent
            continue
        history = state.attrs[link.reverse].load_history()
        yield from (
            item
            for item in (*history.added, *history.unchanged, *history.deleted)
            if item is not None
        )


def _fk_values(state: Any, fields: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """The values of ``fields`` as last flushed and as now (either may be missing)."""
    before = []
    now = []
    for name in fields:
        history = state.attrs[name].history
        committed = history.deleted or history.unchanged
        before.append(committed[0] if committed else None)
        now.append(state.dict.get(name))
    return [values for values in {tuple(before), tuple(now)} if values and None not in values]


def _get(
    session: Session, model: type[Any], fields: tuple[str, ...], values: tuple[Any, ...]
) -> Any:
    mapper = sa.inspect(model)
    keys = [mapper.get_property_by_column(column).key for column in mapper.primary_key]
    if tuple(keys) == fields:
        return session.get(model, values[0] if len(values) == 1 else values)
    clause = sa.and_(
        *(getattr(model, name) == value for name, value in zip(fields, values, strict=True))
    )
    return session.scalars(sa.select(model).where(clause)).first()


def _row_changed(entity: Any) -> bool:
    """Whether a column of ``entity`` changed: its flush issues an UPDATE of its row."""
    state = sa.inspect(entity)
    return any(
        state.attrs[prop.key].history.has_changes()
        for prop in state.mapper.column_attrs
        if prop.key in state.dict or prop.key in state.committed_state
    )


def _bump(root: Any) -> None:
    mapper = sa.inspect(type(root))
    name = mapper.get_property_by_column(mapper.version_id_col).key
    state = sa.inspect(root)
    history = state.attrs[name].history
    committed = (history.deleted or history.unchanged or [getattr(root, name)])[0]
    generate = mapper.version_id_generator
    if generate is not False:
        setattr(root, name, generate(committed))
    elif type(committed) is int:
        setattr(root, name, committed + 1)
