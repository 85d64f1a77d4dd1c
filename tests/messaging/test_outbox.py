"""The transactional outbox: each commit's events stored in its own transaction, on every backend.

Exactly one extra INSERT per commit, in recording order, nothing for rolled-back or
failed work, the root's version bumped for an event alone (so event-only writes
conflict), and the ids of the dispatch that caused them in the headers.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from messaging_backends import OUTBOX

from buttress.domain import DomainEvent
from buttress.errors import ButtressError, ConcurrencyError, ConfigurationError, ConflictError
from buttress.messaging import AsyncMessageBus, Command, Handlers, MessageBus, Outbox
from buttress.testing import (
    Allocated,
    ContractBatch,
    ContractNote,
    ContractOrder,
    ContractProduct,
    NoteEdited,
    OrderPaid,
)


def stock(uow: Any, *skus: str) -> None:
    with uow:
        for sku in skus:
            uow.repository(ContractProduct, str).add(
                ContractProduct(sku=sku, batches=[ContractBatch(reference=f"{sku}-b", qty=10)])
            )
        uow.commit()


def statements_of(backend: Any) -> list[str]:
    """The statements the backend's engine runs from now on (first word), or None in memory."""
    seen: list[str] = []
    if backend.engine is not None:

        def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            seen.append(statement.split(maxsplit=1)[0].upper())

        sa.event.listen(backend.engine, "before_cursor_execute", record)
    return seen


def test_a_commit_writes_its_events_in_recording_order_with_one_insert(backend):
    stock(backend.uow(), "S1", "S2")
    uow = backend.uow(outbox=True)
    with uow:
        products = uow.repository(ContractProduct, str)
        one = products.get("S1", load="batches.allocations")
        two = products.get("S2", load="batches.allocations")
        one.allocate("o1", 1)
        two.allocate("o2", 1)
        one.allocate("o3", 1)
        seen = statements_of(backend)
        uow.commit()
        seen = list(seen)  # what the commit sent, not the reads below
    rows = backend.outbox_rows()
    events = [DomainEvent.from_json(row["payload"]) for row in rows]
    assert [e.orderid for e in events] == ["o1", "o2", "o3"]  # type: ignore[attr-defined]
    assert [row["stream"] for row in rows] == [
        "ContractProduct:S1",
        "ContractProduct:S2",
        "ContractProduct:S1",
    ]
    assert {row["topic"] for row in rows} == {Allocated.event_name}
    assert [row["message_id"] for row in rows] == [e.event_id for e in events]
    assert all((row["attempts"], row["status"]) == (0, "pending") for row in rows)
    assert [row["id"] for row in rows] == sorted(row["id"] for row in rows)
    if backend.engine is not None:  # the changes first, the outbox's INSERT last
        assert seen[-1] == "INSERT"
        assert seen.count("UPDATE") == 2  # each root's version bumped once
    assert [e.orderid for e in uow.collect_events()] == ["o1", "o2", "o3"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_the_outbox_costs_exactly_one_statement(backend):
    stock(backend.uow(), *(f"S{n}" for n in range(20)))
    counts = []
    for outbox in (False, True):
        uow = backend.uow(outbox=outbox)
        with uow:
            for product in uow.repository(ContractProduct, str).find(load="batches.allocations"):
                product.allocate(f"{product.sku}-{outbox}", 1)
            seen = statements_of(backend)
            uow.commit()
        counts.append(len(seen))
    assert counts[1] == counts[0] + 1
    assert len(backend.outbox_rows()) == 20


def test_rolled_back_and_failed_work_writes_nothing(backend):
    stock(backend.uow(), "S1")
    uow = backend.uow(outbox=True)
    with uow:
        uow.repository(ContractProduct, str).get("S1", load="batches.allocations").allocate("o1", 1)
        uow.rollback()
    first, second = backend.uow(outbox=True), backend.uow(outbox=True)
    with first, second:
        mine = first.repository(ContractProduct, str).get("S1", load="batches.allocations")
        theirs = second.repository(ContractProduct, str).get("S1", load="batches.allocations")
        mine.allocate("mine", 1)
        first.commit()
        theirs.allocate("theirs", 1)
        with pytest.raises(ConcurrencyError):
            second.commit()
    assert [json.loads(row["payload"])["data"]["orderid"] for row in backend.outbox_rows()] == [
        "mine"
    ]
    assert list(second.collect_events()) == []


def test_an_event_alone_bumps_the_root_so_event_only_writes_conflict(backend):
    stock(backend.uow(), "S1")
    first, second = backend.uow(outbox=True), backend.uow(outbox=True)
    with first, second:
        mine = first.repository(ContractProduct, str).get("S1")
        theirs = second.repository(ContractProduct, str).get("S1")
        mine.record_event(Allocated(sku="S1", orderid="x", reference="-"))
        first.commit()
        assert mine.version == 2
        theirs.record_event(Allocated(sku="S1", orderid="y", reference="-"))
        with pytest.raises(ConcurrencyError):
            second.commit()
    assert len(backend.outbox_rows()) == 1


class PlaceOrder(Command, name="tests.outbox.place-order"):
    ref: str


def test_rows_carry_the_ids_of_the_dispatch_that_caused_them(backend):
    handlers = Handlers()

    @handlers.command(PlaceOrder)
    def place(command: PlaceOrder, uow: Any) -> None:
        with uow:
            uow.repository(ContractOrder).add(ContractOrder(ref=command.ref, total=1)).pay()
            uow.commit()

    @handlers.event(OrderPaid)
    def follow_up(event: OrderPaid, uow: Any) -> None:
        if handlers_done:
            return  # one round: the follow-up's own OrderPaid causes nothing more
        with uow:
            uow.repository(ContractOrder).add(ContractOrder(ref="follow", total=2)).pay()
            uow.commit()
        handlers_done.append(event.order_id)

    handlers_done: list[int] = []
    command = PlaceOrder(ref="first")
    bus = MessageBus(handlers, dependencies={"uow": lambda: backend.uow(outbox=True)})
    bus.handle(command)
    rows = backend.outbox_rows()
    headers = [json.loads(row["headers"]) for row in rows[:2]]
    first_event = DomainEvent.from_json(rows[0]["payload"])
    assert headers[0] == {
        "causation_id": str(command.command_id),
        "correlation_id": str(command.command_id),
    }
    assert headers[1] == {
        "causation_id": str(first_event.event_id),
        "correlation_id": str(command.command_id),
    }


def test_outside_a_dispatch_rows_have_no_ids(backend):
    uow = backend.uow(outbox=True)
    with uow:
        uow.repository(ContractOrder).add(ContractOrder(ref="a", total=1)).pay()
        uow.commit()
    [row] = backend.outbox_rows()
    assert json.loads(row["headers"]) == {}
    assert isinstance(row["message_id"], uuid.UUID)


@pytest.mark.asyncio
async def test_async_units_write_the_outbox_too(async_backend):
    uow = async_backend.uow(outbox=True)
    async with uow:
        orders = uow.repository(ContractOrder)
        for n in range(3):
            (await orders.add(ContractOrder(ref=f"a{n}", total=n))).pay()
        await uow.commit()
    rows = async_backend.outbox_rows()
    assert [DomainEvent.from_json(r["payload"]).total for r in rows] == [0, 1, 2]  # type: ignore[attr-defined]
    assert [r["stream"] for r in rows] == [f"ContractOrder:{n}" for n in (1, 2, 3)]

    handlers = Handlers()

    @handlers.command(PlaceOrder)
    async def place(command: PlaceOrder, uow: Any) -> None:
        async with uow:
            (await uow.repository(ContractOrder).add(ContractOrder(ref=command.ref, total=9))).pay()
            await uow.commit()

    command = PlaceOrder(ref="async")
    bus = AsyncMessageBus(handlers, dependencies={"uow": lambda: async_backend.uow(outbox=True)})
    await bus.handle(command)
    assert json.loads(async_backend.outbox_rows()[-1]["headers"])["causation_id"] == str(
        command.command_id
    )


def test_an_outbox_table_name_taken_by_another_table_is_refused():
    metadata = sa.MetaData()
    sa.Table("buttress_outbox", metadata, sa.Column("id", sa.Integer, primary_key=True))
    with pytest.raises(ConfigurationError, match="not an outbox"):
        Outbox(metadata)
    again = sa.MetaData()
    assert Outbox(again).table is Outbox(again).table  # the same outbox, declared twice


def test_a_commit_with_thousands_of_events_is_written_whole(backend):

    uow = backend.uow(outbox=True)
    with uow:
        order = uow.repository(ContractOrder).add(ContractOrder(ref="big", total=1))
        for _ in range(2500):
            order.record_event(OrderPaid(order_id=order.id, total=1))
        uow.commit()
    rows = backend.outbox_rows()
    assert len(rows) == 2500
    assert len({row["message_id"] for row in rows}) == len(rows)


# -- what a review found ---------------------------------------------------------------------------


class Blob(DomainEvent, name="tests.outbox.blob"):
    data: bytes


def test_a_commit_that_fails_after_taking_the_events_fails_the_unit(backend):
    with backend.uow() as uow:
        uow.repository(ContractNote).add(ContractNote(text="before"))
        uow.commit()
    uow = backend.uow(outbox=True)
    with uow:
        note = uow.repository(ContractNote).get(1)
        note.text = "changed"
        note.record_event(Blob(data=b"\xff"))  # cannot be written as JSON
        with pytest.raises(ValueError, match="invalid utf-8"):
            uow.commit()
        with pytest.raises(ButtressError, match="events were taken for the outbox"):
            uow.commit()  # not again: its events are gone
        uow.rollback()
    with backend.uow() as uow:
        assert uow.repository(ContractNote).get(1).text == "before"
    assert backend.outbox_rows() == []
    assert list(uow.collect_events()) == []


def test_one_event_recorded_on_two_aggregates_is_refused(backend):
    stock(backend.uow(), "A", "B")
    uow = backend.uow(outbox=True)
    with uow:
        products = uow.repository(ContractProduct, str)
        shared = Allocated(sku="A", orderid="transfer", reference="-")
        products.get("A").record_event(shared)
        products.get("B").record_event(shared)
        with pytest.raises(ConflictError):
            uow.commit()
    assert backend.outbox_rows() == []


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_expired_aggregates_cost_no_statement_to_name_their_stream(backend):
    with backend.uow() as uow:
        uow.repository(ContractNote).add(ContractNote(text="n"))
        uow.commit()
    uow = backend.make(outbox=OUTBOX, expire_on_commit=True)
    with uow:
        note = uow.repository(ContractNote).get(1)
        note.text = "first"
        uow.commit()  # expires the note
        note.record_event(NoteEdited(note_id=1, text="again"))  # an event alone
        seen = statements_of(backend)
        uow.commit()
        seen = list(seen)
    assert seen == ["INSERT"]
    assert [row["stream"] for row in backend.outbox_rows()] == ["ContractNote:1"]


@pytest.mark.asyncio
async def test_an_async_unit_writes_the_events_of_an_aggregate_a_savepoint_expired(async_backend):
    async with async_backend.uow() as uow:
        await uow.repository(ContractNote).add(ContractNote(text="n"))
        await uow.commit()
    uow = async_backend.uow(outbox=True)
    async with uow:
        notes = uow.repository(ContractNote)
        note = await notes.get(1)
        with contextlib.suppress(RuntimeError):
            async with uow.savepoint():
                note.text = "undone"
                await notes.count()  # flushed, then rolled back: the note is expired
                raise RuntimeError
        note.record_event(NoteEdited(note_id=1, text="x"))
        await uow.commit()
    assert [row["stream"] for row in async_backend.outbox_rows()] == ["ContractNote:1"]
