"""Another process with its own TieredCache on a shared namespace, driven line by line.

Usage: ``python cache_peer.py REDIS_URL NAMESPACE``. It prints ``ready`` once its
invalidation listener is subscribed, then answers one line per command read from
stdin (``ARG`` is an int, the argument of the cached function ``peer.f``):

- ``get ARG``: the value (memory, then Redis), or ``MISSING``;
- ``peek ARG``: the value held in this process's memory tier, or ``MISSING``;
- ``set ARG VALUE [TAG]``: stores ``VALUE`` (an int) for 60 s; answers ``ok``;
- ``delete ARG``, ``tags TAG``, ``clear``, ``clearfn``: invalidate; answer ``ok``;
- ``quit`` (or end of input): stop.

Imported instead, it gives `SAMPLES` and `encodings()`, which the key tests run
in a subprocess to check that key texts do not depend on the process.
"""

from __future__ import annotations

import datetime as dt
import enum
import sys
import time
import uuid
from decimal import Decimal
from typing import Any

from buttress.caching._backend import MISSING
from buttress.caching._redis import RedisCache
from buttress.caching._serial import encode_key
from buttress.caching._tiered import TieredCache


class Colour(enum.Enum):
    RED = 1
    GREEN = "green"


SAMPLES: list[tuple[Any, ...]] = [
    (1, "a", None),
    (True, 1.5, b"\x00\xff"),
    (frozenset({"pear", "apple", "fig", "kiwi", "plum", "lime", "date", "sloe"}),),
    (frozenset({("x", 1), ("y", 2), ("z", 3)}), (1, (2, (3,)))),
    (Colour.RED, Colour.GREEN, Colour, int, str),
    (uuid.UUID("12345678-1234-5678-1234-567812345678"),),
    (dt.datetime(2024, 2, 29, 12, 30, tzinfo=dt.UTC), dt.date(2024, 1, 1), dt.time(8, 15)),
    (Decimal("1.10"), -0.0, float("inf"), 10**50),
    ("ünïcødé ☃", "x" * 300),
]


def encodings() -> list[str]:
    """The key text of each sample, in order."""
    return [encode_key(sample) for sample in SAMPLES]


def main(url: str, namespace: str) -> None:
    cache = TieredCache(RedisCache(url, namespace=namespace), local_ttl=30.0)
    view = cache.bind("peer.f", int)
    identity = object()  # this process's own: only the key text is shared

    def key(arg: str) -> tuple[Any, ...]:
        number = int(arg)
        return (identity, number, int)

    cache.start()
    deadline = time.monotonic() + 10
    while not cache.listening and time.monotonic() < deadline:
        time.sleep(0.01)
    say("ready" if cache.listening else "not listening")
    for line in sys.stdin:
        command, *args = line.split()
        if command == "get":
            value = view.get(key(args[0]))
            say("MISSING" if value is MISSING else str(value))
        elif command == "peek":
            value = view.peek(key(args[0]))
            say("MISSING" if value is MISSING else str(value))
        elif command == "set":
            view.set(key(args[0]), int(args[1]), 60.0, tuple(args[2:]))
            say("ok")
        elif command == "delete":
            view.delete(key(args[0]))
            say("ok")
        elif command == "tags":
            cache.invalidate_tags(*args)
            say("ok")
        elif command == "clear":
            cache.clear()
            say("ok")
        elif command == "clearfn":
            view.clear()
            say("ok")
        else:
            break
    cache.close()


def say(answer: str) -> None:
    print(answer, flush=True)  # noqa: T201 - the protocol with the test


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
