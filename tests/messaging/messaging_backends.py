"""The outbox and inbox tables the messaging tests write, and a backend's units over them.

Imported by name (``from messaging_backends import ...``), not from ``conftest``:
another directory's ``conftest`` module may be the one ``import conftest`` finds.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

from buttress.domain import F
from buttress.messaging import AsyncRelay, Inbox, Message, Outbox, Relay, RelayReport
from buttress.persistence import (
    AsyncInMemoryUnitOfWork,
    AsyncSqlAlchemyUnitOfWork,
    InMemoryStore,
    InMemoryUnitOfWork,
    SqlAlchemyUnitOfWork,
)
from buttress.testing import (
    AsyncRecordingTransport,
    ContractOrder,
    OrderPaid,
    RecordingTransport,
    contract_metadata,
)
from postgres_schemas import emptied

MESSAGING_METADATA = sa.MetaData()
OUTBOX = Outbox(MESSAGING_METADATA, table_name="buttress_test_outbox")
INBOX = Inbox(MESSAGING_METADATA, table_name="buttress_test_inbox")


@dataclasses.dataclass
class Backend:
    """Units of work over one database, and what its outbox holds."""

    name: str
    make: Callable[..., Any]
    engine: sa.Engine | None = None  # the sync engine (of an async one too); None in memory
    store: InMemoryStore | None = None
    relay_source: Any = None  # what a relay reads: the engine (async for async units), or the store

    @property
    def source(self) -> Any:
        return self.store if self.store is not None else self.relay_source or self.engine

    def uow(self, *, outbox: bool = False) -> Any:
        return self.make(outbox=OUTBOX) if outbox else self.make()

    def outbox_rows(self) -> list[dict[str, Any]]:
        if self.store is not None:
            return self.store.outbox_rows(OUTBOX.table.name)
        assert self.engine is not None
        with self.engine.connect() as connection:
            statement = sa.select(OUTBOX.table).order_by(OUTBOX.table.c.id)
            return [dict(row._mapping) for row in connection.execute(statement)]


def postgres_database(
    request: pytest.FixtureRequest, driver: str
) -> tuple[str, dict[str, Any], str]:
    schema = request.getfixturevalue("messaging_schema")
    postgres_url = request.getfixturevalue("postgres_url")
    url, connect_args = emptied(postgres_url, schema, driver)
    admin = sa.create_engine(postgres_url)
    with admin.begin() as connection:
        for table in (OUTBOX.table, INBOX.table):
            connection.execute(sa.text(f'TRUNCATE "{schema}"."{table.name}"'))
    admin.dispose()
    return url, connect_args, schema


def sync_backend(name: str, request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Backend]:
    """Sync units of work over an empty database ``name``: memory, sqlite or postgres."""
    if name == "memory":
        store = InMemoryStore()
        yield Backend(
            "memory", lambda **options: InMemoryUnitOfWork(store=store, **options), store=store
        )
        return
    if name == "sqlite":
        engine = sa.create_engine(f"sqlite+pysqlite:///{tmp_path / 'bus.db'}")
        contract_metadata.create_all(engine)
        MESSAGING_METADATA.create_all(engine)
    else:
        url, connect_args, _ = postgres_database(request, "psycopg")
        engine = sa.create_engine(url, connect_args=connect_args)
    factory = sessionmaker(engine)
    yield Backend(name, lambda **options: SqlAlchemyUnitOfWork(factory, **options), engine)
    engine.dispose()


async def asyncio_backend(
    name: str, request: pytest.FixtureRequest, tmp_path: Any
) -> AsyncIterator[Backend]:
    """Asyncio units of work over an empty database: memory, aiosqlite, asyncpg or psycopg."""
    if name == "memory":
        store = InMemoryStore()
        yield Backend(
            "memory", lambda **options: AsyncInMemoryUnitOfWork(store=store, **options), store=store
        )
        return
    if name == "aiosqlite":
        path = tmp_path / "bus.db"
        sync = sa.create_engine(f"sqlite+pysqlite:///{path}")
        contract_metadata.create_all(sync)
        MESSAGING_METADATA.create_all(sync)
        engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    else:
        url, connect_args, schema = postgres_database(request, name)
        engine = create_async_engine(url, connect_args=connect_args)
        sync = sa.create_engine(
            request.getfixturevalue("postgres_url"),
            connect_args={"options": f"-csearch_path={schema}"},
        )
    factory = async_sessionmaker(engine)
    yield Backend(
        name,
        lambda **options: AsyncSqlAlchemyUnitOfWork(factory, **options),
        sync,
        relay_source=engine,
    )
    await engine.dispose()
    sync.dispose()


@dataclasses.dataclass
class Case:
    """One backend, driven by the relay of its flavour."""

    backend: Backend
    asynchronous: bool

    async def call(self, value: Any) -> Any:
        return await value if inspect.isawaitable(value) else value

    async def write(self, counts: dict[str, int]) -> dict[str, str]:
        """For each order ref, ``count`` payments (totals 1, 2, ...) in one commit per order.

        Returns each order's stream.
        """
        streams = {}
        for ref, count in counts.items():
            uow = self.backend.uow(outbox=True)
            await self.call(uow.__aenter__() if self.asynchronous else uow.__enter__())
            try:
                orders = uow.repository(ContractOrder)
                order = await self.call(orders.first(F("ref") == ref))
                if order is None:
                    order = ContractOrder(ref=ref)
                    await self.call(orders.add(order))
                for _ in range(count):
                    order.total += 1
                    order.pay()
                await self.call(uow.commit())
                streams[ref] = f"ContractOrder:{order.id}"
            finally:
                exit_ = uow.__aexit__ if self.asynchronous else uow.__exit__
                await self.call(exit_(None, None, None))
        return streams

    def transport(self, **options: Any) -> RecordingTransport:
        kind = AsyncRecordingTransport if self.asynchronous else RecordingTransport
        return kind(**options)

    def relay(self, transport: RecordingTransport, **options: Any) -> Any:
        options.setdefault("retry_initial", 0.0)
        options.setdefault("retry_jitter", 0.0)
        kind = AsyncRelay if self.asynchronous else Relay
        return kind(self.backend.source, OUTBOX, transport, **options)

    async def refs(self, prefix: str) -> list[str]:
        """The refs of the stored orders that start with ``prefix``, sorted."""
        uow = self.backend.uow()
        await self.call(uow.__aenter__() if self.asynchronous else uow.__enter__())
        try:
            found = await self.call(uow.repository(ContractOrder).find(F("ref").startswith(prefix)))
            return sorted(order.ref for order in found)
        finally:
            exit_ = uow.__aexit__ if self.asynchronous else uow.__exit__
            await self.call(exit_(None, None, None))

    async def drain(self, relay: Any, rounds: int = 50) -> list[RelayReport]:
        """Run rounds until one claims nothing (at most ``rounds``)."""
        reports = []
        for _ in range(rounds):
            report = await self.call(relay.run_once())
            reports.append(report)
            if report.claimed == 0:
                return reports
        raise AssertionError(f"the outbox did not drain in {rounds} rounds")


def paid(messages: list[Message]) -> dict[str, list[int]]:
    """The totals each order's delivered payments carried, by stream, in delivery order."""
    streams: dict[str, list[int]] = {}
    for message in messages:
        event = message.event()
        assert isinstance(event, OrderPaid)
        streams.setdefault(message.stream, []).append(event.total)
    return streams
