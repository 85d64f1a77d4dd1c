"""`Flavour`: one test body run as a def and as an async def.

Imported by name (``from caching_flavours import Flavour``), not from ``conftest``:
another directory's ``conftest`` module may be the one ``import conftest`` finds.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any


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
