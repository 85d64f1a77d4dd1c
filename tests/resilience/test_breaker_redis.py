"""Breaker state shared between two processes through a real Redis (pybreaker's storage)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pybreaker
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from buttress.errors import CircuitOpenError
from buttress.resilience import CircuitBreaker, CircuitState
from fault_proxy import FaultProxy
from peers import Peer
from redis_server import PrivateRedis, private_redis

__all__ = ["private_redis"]  # the fixture, imported to be used here

PEER = Path(__file__).with_name("breaker_peer.py")


def shared_breaker(redis_url: str, namespace: str) -> CircuitBreaker:
    storage = pybreaker.CircuitRedisStorage(
        pybreaker.STATE_CLOSED, redis.Redis.from_url(redis_url), namespace=namespace
    )
    return CircuitBreaker(
        namespace, fail_max=3, reset_timeout=30.0, storage=storage, sync_interval=0
    )


def broken() -> None:
    raise ConnectionError("down")


def test_one_process_trips_the_breaker_the_other_sees_it_within_the_interval(
    redis_url: str, namespace: str
) -> None:
    here = shared_breaker(redis_url, namespace)
    peer = Peer(PEER, redis_url, namespace, "5.0")
    try:
        assert peer.ask("call") == "ok"  # the peer has read the shared state
        for _ in range(3):
            with pytest.raises(ConnectionError):
                here.call(broken)
        assert here.state is CircuitState.OPEN
        # The peer trusts its copy until its sync interval is over: no round trip per call.
        assert peer.ask("call") == "ok"
        assert peer.ask("advance 5") == "advanced"
        assert peer.ask("call") == "open"
        assert peer.ask("state").startswith("open")
    finally:
        peer.stop()


def test_failures_add_up_across_processes_and_a_new_one_resets_nothing(
    redis_url: str, namespace: str
) -> None:
    here = shared_breaker(redis_url, namespace)
    with pytest.raises(ConnectionError):
        here.call(broken)
    peer = Peer(PEER, redis_url, namespace, "0")  # a process starting later
    try:
        assert peer.ask("state") == "closed 1"  # it joined the count, not reset it
        assert peer.ask("fail") == "failed"
        with pytest.raises(ConnectionError):
            here.call(broken)  # the third failure, across both processes
        assert here.state is CircuitState.OPEN
        with pytest.raises(CircuitOpenError):
            here.call(lambda: None)
        assert peer.ask("call") == "open"
    finally:
        peer.stop()


def test_a_redis_outage_leaves_the_breaker_working_locally(
    redis_url: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    parts = urlsplit(redis_url)
    with FaultProxy(parts.hostname or "127.0.0.1", parts.port or 6379) as proxy:
        # As the guide advises: short timeouts and no client-side retries.
        client = redis.Redis(
            host="127.0.0.1",
            port=proxy.port,
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
        )
        storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, client, namespace=namespace)
        breaker = CircuitBreaker(namespace, fail_max=2, storage=storage, sync_interval=0)
        assert breaker.call(lambda: "ok") == "ok"
        proxy.cut()  # Redis is gone
        with caplog.at_level(logging.WARNING, logger="buttress.resilience"):
            assert breaker.call(lambda: "still ok") == "still ok"
            for _ in range(2):
                with pytest.raises(ConnectionError):
                    breaker.call(broken)
            assert breaker.state is CircuitState.OPEN  # counted locally
            with pytest.raises(CircuitOpenError):
                breaker.call(lambda: None)  # Redis answering "closed" on error does not close it
        warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(warnings) == 1  # said once, not on every call
        proxy.restore()  # Redis is back: what happened meanwhile is written there
        assert breaker.state is CircuitState.OPEN
        assert storage.state == pybreaker.STATE_OPEN
        assert storage.opened_at is not None
        proxy.cut()
        breaker.close()  # a change with no failure to reveal the outage
        proxy.restore()
        assert breaker.state is CircuitState.CLOSED
        assert (storage.state, storage.counter) == (pybreaker.STATE_CLOSED, 0)
        client.close()


class SlowProxy(FaultProxy):
    """A `FaultProxy` that holds the traffic back while ``flowing`` is clear: a slow Redis."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.flowing = threading.Event()
        self.flowing.set()
        super().__init__(target_host, target_port)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self.flowing.wait(10)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def test_a_slow_redis_does_not_stall_the_event_loop_of_an_async_caller(
    redis_url: str, namespace: str
) -> None:
    parts = urlsplit(redis_url)
    with SlowProxy(parts.hostname or "127.0.0.1", parts.port or 6379) as proxy:
        client = redis.Redis(host="127.0.0.1", port=proxy.port, socket_timeout=5)
        storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, client, namespace=namespace)
        breaker = CircuitBreaker(namespace, fail_max=1, storage=storage, sync_interval=0)
        ticks = 0

        async def ok() -> str:
            return "ok"

        @breaker
        async def down() -> None:
            raise ConnectionError("down")

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        async def main() -> None:
            assert await breaker.acall(ok) == "ok"  # connected, and synced once
            ticker = asyncio.create_task(tick())
            await asyncio.sleep(0)
            proxy.flowing.clear()  # Redis answers nothing for 0.3 s: the sync waits for it
            release = threading.Timer(0.3, proxy.flowing.set)
            release.start()
            with pytest.raises(ConnectionError):
                await down()  # read, count and write the opening, off the loop
            ticker.cancel()
            release.join()

        asyncio.run(main())
        assert ticks >= 10  # about 30 while Redis holds its answers; none if the loop waited
        assert breaker.state is CircuitState.OPEN
        assert storage.state == pybreaker.STATE_OPEN
        client.close()


def test_a_breaker_sharing_through_redis_can_be_made_and_used_while_redis_is_down(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """Made with a client while the server is killed; joins the shared state when it returns."""
    client = private_redis.client(timeout=0.3, retry=Retry(NoBackoff(), 0))
    private_redis.kill()
    name = "payments-while-redis-is-down"
    with caplog.at_level(logging.WARNING, logger="buttress.resilience"):
        breaker = CircuitBreaker(name, fail_max=2, storage=client, sync_interval=0)
        assert breaker.call(lambda: "ok") == "ok"  # on its local state
        for _ in range(2):
            with pytest.raises(ConnectionError):
                breaker.call(broken)
        assert breaker.state is CircuitState.OPEN
    assert any("unreachable" in record.getMessage() for record in caplog.records)
    private_redis.restart()  # empty: nothing was saved
    assert breaker.state is CircuitState.OPEN  # the sync writes what happened meanwhile
    assert client.get(f"{name}:pybreaker:state") == b"open"
    other = redis.Redis.from_url(private_redis.url)
    storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, other, namespace=name)
    assert storage.state == pybreaker.STATE_OPEN  # another process, through pybreaker, sees it
    client.close()
    other.close()
