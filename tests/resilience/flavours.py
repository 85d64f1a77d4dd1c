"""Build a def or an async def around a scripted dependency, and call it the matching way."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class Script:
    """A dependency that answers from a script: values are returned, exceptions raised."""

    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    def step(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, BaseException):
            raise outcome
        if callable(outcome):
            return outcome(*args, **kwargs)
        return outcome


class Flavour:
    """Builds a def or an async def around a script, and calls it the matching way."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.is_async = name == "async"

    def function(self, script: Script) -> Callable[..., Any]:
        if self.is_async:

            async def dependency(*args: Any, **kwargs: Any) -> Any:
                await asyncio.sleep(0)
                return script.step(*args, **kwargs)

            return dependency

        def dependency_sync(*args: Any, **kwargs: Any) -> Any:
            return script.step(*args, **kwargs)

        return dependency_sync

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.is_async:
            return asyncio.run(fn(*args, **kwargs))
        return fn(*args, **kwargs)

    def __repr__(self) -> str:
        return self.name
