"""One Agora deployment for the long-running benchmarks (``fuzz.py``, ``soak.py``).

``embedded``: ``agora serve`` on an SQLite file. ``scaled``: one ``agora serve`` node on a
private PostgreSQL and Redis (``pgserver.PostgresServer``, ``scaleout.RedisServer``).
"""

from __future__ import annotations

import contextlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil
from fanout import start_server, stop_child, wait_healthy
from pgserver import PostgresServer
from scaleout import RedisServer, free_port


@dataclass
class Deployment:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    token: str  # of the account ``bench``, the first: the owner of the default community

    @property
    def process(self) -> psutil.Process:
        return psutil.Process(self.proc.pid)

    def tracebacks(self) -> int:
        return self.log.read_text(errors="replace").count("Traceback")


async def start(
    kind: str, tmp: Path, stack: contextlib.AsyncExitStack, extra: list[str]
) -> Deployment:
    """Start a deployment (stopped when ``stack`` closes)."""
    args = ["--rate-limit", "0", *extra]
    if kind == "scaled":
        postgres = PostgresServer()
        stack.callback(postgres.remove)
        postgres.start()
        redis = RedisServer(tmp / "redis")
        stack.push_async_callback(redis.stop)
        await redis.start(set())
        args += ["--database", postgres.create_database(), "--redis", redis.url]
    port = free_port()
    log = tmp / f"{kind}-server.log"
    proc = start_server("agora", port, log, args, set())
    stack.callback(stop_child, proc)
    token = await wait_healthy(port, proc, register=True)
    return Deployment(port, proc, log, token)
