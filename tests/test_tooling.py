"""The project's own checks: lint, and the benchmarks' smoke runs."""

from __future__ import annotations

import itertools
import subprocess
import sys

from tests.conftest import ROOT, require_redis, timeout


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


def test_scaleout_benchmark_smoke_run_delivers_everything_across_nodes() -> None:
    require_redis()
    result = subprocess.run(
        [sys.executable, "benchmarks/scaleout.py", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout(180),
    )
    output = result.stdout[-4000:] + result.stderr[-3000:]
    assert result.returncode == 0, output
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| deployment | run"))
    header = [cell.strip() for cell in lines[start].split("|")]
    rows = [line.split("|") for line in itertools.takewhile(bool, lines[start + 2 :])]
    groups = [row[header.index("subscribers")].strip() for row in rows]
    # reference, one node and two nodes (same node, cross node, all), burst and two rates
    assert len(rows) == 3 + 3 + 9 and groups.count("cross node") == 3, output
    for column in ("lost", "dup", "disorder"):
        assert all(row[header.index(column)].strip() == "0" for row in rows), column
    assert "**2 processes vs 1**" in result.stdout and "**cross-node p99**" in result.stdout
