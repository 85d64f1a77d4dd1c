"""The asyncio relay: delivers the outbox's messages to a transport, in order per stream."""

from __future__ import annotations

import asyncio  # unasync: sync: import threading
import functools
import logging
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from buttress.messaging._relay_core import (
    DEAD,
    PENDING,
    Backlog,
    DeadLetter,
    RelayReport,
    Statements,
    aware,
    check_dialect,
    check_settings,
    error_text,
    loop_waker,  # unasync: sync: thread_waker,
    memory_backlog,
    memory_claim,
    memory_dead,
    memory_delete,
    memory_fail,
    memory_purge,
    memory_release,
    memory_replay,
    message_of,
    needs_read_committed,
    publish_bounded_async,
    relay_woken_async,
    utcnow,
)
from buttress.persistence import InMemoryStore
from buttress.resilience._retry import exponential_jitter, wait_before

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import AsyncEngine  # unasync: sync: from sqlalchemy import Engine

    from buttress.messaging._outbox import Outbox
    from buttress.messaging._transport import AsyncTransport, Message

__all__ = ["AsyncRelay"]

_log = logging.getLogger("buttress.messaging.relay")


class AsyncRelay:
    """Delivers the outbox's messages to a transport: at least once, in order per stream.

    Each round (`run_once`) claims the oldest message of each stream whose
    earlier messages are all delivered, when it is due and no other relay holds
    it, and leases it with a token for ``lease`` seconds; it hands the batch to
    the transport, removes what was delivered and backs off what failed, each
    only while its token still stands (a relay that stalled past its lease
    changes nothing: the relay that took over delivers the message again, and
    the round counts a lost lease). Any number of relays may run at once on
    PostgreSQL (claims skip each other's rows, ``FOR UPDATE SKIP LOCKED``): a
    stream never has two messages in flight, so its messages arrive in the
    order they were committed. On SQLite the relays take turns (one writer).

    A failed message is tried again after tenacity's exponential wait with
    jitter (``retry_initial`` doubling up to ``retry_max``); after
    ``max_attempts`` it is a dead letter (`dead_letters`), holding the later
    messages of its stream until it is replayed (`replay`) or dropped
    (`purge`). Other streams go on.

    Delivery is at least once: a relay that dies after publishing and before
    removing the message leaves it to be published again when its lease ends.
    Consumers make redelivery harmless with `buttress.messaging.Inbox`.

    Args:
        source: The application's database (the engine its units of work
            commit through), or the `InMemoryStore` of in-memory units of work.
        outbox: The outbox the units of work write.
        transport: Where the messages go.
        batch_size: Most messages claimed per round (one per stream).
        lease: Seconds a claim holds its messages: longer than a publish takes
            (`AsyncRelay` gives up a publish that outlives it; the messages are
            retried).
        max_attempts: Deliveries tried before a message is dead.
        retry_initial: Seconds before the first retry; each next one doubles.
        retry_max: Longest wait between two attempts, in seconds.
        retry_jitter: Up to this many seconds added at random to each wait.
        poll_interval: Longest idle wait between two rounds, in seconds (the
            wait for commits of other processes); a commit through ``outbox``
            in this process wakes the relay at once.

    Raises:
        ConfigurationError: A setting is out of range, or the database is not
            PostgreSQL or SQLite.
    """

    def __init__(
        self,
        source: AsyncEngine | InMemoryStore,
        outbox: Outbox,
        transport: AsyncTransport,
        *,
        batch_size: int = 100,
        lease: float = 30.0,
        max_attempts: int = 10,
        retry_initial: float = 1.0,
        retry_max: float = 300.0,
        retry_jitter: float = 1.0,
        poll_interval: float = 1.0,
    ) -> None:
        check_settings(
            batch_size=batch_size,
            lease=lease,
            max_attempts=max_attempts,
            poll_interval=poll_interval,
            retry_initial=retry_initial,
            retry_max=retry_max,
            retry_jitter=retry_jitter,
        )
        self._outbox = outbox
        self._transport = transport
        self._batch_size = batch_size
        self._lease = timedelta(seconds=lease)
        self._max_attempts = max_attempts
        self._wait = exponential_jitter(retry_initial, retry_max, retry_jitter)
        self._poll_interval = poll_interval
        self._rows: _AsyncSqlRows | _AsyncMemoryRows = (
            _AsyncMemoryRows(source, outbox.table.name, batch_size)
            if isinstance(source, InMemoryStore)
            else _AsyncSqlRows(source, outbox.table, batch_size)
        )

    async def run_once(self) -> RelayReport:
        """Claim a batch, publish it, and remove or back off each message; what was done.

        A round stopped midway (cancelled, interrupted, or a database error after
        the claim) gives back the leases it still holds, so another relay can
        deliver those messages at once (a message published before the stop is
        published again: delivery is at least once).

        Raises:
            Exception: The database's error when a claim or a mark failed.
        """
        token = uuid.uuid4()
        now = utcnow()
        rows = await self._rows.claim(now=now, until=now + self._lease, token=token)
        if not rows:
            return RelayReport()
        try:
            return await self._deliver(token, rows)
        except BaseException:
            await self._release(token)
            raise

    async def _deliver(self, token: uuid.UUID, rows: list[dict[str, Any]]) -> RelayReport:
        failures: dict[uuid.UUID, BaseException] = {}
        messages: list[Message] = []
        for row in rows:
            if row["attempts"] > self._max_attempts:  # every attempt ended the relay (a crash)
                failures[row["message_id"]] = _Stopped(row["attempts"] - 1)
                continue
            try:
                messages.append(message_of(row))
            except Exception as error:  # noqa: BLE001 - a row that cannot be read fails alone
                failures[row["message_id"]] = error
        if messages:
            failures.update(await self._publish(messages))
        delivered = [row["id"] for row in rows if row["message_id"] not in failures]
        removed = await self._rows.delete(token=token, ids=delivered) if delivered else 0
        marks = [
            self._mark(row, failures[row["message_id"]])
            for row in rows
            if row["message_id"] in failures
        ]
        marked = set(await self._rows.fail(token=token, marks=marks)) if marks else set()
        landed = [mark for mark in marks if mark["b_id"] in marked]
        dead = sum(1 for mark in landed if mark["b_status"] == DEAD)
        for row in rows:
            failure = failures.get(row["message_id"])
            if failure is not None:
                self._log_failure(row, failure, lost=row["id"] not in marked)
        return RelayReport(
            claimed=len(rows),
            delivered=removed,
            failed=len(landed) - dead,
            dead=dead,
            lease_lost=len(delivered) - removed + len(marks) - len(landed),
        )

    async def _release(self, token: uuid.UUID) -> None:
        """Give back this round's leases (shielded: it runs while the round is cancelled)."""
        try:
            rows = self._rows
            releasing = rows.release(token=token)  # unasync: sync: rows.release(token=token)
            await asyncio.shield(releasing)  # unasync: drop
        except Exception:  # noqa: BLE001 - the leases then run out on their own
            _log.exception("giving back the leases of a stopped round failed")

    async def run(
        self,
        stop: asyncio.Event | None = None,  # unasync: sync: stop: threading.Event | None = None,
    ) -> None:
        """Run rounds until ``stop`` is set (or the task is cancelled).

        After a round that claimed something it goes straight to the next one;
        after an empty round (or a database error, which is logged) it waits,
        from a sixteenth of ``poll_interval`` doubling up to all of it, and a
        commit through the outbox in this process wakes it at once.
        """
        if stop is None:
            stop = asyncio.Event()  # unasync: sync: stop = threading.Event()
        wake = asyncio.Event()  # unasync: sync: wake = threading.Event()
        loop = asyncio.get_running_loop()  # unasync: drop
        waker = loop_waker(wake, loop)  # unasync: sync: waker = thread_waker(wake)
        unsubscribe = self._outbox.subscribe(waker)
        idle = 0.0
        try:
            while not stop.is_set():
                try:
                    report = await self.run_once()
                except Exception:  # noqa: BLE001 - logged, and the next round tries again
                    _log.exception("the relay's round failed; trying again shortly")
                    report = None
                if report is not None and report.claimed:
                    idle = 0.0
                    continue  # something moved: look again at once
                idle = min(self._poll_interval, max(idle * 2, self._poll_interval / 16))
                await relay_woken_async(wake, stop, idle)
        finally:
            unsubscribe()

    async def backlog(self) -> Backlog:
        """How many messages wait (and are dead), and how long the oldest has waited."""
        pending, dead, oldest = await self._rows.backlog()
        age = utcnow() - aware(oldest) if oldest is not None else None
        return Backlog(pending=pending, dead=dead, oldest_age=age)

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The first ``limit`` dead letters, oldest first, each with its last error."""
        rows = await self._rows.dead(limit)
        return [
            DeadLetter(message=message_of(row), last_error=row["last_error"] or "") for row in rows
        ]

    async def replay(self, message_ids: Sequence[uuid.UUID] | None = None) -> int:
        """Make dead letters pending again, attempts from zero; all of them without ids.

        Returns:
            How many were replayed.
        """
        return await self._rows.replay(message_ids, utcnow())

    async def purge(self, message_ids: Sequence[uuid.UUID] | None = None) -> int:
        """Drop dead letters (all of them without ids): their streams go on without them.

        Returns:
            How many were dropped.
        """
        return await self._rows.purge(message_ids)

    async def _publish(self, messages: list[Message]) -> Mapping[uuid.UUID, BaseException]:
        """Publish, bounded by the lease here: past it, another relay may take the batch over."""
        try:
            return await publish_bounded_async(self._transport.publish(messages), self._lease)
        except Exception as error:  # noqa: BLE001 - the whole batch failed: retried later
            return dict.fromkeys((message.message_id for message in messages), error)

    def _mark(self, row: dict[str, Any], error: BaseException) -> dict[str, Any]:
        attempts = row["attempts"]
        dead = attempts >= self._max_attempts
        wait = 0.0 if dead else wait_before(attempts, self._wait)
        return {
            "b_id": row["id"],
            "b_status": DEAD if dead else PENDING,
            "b_available": utcnow() + timedelta(seconds=wait),
            "b_error": error_text(error),
        }

    def _log_failure(self, row: dict[str, Any], error: BaseException, *, lost: bool) -> None:
        dead = row["attempts"] >= self._max_attempts and not lost
        _log.log(
            logging.ERROR if dead else logging.WARNING,
            "delivering %s %s (stream %s) failed on attempt %d of %d%s: %s",
            row["topic"],
            row["message_id"],
            row["stream"],
            row["attempts"],
            self._max_attempts,
            "; it is a dead letter"
            if dead
            else "; another relay has taken it over (the lease ran out)"
            if lost
            else "",
            error_text(error),
        )


class _AsyncSqlRows:
    """The relay's statements run on the application's database, each in its own transaction."""

    def __init__(self, engine: AsyncEngine, table: sa.Table, batch_size: int) -> None:
        check_dialect(engine.dialect.name)
        self._given = engine
        self._engine: AsyncEngine | None = None
        self._statements = Statements(table, batch_size, engine.dialect.name)

    async def _ready(self) -> AsyncEngine:
        """The engine, set to READ COMMITTED if its connections are at another level."""
        engine = self._engine
        if engine is None:
            given = self._given
            async with given.connect() as connection:
                level = await connection.get_isolation_level()
            if needs_read_committed(given.dialect.name, level):
                given = given.execution_options(isolation_level="READ COMMITTED")
            engine = self._engine = given
        return engine

    async def claim(
        self, *, now: datetime, until: datetime, token: uuid.UUID
    ) -> list[dict[str, Any]]:
        engine = await self._ready()
        async with engine.begin() as connection:
            result = await connection.execute(
                self._statements.claim, {"b_now": now, "b_until": until, "b_token": token}
            )
            rows = [dict(row) for row in result.mappings()]
        return sorted(rows, key=_by_id)

    async def delete(self, *, token: uuid.UUID, ids: Sequence[int]) -> int:
        engine = await self._ready()
        async with engine.begin() as connection:
            result = await connection.execute(
                self._statements.delete, {"b_token": token, "b_ids": list(ids)}
            )
        return int(result.rowcount)

    async def fail(self, *, token: uuid.UUID, marks: Sequence[dict[str, Any]]) -> list[int]:
        engine = await self._ready()
        landed = []
        async with engine.begin() as connection:
            for mark in marks:
                result = await connection.execute(self._statements.fail, {**mark, "b_token": token})
                if result.rowcount:
                    landed.append(mark["b_id"])
        return landed

    async def release(self, *, token: uuid.UUID) -> int:
        engine = await self._ready()
        async with engine.begin() as connection:
            result = await connection.execute(self._statements.release, {"b_token": token})
        return int(result.rowcount)

    async def backlog(self) -> tuple[int, int, datetime | None]:
        engine = await self._ready()
        async with engine.connect() as connection:
            pending, dead, oldest = (await connection.execute(self._statements.backlog)).one()
        return int(pending), int(dead), oldest

    async def dead(self, limit: int) -> list[dict[str, Any]]:
        engine = await self._ready()
        async with engine.connect() as connection:
            result = await connection.execute(self._statements.dead.limit(limit))
            return [dict(row) for row in result.mappings()]

    async def replay(self, message_ids: Sequence[uuid.UUID] | None, now: datetime) -> int:
        engine = await self._ready()
        async with engine.begin() as connection:
            result = await connection.execute(self._statements.replay(message_ids, now))
        return int(result.rowcount)

    async def purge(self, message_ids: Sequence[uuid.UUID] | None) -> int:
        engine = await self._ready()
        async with engine.begin() as connection:
            result = await connection.execute(self._statements.purge(message_ids))
        return int(result.rowcount)


class _AsyncMemoryRows:
    """The same operations on the rows an `InMemoryStore` keeps for the outbox table."""

    def __init__(self, store: InMemoryStore, table: str, limit: int) -> None:
        self._store = store
        self._table = table
        self._limit = limit

    def _edit(self, operation: Any, **arguments: Any) -> Any:
        return self._store.edit_outbox(self._table, functools.partial(operation, **arguments))

    async def claim(
        self, *, now: datetime, until: datetime, token: uuid.UUID
    ) -> list[dict[str, Any]]:
        return self._edit(memory_claim, now=now, until=until, token=token, limit=self._limit)  # type: ignore[no-any-return]

    async def delete(self, *, token: uuid.UUID, ids: Sequence[int]) -> int:
        return int(self._edit(memory_delete, token=token, ids=ids))

    async def fail(self, *, token: uuid.UUID, marks: Sequence[dict[str, Any]]) -> list[int]:
        return self._edit(memory_fail, token=token, marks=marks)  # type: ignore[no-any-return]

    async def release(self, *, token: uuid.UUID) -> int:
        return int(self._edit(memory_release, token=token))

    async def backlog(self) -> tuple[int, int, datetime | None]:
        return self._edit(memory_backlog)  # type: ignore[no-any-return]

    async def dead(self, limit: int) -> list[dict[str, Any]]:
        return self._edit(memory_dead, limit=limit)  # type: ignore[no-any-return]

    async def replay(self, message_ids: Sequence[uuid.UUID] | None, now: datetime) -> int:
        return int(self._edit(memory_replay, message_ids=message_ids, now=now))

    async def purge(self, message_ids: Sequence[uuid.UUID] | None) -> int:
        return int(self._edit(memory_purge, message_ids=message_ids))


class _Stopped(Exception):  # noqa: N818 - stored as the message's last error
    """The relay stopped (killed, cancelled) during every attempt to deliver a message."""

    def __init__(self, attempts: int) -> None:
        super().__init__(
            f"the relay stopped during each of its {attempts} attempt(s) (killed or cancelled "
            "while publishing it?)"
        )


def _by_id(row: dict[str, Any]) -> int:
    return int(row["id"])
