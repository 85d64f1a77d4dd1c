"""Generate the sync twins of Buttress's asyncio sources, or check they are current.

    uv run python scripts/unasync.py           # rewrite the generated files
    uv run python scripts/unasync.py --check   # exit 1 if one is stale (CI)

Each async source is written so that taking ``async``/``await`` away, and the
``Async`` prefix off names, leaves its sync twin; the result is formatted by ruff.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PAIRS = {
    "src/buttress/persistence/_sqlalchemy_async.py": "src/buttress/persistence/_sqlalchemy.py",
    "src/buttress/persistence/_memory_async.py": "src/buttress/persistence/_memory.py",
    "src/buttress/testing/_contract_async.py": "src/buttress/testing/_contract.py",
    "src/buttress/messaging/_bus_async.py": "src/buttress/messaging/_bus.py",
    "src/buttress/messaging/_relay_async.py": "src/buttress/messaging/_relay.py",
}

RULES: list[tuple[str, str]] = [
    (r"(?m)^.*# unasync: drop\n", ""),  # a line only the async source needs
    (r"(?m)^(\s*).*# unasync: sync: (.*)\n", r"\1\2\n"),  # a line written otherwise in sync
    (r"\bAsync(?=[A-Z])", ""),  # AsyncSession -> Session, AsyncIterator -> Iterator
    (r"\basync_sessionmaker\b", "sessionmaker"),
    (r"\basynccontextmanager\b", "contextmanager"),
    (r"\bsqlalchemy\.ext\.asyncio\b", "sqlalchemy.orm"),
    (r"\basync (def|with|for)\b", r"\1"),
    (r"\bawait ", ""),
    (r"__a(enter|exit|iter|next)__", r"__\1__"),
    (r"\.sync_session\b", ""),
    (r"\b_async\b", ""),
    (r"(_[a-z]+)_async\b", r"\1"),  # module names: _sqlalchemy_async -> _sqlalchemy
    (r"\basyncio ", ""),  # prose: "an asyncio unit of work" -> "a unit of work"
    (r"\ban (?=[a-z]+ unit of work)", "a "),
]

HEADER = (
    "# Generated from {source} by scripts/unasync.py: do not edit by hand.\n"
    "# Change the source and run `uv run python scripts/unasync.py`.\n"
)


def generate(source: Path, target: Path) -> str:
    """The sync twin of ``source``, its imports sorted and formatted as ``target``."""
    text = source.read_text(encoding="utf-8")
    for pattern, replacement in RULES:
        text = re.sub(pattern, replacement, text)
    text = HEADER.format(source=source.name) + text
    for command in (["check", "--select", "I", "--fix", "--exit-zero", "--quiet"], ["format"]):
        text = subprocess.run(  # noqa: S603 - our own formatter on our own code
            [sys.executable, "-m", "ruff", *command, "--stdin-filename", target.name, "-"],
            input=text,
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout
    return text


def main() -> int:
    """Write or check every generated twin; 1 if ``--check`` found one stale."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a twin is stale")
    check = parser.parse_args().check
    stale = []
    for source_name, target_name in PAIRS.items():
        source, target = ROOT / source_name, ROOT / target_name
        if not source.exists():
            continue
        text = generate(source, target)
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current == text:
            continue
        if check:
            stale.append(target_name)
        else:
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target_name}")
    if stale:
        print(
            "stale generated files: "
            + ", ".join(stale)
            + "\nrun `uv run python scripts/unasync.py` and commit the result",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
