"""TieredCache against a real Redis: the memory tier, its backstop, and invalidation by pub/sub."""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from buttress.caching import cached
from buttress.caching._backend import MISSING
from buttress.caching._redis import RedisCache
from buttress.caching._tiered import TieredCache
from buttress.errors import ConfigurationError
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
            assert wait_until(lambda: not tiered.listening)
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
    tiered.close()
    assert not thread.is_alive()
    assert not tiered.listening
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
