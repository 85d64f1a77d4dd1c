"""A model's relationships, read once from its mapper: what the twin loads and cascades.

A `Link` is one relationship as the in-memory twin carries it out: which fields
of which side hold the foreign key, what the cascade does, how a collection is
ordered. `links_of` refuses, with a `ConfigurationError` naming the attribute,
every relationship whose behaviour needs SQL to decide (a ``dynamic`` loader, a
join on an expression, ``post_update``), so the twin never silently differs.

`owners_of` answers the other question aggregates ask: which relationships hold
a model as a part of another (one-to-many or one-to-one, with the save-update
cascade), so a change to a part can be traced up to its aggregate root.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import interfaces
from sqlalchemy.sql import elements, operators

from buttress.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "Link",
    "Owner",
    "check_load",
    "link_of",
    "links_of",
    "load_options",
    "loaded",
    "nulls_first",
    "owners_of",
    "parts_path",
]

ONE_TO_MANY: Final = interfaces.ONETOMANY
MANY_TO_ONE: Final = interfaces.MANYTOONE
MANY_TO_MANY: Final = interfaces.MANYTOMANY


class Link:
    """One relationship of a model, as the twin loads, saves and cascades it.

    ``pairs`` are ``(source field, destination field)``: the destination holds
    the foreign key. For one-to-many the source is on this model and the
    destination on the target; for many-to-one the reverse. For many-to-many
    ``pairs`` go from this model to the secondary table's columns and
    ``target_pairs`` from the target to them.

    ``reads`` are the fields of this model's row that a load joins on, and
    ``matches`` the fields (or secondary columns) of the rows they must equal;
    ``read`` gives a row's values of ``reads``; ``target_reads`` are the target's fields
    a many-to-many pair's ``target_pairs`` columns must equal.
    """

    __slots__ = (
        "delete",
        "delete_orphan",
        "direction",
        "key",
        "matches",
        "model",
        "name",
        "order",
        "pairs",
        "passive_deletes",
        "read",
        "reads",
        "save_update",
        "secondary",
        "sorts",
        "target",
        "target_pairs",
        "target_reads",
        "uselist",
        "viewonly",
    )

    def __init__(self, model: type[Any], prop: Any) -> None:
        name = f"{model.__name__}.{prop.key}"
        self.name = name
        self.model = model
        self.key: str = prop.key
        _refuse_unsupported(name, prop)
        self.direction = prop.direction
        self.target: type[Any] = prop.mapper.class_
        self.uselist: bool = bool(prop.uselist)
        cascade = prop.cascade
        self.viewonly: bool = bool(prop.viewonly)
        self.save_update = bool(cascade.save_update) and not self.viewonly
        self.delete = bool(cascade.delete) and not self.viewonly
        self.delete_orphan = bool(cascade.delete_orphan) and not self.viewonly
        self.passive_deletes = prop.passive_deletes
        self.secondary: sa.Table | None = prop.secondary
        source = sa.inspect(model) if self.direction is not MANY_TO_ONE else prop.mapper
        dest = prop.mapper if self.direction is ONE_TO_MANY else sa.inspect(model)
        if self.secondary is not None:
            self.pairs = tuple((_field(source, a), b.name) for a, b in prop.synchronize_pairs)
            self.target_pairs: tuple[tuple[str, str], ...] = tuple(
                (_field(prop.mapper, a), b.name) for a, b in prop.secondary_synchronize_pairs
            )
        else:
            self.pairs = tuple(
                (_field(source, a), _field(dest, b)) for a, b in prop.synchronize_pairs
            )
            self.target_pairs = ()
        if self.direction is MANY_TO_ONE:
            self.reads = tuple(dest for _, dest in self.pairs)
            self.matches = tuple(source for source, _ in self.pairs)
        else:
            self.reads = tuple(source for source, _ in self.pairs)
            self.matches = tuple(dest for _, dest in self.pairs)
        self.read = _reader(self.reads)
        self.target_reads = tuple(source for source, _ in self.target_pairs)
        self.order = _order(name, prop)
        self.sorts = tuple(
            (nulls_first(_loaded(field)), descending) for field, descending in reversed(self.order)
        )

    @property
    def one_to_many(self) -> bool:
        """Whether the target rows hold the foreign key (one-to-many or one-to-one)."""
        return self.direction is ONE_TO_MANY

    @property
    def many_to_one(self) -> bool:
        """Whether this model's row holds the foreign key."""
        return self.direction is MANY_TO_ONE

    @property
    def many_to_many(self) -> bool:
        """Whether a secondary table holds the pairs."""
        return self.direction is MANY_TO_MANY

    def sort(self, items: list[Any]) -> None:
        """Order loaded targets as the relationship's ``order_by`` does (stable)."""
        if len(items) > 1:
            for key, descending in self.sorts:
                items.sort(key=key, reverse=descending)


def _reader(fields: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A function giving a row's values of ``fields``, as a tuple (a fast path for one)."""
    if len(fields) == 1:
        (field,) = fields
        return lambda row: (row[field],)
    return lambda row: tuple([row[name] for name in fields])


def nulls_first(read: Callable[[Any], Any]) -> Callable[[Any], tuple[bool, Any]]:
    """A sort key on what ``read`` gives, a missing value (``None``) before any other."""

    def key(item: Any) -> tuple[bool, Any]:
        value = read(item)
        return (value is not None, value)

    return key


def _loaded(field: str) -> Callable[[Any], Any]:
    """A reader of ``field`` of a mapped object, from its dict when loaded there."""

    def read(item: Any) -> Any:
        loaded = item.__dict__
        return loaded[field] if field in loaded else getattr(item, field)

    return read


def _field(mapper: Any, column: Any) -> str:
    try:
        return str(mapper.get_property_by_column(column).key)
    except sa.orm.exc.UnmappedColumnError:
        raise ConfigurationError(
            f"{mapper.class_.__name__} does not map the column {column} that one of its "
            "relationships joins on; the in-memory repositories join on mapped columns only"
        ) from None


def _order(name: str, prop: Any) -> tuple[tuple[str, bool], ...]:
    if not prop.order_by:
        return ()
    pairs = []
    for clause in prop.order_by:
        descending = False
        element = clause
        if isinstance(element, elements.UnaryExpression):
            descending = element.modifier is operators.desc_op
            element = element.element
        if not isinstance(element, sa.Column):
            raise ConfigurationError(
                f"{name} is ordered by {clause}, an expression the in-memory repositories "
                "cannot evaluate; order it by columns, or test it against SQLite"
            )
        pairs.append((_field(prop.mapper, element), descending))
    return tuple(pairs)


def _plain_join(clause: Any) -> bool:
    """Whether ``clause`` is ``a.x = b.y [AND ...]`` between columns only."""
    if isinstance(clause, elements.BooleanClauseList) and clause.operator is operator.and_:
        return all(_plain_join(part) for part in clause.clauses)
    return (
        isinstance(clause, elements.BinaryExpression)
        and clause.operator is operator.eq
        and isinstance(clause.left, sa.Column)
        and isinstance(clause.right, sa.Column)
    )


def _refuse_unsupported(name: str, prop: Any) -> None:
    reason = None
    if prop.lazy in {"dynamic", "write_only"}:
        reason = f"its loader is lazy={prop.lazy!r} (a query per access)"
    elif not _plain_join(prop.primaryjoin) or (
        prop.secondaryjoin is not None and not _plain_join(prop.secondaryjoin)
    ):
        reason = "it joins on an expression, not on equal columns"
    elif prop.post_update:
        reason = "it is written by a second UPDATE (post_update)"
    elif prop.uselist and prop.collection_class not in {None, list, set}:
        reason = "its collection is neither a list nor a set"
    elif prop.secondary is not None and prop.direction is not MANY_TO_MANY:
        reason = "it goes through a secondary table in a way other than many-to-many"
    if reason is not None:
        raise ConfigurationError(
            f"the in-memory repositories cannot reproduce the relationship {name}: {reason}, "
            "which only the database can evaluate; test it against SQLite instead "
            "(SqlAlchemyUnitOfWork on sqlite:///:memory:)"
        )


_LINKS: dict[type[Any], tuple[Link, ...]] = {}


def links_of(model: type[Any]) -> tuple[Link, ...]:
    """The relationships of ``model`` as `Link` objects (read once).

    Raises:
        ConfigurationError: A relationship the twin cannot carry out, named.
    """
    found = _LINKS.get(model)
    if found is None:
        mapper = sa.inspect(model)
        found = _LINKS[model] = tuple(Link(model, prop) for prop in mapper.relationships)
    return found


class Owner(NamedTuple):
    """A relationship that holds a model as a part, read without judging it.

    Unlike a `Link`, reading one refuses nothing: the SQL repositories read the
    owners of every model they flush, whatever its relationships.
    """

    model: type[Any]
    """The owning model."""
    sources: tuple[str, ...]
    """The owner's fields the part's foreign key names."""
    dests: tuple[str, ...]
    """The part's foreign-key fields."""
    reverse: str | None
    """The part's many-to-one relationship back to the owner over the same key, if any."""


_OWNERS: dict[type[Any], tuple[Owner, ...]] = {}


def owners_of(model: type[Any]) -> tuple[Owner, ...]:
    """The relationships that hold ``model`` as a part: one-to-many with save-update.

    A many-to-one relationship points at another aggregate and a many-to-many
    one at independent entities, so neither makes its target a part.
    """
    found = _OWNERS.get(model)
    if found is None:
        mapper = sa.inspect(model)
        owners = []
        for other in mapper.registry.mappers:
            for prop in other.relationships:
                if (
                    prop.mapper is not mapper
                    or prop.direction is not ONE_TO_MANY
                    or not prop.cascade.save_update
                    or prop.viewonly
                ):
                    continue
                pairs = _pairs_of(other, mapper, prop)
                reverse = next(
                    (
                        back.key
                        for back in mapper.relationships
                        if back.direction is MANY_TO_ONE
                        and back.mapper is other
                        and _pairs_of(other, mapper, back) == pairs
                    ),
                    None,
                )
                owners.append(
                    Owner(
                        other.class_,
                        tuple(source for source, _ in pairs),
                        tuple(dest for _, dest in pairs),
                        reverse,
                    )
                )
        found = _OWNERS[model] = tuple(owners)
    return found


def _pairs_of(owner: Any, part: Any, prop: Any) -> tuple[tuple[str, str], ...]:
    return tuple((_field(owner, a), _field(part, b)) for a, b in prop.synchronize_pairs)


def parts_path(model: type[Any], path: object) -> list[Any]:
    """The relationship properties a dotted ``path`` (``"batches.allocations"``) walks.

    Raises:
        QueryError: ``path`` is not text, or a step is not a relationship of the
            model it starts from.
    """
    from buttress.errors import QueryError  # noqa: PLC0415 - errors import nothing back

    steps = path.split(".") if isinstance(path, str) else []
    if not steps or not all(steps):
        raise QueryError(
            f"{path!r} is not a relationship path: name relationships joined by dots, "
            "such as 'batches' or 'batches.allocations'"
        )
    props = []
    current = model
    for step in steps:
        mapper = sa.inspect(current)
        prop = mapper.relationships.get(step)
        if prop is None:
            names = ", ".join(sorted(mapper.relationships.keys())) or "none"
            raise QueryError(
                f"{current.__name__} has no relationship {step!r} (in the path {path!r}); "
                f"its relationships are: {names}"
            )
        props.append(prop)
        current = prop.mapper.class_
    return props


def link_of(model: type[Any], key: str) -> Link:
    """The `Link` of ``model`` named ``key`` (read with all of the model's links)."""
    for link in links_of(model):
        if link.key == key:
            return link
    raise KeyError(key)  # pragma: no cover - callers check the path first


_LOADS: dict[tuple[type[Any], tuple[str, ...]], tuple[Any, ...]] = {}


def check_load(model: type[Any], load: object) -> tuple[str, ...]:
    """``load`` as a tuple of relationship paths of ``model``, each checked.

    Raises:
        QueryError: ``load`` is not a path or a sequence of paths, or names a
            relationship the model does not map.
    """
    if isinstance(load, str):
        paths: tuple[str, ...] = (load,)
    elif isinstance(load, (list, tuple)):
        paths = tuple(load)
    else:
        from buttress.errors import QueryError  # noqa: PLC0415 - errors import nothing back

        raise QueryError(
            f"load= takes relationship paths, such as 'batches' or "
            f"('batches', 'batches.allocations'); got {load!r}"
        )
    if paths and (model, paths) not in _LOADS:
        _LOADS[model, paths] = _options(model, paths)
    return paths


def load_options(model: type[Any], paths: tuple[str, ...]) -> tuple[Any, ...]:
    """The eager-loading options that load ``paths`` (checked by `check_load`)."""
    if not paths:
        return ()
    found = _LOADS.get((model, paths))
    if found is None:
        found = _LOADS[model, paths] = _options(model, paths)
    return found


def _options(model: type[Any], paths: tuple[str, ...]) -> tuple[Any, ...]:
    """One ``selectinload`` chain per path: one statement per relationship, no N+1."""
    options = []
    for path in paths:
        props = parts_path(model, path)
        option = sa.orm.selectinload(props[0].class_attribute)
        for prop in props[1:]:
            option = option.selectinload(prop.class_attribute)
        options.append(option)
    return tuple(options)


def loaded(entity: Any, paths: tuple[str, ...]) -> bool:
    """Whether every relationship along ``paths`` is loaded on ``entity`` already."""
    for path in paths:
        level = [entity]
        for step in path.split("."):
            following: list[Any] = []
            for item in level:
                value = sa.inspect(item).dict.get(step, _MISSING)
                if value is _MISSING:
                    return False
                if value is None:
                    continue
                following.extend(value if isinstance(value, (list, set)) else [value])
            level = following
    return True


_MISSING: Final = object()
