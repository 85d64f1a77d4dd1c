"""What both relays share: the reports, the statements over the outbox table, the twin's rows.

A relay claims the head of each stream (its oldest row still in the table)
when that head is pending, due and not leased by another relay; it leases it
with its token, hands the batch to the transport, deletes what was delivered
and marks what failed (backed off, or dead after the last attempt), both only
where its token still stands. A dead head holds its stream until it is
replayed or purged; other streams go on. The SQL statements and the twin's
list operations below are the two spellings of those rules.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from buttress.errors import ConfigurationError
from buttress.messaging._transport import Message

if TYPE_CHECKING:
    import asyncio
    import threading
    import uuid
    from collections.abc import Awaitable, Callable, Sequence

__all__ = [
    "Backlog",
    "DeadLetter",
    "RelayReport",
    "Statements",
    "memory_backlog",
    "memory_claim",
    "memory_dead",
    "memory_delete",
    "memory_fail",
    "memory_replay",
    "message_of",
]

PENDING = "pending"
DEAD = "dead"
Row = dict[str, Any]
T = TypeVar("T")
_ERROR_LENGTH = 2000  # characters of a failed attempt's error kept in the outbox


@dataclasses.dataclass(frozen=True, slots=True)
class RelayReport:
    """What one round of a relay did.

    Attributes:
        claimed: Messages it leased and handed to the transport.
        delivered: Messages the transport took, removed from the outbox.
        failed: Messages the transport refused, to be tried again later.
        dead: Messages that failed their last attempt, now dead letters.
        lease_lost: Marks that changed nothing: another relay had taken the
            message over after this one's lease ran out (it delivers it again).
    """

    claimed: int = 0
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    lease_lost: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Backlog:
    """How far behind the relays are.

    Attributes:
        pending: Messages waiting for delivery (retries and held ones included).
        dead: Dead letters, waiting to be replayed or purged.
        oldest_age: How long the oldest pending message has waited; None with none.
    """

    pending: int
    dead: int
    oldest_age: timedelta | None


@dataclasses.dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that failed every attempt; it holds the later messages of its stream.

    Attributes:
        message: The message, as it was last handed to the transport.
        last_error: The error of its last attempt.
    """

    message: Message
    last_error: str


def utcnow() -> datetime:
    """Now, in UTC: the clock of every lease and every availability time."""
    return datetime.now(UTC)


def aware(moment: datetime) -> datetime:
    """``moment`` in UTC (SQLite gives back the naive UTC time it stored)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def message_of(row: Row) -> Message:
    """The message a claimed (or dead) row carries."""
    return Message(
        message_id=row["message_id"],
        stream=row["stream"],
        topic=row["topic"],
        payload=row["payload"],
        headers=json.loads(row["headers"]),
        attempt=row["attempts"],
        created_at=aware(row["created_at"]),
    )


def check_settings(
    *,
    batch_size: int,
    lease: float,
    max_attempts: int,
    poll_interval: float,
    retry_initial: float,
    retry_max: float,
    retry_jitter: float,
) -> None:
    """Refuse settings no relay can run with.

    Raises:
        ConfigurationError: One of them is out of range.
    """
    if batch_size < 1:
        raise ConfigurationError(f"batch_size must be at least 1, got {batch_size}")
    if lease <= 0:
        raise ConfigurationError(
            f"lease must be a positive number of seconds (longer than a publish), got {lease}"
        )
    if max_attempts < 1:
        raise ConfigurationError(f"max_attempts must be at least 1, got {max_attempts}")
    if poll_interval <= 0:
        raise ConfigurationError(f"poll_interval must be positive, got {poll_interval}")
    if min(retry_initial, retry_max, retry_jitter) < 0:
        raise ConfigurationError(
            "retry_initial, retry_max and retry_jitter are seconds and cannot be negative, got "
            f"{retry_initial}, {retry_max} and {retry_jitter}"
        )


def error_text(error: BaseException) -> str:
    """How a failed attempt's error is stored: its type and message, bounded."""
    text = f"{type(error).__qualname__}: {error}"
    return text if len(text) <= _ERROR_LENGTH else text[: _ERROR_LENGTH - 3] + "..."


# -- SQL ---------------------------------------------------------------------------------


class Statements:
    """The relay's statements over one outbox table, built once per relay.

    On PostgreSQL the claim locks the heads it takes ``FOR UPDATE SKIP LOCKED``
    (concurrent claims skip each other's rows instead of waiting); SQLite has
    one writer, so its claims simply take turns.
    """

    def __init__(self, table: sa.Table, batch_size: int, dialect: str) -> None:
        c = table.c
        earlier = table.alias("earlier")
        now = sa.bindparam("b_now", type_=c.available_at.type)
        heads = (
            sa.select(c.id)
            .where(
                c.status == PENDING,
                c.available_at <= now,
                sa.or_(c.leased_until.is_(None), c.leased_until <= now),
                # OFFSET 0 keeps PostgreSQL from turning this probe of the (stream, id)
                # index into a join on the stream alone, quadratic in a stream's length
                ~sa.exists(
                    sa.select(1)
                    .where(earlier.c.stream == c.stream, earlier.c.id < c.id)
                    .offset(sa.literal_column("0"))
                ),
            )
            .order_by(c.id)
            .limit(batch_size)
            .with_for_update(skip_locked=True)
        )
        self.claim = (
            sa.update(table)
            .where(c.id.in_(heads.scalar_subquery()))
            .values(
                lease_token=sa.bindparam("b_token", type_=c.lease_token.type),
                leased_until=sa.bindparam("b_until", type_=c.leased_until.type),
                attempts=c.attempts + 1,
            )
            .returning(
                c.id, c.message_id, c.stream, c.topic, c.payload, c.headers, c.attempts,
                c.created_at,
            )
        )  # fmt: skip
        mine = c.lease_token == sa.bindparam("b_token", type_=c.lease_token.type)
        if dialect == "postgresql":  # one array: the same statement (prepared once) every time
            ids = sa.bindparam("b_ids", type_=postgresql.ARRAY(c.id.type))
            delivered = c.id == sa.any_(ids)
        else:
            delivered = c.id.in_(sa.bindparam("b_ids", expanding=True))
        self.delete = sa.delete(table).where(delivered, mine)
        self.fail = (
            sa.update(table)
            .where(c.id == sa.bindparam("b_id", type_=c.id.type), mine)
            .values(
                status=sa.bindparam("b_status", type_=c.status.type),
                available_at=sa.bindparam("b_available", type_=c.available_at.type),
                last_error=sa.bindparam("b_error", type_=c.last_error.type),
                lease_token=None,
                leased_until=None,
            )
        )
        pending = c.status == PENDING
        self.backlog = sa.select(
            sa.func.count(sa.case((pending, 1))),
            sa.func.count(sa.case((c.status == DEAD, 1))),
            sa.func.min(sa.case((pending, c.created_at))),
        )
        self.dead = sa.select(table).where(c.status == DEAD).order_by(c.id)
        self.release = sa.update(table).where(mine).values(lease_token=None, leased_until=None)
        self.table = table

    def replay(self, message_ids: Sequence[uuid.UUID] | None, now: datetime) -> sa.Update:
        """Make dead letters pending again, with their attempts back to zero."""
        return (
            sa.update(self.table)
            .where(*self._dead(message_ids))
            .values(status=PENDING, attempts=0, available_at=now, last_error=None)
        )

    def purge(self, message_ids: Sequence[uuid.UUID] | None) -> sa.Delete:
        """Remove dead letters: their streams go on with their next message."""
        return sa.delete(self.table).where(*self._dead(message_ids))

    def _dead(self, message_ids: Sequence[uuid.UUID] | None) -> list[sa.ColumnElement[bool]]:
        c = self.table.c
        where = [c.status == DEAD]
        if message_ids is not None:
            where.append(c.message_id.in_(list(message_ids)))
        return where


def check_dialect(name: str) -> None:
    """Refuse a database the relay's statements are not written for.

    Raises:
        ConfigurationError: It is neither PostgreSQL nor SQLite.
    """
    if name not in {"postgresql", "sqlite"}:
        raise ConfigurationError(
            f"the relay runs on PostgreSQL and SQLite; {name} is not supported"
        )


def needs_read_committed(dialect: str, level: str | None) -> bool:
    """Whether connections at ``level`` must be set to READ COMMITTED for the claim.

    Under REPEATABLE READ or SERIALIZABLE (set on the engine, the server, the
    database or the role) a claim that meets a row another relay changed since
    its snapshot fails instead of skipping it. Left at READ COMMITTED, the
    engine is used as it is: setting the level again costs two round trips
    per transaction.
    """
    return dialect == "postgresql" and level != "READ COMMITTED"


# -- the in-memory twin ------------------------------------------------------------------


def _due(row: Row, now: datetime) -> bool:
    leased = row["leased_until"]
    return (
        row["status"] == PENDING
        and row["available_at"] <= now
        and (leased is None or leased <= now)
    )


def memory_claim(
    rows: list[Row], *, now: datetime, until: datetime, token: uuid.UUID, limit: int
) -> list[Row]:
    """Lease the due heads of the twin's streams, oldest first; copies of them."""
    seen: set[str] = set()
    claimed = []
    for row in rows:
        stream = row["stream"]
        if stream in seen:
            continue  # behind its stream's head
        seen.add(stream)
        if _due(row, now):
            row.update(lease_token=token, leased_until=until, attempts=row["attempts"] + 1)
            claimed.append(dict(row))
            if len(claimed) == limit:
                break
    return claimed


def memory_delete(rows: list[Row], *, token: uuid.UUID, ids: Sequence[int]) -> int:
    """Remove the delivered rows still leased with ``token``; how many."""
    wanted = set(ids)
    kept = [row for row in rows if not (row["id"] in wanted and row["lease_token"] == token)]
    removed = len(rows) - len(kept)
    rows[:] = kept
    return removed


def memory_fail(rows: list[Row], *, token: uuid.UUID, marks: Sequence[Row]) -> list[int]:
    """Mark the failed rows still leased with ``token``; the ids of those marked."""
    by_id = {mark["b_id"]: mark for mark in marks}
    changed: list[int] = []
    for row in rows:
        mark = by_id.get(row["id"])
        if mark is not None and row["lease_token"] == token:
            row.update(
                status=mark["b_status"],
                available_at=mark["b_available"],
                last_error=mark["b_error"],
                lease_token=None,
                leased_until=None,
            )
            changed.append(row["id"])
    return changed


def memory_release(rows: list[Row], *, token: uuid.UUID) -> int:
    """Give back the leases still held with ``token``; how many."""
    released = 0
    for row in rows:
        if row["lease_token"] == token:
            row.update(lease_token=None, leased_until=None)
            released += 1
    return released


def memory_backlog(rows: list[Row]) -> tuple[int, int, datetime | None]:
    """Pending count, dead count, and when the oldest pending row was written."""
    pending = [row["created_at"] for row in rows if row["status"] == PENDING]
    dead = sum(1 for row in rows if row["status"] == DEAD)
    return len(pending), dead, min(pending, default=None)


def memory_dead(rows: list[Row], *, limit: int) -> list[Row]:
    """Copies of the first ``limit`` dead rows."""
    return [dict(row) for row in rows if row["status"] == DEAD][:limit]


def memory_replay(
    rows: list[Row], *, message_ids: Sequence[uuid.UUID] | None, now: datetime
) -> int:
    """Make the chosen dead rows pending again; how many."""
    chosen = None if message_ids is None else set(message_ids)
    changed = 0
    for row in rows:
        if row["status"] == DEAD and (chosen is None or row["message_id"] in chosen):
            row.update(status=PENDING, attempts=0, available_at=now, last_error=None)
            changed += 1
    return changed


def memory_purge(rows: list[Row], *, message_ids: Sequence[uuid.UUID] | None) -> int:
    """Remove the chosen dead rows; how many."""
    chosen = None if message_ids is None else set(message_ids)
    kept = [
        row
        for row in rows
        if not (row["status"] == DEAD and (chosen is None or row["message_id"] in chosen))
    ]
    removed = len(rows) - len(kept)
    rows[:] = kept
    return removed


# -- waiting -----------------------------------------------------------------------------


def relay_woken(wake: threading.Event, stop: threading.Event, seconds: float) -> None:
    """Wait up to ``seconds`` for a commit's wake-up, returning early on ``stop``."""
    deadline = time.monotonic() + seconds
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0 or wake.wait(min(left, 0.05)):
            break
    wake.clear()


async def relay_woken_async(wake: asyncio.Event, stop: asyncio.Event, seconds: float) -> None:
    """See `relay_woken`."""
    import asyncio  # noqa: PLC0415 - only asyncio relays wait this way

    waits = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
    wake.clear()


def publish_bounded(outcome: T, lease: timedelta) -> T:
    """A plain transport's outcome, as it is: a thread cannot be stopped from outside."""
    del lease
    return outcome


async def publish_bounded_async(publishing: Awaitable[T], lease: timedelta) -> T:
    """Await an asyncio transport's publish for at most ``lease``.

    Raises:
        TimeoutError: The publish outlived the lease (another relay may hold the batch).
    """
    import asyncio  # noqa: PLC0415 - only asyncio relays wait this way

    return await asyncio.wait_for(publishing, lease.total_seconds())


def thread_waker(wake: threading.Event) -> Callable[[], None]:
    """What an outbox calls after a commit to wake a thread's relay."""
    return wake.set


def loop_waker(wake: asyncio.Event, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """What an outbox calls after a commit (in any thread) to wake an asyncio relay."""

    def waken() -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: its relay has stopped
            loop.call_soon_threadsafe(wake.set)

    return waken
