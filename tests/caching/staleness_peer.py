"""Another process reading a cached value in a loop, to measure how stale its reads get.

Usage: ``python staleness_peer.py REDIS_URL NAMESPACE SOURCE LOCAL_TTL SECONDS``.
The cached function ``stock`` returns the integer in the file ``SOURCE`` (the
source of truth, which the test rewrites and invalidates). The peer prints
``ready`` once its invalidation listener is subscribed, reads for ``SECONDS``,
then prints one JSON line: ``[[wall time, value], ...]``, one pair per read.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from buttress.caching import RedisCache, TieredCache, cached


def main(url: str, namespace: str, source: str, local_ttl: float, seconds: float) -> None:
    # Quicker to try Redis again than the test process: it refills Redis as soon as the
    # server answers, while the test process may still be leaving Redis alone.
    shared = RedisCache(
        url,
        namespace=namespace,
        retry_after_failure=0.1,
        client_options={"socket_timeout": 0.2, "socket_connect_timeout": 0.2},
    )
    cache = TieredCache(shared, local_ttl=local_ttl)

    @cached(cache=cache, name="stock", ttl=60)
    def stock(key: str) -> int:
        return int(Path(source).read_text(encoding="utf-8"))

    cache.start()
    deadline = time.monotonic() + 10
    while not cache.listening and time.monotonic() < deadline:
        time.sleep(0.01)
    print("ready" if cache.listening else "not listening", flush=True)  # noqa: T201
    reads: list[tuple[float, int]] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        reads.append((time.time(), stock("k")))
        time.sleep(0.005)
    print(json.dumps(reads), flush=True)  # noqa: T201
    cache.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]))
