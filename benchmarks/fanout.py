#!/usr/bin/env python3
"""Fan-out benchmark: one publisher, S subscribers in one channel, Agora against a reference.

For each S and each server (Agora, then the reference: a bare ``websockets`` broadcast server,
this file with ``--reference-server``), a fresh server on a free 127.0.0.1 port is measured:
its RSS before S subscribers connect, with them idle and at its peak; a ``burst`` of K messages
sent as fast as they are acknowledged; a ``steady`` run of ``--rate`` messages/s sent on
schedule whatever the replies (open loop). Each run reports deliveries/s and the latency of
every delivery: the publisher's ``time.time_ns()``, in the text, against the subscriber's when
the frame arrives. The subscribers are ``picows`` connections in ``--workers`` uvloop
processes; this process is the orchestrator and the publisher (a ``websockets`` client).
benchmarks/README.md has the details.

Run ``python3 benchmarks/fanout.py`` (about 75 s) or ``--quick`` (a smoke run, about 20 s).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import ctypes
import itertools
import math
import multiprocessing
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import msgpack
import psutil
import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

ROOT = Path(__file__).resolve().parent.parent
#: The node ``ws`` reference server (``server.js``, its ``package.json`` and lock file).
NODE_REF = Path(__file__).resolve().parent / "ref"
#: The servers a run can measure: Agora, the ``websockets`` reference, the node ``ws`` one.
TARGETS = ("agora", "reference", "node")
HOST = "127.0.0.1"
GATEWAY = "/gateway?v=1&encoding=msgpack"
#: A benchmark message's text starts with ``~b<phase>~<seq>~<send time in ns>~``.
MARK = b"~b"
#: Upper bound on the life of any process or loop of this benchmark, in seconds.
LIFETIME = 900.0
#: Connections a worker opens at once (the reference server's accept backlog is finite).
CONNECT_CONCURRENCY = 32
#: Server CPU (% of one core) under which a burst run is marked as not server-bound.
SATURATED_PCT = 85.0
#: Messages of the unmeasured warm-up phase that also checks the whole path works.
WARMUP_MESSAGES = 20
#: The per-phase counts a subscriber worker reports, summed over the workers.
COUNTS = ("received", "errors", "lost", "disorder", "duplicates", "stale", "cpu")

#: Every child process, killed at exit whatever happened.
CHILDREN: list[subprocess.Popen[bytes] | multiprocessing.process.BaseProcess] = []


# ---------------------------------------------------------------------------------------------
# The reference server


async def reference_server(port: int) -> None:
    """A bare websockets broadcast server speaking the benchmark's subset of the protocol."""
    channel = "reference-general"
    subscribers: set[ServerConnection] = set()
    offset = 0
    hello = msgpack.packb(
        {"op": "hello", "d": {"heartbeat_ms": 30_000, "protocol": 1, "server": "reference"}}
    )
    general = {"id": channel, "name": "general", "kind": "text"}
    community = {"id": "1", "name": "Reference", "role": "member", "channels": [general]}

    async def handler(ws: ServerConnection) -> None:
        nonlocal offset
        await ws.send(hello)
        try:
            async for data in ws:  # until the client goes: ConnectionClosed, suppressed below
                frame = msgpack.unpackb(data)
                op, d = frame.get("op"), frame.get("d") or {}
                answer: dict[str, Any] = {}
                if op == "message.send":
                    offset += 1
                    # Agora's message: the same keys, ids of the same size.
                    author = {"id": "7000000000000000000", "name": "bench"}
                    message = {"id": str(7 * 10**18 + offset), "channel": channel, "author": author}
                    message |= {"text": d.get("text"), "ts": time.time_ns() // 1_000_000}
                    event = {"op": "event", "t": "message.created", "ch": channel, "o": offset}
                    event["d"] = {"message": message}
                    broadcast(subscribers, msgpack.packb(event))
                    answer = {"message": message}
                elif op == "identify":
                    answer = {"user": {"id": "1", "name": "bench"}, "communities": [community]}
                elif op == "subscribe":
                    subscribers.add(ws)
                    answer = {"offset": offset, "epoch": "reference", "recovered": False}
                await ws.send(msgpack.packb({"op": "reply", "id": frame.get("id"), "d": answer}))
        except ConnectionClosed:
            pass
        finally:
            subscribers.discard(ws)

    def health(connection: ServerConnection, request: Request) -> Response | None:
        if request.path == "/healthz":
            return connection.respond(HTTPStatus.OK, "ok\n")
        return None

    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    # As Agora: no permessage-deflate, no protocol-level pings; uvicorn's accept backlog.
    options = {"compression": None, "ping_interval": None, "max_size": 64 * 1024, "backlog": 2048}
    async with serve(handler, HOST, port, process_request=health, **options):
        await asyncio.wait_for(stop, LIFETIME)


# ---------------------------------------------------------------------------------------------
# Subscriber workers

DATA_FRAMES = (WSMsgType.BINARY, WSMsgType.TEXT)


class SetupListener(WSListener):
    """A picows client connection: its setup frames are queued in ``inbox``, and it sends
    msgpack messages."""

    def __init__(self) -> None:
        super().__init__()
        self.transport: WSTransport | None = None
        self.inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.live = self.closed = False
        self.close_code: int | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def send(self, message: dict[str, Any]) -> None:
        if self.transport is not None and not self.closed:
            self.transport.send(WSMsgType.BINARY, msgpack.packb(message))

    async def next(self, op: str) -> dict[str, Any]:
        """The next setup frame, which must be a ``op``."""
        message = await self.inbox.get()
        if message is None:
            code = "" if self.close_code is None else f" with {self.close_code}"
            raise ConnectionError(f"closed{code} while waiting for {op}")
        if message.get("op") != op:
            raise RuntimeError(f"expected {op}, got {message}")
        return message


class Subscriber(SetupListener):
    """One subscriber connection, a picows client: cheap per received frame.

    Until subscribed, frames are decoded and queued in ``inbox`` for the setup coroutine.
    Once live, a frame is only searched for ``MARK`` and handed to the pool. Neither server
    fragments messages (a fragment is an error here); picows answers pings.
    """

    def __init__(self, pool: SubscriberPool) -> None:
        super().__init__()
        self.pool = pool
        self.received = 0  # in the current phase
        self.last_seq = -1
        self.seen = bytearray()  # seen[seq] is 1 once message seq of the phase has arrived

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind in DATA_FRAMES and frame.fin:
            payload = frame.get_payload_as_bytes()
            if not self.live:
                message = msgpack.unpackb(payload)
                if message.get("op") == "reply" and message.get("id") == self.pool.subscribe_id:
                    self.live = True  # from the very next frame, events may come
                if message.get("op") != "event":  # community events (presence, joins) pass
                    self.inbox.put_nowait(message)
            elif (at := payload.find(MARK)) >= 0:
                self.pool.deliver(self, payload, at, time.time_ns())
            elif b"\xa2op\xa5error" in payload:
                self.pool.errors += 1
        elif kind is WSMsgType.CLOSE:  # echo the close, then hang up
            self.close_code = int(frame.get_close_code()) or 1005
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif kind is not WSMsgType.PONG:
            self.pool.failures.append(f"unexpected {frame}")
            transport.disconnect(graceful=False)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.inbox.put_nowait(None)
        if not self.closed:
            self.closed = True
            self.pool.on_close(self)


class SubscriberPool:
    """A worker's connections and the counts and latencies of the current phase."""

    subscribe_id = 2

    def __init__(self, port: int, token: str, channel: str, count: int) -> None:
        self.url = f"ws://{HOST}:{port}{GATEWAY}"
        self.token, self.channel, self.count = token, channel, count
        self.subs: list[Subscriber] = []
        self.failures: list[str] = []
        self.heartbeat_s = 30.0
        self.arm(-1, 0)

    async def open_all(self, timeout: float) -> None:
        slots = asyncio.Semaphore(CONNECT_CONCURRENCY)
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(self._open(slots) for _ in range(self.count)))

    async def _open(self, slots: asyncio.Semaphore) -> None:
        async with slots:  # uvloop's transports, even where aiofastnet is installed
            _, sub = await ws_connect(lambda *_: Subscriber(self), self.url, use_aiofastnet=False)
            if not isinstance(sub, Subscriber):
                raise ConnectionError("closed during the handshake")
            self.subs.append(sub)
            hello = await sub.next("hello")
            self.heartbeat_s = hello["d"].get("heartbeat_ms", 30_000) / 1000
            sub.send({"op": "identify", "id": 1, "d": {"token": self.token}})
            await sub.next("reply")
            sub.send({"op": "subscribe", "id": self.subscribe_id, "d": {"channel": self.channel}})
            await sub.next("reply")
            if not sub.live:
                raise RuntimeError("subscribe was not answered in order")

    async def heartbeat(self) -> None:
        """Ping every connection once per half heartbeat, spread over the interval."""
        interval, ids = self.heartbeat_s / 2, itertools.count(100)
        for _ in range(int(LIFETIME / interval) + 1):
            for sub in self.subs:
                await asyncio.sleep(interval / len(self.subs))
                sub.send({"op": "ping", "id": next(ids), "d": {}})

    def arm(self, phase: int, per_conn: int) -> None:
        self.phase, self.per_conn = phase, per_conn
        open_subs = [s for s in self.subs if not s.closed]
        for sub in open_subs:
            sub.received, sub.last_seq, sub.seen = 0, -1, bytearray(per_conn)
        self.expected = per_conn * len(open_subs)
        self.received = self.last_rx = self.disorder = self.stale = self.errors = self.lost = 0
        self.duplicates = 0
        self.latencies = array.array("q")  # microseconds
        self.done = asyncio.Event()
        self.check()

    def check(self) -> None:
        if self.received >= self.expected:
            self.done.set()

    def deliver(self, sub: Subscriber, payload: bytes, at: int, now: int) -> None:
        header = payload[at + 2 : at + 64].split(b"~", 3)
        try:
            phase, seq, sent = int(header[0]), int(header[1]), int(header[2])
        except (ValueError, IndexError):
            return  # not a benchmark message
        if phase != self.phase:
            self.stale += 1
            return
        if seq < len(sub.seen):  # a duplicate must not stand in for a lost delivery
            if sub.seen[seq]:
                self.duplicates += 1
                return
            sub.seen[seq] = 1
        if seq <= sub.last_seq:
            self.disorder += 1
        sub.last_seq = seq
        sub.received += 1
        self.latencies.append((now - sent) // 1000)
        self.last_rx = now
        self.received += 1
        self.check()

    def expect(self, per_conn: int) -> None:
        """Lower the count each connection waits for (the publisher sent fewer)."""
        if per_conn < self.per_conn and not self.done.is_set():
            self.expected -= (self.per_conn - per_conn) * sum(not s.closed for s in self.subs)
            self.per_conn = per_conn
            self.check()

    def on_close(self, sub: Subscriber) -> None:
        if self.phase >= 0 and not self.done.is_set():
            self.lost += 1
            self.expected -= max(0, self.per_conn - sub.received)
            self.check()

    def result(self, cpu: float) -> dict[str, Any]:
        """The phase's counts (COUNTS), sorted latencies and last arrival, and close codes."""
        return {k: getattr(self, k) for k in COUNTS if k != "cpu"} | {
            "cpu": cpu,
            "latencies": array.array("q", sorted(self.latencies)).tobytes(),
            "last_rx": self.last_rx,
            "close_codes": [s.close_code for s in self.subs if s.closed],
        }


def listen(conn: Connection, callback: Callable[[tuple[Any, ...]], None]) -> None:
    """Call ``callback`` with each message from ``conn``, and ("exit", error) at its end."""
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            message = conn.recv()
        except (EOFError, OSError) as exc:
            loop.remove_reader(conn.fileno())
            message = ("exit", repr(exc))
        callback(message)

    loop.add_reader(conn.fileno(), readable)
    os.set_blocking(conn.fileno(), True)  # uvloop made it non-blocking: recv needs whole messages


def worker_main(conn: Connection, port: int, token: str, channel: str, count: int) -> None:
    """Entry point of a subscriber process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator stops us
    with contextlib.suppress(asyncio.CancelledError):
        uvloop.run(_worker(conn, port, token, channel, count))


async def _worker(conn: Connection, port: int, token: str, channel: str, count: int) -> None:
    main = asyncio.current_task()
    assert main is not None
    commands: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
    pool = SubscriberPool(port, token, channel, count)

    def command(message: tuple[Any, ...]) -> None:
        if message[0] in ("stop", "exit"):  # at once, even in the middle of a phase
            main.cancel()
        elif message[0] == "expect":  # the publisher stopped short: expect fewer, now
            pool.expect(message[1])
        else:
            commands.put_nowait(message)

    listen(conn, command)
    heartbeat: asyncio.Task[None] | None = None
    try:
        await pool.open_all(timeout=30 + count / 20)
        heartbeat = asyncio.create_task(pool.heartbeat())
        conn.send(("ready", sum(not s.closed for s in pool.subs)))
        for _ in range(1000):
            _, phase, per_conn, timeout = await asyncio.wait_for(commands.get(), LIFETIME)
            pool.arm(phase, per_conn)
            cpu = time.process_time()
            conn.send(("armed",))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pool.done.wait(), timeout)
            conn.send(("result", pool.result(time.process_time() - cpu)))
    except Exception:
        with contextlib.suppress(OSError):
            conn.send(("error", traceback.format_exc() + "\n".join(pool.failures[:5])))
    finally:
        if heartbeat is not None:
            heartbeat.cancel()
        for sub in pool.subs:
            if sub.transport is not None:
                sub.transport.disconnect(graceful=False)


# ---------------------------------------------------------------------------------------------
# The orchestrator's side of the workers, the publisher and the server process


class Processes:
    """Worker processes, one ``target(pipe, *args)`` a set of ``args``, and their answers."""

    def __init__(
        self,
        label: str,
        target: Callable[..., None],
        jobs: list[tuple[Any, ...]],
        cpus: set[int],
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.label = label
        self.inbox: asyncio.Queue[tuple[int, tuple[Any, ...]]] = asyncio.Queue()
        self.procs: list[multiprocessing.process.BaseProcess] = []
        self.conns: list[Connection] = []
        for i, args in enumerate(jobs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=target, args=(child, *args), daemon=True)
            proc.start()
            CHILDREN.append(proc)
            child.close()
            if cpus:
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(proc.pid, cpus)  # type: ignore[arg-type]
            self.procs.append(proc)
            self.conns.append(parent)
            listen(parent, lambda message, i=i: self.inbox.put_nowait((i, message)))

    async def gather(self, kind: str, timeout: float) -> list[Any]:
        """One ``kind`` answer from each worker, in worker order."""
        answers: dict[int, Any] = {}
        async with asyncio.timeout(timeout):
            while len(answers) < len(self.procs):
                i, message = await self.inbox.get()
                if message[0] != kind:
                    raise RuntimeError(
                        f"{self.label} {i} (exit code {self.procs[i].exitcode}): "
                        f"{message[0]} {message[1:]}"
                    )
                answers[i] = message[1] if len(message) > 1 else None
        return [answers[i] for i in range(len(self.procs))]

    def send(self, message: tuple[Any, ...]) -> None:
        for conn in self.conns:
            conn.send(message)

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                total += sum(psutil.Process(proc.pid).cpu_times()[:2])  # user + system
        return total

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for conn in self.conns:
            with contextlib.suppress(OSError, ValueError):
                loop.remove_reader(conn.fileno())
                conn.send(("stop",))
        for proc in self.procs:
            proc.join(3)
            stop_child(proc)
        for conn in self.conns:
            conn.close()


class WorkerPool(Processes):
    """The subscriber processes of one run, and their answers."""

    def __init__(self, n: int, port: int, token: str, channel: str, size: int, cpus: set[int]):
        n = max(1, min(n, size))
        counts = [size // n + (1 if i < size % n else 0) for i in range(n)]
        jobs = [(port, token, channel, count) for count in counts]
        super().__init__("subscriber worker", worker_main, jobs, cpus)


@dataclass
class Published:
    sent: int = 0
    acked: int = 0
    errors: list[Any] = field(default_factory=list)
    first_send: int = 0  # ns
    last_send: int = 0
    last_ack: int = 0
    ack_latencies: list[int] = field(default_factory=list)  # ns
    timed_out: bool = False


class Publisher:
    """The one publishing connection, a plain ``websockets`` client."""

    def __init__(self, ws: ClientConnection, channel: str) -> None:
        self.ws = ws
        self.channel = channel
        self.next_id = 10

    @classmethod
    async def open(cls, port: int, token: str) -> Publisher:
        ws = await connect(
            f"ws://{HOST}:{port}{GATEWAY}",
            compression=None,
            proxy=None,
            ping_interval=None,
            open_timeout=10,
            close_timeout=2,
        )
        async with asyncio.timeout(10):
            msgpack.unpackb(await ws.recv())  # hello
            await ws.send(msgpack.packb({"op": "identify", "id": 1, "d": {"token": token}}))
            answer = msgpack.unpackb(await ws.recv())
            while answer.get("op") == "event":  # community events may come before it
                answer = msgpack.unpackb(await ws.recv())
        if answer.get("op") != "reply":
            raise RuntimeError(f"identify failed: {answer}")
        return cls(ws, answer["d"]["communities"][0]["channels"][0]["id"])

    async def publish(
        self, phase: int, count: int, window: int, rate: float | None, text: int, timeout: float
    ) -> Published:
        """Send ``count`` messages of ``text`` bytes, at most ``window`` of them unanswered, at
        ``rate``/s if given."""
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(window)
        pending: dict[int, int] = {}
        result = Published()

        async def read_replies() -> None:
            while result.acked + len(result.errors) < count:
                frame = msgpack.unpackb(await self.ws.recv())
                sent = pending.pop(frame.get("id"), None)
                if sent is None:
                    continue
                if frame.get("op") == "reply":
                    result.acked += 1
                    result.last_ack = time.time_ns()
                    result.ack_latencies.append(result.last_ack - sent)
                else:
                    result.errors.append(frame.get("d"))
                slots.release()

        reader = asyncio.create_task(read_replies())
        try:
            async with asyncio.timeout(timeout):
                start = loop.time()
                for seq in range(count):
                    if rate:
                        delay = start + seq / rate - loop.time()
                        if delay > 0:
                            await asyncio.sleep(delay)
                    await slots.acquire()
                    if reader.done():
                        break
                    self.next_id += 1
                    sent = time.time_ns()
                    pending[self.next_id] = sent
                    d = {
                        "channel": self.channel,
                        "text": f"~b{phase}~{seq}~{sent}~".ljust(text, "."),
                    }
                    await self.ws.send(
                        msgpack.packb({"op": "message.send", "id": self.next_id, "d": d})
                    )
                    result.sent += 1
                    result.first_send = result.first_send or sent
                    result.last_send = sent
                await reader
        except TimeoutError:  # a partial result: the caller sees sent < count
            result.timed_out = True
        finally:
            reader.cancel()
        return result

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent in user and system mode so far."""
    times = psutil.cpu_times()
    return times.user + times.nice + times.system


_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _die_with_parent() -> None:
    if _libc is not None:
        _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: even a kill -9 of us stops it


def start_server(
    target: str, port: int, log: Path, extra: list[str], cpus: set[int]
) -> subprocess.Popen[bytes]:
    if target == "agora":
        db = log.with_suffix(".db")
        command = [sys.executable, "-m", "server", "serve", "--port", str(port), "--db", str(db)]
        command += ["--rate-limit", "0", "--log-level", "warning", *extra]
        # Thousands of sessions of a few accounts from one address are the load measured
        # here, not an attack: no caps.
        command += ["--max-sessions-per-user", "0", "--max-connections-per-address", "0"]
    elif target == "node":
        command = ["node", str(NODE_REF / "server.js"), "--port", str(port)]
    else:
        command = [sys.executable, str(Path(__file__).resolve()), "--reference-server"]
        command += ["--port", str(port)]
    with log.open("wb") as output:
        proc = subprocess.Popen(
            command,
            cwd=NODE_REF if target == "node" else ROOT,
            env={k: v for k, v in os.environ.items() if not k.startswith("AGORA_")},
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # only calls prctl: safe enough after fork
        )
    CHILDREN.append(proc)
    if cpus:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(proc.pid, cpus)
    return proc


def prepare_node(targets: list[str]) -> list[str]:
    """``targets`` without ``node`` if node or npm is not installed (saying so); else with its
    packages installed by ``npm ci`` in ``benchmarks/ref`` (once, and again when the lock file
    changes)."""
    if "node" not in targets:
        return targets
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        print(f"note: {' and '.join(missing)} not installed: the node ws reference is skipped")
        return [t for t in targets if t != "node"]
    installed = NODE_REF / "node_modules" / ".package-lock.json"
    lock = NODE_REF / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        print("npm ci in benchmarks/ref (the node ws reference's packages)", flush=True)
        npm = ["npm", "ci", "--no-audit", "--no-fund", "--loglevel", "error"]
        subprocess.run(npm, cwd=NODE_REF, check=True, stdin=subprocess.DEVNULL, timeout=300)
    return targets


def stop_child(proc: subprocess.Popen[bytes] | multiprocessing.process.BaseProcess) -> None:
    """Terminate a child, then kill it if it is still there after a grace period."""
    popen = isinstance(proc, subprocess.Popen)
    for stop in (proc.terminate, proc.kill):
        if (proc.poll() is not None) if popen else not proc.is_alive():
            return
        stop()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(3) if popen else proc.join(3)


async def wait_healthy(port: int, proc: subprocess.Popen[bytes], register: bool) -> str:
    """Wait (30 s at most) for the server to be healthy; then register, if asked: the token."""
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", trust_env=False) as http:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get("/healthz", timeout=1)).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("the server was not healthy within 30 s")
            await asyncio.sleep(0.05)
        if not register:
            return ""
        account = {"username": "bench", "password": "bench-password"}
        response = await http.post("/api/v1/auth/register", json=account, timeout=10)
        return response.raise_for_status().json()["token"]


# ---------------------------------------------------------------------------------------------
# Runs


@dataclass
class Phase:
    mode: str
    label: str
    sent: int
    send_rate: float
    expected: int
    delivered: int
    errors: int
    throughput: float  # deliveries/s
    p50_ms: float
    p99_ms: float
    max_ms: float
    ack_p50_ms: float
    drain_ms: float
    server_cpu_pct: float
    server_us: float  # server CPU per delivery
    client_us: float  # publisher and subscribers' CPU per delivery
    other_cpu_pct: float  # used by processes outside this benchmark meanwhile
    lost_conns: int
    close_codes: list[int | None]
    disorder: int
    duplicates: int
    stale: int

    @property
    def saturated(self) -> bool:
        """Whether the server was the limit (a burst run with the server's core busy)."""
        return self.mode != "burst" or self.server_cpu_pct >= SATURATED_PCT


def per(a: float, b: float) -> float:
    return a / b if b > 0 else 0.0


def burst_messages(size: int, quick: bool) -> int:
    """The default K: 2000 messages, fewer for large S (about 500,000 deliveries at most)."""
    if quick:
        return min(200, max(50, 20_000 // size))
    return min(2000, max(100, 500_000 // size))


def percentile(values: list[int], p: float) -> int:
    """Nearest-rank percentile of sorted ``values``."""
    if not values:
        return 0
    return values[min(len(values) - 1, max(0, math.ceil(p * len(values)) - 1))]


class ServerRun:
    """One server (Agora or the reference) with S subscribers: the run and its results."""

    def __init__(self, args: argparse.Namespace, target: str, size: int, tmp: Path) -> None:
        self.args, self.target, self.size = args, target, size
        with socket.socket() as s:  # a free port
            s.bind((HOST, 0))
            self.port = s.getsockname()[1]
        self.log = tmp / f"{target}-{self.port}.log"
        self.connected, self.connect_s = 0, 0.0
        self.rss_before = self.rss_idle = self.rss_peak = 0
        self.phases: dict[str, Phase] = {}

    @property
    def per_conn(self) -> float:
        return per(self.rss_idle - self.rss_before, self.connected)

    def rss(self) -> int:
        """The server's RSS now; ``rss_peak`` keeps the largest seen."""
        with contextlib.suppress(psutil.Error):
            self.rss_peak = max(self.rss_peak, rss := self.server.memory_info().rss)
            return rss
        return 0

    async def sample_rss(self) -> None:
        """Sample the RSS every 20 ms, for its peak. Not the kernel's high-water mark (VmHWM):
        that includes the 64 MiB Agora's Argon2 hashing takes at startup and registration."""
        for _ in range(int(LIFETIME / 0.02)):
            self.rss()
            await asyncio.sleep(0.02)

    async def run(self) -> None:
        args, port, size = self.args, self.port, self.size
        proc = start_server(self.target, port, self.log, args.agora_args, args.server_cpus)
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(stop_child, proc)
            token = await wait_healthy(port, proc, register=self.target == "agora")
            self.server = psutil.Process(proc.pid)
            self.publisher = publisher = await Publisher.open(port, token)
            stack.push_async_callback(publisher.close)
            await asyncio.sleep(args.settle)
            self.rss_before = self.rss()
            sampler = asyncio.create_task(self.sample_rss())
            stack.callback(sampler.cancel)
            started = time.perf_counter()
            workers = WorkerPool(
                args.workers, port, token, publisher.channel, size, args.client_cpus
            )
            stack.callback(workers.close)
            self.workers = workers
            self.connected = sum(await workers.gather("ready", 40 + size / 10))
            self.connect_s = time.perf_counter() - started
            await asyncio.sleep(args.settle)
            self.rss_idle = self.rss()
            warm_up = await self.run_phase(0, "warm-up")
            if warm_up.delivered != warm_up.expected or warm_up.errors:
                raise RuntimeError(f"the warm-up failed: {self.describe(warm_up)}")
            for phase, mode in enumerate(("burst", "steady"), start=1):
                self.phases[mode] = await self.run_phase(phase, mode)
                print(self.describe(self.phases[mode]), flush=True)
            sampler.cancel()
            self.rss()  # the last sample for the peak

    async def run_phase(self, phase: int, mode: str) -> Phase:
        args, workers, server, publisher = self.args, self.workers, self.server, self.publisher
        if mode == "burst":
            count = args.messages or burst_messages(self.size, args.quick)
            window, rate, label, timeout = args.window, None, f"K={count}", args.phase_timeout
        elif mode == "steady":
            count = max(1, round(args.rate * args.duration))
            window, rate, label = args.steady_window, args.rate, f"{args.rate:g} msg/s"
            timeout = args.duration + args.phase_timeout
        else:  # warm-up
            count, window, rate, label, timeout = WARMUP_MESSAGES, 1, None, "warm-up", 30.0
        workers.send(("phase", phase, count, timeout + args.drain_timeout))
        await workers.gather("armed", 10)
        server_cpu, client_cpu = sum(server.cpu_times()[:2]), time.process_time()
        ours, busy = server_cpu + client_cpu + workers.cpu_seconds(), busy_seconds()
        published = await publisher.publish(phase, count, window, rate, args.text_bytes, timeout)
        client_cpu = time.process_time() - client_cpu
        workers.send(("expect", published.sent))
        if published.errors:
            print(f"{len(published.errors)} message.send errors, the first: {published.errors[0]}")
        if published.timed_out:
            label += f", timed out after {published.sent}"
        results = await workers.gather("result", timeout + args.drain_timeout + 30)
        ours = sum(server.cpu_times()[:2]) + time.process_time() + workers.cpu_seconds() - ours
        other_cpu = max(0.0, busy_seconds() - busy - ours)
        server_cpu = sum(server.cpu_times()[:2]) - server_cpu
        total = {k: sum(r[k] for r in results) for k in COUNTS}
        latencies: list[int] = sorted(  # the workers' runs are sorted: this is a linear merge
            itertools.chain.from_iterable(array.array("q", r["latencies"]) for r in results)
        )
        last_rx = max(r["last_rx"] for r in results)
        wall_s = max(0, last_rx - published.first_send) / 1e9
        send_s = (published.last_send - published.first_send) / 1e9
        delivered = total["received"]
        return Phase(
            mode=mode,
            label=label,
            sent=published.sent,
            send_rate=per(published.sent - 1, send_s),
            expected=published.sent * self.size,
            delivered=delivered,
            errors=len(published.errors) + total["errors"],
            throughput=per(delivered, wall_s),
            p50_ms=percentile(latencies, 0.50) / 1000,
            p99_ms=percentile(latencies, 0.99) / 1000,
            max_ms=(latencies[-1] if latencies else 0) / 1000,
            ack_p50_ms=percentile(sorted(published.ack_latencies), 0.50) / 1e6,
            drain_ms=max(0, last_rx - published.last_ack) / 1e6,
            server_cpu_pct=100 * per(server_cpu, wall_s),
            server_us=1e6 * per(server_cpu, delivered),
            client_us=1e6 * per(client_cpu + total["cpu"], delivered),
            other_cpu_pct=100 * per(other_cpu, wall_s),
            lost_conns=total["lost"],
            close_codes=sorted({c for r in results for c in r["close_codes"]}, key=str),
            disorder=total["disorder"],
            duplicates=total["duplicates"],
            stale=total["stale"],
        )

    def describe(self, p: Phase) -> str:
        lost = p.expected - p.delivered
        extra = f", {lost} deliveries lost" if lost else ""
        extra += f", {p.errors} errors" if p.errors else ""
        extra += f", {p.lost_conns} connections closed {p.close_codes}" if p.lost_conns else ""
        extra += f", {p.disorder} out of order" if p.disorder else ""
        extra += f", {p.duplicates} duplicates" if p.duplicates else ""
        extra += f", {p.stale} late from an earlier run" if p.stale else ""
        return (
            f"{self.target:>9} S={self.size:<5} {p.mode:<6} {p.label:<11} "
            f"{p.throughput:>10,.0f} deliveries/s  latency p50 {p.p50_ms:7.1f} ms "
            f"p99 {p.p99_ms:7.1f} ms max {p.max_ms:7.1f} ms | sent {p.sent} at "
            f"{p.send_rate:,.0f}/s, ack p50 {p.ack_p50_ms:.2f} ms, drain {p.drain_ms:.0f} ms | "
            f"server CPU {p.server_cpu_pct:.0f}% ({p.server_us:.1f} us/delivery), clients "
            f"{p.client_us:.1f} us/delivery, other processes {p.other_cpu_pct:.0f}%{extra}"
        )


def ratio(a: float, b: float | None) -> str:
    return f"{a / b:.2f}x" if b else "-"


def table(header: str, rows: list[str], left: tuple[str, ...] = ("run", "server")) -> list[str]:
    """A markdown table of " | "-separated cells; the columns named in ``left`` left-aligned."""
    rule = "|".join(
        "-" * (len(name) + 2) if name in left else "-" * (len(name) + 1) + ":"
        for name in header.split(" | ")
    )
    return [f"| {header} |", f"|{rule}|", *(f"| {row} |" for row in rows)]


def markdown(runs: list[ServerRun], args: argparse.Namespace) -> str:
    reference = {r.size: r for r in runs if r.target == "reference"}
    phases, memory = [], []
    for run in runs:
        ref = reference.get(run.size) if run.target != "reference" else None
        for p in run.phases.values():
            rp = ref.phases.get(p.mode) if ref else None
            phases.append(
                f"{run.size} | {p.mode} ({p.label}) | {run.target} | {p.throughput:,.0f}"
                f"{'' if p.saturated else ' *'} | {p.p50_ms:.1f} | {p.p99_ms:.1f} | "
                f"{p.max_ms:.1f} | {p.expected - p.delivered} | {p.server_cpu_pct:.0f}% | "
                f"{p.server_us:.1f} | {p.other_cpu_pct:.0f}% | "
                f"{ratio(p.throughput, rp and rp.throughput)} | {ratio(p.p99_ms, rp and rp.p99_ms)}"
            )
        memory.append(
            f"{run.size} | {run.target} | {run.rss_before / 2**20:.1f} | "
            f"{run.rss_idle / 2**20:.1f} | {run.rss_peak / 2**20:.1f} | "
            f"{run.per_conn / 1024:.1f} | {ratio(run.per_conn, ref and ref.per_conn)}"
        )
    lines = [
        f"Fan-out, one channel, one publisher; burst: K messages with window "
        f"{args.window}; steady: {args.rate:g} msg/s for {args.duration:g} s; "
        f"{args.text_bytes}-byte texts; {args.workers} subscriber processes; "
        f"{os.cpu_count()} CPUs{', pinned' if args.pin else ''}.",
        "",
        *table(
            "S | run | server | deliveries/s | p50 ms | p99 ms | max ms | lost | server CPU | "
            "server µs/delivery | other CPU | throughput vs ref | p99 vs ref",
            phases,
        ),
    ]
    if not all(p.saturated for run in runs for p in run.phases.values()):
        lines += [
            "",
            f"\\* server CPU under {SATURATED_PCT:.0f}%: not what set the pace (the clients, "
            "other processes or the publisher's round trips were).",
        ]
    lines += [
        "",
        *table(
            "S | server | RSS before MiB | RSS with S idle MiB | peak RSS MiB | "
            "KiB per idle connection | per-connection vs ref",
            memory,
        ),
    ]
    return "\n".join(lines)


async def bench(args: argparse.Namespace) -> list[ServerRun]:
    # SIGTERM cancels the run like Ctrl-C does: every ``finally`` stops its processes.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    runs = []
    with tempfile.TemporaryDirectory(prefix="agora-fanout-") as tmp:
        for size in args.sizes:
            for target in args.targets:
                run = ServerRun(args, target, size, Path(tmp))
                try:
                    await run.run()
                except Exception:
                    with contextlib.suppress(OSError):
                        tail = run.log.read_text(errors="replace")[-2000:]
                        print(f"--- {target} server log (tail) ---\n{tail}", flush=True)
                    raise
                print(
                    f"{target:>9} S={size:<5} connected {run.connected} in {run.connect_s:.1f} s; "
                    f"RSS {run.rss_before / 2**20:.1f} -> {run.rss_idle / 2**20:.1f} MiB "
                    f"({run.per_conn / 1024:.1f} KiB per idle connection), "
                    f"peak {run.rss_peak / 2**20:.1f} MiB",
                    flush=True,
                )
                runs.append(run)
    return runs


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--reference-server", action="store_true", help=argparse.SUPPRESS)
    add("--port", type=int, default=0, help=argparse.SUPPRESS)
    add("--quick", action="store_true", help="a small smoke run (< 40 s)")
    add("--sizes", default=None, help="subscriber counts (default 100,1000)")
    targets_help = "servers to measure (agora,reference,node; node is skipped if not installed)"
    add("--targets", default=",".join(TARGETS), help=targets_help)
    k_help = "burst messages (default min(2000, 500000 / S); --quick: min(200, 20000 / S))"
    add("-k", "--messages", type=int, default=None, help=k_help)
    add("--window", type=int, default=8, help="burst: most unanswered sends (default 8)")
    add("--rate", type=float, default=50.0, help="steady msg/s (default 50)")
    add("--duration", type=float, default=None, help="steady seconds (10)")
    add("--steady-window", type=int, default=1000, help="steady: most unanswered sends (1000)")
    add("--text-bytes", type=int, default=100, help="message text size (100)")
    add("--workers", type=int, default=2, help="subscriber processes (2)")
    pin_help = "pin the server to CPU 0 and the clients to the others (default on if >1 CPU)"
    add("--pin", action=argparse.BooleanOptionalAction, default=True, help=pin_help)
    add("--phase-timeout", type=float, default=60.0, help="publish deadline, s")
    add("--drain-timeout", type=float, default=15.0, help="wait for late deliveries, s")
    add("--settle", type=float, default=0.5, help="pause before RSS samples, s")
    add("--agora-args", default="", help="more options for `server serve` (one string)")
    add("--markdown", type=Path, help="also write the tables to this file")
    args = parser.parse_args(argv)
    quick = args.quick
    args.sizes = [int(s) for s in (args.sizes or ("20,100" if quick else "100,1000")).split(",")]
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if not args.targets or not set(args.targets) <= set(TARGETS):
        parser.error(f"--targets takes some of {', '.join(TARGETS)}")
    args.duration = args.duration or (2.0 if quick else 10.0)
    args.agora_args = shlex.split(args.agora_args)
    pin_cpus(args)
    return args


def pin_cpus(args: argparse.Namespace) -> None:
    """With ``args.pin`` and more than one CPU: the server on CPU 0 (``args.server_cpus``),
    the clients on the others (``args.client_cpus``); else both empty."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    args.pin = args.pin and len(cpus) > 1
    args.server_cpus = {cpus[0]} if args.pin else set()
    args.client_cpus = set(cpus[1:]) if args.pin else set()


def run_bench(bench: Callable[[argparse.Namespace], Any], args: argparse.Namespace) -> Any:
    """``bench(args)`` on uvloop, this process on the client CPUs; every child stopped after."""
    if args.client_cpus:
        os.sched_setaffinity(0, args.client_cpus)
    try:
        return uvloop.run(bench(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.exit("interrupted")
    finally:
        for child in CHILDREN:
            stop_child(child)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.reference_server:
        uvloop.run(reference_server(args.port))
        return
    args.targets = prepare_node(args.targets)
    started = time.perf_counter()
    runs = run_bench(bench, args)
    tables = markdown(runs, args)
    print(f"\n{tables}\n\n(total {time.perf_counter() - started:.0f} s)")
    if args.markdown:
        args.markdown.write_text(tables + "\n")


if __name__ == "__main__":
    main()
