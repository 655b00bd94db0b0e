"""The project's own checks: lint, and the benchmark's smoke run."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT, timeout


def test_ruff_finds_nothing() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_fanout_benchmark_smoke_run_delivers_everything() -> None:
    result = subprocess.run(
        [sys.executable, "benchmarks/fanout.py", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout(120),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| S | run"))
    lost = [cell.strip() for cell in header.split("|")].index("lost")
    runs = [
        line for line in lines if line.startswith("| ") and ("burst" in line or "steady" in line)
    ]
    assert len(runs) >= 4, result.stdout[-3000:]  # Agora and the reference, both runs
    assert all(line.split("|")[lost].strip() == "0" for line in runs), "deliveries were lost"
