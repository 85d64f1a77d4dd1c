"""Transports for tests: they keep what a relay gives them, and fail on demand."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import uuid
    from collections.abc import Callable, Mapping, Sequence

    from buttress.messaging import Message

__all__ = ["AsyncRecordingTransport", "RecordingTransport"]


class RecordingTransport:
    """A `buttress.messaging.Transport` that records every message, failing the ones you choose.

    ``published`` holds every message handed over, attempt by attempt;
    ``delivered`` those it accepted, in the order it accepted them. Give
    ``fail`` to refuse some: it is called with each message and returns the
    error to fail it with, or None to accept it.

    Args:
        fail: Chooses the messages to refuse, and their errors.

    Example:
        ```python
        from buttress.testing import RecordingTransport


        def refuse_payments(message):
            return ValueError("poison") if message.topic == "payment" else None


        transport = RecordingTransport(fail=refuse_payments)
        assert transport.delivered == []
        ```
    """

    def __init__(self, *, fail: Callable[[Message], BaseException | None] | None = None) -> None:
        self.fail = fail
        self.published: list[Message] = []
        self.delivered: list[Message] = []
        self._lock = threading.Lock()  # relays in several threads may share one

    def publish(self, messages: Sequence[Message]) -> Mapping[uuid.UUID, BaseException]:
        """Record ``messages``; return the ones ``fail`` refused."""
        failures: dict[uuid.UUID, BaseException] = {}
        with self._lock:
            for message in messages:
                self.published.append(message)
                error = self.fail(message) if self.fail is not None else None
                if error is None:
                    self.delivered.append(message)
                else:
                    failures[message.message_id] = error
        return failures

    def by_stream(self) -> dict[str, list[Message]]:
        """The delivered messages of each stream, in delivery order."""
        streams: dict[str, list[Message]] = {}
        with self._lock:
            for message in self.delivered:
                streams.setdefault(message.stream, []).append(message)
        return streams


class AsyncRecordingTransport(RecordingTransport):
    """The asyncio flavour of `RecordingTransport`, for `buttress.messaging.AsyncRelay`."""

    async def publish(  # type: ignore[override]
        self, messages: Sequence[Message]
    ) -> Mapping[uuid.UUID, BaseException]:
        """See `RecordingTransport.publish`."""
        return RecordingTransport.publish(self, messages)
