"""Running the ``agora`` admin commands as real subprocesses, against a server's storage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, timeout


def agora(*args: str | Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``python -m server ARGS``: its exit code, stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "server", *map(str, args)],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout(60),
    )


def ok(*args: str | Path, stdin: str = "") -> list[list[str]]:
    """Run a command that must succeed; its output as rows of tab-separated cells."""
    done = agora(*args, stdin=stdin)
    assert done.returncode == 0, done.stderr
    return [line.split("\t") for line in done.stdout.splitlines()]


def storage(server: Any) -> list[str]:
    """The storage options that name a running deployment's store."""
    database = getattr(server, "database", None)
    if database is not None:
        return ["--database", database]
    return ["--db", str(server.db)]
