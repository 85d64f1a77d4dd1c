"""Another process sharing a breaker through Redis, driven line by line from its stdin.

Usage: ``python breaker_peer.py REDIS_URL NAMESPACE SYNC_INTERVAL``. Commands:
``call`` (answers ``ok`` or ``open``), ``fail`` (a failing call; answers
``failed`` or ``open``), ``advance SECONDS`` (moves this process's clock),
``state`` (answers the state and the failure count), ``quit``.
"""

from __future__ import annotations

import sys
import time

import pybreaker
import redis

from buttress.errors import CircuitOpenError
from buttress.resilience import CircuitBreaker


class Clock:
    """This process's clock: the real time when it starts, then moved only by commands."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def main(url: str, namespace: str, sync_interval: float) -> None:
    clock = Clock()
    storage = pybreaker.CircuitRedisStorage(
        pybreaker.STATE_CLOSED, redis.Redis.from_url(url), namespace=namespace
    )
    breaker = CircuitBreaker(
        namespace,
        fail_max=3,
        reset_timeout=30.0,
        storage=storage,
        sync_interval=sync_interval,
        clock=clock,
    )

    def broken() -> None:
        raise ConnectionError("down")

    print("ready", flush=True)  # noqa: T201 - the protocol with the test
    for line in sys.stdin:
        command, *args = line.split()
        try:
            if command == "call":
                breaker.call(lambda: None)
                answer = "ok"
            elif command == "fail":
                try:
                    breaker.call(broken)
                except ConnectionError:
                    answer = "failed"
            elif command == "advance":
                clock.now += float(args[0])
                answer = "advanced"
            elif command == "state":
                answer = f"{breaker.state.value} {breaker.failures}"
            else:
                return
        except CircuitOpenError:
            answer = "open"
        print(answer, flush=True)  # noqa: T201 - the protocol with the test


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
