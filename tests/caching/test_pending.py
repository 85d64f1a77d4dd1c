"""The queue of invalidations Redis has not received: kept in order, applied in order, bounded.

A stand-in for the shared cache says whether Redis answers, so every rule of the
queue is checked without a server (the same rules through a real, paused or
killed Redis are in test_redis_outages).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from buttress.caching._pending import MAX_PENDING, Invalidation, Pending

LOGGER = "buttress.caching"


class Store:
    """A shared cache whose Redis answers when ``up``; records what it applied, in order."""

    def __init__(self, *, up: bool = False, background: bool = False) -> None:
        self.up = up
        self.background = background
        self.resting = False
        self.applied: list[Invalidation] = []
        self.during: Callable[[Invalidation], None] | None = None

    def apply(self, invalidation: Invalidation) -> bool:
        if self.during is not None:
            self.during(invalidation)
        if not self.up:
            return False
        self.applied.append(invalidation)
        return True

    async def aapply(self, invalidation: Invalidation) -> bool:
        await asyncio.sleep(0)
        return self.apply(invalidation)

    def can_flush_in_background(self) -> bool:
        return self.background

    def skip(self) -> bool:
        return self.resting


def key(name: str) -> Invalidation:
    return Invalidation("key", (name,))


@pytest.fixture(params=["sync", "async"])
def flush(request: pytest.FixtureRequest) -> Callable[[Pending, Store], bool]:
    """`Pending.flush` or `Pending.aflush`, called the matching way."""
    if request.param == "sync":
        return lambda pending, store: pending.flush(store.apply, store.skip)
    return lambda pending, store: asyncio.run(pending.aflush(store.aapply, store.skip))


@pytest.fixture
def pending() -> Iterator[Pending]:
    queue = Pending("orders")
    yield queue
    queue.close()


def wait_until(condition: Callable[[], bool], timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def flushers(label: str) -> list[threading.Thread]:
    name = f"buttress-cache-invalidations-{label}"
    return [thread for thread in threading.enumerate() if thread.name == name]


# -- order, and nothing lost ------------------------------------------------------------


def test_invalidations_are_applied_in_the_order_they_were_made(
    pending: Pending, flush: Callable[[Pending, Store], bool], caplog: pytest.LogCaptureFixture
) -> None:
    store = Store()
    made = [key("a"), Invalidation("tags", ("t",)), key("b")]
    for invalidation in made:
        pending.defer(invalidation, store)
    assert pending.items() == made
    assert len(pending) == 3
    assert pending
    assert not flush(pending, store)  # Redis does not answer: nothing is dropped
    assert pending.items() == made
    store.up = True
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert flush(pending, store)
    assert store.applied == made
    assert not pending
    assert len(pending) == 0
    assert [record.getMessage() for record in caplog.records] == [
        "Redis cache orders applied 3 deferred invalidations"
    ]


def test_an_empty_queue_is_flushed_without_asking_redis(
    pending: Pending, flush: Callable[[Pending, Store], bool]
) -> None:
    store = Store()
    store.resting = True
    assert flush(pending, store)  # nothing waits: reads may go to Redis
    assert store.applied == []


def test_a_failure_midway_keeps_the_rest_in_order(
    pending: Pending, flush: Callable[[Pending, Store], bool]
) -> None:
    store = Store(up=True)
    made = [key("a"), key("b"), key("c")]
    for invalidation in made:
        pending.defer(invalidation, store)

    def fail_on_b(invalidation: Invalidation) -> None:
        store.up = invalidation != key("b")

    store.during = fail_on_b
    assert not flush(pending, store)
    assert store.applied == [key("a")]
    assert pending.items() == [key("b"), key("c")]
    store.during = None
    store.up = True
    assert flush(pending, store)
    assert store.applied == made


def test_nothing_is_applied_while_redis_is_left_alone(
    pending: Pending, flush: Callable[[Pending, Store], bool]
) -> None:
    store = Store(up=True)
    pending.defer(key("a"), store)
    store.resting = True
    assert not flush(pending, store)
    assert store.applied == []
    store.resting = False
    assert flush(pending, store)
    assert store.applied == [key("a")]


def test_a_second_flusher_does_not_wait_and_reports_the_queue_not_empty(
    pending: Pending, flush: Callable[[Pending, Store], bool]
) -> None:
    store = Store(up=True)
    pending.defer(key("a"), store)
    pending.defer(key("b"), store)
    seen: list[bool] = []

    def meanwhile(invalidation: Invalidation) -> None:
        if not seen:
            seen.append(pending.flush(store.apply, store.skip))  # the first one is busy

    store.during = meanwhile
    assert flush(pending, store)
    assert seen == [False]
    assert store.applied == [key("a"), key("b")]  # each once
    assert flush(pending, store)  # and the busy mark was released


def test_an_invalidation_of_everything_made_while_flushing_is_not_lost(
    pending: Pending, flush: Callable[[Pending, Store], bool]
) -> None:
    store = Store(up=True)
    pending.defer(key("a"), store)
    everything = Invalidation("everything")

    def meanwhile(invalidation: Invalidation) -> None:
        if invalidation == key("a"):
            pending.defer(everything, store)  # replaces the queue while a is being applied

    store.during = meanwhile
    assert flush(pending, store)
    assert store.applied == [key("a"), everything]
    assert not pending


def test_a_second_async_flusher_does_not_block_the_event_loop(pending: Pending) -> None:
    store = Store(up=True)
    pending.defer(key("a"), store)
    seen: list[bool] = []

    async def apply(invalidation: Invalidation) -> bool:
        if not seen:  # another task of the loop flushes meanwhile
            seen.append(await pending.aflush(store.aapply, store.skip))
        return await store.aapply(invalidation)

    assert asyncio.run(pending.aflush(apply, store.skip))
    assert seen == [False]
    assert store.applied == [key("a")]


# -- bounded: too many become one of everything -----------------------------------------


def test_everything_replaces_what_waited(pending: Pending) -> None:
    store = Store()
    pending.defer(key("a"), store)
    pending.defer(key("b"), store)
    everything = Invalidation("everything")
    pending.defer(everything, store)
    assert pending.items() == [everything]
    pending.defer(key("c"), store)
    assert pending.items() == [everything, key("c")]


def test_an_overflowing_queue_becomes_one_of_everything_on_the_same_channel(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pending = Pending("orders", limit=3)
    store = Store()
    announced = ("orders-channel", (b"a",))
    pending.defer(key("a"), store)
    pending.defer(Invalidation("key", ("b",), announce=announced), store)
    pending.defer(Invalidation("key", ("c",), announce=("other", (b"c",))), store)
    assert len(pending) == 3
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        pending.defer(key("d"), store)
    assert pending.items() == [
        Invalidation("everything", announce=("orders-channel", (b'{"everything":true}',))),
        key("d"),
    ]
    assert (
        "Redis cache orders: more than 3 invalidations are waiting for Redis; every entry of "
        "the cache will be dropped when it answers"
    ) in caplog.text


def test_an_overflow_without_announcements_announces_nothing() -> None:
    pending = Pending("orders", limit=2)
    store = Store()
    for name in "abc":
        pending.defer(key(name), store)
    assert pending.items() == [Invalidation("everything"), key("c")]


def test_the_queue_holds_ten_thousand_by_default() -> None:
    assert Pending("orders").limit == MAX_PENDING == 10_000


# -- what the log says -------------------------------------------------------------------


def test_the_first_deferred_invalidation_is_a_warning_the_next_ones_debug(
    pending: Pending, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store()
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        pending.defer(key("a"), store)
        pending.defer(Invalidation("tags", ("t1", "t2", "t3", "t4")), store)
    assert [(record.levelno, record.getMessage()) for record in caplog.records] == [
        (
            logging.WARNING,
            (
                "Redis cache orders could not apply an invalidation (key a); it is kept and "
                "applied as soon as Redis answers, and until then this process reads nothing "
                "from Redis"
            ),
        ),
        (logging.DEBUG, "Redis cache orders deferred tags t1, t2, t3, ..."),
    ]


@pytest.mark.parametrize(
    ("invalidation", "text"),
    [
        (Invalidation("everything"), "every entry"),
        (Invalidation("key", ("k",)), "key k"),
        (Invalidation("tags", ("a", "b", "c")), "tags a, b, c"),
        (Invalidation("tags", ("a", "b", "c", "d")), "tags a, b, c, ..."),
        (Invalidation("function", ("ns:f",)), "function ns:f"),
    ],
)
def test_an_invalidation_describes_itself_by_keys_and_tags(
    invalidation: Invalidation, text: str
) -> None:
    assert invalidation.describe() == text


def test_the_keys_a_tag_invalidation_dropped_are_announced_only_when_asked() -> None:
    announce = Invalidation("tags", ("t",), keyed=lambda keys: tuple(k.encode() for k in keys))
    assert announce.dropped(["a", "b"]) == (b"a", b"b")
    assert Invalidation("tags", ("t",)).dropped(["a"]) == ()


# -- the background thread ---------------------------------------------------------------


def test_a_thread_applies_the_queue_once_redis_answers_then_ends(pending: Pending) -> None:
    store = Store(background=True)
    pending.defer(key("a"), store)
    pending.defer(key("b"), store)
    [thread] = flushers("orders")  # one thread, however many invalidations wait
    assert thread.daemon
    store.up = True
    assert wait_until(lambda: not pending)
    assert store.applied == [key("a"), key("b")]
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_no_thread_without_a_client_it_could_use(pending: Pending) -> None:
    store = Store(background=False)
    pending.defer(key("a"), store)
    assert flushers("orders") == []


def test_a_thread_that_ended_is_replaced_when_invalidations_wait_again(pending: Pending) -> None:
    store = Store(background=True, up=True)
    pending.defer(key("a"), store)
    assert wait_until(lambda: not pending and not flushers("orders"))
    store.up = False
    pending.defer(key("b"), store)
    assert len(flushers("orders")) == 1
    store.up = True
    assert wait_until(lambda: not pending)
    assert store.applied == [key("a"), key("b")]


def test_closing_stops_the_thread_and_says_what_was_never_applied(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pending = Pending("orders")
    store = Store(background=True)
    pending.defer(key("a"), store)
    pending.defer(key("b"), store)
    [thread] = flushers("orders")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        pending.close()
    assert not thread.is_alive()
    assert (
        "Redis cache orders closed with 2 invalidations Redis never received; entries they "
        "drop may be served by other processes until they expire"
    ) in caplog.text
    store.up = True
    time.sleep(0.1)  # two of the thread's rounds: nothing applies after close
    assert store.applied == []


def test_closing_does_not_wait_long_for_a_flush_stuck_on_redis(pending: Pending) -> None:
    store = Store(background=True, up=True)
    inside, release = threading.Event(), threading.Event()

    def stuck(invalidation: Invalidation) -> None:
        inside.set()
        release.wait(timeout=10)  # say a Redis call that does not answer

    store.during = stuck
    pending.defer(key("a"), store)
    [thread] = flushers("orders")
    assert inside.wait(timeout=5)
    started = time.monotonic()
    pending.close()
    assert 0.9 < time.monotonic() - started < 1.5  # a second for the thread, no more
    release.set()
    thread.join(timeout=5)


def test_closing_an_empty_queue_says_nothing(
    pending: Pending, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        pending.close()
    assert caplog.records == []


def test_the_thread_ends_when_its_cache_is_gone(pending: Pending) -> None:
    store = Store(background=True)
    pending.defer(key("a"), store)
    [thread] = flushers("orders")
    del store
    gc.collect()
    thread.join(timeout=5)
    assert not thread.is_alive()  # the thread does not keep the cache alive either
    assert len(pending) == 1


def test_a_bug_while_flushing_is_logged_and_ends_the_thread(
    pending: Pending, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(background=True)

    def broken(invalidation: Invalidation) -> None:
        raise RuntimeError("bug")

    store.during = broken
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        pending.defer(key("a"), store)
        [thread] = flushers("orders")
        thread.join(timeout=5)
    assert not thread.is_alive()
    [record] = caplog.records
    assert record.getMessage() == "Redis cache orders: applying deferred invalidations failed"
    assert record.exc_info is not None
    assert pending.items() == [key("a")]


def test_a_forked_child_flushes_though_a_parent_thread_held_its_locks(pending: Pending) -> None:
    """After ``os.fork`` only the forking thread lives on: locks other threads held stay held."""
    store = Store(up=True)
    pending.defer(key("a"), store)
    # what a parent thread, mid-flush and mid-defer at the fork, leaves in the child
    assert pending._flushing.acquire(blocking=False)
    assert pending._guard.acquire(blocking=False)
    assert not pending.flush(store.apply, store.skip)  # busy, as it should be
    pending.after_fork()  # what the child does
    assert pending.flush(store.apply, store.skip)
    assert store.applied == [key("a")]
    pending.defer(key("b"), Store())
    assert pending.items() == [key("b")]
