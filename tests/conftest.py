"""Real servers on free ports, and helpers to talk to them.

Every server is a real ``agora serve`` subprocess (uvicorn, uvloop, SQLite on
disk). Timeouts scale by ``AGORA_TEST_TIMEOUT_FACTOR`` so a slow machine needs
no edits.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect

from clients import Client, register
from protocol import COMMUNITY_EVENTS, USER_EVENTS, Encoding, decode, encode

if TYPE_CHECKING:
    from tests.test_terminal import Terminal

FACTOR = float(os.environ.get("AGORA_TEST_TIMEOUT_FACTOR", "1"))
ROOT = Path(__file__).resolve().parent.parent


def timeout(seconds: float) -> float:
    return seconds * FACTOR


def _port_block() -> range:
    """The ports this test process hands out: below the kernel's ephemeral range, where
    ``bind(0)`` and every outgoing connection take theirs, and a block per xdist worker.

    A port picked with ``bind(0)`` stays free only until something else takes it: another
    worker picking the same one, or a Redis picked before it but not yet listening.
    """
    try:
        ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32_768
    low = 10_000
    high = max(ephemeral, low + 2_000)
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    size = (high - low) // workers
    return range(low + worker * size, low + (worker + 1) * size)


_PORTS = _port_block()
# A random start: a second pytest run on the machine walks elsewhere in the same block.
_next_port = itertools.count(secrets.randbelow(len(_PORTS)))


def free_port() -> int:
    """A port no other process of this test run will hand out, and bindable now."""
    for _ in range(len(_PORTS)):
        port = _PORTS[next(_next_port) % len(_PORTS)]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {_PORTS}")


#: Limits the suite's servers start with unless a test names its own: every test connects
#: and registers from 127.0.0.1, some open many sessions of one account, and some fail
#: logins on purpose (tests/test_logins.py and tests/test_connections.py set their own).
SUITE_LIMITS = {
    "max_connections_per_address": 10_000,
    "max_sessions_per_user": 10_000,
    "register_address_limit": 0,
    "login_address_limit": 0,
}


class AgoraProcess:
    """``agora serve`` in a subprocess on a free port, with its own database."""

    def __init__(
        self, db: Path, *, preexec_fn: Callable[[], None] | None = None, **settings: Any
    ) -> None:
        self.db = db
        self.port = free_port()
        self.settings = {**SUITE_LIMITS, **settings}
        self.preexec_fn = preexec_fn  # run in the child before it starts (e.g. setrlimit)
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
            self.proc = subprocess.Popen(
                args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, preexec_fn=self.preexec_fn
            )
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
        """Stop the server and delete its data. Immediate shutdown (SIGQUIT): a fast one
        first syncs every database the suite created, over 30 s on a loaded machine."""
        self.stop(signal.SIGQUIT)
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

    It stands in for an ``AgoraProcess``: each use of ``ws``, ``http`` or ``port``
    names the next node in turn. That spreads connections, but which of them share
    a node is an accident of how many uses came before: a test that needs sessions
    on two nodes takes ``nodes[0]`` and ``nodes[-1]`` (for an ``AgoraProcess``,
    both are the process itself).
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
        try:
            for node in self.nodes:
                node.start()
        except BaseException:  # what started must not outlive a start that failed
            self.shutdown()
            raise
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
#: pytest imports this file as ``conftest`` and the tests as ``tests.conftest``: two
#: counters, so the names carry which import made them too
_this_import = secrets.token_hex(2)


async def new_user(server: AgoraProcess, name: str = "user") -> dict[str, Any]:
    """Register a fresh account: ``{user, token}``."""
    username = f"{name}{os.getpid()}{_this_import}x{next(_names)}"
    return await register(server.http, username, "correct horse")


#: Events every identified session hears without subscribing (community and user
#: events). Sessions of tests about something else pass them over (see ``RawSession``).
UNSOLICITED = COMMUNITY_EVENTS | USER_EVENTS


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


#: WebSockets ``raw_session`` opened in the running test, closed when it ends
_raw_sockets: list[ClientConnection] = []


@pytest.fixture(autouse=True)
async def _close_raw_sessions() -> AsyncIterator[None]:
    """Close the test's raw sessions while its event loop still runs.

    Tests leave them open; one collected later warns (``ResourceWarning``) inside
    whichever test the collector happens to run in, and warnings are errors here.
    """
    yield
    while _raw_sockets:
        transport = _raw_sockets.pop().transport
        if not transport.is_closing():
            with contextlib.suppress(RuntimeError):  # opened on another, closed loop
                transport.abort()


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
    _raw_sockets.append(ws)
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


PlugTo = Callable[["AgoraProcess"], Awaitable["Plug"]]


@pytest.fixture
async def plug_to() -> AsyncIterator[PlugTo]:
    """Plug a ``Plug`` into a node; every one is unplugged after the test, even a failed
    one (whose traceback would otherwise keep its sockets open into the next test)."""
    plugs: list[Plug] = []

    async def plug_to(node: AgoraProcess) -> Plug:
        plugs.append(plug := await Plug(node).plug())
        return plug

    yield plug_to
    for plug in plugs:
        await plug.unplug()


@pytest.fixture
async def chat(tmp_path: Path) -> AsyncIterator[Callable[..., Terminal]]:
    """Start ``agora chat`` with arguments (a ``test_terminal.Terminal``); every one is
    ended after the test."""
    from tests.test_terminal import Terminal  # that test module imports this one

    started: list[Terminal] = []

    def start(*args: str) -> Terminal:
        terminal = Terminal(list(args), tmp_path / "config")
        started.append(terminal)
        return terminal

    yield start
    for terminal in started:
        terminal.child.terminate(force=True)


def http_json(
    method: str, url: str, body: Any = None, *, token: str | None = None
) -> tuple[int, Any]:
    """Status and JSON answer of one request with a JSON body (see ``http_request``)."""
    answer = http_request(method, url, body=body, token=token)
    return answer.status, answer.json()


# =====================================================================================
# Shared helpers (issue 14). Kept apart from the deployments above: HTTP requests,
# reading events, a client that does not read, a proxy a test can unplug, bounded
# waits, the code tables of docs/protocol.md, and pytest's own timeout scaled by
# AGORA_TEST_TIMEOUT_FACTOR like every wait in the tests.
# =====================================================================================


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Scale pytest-timeout's limit (pyproject ``timeout``) by ``AGORA_TEST_TIMEOUT_FACTOR``.

    A ``--timeout`` on the command line, ``PYTEST_TIMEOUT`` or a test's own
    ``timeout`` marker is taken as given.
    """
    configured = config.getini("timeout")
    if FACTOR == 1 or not configured or config.getoption("timeout", None) is not None:
        return
    if os.environ.get("PYTEST_TIMEOUT"):
        return
    scaled = pytest.mark.timeout(timeout(float(configured)))
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(scaled)


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


def http_request(
    method: str,
    url: str,
    *,
    body: Any = None,
    data: bytes | None = None,
    token: str | None = None,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> HttpAnswer:
    """One HTTP request: a JSON ``body`` or raw ``data``, ``Authorization: Bearer token``,
    and any other ``headers``."""
    headers = {"content-type": content_type, **(headers or {})}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    if body is not None:
        data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout(10)) as r:
            return HttpAnswer(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return HttpAnswer(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())


def wait_until_healthy(proc: subprocess.Popen[bytes], http: str, log: Path) -> None:
    """Poll ``/healthz`` until it answers 200, for at most 15 (scaled) seconds."""
    deadline = time.monotonic() + timeout(15)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(http + "/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not become healthy: {log.read_text()[-2000:]}")


async def eventually(check: Callable[[], bool], what: str, wait: float = 10) -> None:
    """Poll ``check`` until it holds, for at most ``wait`` (scaled) seconds."""
    deadline = asyncio.get_running_loop().time() + timeout(wait)
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never saw {what}")
        await asyncio.sleep(0.05)


async def read_events(
    session: RawSession, count: int, *, t: str | None = None, wait: float = 10
) -> list[dict[str, Any]]:
    """The next ``count`` event frames (only those of type ``t``, if given).

    Events ``command`` kept while it waited for an answer come first; other frames are
    skipped.
    """
    wanted = [f for f in session.early if f["op"] == "event" and t in (None, f["t"])]
    session.early.clear()
    async with asyncio.timeout(timeout(wait)):
        while len(wanted) < count:
            frame = await session.recv(wait)
            if frame["op"] == "event" and t in (None, frame["t"]):
                wanted.append(frame)
    if len(wanted) > count:  # more were kept than asked for: leave them for the next read
        session.early[:0] = wanted[count:]
    return wanted[:count]


def never_reading(node: AgoraProcess) -> dict[str, Any]:
    """Connect arguments (for ``raw_session``) of a client that reads nothing until it
    calls ``recv``: a tiny receive buffer and a queue of one message, so the server's
    buffers for it fill at once. ``node`` is one process (``server.nodes[i]``)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", node.port))
    return {"sock": sock, "max_queue": 1}


#: Message text of 4,000 characters that takes 16,000 bytes: a few of them fill buffers.
BIG_TEXT = "\N{GRINNING FACE}" * 3996  # and four characters to number them


def kernel_buffering(connect_args: dict[str, Any]) -> int:
    """At most how many bytes the kernel holds for a ``never_reading`` client: the
    largest send buffer the server's socket can grow to, plus the client's receive
    buffer (generously: any more than this the server must queue itself)."""
    wmem_max = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    rcvbuf = connect_args["sock"].getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    return wmem_max + 4 * rcvbuf + 1024 * 1024  # + what uvicorn and websockets buffer


async def closed_with(
    ws: ClientConnection, wait: float = 5, *, read: list[Any] | None = None
) -> tuple[int | None, str]:
    """Read until the server closes (keeping the messages in ``read``, if given): its
    close code and reason."""
    try:
        async with asyncio.timeout(timeout(wait)):
            while True:
                message = await ws.recv()
                if read is not None:
                    read.append(message)
    except websockets.ConnectionClosed as exc:
        if exc.rcvd is None:
            return None, ""
        return exc.rcvd.code, exc.rcvd.reason


class Plug:
    """A TCP proxy to one node that a test can unplug: open connections drop (no close
    frame, like a cable pulled) and new ones are refused until ``plug()``."""

    def __init__(self, target: AgoraProcess) -> None:
        self.target_port = target.port
        self.port = 0
        self._listener: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()
        self.carried_up = 0  # bytes from clients to the node
        self.delay_down = 0.0  # seconds each chunk from the node takes to arrive

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def plug(self) -> Plug:
        self._listener = await asyncio.start_server(self._connect, "127.0.0.1", self.port)
        self.port = self._listener.sockets[0].getsockname()[1]
        return self

    async def unplug(self) -> None:
        if self._listener is not None:
            self._listener.close()
            await self._listener.wait_closed()
            self._listener = None
        for writer in self._open:
            writer.transport.abort()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:  # the node is down: drop this connection too
            writer.transport.abort()
            self._open.discard(writer)
            return
        self._open.add(up_writer)
        pipes = [
            asyncio.create_task(self._pipe(reader, up_writer, up=True)),
            asyncio.create_task(self._pipe(up_reader, writer, up=False)),
        ]
        self._pipes.update(pipes)
        await asyncio.gather(*pipes, return_exceptions=True)
        self._pipes.difference_update(pipes)
        self._open -= {writer, up_writer}

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if up:
                    self.carried_up += len(data)
                elif self.delay_down:  # latency, not a slower pipe: chunks overlap in flight
                    asyncio.get_running_loop().call_later(
                        self.delay_down, self._write_unless_closed, writer, data
                    )
                    continue
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.transport.abort()

    @staticmethod
    def _write_unless_closed(writer: asyncio.StreamWriter, data: bytes) -> None:
        if not writer.transport.is_closing():
            writer.write(data)


PROTOCOL_DOC = ROOT / "docs" / "protocol.md"


def doc_table(section: str) -> list[list[str]]:
    """The rows (cells stripped) of the first table under ``## <section>`` of protocol.md."""
    text = PROTOCOL_DOC.read_text(encoding="utf-8")
    start = re.search(rf"^## {re.escape(section)}\b.*$", text, re.MULTILINE)
    assert start is not None, f"protocol.md has no section {section!r}"
    body = text[start.end() :].split("\n## ", 1)[0]
    lines = [line for line in body.splitlines() if line.startswith("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return rows[2:]  # past the header and its |---| line


def documented_closes() -> set[tuple[int, str]]:
    """Every (close code, exact reason) docs/protocol.md §9 promises."""
    closes = set()
    for code, reason, *_ in doc_table("9. Close codes"):
        exact = re.match(r"`([^`]+)`", reason)  # not "set by the WebSocket layer, e.g. `…`"
        if code.isdigit() and exact is not None:
            closes.add((int(code), exact[1]))
    return closes


def documented_close(code: int, reason: str) -> tuple[int, str]:
    """``(code, reason)``, once checked to be a close that protocol.md §9 promises."""
    assert (code, reason) in documented_closes(), f"§9 does not list {code} {reason!r}"
    return code, reason


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
