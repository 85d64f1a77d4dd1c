"""The fault harness does what it says: a private Redis paused, frozen, killed and restarted,
and a proxy that drops, refuses, stalls and cuts. Each fault has its control: before it the
same command works, and after it is undone it works again.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

import redis_server
from fault_proxy import FaultProxy
from redis_server import PrivateRedis, require_redis_server

private_redis = redis_server.private_redis  # the fixture: found by pytest where it is named


def wait_until(condition: Callable[[], object], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return bool(condition())


def answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def proxy(private_redis: PrivateRedis) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", private_redis.port) as proxy:
        yield proxy


def via(proxy: FaultProxy, server: PrivateRedis, timeout: float = 0.3) -> redis.Redis:
    """A client of ``server`` through ``proxy``: short timeouts, no retries."""
    return server.client(timeout, port=proxy.port)


# -- the server ---------------------------------------------------------------------------


def test_a_private_server_runs_on_its_own_port_and_answers(private_redis: PrivateRedis) -> None:
    assert private_redis.port != 6379
    assert private_redis.url == f"redis://127.0.0.1:{private_redis.port}/0"
    assert alive(private_redis.pid)
    assert private_redis.ping()
    client = redis.Redis.from_url(private_redis.url)
    assert client.set("k", "v")
    assert client.get("k") == b"v"
    client.close()


def test_pause_stops_the_answers_for_that_long_then_they_come(
    private_redis: PrivateRedis,
) -> None:
    client = private_redis.client(timeout=0.2)
    client.set("k", "v")
    assert client.get("k") == b"v"  # control: it answers before the pause
    started = time.monotonic()
    private_redis.pause(0.6)
    assert time.monotonic() - started < 0.3  # returns at once, the server asleep
    with pytest.raises(redis.TimeoutError):
        client.get("k")
    assert private_redis.running
    assert wait_until(lambda: answers(client), 2.0)
    assert time.monotonic() - started >= 0.5  # not before the pause was over
    assert client.get("k") == b"v"  # nothing lost


def test_freeze_stops_the_answers_until_thaw(private_redis: PrivateRedis) -> None:
    client = private_redis.client(timeout=0.2)
    client.set("k", "v")
    private_redis.freeze()
    assert private_redis.frozen
    with pytest.raises(redis.TimeoutError):
        client.get("k")
    assert not private_redis.ping(0.1)
    assert alive(private_redis.pid)
    private_redis.thaw()
    assert not private_redis.frozen
    assert client.get("k") == b"v"


def test_kill_breaks_the_connections_and_restart_comes_back_empty_on_the_same_port(
    private_redis: PrivateRedis,
) -> None:
    client = private_redis.client(timeout=0.3)
    client.set("k", "v")
    port, pid = private_redis.port, private_redis.pid
    private_redis.kill()
    assert not private_redis.running
    assert not alive(pid)
    with pytest.raises(RuntimeError, match="no redis-server"):
        _ = private_redis.pid
    with pytest.raises(redis.ConnectionError):
        client.get("k")
    with pytest.raises(redis.ConnectionError):
        client.get("k")  # refused, not merely a broken connection
    private_redis.restart()
    assert private_redis.port == port
    assert private_redis.pid != pid
    assert client.ping()  # the same client reconnects
    assert client.get("k") is None  # nothing was saved
    private_redis.restart()  # a live server is killed first
    assert private_redis.ping()


def test_a_frozen_server_can_be_killed_and_stopped() -> None:
    require_redis_server()
    server = PrivateRedis()
    server.freeze()
    server.kill()
    server.restart()
    server.freeze()
    pid = server.pid
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2
    assert not alive(pid)


def test_stop_ends_the_process_and_its_files_once_for_all() -> None:
    require_redis_server()
    with PrivateRedis() as server:
        pid, directory = server.pid, server._state.directory
        assert Path(directory, "redis.log").exists()
        server.client().ping()  # left open: stop closes it
    assert not alive(pid)
    assert not directory.exists()
    server.stop()  # idempotent
    assert not server.running
    with pytest.raises(RuntimeError, match="cannot restart"):
        server.restart()


def test_a_given_port_is_used_and_a_taken_one_fails_with_the_log(
    private_redis: PrivateRedis,
) -> None:
    with pytest.raises(RuntimeError, match="did not start"):
        PrivateRedis(private_redis.port)  # taken by the first one
    with pytest.raises(ValueError, match="shared"):
        PrivateRedis(6379)
    private_redis.kill()
    with pytest.raises(RuntimeError, match="no redis-server"):
        private_redis.pause(0.1)
    with PrivateRedis(private_redis.port) as again:
        assert again.port == private_redis.port
        assert again.ping()


def test_an_abandoned_server_is_killed_when_collected() -> None:
    require_redis_server()
    server = PrivateRedis()
    pid = server.pid
    del server  # no stop: the finalizer ends it (and at exit, what is left)
    assert not alive(pid)


# -- the proxy ----------------------------------------------------------------------------


def test_drop_closes_the_open_connections_and_accepts_new_ones(
    private_redis: PrivateRedis, proxy: FaultProxy
) -> None:
    client = via(proxy, private_redis)
    client.set("k", "v")
    first = client.client_id()
    with socket.create_connection(("127.0.0.1", proxy.port), 1) as raw:
        raw.sendall(b"PING\r\n")
        assert raw.recv(100) == b"+PONG\r\n"
        assert proxy.connections() == 2
        proxy.drop()
        assert proxy.connections() == 0
        assert raw.recv(100) == b""  # closed by the proxy
    # redis-py finds its idle connection closed and opens another, which the proxy accepts.
    assert client.get("k") == b"v"
    assert client.client_id() != first
    assert proxy.connections() == 1


def test_refuse_turns_new_connections_away_and_leaves_open_ones_flowing(
    private_redis: PrivateRedis, proxy: FaultProxy
) -> None:
    old, new = via(proxy, private_redis), via(proxy, private_redis)
    old.set("k", "v")
    port = proxy.port
    proxy.refuse()
    assert not proxy.accepting
    assert old.get("k") == b"v"
    with pytest.raises(redis.ConnectionError):
        new.get("k")
    proxy.restore()
    assert proxy.port == port
    assert new.get("k") == b"v"
    assert proxy.connections() == 2


def test_stall_holds_the_bytes_both_ways_until_flow(
    private_redis: PrivateRedis, proxy: FaultProxy
) -> None:
    short, patient = via(proxy, private_redis, 0.2), via(proxy, private_redis, 5.0)
    short.set("k", "v")
    patient.ping()
    assert short.get("k") == b"v"  # control: in time when flowing
    proxy.stall()
    with pytest.raises(redis.TimeoutError):
        short.get("k")
    results: list[object] = []

    def ask() -> None:
        try:
            results.append(patient.get("k"))
        except redis.RedisError as error:
            results.append(error)

    waiting = threading.Thread(target=ask)
    waiting.start()
    time.sleep(0.2)
    assert results == []  # held, the connection open
    # Both links stay, even the one the short client gave up: the proxy sees that on flow.
    assert proxy.connections() == 2
    proxy.flow()
    waiting.join(2)
    assert results == [b"v"]
    assert wait_until(lambda: proxy.connections() == 1)
    assert short.get("k") == b"v"


def test_a_stalled_connection_can_be_dropped(
    private_redis: PrivateRedis, proxy: FaultProxy
) -> None:
    client = via(proxy, private_redis, 5.0)
    client.ping()
    proxy.stall()
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            client.get("k")
        except redis.RedisError as error:
            errors.append(error)

    waiting = threading.Thread(target=ask)
    waiting.start()
    time.sleep(0.1)
    started = time.monotonic()
    proxy.drop()
    waiting.join(2)
    assert time.monotonic() - started < 1  # not held until the client's timeout
    assert [type(error) for error in errors] == [redis.ConnectionError]
    proxy.flow()
    assert client.ping()


def test_cut_is_drop_and_refuse_and_restore_heals_it(
    private_redis: PrivateRedis, proxy: FaultProxy
) -> None:
    old, new = via(proxy, private_redis), via(proxy, private_redis)
    old.set("k", "v")
    proxy.cut()
    with pytest.raises(redis.ConnectionError):
        old.get("k")
    with pytest.raises(redis.ConnectionError):
        new.get("k")
    proxy.restore()
    proxy.restore()  # idempotent
    assert old.get("k") == b"v"
    assert new.get("k") == b"v"


def test_a_proxy_in_front_of_a_killed_server_ends_each_connection(
    private_redis: PrivateRedis, proxy: FaultProxy
) -> None:
    client = via(proxy, private_redis)
    client.ping()
    private_redis.kill()
    with pytest.raises(redis.ConnectionError):
        client.ping()
    with pytest.raises(redis.ConnectionError):
        client.ping()  # accepted, then closed: the target is down
    private_redis.restart()
    assert client.ping()


def test_closing_the_proxy_ends_its_threads_and_sockets(private_redis: PrivateRedis) -> None:
    with FaultProxy("127.0.0.1", private_redis.port) as proxy:
        clients = [via(proxy, private_redis) for _ in range(3)]
        for client in clients:
            client.ping()
        proxy.stall()
        name = f"fault-proxy-{proxy.port}"
    assert not [thread for thread in threading.enumerate() if thread.name.startswith(name)]
    for client in clients:
        client.close()
