"""Relays racing, writers racing, and a relay killed by PID, on a real PostgreSQL.

- Four relays over 10 000 messages on 500 streams: each message delivered once (the
  leases hold), each stream in order.
- Six writer threads paying 20 orders (optimistic locking, retried on conflict) while
  three relays run: each order's payments arrive gapless and in order.
- A relay process killed between publishing and removing: every message delivered at
  least once, every effect once (the consumer records it in the inbox), the outbox drained.

Each is caught by its negative control: without the head-of-stream rule in the claim
the order breaks; without the lease the four relays deliver messages twice; without
the inbox the killed relay's batch has its effect twice.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from messaging_backends import OUTBOX, Backend, paid, sync_backend
from sqlalchemy.orm import sessionmaker

from buttress.domain import F
from buttress.errors import ConcurrencyError
from buttress.messaging import Message, Relay
from buttress.testing import ContractOrder, OrderPaid, RecordingTransport

pytestmark = pytest.mark.postgres

HERE = Path(__file__).resolve().parent


@pytest.fixture
def postgres(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    yield from sync_backend("postgres", request, tmp_path)


class Jittery(RecordingTransport):
    """Takes a little while, and publishes a batch in any order (as a transport may)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.chooser = random.Random(seed)  # noqa: S311 - a reproducible shuffle, not a secret
        self.choosing = threading.Lock()

    def publish(self, messages: Any) -> Any:
        with self.choosing:
            batch = list(messages)
            self.chooser.shuffle(batch)
            pause = self.chooser.uniform(0, 0.003)
        time.sleep(pause)
        return super().publish(batch)


def fill(backend: Backend, streams: int, per_stream: int) -> int:
    """Write ``per_stream`` payments to each of ``streams`` streams, in a random mix; how many.

    Each stream's payments carry totals 1, 2, ... in the order they are written.
    """
    order = [stream for stream in range(streams) for _ in range(per_stream)]
    random.Random(streams).shuffle(order)  # noqa: S311 - a reproducible mix, not a secret
    written = dict.fromkeys(range(streams), 0)
    pairs = []
    for stream in order:
        written[stream] += 1
        pairs.append((OrderPaid(order_id=stream, total=written[stream]), f"Order:{stream}"))
    assert backend.engine is not None
    with backend.engine.begin() as connection:
        connection.execute(sa.insert(OUTBOX.table), OUTBOX.rows(pairs))
    return len(pairs)


def run_relays(count: int, relay: Any, until: Any, seconds: float = 120) -> None:
    """``count`` threads running ``relay`` rounds until ``until()``, bounded in time."""
    deadline = time.monotonic() + seconds
    errors: list[BaseException] = []

    def work() -> None:
        try:
            mine = relay()
            while not until() and time.monotonic() < deadline:
                if mine.run_once().claimed == 0:
                    time.sleep(0.005)
        except BaseException as error:  # noqa: BLE001  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 10)
    assert not errors, errors
    assert until(), "the relays did not drain the outbox in time"


def test_four_relays_deliver_each_message_once_and_each_stream_in_order(postgres):
    expected = fill(postgres, streams=500, per_stream=20)
    transport = Jittery(seed=1)

    run_relays(
        4,
        lambda: Relay(postgres.engine, OUTBOX, transport, batch_size=100, lease=30.0),
        until=lambda: len(transport.delivered) >= expected,
    )
    ids = [message.message_id for message in transport.published]
    assert len(ids) == len(set(ids)) == expected  # never twice while the leases hold
    streams = paid(transport.delivered)
    assert len(streams) == 500
    assert all(sequence == list(range(1, 21)) for sequence in streams.values())
    assert postgres.outbox_rows() == []


def test_writers_racing_relays_deliver_each_aggregate_gapless_and_in_order(postgres):
    refs = [f"order-{n}" for n in range(20)]
    with postgres.uow() as uow:
        uow.repository(ContractOrder).add_many(ContractOrder(ref=ref) for ref in refs)
        uow.commit()
    transport = Jittery(seed=2)
    stop = threading.Event()
    relays = [
        threading.Thread(
            target=Relay(postgres.engine, OUTBOX, transport, batch_size=10, poll_interval=0.05).run,
            args=(stop,),
        )
        for _ in range(3)
    ]
    for relay in relays:
        relay.start()

    def write(seed: int) -> None:
        chooser = random.Random(seed)  # noqa: S311 - a reproducible choice, not a secret
        for _ in range(40):
            ref = chooser.choice(refs)
            for _attempt in range(50):
                try:
                    with postgres.uow(outbox=True) as uow:
                        order = uow.repository(ContractOrder).get_by(F("ref") == ref)
                        order.total += 1
                        order.pay()
                        uow.commit()
                    break
                except ConcurrencyError:
                    continue
            else:  # pragma: no cover - would mean a livelock
                raise AssertionError(f"could not pay {ref}")

    writers = [threading.Thread(target=write, args=(seed,)) for seed in range(6)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
    try:
        deadline = time.monotonic() + 60
        while len(transport.delivered) < 240 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        for relay in relays:
            relay.join(10)
    with postgres.uow() as uow:
        final = {order.id: order.total for order in uow.repository(ContractOrder).find()}
    streams = paid(transport.delivered)
    assert sum(final.values()) == 240
    for key, total in final.items():
        assert streams.get(f"ContractOrder:{key}", []) == list(range(1, total + 1))
    assert postgres.outbox_rows() == []


_KILLED_RELAY = """
import sys, time
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
sys.path[:0] = [sys.argv[3], sys.argv[4]]
from messaging_backends import OUTBOX
from relay_consumer import Consumer
from buttress.messaging import Relay

engine = sa.create_engine(sys.argv[1], connect_args={"options": f"-csearch_path={sys.argv[2]}"})
consumer = Consumer(sessionmaker(engine))


class ThenHang:
    def publish(self, messages):
        failures = consumer.publish(messages)
        print("published", len(messages), flush=True)
        time.sleep(600)  # killed here: published, not yet removed
        return failures


Relay(engine, OUTBOX, ThenHang(), batch_size=50, lease=1.0).run_once()
"""


def test_a_relay_killed_between_publish_and_remove_loses_nothing_and_doubles_no_effect(
    postgres, request
):
    from relay_consumer import Consumer  # noqa: PLC0415 - the subprocess imports it too

    expected = fill(postgres, streams=30, per_stream=3)
    with postgres.uow() as uow:  # what the effects count on
        uow.repository(ContractOrder).add_many(ContractOrder(ref=f"Order:{n}") for n in range(30))
        uow.commit()
    schema = request.getfixturevalue("messaging_schema")
    url = request.getfixturevalue("postgres_url")
    process = subprocess.Popen(
        [sys.executable, "-c", _KILLED_RELAY, url, schema, str(HERE), str(HERE.parent)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().split() == ["published", "30"]
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        assert process.stdout is not None
        process.stdout.close()
    assert len(postgres.outbox_rows()) == expected  # published, never removed

    consumer = Consumer(sessionmaker(postgres.engine))
    transport = RecordingTransport()
    time.sleep(1.1)  # the killed relay's lease runs out

    def deliver(message: Message) -> BaseException | None:
        return consumer.publish([message]).get(message.message_id)

    transport.fail = deliver
    relay = Relay(postgres.engine, OUTBOX, transport, batch_size=50, lease=5.0)
    for _ in range(20):
        if relay.run_once().claimed == 0:
            break
    assert postgres.outbox_rows() == []
    assert len(transport.delivered) == expected  # the killed batch again, and the rest
    with postgres.uow() as uow:
        effects = {order.ref: order.total for order in uow.repository(ContractOrder).find()}
    assert effects == {f"Order:{n}": 3 for n in range(30)}  # each message's effect once
    assert consumer.skipped == 30  # the killed relay's batch, recognised by the inbox


def test_relays_on_a_repeatable_read_engine_claim_without_serialization_failures(
    postgres, request, caplog
):
    schema = request.getfixturevalue("messaging_schema")
    engine = sa.create_engine(
        request.getfixturevalue("postgres_url"),
        connect_args={"options": f"-csearch_path={schema}"},
        isolation_level="REPEATABLE READ",
    )
    try:
        expected = fill(postgres, streams=50, per_stream=20)
        transport = Jittery(seed=3)
        run_relays(
            4,
            lambda: Relay(engine, OUTBOX, transport, batch_size=20),
            until=lambda: len(transport.delivered) >= expected,
        )
    finally:
        engine.dispose()
    assert "SerializationFailure" not in caplog.text
    assert all(sequence == list(range(1, 21)) for sequence in paid(transport.delivered).values())


def test_the_claim_looks_for_earlier_rows_per_row_however_deep_a_stream_is(postgres):
    """One stream 5 000 deep: the look for earlier rows stays a probe that stops at the first.

    Flattened into an anti-join on the stream alone, it compares every pair of rows of
    the stream: quadratic (seconds per claim at 5 000 rows).
    """
    fill(postgres, streams=1, per_stream=5_000)
    assert postgres.engine is not None
    from buttress.messaging._relay_core import Statements  # noqa: PLC0415

    claim = Statements(OUTBOX.table, 100, "postgresql").claim
    compiled = claim.compile(dialect=postgres.engine.dialect)
    now = sa.func.now()
    with postgres.engine.connect() as connection:
        connection.execute(sa.text(f"ANALYZE {OUTBOX.table.name}"))
        parameters = compiled.construct_params(
            {"b_now": connection.scalar(sa.select(now)), "b_until": None, "b_token": None}
        )
        plan = "\n".join(
            row[0] for row in connection.exec_driver_sql(f"EXPLAIN {compiled}", parameters)
        )
        connection.rollback()
    assert "Anti Join" not in plan, plan
    assert "NOT (SubPlan 1)" in plan, plan
