"""Persistence: what a repository and a unit of work add to plain SQLAlchemy sessions.

Every group runs on SQLite (a file in a temporary directory) and on PostgreSQL
(psycopg, in a schema of its own that is dropped afterwards), as two groups:
``persistence.<hot-path>-sqlite`` and ``persistence.<hot-path>-postgres``, each
with its own baseline, since a database round trip dwarfs any difference
between the two backends' rows. PostgreSQL is ``BUTTRESS_TEST_POSTGRES_URL``
(default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``); its groups
skip with a message when it cannot be reached, and fail instead when ``CI=true``.
Commits do not wait for the disk (``PRAGMA synchronous=OFF`` on SQLite,
``synchronous_commit=off`` on PostgreSQL): the fsync is the same for every row
of a group, and on a small shared machine its jitter drowns the differences
under test.

The data: `SEEDED` rows of `Item` (an integer key, an indexed int ``n`` with
each value twice, a str and a nullable str) and `AGGREGATES` rows of `Account`
(an `AggregateRoot` with a version column). Every row of a group runs the same
statements per round against the same session factory
(``sessionmaker(engine, expire_on_commit=False)``, as the unit of work sets
it); before timing, each row runs one call with the engine's statements
recorded, and ``extra_info["sql"]`` (a column of the report) lists what that
call executed, so the table shows the rows did the same SQL work (or where a
row does more). Rounds are ``benchmark.pedantic`` with an untimed setup, and
every test checks what its calls returned, so the smoke run
(``--benchmark-disable``) is a test of the benchmark itself.

- ``persistence.get``: load one entity by key with the session's identity map
  emptied before each round (``expunge_all`` in the setup), so every row runs
  one ``SELECT ... WHERE id = ?``; the keys cycle through the seeded rows in
  the same order for every row. Baseline: ``session.get(Item, key)``; ours:
  ``repo.get(key)`` of a `SqlAlchemyUnitOfWork`; peer: advanced-alchemy's
  ``SQLAlchemySyncRepository.get(key)`` (which always selects, identity map or
  not). Reference: ours ``repo.get`` of an entity already loaded, served from
  the identity map without SQL.
- ``persistence.add-commit``: store one new `Item` and commit, the item built
  in the setup with values never used before. Baseline: ``session.add(item);
  session.commit()``; ours: ``repo.add(item); uow.commit()`` (``add`` flushes at
  once, the commit then only commits: the same INSERT and COMMIT); peer:
  advanced-alchemy's ``repo.add(item, auto_commit=True)`` with its defaults,
  whose ``auto_refresh=True`` re-selects the row after the commit, and the same
  call with ``auto_refresh=False`` (the baseline's SQL). Rows added are deleted
  after each test, and each test starts on a vacuumed database, so no row pays
  for the dead rows another left (PostgreSQL's MVCC).
- ``persistence.find-100``: the first 100 rows with ``n > THRESHOLD`` in
  ``(n, id)`` order, identity map emptied before each round so every row builds
  100 objects. Baseline: ``select(Item).where(Item.n > x).order_by(Item.n,
  Item.id).limit(100)``; ours: ``repo.find(F("n") > x, order_by="n",
  limit=100)``; peer: advanced-alchemy's ``get_many`` with the same filter,
  ordering and a ``LimitOffset``. All three send ``ORDER BY n ASC, id ASC``
  (ours adds ``NULLS FIRST`` only to a nullable column), so the (n, id) index
  serves the order.
- ``persistence.page-100``: the keyset page of 100 after the 500th row in
  ``(n, id)`` order. Baseline: the hand-written keyset query ``WHERE n > v OR
  (n = v AND id > k) ORDER BY n, id LIMIT 101``, returning the 100 rows and the
  next page's ``(n, id)``; reference: the same query with ``n >= v AND`` in
  front, a range an index can seek to (without it, PostgreSQL walks the index
  from its start on a large table); ours: ``repo.page(order_by="n", size=100,
  after=cursor)``, which also checks the cursor's MAC and decodes it, and
  encodes the next one (the cursor is obtained from an earlier, untimed page).
  advanced-alchemy has no keyset pagination: its offset pagination,
  ``get_many_and_count(LimitOffset(100, 500))`` (an OFFSET scan and a window
  count), is a reference.
- ``persistence.commit-events``: `AGGREGATES` loaded aggregates each change
  (``deposit``, which records one `DomainEvent`), then commit: 100 versioned
  UPDATEs. Baseline: a raw session commits them (the events it never publishes
  are dropped in the setup, untimed); ours: the same changes in a unit of work
  whose repository loaded the aggregates, ``uow.commit()`` then
  ``list(uow.collect_events())``, which hands out the 100 events. Each test
  starts on a vacuumed database, as in ``persistence.add-commit``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import socket
import uuid
import warnings
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from buttress.domain import AggregateRoot, DomainEvent, F
from buttress.persistence import Page, SqlAlchemyUnitOfWork

with warnings.catch_warnings():
    # advanced-alchemy 1.12 marks its mixins with declarative_mixin, deprecated in SQLAlchemy 2.1
    warnings.simplefilter("ignore", sa.exc.SADeprecationWarning)
    from advanced_alchemy.filters import LimitOffset
    from advanced_alchemy.repository import SQLAlchemySyncRepository

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

SEEDED = 1000
"""Rows of `Item` in the table: ``n`` takes each value of 0..499 twice."""

THRESHOLD = 250
"""``persistence.find-100`` selects ``n > THRESHOLD``: 498 rows, of which the first 100."""

LIMIT = 100
"""Rows a find or a page returns."""

MIDDLE = 500
"""``persistence.page-100`` starts after this many rows in ``(n, id)`` order."""

AGGREGATES = 100
"""Accounts changed and committed per round in ``persistence.commit-events``."""

ROUNDS = {
    "get": 3000,
    "add-commit": 500,
    "find-100": 1500,
    "page-100": 1500,
    "commit-events": 200,
}
"""Timed rounds of each group's rows: enough for a steady median, and the file in minutes."""

WARMUP = 3
"""Untimed rounds before each row's timed ones (statement caches, connection pool)."""

POSTGRES_URL = os.environ.get(
    "BUTTRESS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
HOW_TO_START_POSTGRES = (
    "start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
    " or point BUTTRESS_TEST_POSTGRES_URL at a server"
)


# Models -----------------------------------------------------------------------------------------


class Base(DeclarativeBase):
    metadata = sa.MetaData()


class Item(Base):
    """A plain entity: an integer key, an indexed int, a str and a nullable str."""

    __tablename__ = "bench_item"
    __table_args__ = (sa.Index("bench_item_n_id", "n", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    n: Mapped[int]
    name: Mapped[str] = mapped_column(sa.String(40))
    note: Mapped[str | None] = mapped_column(sa.String(80))


class Deposited(DomainEvent, name="benchmarks.persistence.deposited"):
    account_id: int
    amount: int


class Account(AggregateRoot, Base):
    """An aggregate with a version column, recording one event per change."""

    __tablename__ = "bench_account"

    id: Mapped[int] = mapped_column(primary_key=True)
    balance: Mapped[int]
    owner: Mapped[str] = mapped_column(sa.String(40))
    memo: Mapped[str | None] = mapped_column(sa.String(80))
    version: Mapped[int] = mapped_column(nullable=False)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy's spelling

    def deposit(self, amount: int) -> None:
        self.balance += amount
        self.record_event(Deposited(account_id=self.id, amount=amount))


class ItemRepository(SQLAlchemySyncRepository[Item]):
    """advanced-alchemy's repository of `Item`, with its default settings."""

    model_type = Item


# Databases --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Db:
    """One seeded database and what the checks expect of it."""

    name: str
    engine: sa.Engine
    sessions: sessionmaker[Session]
    keys: list[int]
    """The seeded keys of `Item`, in the order every ``persistence.get`` row cycles through them."""
    ordered: list[tuple[int, int]]
    """``(n, id)`` of every seeded `Item`, in ``(n, id)`` order."""

    @property
    def seeded_max(self) -> int:
        return max(self.keys)

    def found(self) -> list[int]:
        """The ids ``persistence.find-100`` returns."""
        return [key for n, key in self.ordered if n > THRESHOLD][:LIMIT]

    def page(self) -> list[int]:
        """The ids ``persistence.page-100`` returns."""
        return [key for _, key in self.ordered[MIDDLE : MIDDLE + LIMIT]]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def postgres_url() -> sa.URL:
    """The PostgreSQL URL with the psycopg driver, or a skip (a failure in CI) when unreachable."""
    url = make_url(POSTGRES_URL).set(drivername="postgresql+psycopg")
    try:
        with socket.create_connection((url.host or "127.0.0.1", url.port or 5432), 2):
            pass
    except OSError as error:
        message = (
            f"PostgreSQL is not reachable at {url.host}:{url.port or 5432} "
            f"({type(error).__name__}): {HOW_TO_START_POSTGRES}"
        )
        if in_ci():
            pytest.fail(f"{message} (CI=true: a missing service is a failure, not a skip)")
        pytest.skip(message)
    return url


def no_sync_sqlite(connection: Any, _record: Any) -> None:
    """Commit without waiting for the disk (``PRAGMA synchronous=OFF``)."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.close()


def seed(engine: sa.Engine) -> None:
    Base.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(
            sa.insert(Item),
            [
                {"n": (i * 37) % 500, "name": f"item-{i:04d}", "note": None if i % 3 else "odd"}
                for i in range(SEEDED)
            ],
        )
        connection.execute(
            sa.insert(Account),
            [
                {"balance": 0, "owner": f"owner-{i:03d}", "memo": None, "version": 1}
                for i in range(AGGREGATES)
            ],
        )


@contextlib.contextmanager
def database(
    name: str, tmp_path_factory: pytest.TempPathFactory, label: str
) -> Iterator[sa.Engine]:
    """An engine on an empty database of backend ``name``, disposed of (and dropped) after.

    SQLite: a file in a temporary directory; PostgreSQL: a schema of its own named
    after ``label``. Neither waits for the disk at commit.
    """
    schema: str | None = None
    admin: sa.Engine | None = None
    if name == "sqlite":
        path = tmp_path_factory.mktemp(label) / "bench.db"
        engine = sa.create_engine(f"sqlite+pysqlite:///{path}")
        sa.event.listen(engine, "connect", no_sync_sqlite)
    else:
        url = postgres_url()
        schema = f"bench_{label}_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(url)
        with admin.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        options = f"-csearch_path={schema} -csynchronous_commit=off"
        engine = sa.create_engine(url, connect_args={"options": options})
    try:
        yield engine
    finally:
        engine.dispose()
        if admin is not None:
            with admin.begin() as connection:
                connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


@pytest.fixture(scope="module")
def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Db]:
    """A seeded database of the backend the test is parametrised with, disposed of afterwards."""
    with database(request.param, tmp_path_factory, "persistence") as engine:
        seed(engine)
        with engine.connect() as connection:
            keys = list(connection.scalars(sa.select(Item.id).order_by(Item.id)))
            ordered = sorted((n, key) for n, key in connection.execute(sa.select(Item.n, Item.id)))
        yield Db(
            name=request.param,
            engine=engine,
            sessions=sessionmaker(engine, expire_on_commit=False),
            keys=keys,
            ordered=ordered,
        )


@pytest.fixture
def vacuumed(db: Db) -> Db:
    """``db`` vacuumed first, so a row's writes do not pay for the dead rows of the row before."""
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    vacuum = "VACUUM" if db.name == "sqlite" else f"VACUUM ANALYZE {tables}"
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text(vacuum))
    return db


def backends(hot_path: str, fixture: str = "db") -> pytest.MarkDecorator:
    """Parametrise ``fixture`` over the backends, in group ``persistence.<hot_path>-<backend>``."""
    return pytest.mark.parametrize(
        fixture,
        [
            pytest.param(
                name, id=name, marks=pytest.mark.benchmark(group=f"persistence.{hot_path}-{name}")
            )
            for name in ("sqlite", "postgres")
        ],
        indirect=True,
    )


# Measuring --------------------------------------------------------------------------------------


@contextlib.contextmanager
def recording(engine: sa.Engine) -> Iterator[list[str]]:
    """The statements ``engine`` executes inside the block."""
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])  # (connection, cursor, statement, parameters, ...)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def summary(statements: list[str]) -> str:
    """``"SELECT"``, ``"INSERT + SELECT"``, ``"UPDATE x100"``: the kinds of statements, in order."""
    kinds = [statement.split(None, 1)[0].upper() for statement in statements]
    runs = [(kind, len(list(group))) for kind, group in itertools.groupby(kinds)]
    return " + ".join(kind if count == 1 else f"{kind} x{count}" for kind, count in runs) or "none"


def measure(
    bench: Any,
    db: Db,
    target: Callable[..., Any],
    setup: Callable[[], tuple[tuple[Any, ...], dict[str, Any]]],
    rounds: int,
) -> Any:
    """Run ``target`` once with its SQL recorded in ``extra_info["sql"]``, then time it."""
    args, kwargs = setup()
    with recording(db.engine) as statements:
        target(*args, **kwargs)
    bench.extra_info["sql"] = summary(statements)
    return bench.pedantic(target, setup=setup, rounds=rounds, warmup_rounds=WARMUP)


def cycle(keys: list[int]) -> Callable[[], int]:
    """The next key, round after round, from the first seeded one."""
    return itertools.cycle(keys).__next__


# persistence.get --------------------------------------------------------------------------------


def check_item(db: Db, item: Any) -> None:
    assert isinstance(item, Item)
    assert item.id in db.keys
    assert item.name.startswith("item-")


@backends("get")
class TestGet:
    def test_session_get(self, baseline, db):
        next_key = cycle(db.keys)
        with db.sessions() as session:

            def setup():
                session.expunge_all()
                return (Item, next_key()), {}

            item = measure(baseline, db, session.get, setup, ROUNDS["get"])
            assert len(session.identity_map) == 1
        check_item(db, item)
        assert baseline.extra_info["sql"] == "SELECT"

    def test_repository_get(self, ours, db):
        next_key = cycle(db.keys)
        uow = SqlAlchemyUnitOfWork(db.sessions)
        with uow:
            repo = uow.repository(Item, int)
            session = uow.session

            def setup():
                session.expunge_all()
                return (next_key(),), {}

            item = measure(ours, db, repo.get, setup, ROUNDS["get"])
            assert len(session.identity_map) == 1
        check_item(db, item)
        assert ours.extra_info["sql"] == "SELECT"

    def test_advanced_alchemy_get(self, peer, db):
        next_key = cycle(db.keys)
        with db.sessions() as session:
            repo = ItemRepository(session=session)

            def setup():
                session.expunge_all()
                return (next_key(),), {}

            item = measure(peer, db, repo.get, setup, ROUNDS["get"])
            assert len(session.identity_map) == 1
        check_item(db, item)
        assert peer.extra_info["sql"] == "SELECT"

    def test_repository_get_loaded(self, reference, db):
        """An identity-map hit: the entity was loaded by this unit of work, no SQL runs."""
        key = db.keys[MIDDLE]
        uow = SqlAlchemyUnitOfWork(db.sessions)
        with uow:
            repo = uow.repository(Item, int)
            loaded = repo.get(key)
            with recording(db.engine) as statements:
                assert repo.get(key) is loaded
            reference.extra_info["sql"] = summary(statements)
            found = reference(repo.get, key)
        assert found is loaded
        assert reference.extra_info["sql"] == "none"


# persistence.add-commit -------------------------------------------------------------------------


NUMBERS = itertools.count(1_000_000)
"""Values of ``n`` no seeded or earlier added row has, so no two added rows are alike."""


class Added:
    """Builds new items in the setup and deletes every added row after the test."""

    def __init__(self, db: Db) -> None:
        self.db = db
        self.built = 0

    def setup(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        n = next(NUMBERS)
        self.built += 1
        return (Item(n=n, name=f"added-{n}", note=None),), {}

    def stored(self) -> int:
        with self.db.engine.connect() as connection:
            counted: int = connection.scalar(
                sa.select(sa.func.count()).select_from(Item).where(Item.id > self.db.seeded_max)
            )
        return counted


@pytest.fixture
def added(vacuumed: Db) -> Iterator[Added]:
    db = vacuumed
    made = Added(db)
    try:
        yield made
    finally:
        with db.engine.begin() as connection:
            connection.execute(sa.delete(Item).where(Item.id > db.seeded_max))


def check_added(added: Added, item: Any) -> None:
    assert isinstance(item, Item)
    assert item.id > added.db.seeded_max
    assert item.name == f"added-{item.n}"
    assert added.stored() == added.built  # every built item was committed


@backends("add-commit")
class TestAddCommit:
    def test_session_add_commit(self, baseline, db, added):
        with db.sessions() as session:

            def add_commit(item):
                session.add(item)
                session.commit()
                return item

            item = measure(baseline, db, add_commit, added.setup, ROUNDS["add-commit"])
        check_added(added, item)
        assert baseline.extra_info["sql"] == "INSERT"

    def test_repository_add_commit(self, ours, db, added):
        uow = SqlAlchemyUnitOfWork(db.sessions)
        with uow:
            repo = uow.repository(Item, int)

            def add_commit(item):
                repo.add(item)
                uow.commit()
                return item

            item = measure(ours, db, add_commit, added.setup, ROUNDS["add-commit"])
        check_added(added, item)
        assert ours.extra_info["sql"] == "INSERT"

    def test_advanced_alchemy_add_auto_commit(self, peer, db, added):
        """Its defaults: ``auto_refresh=True`` selects the row again after the commit."""
        with db.sessions() as session:
            repo = ItemRepository(session=session)

            def add_commit(item):
                return repo.add(item, auto_commit=True)

            item = measure(peer, db, add_commit, added.setup, ROUNDS["add-commit"])
        check_added(added, item)
        assert peer.extra_info["sql"] == "INSERT + SELECT"

    def test_advanced_alchemy_add_auto_commit_no_refresh(self, peer, db, added):
        """``auto_refresh=False``: the baseline's SQL."""
        with db.sessions() as session:
            repo = ItemRepository(session=session, auto_refresh=False)

            def add_commit(item):
                return repo.add(item, auto_commit=True)

            item = measure(peer, db, add_commit, added.setup, ROUNDS["add-commit"])
        check_added(added, item)
        assert peer.extra_info["sql"] == "INSERT"


# persistence.find-100 ---------------------------------------------------------------------------


def emptying(session: Session) -> Callable[[], tuple[tuple[Any, ...], dict[str, Any]]]:
    """A setup that empties the identity map, so every round builds its objects anew."""

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        session.expunge_all()
        return (), {}

    return setup


def check_found(db: Db, items: Any) -> None:
    assert [item.id for item in items] == db.found()
    assert all(isinstance(item, Item) and item.n > THRESHOLD for item in items)


@backends("find-100")
class TestFind:
    def test_session_scalars(self, baseline, db):
        with db.sessions() as session:

            def find():
                statement = (
                    sa.select(Item).where(Item.n > THRESHOLD).order_by(Item.n, Item.id).limit(LIMIT)
                )
                return session.scalars(statement).all()

            items = measure(baseline, db, find, emptying(session), ROUNDS["find-100"])
        check_found(db, items)

    def test_repository_find(self, ours, db):
        uow = SqlAlchemyUnitOfWork(db.sessions)
        with uow:
            repo = uow.repository(Item, int)

            def find():
                return repo.find(F("n") > THRESHOLD, order_by="n", limit=LIMIT)

            items = measure(ours, db, find, emptying(uow.session), ROUNDS["find-100"])
        check_found(db, items)

    def test_advanced_alchemy_get_many(self, peer, db):
        with db.sessions() as session:
            repo = ItemRepository(session=session)

            def find():
                return repo.get_many(
                    Item.n > THRESHOLD,
                    LimitOffset(limit=LIMIT, offset=0),
                    order_by=[("n", False), ("id", False)],
                )

            items = measure(peer, db, find, emptying(session), ROUNDS["find-100"])
        check_found(db, items)


# persistence.page-100 ---------------------------------------------------------------------------


def keyset(bench: Any, db: Db, *, bounded: bool) -> tuple[list[Item], tuple[int, int] | None]:
    """Time the hand-written keyset page after the `MIDDLE`-th row; return the last one timed."""
    n, key = db.ordered[MIDDLE - 1]
    with db.sessions() as session:

        def page(after_n: int, after_id: int) -> tuple[list[Item], tuple[int, int] | None]:
            after = sa.or_(Item.n > after_n, sa.and_(Item.n == after_n, Item.id > after_id))
            if bounded:
                after = sa.and_(Item.n >= after_n, after)
            statement = sa.select(Item).where(after).order_by(Item.n, Item.id).limit(LIMIT + 1)
            rows = session.scalars(statement).all()
            items = list(rows[:LIMIT])
            following = (items[-1].n, items[-1].id) if len(rows) > LIMIT else None
            return items, following

        def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
            session.expunge_all()
            return (n, key), {}

        found: tuple[list[Item], tuple[int, int] | None] = measure(
            bench, db, page, setup, ROUNDS["page-100"]
        )
    return found


@backends("page-100")
class TestPage:
    def test_session_keyset(self, baseline, db):
        items, following = keyset(baseline, db, bounded=False)
        assert [item.id for item in items] == db.page()
        assert following == db.ordered[MIDDLE + LIMIT - 1]

    def test_session_keyset_bounded(self, reference, db):
        """The baseline's query with ``n >= v AND`` in front, a range an index can seek to."""
        items, following = keyset(reference, db, bounded=True)
        assert [item.id for item in items] == db.page()
        assert following == db.ordered[MIDDLE + LIMIT - 1]

    def test_repository_page(self, ours, db):
        uow = SqlAlchemyUnitOfWork(db.sessions)
        with uow:
            repo = uow.repository(Item, int)
            cursor = repo.page(order_by="n", size=MIDDLE).next_cursor
            assert cursor is not None

            def page():
                return repo.page(order_by="n", size=LIMIT, after=cursor)

            found: Page[Item] = measure(ours, db, page, emptying(uow.session), ROUNDS["page-100"])
            assert [item.id for item in found.items] == db.page()
            following = repo.page(order_by="n", size=1, after=found.next_cursor).items
        assert [(item.n, item.id) for item in following] == [db.ordered[MIDDLE + LIMIT]]

    def test_advanced_alchemy_get_many_and_count(self, reference, db):
        """Offset pagination, advanced-alchemy's own: OFFSET 500, and a window count of all rows."""
        with db.sessions() as session:
            repo = ItemRepository(session=session)

            def page():
                return repo.get_many_and_count(
                    LimitOffset(limit=LIMIT, offset=MIDDLE), order_by=[("n", False), ("id", False)]
                )

            items, total = measure(reference, db, page, emptying(session), ROUNDS["page-100"])
        assert [item.id for item in items] == db.page()
        assert total == SEEDED


# persistence.commit-events ----------------------------------------------------------------------


def check_committed(db: Db, accounts: list[Account]) -> None:
    """The database holds the balances and versions the objects have."""
    with db.sessions() as session:
        stored = {a.id: (a.balance, a.version) for a in session.scalars(sa.select(Account))}
    assert stored == {a.id: (a.balance, a.version) for a in accounts}
    assert all(a.balance > 0 for a in accounts)


@backends("commit-events")
class TestCommitEvents:
    def test_session_commit(self, baseline, db, vacuumed):
        with db.sessions() as session:
            accounts = list(session.scalars(sa.select(Account).order_by(Account.id)))
            assert len(accounts) == AGGREGATES

            def setup():
                for account in accounts:
                    account.pull_events()  # a raw session publishes none: drop them, untimed
                return (), {}

            def change_commit():
                for account in accounts:
                    account.deposit(1)
                session.commit()
                return accounts

            measure(baseline, db, change_commit, setup, ROUNDS["commit-events"])
        check_committed(db, accounts)
        assert baseline.extra_info["sql"] == f"UPDATE x{AGGREGATES}"

    def test_unit_of_work_commit_collect(self, ours, db, vacuumed):
        uow = SqlAlchemyUnitOfWork(db.sessions)
        with uow:
            repo = uow.repository(Account, int)
            accounts = repo.find(order_by="id")
            assert len(accounts) == AGGREGATES

            def change_commit():
                for account in accounts:
                    account.deposit(1)
                uow.commit()
                return list(uow.collect_events())

            events = measure(ours, db, change_commit, lambda: ((), {}), ROUNDS["commit-events"])
            assert [event.account_id for event in events] == [a.id for a in accounts]
            assert all(isinstance(event, Deposited) for event in events)
            assert list(uow.collect_events()) == []
        check_committed(db, accounts)
        assert ours.extra_info["sql"] == f"UPDATE x{AGGREGATES}"


def test_kinds_of_statements():
    """`summary`, which the ``sql`` column relies on."""
    assert summary([]) == "none"
    assert summary(["SELECT 1"]) == "SELECT"
    assert summary(["insert into t", "select 1", "select 2"]) == "INSERT + SELECT x2"
