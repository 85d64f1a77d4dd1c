"""The outbox relayed to a real RabbitMQ and consumed into a bus, sync and asyncio, with faults.

Each test uses an exchange and queues of its own (deleted after). Faults are made the
way a network makes them: the broker cut behind a loopback proxy while the relay
publishes (the messages wait in the outbox and go once it heals), a consumer stopped
after its handler committed but before it acknowledged (the broker delivers again,
the inbox keeps the effect once), a handler that keeps failing (dead-lettered after
the delivery limit), and an exchange with no queue (refused, not dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import pytest
import pytest_asyncio
from messaging_backends import INBOX, Case

from buttress.messaging import (
    AsyncMessageBus,
    AsyncRabbitMQConsumer,
    AsyncRabbitMQTransport,
    Handlers,
    MessageBus,
    RabbitMQConsumer,
    RabbitMQTransport,
)
from buttress.testing import ContractOrder, OrderPaid
from fault_proxy import FaultProxy

pytestmark = [pytest.mark.asyncio, pytest.mark.rabbitmq]


@pytest_asyncio.fixture
async def broker(rabbitmq_url: str) -> AsyncIterator[dict[str, str]]:
    """An exchange and a queue of this test's own; both (and the dead letters) deleted after."""
    names = {
        "exchange": f"test.events.{uuid.uuid4().hex[:8]}",
        "queue": f"test.q.{uuid.uuid4().hex[:8]}",
    }
    yield names
    connection = await aio_pika.connect(rabbitmq_url)
    async with connection:
        for queue in (names["queue"], f"{names['queue']}.dead"):
            channel = await connection.channel()  # a refusal closes the channel: one each
            with contextlib.suppress(aio_pika.exceptions.ChannelClosed):
                await channel.queue_delete(queue, if_unused=False, if_empty=False)
        for exchange in (names["exchange"], f"{names['queue']}.dead"):
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.ChannelClosed):
                await channel.exchange_delete(exchange)


class Billing:
    """A durable handler: an invoice per paid order, once (the inbox), failing on demand."""

    def __init__(self, case: Case, *, fail_first: int = 0, hold: Any = None) -> None:
        self.case = case
        self.calls = 0
        self.times: list[float] = []
        self.fail_first = fail_first
        self.hold = hold  # called after the commit: a consumer stopped before its ack
        handlers = Handlers()
        if case.asynchronous:
            handlers.event(OrderPaid, durable=True)(self.bill_async)
            self.bus: Any = AsyncMessageBus(handlers, dependencies={"uow": case.backend.uow})
        else:
            handlers.event(OrderPaid, durable=True)(self.bill)
            self.bus = MessageBus(handlers, dependencies={"uow": case.backend.uow})

    def bill(self, event: OrderPaid, uow: Any) -> None:
        self.calls += 1
        self.times.append(time.monotonic())
        if self.calls <= self.fail_first:
            raise ConnectionError("the ledger is down")
        with uow:
            if INBOX.record(uow, event.event_id, "billing"):
                ref = f"invoice-{event.order_id}-{event.total}"
                uow.repository(ContractOrder).add(ContractOrder(ref=ref))
            uow.commit()
        if self.hold is not None:
            self.hold()

    async def bill_async(self, event: OrderPaid, uow: Any) -> None:
        self.calls += 1
        self.times.append(time.monotonic())
        if self.calls <= self.fail_first:
            raise ConnectionError("the ledger is down")
        async with uow:
            if await INBOX.arecord(uow, event.event_id, "billing"):
                ref = f"invoice-{event.order_id}-{event.total}"
                await uow.repository(ContractOrder).add(ContractOrder(ref=ref))
            await uow.commit()
        if self.hold is not None:
            await self.hold()

    async def invoices(self) -> list[str]:
        return await self.case.refs("inv")


@contextlib.asynccontextmanager
async def consuming(
    case: Case, billing: Billing, url: str, broker: dict[str, str], **options: Any
) -> AsyncIterator[Any]:
    """A consumer of ``billing``'s bus running until the block ends (a task, or a thread)."""
    options.setdefault("retry_delay", 0.05)
    if case.asynchronous:
        consumer: Any = AsyncRabbitMQConsumer(
            billing.bus, queue=broker["queue"], url=url, exchange=broker["exchange"], **options
        )
        stop = asyncio.Event()
        task = asyncio.create_task(consumer.run(stop))
        try:
            await declared(url, broker["queue"])
            yield consumer
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    else:
        consumer = RabbitMQConsumer(
            billing.bus, queue=broker["queue"], url=url, exchange=broker["exchange"], **options
        )
        halt = threading.Event()
        thread = threading.Thread(target=consumer.run, args=(halt,))
        thread.start()
        try:
            await declared(url, broker["queue"])
            yield consumer
        finally:
            halt.set()
            thread.join(10)
            assert not thread.is_alive()


async def declared(url: str, queue: str) -> None:
    """Wait (bounded) until the consumer has declared its queue."""
    connection = await aio_pika.connect(url)
    async with connection:
        for _ in range(100):
            channel = await connection.channel()
            try:
                await channel.declare_queue(queue, passive=True)
            except aio_pika.exceptions.ChannelClosed:
                await asyncio.sleep(0.05)
            else:
                return
    raise AssertionError(f"the consumer did not declare {queue}")


async def until(condition: Any, seconds: float = 15) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


def transport_for(case: Case, url: str, broker: dict[str, str]) -> Any:
    kind = AsyncRabbitMQTransport if case.asynchronous else RabbitMQTransport
    return kind(url, exchange=broker["exchange"], timeout=3.0)


async def close(case: Case, transport: Any) -> None:
    await case.call(transport.close())


async def test_paid_orders_reach_a_durable_handler_through_rabbitmq_once_each(
    case, rabbitmq_url, broker
):
    billing = Billing(case, fail_first=1)
    streams = await case.write({"A": 2, "B": 1})
    transport = transport_for(case, rabbitmq_url, broker)
    try:
        async with consuming(case, billing, rabbitmq_url, broker) as consumer:
            relay = case.relay(transport)
            await case.drain(relay)
            assert case.backend.outbox_rows() == []
            await until(lambda: consumer.handled == 3)
        assert consumer.returned == 1  # the first call failed: delivered again
    finally:
        await close(case, transport)
    ids = {stream: stream.split(":")[1] for stream in streams.values()}
    assert await billing.invoices() == sorted(
        [
            f"invoice-{ids[streams['A']]}-1",
            f"invoice-{ids[streams['A']]}-2",
            f"invoice-{ids[streams['B']]}-1",
        ]
    )


async def test_a_failed_message_is_held_before_it_is_delivered_again(case, rabbitmq_url, broker):
    billing = Billing(case, fail_first=1)
    await case.write({"A": 1})
    transport = transport_for(case, rabbitmq_url, broker)
    try:
        async with consuming(case, billing, rabbitmq_url, broker, retry_delay=0.5) as consumer:
            await case.drain(case.relay(transport))
            await until(lambda: consumer.handled == 1)
    finally:
        await close(case, transport)
    first, second = billing.times
    assert second - first >= 0.5  # not at once: a short outage does not use up its deliveries


async def test_a_message_no_queue_receives_is_refused_and_kept(case, rabbitmq_url, broker):
    await case.write({"A": 1})
    transport = transport_for(case, rabbitmq_url, broker)  # nobody bound a queue
    try:
        report = await case.call(case.relay(transport, retry_initial=60.0).run_once())
    finally:
        await close(case, transport)
    assert (report.claimed, report.failed) == (1, 1)
    [row] = case.backend.outbox_rows()
    assert row["attempts"] == 1
    assert row["last_error"]


# aiormq leaves the stream writer of a connection the broker dropped for the collector to close
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_broker_cut_while_publishing_loses_nothing(case, rabbitmq_url, broker):
    billing = Billing(case)
    parts = urlsplit(rabbitmq_url)
    with FaultProxy(parts.hostname or "127.0.0.1", parts.port or 5672) as proxy:
        url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
        async with consuming(case, billing, rabbitmq_url, broker) as consumer:
            transport = transport_for(case, url, broker)
            try:
                relay = case.relay(transport)
                await case.write({"A": 1})
                assert (await case.call(relay.run_once())).delivered == 1  # connected
                proxy.cut()
                await case.write({"A": 1, "B": 1})
                report = await case.call(relay.run_once())
                assert (report.claimed, report.delivered, report.failed) == (2, 0, 2)
                assert len(case.backend.outbox_rows()) == 2  # kept for the next attempt
                proxy.restore()
                await case.drain(relay)
            finally:
                await close(case, transport)
            assert case.backend.outbox_rows() == []
            await until(lambda: consumer.handled == 3)
    assert len(await billing.invoices()) == 3


async def test_a_consumer_stopped_before_its_ack_has_the_effect_once(case, rabbitmq_url, broker):
    if case.asynchronous:
        committed = asyncio.Event()

        async def hold() -> None:  # committed; the consumer is stopped before it acknowledges
            committed.set()
            await asyncio.sleep(3600)
    else:
        committed_sync = threading.Event()

        def hold_sync() -> None:
            committed_sync.set()
            raise Died  # the worker dies after the commit, before the ack

    first = Billing(case, hold=hold if case.asynchronous else hold_sync)
    await case.write({"A": 1})
    transport = transport_for(case, rabbitmq_url, broker)
    try:
        if case.asynchronous:
            consumer = AsyncRabbitMQConsumer(
                first.bus, queue=broker["queue"], url=rabbitmq_url, exchange=broker["exchange"]
            )
            task = asyncio.create_task(consumer.run())
            await declared(rabbitmq_url, broker["queue"])
            await case.drain(case.relay(transport))
            await asyncio.wait_for(committed.wait(), 15)
            task.cancel()  # the consumer stops with the message unacknowledged
            with contextlib.suppress(asyncio.CancelledError):
                await task
        else:
            consumer = RabbitMQConsumer(
                first.bus, queue=broker["queue"], url=rabbitmq_url, exchange=broker["exchange"]
            )
            thread = threading.Thread(target=dies, args=(consumer,))
            thread.start()
            await declared(rabbitmq_url, broker["queue"])
            await case.drain(case.relay(transport))
            await until(committed_sync.is_set)
            await until(lambda: not thread.is_alive())  # it died with the message unacknowledged
        assert len(await first.invoices()) == 1

        second = Billing(case)
        async with consuming(case, second, rabbitmq_url, broker) as again:
            await until(lambda: again.handled == 1)  # delivered again ...
        assert second.calls == 1
        assert len(await second.invoices()) == 1  # ... and the inbox kept the effect once
    finally:
        await close(case, transport)


async def test_a_message_failing_every_delivery_ends_in_the_dead_letter_queue(
    case, rabbitmq_url, broker
):
    billing = Billing(case, fail_first=100)
    await case.write({"A": 1})
    transport = transport_for(case, rabbitmq_url, broker)
    try:
        async with consuming(case, billing, rabbitmq_url, broker, delivery_limit=2) as consumer:
            await case.drain(case.relay(transport))
            await until(lambda: consumer.returned == 3)  # the first delivery and two more
    finally:
        await close(case, transport)
    connection = await aio_pika.connect(rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        dead = await channel.declare_queue(f"{broker['queue']}.dead", passive=True)
        for _ in range(100):
            message = await dead.get(fail=False)
            if message is not None:
                break
            await asyncio.sleep(0.05)
        assert message is not None
        assert OrderPaid.event_name.encode() in message.body
        await message.ack()
    assert await billing.invoices() == []


class Died(BaseException):
    """A consumer process ending abruptly (the handler's commit done, the ack not sent)."""


def dies(consumer: RabbitMQConsumer) -> None:
    with contextlib.suppress(Died):
        consumer.run()


async def test_consumer_settings_out_of_range_are_refused():
    from buttress.errors import ConfigurationError  # noqa: PLC0415

    with pytest.raises(ConfigurationError, match="prefetch"):
        RabbitMQConsumer(MessageBus(Handlers()), queue="q", prefetch=0)
    with pytest.raises(ConfigurationError, match="retry_delay"):
        RabbitMQConsumer(MessageBus(Handlers()), queue="q", retry_delay=-1)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # see the cut test
async def test_a_consumer_whose_connection_drops_ends_with_a_connection_error(rabbitmq_url, broker):
    parts = urlsplit(rabbitmq_url)
    with FaultProxy(parts.hostname or "127.0.0.1", parts.port or 5672) as proxy:
        url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
        consumer = AsyncRabbitMQConsumer(
            AsyncMessageBus(Handlers()), queue=broker["queue"], url=url, exchange=broker["exchange"]
        )
        running = asyncio.create_task(consumer.run())
        await declared(rabbitmq_url, broker["queue"])
        proxy.drop()  # a broker restart, as the client sees it
        with pytest.raises(ConnectionError, match="run it again"):
            await asyncio.wait_for(running, 15)
