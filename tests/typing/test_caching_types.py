"""Cached functions keep their parameters and return types. Checked by mypy, never run."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, assert_type

from buttress.caching import CacheStats, MemoryCache, SharedCache, cached


@cached(ttl=60)
def lookup(user_id: int, *, verbose: bool = False) -> dict[str, int]:
    return {"id": user_id}


@cached(cache=MemoryCache(maxsize=10), tags=("users",))
async def alookup(user_id: int) -> str:
    return str(user_id)


def check() -> None:
    assert_type(lookup(1), dict[str, int])
    assert_type(lookup(1, verbose=True), dict[str, int])
    assert_type(lookup.stats(), CacheStats)
    assert_type(lookup.cache, SharedCache)
    lookup.invalidate(1, verbose=False)
    lookup.clear()
    lookup.invalidate_tags("users")
    lookup("1")  # type: ignore[arg-type]
    lookup.invalidate(user="x")  # type: ignore[call-arg]


def calling_gives_a_coroutine() -> Coroutine[Any, Any, str]:
    return alookup(1)


async def acheck() -> None:
    assert_type(await alookup(2), str)
    await alookup.ainvalidate(2)
    await alookup.aclear()
    await alookup("2")  # type: ignore[arg-type]
