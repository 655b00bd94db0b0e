"""Real servers on free ports, and helpers to talk to them.

Every server is a real ``agora serve`` subprocess (uvicorn, uvloop, SQLite on
disk). Timeouts scale by ``AGORA_TEST_TIMEOUT_FACTOR`` so a slow machine needs
no edits.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect

from clients import Client, register
from protocol import Encoding, decode, encode

FACTOR = float(os.environ.get("AGORA_TEST_TIMEOUT_FACTOR", "1"))
ROOT = Path(__file__).resolve().parent.parent


def timeout(seconds: float) -> float:
    return seconds * FACTOR


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AgoraProcess:
    """``agora serve`` in a subprocess on a free port, with its own database."""

    def __init__(self, db: Path, **settings: Any) -> None:
        self.db = db
        self.port = free_port()
        self.settings = settings
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = db.with_suffix(".log")

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> AgoraProcess:
        args = [
            sys.executable,
            "-m",
            "server",
            "serve",
            "--port",
            str(self.port),
            "--db",
            str(self.db),
            "--log-level",
            "warning",
        ]
        for name, value in self.settings.items():
            flag = "--" + name.replace("_", "-")
            if isinstance(value, bool):
                args.append(flag if value else "--no-" + flag[2:])
            else:
                args += [flag, str(value)]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout(15)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.http + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not become healthy")

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout(15))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def metric(self, name: str, labels: str = "") -> float:
        """The value of one sample of ``/metrics``, or 0.0 when it is absent."""
        with urllib.request.urlopen(self.http + "/metrics", timeout=5) as r:
            text = r.read().decode()
        for line in text.splitlines():
            if line.startswith(f"{name}{labels} ") or line.startswith(f"{name}{{{labels}}} "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgoraProcess]:
    """One shared server with default settings, but no rate limit."""
    proc = AgoraProcess(tmp_path_factory.mktemp("agora") / "agora.db", rate_limit=0).start()
    yield proc
    proc.stop()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Any]:
    """Start servers with particular settings; they are stopped after the test."""
    started: list[AgoraProcess] = []
    counter = itertools.count()

    def make(**settings: Any) -> AgoraProcess:
        proc = AgoraProcess(tmp_path / f"agora{next(counter)}.db", **settings).start()
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.stop(signal.SIGKILL)


_names = itertools.count()


async def new_user(server: AgoraProcess, name: str = "user") -> dict[str, Any]:
    """Register a fresh account: ``{user, token}``."""
    return await register(server.http, f"{name}{os.getpid()}x{next(_names)}", "correct horse")


class RawSession:
    """A bare WebSocket speaking one encoding, for asserting exact frames."""

    def __init__(self, ws: ClientConnection, encoding: Encoding) -> None:
        self.ws = ws
        self.encoding = encoding
        self.ids = itertools.count(1)
        #: frames that arrived while ``command`` waited for its answer
        self.early: list[dict[str, Any]] = []
        self.hello: dict[str, Any] = {}
        self.identity: dict[str, Any] = {}

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(encode(frame, self.encoding))

    async def recv(self, wait: float = 5) -> dict[str, Any]:
        async with asyncio.timeout(timeout(wait)):
            raw = await self.ws.recv()
        return decode(raw, self.encoding, max_size=2**30)

    async def command(self, op: str, d: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a command and return its answer, keeping events that came before it."""
        command_id = next(self.ids)
        await self.send({"op": op, "id": command_id, "d": d or {}})
        while True:
            frame = await self.recv()
            if frame.get("id") == command_id and frame["op"] in ("reply", "error"):
                return frame
            self.early.append(frame)

    async def ok(self, op: str, d: dict[str, Any] | None = None) -> dict[str, Any]:
        frame = await self.command(op, d)
        assert frame["op"] == "reply", frame
        return frame["d"]

    async def close_code(self, wait: float = 5) -> int | None:
        """Read until the server closes; return its close code."""
        try:
            async with asyncio.timeout(timeout(wait)):
                while True:
                    await self.ws.recv()
        except websockets.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None


async def raw_session(
    server: AgoraProcess,
    encoding: Encoding = Encoding.MSGPACK,
    *,
    token: str | None = None,
    query: str | None = None,
    **connect_args: Any,
) -> RawSession:
    """Connect, read hello, and identify with ``token`` if given."""
    q = query if query is not None else f"v=1&encoding={encoding.value}"
    ws = await connect(
        f"{server.ws}/gateway?{q}",
        compression=None,
        ping_interval=None,
        max_size=None,
        **connect_args,
    )
    session = RawSession(ws, encoding)
    session.hello = await session.recv()
    if token is not None:
        session.identity = await session.ok("identify", {"token": token})
    return session


@pytest.fixture(params=[Encoding.MSGPACK, Encoding.JSON], ids=["msgpack", "json"])
def encoding(request: pytest.FixtureRequest) -> Encoding:
    return request.param


def general_channel(identity: dict[str, Any]) -> str:
    return next(c["id"] for c in identity["communities"][0]["channels"] if c["name"] == "general")


@pytest.fixture
async def client(server: AgoraProcess) -> AsyncIterator[Client]:
    account = await new_user(server)
    async with Client(server.ws, account["token"]) as c:
        yield c


def http_json(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout(10)) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
