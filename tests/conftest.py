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
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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

    @property
    def nodes(self) -> list[AgoraProcess]:
        """The processes serving this deployment: just this one."""
        return [self]


class RedisProcess:
    """A private ``redis-server`` on a free port, with the append-only file on."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        executable = require_redis()
        self.directory.mkdir(parents=True, exist_ok=True)
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [
                executable,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.directory),
                "--appendonly", "yes",
                "--appendfsync", "everysec",
                "--save", "",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout(10)
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout(15))
            self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def require_redis() -> str:
    """The redis-server executable; without one, fail under CI=true, else skip."""
    found = shutil.which("redis-server")
    if found is None:
        message = "redis-server is not installed (apt-get install -y redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def _postgres_bin() -> Path | None:
    """The newest PostgreSQL's binaries Debian installed, if any."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


class PostgresProcess:
    """A private PostgreSQL cluster: ``initdb`` into a fresh directory, on a free port.

    ``initdb`` refuses to run as root, and CI runs as root: the cluster then
    belongs to the unprivileged user ``nobody``. ``fsync`` stays on: the tests
    are about durability.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="agora-pg-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self._databases = itertools.count()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://agora@127.0.0.1:{self.port}/{database}"

    def _as_owner(self) -> dict[str, Any]:
        return {"user": "nobody", "group": "nogroup"} if os.geteuid() == 0 else {}

    def start(self) -> PostgresProcess:
        binaries = require_postgres()
        data = self.directory / "data"
        if not data.exists():
            if os.geteuid() == 0:
                shutil.chown(self.directory, "nobody", "nogroup")
            subprocess.run(
                [binaries / "initdb", "-D", data, "-U", "agora", "--auth=trust",
                 "--encoding=UTF8", "--locale=C"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                **self._as_owner(),
            )  # fmt: skip
        log = open(self.directory / "postgres.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [binaries / "postgres", "-D", data, "-p", str(self.port), "-k", self.directory,
             "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300"],
            stdout=log, stderr=subprocess.STDOUT, **self._as_owner(),
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout(30)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((self.directory / "postgres.log").read_text()[-2000:])
            ready = subprocess.run(
                [binaries / "pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)],
                check=False,
            )
            if ready.returncode == 0:
                return self
            time.sleep(0.05)
        raise RuntimeError("postgres did not start")

    def create_database(self) -> str:
        """A new, empty database; its URL."""
        name = f"agora{next(self._databases)}"
        self.sql(f"CREATE DATABASE {name}")
        return self.url(name)

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement with psql; its output."""
        return subprocess.run(
            ["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d", self.url(database),
             "-c", statement],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip

    def stop(self, sig: int = signal.SIGINT) -> None:
        """Stop the server; SIGINT is PostgreSQL's fast shutdown (it cuts connections)."""
        if self.proc is not None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout(30))
            self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def require_postgres() -> Path:
    """PostgreSQL's binaries; without them, fail under CI=true, else skip."""
    found = _postgres_bin()
    if found is None:
        message = "PostgreSQL is not installed (apt-get install -y postgresql)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


_postgres: PostgresProcess | None = None


def shared_postgres() -> PostgresProcess:
    """The test session's one private PostgreSQL server, started on first use.

    Each scaled deployment and each store test makes its own database on it.
    """
    global _postgres
    if _postgres is None:
        _postgres = PostgresProcess().start()
    return _postgres


class Cluster:
    """The scaled deployment: two ``agora serve`` nodes on one PostgreSQL database and a Redis.

    It stands in for an ``AgoraProcess``: each use of ``ws`` or ``http`` names
    the next node in turn, so a test's connections are spread over both nodes.
    """

    def __init__(
        self, directory: Path, *, postgres: PostgresProcess | None = None, **settings: Any
    ) -> None:
        self.postgres = postgres or shared_postgres()
        self.database = self.postgres.create_database()
        self.redis = RedisProcess(directory / "redis")
        self.nodes = [
            AgoraProcess(
                directory / f"node{i}.db",
                database=self.database,
                redis=self.redis.url,
                **settings,
            )
            for i in range(2)
        ]
        self._turn = itertools.cycle(self.nodes)

    @property
    def ws(self) -> str:
        return next(self._turn).ws

    @property
    def http(self) -> str:
        return next(self._turn).http

    @property
    def port(self) -> int:
        return next(self._turn).port

    def start(self) -> Cluster:
        if self.redis.proc is None:
            self.redis.start()
        for node in self.nodes:
            node.start()
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        codes = [node.stop(sig) for node in self.nodes]
        return codes[0] if len(set(codes)) == 1 else None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def shutdown(self) -> None:
        self.stop(signal.SIGKILL)
        self.redis.kill()

    def metric(self, name: str, labels: str = "") -> float:
        """The sum of one sample over the nodes."""
        return sum(node.metric(name, labels) for node in self.nodes)


#: The deployments every test that starts a server runs against.
DEPLOYMENTS = tuple(os.environ.get("AGORA_TEST_DEPLOYMENTS", "embedded,scaled").split(","))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "embedded_only: the test is about the SQLite store and runs only embedded"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "deployment" in metafunc.fixturenames:
        embedded_only = metafunc.definition.get_closest_marker("embedded_only") is not None
        params = [d for d in DEPLOYMENTS if d == "embedded" or not embedded_only]
        metafunc.parametrize("deployment", params, scope="session")


def start_deployment(deployment: str, directory: Path, **settings: Any) -> Any:
    """An ``AgoraProcess`` (embedded) or a ``Cluster`` (scaled), started."""
    if deployment == "scaled":
        return Cluster(directory, **settings).start()
    return AgoraProcess(directory / "agora.db", **settings).start()


def stop_deployment(server: Any) -> None:
    if isinstance(server, Cluster):
        server.shutdown()
    else:
        server.stop(signal.SIGKILL)


@pytest.fixture(scope="session")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """One private redis-server for tests that empty it themselves."""
    redis = RedisProcess(tmp_path_factory.mktemp("redis")).start()
    yield redis
    redis.kill()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresProcess]:
    """The private PostgreSQL server (``shared_postgres``); each user makes its own database."""
    yield shared_postgres()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _postgres is not None:
        _postgres.remove()


@pytest.fixture(scope="session")
def server(deployment: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One shared server (or cluster) with default settings, but no rate limit."""
    started = start_deployment(deployment, tmp_path_factory.mktemp("agora"), rate_limit=0)
    yield started
    stop_deployment(started)


@pytest.fixture
def make_server(deployment: str, tmp_path: Path) -> Iterator[Any]:
    """Start servers (or clusters) with particular settings; stopped after the test."""
    started: list[Any] = []
    counter = itertools.count()

    def make(**settings: Any) -> Any:
        directory = tmp_path / f"agora{next(counter)}"
        directory.mkdir()
        started.append(start_deployment(deployment, directory, **settings))
        return started[-1]

    yield make
    for one in started:
        stop_deployment(one)


_names = itertools.count()


async def new_user(server: AgoraProcess, name: str = "user") -> dict[str, Any]:
    """Register a fresh account: ``{user, token}``."""
    return await register(server.http, f"{name}{os.getpid()}x{next(_names)}", "correct horse")


#: Events every identified session hears without subscribing (community and user
#: events). Sessions of tests about something else pass them over (see ``RawSession``).
UNSOLICITED = frozenset(
    {
        "channel.created",
        "channel.updated",
        "member.joined",
        "member.updated",
        "member.left",
        "presence.updated",
        "community.joined",
    }
)


class RawSession:
    """A bare WebSocket speaking one encoding, for asserting exact frames.

    Unless made with ``unsolicited=True``, it passes over the community and
    user events (``UNSOLICITED``, which carry no offset) that any session may
    hear at any time: other tests' accounts join the shared community and come
    and go.
    """

    def __init__(self, ws: ClientConnection, encoding: Encoding, unsolicited: bool = False) -> None:
        self.ws = ws
        self.encoding = encoding
        self.unsolicited = unsolicited
        self.ids = itertools.count(1)
        #: frames that arrived while ``command`` waited for its answer
        self.early: list[dict[str, Any]] = []
        self.hello: dict[str, Any] = {}
        self.identity: dict[str, Any] = {}

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(encode(frame, self.encoding))

    async def recv(self, wait: float = 5) -> dict[str, Any]:
        async with asyncio.timeout(timeout(wait)):
            while True:
                frame = decode(await self.ws.recv(), self.encoding, max_size=2**30)
                if self.unsolicited or not _unsolicited(frame):
                    return frame

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


def _unsolicited(frame: dict[str, Any]) -> bool:
    return frame.get("op") == "event" and "o" not in frame and frame.get("t") in UNSOLICITED


async def raw_session(
    server: AgoraProcess,
    encoding: Encoding = Encoding.MSGPACK,
    *,
    token: str | None = None,
    query: str | None = None,
    unsolicited: bool = False,
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
    session = RawSession(ws, encoding, unsolicited)
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


def http_request(method: str, url: str, body: Any = None) -> tuple[int, Any, dict[str, str]]:
    """An HTTP request with a JSON body: status, JSON answer (or None), lower-cased headers."""
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout(10)) as r:
            answer, status, headers = r.read(), r.status, r.headers
    except urllib.error.HTTPError as exc:
        answer, status, headers = exc.read(), exc.code, exc.headers
    return status, json.loads(answer or b"null"), {k.lower(): v for k, v in headers.items()}


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


class ServerLog:
    """What the log files of a server (every node of a cluster) gained since this was made.

    Read it once the server has answered (or otherwise finished with) the input
    under test.
    """

    def __init__(self, server: Any) -> None:
        self._start = {node.log: node.log.stat().st_size for node in server.nodes}

    def text(self) -> str:
        return "".join(
            path.read_bytes()[size:].decode(errors="replace") for path, size in self._start.items()
        )

    def wait_for(self, needle: str, count: int = 1, wait: float = 10) -> str:
        """Wait until ``needle`` is in the new text ``count`` times; return the text."""
        deadline = time.monotonic() + timeout(wait)
        while (text := self.text()).count(needle) < count:
            assert time.monotonic() < deadline, f"{needle!r} not logged {count} times: {text}"
            time.sleep(0.02)
        return text

    def assert_no_traceback(self) -> None:
        text = self.text()
        assert "Traceback" not in text, text
