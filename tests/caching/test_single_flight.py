"""Concurrent misses on one cold key run the function once, for threads and for tasks."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from buttress.caching import cached


def test_64_threads_on_one_cold_key_run_the_body_once() -> None:
    runs = 0
    start = threading.Barrier(64)

    @cached()
    def slow(key: str) -> str:
        nonlocal runs
        runs += 1
        time.sleep(0.05)
        return key.upper()

    def call() -> str:
        start.wait(timeout=10)
        return slow("cold")

    with ThreadPoolExecutor(64) as pool:
        results = [future.result(timeout=10) for future in [pool.submit(call) for _ in range(64)]]
    assert results == ["COLD"] * 64
    assert runs == 1
    assert slow.stats().misses + slow.stats().hits == 64


def test_waiting_threads_get_the_same_exception_and_it_is_not_cached() -> None:
    runs = 0
    start = threading.Barrier(16)

    @cached()
    def failing(key: str) -> str:
        nonlocal runs
        runs += 1
        time.sleep(0.05)
        if runs == 1:
            raise ConnectionError("upstream reset")
        return key

    def call() -> Any:
        start.wait(timeout=10)
        try:
            return failing("k")
        except ConnectionError as error:
            return error

    with ThreadPoolExecutor(16) as pool:
        outcomes = [f.result(timeout=10) for f in [pool.submit(call) for _ in range(16)]]
    errors = {id(outcome) for outcome in outcomes if isinstance(outcome, ConnectionError)}
    assert len(errors) == 1  # one shared failure, not sixteen
    assert runs == 1 or "k" in outcomes  # a late arrival may start a fresh run
    assert failing("k") == "k"
    assert failing("k") == "k"


@pytest.mark.asyncio
async def test_1000_tasks_on_one_cold_key_run_the_body_once() -> None:
    runs = 0

    @cached()
    async def slow(key: str) -> str:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.05)
        return key.upper()

    results = await asyncio.gather(*(slow("cold") for _ in range(1000)))
    assert results == ["COLD"] * 1000
    assert runs == 1


@pytest.mark.asyncio
async def test_waiting_tasks_get_the_same_exception_and_it_is_not_cached() -> None:
    runs = 0

    @cached()
    async def failing(key: str) -> str:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.02)
        if runs == 1:
            raise ConnectionError("upstream reset")
        return key

    outcomes = await asyncio.gather(*(failing("k") for _ in range(50)), return_exceptions=True)
    assert all(isinstance(outcome, ConnectionError) for outcome in outcomes)
    assert len({id(outcome) for outcome in outcomes}) == 1
    assert runs == 1
    assert await failing("k") == "k"


@pytest.mark.asyncio
async def test_cancelling_the_first_waiter_does_not_cancel_the_shared_call() -> None:
    runs = 0
    finished = asyncio.Event()

    @cached()
    async def slow(key: str) -> str:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.05)
        finished.set()
        return key.upper()

    first = asyncio.create_task(slow("k"))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(slow("k"))
    await asyncio.sleep(0.01)
    first.cancel()
    assert await second == "K"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert runs == 1
    assert finished.is_set()
    assert await slow("k") == "K"  # stored by the shared call
    assert runs == 1


@pytest.mark.asyncio
async def test_the_shared_call_is_cancelled_when_its_last_waiter_leaves() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    @cached()
    async def slow(key: str) -> str:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return key

    waiters = [asyncio.create_task(slow("k")) for _ in range(3)]
    await started.wait()
    for waiter in waiters:
        waiter.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    await asyncio.wait_for(cancelled.wait(), timeout=2)
    assert slow.stats().hits == 0


@pytest.mark.asyncio
async def test_single_flight_can_be_turned_off() -> None:
    runs = 0

    @cached(single_flight=False)
    async def slow(key: str) -> str:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.01)
        return key

    await asyncio.gather(*(slow("k") for _ in range(5)))
    assert runs == 5


def test_the_miss_path_locks_per_key_only() -> None:
    """A slow miss on one key does not hold up a miss on another key."""
    release = threading.Event()

    @cached()
    def lookup(key: str) -> str:
        if key == "slow":
            release.wait(timeout=10)
        return key

    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(lookup, "slow")
        assert pool.submit(lookup, "fast").result(timeout=5) == "fast"
        assert not slow.done()
        release.set()
        assert slow.result(timeout=5) == "slow"
