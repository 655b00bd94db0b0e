"""The project's own checks: lint, and the benchmarks' smoke runs."""

from __future__ import annotations

import itertools
import subprocess
import sys

from tests.conftest import ROOT, require_postgres, require_redis, timeout


def test_ruff_finds_nothing() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def run_benchmark(*args: str, seconds: float) -> tuple[str, str]:
    """Run ``benchmarks/ARGS`` to completion; its stdout, and the tail of both streams for
    assertion messages. Fails the test if it exits non-zero."""
    result = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout(seconds),
    )
    output = result.stdout[-4000:] + result.stderr[-3000:]
    assert result.returncode == 0, output
    return result.stdout, output


def test_fanout_benchmark_smoke_run_delivers_everything() -> None:
    stdout, output = run_benchmark("benchmarks/fanout.py", "--quick", seconds=120)
    lines = stdout.splitlines()
    header = next(line for line in lines if line.startswith("| S | run"))
    lost = [cell.strip() for cell in header.split("|")].index("lost")
    runs = [
        line for line in lines if line.startswith("| ") and ("burst" in line or "steady" in line)
    ]
    assert len(runs) >= 4, output  # Agora and the reference, both runs
    assert all(line.split("|")[lost].strip() == "0" for line in runs), "deliveries were lost"


def test_connect_benchmark_smoke_run_opens_every_session() -> None:
    stdout, output = run_benchmark("benchmarks/connect.py", "--quick", seconds=120)
    rows = [line for line in stdout.splitlines() if line.startswith(("| hello", "| session"))]
    assert len(rows) >= 4, output  # Agora and the reference (node when installed), both phases
    assert all(line.split("|")[3].strip() == "200" for line in rows), output


def test_scaleout_benchmark_smoke_run_delivers_everything_across_nodes() -> None:
    require_redis()
    require_postgres()
    stdout, output = run_benchmark("benchmarks/scaleout.py", "--quick", seconds=180)
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| deployment | run"))
    header = [cell.strip() for cell in lines[start].split("|")]
    rows = [line.split("|") for line in itertools.takewhile(bool, lines[start + 2 :])]
    groups = [row[header.index("subscribers")].strip() for row in rows]
    # reference, one node and two nodes (same node, cross node, all), burst and two rates
    assert len(rows) == 3 + 3 + 9 and groups.count("cross node") == 3, output
    for column in ("lost", "dup", "disorder"):
        assert all(row[header.index(column)].strip() == "0" for row in rows), column
    assert "**2 processes vs 1**" in stdout and "**cross-node p99**" in stdout


def markdown_table(stdout: str, first_column: str) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of the markdown table whose first column is ``first_column``."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_column} |"))
    header = [cell.strip() for cell in lines[start].split("|")]
    rows = [
        [cell.strip() for cell in line.split("|")]
        for line in itertools.takewhile(bool, lines[start + 2 :])
    ]
    return header, rows


def test_acks_benchmark_smoke_run_answers_every_send_on_both_stores() -> None:
    require_redis()
    require_postgres()
    stdout, output = run_benchmark("benchmarks/acks.py", "--seconds", "0.5", seconds=180)
    header, rows = markdown_table(stdout, "deployment")
    column = {name: header.index(name) for name in ("deployment", "run", "unanswered", "errors")}
    # both deployments; at 100 and 1000/s: ping, 10 channels and 1 channel
    assert len(rows) == 2 * 2 * 3, output
    assert {row[column["deployment"]] for row in rows} == {
        "embedded (SQLite)",
        "scaled, 1 node (PostgreSQL + Redis)",
    }
    runs = [row[column["run"]] for row in rows]
    assert runs.count("ping (reference)") == 4 and runs.count("message.send, 1 channel") == 4
    for name in ("unanswered", "errors"):
        assert all(row[column[name]] == "0" for row in rows), name
    assert "the listener got every acknowledged message" in stdout, output


def test_pg_drivers_benchmark_smoke_run_appends_with_every_driver() -> None:
    require_postgres()
    stdout, output = run_benchmark(
        "benchmarks/pg_drivers.py", "--seconds", "0.2", "--rounds", "1", seconds=120
    )
    header, rows = markdown_table(stdout, "concurrency")
    drivers = [row[header.index("driver")] for row in rows]
    # concurrency 1 and 50, over many channels and over one, for each driver
    assert sorted(drivers) == ["asyncpg"] * 4 + ["asyncpg-noreset"] * 4 + ["psycopg"] * 4, output
    assert all(row[header.index("appends/s")] != "0" for row in rows), output
    assert "errors" not in stdout, output


def test_workshop_benchmark_smoke_run_delivers_every_vote_and_upvote() -> None:
    stdout, output = run_benchmark(
        "benchmarks/workshop.py", "--quick", "--no-reference", seconds=120
    )
    header, rows = markdown_table(stdout, "run")
    runs = [row[header.index("run")] for row in rows]
    # the two workshop phases, and fanout.py's steady run on Agora beside them
    assert runs == [
        "vote (`poll.vote`)",
        "upvote (`question.upvote`)",
        "fan-out steady (`message.send`)",
    ]
    assert all(row[header.index("lost")] == "0" for row in rows), output
    assert "poll voters 50, " in stdout and "upvotes 50" in stdout, output


def test_fuzz_benchmark_smoke_run_finds_no_wrong_answer_and_no_traceback() -> None:
    stdout, output = run_benchmark("benchmarks/fuzz.py", "--seconds", "3", seconds=120)
    _, rows = markdown_table(stdout, "figure")
    figures = {row[1]: row[2] for row in rows}
    assert int(figures["frames sent"].replace(",", "")) > 0, output
    assert figures["answers outside what the docs allow"] == "0", output
    assert figures["tracebacks in the server log"] == "0", output
    assert figures["server still running"] == "yes", output


def test_soak_benchmark_smoke_run_loses_nothing() -> None:
    stdout, output = run_benchmark(
        "benchmarks/soak.py", "--minutes", "0.2", "--reconnect-s", "2", seconds=120
    )
    header, rows = markdown_table(stdout, "time")
    assert rows and all(row[header.index("not recovered")] == "0" for row in rows), output
    assert all(row[header.index("errors")] == "0" for row in rows), output
    assert "not seen by a receiver: 0, 0, 0, 0 " in stdout, output
    assert "seen with another text: 0; events out of offset order: 0" in stdout, output
    assert "tracebacks in the server log**: 0; server still running" in stdout, output
