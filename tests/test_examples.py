"""The examples the README points newcomers to run, and exit 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_quickstart_runs_and_prints_its_transcript() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "postgresql://shop:***@db:5432/shop" in result.stdout
    assert "s3cret" not in result.stdout
    assert "rejected  BUTTRESS_DATABASE__POOL_SIZE" in result.stdout
    assert "read back from JSON as the same event" in result.stdout
    for line in [
        "wiring    checked: every provider can be built",
        "saved     order Q-1 (id 1, version 2)",
        "cached    total 42.50 EUR: 1 database read for 2 calls",
        "cached    after a discount and invalidate(): 40.00 EUR",
        "retried   exchange rate 1.08 after 3 attempts",
        "log       circuit quickstart-shipping opened",
        "breaker   open: refused without calling",
        "shutdown  engine disposed, cache closed",
    ]:
        assert line in result.stdout
    assert result.stderr == ""
    home = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    shown = home.split("```text\n", 1)[1].split("```", 1)[0]
    assert shown == result.stdout, "docs/index.md shows another transcript: paste the new one"
