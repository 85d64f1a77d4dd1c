"""The house's layering rules (DESIGN.md, "Blocks stand alone"), checked on the source.

`resilience`, `caching` and `persistence` never import each other; each may import
`errors` and `domain` (and the shared text helpers; `caching` also reads its
settings). `messaging` is the application layer: it may import `persistence`,
`resilience`, `domain` and `errors`, and none of them imports it. `di` is the
composition root and `testing` the test kit: they may import everything. Every
import counts, those under ``TYPE_CHECKING`` included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "buttress"

FOUNDATION = {"errors", "_text"}
ALLOWED: dict[str, set[str]] = {
    "errors": {"_text"},
    "_text": set(),
    "settings": FOUNDATION,
    "domain": FOUNDATION,
    "persistence": FOUNDATION | {"domain"},
    "resilience": FOUNDATION | {"domain"},
    "caching": FOUNDATION | {"domain", "settings"},
    "messaging": FOUNDATION | {"domain", "persistence", "resilience"},
}
"""What each part of the package may import besides itself (`di` and `testing`: anything)."""


def imported_parts(source: str) -> set[str]:
    """The parts of ``buttress`` (``domain``, ``errors``...) a module's source imports."""
    parts = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            pieces = name.split(".")
            if pieces[0] == "buttress" and len(pieces) > 1:
                parts.add(pieces[1])
    return parts


def part_of(path: Path) -> str:
    relative = path.relative_to(SRC)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def violations(files: dict[str, str]) -> list[str]:
    """``path: imports x`` for each import a part may not make; ``files`` maps path to source."""
    found = []
    for path, source in sorted(files.items()):
        part = part_of(Path(path))
        allowed = ALLOWED.get(part)
        if allowed is None:
            continue  # di, testing, the package's __init__: anything
        found += [
            f"{Path(path).relative_to(SRC)}: imports buttress.{other}"
            for other in sorted(imported_parts(source) - allowed - {part})
            if other not in ("__version__", "py")
        ]
    return found


def test_every_block_imports_only_what_the_layering_allows() -> None:
    files = {str(path): path.read_text() for path in SRC.rglob("*.py")}
    assert len(files) > 40
    assert violations(files) == []


@pytest.mark.parametrize(
    ("part", "line"),
    [
        ("persistence", "from buttress.messaging import MessageBus"),
        ("caching", "import buttress.persistence._model"),
        ("resilience", "from buttress import caching"),
        ("domain", "if TYPE_CHECKING:\n    from buttress.persistence import Page"),
        ("messaging", "from buttress.di import check"),
    ],
)
def test_a_forbidden_import_is_found(part: str, line: str) -> None:
    """The control: each rule catches a module that breaks it."""
    path = str(SRC / part / "_broken.py")
    assert len(violations({path: f"from typing import TYPE_CHECKING\n{line}\n"})) == 1
