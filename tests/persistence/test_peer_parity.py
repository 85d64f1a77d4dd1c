"""What a user of advanced-alchemy's repositories relies on, re-expressed on Buttress's.

Each test names the advanced-alchemy method (``SQLAlchemySyncRepository`` /
``SQLAlchemyAsyncRepository``, 1.12) and, where there is one, the test of its own
suite that pins the behaviour, then asks the same of Buttress's public API on every
backend: the in-memory twin, SQLite and PostgreSQL. Where it is cheap, the same
scenario also runs through advanced-alchemy on SQLite, to show both answer alike, or
to show where Buttress answers differently on purpose (the section "Coming from
advanced-alchemy" of ``docs/persistence.md`` lists those differences).
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from persistence_backends import BACKENDS, own_units
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from buttress.domain import F
from buttress.errors import NotFoundError, QueryError
from buttress.testing import ContractSetting

with warnings.catch_warnings():
    # advanced-alchemy 1.12 marks its mixins with declarative_mixin, deprecated in SQLAlchemy 2.1
    warnings.simplefilter("ignore", sa.exc.SADeprecationWarning)
    from advanced_alchemy.exceptions import IntegrityError as PeerIntegrityError
    from advanced_alchemy.exceptions import MultipleResultsFoundError
    from advanced_alchemy.exceptions import NotFoundError as PeerNotFoundError
    from advanced_alchemy.filters import LimitOffset, OrderBy
    from advanced_alchemy.repository import SQLAlchemySyncRepository


class Base(DeclarativeBase):
    pass


class Author(Base):
    """An entity with a generated integer key, as advanced-alchemy's test ``Author``."""

    __tablename__ = "parity_author"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(40), unique=True)
    rating: Mapped[int] = mapped_column(default=3)
    genre: Mapped[str | None] = mapped_column(sa.String(20))


class UserRole(Base):
    """A composite primary key, as advanced-alchemy's test ``UserRole``."""

    __tablename__ = "parity_user_role"
    user_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    role_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    is_active: Mapped[bool] = mapped_column(default=True)


class Ledger(Base):
    """A versioned model: optimistic locking through SQLAlchemy's ``version_id_col``."""

    __tablename__ = "parity_ledger"
    id: Mapped[int] = mapped_column(primary_key=True)
    balance: Mapped[int] = mapped_column(default=0)
    version: Mapped[int] = mapped_column(nullable=False)
    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy's spelling


AUTHORS = [("Agatha Christie", 5, "crime"), ("Leo Tolstoy", 4, "novel"), ("Jane Austen", 4, None)]
"""Seeded in this order, so their keys are 1, 2 and 3."""

ROLES = [(1, 10, True), (1, 20, True), (2, 10, False)]


def seeded_authors() -> list[Author]:
    return [Author(name=name, rating=rating, genre=genre) for name, rating, genre in AUTHORS]


def seeded_roles() -> list[UserRole]:
    return [UserRole(user_id=u, role_id=r, is_active=active) for u, r, active in ROLES]


@pytest.fixture(params=BACKENDS)
def units(request: pytest.FixtureRequest, tmp_path) -> Iterator[Callable[[], Any]]:
    """Units of work over the seeded authors and roles, on each backend."""
    for make, _engine in own_units(request, tmp_path, Base.metadata):
        with make() as uow:
            uow.repository(Author).add_many(seeded_authors())
            uow.repository(UserRole).add_many(seeded_roles())
            uow.commit()
        yield make


class AuthorPeer(SQLAlchemySyncRepository[Author]):
    model_type = Author


class UserRolePeer(SQLAlchemySyncRepository[UserRole]):
    model_type = UserRole


class LedgerPeer(SQLAlchemySyncRepository[Ledger]):
    model_type = Ledger


@pytest.fixture
def peer() -> Iterator[Session]:
    """A session on SQLite in memory holding the same rows, for advanced-alchemy's repositories."""
    engine = sa.create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all(seeded_authors())
        session.flush()  # keys 1, 2, 3 in seeding order, as the units assign them
        session.add_all(seeded_roles())
        session.commit()
        yield session
    engine.dispose()


def names(entities: list[Author]) -> list[str]:
    return [author.name for author in entities]


# --- reading: count, find, find_and_count, exists ---------------------------------------


def test_count_counts_all_or_those_a_filter_selects(units, peer):
    """``count()`` and ``count(*filters)``: test_repo_count_method and _with_filters."""
    with units() as uow:
        authors = uow.repository(Author, int)
        assert authors.count() == 3
        assert authors.count(F("name") == "Agatha Christie") == 1
        assert authors.count(F("genre").is_none()) == 1
        assert authors.count(F("rating") > 5) == 0
    repo = AuthorPeer(session=peer)
    assert repo.count() == 3
    assert repo.count(Author.name == "Agatha Christie") == 1
    assert repo.count(Author.genre.is_(None)) == 1


def test_find_returns_what_a_filter_selects(units, peer):
    """``get_many(*filters)`` (formerly ``list``): test_repo_list_method_with_filters."""
    with units() as uow:
        found = uow.repository(Author, int).find(F("name") == "Agatha Christie")
        assert names(found) == ["Agatha Christie"]
    assert names(AuthorPeer(session=peer).get_many(Author.name == "Agatha Christie")) == [
        "Agatha Christie"
    ]


def test_find_orders_by_a_field(units, peer):
    """``get_many(OrderBy(...))``: test_repo_filter_order_by, test_order_by_filter."""
    expected = ["Agatha Christie", "Jane Austen", "Leo Tolstoy"]
    with units() as uow:
        authors = uow.repository(Author, int)
        assert names(authors.find(order_by="name")) == expected
        assert names(authors.find(order_by="-name")) == expected[::-1]
        # equal ratings: the key breaks the tie, so every backend returns one order
        assert names(authors.find(order_by="-rating")) == [
            "Agatha Christie",
            "Leo Tolstoy",
            "Jane Austen",
        ]
    repo = AuthorPeer(session=peer)
    assert names(repo.get_many(OrderBy(field_name="name"))) == expected
    assert names(repo.get_many(OrderBy(field_name="name", sort_order="desc"))) == expected[::-1]


@pytest.mark.parametrize(
    ("limit", "offset", "window"),
    [
        (2, 0, ["Agatha Christie", "Jane Austen"]),
        (2, 1, ["Jane Austen", "Leo Tolstoy"]),  # test_limit_offset_filter: limit 2, offset 1
        (1, 2, ["Leo Tolstoy"]),
        (5, 0, ["Agatha Christie", "Jane Austen", "Leo Tolstoy"]),  # limit past the end
        (2, 3, []),  # offset at the end
        (2, 10, []),  # offset past the end
        (0, 0, []),  # limit 0
    ],
    ids=[
        "first-page",
        "offset-1",
        "last-row",
        "limit-past-end",
        "offset-at-end",
        "offset-past-end",
        "limit-0",
    ],
)
def test_find_windows_the_ordered_rows(units, peer, limit, offset, window):
    """``get_many(LimitOffset(limit, offset), OrderBy(...))``: test_limit_offset_filter,
    test_service_paginated_list; the edges (limit 0, offset past the end) give no rows."""
    with units() as uow:
        found = uow.repository(Author, int).find(order_by="name", limit=limit, offset=offset)
        assert names(found) == window
    repo = AuthorPeer(session=peer)
    assert names(repo.get_many(LimitOffset(limit, offset), OrderBy(field_name="name"))) == window


def test_find_and_count_counts_every_match_whatever_the_window(units, peer):
    """``get_many_and_count`` (formerly ``list_and_count``) returns the count "ignoring
    pagination": test_repo_list_and_count_method, test_sqlalchemy_repo_list_and_count."""
    with units() as uow:
        authors = uow.repository(Author, int)
        window, total = authors.find_and_count(order_by="name", limit=1, offset=1)
        assert (names(window), total) == (["Jane Austen"], 3)
        window, total = authors.find_and_count(F("rating") == 4, order_by="name", limit=1)
        assert (names(window), total) == (["Jane Austen"], 2)
        assert authors.find_and_count() == (authors.find(), 3)
    repo = AuthorPeer(session=peer)
    window, total = repo.get_many_and_count(LimitOffset(1, 1), OrderBy(field_name="name"))
    assert (names(window), total) == (["Jane Austen"], 3)
    window, total = repo.get_many_and_count(
        Author.rating == 4, LimitOffset(1, 0), OrderBy(field_name="name")
    )
    assert (names(window), total) == (["Jane Austen"], 2)


@pytest.mark.parametrize(
    ("limit", "offset"),
    [(2, 3), (2, 10), (0, 0)],
    ids=["offset-at-end", "offset-past-end", "limit-0"],
)
def test_find_and_count_counts_every_match_even_for_an_empty_window(units, peer, limit, offset):
    """``get_many_and_count`` counts with a window function by default (``COUNT(*) OVER
    ()``), which has no row to ride on when the window is empty: the total comes back 0.
    With ``count_with_window_function=False`` it runs a second query and gets the total.
    Buttress always gives the total, so a pager past the last page still shows it."""
    with units() as uow:
        window, total = uow.repository(Author, int).find_and_count(limit=limit, offset=offset)
        assert (window, total) == ([], 3)
    repo = AuthorPeer(session=peer)
    assert repo.get_many_and_count(LimitOffset(limit, offset)) == ([], 0)  # the difference
    assert repo.get_many_and_count(
        LimitOffset(limit, offset), count_with_window_function=False
    ) == (
        [],
        3,
    )


def test_exists_answers_for_a_filter(units, peer):
    """``exists(**kwargs)`` / ``exists(*filters)``: test_repo_exists_method (an existing and
    a missing key), test_sqlalchemy_repo_exists_with_filter."""
    with units() as uow:
        authors = uow.repository(Author, int)
        assert authors.exists(F("id") == 1) is True
        assert authors.exists(F("id") == 99999) is False
        assert authors.exists(F("genre").is_none() & (F("rating") == 4)) is True
        assert authors.exists(F("rating") > 5) is False
        assert authors.exists() is True
        authors.remove_many(F("id") > 0)
        assert authors.exists() is False
    repo = AuthorPeer(session=peer)
    assert repo.exists(id=1) is True
    assert repo.exists(id=99999) is False
    assert repo.exists(Author.genre.is_(None), Author.rating == 4) is True


# --- reading one: get, get_or_none, get_by, first ----------------------------------------


def test_get_returns_the_entity_with_the_key_or_raises_not_found(units, peer):
    """``get(item_id)``: test_repo_get_method; a missing key raises ``NotFoundError``."""
    with units() as uow:
        authors = uow.repository(Author, int)
        assert authors.get(1).name == "Agatha Christie"
        with pytest.raises(NotFoundError):
            authors.get(99999)
        assert authors.get_or_none(99999) is None
    repo = AuthorPeer(session=peer)
    assert repo.get(1).name == "Agatha Christie"
    with pytest.raises(PeerNotFoundError):
        repo.get(99999)


def test_get_by_returns_the_one_match(units, peer):
    """``get_one(*filters, **kwargs)``: test_sqlalchemy_repo_get_one_member; Buttress
    spells it ``get_by(spec)``."""
    with units() as uow:
        assert uow.repository(Author, int).get_by(F("name") == "Leo Tolstoy").id == 2
    assert AuthorPeer(session=peer).get_one(name="Leo Tolstoy").id == 2


def test_get_by_raises_not_found_when_nothing_matches(units, peer):
    """``get_one`` on no row raises ``NotFoundError`` (its ``check_not_found``)."""
    with units() as uow, pytest.raises(NotFoundError):
        uow.repository(Author, int).get_by(F("rating") > 5)
    with pytest.raises(PeerNotFoundError):
        AuthorPeer(session=peer).get_one(Author.rating > 5)


def test_get_by_refuses_several_matches(units, peer):
    """``get_one`` on several rows raises ``MultipleResultsFoundError`` (pinned by
    test_unique_mixin); Buttress raises `QueryError`, as for any query that cannot be
    answered as asked."""
    with units() as uow, pytest.raises(QueryError, match="several"):
        uow.repository(Author, int).get_by(F("rating") == 4)
    with pytest.raises(MultipleResultsFoundError):
        AuthorPeer(session=peer).get_one(rating=4)


def test_first_or_none_for_one_or_none(units, peer):
    """``get_one_or_none``: test_repo_get_one_or_none_method and
    test_sqlalchemy_repo_get_one_or_none_not_found.

    Buttress has no ``get_by_or_none``: ``first(spec)`` answers ``None`` when nothing
    matches and, unlike ``get_one_or_none``, the first in order when several do.
    """
    with units() as uow:
        authors = uow.repository(Author, int)
        assert authors.first(F("id") == 1).name == "Agatha Christie"
        assert authors.first(F("id") == 99999) is None
        assert authors.first(F("rating") == 4, order_by="name").name == "Jane Austen"
    repo = AuthorPeer(session=peer)
    assert repo.get_one_or_none(id=1).name == "Agatha Christie"
    assert repo.get_one_or_none(id=99999) is None
    with pytest.raises(MultipleResultsFoundError):
        repo.get_one_or_none(rating=4)


# --- writing: add, add_many, remove, remove_many -----------------------------------------


def test_add_returns_the_entity_with_its_key_and_defaults(units, peer):
    """``add(data)``: test_sqlalchemy_repo_add, test_repo_create_method (the count grows)."""
    with units() as uow:
        authors = uow.repository(Author, int)
        added = authors.add(Author(name="Test Author"))
        assert (added.id, added.rating, added.genre) == (4, 3, None)
        assert authors.count() == 4
        uow.commit()
    with units() as uow:
        assert uow.repository(Author, int).get(4).name == "Test Author"
    repo = AuthorPeer(session=peer)
    added = repo.add(Author(name="Test Author"))
    assert (added.id, added.rating, added.genre) == (4, 3, None)
    assert repo.count() == 4


def test_add_many_returns_the_entities_with_their_keys(units, peer):
    """``add_many(data)``: test_sqlalchemy_repo_add_many."""
    with units() as uow:
        added = uow.repository(Author, int).add_many([Author(name="A"), Author(name="B")])
        assert [(a.id, a.name) for a in added] == [(4, "A"), (5, "B")]
    added = AuthorPeer(session=peer).add_many([Author(name="A"), Author(name="B")])
    assert [(a.id, a.name) for a in added] == [(4, "A"), (5, "B")]


def test_remove_deletes_the_loaded_entity(units, peer):
    """``delete(item_id)``: test_repo_delete_method. Buttress's ``remove`` takes the entity,
    loaded by this unit of work (so its version is checked), and returns nothing."""
    with units() as uow:
        authors = uow.repository(Author, int)
        assert authors.remove(authors.get(1)) is None
        assert [a.id for a in authors.find()] == [2, 3]
        uow.commit()
    with units() as uow:
        assert uow.repository(Author, int).get_or_none(1) is None
    repo = AuthorPeer(session=peer)
    assert repo.delete(1).id == 1
    assert [a.id for a in repo.get_many()] == [2, 3]


def test_remove_refuses_an_entity_the_unit_did_not_load(units):
    """``delete(item_id)`` loads the row itself; Buttress's ``remove`` wants the loaded
    entity and refuses a look-alike, so a removal is always checked against what was read."""
    with units() as uow, pytest.raises(QueryError):
        uow.repository(Author, int).remove(Author(id=1, name="Agatha Christie"))


def test_remove_many_removes_exactly_the_matches_and_says_how_many(units, peer):
    """``delete_where(*filters)`` returns the deleted instances; Buttress's
    ``remove_many(spec)`` returns how many it removed."""
    with units() as uow:
        authors = uow.repository(Author, int)
        assert authors.remove_many(F("rating") == 4) == 2
        assert names(authors.find()) == ["Agatha Christie"]
        assert authors.remove_many(F("rating") == 4) == 0  # nothing left to match
        uow.commit()
    with units() as uow:
        assert [a.id for a in uow.repository(Author, int).find()] == [1]
    repo = AuthorPeer(session=peer)
    assert sorted(names(repo.delete_where(Author.rating == 4))) == ["Jane Austen", "Leo Tolstoy"]
    assert names(repo.get_many()) == ["Agatha Christie"]


def test_remove_many_by_keys_removes_those_rows(units, peer):
    """``delete_many(item_ids)``: test_sqlalchemy_repo_delete_many_bigint; Buttress
    spells it ``remove_many(F("id").in_(ids))``."""
    with units() as uow:
        authors = uow.repository(Author, int)
        assert authors.remove_many(F("id").in_([1, 3, 99])) == 2
        assert [a.id for a in authors.find()] == [2]
    repo = AuthorPeer(session=peer)
    assert len(repo.delete_many([1, 3])) == 2
    assert [a.id for a in repo.get_many()] == [2]


def test_a_change_to_a_loaded_entity_is_stored_on_commit(units, peer):
    """``update(data)``: test_repo_update_method (change the loaded author, then update),
    test_composite_pk_update. Buttress has no ``update``: the unit of work stores the
    changes of the entities it loaded when it commits (and queries see them before)."""
    with units() as uow:
        authors = uow.repository(Author, int)
        author = authors.find()[0]
        author.name = "Updated Name"
        assert authors.get_by(F("name") == "Updated Name") is author
        role = uow.repository(UserRole).get((1, 10))
        role.is_active = False
        uow.commit()
    with units() as uow:
        assert uow.repository(Author, int).get(1).name == "Updated Name"
        assert uow.repository(UserRole).get((1, 10)).is_active is False
    repo = AuthorPeer(session=peer)
    author = repo.get_many()[0]
    author.name = "Updated Name"
    assert repo.update(author).name == "Updated Name"


# --- upsert ----------------------------------------------------------------------------


def test_upsert_inserts_then_updates_and_returns_the_stored_state(units, peer):
    """``upsert(data)``: test_sqlalchemy_repo_upsert; it creates the row when its key is
    free, updates it otherwise, and returns the entity holding the stored values."""
    with units() as uow:
        authors = uow.repository(Author, int)
        created = authors.upsert(Author(id=9, name="New", rating=2))
        assert (created.id, created.name, created.rating) == (9, "New", 2)
        updated = authors.upsert(Author(id=9, name="Renamed", rating=1, genre="poetry"))
        assert (updated.id, updated.name, updated.rating, updated.genre) == (
            9,
            "Renamed",
            1,
            "poetry",
        )
        assert authors.get(9) is updated
        assert authors.count() == 4
        uow.commit()
    with units() as uow:
        assert uow.repository(Author, int).get(9).name == "Renamed"
    repo = AuthorPeer(session=peer)
    assert repo.upsert(Author(id=9, name="New", rating=2)).name == "New"
    updated = repo.upsert(Author(id=9, name="Renamed", rating=1, genre="poetry"))
    assert (updated.name, updated.rating, updated.genre) == ("Renamed", 1, "poetry")
    assert repo.count() == 4


def test_upsert_writes_every_column_not_only_those_set(units, peer):
    """``upsert(data)`` on a stored row copies only the attributes set on ``data`` (a
    partial update). Buttress's upsert stores the entity as given: a field left unset
    takes its column's default, as on insert, and a field without one becomes ``NULL``,
    so the stored row is the same whether the key was free or taken."""
    with units() as uow:
        authors = uow.repository(Author, int)
        upserted = authors.upsert(Author(id=1, name="Agatha"))
        assert (upserted.name, upserted.rating, upserted.genre) == ("Agatha", 3, None)
    repo = AuthorPeer(session=peer)
    upserted = repo.upsert(Author(id=1, name="Agatha"))
    assert (upserted.name, upserted.rating, upserted.genre) == ("Agatha", 5, "crime")
    with pytest.raises(PeerIntegrityError):  # and a None it copies as NULL
        repo.upsert(Author(id=1, name="Agatha", rating=None))


def test_upsert_refuses_an_entity_without_its_key(units, peer):
    """``upsert(data)`` without a key matches a stored row on every other field set (or on
    ``match_fields``). Buttress's upsert is keyed on the primary key alone and refuses an
    entity without one: ``add`` generates keys."""
    with units() as uow, pytest.raises(QueryError):
        uow.repository(Author, int).upsert(Author(name="Agatha Christie", rating=1))
    repo = AuthorPeer(session=peer)
    assert repo.upsert(Author(name="Agatha Christie", rating=5)).id == 1  # matched on name


@pytest.fixture(params=BACKENDS)
def ledger_units(request: pytest.FixtureRequest, tmp_path) -> Iterator[Callable[[], Any]]:
    for make, _engine in own_units(request, tmp_path, Base.metadata):
        with make() as uow:
            uow.repository(Ledger, int).add(Ledger(balance=10))
            uow.commit()
        yield make


def test_upsert_refuses_a_versioned_model(ledger_units, peer):
    """``upsert(data)`` merges over the stored row whatever its version. Buttress refuses
    a model with a version column: an upsert writes over whatever is stored, which is what
    the version check is there to prevent."""
    with ledger_units() as uow:
        ledgers = uow.repository(Ledger, int)
        with pytest.raises(QueryError, match="version column"):
            ledgers.upsert(Ledger(id=1, balance=99))
        assert ledgers.get(1).balance == 10
    repo = LedgerPeer(session=peer)
    repo.add(Ledger(balance=10))
    assert repo.upsert(Ledger(id=1, balance=99)).balance == 99  # written over, unchecked


# --- composite primary keys --------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [(1, 10), {"user_id": 1, "role_id": 10}, {"role_id": 10, "user_id": 1}],
    ids=["tuple", "mapping", "mapping-reordered"],
)
def test_a_composite_key_is_a_tuple_or_a_mapping(units, peer, key):
    """``get`` with a composite key: test_composite_pk_get_by_tuple, _get_by_dict."""
    with units() as uow:
        role = uow.repository(UserRole).get(key)
        assert (role.user_id, role.role_id, role.is_active) == (1, 10, True)
    role = UserRolePeer(session=peer).get(key)
    assert (role.user_id, role.role_id, role.is_active) == (1, 10, True)


def test_a_missing_composite_key_is_not_found(units, peer):
    """test_composite_pk_get_not_found."""
    with units() as uow:
        roles = uow.repository(UserRole)
        with pytest.raises(NotFoundError):
            roles.get((999, 999))
        assert roles.get_or_none({"user_id": 999, "role_id": 999}) is None
    with pytest.raises(PeerNotFoundError):
        UserRolePeer(session=peer).get((999, 999))


def test_count_and_find_over_a_composite_key(units, peer):
    """test_composite_pk_count, test_composite_pk_list; rows come in key order."""
    with units() as uow:
        roles = uow.repository(UserRole)
        assert roles.count() == 3
        assert [(r.user_id, r.role_id) for r in roles.find()] == [(1, 10), (1, 20), (2, 10)]
        assert roles.count(F("is_active") == True) == 2  # noqa: E712 - a specification
    repo = UserRolePeer(session=peer)
    assert repo.count() == 3
    assert len(repo.get_many()) == 3


def test_remove_by_composite_keys(units, peer):
    """``delete`` / ``delete_many`` by tuples or mappings: test_composite_pk_delete_by_tuple,
    _delete_by_dict, _delete_many_by_tuples. Buttress loads then removes, or removes what a
    specification selects."""
    with units() as uow:
        roles = uow.repository(UserRole)
        roles.remove(roles.get({"user_id": 2, "role_id": 10}))
        assert roles.remove_many((F("user_id") == 1) & F("role_id").in_([10, 20])) == 2
        assert roles.count() == 0
        uow.commit()
    with units() as uow:
        assert uow.repository(UserRole).get_or_none((1, 10)) is None
    repo = UserRolePeer(session=peer)
    assert repo.delete({"user_id": 2, "role_id": 10}).user_id == 2
    assert len(repo.delete_many([(1, 10), (1, 20)])) == 2
    assert repo.count() == 0


def test_upsert_over_a_composite_key(units, peer):
    """test_composite_pk_upsert_update and test_composite_pk_upsert_create."""
    with units() as uow:
        roles = uow.repository(UserRole)
        updated = roles.upsert(UserRole(user_id=1, role_id=10, is_active=False))
        assert (updated.user_id, updated.role_id, updated.is_active) == (1, 10, False)
        created = roles.upsert(UserRole(user_id=99, role_id=99, is_active=True))
        assert (created.user_id, created.role_id, created.is_active) == (99, 99, True)
        uow.commit()
    with units() as uow:
        roles = uow.repository(UserRole)
        assert roles.get((1, 10)).is_active is False
        assert roles.get((99, 99)).is_active is True
    repo = UserRolePeer(session=peer)
    assert repo.upsert(UserRole(user_id=1, role_id=10, is_active=False)).is_active is False
    assert repo.upsert(UserRole(user_id=99, role_id=99, is_active=True)).is_active is True
    assert repo.get((1, 10)).is_active is False


@pytest.mark.parametrize("key", [(1, 2), (1,), {"id": 1}], ids=["tuple", "one-tuple", "mapping"])
def test_a_single_key_given_as_a_composite_one_is_refused(units, peer, key):
    """test_single_pk_with_tuple_raises_error / _with_dict_raises_error: a tuple or a
    mapping given for a single-column key is refused (advanced-alchemy's ``ValueError``,
    Buttress's `QueryError`), before any SQL is sent."""
    with units() as uow, pytest.raises(QueryError, match="Author.id is an int key"):
        uow.repository(Author, int).get(key)
    with pytest.raises(ValueError, match="single primary key"):
        AuthorPeer(session=peer).get(key)


# --- get_or_upsert ---------------------------------------------------------------------


def test_get_or_create_by_a_unique_field(units, peer):
    """``get_or_upsert(match_fields=..., **kwargs)`` returns ``(instance, created)``: the
    row matching ``match_fields``, updated with ``kwargs``, or a new one. Buttress has no
    such method: read with ``first`` (or ``get_or_none`` by key), then change what was
    loaded or ``add`` a new entity, so the change is version-checked like any other."""

    def get_or_create(authors: Any, name: str, rating: int) -> tuple[Author, bool]:
        found = authors.first(F("name") == name)
        if found is None:
            return authors.add(Author(name=name, rating=rating)), True
        found.rating = rating
        return found, False

    with units() as uow:
        authors = uow.repository(Author, int)
        agatha, created = get_or_create(authors, "Agatha Christie", 1)
        assert (agatha.id, agatha.rating, created) == (1, 1, False)
        new, created = get_or_create(authors, "New", 2)
        assert (new.id, new.rating, created) == (4, 2, True)
        uow.commit()
    with units() as uow:
        assert uow.repository(Author, int).get(1).rating == 1
    repo = AuthorPeer(session=peer)
    agatha, created = repo.get_or_upsert(match_fields="name", name="Agatha Christie", rating=1)
    assert (agatha.id, agatha.rating, created) == (1, 1, False)
    new, created = repo.get_or_upsert(match_fields="name", name="New", rating=2)
    assert (new.id, new.rating, created) == (4, 2, True)


# --- the same on asyncio ---------------------------------------------------------------


@pytest_asyncio.fixture
async def settings(make_async_uow) -> AsyncIterator[Callable[..., Any]]:
    """Async units (twin, aiosqlite, asyncpg, psycopg) over three seeded settings."""
    async with make_async_uow() as uow:
        await uow.repository(ContractSetting, str).add_many(
            [
                ContractSetting(name="a", value="x", priority=1),
                ContractSetting(name="b", value="y", priority=2),
                ContractSetting(name="c", value="y", priority=2),
            ]
        )
        await uow.commit()
    yield make_async_uow


@pytest.mark.asyncio
async def test_async_repositories_answer_as_the_sync_ones(settings):
    """``SQLAlchemyAsyncRepository``: the same methods, awaited; the behaviours above on
    every asyncio backend."""
    async with settings() as uow:
        repo = uow.repository(ContractSetting, str)
        assert await repo.count(F("value") == "y") == 2
        assert await repo.exists(F("priority") > 1) is True
        window, total = await repo.find_and_count(order_by="name", limit=1, offset=1)
        assert ([s.name for s in window], total) == (["b"], 3)
        assert await repo.find_and_count(limit=2, offset=10) == ([], 3)
        assert await repo.find(limit=0) == []
        assert (await repo.get_by(F("name") == "a")).priority == 1
        with pytest.raises(NotFoundError):
            await repo.get_by(F("priority") > 2)
        with pytest.raises(QueryError, match="several"):
            await repo.get_by(F("value") == "y")
        assert await repo.first(F("priority") > 2) is None
        created = await repo.upsert(ContractSetting(name="d", value="z", priority=4))
        assert (created.name, created.value, created.priority) == ("d", "z", 4)
        updated = await repo.upsert(ContractSetting(name="d", value="w"))
        assert (updated.value, updated.priority) == ("w", 5)  # unset: the column default
        assert await repo.remove_many(F("value") == "y") == 2
        await uow.commit()
    async with settings() as uow:
        assert [s.name for s in await uow.repository(ContractSetting, str).find()] == ["a", "d"]
