"""A private PostgreSQL cluster for the benchmarks: ``initdb`` into a temporary directory.

``initdb`` refuses to run as root; as root, the cluster belongs to the unprivileged user
``nobody`` (as in the tests' ``PostgresProcess``). ``fsync`` and ``synchronous_commit`` stay
at their defaults (on): an acknowledged append has waited for the WAL flush, as in production.
It listens on 127.0.0.1 only, on a free port, and is stopped (SIGINT, PostgreSQL's fast
shutdown) and removed when the benchmark ends; it gets SIGKILL if the benchmark is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

HOST = "127.0.0.1"
#: Debian's PostgreSQL 15; ``AGORA_POSTGRES_BIN`` names another directory of binaries.
POSTGRES_BIN = Path(os.environ.get("AGORA_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))

_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _die_with_parent() -> None:
    if _libc is not None:
        _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: even a kill -9 of us stops it


def postgres_installed() -> bool:
    return (POSTGRES_BIN / "initdb").exists() and (POSTGRES_BIN / "postgres").exists()


def fsync_latency(directory: Path, seconds: float = 1.0) -> tuple[float, float, int]:
    """The disk under ``directory``: 8 KiB written and ``fdatasync``ed over and over for
    ``seconds`` (as ``pg_test_fsync`` does; a commit of either store waits for one such
    flush). The p50 and p99 in ms, and how many were made."""
    path = directory / "fsync-probe"
    times: list[int] = []
    block = os.urandom(8192)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.perf_counter_ns()
            os.pwrite(fd, block, 0)
            os.fdatasync(fd)
            times.append(time.perf_counter_ns() - started)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    times.sort()
    p50, p99 = (times[min(len(times) - 1, int(q * len(times)))] / 1e6 for q in (0.5, 0.99))
    return p50, p99, len(times)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One private cluster; ``create_database`` gives each deployment a fresh database."""

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="agora-bench-pg-"))
        self.settings = {"max_connections": "200", **(settings or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.process: psutil.Process | None = None
        self._databases = 0

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://agora@{HOST}:{self.port}/{database}"

    def _as_owner(self) -> dict[str, Any]:
        return {"user": "nobody", "group": "nogroup"} if os.geteuid() == 0 else {}

    def start(self, cpus: set[int] | None = None) -> PostgresServer:
        if not postgres_installed():
            raise RuntimeError(
                f"PostgreSQL is not installed in {POSTGRES_BIN} (apt-get install -y postgresql)"
            )
        data = self.directory / "data"
        if os.geteuid() == 0:
            shutil.chown(self.directory, "nobody", "nogroup")
        subprocess.run(
            [POSTGRES_BIN / "initdb", "-D", data, "-U", "agora", "--auth=trust",
             "--encoding=UTF8", "--locale=C"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            **self._as_owner(),
        )  # fmt: skip
        command: list[str | Path] = [POSTGRES_BIN / "postgres", "-D", data, "-p", str(self.port)]
        command += ["-k", self.directory, "-c", f"listen_addresses={HOST}"]
        for key, value in self.settings.items():
            command += ["-c", f"{key}={value}"]
        with (self.directory / "postgres.log").open("ab") as log:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # only calls prctl: safe enough after fork
                **self._as_owner(),
            )
        self.process = psutil.Process(self.proc.pid)
        if cpus:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(self.proc.pid, cpus)  # its children inherit it
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(self.log_tail())
            ready = subprocess.run(
                [POSTGRES_BIN / "pg_isready", "-q", "-h", HOST, "-p", str(self.port)],
                check=False,
            )
            if ready.returncode == 0:
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start within 30 s\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, chars: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return (self.directory / "postgres.log").read_text(errors="replace")[-chars:]
        return ""

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement with psql; its output."""
        return subprocess.run(
            [POSTGRES_BIN / "psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
             "-d", self.url(database), "-c", statement],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip

    def create_database(self, prefix: str = "bench") -> str:
        """A new, empty database; its URL."""
        self._databases += 1
        name = f"{prefix}{self._databases}"
        self.sql(f"CREATE DATABASE {name}")
        return self.url(name)

    def version(self) -> str:
        return self.sql("SHOW server_version").strip()

    def cpu_seconds(self) -> float:
        """CPU seconds (user + system) of the whole cluster so far: the postmaster, its live
        children (backends, WAL writer, checkpointer, ...) and the children it has reaped."""
        if self.process is None:
            return 0.0
        total = 0.0
        with contextlib.suppress(psutil.Error):
            t = self.process.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
            for child in self.process.children():
                with contextlib.suppress(psutil.Error):
                    c = child.cpu_times()
                    total += c.user + c.system
        return total

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown: cuts the connections
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.remove()
