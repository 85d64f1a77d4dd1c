"""One process of the cross-process stampede test: a cold key, a slow body, a shared count.

Usage: ``python stampede_peer.py <redis url> <namespace> <start at (time.time())>``.
Waits until the start time, calls the cached function once and prints its value.
The body counts its runs in Redis, so the test can read how many processes ran it.
"""

from __future__ import annotations

import sys
import time

import redis

from buttress.caching import RedisCache, cached


def main() -> None:
    url, namespace, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
    counter = redis.Redis.from_url(url)
    cache = RedisCache(url, namespace=namespace)

    @cached(cache=cache, name="stampede.slow")
    def slow(key: str) -> str:
        counter.incr(f"{namespace}:runs")
        time.sleep(0.05)
        return key.upper()

    time.sleep(max(0.0, start - time.time()))
    print(slow("cold"), flush=True)  # noqa: T201 - the test reads it
    cache.close()
    counter.close()


if __name__ == "__main__":
    main()
