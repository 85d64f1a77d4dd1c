"""Messaging: what the message bus adds to calling the handlers by hand.

- ``messaging.dispatch``: a command whose handler "commits" one event through
  its unit of work, and one inline handler of that event. The unit is a
  stand-in (`Unit`: a list of committed events and ``collect_events``), so the
  rows measure the dispatch alone, not a database. Baseline: by hand, a new
  unit made, the command's handler called with it, its events collected and
  the event's handler called with its own dependency; ours:
  ``MessageBus.handle`` (a unit per dispatch from its provider, the events
  handed on breadth-first, a report returned). Target: ours at most 3 times the baseline.
- ``messaging.dispatch-async``: the same with ``async def`` handlers, awaited
  one after the other on one event loop. Baseline: by hand; ours:
  ``AsyncMessageBus.handle``.

Every test checks what was handled, so the smoke run (``--benchmark-disable``)
tests the benchmark itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from buttress.domain import DomainEvent
from buttress.messaging import AsyncMessageBus, Command, Handlers, MessageBus

ROUNDS = 20_000


class Reserve(Command, name="benchmarks.messaging.reserve"):
    sku: str
    qty: int


class Reserved(DomainEvent, name="benchmarks.messaging.reserved"):
    sku: str
    qty: int


class Unit:
    """A unit of work's part the bus relies on: events of committed work, collected once."""

    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: list[DomainEvent] = []

    def collect_events(self) -> list[DomainEvent]:
        events, self.events = self.events, []
        return events


def reserve(command: Reserve, uow: Unit) -> str:
    uow.events.append(Reserved(sku=command.sku, qty=command.qty))
    return command.sku


def note(event: Reserved, log: list[Any]) -> None:
    log.append(event.qty)


async def reserve_async(command: Reserve, uow: Unit) -> str:
    return reserve(command, uow)


async def note_async(event: Reserved, log: list[Any]) -> None:
    note(event, log)


COMMAND = Reserve(sku="CHAIR", qty=1)


def handlers(command_handler: Any, event_handler: Any) -> Handlers:
    registered = Handlers()
    registered.command(Reserve)(command_handler)
    registered.event(Reserved)(event_handler)
    return registered


@pytest.mark.benchmark(group="messaging.dispatch")
class TestDispatch:
    def test_handlers_by_hand(self, baseline):
        log: list[Any] = []

        def by_hand(command: Reserve) -> str:
            uow = Unit()
            result = reserve(command, uow)
            for event in uow.collect_events():
                note(event, log)  # type: ignore[arg-type]
            return result

        assert baseline(by_hand, COMMAND) == "CHAIR"
        assert log[-1] == 1

    def test_message_bus(self, ours):
        log: list[Any] = []
        bus = MessageBus(handlers(reserve, note), dependencies={"uow": Unit, "log": lambda: log})
        report = ours(bus.handle, COMMAND)
        assert (report.result, report.ok, len(report.events)) == ("CHAIR", True, 1)
        assert log[-1] == 1


@pytest.mark.benchmark(group="messaging.dispatch-async")
class TestDispatchAsync:
    def test_handlers_by_hand(self, baseline):
        log: list[Any] = []

        async def by_hand(command: Reserve) -> str:
            uow = Unit()
            result = await reserve_async(command, uow)
            for event in uow.collect_events():
                await note_async(event, log)  # type: ignore[arg-type]
            return result

        loop = asyncio.new_event_loop()
        try:
            assert baseline(lambda: loop.run_until_complete(by_hand(COMMAND))) == "CHAIR"
        finally:
            loop.close()
        assert log[-1] == 1

    def test_async_message_bus(self, ours):
        log: list[Any] = []
        bus = AsyncMessageBus(
            handlers(reserve_async, note_async), dependencies={"uow": Unit, "log": lambda: log}
        )
        loop = asyncio.new_event_loop()
        try:
            report = ours(lambda: loop.run_until_complete(bus.handle(COMMAND)))
        finally:
            loop.close()
        assert (report.result, report.ok, len(report.events)) == ("CHAIR", True, 1)
        assert log[-1] == 1
