"""Drive another Python process line by line: one command in, one answer out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


class Peer:
    """Runs ``script`` with ``args``; it prints ``ready``, then answers each command with a line."""

    def __init__(self, script: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.ask() == "ready"

    def ask(self, command: str | None = None) -> str:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None
        assert stdout is not None
        if command is not None:
            stdin.write(command + "\n")
            stdin.flush()
        return stdout.readline().strip()

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()
