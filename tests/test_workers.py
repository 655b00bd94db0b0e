"""``agora serve --workers N``: several processes on one port, one database, meeting in Redis."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import (
    ROOT,
    RedisProcess,
    free_port,
    general_channel,
    new_user,
    raw_session,
    shared_postgres,
    timeout,
)


class Supervisor:
    """``agora serve --workers 2 --database URL --redis URL`` and the address it serves."""

    def __init__(self, directory: Path) -> None:
        self.database = shared_postgres().create_database()
        self.redis = RedisProcess(directory / "redis").start()
        self.port = free_port()
        self.http = f"http://127.0.0.1:{self.port}"
        self.ws = f"ws://127.0.0.1:{self.port}"
        self.log = open(directory / "supervisor.log", "ab")  # noqa: SIM115 - closed in stop
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--port", str(self.port),
             "--workers", "2", "--database", self.database, "--redis", self.redis.url,
             "--rate-limit", "0",
             "--log-level", "warning"],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + timeout(20)
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "the supervisor exited"
            try:
                with urllib.request.urlopen(self.http + "/healthz", timeout=1) as r:
                    if r.status == 200 and len(self.workers()) == 2:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the workers did not become healthy")

    def workers(self) -> list[psutil.Process]:
        """The live workers (one that died is a zombie until the supervisor notices)."""
        return [
            w
            for w in psutil.Process(self.proc.pid).children()
            if w.is_running() and w.status() != psutil.STATUS_ZOMBIE
        ]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            for worker in self.workers():
                worker.kill()
            self.proc.wait()
        self.log.close()
        self.redis.kill()


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    started = Supervisor(tmp_path)
    yield started
    started.stop()


async def test_every_session_hears_every_message_whichever_worker_it_landed_on(
    supervisor: Supervisor,
) -> None:
    account = await new_user(supervisor)  # type: ignore[arg-type]
    sessions = [await raw_session(supervisor, token=account["token"]) for _ in range(12)]  # type: ignore[arg-type]
    channel = general_channel(sessions[0].identity)
    for session in sessions:
        await session.ok("subscribe", {"channel": channel})
    # workers holding a client's connection on the served port (each also has
    # connections of its own to PostgreSQL and Redis, which do not count)
    serving = {
        w.pid
        for w in supervisor.workers()
        for c in w.net_connections(kind="tcp")
        if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == supervisor.port
    }
    for n, session in enumerate(sessions[:3]):
        await session.ok("message.send", {"channel": channel, "text": f"from {n}"})
    for session in sessions:
        seen = [f for f in session.early if f.get("t") == "message.created"]
        async with asyncio.timeout(timeout(10)):
            while len(seen) < 3:
                frame = await session.recv()
                if frame.get("t") == "message.created":
                    seen.append(frame)
        assert [f["d"]["message"]["text"] for f in seen] == ["from 0", "from 1", "from 2"]
        await session.ws.close()
    assert len(serving) == 2  # both workers hold client connections


async def test_a_dead_worker_is_replaced_and_sigterm_stops_them_all(
    supervisor: Supervisor,
) -> None:
    victim, survivor = supervisor.workers()
    victim.kill()
    victim.wait(timeout(5))
    supervisor.wait_healthy()  # two live workers again
    replacement = {w.pid for w in supervisor.workers()} - {survivor.pid}
    assert len(replacement) == 1
    assert victim.pid not in replacement
    account = await new_user(supervisor)  # type: ignore[arg-type]
    session = await raw_session(supervisor, token=account["token"])  # type: ignore[arg-type]
    workers = supervisor.workers()
    supervisor.proc.send_signal(signal.SIGTERM)
    assert await session.close_code() == 1001
    assert supervisor.proc.wait(timeout(20)) == 0
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
    await session.ws.close()


@pytest.mark.parametrize(
    "storage",
    [
        [],
        ["--redis", "redis://127.0.0.1:1"],
        ["--database", "postgresql://agora@127.0.0.1:1/agora"],
    ],
    ids=["neither", "redis-without-postgres", "postgres-without-redis"],
)
def test_workers_without_postgres_and_redis_are_refused(storage: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--workers", "2", *storage],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout(30),
    )  # fmt: skip
    assert done.returncode == 2
    assert "needs --database postgresql://" in done.stderr


def test_redis_with_an_sqlite_database_is_refused() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--redis", "redis://127.0.0.1:1"],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout(30),
    )  # fmt: skip
    assert done.returncode == 2
    assert "two processes must not share one SQLite file" in done.stderr


async def test_workers_stop_when_their_supervisor_is_killed(supervisor: Supervisor) -> None:
    workers = supervisor.workers()
    supervisor.proc.kill()
    supervisor.proc.wait()
    _, alive = psutil.wait_procs(workers, timeout=timeout(15))
    assert alive == []
