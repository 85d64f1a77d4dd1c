"""The message bus as a service uses it: the allocation domain, on every backend.

A command allocates stock of a product (the contract suite's aggregate with two
levels of parts); the `Allocated` event it records is handled inline by a
handler that places an order through its own unit, whose `OrderPaid` event is
handled in turn. Memory, SQLite and PostgreSQL (sync), and memory, aiosqlite,
asyncpg and async psycopg (asyncio).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from typing import Any
from unittest import mock

import pytest
from dependency_injector import containers, providers

from buttress.di import check
from buttress.domain import DomainEvent
from buttress.errors import ConcurrencyError, ConfigurationError
from buttress.messaging import (
    AsyncMessageBus,
    Command,
    DispatchReport,
    HandlerFailure,
    Handlers,
    MessageBus,
    _dispatch,
)
from buttress.resilience import retry
from buttress.testing import (
    Allocated,
    ContractBatch,
    ContractOrder,
    ContractProduct,
    OrderPaid,
)


class Allocate(Command, name="tests.bus.allocate"):
    sku: str
    orderid: str
    qty: int


class Stock(Command, name="tests.bus.stock"):
    sku: str
    batches: dict[str, int]


def stock(uow: Any, sku: str, **batches: int) -> None:
    with uow:
        uow.repository(ContractProduct, str).add(
            ContractProduct(
                sku=sku,
                batches=[ContractBatch(reference=ref, qty=qty) for ref, qty in batches.items()],
            )
        )
        uow.commit()


def allocation_handlers(seen_units: list[Any] | None = None) -> Handlers:
    """The service: allocate; on Allocated place a paid order; on OrderPaid note it."""
    handlers = Handlers()

    @handlers.command(Allocate)
    def allocate(command: Allocate, uow: Any) -> str:
        if seen_units is not None:
            seen_units.append(uow)
        with uow:
            product = uow.repository(ContractProduct, str).get(
                command.sku, load=("batches", "batches.allocations")
            )
            reference = product.allocate(command.orderid, command.qty)
            uow.commit()
        return reference

    @handlers.event(Allocated)
    def place_order(event: Allocated, uow: Any) -> None:
        with uow:
            order = uow.repository(ContractOrder).add(ContractOrder(ref=event.orderid, total=1))
            order.pay()
            uow.commit()

    @handlers.event(OrderPaid)
    def note_payment(event: OrderPaid, notes: list[str]) -> None:
        notes.append(f"paid {event.order_id}")

    return handlers


# -- the scenario, sync ---------------------------------------------------------------------


def test_a_command_runs_then_the_events_of_its_committed_work(make_uow):
    stock(make_uow(), "S1", b1=10)
    notes: list[str] = []
    units: list[Any] = []
    bus = MessageBus(
        allocation_handlers(units), dependencies={"uow": make_uow, "notes": lambda: notes}
    )

    report = bus.handle(Allocate(sku="S1", orderid="o1", qty=3))

    assert isinstance(report, DispatchReport)
    assert (report.result, report.ok) == ("b1", True)
    assert [type(event) for event in report.events] == [Allocated, OrderPaid]
    assert notes == [f"paid {report.events[1].order_id}"]  # type: ignore[attr-defined]
    with make_uow() as uow:
        product = uow.repository(ContractProduct, str).get("S1", load="batches.allocations")
        assert [(a.orderid, a.qty) for a in product.batches[0].allocations] == [("o1", 3)]
        assert product.version == 2
        assert [order.ref for order in uow.repository(ContractOrder).find()] == ["o1"]


def test_every_dispatch_gets_its_own_unit_of_work(make_uow):
    stock(make_uow(), "S1", b1=10)
    units: list[Any] = []
    bus = MessageBus(allocation_handlers(units), dependencies={"uow": make_uow, "notes": list})
    for n in range(3):
        bus.handle(Allocate(sku="S1", orderid=f"o{n}", qty=1))
    assert len({id(unit) for unit in units}) == 3


def test_a_failing_command_propagates_and_its_undone_work_has_no_events(make_uow):
    stock(make_uow(), "S1", b1=1)
    notes: list[str] = []
    bus = MessageBus(allocation_handlers(), dependencies={"uow": make_uow, "notes": lambda: notes})
    with pytest.raises(ValueError, match="no batch of S1 has 5 left"):
        bus.handle(Allocate(sku="S1", orderid="o1", qty=5))
    assert notes == []
    with make_uow() as uow:
        assert uow.repository(ContractOrder).find() == []


def test_events_of_work_committed_before_a_command_failed_are_still_handled(make_uow):
    stock(make_uow(), "S1", b1=10)
    handlers = Handlers()
    handled: list[str] = []

    @handlers.command(Allocate)
    def allocate_then_fail(command: Allocate, uow: Any) -> None:
        with uow:
            product = uow.repository(ContractProduct, str).get(command.sku)
            product.allocate(command.orderid, command.qty)
            uow.commit()
        raise RuntimeError("the mail server is down")

    @handlers.event(Allocated)
    def record(event: Allocated) -> None:
        handled.append(event.orderid)

    bus = MessageBus(handlers, dependencies={"uow": make_uow})
    with pytest.raises(RuntimeError, match="mail server"):
        bus.handle(Allocate(sku="S1", orderid="o1", qty=1))
    assert handled == ["o1"]  # the allocation is stored: what it caused happened


def test_an_event_handler_failure_is_isolated_logged_and_reported(make_uow, caplog):
    stock(make_uow(), "S1", b1=10)
    handlers = allocation_handlers()
    after: list[str] = []

    @handlers.event(Allocated)
    def flaky(event: Allocated) -> None:
        raise ConnectionError("the warehouse API is down")

    @handlers.event(Allocated)
    def later(event: Allocated) -> None:
        after.append(event.orderid)

    failures: list[HandlerFailure] = []
    notes: list[str] = []
    bus = MessageBus(
        handlers,
        dependencies={"uow": make_uow, "notes": lambda: notes},
        on_failure=failures.append,
    )
    with caplog.at_level(logging.ERROR, logger="buttress.messaging"):
        report = bus.handle(Allocate(sku="S1", orderid="o1", qty=1))

    assert report.result == "b1"
    assert not report.ok
    [failure] = report.failures
    assert failure.handler.endswith("flaky")
    assert isinstance(failure.error, ConnectionError)
    assert failure.event is report.events[0]
    assert failures == report.failures
    assert after == ["o1"]  # the handler after the failing one ran
    assert len(notes) == 1  # and the order placed by the first one was paid and noted
    assert "flaky" in caplog.text
    assert "warehouse API is down" in caplog.text


def test_a_failing_listener_does_not_fail_the_dispatch(caplog):
    handlers = Handlers()

    class Happened(DomainEvent):
        pass

    @handlers.event(Happened)
    def broken(event: Happened) -> None:
        raise RuntimeError("boom")

    def listener(failure: HandlerFailure) -> None:
        raise RuntimeError("the listener is broken too")

    bus = MessageBus(handlers, on_failure=listener)
    with caplog.at_level(logging.ERROR, logger="buttress.messaging"):
        report = bus.handle(Happened())
    assert len(report.failures) == 1
    assert "listener raised" in caplog.text


# -- breadth-first, and cycles ----------------------------------------------------------------


class Root(DomainEvent, name="tests.bus.root"):
    pass


class Child(DomainEvent, name="tests.bus.child"):
    label: str


class Grandchild(DomainEvent, name="tests.bus.grandchild"):
    label: str


class EventUnit:
    """A stand-in unit of work whose commit queued ``events`` (the bus asks units, not types)."""

    def __init__(self, events: list[DomainEvent]) -> None:
        self.events = events

    def collect_events(self) -> list[DomainEvent]:
        events, self.events = self.events, []
        return events


def test_events_are_handled_breadth_first():
    handlers = Handlers()
    order: list[str] = []
    pending: dict[str, list[DomainEvent]] = {
        "first": [Child(label="a1"), Child(label="a2")],
        "second": [Child(label="b1")],
        "a1": [Grandchild(label="a1.x")],
    }
    current: list[str] = []

    @handlers.event(Root)
    def first(event: Root, unit: EventUnit) -> None:
        order.append("first")

    @handlers.event(Root)
    def second(event: Root, unit: EventUnit) -> None:
        order.append("second")

    @handlers.event(Child)
    def child(event: Child, unit: EventUnit) -> None:
        order.append(event.label)

    @handlers.event(Grandchild)
    def grandchild(event: Grandchild) -> None:
        order.append(event.label)

    def unit() -> EventUnit:
        # the unit of the handler running now gets what that handler "committed"
        name = current.pop(0)
        return EventUnit(pending.get(name, []))

    current.extend(["first", "second", "a1", "a2", "b1"])
    report = MessageBus(handlers, dependencies={"unit": unit}).handle(Root())
    assert order == ["first", "second", "a1", "a2", "b1", "a1.x"]
    labels = [getattr(event, "label", "root") for event in report.events]
    assert labels == ["root", "a1", "a2", "b1", "a1.x"]


def test_handlers_of_a_base_event_class_get_its_subclasses_after_their_own():
    handlers = Handlers()
    order: list[str] = []

    @handlers.event(DomainEvent)
    def every_event(event: DomainEvent) -> None:
        order.append("any")

    @handlers.event(Child)
    def child(event: Child) -> None:
        order.append("child")

    bus = MessageBus(handlers)
    bus.handle(Child(label="x"))
    bus.handle(Root())
    assert order == ["child", "any", "any"]


def test_a_cycle_of_events_is_stopped_and_reported(monkeypatch):
    monkeypatch.setattr(_dispatch, "MAX_EVENTS", 50)
    handlers = Handlers()

    @handlers.event(Root)
    def again(event: Root, unit: EventUnit) -> None:
        pass

    made = iter(range(200))  # a bounded cycle: without the limit the test ends, and fails

    def unit() -> EventUnit:
        return EventUnit([Root()] if next(made, None) is not None else [])

    report = MessageBus(handlers, dependencies={"unit": unit}).handle(Root())
    assert len(report.events) == 50
    [failure] = report.failures
    assert "cycle" in str(failure.error)


# -- registration and check() -------------------------------------------------------------------


def test_a_command_has_exactly_one_handler():
    handlers = Handlers()

    @handlers.command(Allocate)
    def one(command: Allocate) -> None: ...

    with pytest.raises(ConfigurationError, match="already has a handler.*one") as caught:

        @handlers.command(Allocate)
        def two(command: Allocate) -> None: ...

    assert "two" in str(caught.value)
    assert handlers.command_handler(Allocate).function is one


@pytest.mark.parametrize(
    ("register", "message"),
    [
        (lambda h: h.command(Allocated), "Command subclass"),
        (lambda h: h.command(object), "Command subclass"),
        (lambda h: h.event(Allocate), "DomainEvent subclass"),
        (lambda h: h.event("Allocated"), "DomainEvent subclass"),
        (lambda h: h.command(Allocate)(lambda: None), "first parameter must take the message"),
        (lambda h: h.command(Allocate)(42), "not callable"),
        (lambda h: h.event(Root)(lambda *, event: None), "first parameter"),
        (lambda h: h.event(Root)(lambda event, uow, /: None), "positional-only"),
    ],
)
def test_registering_something_that_cannot_work_is_refused(register, message):
    with pytest.raises(ConfigurationError, match=message):
        register(Handlers())


def test_an_event_handler_is_registered_once_per_event():
    handlers = Handlers()

    def handle(event: Root) -> None: ...

    handlers.event(Root)(handle)
    handlers.event(Child)(handle)  # another event: fine
    with pytest.raises(ConfigurationError, match="already"):
        handlers.event(Root)(handle)


def test_a_command_without_a_handler_and_a_non_message_are_refused():
    bus = MessageBus(Handlers())
    with pytest.raises(ConfigurationError, match=r"no handler .* Allocate.*@handlers.command"):
        bus.handle(Allocate(sku="S", orderid="o", qty=1))
    with pytest.raises(ConfigurationError, match="Command and DomainEvent"):
        bus.handle("allocate please")  # type: ignore[arg-type]


def test_an_event_nobody_handles_is_fine():
    event = Root()
    report = MessageBus(Handlers()).handle(event)
    assert (report.events, report.failures, report.ok, report.result) == ([event], [], True, None)


def test_check_lists_every_handler_that_could_not_run():
    handlers = allocation_handlers()

    @handlers.event(Allocated)
    async def remote(event: Allocated, client: Any) -> None: ...

    with pytest.raises(ConfigurationError) as caught:
        MessageBus(handlers, dependencies={"uow": lambda: None}).check()
    text = str(caught.value)
    assert "note_payment needs 'notes'" in text
    assert "remote needs 'client'" in text
    assert "remote is async def" in text
    assert "allocate needs" not in text  # its uow is provided
    assert "place_order needs" not in text
    everything = {"uow": lambda: None, "notes": list, "client": object}
    AsyncMessageBus(handlers, dependencies=everything).check()  # every one can run


def test_a_missing_dependency_fails_the_dispatch_with_the_same_message():
    bus = MessageBus(allocation_handlers(), dependencies={"notes": list})
    with pytest.raises(ConfigurationError, match="allocate needs 'uow'"):
        bus.handle(Allocate(sku="S", orderid="o", qty=1))


def test_an_optional_parameter_keeps_its_default_unless_provided():
    handlers = Handlers()

    @handlers.command(Allocate)
    def allocate(command: Allocate, retries: int = 3) -> int:
        return retries

    assert MessageBus(handlers).handle(Allocate(sku="S", orderid="o", qty=1)).result == 3
    bus = MessageBus(handlers, dependencies={"retries": lambda: 5})
    assert bus.handle(Allocate(sku="S", orderid="o", qty=1)).result == 5


@pytest.mark.parametrize("bad", [42, "uow", None])
def test_a_dependency_that_is_not_a_provider_is_refused(bad):
    with pytest.raises(ConfigurationError, match="not a provider"):
        MessageBus(Handlers(), dependencies={"uow": bad})
    with pytest.raises(ConfigurationError, match="mapping of names to providers"):
        MessageBus(Handlers(), dependencies=[("uow", list)])


def test_a_handler_registered_after_the_bus_was_made_is_used():
    handlers = Handlers()
    bus = MessageBus(handlers)
    seen: list[str] = []
    bus.handle(Root())  # no handler yet (and the bus has looked)

    @handlers.event(Root)
    def late(event: Root) -> None:
        seen.append("late")

    bus.handle(Root())
    assert seen == ["late"]


# -- units of work are never shared -------------------------------------------------------------


def test_a_unit_in_use_by_another_dispatch_is_refused(make_uow):
    stock(make_uow(), "S1", b1=10)
    shared = make_uow()  # a singleton provider: the mistake this catches
    handlers = Handlers()
    inner: list[Any] = []

    @handlers.command(Allocate)
    def outer(command: Allocate, uow: Any, bus: MessageBus) -> None:
        with uow:
            inner.append(bus.handle(Root()))  # a nested dispatch asks for the same unit

    @handlers.event(Root)
    def nested(event: Root, uow: Any) -> None: ...

    bus: MessageBus = MessageBus(handlers, dependencies={"uow": lambda: shared, "bus": lambda: bus})
    bus.handle(Allocate(sku="S1", orderid="o1", qty=1))
    [report] = inner
    [failure] = report.failures
    assert isinstance(failure.error, ConfigurationError)
    assert "another dispatch is using" in str(failure.error)
    # once the first dispatch is over, the unit is free again
    assert MessageBus(handlers, dependencies={"uow": lambda: shared}).handle(Root()).ok


def test_threads_dispatching_at_once_each_get_their_own_unit(make_uow):
    stock(make_uow(), "S1", b1=100)
    units: list[Any] = []
    notes: list[str] = []
    bus = MessageBus(
        allocation_handlers(units), dependencies={"uow": make_uow, "notes": lambda: notes}
    )
    handle = retry(on=ConcurrencyError, attempts=30, wait_initial=0.001, wait_max=0.02)(bus.handle)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for k in range(3):
                handle(Allocate(sku="S1", orderid=f"t{n}-{k}", qty=1))
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(units) >= 12  # the provider was called for every dispatch (retries add more)
    assert len({id(unit) for unit in units}) == len(units)
    assert len(notes) == 12  # each allocation placed one order, paid and noted once
    with make_uow() as uow:
        product = uow.repository(ContractProduct, str).get("S1", load="batches.allocations")
        assert sorted(a.orderid for a in product.batches[0].allocations) == sorted(
            f"t{n}-{k}" for n in range(4) for k in range(3)
        )
        assert len(uow.repository(ContractOrder).find()) == 12


# -- asyncio --------------------------------------------------------------------------------------


def async_allocation_handlers(seen_units: list[Any]) -> Handlers:
    handlers = Handlers()

    @handlers.command(Allocate)
    async def allocate(command: Allocate, uow: Any) -> str:
        seen_units.append(uow)
        async with uow:
            product = await uow.repository(ContractProduct, str).get(
                command.sku, load=("batches", "batches.allocations")
            )
            reference = product.allocate(command.orderid, command.qty)
            await asyncio.sleep(0)  # let the other dispatches interleave
            await uow.commit()
        return reference

    @handlers.event(Allocated)
    async def place_order(event: Allocated, uow: Any) -> None:
        seen_units.append(uow)
        async with uow:
            order = await uow.repository(ContractOrder).add(
                ContractOrder(ref=event.orderid, total=1)
            )
            order.pay()
            await uow.commit()

    @handlers.event(OrderPaid)
    def note_payment(event: OrderPaid, notes: list[str]) -> None:  # a plain def: called inline
        notes.append(f"paid {event.order_id}")

    return handlers


@pytest.mark.asyncio
async def test_concurrent_async_commands_each_get_their_own_unit(make_async_uow):
    products = 10
    async with make_async_uow() as uow:
        for n in range(products):
            await uow.repository(ContractProduct, str).add(
                ContractProduct(sku=f"S{n}", batches=[ContractBatch(reference=f"b{n}", qty=100)])
            )
        await uow.commit()
    units: list[Any] = []
    notes: list[str] = []
    bus = AsyncMessageBus(
        async_allocation_handlers(units),
        dependencies={"uow": make_async_uow, "notes": lambda: notes},
    )

    @retry(on=ConcurrencyError, attempts=60, wait_initial=0.001, wait_max=0.02)
    async def handle(command: Allocate) -> DispatchReport:
        return await bus.handle(command)

    reports = await asyncio.gather(
        *(handle(Allocate(sku=f"S{n % products}", orderid=f"o{n}", qty=1)) for n in range(100))
    )
    assert all(report.ok for report in reports)
    # the provider was called for every dispatch: each command's and each event's
    assert len(units) >= 200
    assert len({id(unit) for unit in units}) == len(units)
    assert len(notes) == 100
    async with make_async_uow() as uow:
        stored = await uow.repository(ContractProduct, str).find(load="batches.allocations")
        allocated = sorted(a.orderid for p in stored for a in p.batches[0].allocations)
        assert allocated == sorted(f"o{n}" for n in range(100))
        assert len(await uow.repository(ContractOrder).find()) == 100


@pytest.mark.asyncio
async def test_async_bus_awaits_async_providers_and_isolates_failures():
    handlers = Handlers()
    seen: list[Any] = []

    @handlers.event(Root)
    async def broken(event: Root) -> None:
        raise RuntimeError("boom")

    @handlers.event(Root)
    async def uses_client(event: Root, client: str) -> None:
        seen.append(client)

    async def connect() -> str:
        await asyncio.sleep(0)
        return "client"

    report = await AsyncMessageBus(handlers, dependencies={"client": connect}).handle(Root())
    assert seen == ["client"]
    assert [f.handler.rsplit(".", 1)[-1] for f in report.failures] == ["broken"]


@pytest.mark.asyncio
async def test_an_async_command_error_propagates():
    handlers = Handlers()

    @handlers.command(Allocate)
    async def refuse(command: Allocate) -> None:
        raise PermissionError("not allowed")

    with pytest.raises(PermissionError):
        await AsyncMessageBus(handlers).handle(Allocate(sku="S", orderid="o", qty=1))


def test_the_sync_bus_refuses_async_handlers_and_providers():
    handlers = Handlers()

    @handlers.command(Allocate)
    async def allocate(command: Allocate) -> None: ...

    with pytest.raises(ConfigurationError, match="AsyncMessageBus"):
        MessageBus(handlers).handle(Allocate(sku="S", orderid="o", qty=1))

    other = Handlers()

    @other.event(Root)
    def needs(event: Root, client: Any) -> None: ...

    async def connect() -> str:
        return "client"

    report = MessageBus(other, dependencies={"client": connect}).handle(Root())
    assert "asynchronous" in str(report.failures[0].error)


# -- dependency-injector ---------------------------------------------------------------------------


def test_dependencies_come_from_a_containers_providers_by_name(make_uow):
    stock(make_uow(), "S1", b1=10)
    noted: list[str] = []

    class Service(containers.DeclarativeContainer):
        uow = providers.Factory(make_uow)
        notes = providers.Object(noted)

    container = Service()
    bus = MessageBus(allocation_handlers(), dependencies=container)
    bus.check()
    assert bus.handle(Allocate(sku="S1", orderid="o1", qty=1)).ok
    assert len(noted) == 1

    class WithBus(containers.DeclarativeContainer):
        uow = providers.Factory(make_uow)
        bus = providers.Singleton(
            MessageBus, allocation_handlers(), dependencies=providers.Dict(uow=uow.provider)
        )

    with pytest.raises(ConfigurationError, match=r"bus: .*note_payment needs 'notes'"):
        check(WithBus())

    class Fixed(WithBus):
        notes = providers.Object(noted)
        bus = providers.Singleton(
            MessageBus,
            allocation_handlers(),
            dependencies=providers.Dict(uow=WithBus.uow.provider, notes=notes.provider),
        )

    check(Fixed())
    assert Fixed().bus().handle(Allocate(sku="S1", orderid="o2", qty=1)).ok


# -- what a review found ---------------------------------------------------------------------------


class GatedUnit(EventUnit):
    """A unit whose ``collect_events`` waits for a gate, so another dispatch can try it then."""

    def __init__(self, events: list[DomainEvent]) -> None:
        super().__init__(events)
        self.collecting = threading.Event()
        self.gate = threading.Event()

    def collect_events(self) -> list[DomainEvent]:
        self.collecting.set()
        assert self.gate.wait(10)
        return super().collect_events()


def test_a_unit_is_given_back_only_after_its_events_are_collected():
    handlers = Handlers()
    handled: list[str] = []

    @handlers.command(Allocate)
    def commit_one(command: Allocate, unit: EventUnit) -> None:
        unit.events.append(Child(label=command.orderid))

    @handlers.event(Child)
    def record(event: Child) -> None:
        handled.append(event.label)

    shared = GatedUnit([])
    bus = MessageBus(handlers, dependencies={"unit": lambda: shared})
    reports: list[DispatchReport] = []
    first = threading.Thread(
        target=lambda: reports.append(bus.handle(Allocate(sku="S", orderid="A", qty=1)))
    )
    first.start()
    assert shared.collecting.wait(10)
    with pytest.raises(ConfigurationError, match="another dispatch is using"):
        bus.handle(Allocate(sku="S", orderid="B", qty=1))  # A's unit is not free yet
    shared.gate.set()
    first.join(10)
    [report] = reports
    assert [event.label for event in report.events] == ["A"]  # type: ignore[attr-defined]
    assert handled == ["A"]
    assert bus.handle(Allocate(sku="S", orderid="C", qty=1)).ok  # free again now


def test_a_second_unit_refused_gives_the_first_back():
    handlers = Handlers()

    @handlers.command(Allocate)
    def two_units(command: Allocate, mine: EventUnit, theirs: EventUnit) -> None: ...

    @handlers.event(Root)
    def holds_theirs(event: Root, theirs: EventUnit, bus: MessageBus) -> None:
        # while this dispatch holds "theirs", the command asks for it: refused, "mine" freed
        with pytest.raises(ConfigurationError, match="'theirs'"):
            bus.handle(Allocate(sku="S", orderid="o", qty=1))
        assert bus.handle(Root.model_construct()).failures  # "theirs" still busy here

    mine, theirs = EventUnit([]), EventUnit([])
    bus: MessageBus = MessageBus(
        handlers,
        dependencies={"mine": lambda: mine, "theirs": lambda: theirs, "bus": lambda: bus},
    )
    assert bus.handle(Root()).ok
    assert bus.handle(Allocate(sku="S", orderid="o", qty=1)).ok  # both free again


def test_two_threads_on_a_singleton_unit_one_is_refused():
    handlers = Handlers()
    inside = threading.Barrier(2, timeout=10)
    entered = threading.Event()
    leave = threading.Event()

    @handlers.command(Allocate)
    def slow(command: Allocate, unit: EventUnit) -> None:
        entered.set()
        assert leave.wait(10)

    shared = EventUnit([])
    bus = MessageBus(handlers, dependencies={"unit": lambda: shared})
    outcomes: list[object] = []

    def dispatch() -> None:
        inside.wait()
        try:
            outcomes.append(bus.handle(Allocate(sku="S", orderid="o", qty=1)).ok)
        except ConfigurationError as error:
            outcomes.append(error)
            leave.set()

    threads = [threading.Thread(target=dispatch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert entered.is_set()
    assert sorted(map(type, outcomes), key=str) == sorted([bool, ConfigurationError], key=str)


class AsyncNotifier:
    """A handler object with ``async def __call__``."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, event: Root) -> None:
        await asyncio.sleep(0)
        self.seen.append("notified")


def logged(function: Any) -> Any:
    """A plain decorator (functools.wraps) around an ``async def``: a def returning a coroutine."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    return wrapper


@pytest.mark.asyncio
async def test_whatever_returns_an_awaitable_is_awaited_on_the_async_bus():
    handlers = Handlers()
    notifier = AsyncNotifier()
    handlers.event(Root)(notifier)
    ran: list[str] = []

    @handlers.command(Allocate)
    @logged
    async def wrapped(command: Allocate) -> str:
        ran.append("command")
        return "done"

    told: list[HandlerFailure] = []

    @handlers.event(Child)
    def broken(event: Child) -> None:
        raise RuntimeError("boom")

    async def on_failure(failure: HandlerFailure) -> None:
        await asyncio.sleep(0)
        told.append(failure)

    bus = AsyncMessageBus(handlers, on_failure=on_failure)
    assert (await bus.handle(Allocate(sku="S", orderid="o", qty=1))).result == "done"
    assert (await bus.handle(Root())).ok
    assert (ran, notifier.seen) == (["command"], ["notified"])
    report = await bus.handle(Child(label="x"))
    assert told == report.failures
    assert handlers.event_handlers(Root)[0].name == f"{__name__}.AsyncNotifier"
    assert handlers.event_handlers(Root)[0].is_async


def test_the_sync_bus_refuses_what_it_cannot_await():
    handlers = Handlers()

    @handlers.command(Allocate)
    @logged
    async def wrapped(command: Allocate) -> str:
        return "never"

    with pytest.raises(ConfigurationError, match="returned an awaitable"):
        MessageBus(handlers).handle(Allocate(sku="S", orderid="o", qty=1))

    async def on_failure(failure: HandlerFailure) -> None: ...

    with pytest.raises(ConfigurationError, match="on_failure is async def"):
        MessageBus(handlers, on_failure=on_failure)

    async def connect() -> str:
        return "client"

    other = Handlers()

    @other.event(Root)
    def needs(event: Root, client: Any) -> None: ...

    assert "from an asynchronous provider" in " ".join(
        MessageBus(other, dependencies={"client": connect}).problems()
    )
    assert AsyncMessageBus(other, dependencies={"client": connect}).problems() == []


def test_only_objects_whose_class_collects_events_are_units():
    handlers = Handlers()
    got: list[Any] = []

    @handlers.command(Allocate)
    def uses(command: Allocate, gateway: Any, kind: Any) -> None:
        got.extend([gateway, kind])

    gateway = mock.Mock()  # every attribute exists, collect_events included
    bus = MessageBus(handlers, dependencies={"gateway": lambda: gateway, "kind": lambda: EventUnit})
    report = bus.handle(Allocate(sku="S", orderid="o", qty=1))
    assert (report.ok, report.events, got) == (True, [], [gateway, EventUnit])
    gateway.collect_events.assert_not_called()


def test_a_bound_method_is_registered_once_per_event():
    notifier = AsyncNotifier()
    handlers = Handlers()
    handlers.event(Root)(notifier.__call__)
    with pytest.raises(ConfigurationError, match="already"):
        handlers.event(Root)(notifier.__call__)


@pytest.mark.asyncio
async def test_a_cancelled_dispatch_does_not_go_on_to_the_events():
    handlers = Handlers()
    handled: list[str] = []

    @handlers.command(Allocate)
    async def commit_then_wait(command: Allocate, unit: EventUnit) -> None:
        unit.events.append(Child(label="committed"))
        await asyncio.sleep(10)  # cancelled here, after its "commit"

    @handlers.event(Child)
    async def slow(event: Child) -> None:
        await asyncio.sleep(1)
        handled.append(event.label)

    bus = AsyncMessageBus(handlers, dependencies={"unit": lambda: EventUnit([])})
    started = asyncio.get_running_loop().time()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(bus.handle(Allocate(sku="S", orderid="o", qty=1)), 0.05)
    assert asyncio.get_running_loop().time() - started < 0.5  # no event handler was awaited
    assert handled == []


def test_di_check_lists_a_bus_that_cannot_be_built():
    def broken_bus() -> MessageBus:
        raise RuntimeError("connects to the broker at build time")

    class Broken(containers.DeclarativeContainer):
        bus = providers.Singleton(broken_bus)

    check(Broken())  # not a provider of a bus class: not built

    class BrokenBus(MessageBus):
        def __init__(self) -> None:
            raise RuntimeError("connects to the broker at build time")

    class Building(containers.DeclarativeContainer):
        bus = providers.Singleton(BrokenBus)

    with pytest.raises(ConfigurationError, match="bus cannot be built: connects to the broker"):
        check(Building())
