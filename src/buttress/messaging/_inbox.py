"""The inbox: which handler has handled which message, recorded in the handler's transaction."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import registry

from buttress.domain import F
from buttress.errors import ConfigurationError

if TYPE_CHECKING:
    from buttress.persistence import AsyncUnitOfWork, UnitOfWork

__all__ = ["Inbox"]


class InboxRecord:
    """One handled message: ``(message_id, handler)`` and when it was received."""

    message_id: uuid.UUID
    handler: str
    received_at: datetime

    def __init__(self, message_id: uuid.UUID, handler: str, received_at: datetime) -> None:
        self.message_id = message_id
        self.handler = handler
        self.received_at = received_at


class Inbox:
    """Makes a redelivered message's effect happen once: each handler records what it handled.

    A consumer that may receive a message twice (a broker redelivers after a
    crash, a relay retries after a lost acknowledgement) calls `record` in the
    unit of work of its effect, before the effect. The first time it returns
    ``True`` and the record commits with the effect, or rolls back with it;
    after that it returns ``False`` and the handler skips the effect. Two
    deliveries handled at once: the second's `record` (or its commit) raises
    `ConflictError` and nothing of it is kept; when redelivered it sees the
    first's record.

    Records are rows of an ordinary table on the metadata you pass (so
    Alembic sees it), read and written through the unit of work's
    repositories: the same on SQLite, PostgreSQL and the in-memory twins.

    Args:
        metadata: The application's metadata.
        table_name: The table's name.

    Raises:
        ConfigurationError: ``metadata`` already has a different table of that name.
    """

    __slots__ = ("_model", "_table")

    def __init__(self, metadata: sa.MetaData, *, table_name: str = "buttress_inbox") -> None:
        existing = metadata.tables.get(table_name)
        if existing is not None:
            raise ConfigurationError(
                f"the metadata already has a table {table_name!r}; give each Inbox its own "
                "table_name= (one Inbox per table)"
            )
        self._table = sa.Table(
            table_name,
            metadata,
            sa.Column("message_id", sa.Uuid(), primary_key=True),
            sa.Column("handler", sa.String(255), primary_key=True),
            sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, index=True),
        )
        model = type("InboxRecord", (InboxRecord,), {"__module__": __name__})
        registry(metadata=metadata).map_imperatively(model, self._table)
        self._model: type[InboxRecord] = model

    @property
    def table(self) -> sa.Table:
        """The inbox table."""
        return self._table

    @property
    def model(self) -> type[InboxRecord]:
        """The mapped class of the table's rows (for your own queries through a repository)."""
        return self._model

    def record(self, uow: UnitOfWork, message_id: uuid.UUID | str, handler: str) -> bool:
        """Record that ``handler`` handles ``message_id`` in ``uow``'s transaction.

        Args:
            uow: The entered unit of work the handler's effect is written in.
            message_id: The message's id (a UUID, or its text).
            handler: A name for the handler, stable across deployments.

        Returns:
            ``True`` the first time (do the effect); ``False`` when an earlier
            transaction recorded it (skip it).

        Raises:
            ConflictError: Another transaction recorded it and has not committed
                yet (it is being handled right now); nothing is recorded.
        """
        key, record = self._key_and_record(message_id, handler)
        repository = uow.repository(self._model)
        if repository.get_or_none(key) is not None:
            return False
        repository.add(record)
        return True

    async def arecord(
        self, uow: AsyncUnitOfWork, message_id: uuid.UUID | str, handler: str
    ) -> bool:
        """`record` for an asyncio unit of work."""
        key, record = self._key_and_record(message_id, handler)
        repository = uow.repository(self._model)
        if await repository.get_or_none(key) is not None:
            return False
        await repository.add(record)
        return True

    def prune(self, uow: UnitOfWork, older_than: timedelta) -> int:
        """Remove the records received more than ``older_than`` ago; return how many.

        Keep records longer than any message can be redelivered after.
        """
        return uow.repository(self._model).remove_many(F("received_at") < _cutoff(older_than))

    async def aprune(self, uow: AsyncUnitOfWork, older_than: timedelta) -> int:
        """`prune` for an asyncio unit of work."""
        return await uow.repository(self._model).remove_many(F("received_at") < _cutoff(older_than))

    def _key_and_record(
        self, message_id: uuid.UUID | str, handler: str
    ) -> tuple[tuple[uuid.UUID, str], InboxRecord]:
        name: object = handler  # callers without type checks
        if not (isinstance(name, str) and name):
            raise ConfigurationError(
                f"an inbox handler name must be a non-empty string, not {handler!r}"
            )
        try:
            message = message_id if isinstance(message_id, uuid.UUID) else uuid.UUID(message_id)
        except (TypeError, ValueError, AttributeError) as error:
            raise ConfigurationError(
                f"an inbox message id must be a UUID (or its text), not {message_id!r}"
            ) from error
        record = self._model(message, handler, datetime.now(UTC))
        return (message, handler), record


def _cutoff(older_than: timedelta) -> datetime:
    valid: object = older_than
    if not (isinstance(valid, timedelta) and valid >= timedelta(0)):
        raise ConfigurationError(
            f"older_than must be a timedelta of zero or more, not {older_than!r}"
        )
    return datetime.now(UTC) - older_than
