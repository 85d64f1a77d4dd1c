"""benchmarks/report.py: markdown tables of ratios to each group's baseline."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "report.py"
X = "\N{MULTIPLICATION SIGN}"


@pytest.fixture(scope="module")
def report() -> Iterator[Any]:
    """The script, imported by path: benchmarks/ is not a package."""
    name = "_buttress_benchmarks_report"
    spec = importlib.util.spec_from_file_location(name, SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[name]


def bench(
    name: str, median: float, *, group: str | None = "domain.demo", role: str | None = "peer"
) -> dict[str, Any]:
    """One entry shaped like pytest-benchmark's ``--benchmark-json`` output."""
    extra: dict[str, Any] = {}
    if role is not None:
        extra = {"role": role, "baseline": role == "baseline"}
    return {
        "group": group,
        "name": name,
        "fullname": f"benchmarks/test_demo.py::{name}",
        "params": None,
        "param": None,
        "extra_info": extra,
        "options": {"timer": "perf_counter", "min_rounds": 5},
        "stats": {
            "min": median * 0.9,
            "max": median * 3,
            "mean": median * 1.1,
            "stddev": median * 0.2,
            "rounds": 100,
            "median": median,
            "iqr": median * 0.1,
            "ops": 1 / (median * 1.1),
            "iterations": 1,
        },
    }


def results(*benchmarks: dict[str, Any]) -> dict[str, Any]:
    return {
        "machine_info": {
            "node": "bench-host",
            "processor": "x86_64",
            "machine": "x86_64",
            "python_implementation": "CPython",
            "python_version": "3.11.7",
            "system": "Linux",
            "cpu": {"brand_raw": "AMD EPYC", "count": 2},
        },
        "commit_info": {"id": "f60c951bd4c0a1b2c3d4", "dirty": True, "branch": "main"},
        "benchmarks": list(benchmarks),
        "datetime": "2025-03-04T05:06:07.123456+00:00",
        "version": "5.1.0",
    }


def table(markdown: str, group: str) -> list[list[str]]:
    """The body rows of ``group``'s table, as lists of cells."""
    section = markdown.split(f"## {group}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[2:]]


def test_ratios_are_medians_over_the_baseline_median_and_rows_sort_by_ratio(report: Any) -> None:
    markdown = report.render(
        results(
            bench("test_slow_peer", 5e-6),
            bench("test_dataclass", 2e-6, role="baseline"),
            bench("test_ours", 3e-6, role="buttress"),
            bench("test_fast_peer", 1e-6),
        )
    )

    assert table(markdown, "domain.demo") == [
        ["test_fast_peer", "peer", "1.00 µs", "1,000,000", f"0.50{X}"],
        ["**test_dataclass**", "baseline", "2.00 µs", "500,000", f"1.00{X}"],
        ["test_ours", "buttress", "3.00 µs", "333,333", f"1.50{X}"],
        ["test_slow_peer", "peer", "5.00 µs", "200,000", f"2.50{X}"],
    ]
    assert "Note" not in markdown


def test_a_reference_row_shows_its_role_and_a_ratio_without_being_the_baseline(
    report: Any,
) -> None:
    markdown = report.render(
        results(
            bench("test_ours", 3e-7, role="buttress"),
            bench("test_pass_through", 2e-7, role="baseline"),
            bench("test_bare_call", 1.2e-7, role="reference"),
        )
    )

    assert table(markdown, "domain.demo") == [
        ["test_bare_call", "reference", "120 ns", "8,333,333", f"0.60{X}"],
        ["**test_pass_through**", "baseline", "200 ns", "5,000,000", f"1.00{X}"],
        ["test_ours", "buttress", "300 ns", "3,333,333", f"1.50{X}"],
    ]
    assert "Note" not in markdown


def test_the_reference_fixture_records_its_role_and_is_no_baseline() -> None:
    """benchmarks/conftest.py: each role fixture records its role for the report."""
    spec = importlib.util.spec_from_file_location(
        "_buttress_benchmarks_conftest", BENCHMARKS / "conftest.py"
    )
    assert spec is not None
    assert spec.loader is not None
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)

    class Benchmark:
        extra_info: dict[str, Any]

        def __init__(self) -> None:
            self.extra_info = {}

    recorded = {
        name: conftest.mark_role(Benchmark(), role).extra_info
        for name, role in conftest.ROLE_FIXTURES.items()
    }

    assert recorded == {
        "baseline": {"role": "baseline", "baseline": True},
        "peer": {"role": "peer", "baseline": False},
        "ours": {"role": "buttress", "baseline": False},
        "reference": {"role": "reference", "baseline": False},
    }


def test_groups_are_reported_separately_each_against_its_own_baseline(report: Any) -> None:
    markdown = report.render(
        results(
            bench("test_b_base", 1e-3, group="cache.get", role="baseline"),
            bench("test_a_base", 1e-7, group="domain.value-construct", role="baseline"),
            bench("test_a_ours", 4e-7, group="domain.value-construct", role="buttress"),
            bench("test_b_ours", 1.5e-3, group="cache.get", role="buttress"),
        )
    )

    assert markdown.index("## cache.get") < markdown.index("## domain.value-construct")
    assert [row[-1] for row in table(markdown, "cache.get")] == [f"1.00{X}", f"1.50{X}"]
    assert [row[-1] for row in table(markdown, "domain.value-construct")] == [
        f"1.00{X}",
        f"4.00{X}",
    ]


def test_a_group_without_baseline_gets_a_note_and_no_ratios(report: Any) -> None:
    markdown = report.render(
        results(bench("test_second", 2e-6), bench("test_first", 1e-6, role="buttress"))
    )

    section = markdown.split("## domain.demo\n", 1)[1]
    assert "no baseline in this group" in section
    assert table(markdown, "domain.demo") == [
        ["test_first", "buttress", "1.00 µs", "1,000,000", "—"],
        ["test_second", "peer", "2.00 µs", "500,000", "—"],
    ]


def test_a_group_with_two_baselines_gets_a_note_and_no_ratios(report: Any) -> None:
    markdown = report.render(
        results(bench("test_one", 2e-6, role="baseline"), bench("test_two", 1e-6, role="baseline"))
    )

    assert "2 baselines (`test_one`, `test_two`); no ratios" in markdown
    assert [row[0] for row in table(markdown, "domain.demo")] == ["test_two", "test_one"]
    assert all(row[-1] == "—" for row in table(markdown, "domain.demo"))


def test_the_baseline_is_the_extra_info_flag_not_the_role(report: Any) -> None:
    flagged = bench("test_flagged", 4e-6, role=None)
    flagged["extra_info"] = {"baseline": True}
    markdown = report.render(results(bench("test_other", 2e-6), flagged))

    assert table(markdown, "domain.demo") == [
        ["test_other", "peer", "2.00 µs", "500,000", f"0.50{X}"],
        ["**test_flagged**", "—", "4.00 µs", "250,000", f"1.00{X}"],
    ]


def test_other_extra_info_entries_become_columns_of_their_group_only(report: Any) -> None:
    stampede = [
        bench("test_base", 2e-2, group="caching.stampede", role="baseline"),
        bench("test_ours", 2e-2, group="caching.stampede", role="buttress"),
        bench("test_peer", 3e-2, group="caching.stampede"),
        bench("test_reference", 1e-2, group="caching.stampede", role="reference"),
    ]
    stampede[0]["extra_info"]["body_runs"] = 32
    stampede[1]["extra_info"] |= {"body_runs": 1, "callers": "32 threads"}
    stampede[2]["extra_info"] |= {"body_runs": 1, "share": 0.25, "flag": True, "list": [1]}
    markdown = report.render(results(*stampede, bench("test_x", 1e-6, role="baseline")))

    section = markdown.split("## caching.stampede\n", 1)[1]
    assert (
        "| Benchmark | Role | Median | ops/s (1/median) | Ratio to baseline "
        "| body_runs | callers | share |\n|:--|:--|--:|--:|--:|--:|--:|--:|\n"
    ) in section
    assert table(markdown, "caching.stampede") == [
        ["test_reference", "reference", "10.0 ms", "100", f"0.50{X}", "—", "—", "—"],
        ["**test_base**", "baseline", "20.0 ms", "50.0", f"1.00{X}", "32", "—", "—"],
        ["test_ours", "buttress", "20.0 ms", "50.0", f"1.00{X}", "1", "32 threads", "—"],
        ["test_peer", "peer", "30.0 ms", "33.3", f"1.50{X}", "1", "—", "0.25"],
    ]
    assert "| **test_x** | baseline | 1.00 µs | 1,000,000 | 1.00" + X + " |\n" in markdown


def test_benchmarks_without_a_group_come_last(report: Any) -> None:
    markdown = report.render(results(bench("test_loose", 1e-6, group=None), bench("test_x", 1e-6)))

    assert markdown.index("## domain.demo") < markdown.index("## (no group)")
    assert table(markdown, "(no group)")[0][0] == "test_loose"


def test_names_are_escaped_for_markdown_tables(report: Any) -> None:
    markdown = report.render(results(bench("test_param[a|b]", 1e-6, role="baseline")))

    assert "| **test_param[a\\|b]** |" in markdown


def test_the_header_shows_date_machine_processor_python_and_commit(report: Any) -> None:
    markdown = report.render(results(bench("test_x", 1e-6, role="baseline")))

    header = markdown.split("\n## ", 1)[0]
    assert "- Date: 2025-03-04 05:06:07 UTC" in header
    assert "- Machine: bench-host" in header
    assert "- Processor: x86_64, AMD EPYC (2 CPUs)" in header
    assert "- Python: CPython 3.11.7" in header
    assert "- Commit: `f60c951bd4c0` (dirty)" in header


def test_a_sparse_header_says_unknown(report: Any) -> None:
    data: dict[str, Any] = {"benchmarks": []}

    markdown = report.render(data)

    assert "- Date: unknown" in markdown
    assert "- Machine: unknown" in markdown
    assert "- Processor: unknown" in markdown
    assert "No benchmarks in this file." in markdown
    assert "Commit" not in markdown


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (4e-10, "0.40 ns"),
        (4.12e-7, "412 ns"),
        (9.9996e-7, "1.00 µs"),
        (1.234e-6, "1.23 µs"),
        (1.234e-5, "12.3 µs"),
        (1.234e-4, "123 µs"),
        (1.234e-2, "12.3 ms"),
        (2.5, "2.50 s"),
        (1234.0, "1234 s"),
    ],
)
def test_durations_use_three_significant_digits_in_the_fitting_unit(
    report: Any, seconds: float, expected: str
) -> None:
    assert report.format_duration(seconds) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(4.12e-7, "2,427,184"), (0.001, "1,000"), (0.08, "12.5"), (2.0, "0.50")],
)
def test_ops_per_second_is_one_over_the_median(report: Any, seconds: float, expected: str) -> None:
    assert report.format_ops(seconds) == expected


def test_main_writes_the_output_file(
    report: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "results.json"
    source.write_text(json.dumps(results(bench("test_x", 1e-6, role="baseline"))), "utf-8")
    output = tmp_path / "report.md"

    assert report.main([str(source), "--output", str(output)]) == 0

    written = output.read_text("utf-8")
    assert written.startswith("# Benchmark report\n")
    assert f"| **test_x** | baseline | 1.00 µs | 1,000,000 | 1.00{X} |" in written
    assert written == report.render(report.load(source))
    assert capsys.readouterr().out == ""


def test_main_prints_to_stdout_without_output(
    report: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "results.json"
    source.write_text(json.dumps(results(bench("test_x", 1e-6, role="baseline"))), "utf-8")

    assert report.main([str(source)]) == 0

    assert capsys.readouterr().out == report.render(report.load(source))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("{not json", "is not JSON"),
        ('{"tests": []}', "is not a pytest-benchmark report"),
        ('{"benchmarks": [{"name": "test_x", "stats": {}}]}', "no positive stats.median"),
        ('{"benchmarks": [{"stats": {"median": 1}}]}', "has no name"),
    ],
)
def test_main_reports_an_unreadable_file_and_fails(
    report: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    message: str,
) -> None:
    source = tmp_path / "results.json"
    if content is not None:
        source.write_text(content, "utf-8")

    assert report.main([str(source)]) == 1

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("report.py: error: ")
    assert message in captured.err


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2025-03-04T05:06:07+02:00", "2025-03-04 05:06:07 UTC+02:00"),
        ("2025-03-04T05:06:07", "2025-03-04 05:06:07"),
        ("yesterday", "yesterday"),
    ],
)
def test_the_date_is_shown_as_written(report: Any, stamp: str, expected: str) -> None:
    data = results(bench("test_x", 1e-6, role="baseline"))
    data["datetime"] = stamp

    assert f"- Date: {expected}\n" in report.render(data)


def test_plot_draws_every_group_with_one_baseline_into_a_png(report: Any, tmp_path: Path) -> None:
    source = tmp_path / "results.json"
    source.write_text(
        json.dumps(
            results(
                bench("test_raw", 1e-6, role="baseline"),
                bench("test_ours", 1.2e-6, role="buttress"),
                bench("test_peer", 3e-6, role="peer"),
                bench("test_alone", 2e-6, group="domain.no-baseline", role="buttress"),
            )
        ),
        encoding="utf-8",
    )
    image = tmp_path / "ratios.png"
    assert report.main([str(source), "--output", str(tmp_path / "r.md"), "--plot", str(image)]) == 0
    assert image.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
