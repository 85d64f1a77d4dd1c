"""Turn a pytest-benchmark JSON file into markdown tables of ratios to each group's baseline.

Usage::

    uv run pytest benchmarks --benchmark-only --benchmark-json=results.json
    uv run python benchmarks/report.py results.json [--output report.md]

One table per benchmark group. Each row shows the benchmark's name, its role
(``extra_info["role"]``: baseline, peer, buttress or reference), its median
time, the operations per second that median implies, and the ratio of its
median to the median of the group's baseline (the benchmark with
``extra_info["baseline"]`` true), so the baseline reads 1.00 and a row at 3.00
takes three times as long (ratios are printed with a multiplication sign).
Rows are sorted by that ratio. A group with no baseline, or with more than
one, is reported with a note, sorted by median, and without ratios. Any other
``extra_info`` entry with a number or text value (``benchmark.extra_info["body_runs"]
= 1``, say) becomes a column of its group's table, after the ratio, named by
its key; rows without it show a dash.

Pure standard library, so it runs anywhere the JSON file can be copied; only
``--plot`` needs matplotlib (a development dependency).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "BenchmarkRow",
    "ReportError",
    "format_duration",
    "format_ops",
    "format_ratio",
    "load",
    "main",
    "plot",
    "render",
    "rows",
]

NO_GROUP = "(no group)"
"""How a benchmark without a ``group`` is listed."""

TIMES = "\N{MULTIPLICATION SIGN}"
"""Suffix of a ratio, as in 1.00 followed by this sign."""

_ROLE_KEYS = frozenset({"role", "baseline"})
"""``extra_info`` keys the report reads itself; every other scalar entry is a column."""

_DURATION_UNITS = (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9))


class ReportError(ValueError):
    """The file is not a pytest-benchmark JSON report this script can read."""


@dataclass(frozen=True, slots=True)
class BenchmarkRow:
    """One benchmark of a group, as read from the JSON file."""

    name: str
    group: str
    role: str
    baseline: bool
    median: float
    """Median time of one call, in seconds."""
    extra: dict[str, str] = field(default_factory=dict)
    """Other ``extra_info`` entries with a number or text value, formatted for a column."""


def load(path: str | Path) -> dict[str, Any]:
    """Read a pytest-benchmark JSON file (written with ``--benchmark-json``).

    Args:
        path: The file to read.

    Returns:
        The decoded JSON object.

    Raises:
        ReportError: The file cannot be read, is not JSON, or has no list of
            ``benchmarks``.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise ReportError(
            f"{path} is not a pytest-benchmark report: expected a JSON object with a "
            '"benchmarks" list, as written by pytest --benchmark-json=FILE'
        )
    return data


def rows(data: Mapping[str, Any]) -> list[BenchmarkRow]:
    """Extract the benchmarks of a decoded report.

    Args:
        data: The object returned by `load`.

    Returns:
        One row per benchmark, in file order.

    Raises:
        ReportError: A benchmark lacks a name or a positive median.
    """
    result = []
    for index, entry in enumerate(_list(data, "benchmarks")):
        if not isinstance(entry, dict):
            raise ReportError(f"benchmark #{index} is not a JSON object")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise ReportError(f"benchmark #{index} has no name")
        stats = entry.get("stats")
        median = stats.get("median") if isinstance(stats, dict) else None
        if (
            isinstance(median, bool)
            or not isinstance(median, int | float)
            or not math.isfinite(median)
            or median <= 0
        ):
            raise ReportError(f"benchmark {name!r} has no positive stats.median")
        extra = entry.get("extra_info")
        extra = extra if isinstance(extra, dict) else {}
        group = entry.get("group")
        role = extra.get("role")
        result.append(
            BenchmarkRow(
                name=name,
                group=group if isinstance(group, str) and group else NO_GROUP,
                role=role if isinstance(role, str) and role else "—",
                baseline=extra.get("baseline") is True,
                median=float(median),
                extra=_extra_columns(extra),
            )
        )
    return result


def format_duration(seconds: float) -> str:
    """Format a duration with three significant digits in s, ms, µs or ns.

    Args:
        seconds: The duration, in seconds.

    Returns:
        For instance ``"412 ns"``, ``"1.23 µs"`` or ``"12.3 ms"``.
    """
    index = next(
        (i for i, (_, scale) in enumerate(_DURATION_UNITS) if seconds >= scale),
        len(_DURATION_UNITS) - 1,
    )
    text = _three_digits(seconds / _DURATION_UNITS[index][1])
    # Rounding may carry into the unit above: 999.7 ns is "1.00 µs", not "1000 ns".
    if index > 0 and float(text) >= 1000:
        index -= 1
        text = _three_digits(seconds / _DURATION_UNITS[index][1])
    unit = _DURATION_UNITS[index][0]
    return f"{text} {unit}"


def format_ops(seconds: float) -> str:
    """Format the operations per second of a call taking ``seconds``.

    Args:
        seconds: The duration of one call, in seconds.

    Returns:
        The rate with thousands separators, for instance ``"2,427,184"``;
        a rate under 100 keeps a decimal or two (``"12.5"``).
    """
    ops = 1.0 / seconds
    if ops >= 100:  # below 100/s the fraction is worth showing
        return f"{ops:,.0f}"
    return _three_digits(ops)


def format_ratio(ratio: float) -> str:
    """Format a ratio to the baseline with three significant digits and a multiplication sign."""
    return f"{_three_digits(ratio)}{TIMES}"


def render(data: Mapping[str, Any]) -> str:
    """Render a decoded pytest-benchmark report as markdown.

    Args:
        data: The object returned by `load`.

    Returns:
        A markdown document: a heading with the run's date and machine, then
        one table per group, groups in name order.

    Raises:
        ReportError: A benchmark lacks a name or a positive median.
    """
    lines = ["# Benchmark report", "", *_header(data), ""]
    groups: dict[str, list[BenchmarkRow]] = {}
    for row in rows(data):
        groups.setdefault(row.group, []).append(row)
    if not groups:
        lines += ["No benchmarks in this file.", ""]
    for group in sorted(groups, key=lambda name: (name == NO_GROUP, name)):
        lines += _group_table(group, groups[group])
    return "\n".join(lines)


_COLOURS = {"buttress": "#3f51b5", "peer": "#e07b39", "reference": "#9e9e9e"}


def plot(data: Mapping[str, Any], path: str | Path) -> None:
    """Draw every group's ratios to its baseline in one PNG, Buttress against the others.

    One line per group (groups without exactly one baseline are left out); on
    it a dot per benchmark at its ratio, on a logarithmic axis where the
    baseline stands at 1. The title carries the run's date and machine.

    Args:
        data: The object returned by `load`.
        path: Where to write the PNG.

    Raises:
        ReportError: A benchmark lacks a name or a positive median.
    """
    import matplotlib as mpl  # noqa: PLC0415 - only --plot needs it

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    groups: dict[str, list[BenchmarkRow]] = {}
    for row in rows(data):
        groups.setdefault(row.group, []).append(row)
    ratioed = []
    for group in sorted(groups, reverse=True):
        baselines = [row for row in groups[group] if row.baseline]
        if len(baselines) == 1:
            base = baselines[0].median
            ratioed.append((group, [(row, row.median / base) for row in groups[group]]))
    figure, axes = plt.subplots(figsize=(9, 0.32 * len(ratioed) + 1.6))
    for index, (_, members) in enumerate(ratioed):
        for row, ratio in members:
            if row.baseline:
                continue
            colour = _COLOURS.get(row.role, "#607d8b")
            size = 46 if row.role == "buttress" else 22
            axes.scatter(ratio, index, s=size, color=colour, zorder=3)
    axes.axvline(1.0, color="black", linewidth=0.8)
    axes.set_xscale("log")
    axes.set_yticks(range(len(ratioed)), [group for group, _ in ratioed], fontsize=7)
    axes.set_xlabel("time relative to the group's baseline (log scale; left is faster)")
    axes.grid(axis="x", which="both", alpha=0.3)
    for role, colour in _COLOURS.items():
        axes.scatter([], [], color=colour, label=role)
    axes.legend(loc="lower right", fontsize=7)
    header = " · ".join(line.removeprefix("- ") for line in _header(data)[:3])
    axes.set_title(f"Buttress benchmarks — {header}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line: read a JSON report and print or write the markdown.

    Args:
        argv: The arguments, without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 1 if the report cannot be read or written.
    """
    parser = argparse.ArgumentParser(
        prog="report.py",
        description="Markdown tables of pytest-benchmark results, with ratios to each "
        "group's baseline.",
    )
    parser.add_argument("results", type=Path, help="JSON file from pytest --benchmark-json=FILE")
    parser.add_argument(
        "-o", "--output", type=Path, help="write the markdown to this file instead of stdout"
    )
    parser.add_argument("--plot", type=Path, help="also draw the ratios into this PNG file")
    args = parser.parse_args(argv)
    try:
        data = load(args.results)
        markdown = render(data)
        if args.plot is not None:
            plot(data, args.plot)
    except ReportError as exc:
        print(f"report.py: error: {exc}", file=sys.stderr)
        return 1
    if args.output is None:
        sys.stdout.write(markdown)
        return 0
    try:
        args.output.write_text(markdown, encoding="utf-8")
    except OSError as exc:
        print(f"report.py: error: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


def _group_table(group: str, members: list[BenchmarkRow]) -> list[str]:
    baselines = [row for row in members if row.baseline]
    lines = [f"## {_cell(group)}", ""]
    base: BenchmarkRow | None = None
    if len(baselines) == 1:
        base = baselines[0]
        ordered = sorted(members, key=lambda row: (row.median / base.median, row.name))
    else:
        if baselines:
            names = ", ".join(f"`{row.name}`" for row in baselines)
            lines.append(f"> **Note:** {len(baselines)} baselines ({names}); no ratios.")
        else:
            lines.append(
                '> **Note:** no baseline in this group (no `extra_info["baseline"]`); no ratios.'
            )
        lines.append("")
        ordered = sorted(members, key=lambda row: (row.median, row.name))
    extras = sorted({key for row in members for key in row.extra})
    lines += [
        "| Benchmark | Role | Median | ops/s (1/median) | Ratio to baseline |"
        + "".join(f" {_cell(key)} |" for key in extras),
        "|:--|:--|--:|--:|--:|" + "--:|" * len(extras),
    ]
    for row in ordered:
        ratio = "—" if base is None else format_ratio(row.median / base.median)
        name = f"**{_cell(row.name)}**" if row is base else _cell(row.name)
        lines.append(
            f"| {name} | {_cell(row.role)} | {format_duration(row.median)} "
            f"| {format_ops(row.median)} | {ratio} |"
            + "".join(f" {_cell(row.extra.get(key, '—'))} |" for key in extras)
        )
    lines.append("")
    return lines


def _header(data: Mapping[str, Any]) -> list[str]:
    lines = [f"- Date: {_date(data.get('datetime'))}"]
    machine = data.get("machine_info")
    machine = machine if isinstance(machine, dict) else {}
    node = _text(machine.get("node"))
    processor = _text(machine.get("processor"))
    cpu = machine.get("cpu")
    cpu = cpu if isinstance(cpu, dict) else {}
    brand = _text(cpu.get("brand_raw"))
    if processor == "unknown":
        processor = brand
    elif brand not in {"unknown", processor}:
        processor = f"{processor}, {brand}"
    details = [_text(machine.get("machine"))]
    count = cpu.get("count")
    if isinstance(count, int) and not isinstance(count, bool):
        details.append(f"{count} CPUs")
    details = [detail for detail in details if detail != "unknown" and detail not in processor]
    if details:
        processor = f"{processor} ({', '.join(details)})"
    implementation = machine.get("python_implementation")
    python = _text(machine.get("python_version"))
    if isinstance(implementation, str) and implementation:
        python = f"{implementation} {python}"
    lines += [
        f"- Machine: {_cell(node)}",
        f"- Processor: {_cell(processor)}",
        f"- Python: {_cell(python)}",
    ]
    commit = data.get("commit_info")
    if isinstance(commit, dict) and isinstance(commit.get("id"), str) and commit["id"]:
        dirty = " (dirty)" if commit.get("dirty") is True else ""
        lines.append(f"- Commit: `{commit['id'][:12]}`{dirty}")
    return lines


def _date(value: object) -> str:
    if not isinstance(value, str) or not value:
        return "unknown"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return _cell(value)
    if moment.tzinfo is None:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z")


def _three_digits(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _list(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list):
        raise ReportError(f'expected a "{key}" list')
    return value


def _extra_columns(extra: Mapping[str, Any]) -> dict[str, str]:
    """The ``extra_info`` entries shown as columns: numbers and text, by key."""
    columns: dict[str, str] = {}
    for key, value in extra.items():
        if key in _ROLE_KEYS or isinstance(value, bool):
            continue
        if isinstance(value, int):
            columns[key] = str(value)
        elif isinstance(value, float):
            columns[key] = f"{value:g}"
        elif isinstance(value, str):
            columns[key] = value
    return columns


def _text(value: object) -> str:
    return value if isinstance(value, str) and value else "unknown"


def _cell(text: str) -> str:
    """Escape text for a markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


if __name__ == "__main__":
    raise SystemExit(main())
