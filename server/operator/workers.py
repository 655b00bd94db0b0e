"""``agora serve --workers N``: N server processes sharing one listening socket.

The supervisor binds the port, then starts N ordinary ``agora serve``
processes that inherit the socket; the kernel spreads new connections over
them. Each worker is a whole Agora node (its own hub and sessions) and they
meet in Redis, so ``--workers`` needs ``--redis``. A worker that dies is
replaced; SIGTERM or SIGINT is passed on to every worker, which drains its
sessions with 1001 as a single server does.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from types import FrameType

from server.settings import Settings

log = logging.getLogger("agora.workers")

#: prctl option: the signal a process gets when its parent dies (Linux).
PR_SET_PDEATHSIG = 1
#: Seconds between checks that every worker is alive.
CHECK_INTERVAL = 0.5
#: A worker that dies within this many seconds of starting died young ...
YOUNG = 10.0
#: ... and its replacements wait longer each time, up to this many seconds.
MAX_RESTART_DELAY = 30.0


def _stop_with_supervisor() -> None:
    """In a new worker: get SIGTERM (and drain) if the supervisor dies, even by SIGKILL."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def supervise(settings: Settings) -> int:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(message)s")
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    listener = socket.create_server((settings.host, settings.port), family=family, backlog=2048)
    listener.set_inheritable(True)
    env = {**os.environ, **settings.to_env(), "AGORA_WORKERS": "1"}
    argv = [sys.executable, "-m", "server", "serve", "--listen-fd", str(listener.fileno())]

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            argv, env=env, pass_fds=(listener.fileno(),), preexec_fn=_stop_with_supervisor
        )

    workers = [start() for _ in range(settings.workers)]
    started = [time.monotonic()] * len(workers)
    failures = 0  # workers in a row that died young: back off instead of looping hot
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("started %d workers on %s:%d", len(workers), settings.host, settings.port)
    while not stopping:
        time.sleep(CHECK_INTERVAL)
        for i, worker in enumerate(workers):
            if worker.poll() is None or stopping:
                continue
            young = time.monotonic() - started[i] < YOUNG
            failures = failures + 1 if young else 0
            delay = min(CHECK_INTERVAL * 2**failures, MAX_RESTART_DELAY) if young else 0
            log.warning("worker %d exited (%s); replacing it", worker.pid, worker.returncode)
            time.sleep(delay)
            if not stopping:
                workers[i], started[i] = start(), time.monotonic()
    deadline = time.monotonic() + settings.shutdown_timeout_ms / 1000 + 10
    for worker in workers:
        try:
            worker.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.kill()
    listener.close()
    return 0
