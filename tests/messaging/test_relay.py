"""The relay: the outbox's messages delivered at least once, in order per stream, on every backend.

One contract, run by `Relay` on the sync backends (memory, SQLite, PostgreSQL) and by
`AsyncRelay` on the asyncio ones (memory, aiosqlite, asyncpg, async psycopg): what is
delivered is removed, a failure backs its message off and holds its stream, the last
attempt makes a dead letter that can be listed, replayed and purged, a relay whose
lease ran out changes nothing, and a commit wakes a running relay.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from messaging_backends import Case, paid

from buttress.errors import ConfigurationError
from buttress.messaging import Message, RelayReport
from buttress.testing import AsyncRecordingTransport, RecordingTransport

pytestmark = pytest.mark.asyncio


async def test_it_delivers_each_stream_in_commit_order_and_removes_what_it_delivered(case):
    await case.write({"A": 3, "B": 2})
    await case.write({"A": 2})
    transport = case.transport()
    relay = case.relay(transport)
    reports = await case.drain(relay)
    assert sum(report.delivered for report in reports) == 7
    assert all(report.claimed == report.delivered for report in reports)
    streams = {stream.split(":")[0] for stream in paid(transport.delivered)}
    assert streams == {"ContractOrder"}
    assert sorted(paid(transport.delivered).values()) == [[1, 2], [1, 2, 3, 4, 5]]
    assert sorted(len(messages) for messages in transport.by_stream().values()) == [2, 5]
    assert case.backend.outbox_rows() == []
    assert (await case.call(relay.backlog())).pending == 0


async def test_a_round_claims_one_message_per_stream(case):
    await case.write({"A": 3, "B": 2, "C": 1})
    transport = case.transport()
    report = await case.call(case.relay(transport).run_once())
    assert report == RelayReport(claimed=3, delivered=3)
    assert [message.attempt for message in transport.published] == [1, 1, 1]
    assert sorted(len(v) for v in paid(transport.delivered).values()) == [1, 1, 1]


async def test_a_failed_message_is_backed_off_and_holds_its_stream_only(case):
    streams = await case.write({"A": 2, "B": 2})
    refused = []

    def fail(message: Message) -> BaseException | None:
        if message.stream == streams["A"] and not refused:
            refused.append(message)
            return ConnectionError("broker away")
        return None

    transport = case.transport(fail=fail)
    relay = case.relay(transport, retry_initial=60.0)
    await case.drain(relay)
    held = case.backend.outbox_rows()
    assert [(row["stream"], row["attempts"], row["status"]) for row in held] == [
        (streams["A"], 1, "pending"),
        (streams["A"], 0, "pending"),
    ]
    assert held[0]["last_error"] == "ConnectionError: broker away"
    assert held[0]["lease_token"] is None
    assert aware(held[0]["available_at"]) > datetime.now(UTC) + timedelta(seconds=50)
    assert paid(transport.delivered) == {streams["B"]: [1, 2]}
    backlog = await case.call(relay.backlog())
    assert (backlog.pending, backlog.dead) == (2, 0)
    assert backlog.oldest_age is not None
    assert timedelta(0) <= backlog.oldest_age < timedelta(minutes=1)


async def test_a_whole_batch_fails_when_the_transport_raises(case):
    await case.write({"A": 1, "B": 1})

    class Down(RecordingTransport):
        def publish(self, messages: Any) -> Any:
            raise ConnectionRefusedError("no broker")

    class AsyncDown(AsyncRecordingTransport):
        async def publish(self, messages: Any) -> Any:  # type: ignore[override]
            raise ConnectionRefusedError("no broker")

    relay = case.relay(AsyncDown() if case.asynchronous else Down(), retry_initial=60.0)
    report = await case.call(relay.run_once())
    assert report == RelayReport(claimed=2, failed=2)
    assert [row["attempts"] for row in case.backend.outbox_rows()] == [1, 1]
    assert (await case.call(relay.run_once())).claimed == 0  # both backed off


async def test_a_poison_message_dies_after_its_attempts_and_holds_its_stream_until_replayed(case):
    streams = await case.write({"A": 3, "B": 2})
    poison = {"on": True}

    def fail(message: Message) -> BaseException | None:
        poisoned = poison["on"] and message.stream == streams["A"] and message.event().total == 2
        return ValueError(f"cannot handle {message.topic}") if poisoned else None

    transport = case.transport(fail=fail)
    relay = case.relay(transport, max_attempts=3)
    reports = await case.drain(relay)
    assert sum(report.failed for report in reports) == 2
    assert sum(report.dead for report in reports) == 1
    assert paid(transport.delivered) == {streams["A"]: [1], streams["B"]: [1, 2]}
    attempts = [m.attempt for m in transport.published if m.stream == streams["A"]]
    assert attempts == [1, 1, 2, 3]  # the first message, then the poison three times
    letters = await case.call(relay.dead_letters())
    assert [(letter.message.event().total, letter.message.attempt) for letter in letters] == [
        (2, 3)
    ]
    assert letters[0].last_error == "ValueError: cannot handle buttress.contract.order-paid"
    backlog = await case.call(relay.backlog())
    assert (backlog.pending, backlog.dead) == (1, 1)  # the third payment, held

    poison["on"] = False
    assert await case.call(relay.replay([letters[0].message.message_id])) == 1
    await case.drain(relay)
    assert paid(transport.delivered)[streams["A"]] == [1, 2, 3]
    assert await case.call(relay.dead_letters()) == []
    assert case.backend.outbox_rows() == []


async def test_purging_a_dead_letter_lets_its_stream_go_on(case):
    await case.write({"A": 2})
    relay = case.relay(case.transport(fail=lambda m: ValueError("no")), max_attempts=1)
    await case.drain(relay)
    [letter] = await case.call(relay.dead_letters())
    assert await case.call(relay.purge([uuid.uuid4()])) == 0  # not a dead letter: nothing
    transport = case.transport()
    relay = case.relay(transport)
    assert await case.call(relay.purge()) == 1
    await case.drain(relay)
    assert [m.event().total for m in transport.delivered] == [2]
    assert letter.message.event().total == 1


class Hooked(RecordingTransport):
    """Runs ``before`` at each publish, then records (and fails what ``fail`` picks)."""

    def __init__(self, before: Any, **options: Any) -> None:
        super().__init__(**options)
        self.before = before

    def publish(self, messages: Any) -> Any:
        self.before()
        return super().publish(messages)


class AsyncHooked(Hooked):
    async def publish(self, messages: Any) -> Any:  # type: ignore[override]
        await self.before()
        return RecordingTransport.publish(self, messages)


async def test_a_relay_whose_lease_ran_out_changes_nothing(case):
    """A stalls past its lease; B takes the batch over; A's late marks land while B publishes."""
    streams = await case.write({"A": 1, "B": 1})

    def late(message: Message) -> BaseException | None:  # A delivers one and fails one, late
        return ValueError("late failure") if message.stream == streams["B"] else None

    if case.asynchronous:
        taken, marked = asyncio.Event(), asyncio.Event()

        async def b_publishes() -> None:
            taken.set()
            await marked.wait()

        async def published() -> None:
            return None

        # an asyncio relay gives up a publish that outlives its lease, so A stalls after
        # publishing, before its marks (a paused process): its delete waits for B's claim
        stalled = case.relay(AsyncHooked(published, fail=late), lease=0.2)
        rows, delete = stalled._rows, stalled._rows.delete

        async def delete_late(**arguments: Any) -> Any:
            await taken.wait()
            return await delete(**arguments)

        rows.delete = delete_late
        other = case.relay(second := AsyncHooked(b_publishes))

        async def a_round() -> RelayReport:
            try:
                return await stalled.run_once()
            finally:
                marked.set()

        running = asyncio.create_task(a_round())
        await asyncio.sleep(0.3)  # A's lease runs out while it stalls
        b_report = await asyncio.wait_for(other.run_once(), 10)
        a_report = await running
    else:
        taken, marked = threading.Event(), threading.Event()

        def b_publishes_sync() -> None:
            taken.set()
            marked.wait(10)

        stalled = case.relay(Hooked(lambda: taken.wait(10), fail=late), lease=0.2)
        other = case.relay(second := Hooked(b_publishes_sync))
        reports: list[RelayReport] = []

        def a_round_sync() -> None:
            try:
                reports.append(stalled.run_once())
            finally:
                marked.set()

        running = threading.Thread(target=a_round_sync)
        running.start()
        time.sleep(0.3)  # noqa: ASYNC251 - the sync relay blocks, as it does in its thread
        b_report = other.run_once()
        running.join(10)
        [a_report] = reports
    assert a_report == RelayReport(claimed=2, delivered=0, failed=0, lease_lost=2)
    assert b_report == RelayReport(claimed=2, delivered=2)
    assert case.backend.outbox_rows() == []  # nothing brought back, nothing left behind
    assert sorted(m.stream for m in second.delivered) == sorted(streams.values())


def aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def test_a_commit_wakes_a_running_relay(case):
    transport = case.transport()
    relay = case.relay(transport, poll_interval=160.0)  # idle, it waits 10 s, then 20 s...
    if case.asynchronous:
        stop = asyncio.Event()
        running = asyncio.create_task(relay.run(stop))
    else:
        stop = threading.Event()
        running = threading.Thread(target=relay.run, args=(stop,))
        running.start()
    try:
        await asyncio.sleep(0.2)  # the relay found nothing and waits
        await case.write({"A": 1})
        for _ in range(200):  # up to 5 s
            if transport.delivered:
                break
            await asyncio.sleep(0.025)
        assert len(transport.delivered) == 1
    finally:
        stop.set()
        if case.asynchronous:
            await asyncio.wait_for(running, 5)
        else:
            running.join(5)
            assert not running.is_alive()


async def test_settings_out_of_range_are_refused(case):
    transport = case.transport()
    for options, words in [
        ({"batch_size": 0}, "batch_size"),
        ({"lease": 0}, "lease"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"poll_interval": 0}, "poll_interval"),
    ]:
        with pytest.raises(ConfigurationError, match=words):
            case.relay(transport, **options)


class Interrupted(RecordingTransport):
    """Records, then the round is stopped (as a cancelled task or a KeyboardInterrupt stops it)."""

    def publish(self, messages: Any) -> Any:
        super().publish(messages)
        raise KeyboardInterrupt


class AsyncInterrupted(RecordingTransport):
    async def publish(self, messages: Any) -> Any:  # type: ignore[override]
        RecordingTransport.publish(self, messages)
        raise asyncio.CancelledError


async def test_a_round_stopped_midway_gives_its_leases_back(case):
    await case.write({"A": 1, "B": 1})
    stopped = case.relay(AsyncInterrupted() if case.asynchronous else Interrupted())
    with pytest.raises((KeyboardInterrupt, asyncio.CancelledError)):
        await case.call(stopped.run_once())
    assert all(row["lease_token"] is None for row in case.backend.outbox_rows())
    transport = case.transport()
    report = await case.call(case.relay(transport).run_once())  # at once, not after the lease
    assert report.delivered == 2
    assert [m.attempt for m in transport.delivered] == [2, 2]


async def test_a_message_whose_every_attempt_stopped_the_relay_is_dead(case):
    await case.write({"A": 1})
    relay = case.relay(case.transport(), max_attempts=2)
    for _ in range(2):  # a relay killed while publishing: its claim, then nothing (lease over)
        now = datetime.now(UTC)
        await case.call(relay._rows.claim(now=now, until=now, token=uuid.uuid4()))
    transport = case.transport()
    relay = case.relay(transport, max_attempts=2)
    report = await case.call(relay.run_once())
    assert (report.claimed, report.dead, report.delivered) == (1, 1, 0)
    [letter] = await case.call(relay.dead_letters())
    assert "stopped during each of its 2 attempt" in letter.last_error
    assert transport.published == []  # not handed to the transport a third time


class Hung(RecordingTransport):
    """A broker that takes the batch and never confirms it."""

    async def publish(self, messages: Any) -> Any:  # type: ignore[override]
        await asyncio.sleep(3600)


async def test_an_async_publish_that_outlives_the_lease_is_given_up(async_backend):
    case = Case(async_backend, asynchronous=True)
    await case.write({"A": 1})
    report = await asyncio.wait_for(case.relay(Hung(), lease=0.2).run_once(), 10)
    assert (report.claimed, report.failed) == (1, 1)
    [row] = case.backend.outbox_rows()
    assert row["last_error"].startswith("TimeoutError")
    assert row["lease_token"] is None  # marked while the lease stood; free for a retry
