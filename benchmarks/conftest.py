"""Conventions of the benchmark suite, as fixtures and a collection check.

Every benchmark belongs to a pytest-benchmark group named ``<block>.<hot-path>``
(``@pytest.mark.benchmark(group="domain.event-construct")``), one group per hot
path. Inside a group, each benchmark takes exactly one of the fixtures below
instead of ``benchmark``; they are ``benchmark`` itself, with its role recorded
in ``extra_info`` for ``benchmarks/report.py``:

- `baseline`: the bare thing a careful programmer would write without a library
  (a frozen dataclass, ``json.dumps``); exactly one per group, and the group's
  ratios are relative to it (``extra_info["baseline"] = True``).
- `peer`: a third-party library a user would otherwise pick.
- `ours`: Buttress's own implementation (role ``"buttress"``).
- `reference`: a floor to read the others against, not a contender: the bare
  undecorated call next to a pass-through decorator baseline, say. It gets a
  ratio to the baseline like any other row (often under 1.00).

The check at collection time rejects a benchmark without a well-formed group,
without a role fixture or with two, and a group with two baselines. A group
with no baseline is allowed, so a single benchmark can be run by node id; the
report notes such a group and prints no ratios for it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

import pytest

if TYPE_CHECKING:
    from pytest_benchmark.fixture import BenchmarkFixture

Role = Literal["baseline", "peer", "buttress", "reference"]

ROLE_FIXTURES: dict[str, Role] = {
    "baseline": "baseline",
    "peer": "peer",
    "ours": "buttress",
    "reference": "reference",
}
"""Fixture name to the role it records."""

GROUP_NAME = re.compile(r"[a-z][a-z0-9_]*\.[a-z0-9][a-z0-9-]*")
"""``<block>.<hot-path>``: a Buttress block (module) name, a dot, a kebab-case hot path."""


def mark_role(benchmark: BenchmarkFixture, role: Role) -> BenchmarkFixture:
    """Record ``role`` in the benchmark's ``extra_info`` and return the benchmark."""
    benchmark.extra_info["role"] = role
    benchmark.extra_info["baseline"] = role == "baseline"
    return benchmark


@pytest.fixture
def baseline(benchmark: BenchmarkFixture) -> BenchmarkFixture:
    """The ``benchmark`` fixture, recorded as its group's bare baseline."""
    return mark_role(benchmark, "baseline")


@pytest.fixture
def peer(benchmark: BenchmarkFixture) -> BenchmarkFixture:
    """The ``benchmark`` fixture, recorded as a third-party peer."""
    return mark_role(benchmark, "peer")


@pytest.fixture
def ours(benchmark: BenchmarkFixture) -> BenchmarkFixture:
    """The ``benchmark`` fixture, recorded as Buttress's implementation."""
    return mark_role(benchmark, "buttress")


@pytest.fixture
def reference(benchmark: BenchmarkFixture) -> BenchmarkFixture:
    """The ``benchmark`` fixture, recorded as a reference point (the bare call, say)."""
    return mark_role(benchmark, "reference")


@pytest.hookimpl(tryfirst=True)  # before -k/-m deselect, so every group is seen whole
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse to run benchmarks that break the conventions above."""
    problems: list[str] = []
    baselines: dict[str, list[str]] = {}
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "benchmark" not in fixtures:
            continue
        marker = item.get_closest_marker("benchmark")
        group = marker.kwargs.get("group") if marker is not None else None
        if not isinstance(group, str) or not GROUP_NAME.fullmatch(group):
            problems.append(
                f"{item.nodeid}: needs @pytest.mark.benchmark(group='<block>.<hot-path>'), "
                f"got group={group!r}"
            )
        roles = [name for name in ROLE_FIXTURES if name in fixtures]
        if len(roles) != 1:
            problems.append(
                f"{item.nodeid}: takes exactly one of the fixtures {', '.join(ROLE_FIXTURES)} "
                f"(it takes {', '.join(roles) or 'none'})"
            )
        elif roles == ["baseline"] and isinstance(group, str):
            baselines.setdefault(group, []).append(item.nodeid)
    problems += [
        f"group {group!r} has {len(ids)} baselines, one is allowed: {', '.join(ids)}"
        for group, ids in baselines.items()
        if len(ids) > 1
    ]
    if problems:
        raise pytest.UsageError("benchmark conventions broken:\n  " + "\n  ".join(problems))
