"""The inbox: a redelivered message's effect happens once, on every backend.

The effect is an order stored in the same unit as the inbox record; deliveries
are repeated after a commit, after a rollback, and at the same time from two
threads (the second gives way with `ConflictError` and keeps nothing).
"""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from messaging_backends import INBOX

from buttress.errors import ConfigurationError, ConflictError
from buttress.messaging import Inbox
from buttress.testing import ContractOrder


def deliver(uow: Any, message_id: uuid.UUID, handler: str = "orders.place") -> bool:
    """A consumer: record the message, then (the first time only) store the order."""
    with uow:
        first = INBOX.record(uow, message_id, handler)
        if first:
            uow.repository(ContractOrder).add(ContractOrder(ref=ref(handler, message_id)))
        uow.commit()
    return first


def ref(handler: str, message_id: uuid.UUID | str) -> str:
    """The order's reference: the handler and the message's first hex digits (fits 40)."""
    return f"{handler}:{str(message_id)[:8]}"


def orders(backend: Any) -> list[str]:
    with backend.uow() as uow:
        return sorted(order.ref for order in uow.repository(ContractOrder).find())


def test_a_redelivered_message_has_its_effect_once(backend):
    message = uuid.uuid4()
    assert deliver(backend.uow(), message) is True
    assert deliver(backend.uow(), message) is False
    assert deliver(backend.uow(), str(message)) is False  # its text is the same message
    assert deliver(backend.uow(), message, "billing.invoice") is True  # another handler
    assert orders(backend) == [ref("billing.invoice", message), ref("orders.place", message)]


def test_a_rolled_back_delivery_records_nothing(backend):
    message = uuid.uuid4()
    uow = backend.uow()
    with uow:
        assert INBOX.record(uow, message, "orders.place") is True
        uow.repository(ContractOrder).add(ContractOrder(ref="undone"))
        uow.rollback()  # the effect failed: the record goes with it
    assert deliver(backend.uow(), message) is True
    assert orders(backend) == [ref("orders.place", message)]


def test_two_deliveries_at_once_keep_one_effect(backend):
    """Whichever commits first keeps its effect; the other gives way and keeps nothing.

    On SQL the second delivery waits for the first's record and then conflicts
    (or, once the first committed, sees it); the in-memory twin lets both run and
    refuses the later commit. Either way: one order, one ``ConflictError`` or ``False``.
    """
    message = uuid.uuid4()
    recorded = threading.Event()
    second_started = threading.Event()
    outcomes: list[object] = []

    def attempt(name: str, before_commit: Any) -> None:
        try:
            uow = backend.uow()
            with uow:
                first = INBOX.record(uow, message, "orders.place")
                if first:
                    uow.repository(ContractOrder).add(ContractOrder(ref=name))
                before_commit()
                uow.commit()
            outcomes.append((name, first))
        except ConflictError as error:
            outcomes.append((name, error))

    def first_waits() -> None:
        recorded.set()
        second_started.wait(2)  # SQL: the second blocks on our record, so do not wait long

    def second_goes() -> None:
        second_started.set()

    threads = [
        threading.Thread(target=attempt, args=("first", first_waits)),
        threading.Thread(target=lambda: (recorded.wait(10), attempt("second", second_goes))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(outcomes) == 2
    kept = [name for name, outcome in outcomes if outcome is True]
    gave_way = [o for _, o in outcomes if o is False or isinstance(o, ConflictError)]
    assert len(kept) == 1
    assert len(gave_way) == 1
    assert orders(backend) == kept


def test_old_records_are_pruned(backend):
    old, new = uuid.uuid4(), uuid.uuid4()
    deliver(backend.uow(), old)
    with backend.uow() as uow:  # age the first record
        record = uow.repository(INBOX.model).get((old, "orders.place"))
        record.received_at -= timedelta(days=8)
        uow.commit()
    deliver(backend.uow(), new)
    with backend.uow() as uow:
        assert INBOX.prune(uow, timedelta(days=7)) == 1
        uow.commit()
    assert deliver(backend.uow(), new) is False  # kept
    with backend.uow() as uow:  # forgotten: a redelivery now would be handled again
        assert INBOX.record(uow, old, "orders.place") is True


@pytest.mark.asyncio
async def test_async_consumers_record_too(async_backend):
    message = uuid.uuid4()
    results = []
    for _ in range(2):
        uow = async_backend.uow()
        async with uow:
            first = await INBOX.arecord(uow, message, "orders.place")
            if first:
                await uow.repository(ContractOrder).add(ContractOrder(ref=str(message)))
            await uow.commit()
        results.append(first)
    assert results == [True, False]
    async with async_backend.uow() as uow:
        assert await INBOX.aprune(uow, timedelta(0)) == 1
        await uow.commit()


@pytest.mark.parametrize(
    ("message_id", "handler", "error"),
    [
        ("not-a-uuid", "orders.place", "must be a UUID"),
        (42, "orders.place", "must be a UUID"),
        (uuid.uuid4(), "", "non-empty string"),
        (uuid.uuid4(), None, "non-empty string"),
    ],
)
def test_bad_ids_and_names_are_refused(backend, message_id, handler, error):
    with backend.uow() as uow, pytest.raises(ConfigurationError, match=error):
        INBOX.record(uow, message_id, handler)


def test_one_inbox_per_table_and_a_sensible_age(backend):
    metadata = sa.MetaData()
    Inbox(metadata)
    with pytest.raises(ConfigurationError, match="already has a table 'buttress_inbox'"):
        Inbox(metadata)
    with backend.uow() as uow:
        for age in (timedelta(days=-1), 7):
            with pytest.raises(ConfigurationError, match="older_than"):
                INBOX.prune(uow, age)  # type: ignore[arg-type]
