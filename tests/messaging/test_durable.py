"""Durable event handlers: reached through the outbox and a relay, not inline, on every backend.

A service places an order through a command; an inline handler reacts at once,
a durable one (billing, which fails once) only when the relay delivers the event
through the in-process transport: it is retried until it succeeds, its effect
kept once by the inbox even when the message is delivered again.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from messaging_backends import INBOX, Case

from buttress.domain import DomainEvent
from buttress.errors import DeliveryError
from buttress.messaging import (
    AsyncInProcessTransport,
    AsyncMessageBus,
    Command,
    Handlers,
    InProcessTransport,
    Message,
    MessageBus,
)
from buttress.testing import ContractOrder, OrderPaid


class PlaceOrder(Command, name="tests.durable.place-order"):
    ref: str
    total: int


class Shop:
    """The service: its handlers, bus, relay and what its handlers saw, for one backend."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.seen_inline: list[int] = []
        self.billing_calls = 0
        self.billing_failures = 1  # the payment provider is down for the first call
        handlers = Handlers()
        if case.asynchronous:
            handlers.command(PlaceOrder)(self.place_async)
            handlers.event(OrderPaid)(self.notice_async)
            handlers.event(OrderPaid, durable=True)(self.bill_async)
            self.bus: Any = AsyncMessageBus(handlers, dependencies={"uow": self.uow})
            transport: Any = AsyncInProcessTransport(self.bus)
        else:
            handlers.command(PlaceOrder)(self.place)
            handlers.event(OrderPaid)(self.notice)
            handlers.event(OrderPaid, durable=True)(self.bill)
            self.bus = MessageBus(handlers, dependencies={"uow": self.uow})
            transport = InProcessTransport(self.bus)
        self.transport = transport
        self.relay = case.relay(transport)

    def uow(self) -> Any:
        return self.case.backend.uow(outbox=True)

    # the sync service

    def place(self, command: PlaceOrder, uow: Any) -> int:
        with uow:
            order = uow.repository(ContractOrder).add(ContractOrder(ref=command.ref))
            uow.commit()
            order.total = command.total
            order.pay()
            uow.commit()
            return int(order.id)

    def notice(self, event: OrderPaid) -> None:
        self.seen_inline.append(event.order_id)

    def bill(self, event: OrderPaid, uow: Any) -> None:
        self.billing_calls += 1
        if self.billing_failures:
            self.billing_failures -= 1
            raise ConnectionError("the payment provider is down")
        with uow:
            if INBOX.record(uow, event.event_id, "billing"):
                uow.repository(ContractOrder).add(ContractOrder(ref=f"invoice-{event.order_id}"))
            uow.commit()

    # the asyncio service

    async def place_async(self, command: PlaceOrder, uow: Any) -> int:
        async with uow:
            order = await uow.repository(ContractOrder).add(ContractOrder(ref=command.ref))
            await uow.commit()
            order.total = command.total
            order.pay()
            await uow.commit()
            return int(order.id)

    async def notice_async(self, event: OrderPaid) -> None:
        self.notice(event)

    async def bill_async(self, event: OrderPaid, uow: Any) -> None:
        self.billing_calls += 1
        if self.billing_failures:
            self.billing_failures -= 1
            raise ConnectionError("the payment provider is down")
        async with uow:
            if await INBOX.arecord(uow, event.event_id, "billing"):
                invoice = ContractOrder(ref=f"invoice-{event.order_id}")
                await uow.repository(ContractOrder).add(invoice)
            await uow.commit()

    async def invoices(self) -> list[str]:
        return await self.case.refs("inv")


@pytest.mark.asyncio
async def test_a_durable_handler_runs_on_delivery_retried_until_it_succeeds_and_once(case):
    shop = Shop(case)
    report = await case.call(shop.bus.handle(PlaceOrder(ref="o-1", total=30)))
    order_id = report.result
    assert shop.seen_inline == [order_id]  # inline: at once
    assert shop.billing_calls == 0  # durable: not at dispatch
    [row] = case.backend.outbox_rows()
    assert row["topic"] == OrderPaid.event_name

    first = await case.call(shop.relay.run_once())
    assert (first.claimed, first.failed, shop.billing_calls) == (1, 1, 1)
    assert "payment provider is down" in case.backend.outbox_rows()[0]["last_error"]
    assert await shop.invoices() == []

    second = await case.call(shop.relay.run_once())
    assert (second.delivered, shop.billing_calls) == (1, 2)
    assert await shop.invoices() == [f"invoice-{order_id}"]
    assert case.backend.outbox_rows() == []
    assert shop.seen_inline == [order_id]  # delivery runs the durable handlers only

    again = Message(
        message_id=uuid.uuid4(),
        stream=row["stream"],
        topic=row["topic"],
        payload=row["payload"],
        headers={},
        attempt=1,
        created_at=row["created_at"],
    )
    assert await case.call(shop.transport.publish([again])) == {}  # delivered once more
    assert shop.billing_calls == 3
    assert await shop.invoices() == [f"invoice-{order_id}"]  # the inbox kept it once


class Shipped(DomainEvent, name="tests.durable.shipped"):
    order: str


class Archived(DomainEvent, name="tests.durable.archived"):
    order: str


def test_deliver_runs_every_durable_handler_then_raises_and_hands_on_what_they_caused():
    handlers = Handlers()
    calls: list[str] = []

    class Unit:
        def __init__(self) -> None:
            self.events: list[DomainEvent] = []

        def collect_events(self) -> list[DomainEvent]:
            events, self.events = self.events, []
            return events

    @handlers.event(Shipped, durable=True)
    def fails(event: Shipped) -> None:
        calls.append("fails")
        raise RuntimeError("label printer jammed")

    @handlers.event(Shipped, durable=True)
    def archives(event: Shipped, uow: Unit) -> None:
        calls.append("archives")
        uow.events.append(Archived(order=event.order))

    @handlers.event(Shipped)
    def inline(event: Shipped) -> None:
        calls.append("inline")

    @handlers.event(Archived)
    def archived(event: Archived) -> None:
        calls.append("archived")

    bus = MessageBus(handlers, dependencies={"uow": Unit})
    event = Shipped(order="o-9")
    with pytest.raises(DeliveryError, match="1 durable handler") as raised:
        bus.deliver(event)
    assert calls == ["fails", "archives", "archived"]  # all durable ones ran; none inline
    assert [failure.handler.rsplit(".", 1)[-1] for failure in raised.value.failures] == ["fails"]
    assert isinstance(raised.value.__cause__, RuntimeError)

    calls.clear()
    assert bus.handle(event).ok
    assert calls == ["inline"]  # handle never runs the durable ones


def test_a_delivered_message_keeps_its_correlation_id_for_the_work_it_causes():
    handlers = Handlers()
    seen: list[dict[str, str]] = []

    @handlers.event(Shipped, durable=True)
    def note(event: Shipped) -> None:
        from buttress.messaging._context import dispatch_ids  # noqa: PLC0415

        seen.append(dispatch_ids())

    event = Shipped(order="o-1")
    correlation = str(uuid.uuid4())
    message = Message(
        message_id=event.event_id,
        stream="Order:o-1",
        topic=event.event_name,
        payload=event.to_json(),
        headers={"correlation_id": correlation},
        attempt=1,
        created_at=event.occurred_at,
    )
    assert InProcessTransport(MessageBus(handlers)).publish([message]) == {}
    assert seen == [{"correlation_id": correlation, "causation_id": str(event.event_id)}]


def test_a_message_this_process_cannot_decode_fails_instead_of_vanishing():
    message = Message(
        message_id=uuid.uuid4(),
        stream="Order:1",
        topic="unknown.event",
        payload='{"event": "unknown.event", "data": {}}',
        headers={},
        attempt=1,
        created_at=OrderPaid(order_id=1, total=1).occurred_at,
    )
    failures = InProcessTransport(MessageBus(Handlers())).publish([message])
    assert list(failures) == [message.message_id]
