"""`timeout` on an async def keeps ``asyncio.timeout``'s semantics with one shared timer.

Every call under one limit on one loop shares a timer armed at the oldest
call's deadline; these tests hold it to what ``asyncio.timeout`` guarantees:
each call gets its own full limit, only overdue calls are cancelled, an outer
cancellation is never mistaken for a timeout, nesting works both ways, and the
task is left as it was found.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import pytest

from buttress.errors import DeadlineExceededError
from buttress.resilience import timeout


def test_each_call_gets_its_own_full_limit_whenever_it_started() -> None:
    """A call started later is not cut at an earlier call's deadline."""
    limit = 0.2

    @timeout(limit)
    async def hang() -> None:
        await asyncio.sleep(10)

    async def timed(delay: float) -> float:
        await asyncio.sleep(delay)
        began = time.monotonic()
        with pytest.raises(DeadlineExceededError):
            await hang()
        return time.monotonic() - began

    async def main() -> list[float]:
        return await asyncio.gather(*(timed(delay) for delay in (0.0, 0.05, 0.1, 0.15)))

    for elapsed in asyncio.run(main()):
        assert limit <= elapsed < limit + 1.0


def test_only_the_overdue_calls_are_cancelled() -> None:
    @timeout(1.0)  # far above the quick calls' 0.01 s, even on a loaded machine
    async def work(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    async def outcome(seconds: float) -> str:
        try:
            await work(seconds)
        except DeadlineExceededError:
            return "timed out"
        return "done"

    durations = [0.0, 0.01, 5.0] * 100

    async def main() -> list[str]:
        return await asyncio.gather(*(outcome(seconds) for seconds in durations))

    outcomes = asyncio.run(main())
    assert outcomes == ["done", "done", "timed out"] * 100


def test_a_call_that_ends_in_time_leaves_no_cancellation_behind() -> None:
    @timeout(0.05)
    async def quick() -> str:
        await asyncio.sleep(0)
        return "ok"

    async def main() -> int:
        for _ in range(100):
            assert await quick() == "ok"
        await asyncio.sleep(0.1)  # the shared timer fires with nothing overdue
        task = asyncio.current_task()
        assert task is not None
        return task.cancelling()

    assert asyncio.run(main()) == 0


def test_after_a_timeout_the_task_is_not_left_cancelled() -> None:
    @timeout(0.02)
    async def hang() -> None:
        await asyncio.sleep(10)

    async def main() -> str:
        with pytest.raises(DeadlineExceededError):
            await hang()
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 0
        await asyncio.sleep(0.01)  # still able to wait: no cancellation pending
        return "carried on"

    assert asyncio.run(main()) == "carried on"


def test_an_outer_cancellation_stays_a_cancellation() -> None:
    @timeout(5.0)
    async def hang() -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        task = asyncio.create_task(hang())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_a_cancellation_that_arrives_with_the_timeout_is_not_swallowed() -> None:
    """Cancelled by someone else and overdue at once: the caller's cancel wins."""
    limit = 0.05

    @timeout(limit)
    async def hang() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(limit * 2)  # both cancellations land before this ends
            raise

    async def main() -> None:
        task = asyncio.create_task(hang())
        await asyncio.sleep(limit / 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_it_nests_inside_asyncio_timeout_both_ways() -> None:
    @timeout(0.05)
    async def ours_is_shorter() -> None:
        await asyncio.sleep(10)

    @timeout(5.0)
    async def ours_is_longer() -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        async with asyncio.timeout(5.0):
            with pytest.raises(DeadlineExceededError):
                await ours_is_shorter()
        with pytest.raises(TimeoutError) as caught:
            async with asyncio.timeout(0.05):
                await ours_is_longer()
        assert not isinstance(caught.value, DeadlineExceededError)

    asyncio.run(main())


def test_asyncio_timeout_inside_the_call_is_the_calls_own_error() -> None:
    @timeout(5.0)
    async def own_limit() -> None:
        async with asyncio.timeout(0.02):
            await asyncio.sleep(10)

    with pytest.raises(TimeoutError) as caught:
        asyncio.run(own_limit())
    assert not isinstance(caught.value, DeadlineExceededError)


def test_a_recursive_call_is_limited_at_every_level() -> None:
    @timeout(0.05)
    async def descend(depth: int) -> None:
        if depth:
            await descend(depth - 1)
        await asyncio.sleep(10)

    started = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        asyncio.run(descend(3))
    assert time.monotonic() - started < 2


def test_one_function_is_limited_on_several_loops_at_once() -> None:
    @timeout(0.05)
    async def hang() -> None:
        await asyncio.sleep(10)

    results: list[str] = []

    def on_its_own_loop() -> None:
        async def main() -> None:
            for _ in range(3):
                try:
                    await hang()
                except DeadlineExceededError:
                    results.append("timed out")

        asyncio.run(main())

    threads = [threading.Thread(target=on_its_own_loop) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == ["timed out"] * 12


def test_a_new_loop_after_a_closed_one_still_times_out() -> None:
    @timeout(0.02)
    async def hang() -> None:
        await asyncio.sleep(10)

    for _ in range(3):
        with pytest.raises(DeadlineExceededError):
            asyncio.run(hang())


def test_a_coroutine_awaited_outside_a_task_is_told_why() -> None:
    @timeout(1.0)
    async def quick() -> str:
        return "ok"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        coroutine = quick()
        # Drive it by hand from a callback, where no task is running.
        outcome: list[BaseException] = []

        def step() -> None:
            try:
                coroutine.send(None)
            except BaseException as error:  # noqa: BLE001 - what was raised is the point
                outcome.append(error)

        loop.call_soon(step)
        await asyncio.sleep(0.01)
        assert isinstance(outcome[0], RuntimeError)
        assert "inside an asyncio task" in str(outcome[0])

    asyncio.run(main())


def test_a_call_that_swallows_its_cancellation_is_reported_and_the_task_restored() -> None:
    @timeout(0.02)
    async def stubborn() -> str:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(10)  # ignores the cancellation and returns anyway
        return "late"

    async def main() -> int:
        with pytest.raises(DeadlineExceededError):
            await stubborn()
        task = asyncio.current_task()
        assert task is not None
        return task.cancelling()

    assert asyncio.run(main()) == 0
