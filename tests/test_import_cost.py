"""Importing a block pulls in only what it needs: services pay for the blocks they use."""

from __future__ import annotations

import functools
import subprocess
import sys

import pytest

HEAVY = ("sqlalchemy", "redis", "dependency_injector", "tenacity", "pybreaker")


@functools.cache
def imported_by(module: str) -> frozenset[str]:
    """Top-level packages ``python -X importtime -c "import <module>"`` reports importing."""
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    names = set()
    for line in run.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return frozenset(names)


@pytest.mark.parametrize("heavy", HEAVY)
def test_importing_resilience_imports_no_heavy_dependency(heavy: str) -> None:
    """tenacity and pybreaker load on the first failure or storage, the rest never."""
    imported = imported_by("buttress.resilience")
    assert "buttress" in imported  # the probe sees what was imported
    assert heavy not in imported


@pytest.mark.parametrize("heavy", HEAVY)
def test_importing_caching_imports_no_heavy_dependency(heavy: str) -> None:
    """redis loads when a RedisCache is made; the other blocks' engines never."""
    imported = imported_by("buttress.caching")
    assert "cachetools" in imported  # the probe sees what was imported
    assert heavy not in imported
