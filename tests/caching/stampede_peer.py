"""One process of the cross-process stampede test: a cold key, a slow body, a shared count.

Usage: ``python stampede_peer.py <redis url> <namespace> <start at (time.time())> [tasks]``.
Waits until the start time, calls the cached function once and prints its value;
with ``tasks``, calls an ``async def`` twin from that many asyncio tasks at once
and prints the distinct values they got.
The body counts its runs in Redis, so the test can read how many processes ran it.
"""

from __future__ import annotations

import asyncio
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

    @cached(cache=cache, name="stampede.aslow")
    async def aslow(key: str) -> str:
        counter.incr(f"{namespace}:runs")
        await asyncio.sleep(0.05)
        return key.upper()

    async def many(tasks: int) -> str:
        values = await asyncio.gather(*(aslow("cold") for _ in range(tasks)))
        await cache.aclose()
        return ",".join(sorted(set(values)))

    time.sleep(max(0.0, start - time.time()))
    if len(sys.argv) > 4:
        print(asyncio.run(many(int(sys.argv[4]))), flush=True)  # noqa: T201
    else:
        print(slow("cold"), flush=True)  # noqa: T201 - the test reads it
    cache.close()
    counter.close()


if __name__ == "__main__":
    main()
