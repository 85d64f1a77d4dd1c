"""The transactional outbox: the events of each commit, stored in its own transaction."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from buttress.errors import ConfigurationError
from buttress.messaging._context import dispatch_ids

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from buttress.domain import DomainEvent

__all__ = ["Outbox"]

_WAKERS = "buttress_outbox_wakers"
logger = logging.getLogger("buttress.messaging")


class Outbox:
    """The outbox table, and the rows a unit of work writes into it at each commit.

    Pass it to a unit of work as ``outbox=``: at each commit the events of the
    aggregates the unit saw are inserted, with one statement, in the commit's
    transaction, in the order they were recorded. Each row carries the
    message id (the event's ``event_id``), its stream (``"<Model>:<key>"`` of
    the aggregate that recorded it: the unit of ordering), its topic (the
    event's name), the event as JSON (`DomainEvent.to_json`), headers (the
    correlation and causation ids of the dispatch that caused it, when a
    message bus ran the handler), and the relay's bookkeeping: attempts,
    when it is next available, a lease.

    The table is an ordinary SQLAlchemy `Table` on the metadata you pass, so
    ``metadata.create_all`` and Alembic's autogenerate see it.

    Args:
        metadata: The application's metadata.
        table_name: The table's name.

    Raises:
        ConfigurationError: ``metadata`` already has a different table of that name.

    Example:
        ```python
        import sqlalchemy as sa

        from buttress.messaging import Outbox

        metadata = sa.MetaData()
        outbox = Outbox(metadata)
        assert outbox.table.name in metadata.tables
        ```
    """

    __slots__ = ("_table", "_wakers")

    def __init__(self, metadata: sa.MetaData, *, table_name: str = "buttress_outbox") -> None:
        existing = metadata.tables.get(table_name)
        if existing is not None:
            if set(existing.columns.keys()) != {column.name for column in _columns()}:
                raise ConfigurationError(
                    f"the metadata already has a table {table_name!r} that is not an outbox; "
                    "pass another table_name="
                )
            self._table = existing
        else:
            self._table = sa.Table(table_name, metadata, *_columns(), *_indexes(table_name))
        # kept on the table: every Outbox of it wakes the same relays
        self._wakers: list[Callable[[], None]] = self._table.info.setdefault(_WAKERS, [])

    @property
    def table(self) -> sa.Table:
        """The outbox table."""
        return self._table

    def written(self) -> None:
        """Wake the relays of this process waiting on this outbox (a unit just committed rows)."""
        for wake in tuple(self._wakers):
            try:
                wake()
            except Exception:  # the commit is done: a waker cannot undo it
                logger.exception("waking a relay after a commit failed")

    def subscribe(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake`` after each commit that writes rows here; return what unsubscribes it.

        ``wake`` runs in the committing thread, right after the commit: it
        should only signal (set an event), never block.
        """
        self._wakers.append(wake)
        return functools.partial(_discard, self._wakers, wake)

    def rows(self, events: Sequence[tuple[DomainEvent, str]]) -> list[dict[str, Any]]:
        """The rows of ``events``, each given with its stream, in order.

        Args:
            events: ``(event, stream)`` pairs, oldest first.

        Returns:
            One row (a mapping of column names to values) per event.
        """
        now = datetime.now(UTC)
        headers = _headers()
        return [
            {
                "message_id": event.event_id,
                "stream": stream,
                "topic": event.event_name,
                "payload": event.to_json(),
                "headers": headers,
                "created_at": now,
                "available_at": now,
                "attempts": 0,
                "status": "pending",
                "last_error": None,
                "lease_token": None,
                "leased_until": None,
            }
            for event, stream in events
        ]


def _discard(wakers: list[Callable[[], None]], wake: Callable[[], None]) -> None:
    with contextlib.suppress(ValueError):
        wakers.remove(wake)


def _columns() -> Iterator[sa.Column[Any]]:
    yield sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)
    yield sa.Column("message_id", sa.Uuid(), nullable=False, unique=True)
    yield sa.Column("stream", sa.String(255), nullable=False)
    yield sa.Column("topic", sa.String(255), nullable=False)
    yield sa.Column("payload", sa.Text(), nullable=False)
    yield sa.Column("headers", sa.Text(), nullable=False)
    yield sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)
    yield sa.Column("available_at", sa.DateTime(timezone=True), nullable=False)
    yield sa.Column("attempts", sa.Integer(), nullable=False)
    yield sa.Column("status", sa.String(16), nullable=False)
    yield sa.Column("last_error", sa.Text(), nullable=True)
    yield sa.Column("lease_token", sa.Uuid(), nullable=True)
    yield sa.Column("leased_until", sa.DateTime(timezone=True), nullable=True)


def _indexes(table_name: str) -> Iterator[sa.Index]:
    # every index costs each commit's INSERT: the stream's order is the one the relay needs
    yield sa.Index(f"ix_{table_name}_stream_id", "stream", "id")


def _headers() -> str:
    return json.dumps(dispatch_ids(), separators=(",", ":"), sort_keys=True)
