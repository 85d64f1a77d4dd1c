"""A consumer for the relay's fault tests: each message's effect once, through the inbox.

The effect adds one to the total of the order named after the message's stream: done
twice, the total shows it.

Imported by name by the tests and by the relay process they kill.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from messaging_backends import INBOX

from buttress.domain import F
from buttress.messaging import Message
from buttress.persistence import SqlAlchemyUnitOfWork
from buttress.testing import ContractOrder


class Consumer:
    """Counts each message on its stream's order, skipping (and counting) what it has handled."""

    def __init__(self, sessions: Any) -> None:
        self.sessions = sessions
        self.skipped = 0

    def publish(self, messages: Sequence[Message]) -> Mapping[Any, BaseException]:
        for message in messages:
            with SqlAlchemyUnitOfWork(self.sessions) as uow:
                if INBOX.record(uow, message.message_id, "orders.effect"):
                    uow.repository(ContractOrder).get_by(F("ref") == message.stream).total += 1
                else:
                    self.skipped += 1
                uow.commit()
        return {}
