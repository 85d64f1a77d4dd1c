"""Two processes on a TieredCache, Redis paused and restarted under them: reads stay fresh.

The test process rewrites the source and invalidates the entry during each
fault and right after Redis answers again; a peer process reads the cached
value in a loop. The private Redis is paused three times and killed and
restarted three times. Afterwards every read
of the peer is compared with the source's history: none may be older than the
documented bound, ``local_ttl``.
"""

from __future__ import annotations

import bisect
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis_server
from buttress.caching import RedisCache, TieredCache, cached

private_redis = redis_server.private_redis
PEER = Path(__file__).with_name("staleness_peer.py")
LOCAL_TTL = 1.0
SLACK = 0.5  # scheduling on a loaded two-core machine (the broken version: 9 s)
PAUSE = 1.5  # longer than the default socket timeout (1 s): commands time out
QUIET = 1.8  # longer than LOCAL_TTL + SLACK: a lost invalidation shows as a stale read


def staleness(reads: list[tuple[float, int]], changes: list[tuple[float, int]]) -> list[float]:
    """For each read, how long the value it returned had been outdated (0 if current)."""
    times = [when for when, _ in changes]
    ages = []
    for when, value in reads:
        # the first change to a newer version than the one read: the read is stale after it
        newer = [at for at, version in changes if version > value]
        outdated_since = min(newer) if newer else None
        if outdated_since is None or outdated_since > when:
            ages.append(0.0)
        else:
            ages.append(when - outdated_since)
    assert times == sorted(times)
    assert bisect.bisect(times, 0) == 0
    return ages


def test_no_read_is_older_than_local_ttl_through_pauses_and_restarts(
    private_redis: redis_server.PrivateRedis, tmp_path: Path
) -> None:
    namespace = f"stale-{uuid.uuid4().hex[:8]}"
    source = tmp_path / "stock"
    version = 0
    source.write_text(str(version), encoding="utf-8")
    changes: list[tuple[float, int]] = [(time.time(), version)]
    shared = RedisCache(private_redis.url, namespace=namespace)  # the defaults, as users have
    cache = TieredCache(shared, local_ttl=LOCAL_TTL)

    @cached(cache=cache, name="stock", ttl=60)
    def stock(key: str) -> int:
        return int(source.read_text(encoding="utf-8"))

    def change() -> None:
        nonlocal version
        version += 1
        source.write_text(str(version), encoding="utf-8")
        changes.append((time.time(), version))
        stock.invalidate("k")

    schedule = ["pause", "restart"] * 3
    seconds = len(schedule) * (PAUSE + QUIET + 0.5) + 1.0
    peer = subprocess.Popen(
        [
            sys.executable,
            str(PEER),
            private_redis.url,
            namespace,
            str(source),
            str(LOCAL_TTL),
            str(seconds),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert peer.stdout is not None
        assert peer.stdout.readline().strip() == "ready"
        assert stock("k") == 0
        for fault in schedule:
            if fault == "pause":
                private_redis.pause(PAUSE)
                change()  # times out against the sleeping server
                while not private_redis.ping(timeout=2):
                    time.sleep(0.01)
            else:
                private_redis.kill()
                change()  # refused
                private_redis.restart()
            time.sleep(0.2)
            change()  # Redis answers again, but this process was told to leave it alone
            time.sleep(QUIET)  # no later invalidation repairs a lost one
        out, _ = peer.communicate(timeout=60)
    finally:
        if peer.poll() is None:
            peer.kill()
            peer.wait()
        cache.close()
    reads = [(when, value) for when, value in json.loads(out)]
    assert len(reads) > 200  # the peer kept reading through every fault
    ages = staleness(reads, changes)
    worst = max(ages)
    assert worst <= LOCAL_TTL + SLACK, (worst, sorted(ages)[-10:])
