"""What every cache shares: `MISSING`, the lease a miss takes, and the fork hook."""

from __future__ import annotations

import copy
import os
import pickle
import time
from typing import Any

import pytest

from buttress.caching import MISSING, MemoryCache, cached


def test_missing_is_a_falsy_singleton_that_survives_copies_and_pickles() -> None:
    assert repr(MISSING) == "MISSING"
    assert not MISSING
    assert pickle.loads(pickle.dumps(MISSING)) is MISSING
    assert copy.deepcopy(MISSING) is MISSING


# -- the lease of a miss ------------------------------------------------------------------------


@pytest.mark.parametrize("found", [MISSING, 0, None, "v"], ids=repr)
def test_a_lease_carries_what_was_found_while_taking_it(found: Any) -> None:
    view = MemoryCache().bind("tests.lease", Any)
    key = ("tests.lease", 1)
    if found is not MISSING:
        view.set(key, found, None, ())  # stored by someone else after the caller's lookup
    lease = view.begin(key, ())
    try:
        assert lease.value is found  # None is a value: the caller must not compute again
        assert lease.mine is True  # one process: this caller computes, nobody to wait for
        assert lease.token == ""  # nothing held in a shared store
        assert lease.open is True
        assert 0 <= time.monotonic() - lease.started < 60
        assert repr(lease) == "<Lease mine=True open=True since=0>"
    finally:
        view.end(key, lease)
    assert lease.open is False
    assert repr(lease) == "<Lease mine=True open=False since=0>"


# -- fork ---------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_can_use_a_cache_whose_lock_was_held_at_the_fork() -> None:
    cache = MemoryCache()

    @cached(cache=cache)
    def double(n: int) -> int:
        return 2 * n

    assert double(1) == 2
    lock = cache._lock  # what a parent thread in the middle of a write holds at the fork
    lock.acquire()
    try:
        pid = os.fork()
        if pid == 0:  # the child: only the at-fork hook can free the cache
            served = False
            try:
                served = double(2) == 4 and double(1) == 2
            finally:
                os._exit(0 if served else 1)
    finally:
        lock.release()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.01)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the child hung on the lock the parent held at the fork")
    assert os.waitstatus_to_exitcode(status) == 0
