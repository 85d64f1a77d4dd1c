"""Messaging: what the message bus adds to calling the handlers by hand.

- ``messaging.dispatch``: a command whose handler "commits" one event through
  its unit of work, and one inline handler of that event. The unit is a
  stand-in (`Unit`: a list of committed events and ``collect_events``), so the
  rows measure the dispatch alone, not a database. Baseline: by hand, a new
  unit made, the command's handler called with it, its events collected and
  the event's handler called with its own dependency; ours:
  ``MessageBus.handle`` (a unit per dispatch from its provider, the events
  handed on breadth-first, a report returned). Target: ours at most 3 times the baseline.
- ``messaging.dispatch-async``: the same with ``async def`` handlers, awaited
  one after the other on one event loop. Baseline: by hand; ours:
  ``AsyncMessageBus.handle``.

- ``messaging.commit-outbox-<n>-<backend>``: a unit of work's commit after each of
  ``n`` loaded products (1 or 100) recorded one event: the roots' version bumps,
  and with the outbox one INSERT of the ``n`` rows more. Baseline: the commit of
  a unit without an outbox; ours: with `Outbox` (SQLite in a file, PostgreSQL
  over psycopg, set up as in ``test_persistence``). Targets: ours at most 1.35
  times the baseline for 1 aggregate, 1.25 times for 100, and exactly one
  statement more (``extra_info["sql"]``).

- ``messaging.relay-postgres``: draining an outbox of 2 000 messages on 200
  streams (10 each, mixed) to a transport that takes everything at once
  (``NullTransport``), on PostgreSQL. Baseline: the raw queue loop, ``DELETE …
  WHERE id IN (SELECT … ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED)
  RETURNING …`` until empty (no order per stream, no lease, no retries); ours:
  `Relay.run_once` until it claims nothing (batches of 100: a lease on each
  stream's head, then the delivered rows removed). ``extra_info["per_second"]``
  is the messages per second. Targets: ours at least 10 000 messages a second
  and at least 0.15 times the baseline's rate.

- ``messaging.relay-rabbitmq``: the same outbox relayed to a real RabbitMQ (a
  durable topic exchange bound to a quorum queue, publisher confirms), on
  PostgreSQL. Baseline: publishing the same 2 000 messages straight to the
  exchange with aio-pika, 100 at a time, each batch's confirms awaited together
  (no database, no order per stream); ours: `Relay.run_once` with
  `RabbitMQTransport` until it claims nothing. Target: ours at least 3 000
  messages a second.

Every test checks what was handled, so the smoke run (``--benchmark-disable``)
tests the benchmark itself.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from buttress.domain import DomainEvent
from buttress.messaging import AsyncMessageBus, Command, Handlers, MessageBus, Outbox, Relay
from buttress.persistence import SqlAlchemyUnitOfWork
from buttress.testing import (
    Allocated,
    ContractBatch,
    ContractProduct,
    OrderPaid,
    contract_metadata,
)
from test_persistence import WARMUP, database, recording, summary

if TYPE_CHECKING:
    from collections.abc import Iterator

ROUNDS = 20_000


class Reserve(Command, name="benchmarks.messaging.reserve"):
    sku: str
    qty: int


class Reserved(DomainEvent, name="benchmarks.messaging.reserved"):
    sku: str
    qty: int


class Unit:
    """A unit of work's part the bus relies on: events of committed work, collected once."""

    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: list[DomainEvent] = []

    def collect_events(self) -> list[DomainEvent]:
        events, self.events = self.events, []
        return events


def reserve(command: Reserve, uow: Unit) -> str:
    uow.events.append(Reserved(sku=command.sku, qty=command.qty))
    return command.sku


def note(event: Reserved, log: list[Any]) -> None:
    log.append(event.qty)


async def reserve_async(command: Reserve, uow: Unit) -> str:
    return reserve(command, uow)


async def note_async(event: Reserved, log: list[Any]) -> None:
    note(event, log)


COMMAND = Reserve(sku="CHAIR", qty=1)


def handlers(command_handler: Any, event_handler: Any) -> Handlers:
    registered = Handlers()
    registered.command(Reserve)(command_handler)
    registered.event(Reserved)(event_handler)
    return registered


@pytest.mark.benchmark(group="messaging.dispatch")
class TestDispatch:
    def test_handlers_by_hand(self, baseline):
        log: list[Any] = []

        def by_hand(command: Reserve) -> str:
            uow = Unit()
            result = reserve(command, uow)
            for event in uow.collect_events():
                note(event, log)  # type: ignore[arg-type]
            return result

        assert baseline(by_hand, COMMAND) == "CHAIR"
        assert log[-1] == 1

    def test_message_bus(self, ours):
        log: list[Any] = []
        bus = MessageBus(handlers(reserve, note), dependencies={"uow": Unit, "log": lambda: log})
        report = ours(bus.handle, COMMAND)
        assert (report.result, report.ok, len(report.events)) == ("CHAIR", True, 1)
        assert log[-1] == 1


@pytest.mark.benchmark(group="messaging.dispatch-async")
class TestDispatchAsync:
    def test_handlers_by_hand(self, baseline):
        log: list[Any] = []

        async def by_hand(command: Reserve) -> str:
            uow = Unit()
            result = await reserve_async(command, uow)
            for event in uow.collect_events():
                await note_async(event, log)  # type: ignore[arg-type]
            return result

        loop = asyncio.new_event_loop()
        try:
            assert baseline(lambda: loop.run_until_complete(by_hand(COMMAND))) == "CHAIR"
        finally:
            loop.close()
        assert log[-1] == 1

    def test_async_message_bus(self, ours):
        log: list[Any] = []
        bus = AsyncMessageBus(
            handlers(reserve_async, note_async), dependencies={"uow": Unit, "log": lambda: log}
        )
        loop = asyncio.new_event_loop()
        try:
            report = ours(lambda: loop.run_until_complete(bus.handle(COMMAND)))
        finally:
            loop.close()
        assert (report.result, report.ok, len(report.events)) == ("CHAIR", True, 1)
        assert log[-1] == 1


# messaging.commit-outbox-<n>-<backend> ----------------------------------------------------------

OUTBOX_METADATA = sa.MetaData()
OUTBOX = Outbox(OUTBOX_METADATA, table_name="bench_outbox")
COMMIT_ROUNDS = 200
EVENTS = itertools.count()


@pytest.fixture(scope="module")
def products(request: pytest.FixtureRequest, tmp_path_factory: Any) -> Iterator[Any]:
    """A database holding 100 products (and the outbox table), of the backend parametrised."""
    with database(request.param, tmp_path_factory, "outbox") as engine:
        contract_metadata.create_all(engine)
        OUTBOX_METADATA.create_all(engine)
        factory = sessionmaker(engine)
        with factory.begin() as session:
            session.add_all(
                ContractProduct(sku=f"P{n:03}", batches=[ContractBatch(reference=f"b{n}", qty=9)])
                for n in range(100)
            )
        yield engine, factory


def commit_groups(count: int) -> pytest.MarkDecorator:
    return pytest.mark.parametrize(
        "products",
        [
            pytest.param(
                name,
                id=name,
                marks=pytest.mark.benchmark(group=f"messaging.commit-outbox-{count}-{name}"),
            )
            for name in ("sqlite", "postgres")
        ],
        indirect=True,
    )


def time_commits(bench: Any, products: Any, count: int, *, outbox: bool) -> None:
    """Time ``uow.commit()`` after each of ``count`` loaded products recorded an event."""
    engine, factory = products
    uow = SqlAlchemyUnitOfWork(factory, outbox=OUTBOX if outbox else None)
    with uow:
        loaded = uow.repository(ContractProduct, str).find(order_by="sku")[:count]

        def record() -> tuple[tuple[Any, ...], dict[str, Any]]:
            for product in loaded:
                product.record_event(
                    Allocated(sku=product.sku, orderid=f"o{next(EVENTS)}", reference="-")
                )
            return (), {}

        record()
        with recording(engine) as statements:
            uow.commit()
        bench.extra_info["sql"] = summary(statements)
        bench.pedantic(uow.commit, setup=record, rounds=COMMIT_ROUNDS, warmup_rounds=WARMUP)
        assert list(uow.collect_events())
    expected = f"UPDATE x{count}" if count > 1 else "UPDATE"
    assert bench.extra_info["sql"].startswith(expected)
    assert bench.extra_info["sql"].endswith("INSERT") == outbox


@commit_groups(1)
class TestCommitOutboxOne:
    def test_commit_without_outbox(self, baseline, products):
        time_commits(baseline, products, 1, outbox=False)

    def test_commit_with_outbox(self, ours, products):
        time_commits(ours, products, 1, outbox=True)


@commit_groups(100)
class TestCommitOutboxHundred:
    def test_commit_without_outbox(self, baseline, products):
        time_commits(baseline, products, 100, outbox=False)

    def test_commit_with_outbox(self, ours, products):
        time_commits(ours, products, 100, outbox=True)


# messaging.relay-postgres -----------------------------------------------------------------------

RELAY_MESSAGES = 2_000
RELAY_STREAMS = 200
RELAY_ROUNDS = 10


class NullTransport:
    """Takes every message at once: the relay's own cost, without a broker's."""

    def publish(self, messages: Any) -> dict[Any, BaseException]:
        return {}


@pytest.fixture(scope="module")
def relay_database(tmp_path_factory: Any) -> Iterator[sa.Engine]:
    with database("postgres", tmp_path_factory, "relay") as engine:
        OUTBOX_METADATA.create_all(engine)
        yield engine


def relay_rows() -> list[dict[str, Any]]:
    """The outbox's rows: ``RELAY_MESSAGES`` payments, 10 to a stream, the streams mixed."""
    return OUTBOX.rows(
        [
            (OrderPaid(order_id=n % RELAY_STREAMS, total=n), f"Order:{n % RELAY_STREAMS}")
            for n in range(RELAY_MESSAGES)
        ]
    )


def drain_relay(relay: Relay) -> int:
    """Run ``relay``'s rounds until one claims nothing; how many it delivered (none failed)."""
    delivered = 0
    while True:
        report = relay.run_once()
        if report.claimed == 0:
            return delivered
        assert report.failed == 0
        delivered += report.delivered


def drain_timed(bench: Any, engine: sa.Engine, drain: Any) -> None:
    """Time ``drain()`` over a freshly filled outbox; check it took every message."""

    def fill() -> tuple[tuple[Any, ...], dict[str, Any]]:
        with engine.begin() as connection:
            connection.execute(sa.delete(OUTBOX.table))
            connection.execute(sa.insert(OUTBOX.table), relay_rows())
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(sa.text(f"VACUUM ANALYZE {OUTBOX.table.name}"))
        return (), {}

    drained = bench.pedantic(drain, setup=fill, rounds=RELAY_ROUNDS, warmup_rounds=1)
    assert drained == RELAY_MESSAGES
    with engine.connect() as connection:
        assert connection.scalar(sa.select(sa.func.count()).select_from(OUTBOX.table)) == 0
    if bench.stats is not None:  # absent in a smoke run (--benchmark-disable)
        bench.extra_info["per_second"] = round(RELAY_MESSAGES / bench.stats.stats.mean)


@pytest.mark.benchmark(group="messaging.relay-postgres")
@pytest.mark.postgres
class TestRelay:
    def test_raw_delete_skip_locked_loop(self, baseline, relay_database):
        table = OUTBOX.table
        c = table.c
        heads = sa.select(c.id).order_by(c.id).limit(100).with_for_update(skip_locked=True)
        take = (
            sa.delete(table)
            .where(c.id.in_(heads.scalar_subquery()))
            .returning(c.id, c.message_id, c.stream, c.topic, c.payload, c.headers, c.attempts)
        )

        def drain() -> int:
            taken = 0
            while True:
                with relay_database.begin() as connection:
                    rows = connection.execute(take).all()
                if not rows:
                    return taken
                taken += len(rows)

        drain_timed(baseline, relay_database, drain)

    def test_relay(self, ours, relay_database):
        relay = Relay(relay_database, OUTBOX, NullTransport(), batch_size=100)

        drain_timed(ours, relay_database, lambda: drain_relay(relay))


# messaging.relay-rabbitmq -----------------------------------------------------------------------

RABBITMQ_URL = os.environ.get("BUTTRESS_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
BENCH_EXCHANGE = "bench.relay.events"
BENCH_QUEUE = "bench.relay.queue"


@pytest.fixture(scope="module")
def rabbitmq_queue() -> Iterator[None]:
    """A durable topic exchange bound to a quorum queue, purged; both deleted after."""
    aio_pika = pytest.importorskip("aio_pika")

    async def declare() -> None:
        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.declare_exchange(
                BENCH_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
            )
            queue = await channel.declare_queue(
                BENCH_QUEUE, durable=True, arguments={"x-queue-type": "quorum"}
            )
            await queue.bind(exchange, routing_key="#")

    async def delete() -> None:
        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(BENCH_QUEUE)
            await channel.exchange_delete(BENCH_EXCHANGE)

    asyncio.run(declare())
    yield
    asyncio.run(delete())


@pytest.mark.benchmark(group="messaging.relay-rabbitmq")
@pytest.mark.postgres
@pytest.mark.rabbitmq
class TestRelayToRabbitMQ:
    def test_aio_pika_publish_with_confirms(self, baseline, relay_database, rabbitmq_queue):
        import aio_pika  # noqa: PLC0415

        payloads = [(row["topic"], row["payload"].encode()) for row in relay_rows()]
        loop = asyncio.new_event_loop()

        async def connect() -> Any:
            connection = await aio_pika.connect(RABBITMQ_URL)
            channel = await connection.channel(publisher_confirms=True)
            return connection, await channel.get_exchange(BENCH_EXCHANGE)

        connection, exchange = loop.run_until_complete(connect())

        async def publish_all() -> int:
            for start in range(0, len(payloads), 100):
                await asyncio.gather(
                    *(
                        exchange.publish(
                            aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                            routing_key=topic,
                        )
                        for topic, body in payloads[start : start + 100]
                    )
                )
            return len(payloads)

        try:
            published = baseline.pedantic(
                lambda: loop.run_until_complete(publish_all()), rounds=RELAY_ROUNDS, warmup_rounds=1
            )
        finally:
            loop.run_until_complete(connection.close())
            loop.close()
        assert published == RELAY_MESSAGES
        if baseline.stats is not None:
            baseline.extra_info["per_second"] = round(RELAY_MESSAGES / baseline.stats.stats.mean)

    def test_relay_to_rabbitmq(self, ours, relay_database, rabbitmq_queue):
        from buttress.messaging import RabbitMQTransport  # noqa: PLC0415

        transport = RabbitMQTransport(RABBITMQ_URL, exchange=BENCH_EXCHANGE)
        relay = Relay(relay_database, OUTBOX, transport, batch_size=100)

        try:
            drain_timed(ours, relay_database, lambda: drain_relay(relay))
        finally:
            transport.close()
