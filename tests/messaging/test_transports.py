"""Every transport keeps the contract a relay relies on (`buttress.testing.TransportContract`).

The recording transports, the in-process ones (through a bus's durable handler), and
RabbitMQ's (through a queue bound to the exchange, read by a consumer of the test's own).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aio_pika
import pytest
import pytest_asyncio

from buttress.messaging import (
    AsyncInProcessTransport,
    AsyncMessageBus,
    AsyncRabbitMQTransport,
    Handlers,
    InProcessTransport,
    MessageBus,
    RabbitMQTransport,
)
from buttress.testing import (
    AsyncRecordingTransport,
    OrderPaid,
    RecordingTransport,
    TransportContract,
)


class TestRecordingTransport(TransportContract):
    @pytest.fixture
    def transport(self) -> RecordingTransport:
        return RecordingTransport()

    @pytest.fixture
    def delivered(self, transport: RecordingTransport) -> Callable[[], list[Any]]:
        return lambda: list(transport.delivered)


class TestAsyncRecordingTransport(TestRecordingTransport):
    @pytest.fixture
    def transport(self) -> RecordingTransport:
        return AsyncRecordingTransport()


@pytest.fixture
def handled() -> list[uuid.UUID]:
    return []


class TestInProcessTransport(TransportContract):
    @pytest.fixture
    def transport(self, handled: list[uuid.UUID]) -> Any:
        handlers = Handlers()
        handlers.event(OrderPaid, durable=True)(lambda event: handled.append(event.event_id))
        return InProcessTransport(MessageBus(handlers))

    @pytest.fixture
    def delivered(self, handled: list[uuid.UUID]) -> Callable[[], list[Any]]:
        return lambda: list(handled)


class TestAsyncInProcessTransport(TestInProcessTransport):
    @pytest.fixture
    def transport(self, handled: list[uuid.UUID]) -> Any:
        handlers = Handlers()

        @handlers.event(OrderPaid, durable=True)
        async def note(event: OrderPaid) -> None:
            handled.append(event.event_id)

        return AsyncInProcessTransport(AsyncMessageBus(handlers))


@pytest_asyncio.fixture
async def bound_queue(rabbitmq_url: str) -> AsyncIterator[tuple[str, list[str]]]:
    """An exchange of the test's own, bound to a queue a consumer reads; all deleted after."""
    exchange_name = f"test.contract.{uuid.uuid4().hex[:8]}"
    received: list[str] = []
    connection = await aio_pika.connect(rabbitmq_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(
        exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, routing_key="#")

    async def note(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        received.append(str(message.message_id))
        await message.ack()

    await queue.consume(note)
    try:
        yield exchange_name, received
    finally:
        with contextlib.suppress(Exception):
            await channel.exchange_delete(exchange_name)
        await connection.close()


class TestAsyncRabbitMQTransport(TransportContract):
    pytestmark = pytest.mark.rabbitmq

    @pytest_asyncio.fixture
    async def transport(
        self, rabbitmq_url: str, bound_queue: tuple[str, list[str]]
    ) -> AsyncIterator[Any]:
        transport = AsyncRabbitMQTransport(rabbitmq_url, exchange=bound_queue[0])
        yield transport
        await transport.close()

    @pytest.fixture
    def delivered(self, bound_queue: tuple[str, list[str]]) -> Callable[[], list[Any]]:
        return lambda: list(bound_queue[1])


class TestRabbitMQTransport(TestAsyncRabbitMQTransport):
    @pytest.fixture
    def transport(  # type: ignore[override]
        self, rabbitmq_url: str, bound_queue: tuple[str, list[str]]
    ) -> Iterator[Any]:
        transport = RabbitMQTransport(rabbitmq_url, exchange=bound_queue[0])
        yield transport
        transport.close()


def test_the_contract_catches_a_transport_that_drops_half() -> None:
    """A control: a transport that reports success for messages it dropped fails the contract."""

    class Dropping(RecordingTransport):
        def publish(self, messages: Any) -> Any:
            super().publish(messages[::2])
            return {}

    contract = TransportContract()
    transport = Dropping()
    with pytest.raises(AssertionError):
        asyncio.run(
            contract.test_every_accepted_message_arrives_once(
                transport, lambda: list(transport.delivered)
            )
        )
