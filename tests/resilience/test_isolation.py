"""Tests of an app neither see each other's open circuits nor collide on breaker settings.

The suite below is what a service's own tests look like: a module-level function
guarded by a breaker, a test that opens it, a test that needs it closed, and two
tests that each ask the app's container for a breaker of one name with other
settings. It runs
in a subprocess, with and without the ``fresh_breakers`` fixture.
"""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from buttress.di import ResilienceContainer
from buttress.errors import CircuitOpenError
from buttress.resilience import CircuitBreaker, CircuitState, isolated_breakers
from buttress.settings import ResilienceSettings

SUITE = """
import pytest
from buttress.errors import CircuitOpenError
from buttress.di import ResilienceContainer
from buttress.resilience import CircuitBreaker, CircuitState
from buttress.testing import fresh_breakers

APP = ResilienceContainer()  # the app's container: its breaker registry is a singleton

{autouse}

GATEWAY_UP = [True]

@CircuitBreaker("payments-gateway", fail_max=2, reset_timeout=60)
def charge(amount):
    if not GATEWAY_UP[0]:
        raise ConnectionError("gateway down")
    return f"charged {{amount}}"

def test_a_gateway_outage_opens_the_circuit():
    GATEWAY_UP[0] = False
    for _ in range(2):
        with pytest.raises(ConnectionError):
            charge(1)
    with pytest.raises(CircuitOpenError):
        charge(1)
    GATEWAY_UP[0] = True

def test_a_payment_goes_through():
    assert charge(5) == "charged 5"

def test_an_inventory_breaker_that_trips_at_once():
    assert APP.breakers()("inventory", fail_max=1).fail_max == 1

def test_an_inventory_breaker_with_other_settings():
    assert APP.breakers()("inventory", fail_max=3).fail_max == 3
"""

AUTOUSE = """
@pytest.fixture(autouse=True)
def _fresh(fresh_breakers):
    yield
"""


def run_suite(tmp_path, *, isolated: bool) -> str:
    test_file = tmp_path / "test_service_suite.py"
    test_file.write_text(SUITE.format(autouse=AUTOUSE if isolated else ""), encoding="utf-8")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(test_file),
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=120,
    )
    return result.stdout


def test_with_fresh_breakers_every_test_of_the_suite_passes(tmp_path):
    out = run_suite(tmp_path, isolated=True)
    assert "4 passed" in out, out


def test_without_them_the_suite_fails_where_the_issue_says(tmp_path):
    out = run_suite(tmp_path, isolated=False)  # the control: the isolation is what helps
    assert "2 failed, 2 passed" in out, out
    assert "test_a_payment_goes_through" in out
    assert "test_an_inventory_breaker_with_other_settings" in out
    assert "was made with" in out


def test_the_block_restores_the_state_and_registry_it_found():
    kept = CircuitBreaker("isolation-kept", fail_max=2)
    kept.open()
    with isolated_breakers():
        assert kept.state is CircuitState.CLOSED
        assert kept.failures == 0
        made = CircuitBreaker("isolation-made", fail_max=1)
        assert CircuitBreaker.registered()["isolation-made"] is made
        kept.open()
        assert CircuitBreaker("isolation-kept", fail_max=2) is kept  # still shared in the block
    assert kept.state is CircuitState.OPEN
    assert "isolation-made" not in CircuitBreaker.registered()
    assert CircuitBreaker("isolation-kept", fail_max=2) is kept
    kept.close()


def test_blocks_nest():
    breaker = CircuitBreaker("isolation-nested", fail_max=1)
    breaker.open()
    with isolated_breakers():
        breaker.open()
        with isolated_breakers():
            assert breaker.state is CircuitState.CLOSED
        assert breaker.state is CircuitState.OPEN
    assert breaker.state is CircuitState.OPEN
    breaker.close()


def test_a_call_in_flight_across_the_reset_does_not_count():
    breaker = CircuitBreaker("isolation-in-flight", fail_max=1)
    started, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    @breaker
    def slow_failure() -> None:
        started.set()
        release.wait(5)
        raise ConnectionError("late")

    def call() -> None:
        try:
            slow_failure()
        except ConnectionError as error:
            errors.append(error)

    worker = threading.Thread(target=call)
    worker.start()
    started.wait(5)
    with isolated_breakers():
        release.set()
        worker.join(5)
        assert errors  # it failed, but started before the test's fresh state
        assert breaker.state is CircuitState.CLOSED


def test_the_containers_breaker_registry_follows_the_isolation():
    container = ResilienceContainer()
    container.settings.override(ResilienceSettings(breaker={"fail_max": 1}))
    with isolated_breakers():
        scratch = container.breakers()("isolation-di", fail_max=1)
        scratch.open()
        with pytest.raises(CircuitOpenError):
            scratch.call(lambda: None)
    again = container.breakers()("isolation-di", fail_max=4)  # no "made with" collision
    assert again is not scratch
    assert again.state is CircuitState.CLOSED
