"""Through Redis, four processes missing one cold key at once run the body once."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis

PEER = Path(__file__).with_name("stampede_peer.py")


def test_four_processes_on_one_cold_key_run_the_body_once(redis_url: str) -> None:
    namespace = f"stampede-{uuid.uuid4().hex[:12]}"
    start = time.time() + 2.0  # every interpreter is up and waiting by then
    peers = [
        subprocess.Popen(
            [sys.executable, str(PEER), redis_url, namespace, str(start)],
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
