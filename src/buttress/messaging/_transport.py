"""What a relay hands to a transport: one message of the outbox, and the transport's protocol."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import uuid
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from buttress.domain import DomainEvent
    from buttress.messaging._bus import MessageBus
    from buttress.messaging._bus_async import AsyncMessageBus

__all__ = [
    "AsyncInProcessTransport",
    "AsyncTransport",
    "InProcessTransport",
    "Message",
    "Transport",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """One event of the outbox, on its way to a transport.

    Attributes:
        message_id: The event's ``event_id``: what consumers deduplicate on
            (`buttress.messaging.Inbox`).
        stream: The aggregate that recorded it (``"<Model>:<key>"``): messages
            of one stream are delivered one at a time, in order.
        topic: The event's name (`DomainEvent.event_name`).
        payload: The event as JSON (`DomainEvent.to_json`).
        headers: The correlation and causation ids of the dispatch that caused it.
        attempt: Which delivery attempt this is (1 the first time).
        created_at: When the commit that recorded it wrote it.
    """

    message_id: uuid.UUID
    stream: str
    topic: str
    payload: str
    headers: Mapping[str, str]
    attempt: int
    created_at: datetime

    def event(self) -> DomainEvent:
        """The event this message carries, rebuilt as its registered class.

        Raises:
            DecodeError: The payload is not an event this process knows.
        """
        from buttress.domain import DomainEvent  # noqa: PLC0415 - only consumers decode

        return DomainEvent.from_json(self.payload)


class Transport(Protocol):
    """Where a `Relay` delivers the outbox's messages (a broker, or handlers in this process).

    A batch never holds two messages of one stream (a stream's next message is
    claimed only once this one is delivered), so a transport may publish the
    batch in any order or all at once. A message counts as delivered when
    `publish` returns without naming it among the failures: a transport that
    acknowledges before the broker has the message (no publisher confirms)
    can lose it.
    """

    def publish(self, messages: Sequence[Message]) -> Mapping[uuid.UUID, BaseException]:
        """Deliver ``messages``; return the ones that failed, by message id, with their error.

        Raising fails the whole batch: each message is retried later.
        """
        ...


class AsyncTransport(Protocol):
    """The asyncio flavour of `Transport`, for `AsyncRelay`."""

    async def publish(self, messages: Sequence[Message]) -> Mapping[uuid.UUID, BaseException]:
        """See `Transport.publish`."""
        ...


class InProcessTransport:
    """Delivers each message to the durable handlers of a bus in this process.

    The default transport: one machine, nothing to install. For each message
    it rebuilds the event and calls `MessageBus.deliver`; a message whose
    durable handlers failed (or whose event this process does not know) is
    reported failed, and the relay tries it again later.

    Args:
        bus: The bus whose durable handlers receive the events.

    Example:
        ```python
        from buttress.messaging import Handlers, InProcessTransport, MessageBus

        transport = InProcessTransport(MessageBus(Handlers()))
        assert transport.publish([]) == {}
        ```
    """

    __slots__ = ("_bus",)

    def __init__(self, bus: MessageBus) -> None:
        self._bus = bus

    def publish(self, messages: Sequence[Message]) -> Mapping[uuid.UUID, BaseException]:
        """Deliver each message in turn; return the ones that failed."""
        failures: dict[uuid.UUID, BaseException] = {}
        for message in messages:
            try:
                self._bus.deliver(
                    message.event(), correlation_id=message.headers.get("correlation_id")
                )
            except Exception as error:  # noqa: BLE001 - reported: the relay retries it
                failures[message.message_id] = error
        return failures


class AsyncInProcessTransport:
    """The asyncio flavour of `InProcessTransport`, for `AsyncRelay` and `AsyncMessageBus`.

    The messages of a batch (each of another stream) are delivered one after
    the other.

    Args:
        bus: The bus whose durable handlers receive the events.
    """

    __slots__ = ("_bus",)

    def __init__(self, bus: AsyncMessageBus) -> None:
        self._bus = bus

    async def publish(self, messages: Sequence[Message]) -> Mapping[uuid.UUID, BaseException]:
        """See `InProcessTransport.publish`."""
        failures: dict[uuid.UUID, BaseException] = {}
        for message in messages:
            try:
                await self._bus.deliver(
                    message.event(), correlation_id=message.headers.get("correlation_id")
                )
            except Exception as error:  # noqa: BLE001 - reported: the relay retries it
                failures[message.message_id] = error
        return failures
