"""Where the suite's services are, and what to do when one is missing."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest

POSTGRES_URL = os.environ.get(
    "BUTTRESS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("BUTTRESS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RABBITMQ_URL = os.environ.get("BUTTRESS_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")

HOW_TO_START = {
    "postgres": (
        "start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
        " or point BUTTRESS_TEST_POSTGRES_URL at a server"
    ),
    "redis": (
        'start it with `redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save ""'
        " --appendonly no` or point BUTTRESS_TEST_REDIS_URL at a server"
    ),
    "rabbitmq": (
        'start it with `su rabbitmq -s /bin/sh -c "rabbitmq-server -detached"` (Debian package'
        " rabbitmq-server) or point BUTTRESS_TEST_RABBITMQ_URL at a broker"
    ),
}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def require_service(name: str, *, is_reachable: bool, ci: bool) -> None:
    """Skip (or, in CI, fail) the current test when service ``name`` is unreachable."""
    if is_reachable:
        return
    message = f"{name} is not reachable: {HOW_TO_START[name]}"
    if ci:
        pytest.fail(f"{message} (CI=true: a missing service is a failure, not a skip)")
    pytest.skip(message)
