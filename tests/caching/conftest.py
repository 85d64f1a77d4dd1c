"""Fixtures of the caching suite: each cache in turn, def and async def in turn.

`cache` gives a fresh `MemoryCache`, `RedisCache` or `TieredCache` (the last two
on a namespace of their own, marked ``redis``). `flavour` turns a plain function
into itself or an ``async def`` twin with the same signature, and calls either the
matching way (one event loop per test, so async Redis clients live as long as it).
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from buttress.caching import MemoryCache


class Flavour:
    """Builds a def or an async def from one body and calls it the matching way."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.is_async = name == "async"
        self._runner: asyncio.Runner | None = None

    def __repr__(self) -> str:
        return self.name

    def twin(self, body: Callable[..., Any]) -> Callable[..., Any]:
        """``body`` itself, or an ``async def`` with its signature and annotations."""
        if not self.is_async:
            return body

        @functools.wraps(body)
        async def twin(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(0)
            return body(*args, **kwargs)

        return twin

    def run(self, value: Any) -> Any:
        """Await ``value`` on this test's loop when it is awaitable, else return it."""
        if self.is_async and asyncio.iscoroutine(value):
            if self._runner is None:
                self._runner = asyncio.Runner()
            return self._runner.run(value)
        return value

    def call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self.run(function(*args, **kwargs))

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest) -> Iterator[Flavour]:
    chosen = Flavour(request.param)
    yield chosen
    chosen.close()


def redis_cache(url: str, **options: Any) -> Any:
    from buttress.caching import RedisCache  # noqa: PLC0415 - needs the redis extra

    return RedisCache(url, namespace=f"test-{uuid.uuid4().hex[:12]}", **options)


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("tiered", marks=pytest.mark.redis),
    ]
)
def cache(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Each cache in turn, empty, on a namespace of its own."""
    if request.param == "memory":
        yield MemoryCache()
        return
    url: str = request.getfixturevalue("redis_url")
    redis = redis_cache(url)
    if request.param == "redis":
        made: Any = redis
    else:
        from buttress.caching import TieredCache  # noqa: PLC0415 - needs the redis extra

        made = TieredCache(redis)
    try:
        yield made
    finally:
        made.clear()
        made.close()
        if made is not redis:
            redis.close()


@pytest.fixture
def cache_kind(cache: Any) -> str:
    return type(cache).__name__
