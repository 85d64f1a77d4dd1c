"""The switch that makes every resilience wait zero, for test suites."""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["ResilienceTesting", "resilience_testing"]


class ResilienceTesting:
    """What `resilience_testing` yields: the waits that were skipped, in order."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        """Seconds each skipped wait would have lasted."""


class _Switch:
    """Process-wide, so retries running in other threads skip their waits too."""

    lock: ClassVar[threading.Lock] = threading.Lock()
    # (recorder, skip waits), innermost last
    active: ClassVar[list[tuple[ResilienceTesting, bool]]] = []


@contextmanager
def resilience_testing(*, no_wait: bool = True) -> Iterator[ResilienceTesting]:
    """Make every retry wait zero while the block runs, and record what it would have been.

    Test suites use it so that code protected by `retry` (or a `Policy`)
    fails or succeeds at once instead of sleeping through its backoff. A
    skipped wait still counts against a retry ``deadline``, so the same
    attempts are made as in production. The switch is process-wide: retries
    in other threads skip their waits too. Blocks nest; leaving one restores
    the state before it.

    Args:
        no_wait: Skip waits (the default). ``False`` keeps real waits, but
            still records them.

    Yields:
        A `ResilienceTesting` whose ``waits`` lists every wait, in order.

    Example:
        ```python
        from buttress.resilience import resilience_testing, retry

        @retry(on=ConnectionError, attempts=3, wait_initial=10.0, wait_max=60.0, wait_jitter=0)
        def always_down() -> None:
            raise ConnectionError("down")

        with resilience_testing() as testing:
            try:
                always_down()
            except ConnectionError:
                pass
        assert testing.waits == [10.0, 20.0]  # recorded, not slept
        ```
    """
    recorder = ResilienceTesting()
    entry = (recorder, no_wait)
    with _Switch.lock:
        _Switch.active.append(entry)
    try:
        yield recorder
    finally:
        with _Switch.lock:
            _Switch.active.remove(entry)


def _record(seconds: float) -> bool:
    """Record a wait with the innermost switch; tell whether to skip it."""
    if not _Switch.active:  # the common case: no switch, no lock
        return False
    with _Switch.lock:
        if not _Switch.active:
            return False
        recorder, skip = _Switch.active[-1]
        recorder.waits.append(seconds)
        return skip


def sleep(seconds: float) -> float:
    """Sleep, unless a `resilience_testing` block says not to.

    Returns:
        The seconds skipped (0.0 when really slept), for callers that keep
        time, such as a deadline, to count as passed.
    """
    if _record(seconds):
        return seconds
    time.sleep(seconds)
    return 0.0


async def asleep(seconds: float) -> float:
    """Sleep without blocking the loop, unless a `resilience_testing` block says not to.

    Returns:
        The seconds skipped (0.0 when really slept).
    """
    if _record(seconds):
        return seconds
    await asyncio.sleep(seconds)
    return 0.0
