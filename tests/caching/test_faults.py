"""Through `cached`: with Redis down or holding garbage, callers still get correct values.

Cutting a live link mid-run is tested on the caches themselves (test_redis_backend,
test_tiered), through a fault proxy.
"""

from __future__ import annotations

import logging
import socket
import uuid
from typing import Any

import pytest
import redis

from buttress.caching import RedisCache, TieredCache, cached


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("tiered", [False, True], ids=["redis", "tiered"])
def test_a_dead_server_means_misses_and_one_warning(
    tiered: bool, caplog: pytest.LogCaptureFixture
) -> None:
    redis_cache = RedisCache(f"redis://127.0.0.1:{closed_port()}/0", namespace="dead")
    cache: Any = TieredCache(redis_cache) if tiered else redis_cache
    runs: list[int] = []

    @cached(cache=cache)
    def square(x: int) -> int:
        runs.append(x)
        return x * x

    with caplog.at_level(logging.WARNING, logger="buttress.caching"):
        assert [square(x) for x in [2, 3, 2]] == [4, 9, 4]
    assert runs[:2] == [2, 3]  # computed, never an error
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    cache.close()


def test_garbage_under_a_key_is_a_miss_and_is_replaced(redis_url: str) -> None:
    namespace = f"garbage-{uuid.uuid4().hex[:8]}"
    cache = RedisCache(redis_url, namespace=namespace)
    client = redis.Redis.from_url(redis_url)
    runs: list[int] = []

    @cached(cache=cache)
    def square(x: int) -> int:
        runs.append(x)
        return x * x

    try:
        assert square(6) == 36
        keys = list(client.scan_iter(f"{namespace}:*"))
        assert len(keys) == 1
        client.set(keys[0], b"\x80not json")
        assert square(6) == 36
        assert square(6) == 36
        assert runs == [6, 6]
    finally:
        cache.clear()
        cache.close()
        client.close()
