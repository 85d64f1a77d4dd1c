"""The contract every relay transport keeps, as a pytest suite to subclass.

Subclass `TransportContract`, override the ``transport`` fixture (a
`buttress.messaging.Transport` or `AsyncTransport`) and the ``delivered``
fixture (a callable returning what reached the far side so far, as
`buttress.messaging.Message` objects or their ids), and pytest runs the
contract against your transport. It needs pytest-asyncio.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from buttress.messaging import Message
from buttress.testing._models import OrderPaid

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["TransportContract"]

ARRIVAL_SECONDS = 15.0  # how long the far side may take to show a delivery


def contract_messages(count: int) -> list[Message]:
    """``count`` messages of distinct streams, as a relay hands a batch over."""
    messages = []
    for n in range(count):
        event = OrderPaid(order_id=n, total=n + 1)
        messages.append(
            Message(
                message_id=event.event_id,
                stream=f"ContractOrder:{n}",
                topic=event.event_name,
                payload=event.to_json(),
                headers={"correlation_id": str(uuid.uuid4())},
                attempt=1,
                created_at=datetime.now(UTC),
            )
        )
    return messages


def _id_of(item: Any) -> uuid.UUID:
    return item.message_id if isinstance(item, Message) else uuid.UUID(str(item))


@pytest.mark.asyncio
class TransportContract:
    """What a relay relies on from a transport: each accepted message arrives, once.

    Override ``transport`` and ``delivered``; the tests publish batches and
    watch the far side.
    """

    @pytest.fixture
    def transport(self) -> Any:
        """The transport under test (sync or asyncio)."""
        raise NotImplementedError("override the transport fixture")

    @pytest.fixture
    def delivered(self) -> Callable[[], list[Any]]:
        """What reached the far side so far: messages, or their ids."""
        raise NotImplementedError("override the delivered fixture")

    @staticmethod
    async def publish(transport: Any, messages: list[Message]) -> Any:
        outcome = transport.publish(messages)
        return await outcome if inspect.isawaitable(outcome) else outcome

    @staticmethod
    async def arrived(delivered: Callable[[], list[Any]], count: int) -> list[uuid.UUID]:
        """The ids delivered, once ``count`` have arrived (or the wait ran out)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ARRIVAL_SECONDS
        ids = [_id_of(item) for item in delivered()]
        while len(ids) < count and loop.time() < deadline:
            await asyncio.sleep(0.02)
            ids = [_id_of(item) for item in delivered()]
        return ids

    async def test_an_empty_batch_fails_nothing(self, transport: Any) -> None:
        assert dict(await self.publish(transport, [])) == {}

    async def test_every_accepted_message_arrives_once(
        self, transport: Any, delivered: Callable[[], list[Any]]
    ) -> None:
        messages = contract_messages(20)
        failures = await self.publish(transport, messages)
        assert dict(failures) == {}
        ids = await self.arrived(delivered, len(messages))
        await asyncio.sleep(0.2)  # a late duplicate would show now
        ids = [_id_of(item) for item in delivered()]
        assert sorted(map(str, ids)) == sorted(str(m.message_id) for m in messages)

    async def test_a_batch_published_twice_arrives_twice_not_merged(
        self, transport: Any, delivered: Callable[[], list[Any]]
    ) -> None:
        """A relay retries a batch it could not mark: the transport must not swallow it."""
        messages = contract_messages(3)
        assert dict(await self.publish(transport, messages)) == {}
        assert dict(await self.publish(transport, messages)) == {}
        ids = await self.arrived(delivered, 6)
        assert sorted(map(str, ids)) == sorted(str(m.message_id) for m in messages * 2)

    async def test_failures_name_only_messages_of_the_batch(self, transport: Any) -> None:
        messages = contract_messages(5)
        failures = await self.publish(transport, messages)
        assert set(failures) <= {message.message_id for message in messages}
