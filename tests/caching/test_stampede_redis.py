"""Through Redis, four processes missing one cold key at once run the body once.

Also with 250 asyncio tasks in each process: 1 000 callers, more than redis-py's
pool of 100 connections per process, still one run (a busy pool is waited for,
never taken for Redis being down).
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis

PEER = Path(__file__).with_name("stampede_peer.py")


@pytest.mark.parametrize("tasks", [None, 250], ids=["one call each", "250 tasks each"])
def test_four_processes_on_one_cold_key_run_the_body_once(
    redis_url: str, tasks: int | None
) -> None:
    namespace = f"stampede-{uuid.uuid4().hex[:12]}"
    start = time.time() + 2.0  # every interpreter is up and waiting by then
    extra = [] if tasks is None else [str(tasks)]
    peers = [
        subprocess.Popen(
            [sys.executable, str(PEER), redis_url, namespace, str(start), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [peer.communicate(timeout=60) for peer in peers]
    client = redis.Redis.from_url(redis_url)
    try:
        assert [peer.returncode for peer in peers] == [0] * 4, [err for _, err in outputs]
        assert [out.strip() for out, _ in outputs] == ["COLD"] * 4
        assert int(client.get(f"{namespace}:runs") or 0) == 1
    finally:
        for key in client.scan_iter(f"{namespace}*"):
            client.delete(key)
        client.close()
