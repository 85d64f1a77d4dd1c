"""TieredCache against a real Redis: the memory tier, its backstop, and invalidation by pub/sub."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from caching_flavours import Flavour

from buttress.caching import cached
from buttress.caching._backend import MISSING
from buttress.caching._redis import RedisCache
from buttress.caching._tiered import _KEYS_PER_MESSAGE, TieredCache
from buttress.errors import ConfigurationError, UnavailableError
from fault_proxy import FaultProxy
from peers import Peer

PEER = Path(__file__).with_name("cache_peer.py")
LOGGER = "buttress.caching"
NAME = "peer.f"  # the function the peer process caches


class Proxy(FaultProxy):
    """A `FaultProxy` whose `cut` closes the listener first.

    `FaultProxy.cut` shuts the connections down before the listener, and a
    client that reconnects at once (a pub/sub listener does) can slip a new
    connection in between, surviving the cut.
    """

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        super().cut()


@pytest.fixture
def make(redis_url: str, namespace: str) -> Iterator[Callable[..., TieredCache]]:
    made: list[TieredCache] = []

    def make(url: str = redis_url, **options: Any) -> TieredCache:
        retry_after = options.pop("retry_after_failure", 1.0)
        tiered = TieredCache(
            RedisCache(url, namespace=namespace, retry_after_failure=retry_after), **options
        )
        made.append(tiered)
        return tiered

    yield make
    for tiered in made:
        tiered.close()


@pytest.fixture
def peer(redis_url: str, namespace: str) -> Iterator[Peer]:
    other = Peer(PEER, redis_url, namespace)
    yield other
    other.stop()


def key(n: int) -> tuple[Any, ...]:
    return (object(), n, int)


def wait_until(condition: Callable[[], bool], seconds: float = 2.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def listening(tiered: TieredCache) -> TieredCache:
    """Start the listener and wait for its subscription (bounded)."""
    tiered.start()
    assert wait_until(lambda: tiered.listening, 5)
    return tiered


def expiry_of(tiered: TieredCache, text: str) -> float:
    """Seconds the memory copy under ``text`` has left."""
    return tiered.memory.entries[(text,)][1] - time.monotonic()


# -- the memory tier ----------------------------------------------------------------------


def test_a_read_from_redis_is_copied_into_memory_for_at_most_local_ttl(
    make: Callable[..., TieredCache],
) -> None:
    writer, reader = make(local_ttl=5.0), make(local_ttl=5.0)
    view, other = writer.bind(NAME, int), reader.bind(NAME, int)
    assert (other.local, other.shared) == (False, True)
    view.set(key(1), 10, 60, ())
    assert other.peek(key(1)) is MISSING  # not yet in this process's memory
    assert other.get(key(1)) == 10  # from Redis...
    assert other.peek(key(1)) == 10  # ... and now from memory, without I/O
    assert 0 < expiry_of(reader, other.l2.text(key(1))) <= 5.0
    view.set(key(2), 20, 1.0, ())  # expires in Redis before the backstop
    assert other.get(key(2)) == 20
    assert 0 < expiry_of(reader, other.l2.text(key(2))) <= 1.0
    view.set(key(3), 30, None, ())  # never expires in Redis: the backstop still holds
    assert other.get(key(3)) == 30
    assert 0 < expiry_of(reader, other.l2.text(key(3))) <= 5.0


def test_the_memory_copy_expires_after_local_ttl_while_redis_keeps_it(
    make: Callable[..., TieredCache],
) -> None:
    tiered = make(local_ttl=0.1)
    view = tiered.bind(NAME, int)
    view.set(key(1), 1, 60, ())
    assert view.peek(key(1)) == 1
    assert wait_until(lambda: view.peek(key(1)) is MISSING)  # the backstop
    assert view.get(key(1)) == 1  # Redis still has it: copied again
    assert view.peek(key(1)) == 1


def test_writes_and_deletes_reach_both_tiers(make: Callable[..., TieredCache]) -> None:
    tiered = make()
    view = tiered.bind(NAME, int)
    view.set(key(1), 1, 60, ("t",))
    assert view.peek(key(1)) == 1
    assert view.l2.get(key(1)) == 1
    view.delete(key(1))
    assert view.peek(key(1)) is MISSING
    assert view.l2.get(key(1)) is MISSING
    view.set(key(2), 2, 60, ("t",))
    tiered.invalidate_tags("t")
    assert (view.peek(key(2)), view.l2.get(key(2))) == (MISSING, MISSING)
    view.set(key(3), 3, 60, ())
    view.clear()
    assert (view.peek(key(3)), view.l2.get(key(3))) == (MISSING, MISSING)
    view.set(key(4), 4, 60, ())
    tiered.clear()
    assert (view.peek(key(4)), view.l2.get(key(4))) == (MISSING, MISSING)
    assert tiered.counts() == (None, None)


def test_an_invalidation_during_a_read_keeps_the_stale_value_out_of_memory(
    make: Callable[..., TieredCache],
) -> None:
    tiered = make()
    view = tiered.bind(NAME, int)
    text = view.l2.text(key(1))
    generation = tiered.generation  # a read starts...
    tiered.drop_keys([text])  # ... an invalidation arrives meanwhile...
    tiered.fill(text, 1, None, generation)  # ... and the read's value comes back
    assert view.peek(key(1)) is MISSING
    tiered.fill(text, 1, None, tiered.generation)
    assert view.peek(key(1)) == 1


def test_a_lease_holders_value_is_copied_into_memory(make: Callable[..., TieredCache]) -> None:
    holder, waiter = make().bind(NAME, int), make().bind(NAME, int)
    token = holder.acquire(key(1))
    assert token
    assert waiter.acquire(key(1)) is None
    holder.set(key(1), 5, 60, ())
    holder.release(key(1), token)
    assert waiter.wait(key(1)) == 5
    assert waiter.peek(key(1)) == 5


def test_cached_function_hits_memory_first(make: Callable[..., TieredCache]) -> None:
    tiered = make()
    calls: list[int] = []

    @cached(cache=tiered, ttl=60, name="tests.tiered_cached")
    def square(n: int) -> int:
        calls.append(n)
        return n * n

    assert square(3) == 9
    assert square(3) == 9
    assert calls == [3]
    square.invalidate(3)
    assert square(3) == 9
    assert calls == [3, 3]


@pytest.mark.asyncio
async def test_async_twins(make: Callable[..., TieredCache]) -> None:
    tiered = make()
    view = tiered.bind(NAME, int)
    await view.aset(key(1), 1, 60, ("t",))
    assert view.peek(key(1)) == 1
    tiered.memory.clear()
    assert await view.aget(key(1)) == 1  # from Redis, copied back
    assert view.peek(key(1)) == 1
    await view.adelete(key(1))
    assert await view.aget(key(1)) is MISSING
    await view.aset(key(2), 2, 60, ("t",))
    await tiered.ainvalidate_tags("t")
    assert await view.aget(key(2)) is MISSING
    await view.aset(key(3), 3, 60, ())
    await view.aclear()
    assert await view.aget(key(3)) is MISSING
    await view.aset(key(4), 4, 60, ())
    await tiered.aclear()
    assert await view.aget(key(4)) is MISSING
    token = await view.aacquire(key(5))
    assert token
    await view.aset(key(5), 5, 60, ())
    await view.arelease(key(5), token)
    tiered.memory.clear()
    assert await view.await_value(key(5)) == 5
    await tiered.aclose()
    assert not tiered.listening


# -- invalidation across processes ------------------------------------------------------


def test_the_default_protocol_is_used(make: Callable[..., TieredCache]) -> None:
    tiered = make()
    kwargs = tiered.redis.sync_client().connection_pool.connection_kwargs
    assert kwargs.get("protocol") is None  # redis-py's own default, not forced


def test_a_delete_in_another_process_drops_the_memory_copy(
    make: Callable[..., TieredCache], peer: Peer
) -> None:
    here = listening(make(local_ttl=30.0))
    view = here.bind(NAME, int)
    view.set(key(1), 10, 60, ())
    assert view.peek(key(1)) == 10
    assert peer.ask("get 1") == "10"
    assert peer.ask("delete 1") == "ok"
    assert wait_until(lambda: view.peek(key(1)) is MISSING)
    assert view.get(key(1)) is MISSING


def test_a_delete_here_drops_the_other_processs_copy(
    make: Callable[..., TieredCache], peer: Peer
) -> None:
    here = listening(make(local_ttl=30.0))
    view = here.bind(NAME, int)
    view.set(key(2), 20, 60, ())
    assert peer.ask("get 2") == "20"
    assert peer.ask("peek 2") == "20"
    view.delete(key(2))
    assert wait_until(lambda: peer.ask("peek 2") == "MISSING")


def test_tags_invalidated_in_another_process_drop_copies_read_from_redis(
    make: Callable[..., TieredCache], peer: Peer
) -> None:
    here = listening(make(local_ttl=30.0))
    view = here.bind(NAME, int)
    assert peer.ask("set 3 30 red") == "ok"
    assert peer.ask("set 4 40 blue") == "ok"
    assert view.get(key(3)) == 30  # copied without its tags
    assert view.get(key(4)) == 40
    assert peer.ask("tags red") == "ok"
    assert wait_until(lambda: view.peek(key(3)) is MISSING)
    assert view.peek(key(4)) == 40  # another tag: kept


def test_clears_in_another_process_drop_copies(
    make: Callable[..., TieredCache], peer: Peer
) -> None:
    here = listening(make(local_ttl=30.0))
    view = here.bind(NAME, int)
    stranger = here.bind("tests.stranger", int)
    stranger.set(key(1), 1, 60, ())
    assert peer.ask("set 5 50") == "ok"
    assert view.get(key(5)) == 50
    assert peer.ask("clearfn") == "ok"  # the peer's function only
    assert wait_until(lambda: view.peek(key(5)) is MISSING)
    assert stranger.peek(key(1)) == 1
    assert peer.ask("clear") == "ok"  # everything
    assert wait_until(lambda: stranger.peek(key(1)) is MISSING)


# -- trouble ----------------------------------------------------------------------------


def test_memory_keeps_serving_when_redis_dies_and_is_cleared_on_resubscribe(
    make: Callable[..., TieredCache], redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    parts = urlsplit(redis_url)
    with Proxy(parts.hostname or "127.0.0.1", parts.port or 6379) as proxy:
        tiered = listening(make(proxy.url, local_ttl=30.0, retry_after_failure=0.05))
        view = tiered.bind(NAME, int)
        view.set(key(1), 1, 60, ())
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            proxy.cut()
            assert wait_until(lambda: tiered.listening is False)
            assert view.get(key(1)) == 1  # memory keeps serving
            assert view.peek(key(1)) == 1
            view.set(key(2), 2, 60, ())  # Redis: a no-op; memory: kept for local_ttl at most
            assert view.peek(key(2)) == 2
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
        proxy.restore()
        assert wait_until(lambda: tiered.listening, 5)
        # Announcements may have been missed meanwhile: the memory tier starts afresh.
        assert view.peek(key(1)) is MISSING
        assert view.get(key(1)) == 1  # from Redis again
        assert view.get(key(2)) is MISSING  # never reached Redis
        tiered.close()  # before the proxy goes: its listener would reconnect through it


def test_close_stops_the_listener_and_use_starts_it_again(
    make: Callable[..., TieredCache],
) -> None:
    tiered = listening(make())
    thread = tiered._thread
    assert thread is not None
    assert thread.daemon
    assert thread.name == f"buttress-cache-listener-{tiered.channel}"
    tiered.close()
    assert not thread.is_alive()
    assert tiered.listening is False
    view = tiered.bind(NAME, int)
    assert view.get(key(1)) is MISSING  # a use: listening again
    assert wait_until(lambda: tiered.listening, 5)


def test_a_forked_child_starts_its_own_listener(make: Callable[..., TieredCache]) -> None:
    tiered = listening(make())
    tiered.after_fork()  # what os.register_at_fork runs in the child
    assert tiered._thread is None
    assert not tiered.listening
    tiered.start()
    assert wait_until(lambda: tiered.listening, 5)


def test_bad_arguments_are_configuration_errors(redis_url: str) -> None:
    shared = RedisCache(redis_url)
    with pytest.raises(ConfigurationError, match="local_ttl"):
        TieredCache(shared, local_ttl=0)
    with pytest.raises(ConfigurationError, match="channel"):
        TieredCache(shared, channel="")
    with pytest.raises(ConfigurationError, match="maxsize"):
        TieredCache(shared, maxsize=0)
    with pytest.raises(ConfigurationError, match="RedisCache"):
        TieredCache("redis://127.0.0.1")  # type: ignore[arg-type]
    async_only = RedisCache(async_client=redis.asyncio.Redis.from_url(redis_url))
    with pytest.raises(ConfigurationError, match="sync client"):
        TieredCache(async_only)


# -- what each invalidation drops, here and in another cache on the channel ---------------


@pytest.fixture
def pair(make: Callable[..., TieredCache]) -> tuple[TieredCache, TieredCache]:
    """Two listening caches on one namespace: announcements go from either to the other."""
    return listening(make(local_ttl=30.0)), listening(make(local_ttl=30.0))


def either(flavour: Flavour, sync: Callable[..., Any], asynchronous: Callable[..., Any]) -> Any:
    """The method matching the flavour."""
    return asynchronous if flavour.is_async else sync


def test_a_tag_invalidation_drops_the_tagged_copies_everywhere_and_keeps_the_rest(
    pair: tuple[TieredCache, TieredCache], flavour: Flavour
) -> None:
    here, there = pair
    view, other = here.bind(NAME, int), there.bind(NAME, int)
    view.set(key(1), 1, 60, ("red",))
    view.set(key(2), 2, 60, ("blue",))
    view.set(key(3), 3, 60, ())
    other.set(key(4), 4, 60, ("red",))  # written over there...
    assert view.get(key(4)) == 4  # ... and copied here without its tags
    assert [other.get(key(n)) for n in (1, 2, 3)] == [1, 2, 3]  # copied into there's memory
    flavour.call(either(flavour, here.invalidate_tags, here.ainvalidate_tags), "red")
    assert [view.peek(key(n)) for n in (1, 2, 3, 4)] == [MISSING, 2, 3, MISSING]
    assert [view.l2.get(key(n)) for n in (1, 2, 3)] == [MISSING, 2, 3]
    assert wait_until(lambda: other.peek(key(1)) is MISSING)
    assert [other.peek(key(n)) for n in (2, 3)] == [2, 3]


def test_a_tag_invalidation_of_many_keys_announces_each_once_in_bounded_messages(
    pair: tuple[TieredCache, TieredCache], redis_url: str
) -> None:
    here, there = pair
    view, other = here.bind(NAME, int), there.bind(NAME, int)
    count = 2 * _KEYS_PER_MESSAGE + 1
    keys = [key(n) for n in range(count)]
    texts = [view.l2.text(k) for k in keys]
    for n, k in enumerate(keys):
        view.set(k, n, 60, ("many",))
    for text in texts[:: _KEYS_PER_MESSAGE // 2] + texts[-1:]:  # a few copies over there
        there.fill(text, 0, None, there.generation)
    client = redis.Redis.from_url(redis_url)
    subscriber = client.pubsub(ignore_subscribe_messages=True)
    subscriber.subscribe(here.channel)
    try:
        assert subscriber.get_message(timeout=1) is None  # subscribed
        here.invalidate_tags("many")
        bodies = []
        while (message := subscriber.get_message(timeout=1)) is not None:
            bodies.append(json.loads(message["data"]))
    finally:
        subscriber.close()
        client.close()
    assert all(len(body["keys"]) <= _KEYS_PER_MESSAGE for body in bodies)
    assert all(body["tags"] == ["many"] for body in bodies)
    announced = [text for body in bodies for text in body["keys"]]
    assert sorted(announced) == sorted(texts)  # each key once
    assert len(bodies) == 3
    assert wait_until(lambda: not there.memory.entries)
    assert all(other.peek(k) is MISSING for k in keys[:: _KEYS_PER_MESSAGE // 2])


def test_a_function_clear_drops_that_functions_copies_everywhere_and_no_others(
    pair: tuple[TieredCache, TieredCache], flavour: Flavour
) -> None:
    here, there = pair
    # names of one length: another function's keys have "(" where the cleared one's prefix ends
    names = ("tests.fa", "tests.fb")
    views = [here.bind(name, int) for name in names]
    others = [there.bind(name, int) for name in names]
    for n, view in enumerate(views):
        view.set(key(1), n, 60, ())
    assert [other.get(key(1)) for other in others] == [0, 1]
    flavour.call(either(flavour, views[0].clear, views[0].aclear))
    assert [view.peek(key(1)) for view in views] == [MISSING, 1]
    assert [view.l2.get(key(1)) for view in views] == [MISSING, 1]
    assert wait_until(lambda: others[0].peek(key(1)) is MISSING)
    assert others[1].peek(key(1)) == 1


def test_a_clear_drops_every_copy_everywhere(
    pair: tuple[TieredCache, TieredCache], flavour: Flavour
) -> None:
    here, there = pair
    view, other = here.bind(NAME, int), there.bind(NAME, int)
    view.set(key(1), 1, 60, ("red",))
    view.set(key(2), 2, 60, ())
    assert [other.get(key(n)) for n in (1, 2)] == [1, 2]
    flavour.call(either(flavour, here.clear, here.aclear))
    assert [view.peek(key(n)) for n in (1, 2)] == [MISSING, MISSING]
    assert [view.l2.get(key(n)) for n in (1, 2)] == [MISSING, MISSING]
    assert wait_until(lambda: not there.memory.entries)


def test_a_delete_drops_the_copy_everywhere(
    pair: tuple[TieredCache, TieredCache], flavour: Flavour
) -> None:
    here, there = pair
    view, other = here.bind(NAME, int), there.bind(NAME, int)
    view.set(key(1), 1, 60, ())
    view.set(key(2), 2, 60, ())
    assert [other.get(key(n)) for n in (1, 2)] == [1, 2]
    flavour.call(either(flavour, view.delete, view.adelete), key(1))
    assert view.peek(key(1)) is MISSING
    assert view.l2.get(key(1)) is MISSING
    assert wait_until(lambda: other.peek(key(1)) is MISSING)
    assert other.peek(key(2)) == 2


def test_an_entry_redis_refused_is_dropped_by_its_tags_here_and_elsewhere(
    pair: tuple[TieredCache, TieredCache], flavour: Flavour
) -> None:
    """A value Redis cannot store lives in memory only; its tags still drop it everywhere."""
    here, there = pair
    calls: list[str] = []

    def pair_of(n: int) -> object:  # a tuple: plain JSON would read it back as a list
        calls.append("computed")
        return (n, n)

    functions = [
        cached(cache=cache, ttl=60, tags=["red"], name="tests.refused")(flavour.twin(pair_of))
        for cache in (here, there)
    ]
    for function in functions:
        assert flavour.call(function, 1) == (1, 1)
        assert flavour.call(function, 1) == (1, 1)  # from memory
    assert len(calls) == 2  # each cache computed it: Redis did not share it
    flavour.call(either(flavour, here.invalidate_tags, here.ainvalidate_tags), "red")
    assert here.memory.entries == {}
    assert wait_until(lambda: not there.memory.entries)
    assert flavour.call(functions[0], 1) == (1, 1)
    assert len(calls) == 3


def test_a_write_redis_refused_is_dropped_by_its_tags(
    make: Callable[..., TieredCache], flavour: Flavour
) -> None:
    tiered = make()
    view = tiered.bind(NAME, object)
    flavour.call(either(flavour, view.set, view.aset), key(1), (1, 2), 60, ("red",))
    assert view.peek(key(1)) == (1, 2)  # in memory only: JSON would read a list back
    assert view.l2.get(key(1)) is MISSING
    assert flavour.call(either(flavour, view.get, view.aget), key(1)) == (1, 2)
    flavour.call(either(flavour, view.set, view.aset), key(2), [3], 60, ())
    tiered.invalidate_tags("red")
    assert view.peek(key(1)) is MISSING
    assert view.peek(key(2)) == [3]


# -- memory copies: what they hold and how long ---------------------------------------------


def test_a_write_lives_in_memory_no_longer_than_in_redis(
    make: Callable[..., TieredCache], flavour: Flavour
) -> None:
    tiered = make(local_ttl=30.0)
    view = tiered.bind(NAME, int)
    text = view.l2.text(key(1))
    flavour.call(either(flavour, view.set, view.aset), key(1), 1, 0.5, ())
    assert view.peek(key(1)) == 1
    assert 0 < expiry_of(tiered, text) <= 0.5
    value, left = view.l2.fetch_text(text)
    assert value == 1
    assert left is not None
    assert 0 < left <= 0.5


def test_a_computed_value_is_kept_in_memory_for_its_ttl_at_most(
    make: Callable[..., TieredCache], flavour: Flavour
) -> None:
    tiered = make(local_ttl=30.0)
    calls: list[int] = []

    def square(n: int) -> int:
        calls.append(n)
        return n * n

    function = cached(cache=tiered, ttl=0.5, name=NAME)(flavour.twin(square))
    assert flavour.call(function, 3) == 9
    [(text,)] = tiered.memory.entries  # stored here by the miss itself
    assert tiered.memory.entries[(text,)][0] == 9
    assert 0 < expiry_of(tiered, text) <= 0.5
    assert flavour.call(function, 3) == 9
    assert calls == [3]


def test_a_value_found_when_a_miss_begins_is_copied_into_memory(
    make: Callable[..., TieredCache], flavour: Flavour
) -> None:
    writer, reader = make(local_ttl=30.0), make(local_ttl=30.0)
    view, other = writer.bind(NAME, int), reader.bind(NAME, int)
    view.set(key(1), 7, 0.5, ())
    begin, end = either(flavour, other.begin, other.abegin), either(flavour, other.end, other.aend)
    lease = flavour.call(begin, key(1), ())
    try:
        assert lease.value == 7
    finally:
        flavour.call(end, key(1), lease)
    assert other.peek(key(1)) == 7
    assert 0 < expiry_of(reader, other.l2.text(key(1))) <= 0.5


def test_a_waited_for_value_is_copied_into_memory_for_its_ttl_at_most(
    make: Callable[..., TieredCache], flavour: Flavour
) -> None:
    holder, waiter = make(local_ttl=30.0).bind(NAME, int), make(local_ttl=30.0).bind(NAME, int)
    token = holder.acquire(key(1))
    assert token
    holder.set(key(1), 5, 0.5, ())
    holder.release(key(1), token)
    wait = either(flavour, waiter.wait, waiter.await_value)
    assert flavour.call(wait, key(1)) == 5
    assert waiter.peek(key(1)) == 5
    assert 0 < expiry_of(waiter.tiered, waiter.l2.text(key(1))) <= 0.5


def test_a_released_lease_can_be_taken_again(
    make: Callable[..., TieredCache], flavour: Flavour
) -> None:
    view = make().bind(NAME, int)
    acquire = either(flavour, view.acquire, view.aacquire)
    release = either(flavour, view.release, view.arelease)
    token = flavour.call(acquire, key(1))
    assert token
    assert flavour.call(acquire, key(1)) is None  # held
    flavour.call(release, key(1), token)
    again = flavour.call(acquire, key(1))
    assert again
    flavour.call(release, key(1), again)


@pytest.mark.parametrize("drop", ["keys", "function", "everything"])
def test_every_invalidation_keeps_a_read_that_began_before_it_out_of_memory(
    make: Callable[..., TieredCache], drop: str
) -> None:
    tiered = make()
    view = tiered.bind(NAME, int)
    text = view.l2.text(key(1))
    invalidate = {
        "keys": lambda: tiered.drop_keys([text]),
        "function": lambda: tiered.drop_function(view.l2.prefix),
        "everything": tiered.drop_everything,
    }[drop]
    for _ in range(3):  # however many came before
        generation = tiered.generation
        invalidate()
        tiered.fill(text, 1, None, generation)
        assert view.peek(key(1)) is MISSING


def test_a_forked_child_drops_its_inherited_copies_when_it_subscribes(
    make: Callable[..., TieredCache],
) -> None:
    tiered = listening(make(local_ttl=30.0))
    view = tiered.bind(NAME, int)
    view.set(key(1), 1, 60, ())
    tiered.after_fork()  # the parent's copies may miss announcements made before the child listens
    assert tiered.listening is False
    assert view.peek(key(1)) == 1  # served until the child subscribes
    listening(tiered)
    assert view.peek(key(1)) is MISSING
    assert view.get(key(1)) == 1  # from Redis again


@pytest.fixture
def refused_url() -> Iterator[str]:
    """The URL of a port that refuses connections (bound, never listening)."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        yield f"redis://127.0.0.1:{closed.getsockname()[1]}/0"


def test_a_strict_invalidation_with_redis_unreachable_raises_and_drops_the_copy_at_once(
    make: Callable[..., TieredCache], refused_url: str, flavour: Flavour
) -> None:
    tiered = make(refused_url, retry_after_failure=0.05)
    calls: list[int] = []

    def square(n: int) -> int:
        calls.append(n)
        return n * n

    function = cached(cache=tiered, ttl=60, name=NAME)(flavour.twin(square))
    assert flavour.call(function, 3) == 9  # Redis refused: computed, kept in memory
    assert flavour.call(function, 3) == 9
    assert calls == [3]
    strict = either(flavour, function.invalidate_strict, function.ainvalidate_strict)
    with pytest.raises(UnavailableError, match="unreachable"):
        flavour.call(strict, 3)
    assert flavour.call(function, 3) == 9
    assert calls == [3, 3]


def test_hits_served_from_memory_keep_their_entries_recent(
    make: Callable[..., TieredCache], flavour: Flavour
) -> None:
    tiered = make(maxsize=2, local_ttl=30.0)
    calls: list[int] = []

    def square(n: int) -> int:
        calls.append(n)
        return n * n

    function = cached(cache=tiered, ttl=60, name=NAME)(flavour.twin(square))
    for n in (1, 2):
        assert flavour.call(function, n) == n * n
    for _ in range(100):  # hits on 1 only (the policy learns of a sample of them)
        assert flavour.call(function, 1) == 1
    assert flavour.call(function, 3) == 9  # evicts the least recently used: 2
    assert sorted(value for value, _ in tiered.memory.entries.values()) == [1, 9]
    assert calls == [1, 2, 3]


def test_a_read_copies_a_value_for_no_longer_than_redis_keeps_it(
    make: Callable[..., TieredCache], flavour: Flavour
) -> None:
    writer, reader = make(local_ttl=30.0), make(local_ttl=30.0)
    view, other = writer.bind(NAME, int), reader.bind(NAME, int)
    view.set(key(1), 1, 0.5, ())
    assert flavour.call(either(flavour, other.get, other.aget), key(1)) == 1
    assert 0 < expiry_of(reader, other.l2.text(key(1))) <= 0.5


# -- the channel --------------------------------------------------------------------------


def test_a_cache_ignores_its_own_announcements(pair: tuple[TieredCache, TieredCache]) -> None:
    here, there = pair
    view, other = here.bind(NAME, int), there.bind(NAME, int)
    here.clear()  # announced: the other cache drops everything, this one already has
    view.set(key(1), 1, 60, ())  # a copy made after the clear
    view.set(key(2), 2, 60, ())
    other.delete(key(2))  # announced after the clear: heard after it
    assert wait_until(lambda: view.peek(key(2)) is MISSING)
    assert view.peek(key(1)) == 1  # its own clear, heard again, dropped nothing


@pytest.mark.parametrize(
    "stray",
    [
        b"not json",
        b"[1, 2]",
        b'"text"',
        b"17",
        b'{"o": "stranger"}',
        b'{"o": "stranger", "keys": "abc", "tags": 5}',
        b'{"o": "stranger", "keys": [1, null], "tags": [2, null]}',
        b'{"o": "stranger", "function": 3}',
    ],
)
def test_stray_messages_on_the_channel_change_nothing(
    pair: tuple[TieredCache, TieredCache], redis_url: str, stray: bytes
) -> None:
    here, there = pair
    view, other = here.bind(NAME, int), there.bind(NAME, int)
    view.set(key(1), 1, 60, ())
    view.set(key(2), 2, 60, ())
    thread = here._thread
    client = redis.Redis.from_url(redis_url)
    try:
        client.publish(here.channel, stray)
    finally:
        client.close()
    other.delete(key(2))  # announced after the stray message: heard after it
    assert wait_until(lambda: view.peek(key(2)) is MISSING)
    assert view.peek(key(1)) == 1
    assert here.listening
    assert here._thread is thread


# -- construction ---------------------------------------------------------------------------


def test_the_defaults(redis_url: str, namespace: str) -> None:
    shared = RedisCache(redis_url, namespace=namespace)
    tiered = TieredCache(shared)
    try:
        assert (tiered.memory.maxsize, tiered.local_ttl) == (1024, 5.0)
        assert tiered.channel == f"{namespace}:1:invalidate"
        assert tiered.listening is False  # nothing used it yet
        assert repr(tiered) == (
            f"TieredCache({shared!r}, maxsize=1024, local_ttl=5.0, "
            f"channel='{namespace}:1:invalidate')"
        )
    finally:
        tiered.close()


def test_every_problem_with_the_arguments_is_named_at_once(redis_url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        TieredCache(redis_url, local_ttl=True, channel=5)  # type: ignore[arg-type]
    assert str(caught.value).startswith("invalid TieredCache:\n")
    local_ttl = (
        "local_ttl must be a positive number of seconds (the longest a memory copy may live)"
    )
    assert caught.value.problems == (
        "redis must be a RedisCache, got str",
        f"{local_ttl}, got True",
        "channel must be a non-empty string or None, got 5",
    )
    async_only = RedisCache(async_client=redis.asyncio.Redis.from_url(redis_url))
    with pytest.raises(ConfigurationError) as caught:
        TieredCache(async_only, local_ttl=math.inf)
    sync_client = (
        "the RedisCache was given only async_client=; the invalidation listener needs a sync "
        "client: pass client=redis.Redis(...) too, or url="
    )
    assert caught.value.problems == (sync_client, f"{local_ttl}, got inf")


# -- the listener ---------------------------------------------------------------------------


def test_a_listener_started_while_redis_is_left_alone_subscribes_once_the_pause_ends(
    make: Callable[..., TieredCache], redis_url: str
) -> None:
    parts = urlsplit(redis_url)
    with Proxy(parts.hostname or "127.0.0.1", parts.port or 6379) as proxy:
        tiered = make(proxy.url, retry_after_failure=0.5)
        view = tiered.bind(NAME, int)
        proxy.cut()
        assert view.l2.get(key(1)) is MISSING  # fails: Redis is left alone for a while
        proxy.restore()
        tiered.start()  # within that while
        assert wait_until(lambda: tiered.listening, 5)
        tiered.close()  # before the proxy goes


def test_an_unexpected_error_in_the_listener_is_logged_and_listening_resumes(
    make: Callable[..., TieredCache],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tiered = listening(make(local_ttl=30.0))
    view = tiered.bind(NAME, int)
    receive = tiered.receive
    failed: list[dict[str, Any]] = []

    def failing_once(message: dict[str, Any]) -> None:
        if message.get("type") == "message" and not failed:
            failed.append(message)
            raise RuntimeError("a bug")
        receive(message)

    monkeypatch.setattr(tiered, "receive", failing_once)
    view.set(key(1), 1, 60, ())
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        make().bind(NAME, int).delete(key(2))  # its announcement meets the bug
        assert wait_until(lambda: tiered.listening is False)
        assert wait_until(lambda: tiered.listening, 5)
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert f"listener on {tiered.channel} failed; restarting it" in record.getMessage()
    assert view.peek(key(1)) is MISSING  # announcements may have been missed meanwhile


def test_a_cache_dropped_without_close_stops_its_listener(redis_url: str, namespace: str) -> None:
    shared = RedisCache(redis_url, namespace=namespace)
    tiered = listening(TieredCache(shared))
    thread = tiered._thread
    assert thread is not None
    del tiered
    gc.collect()
    thread.join(5)
    assert not thread.is_alive()
    shared.close()


def test_memory_copies_outlive_a_quiet_channel(make: Callable[..., TieredCache]) -> None:
    tiered = listening(make(local_ttl=30.0))
    view = tiered.bind(NAME, int)
    view.set(key(1), 1, 60, ())
    time.sleep(0.6)  # a few of the listener's polls with nothing announced
    assert view.peek(key(1)) == 1
