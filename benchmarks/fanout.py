#!/usr/bin/env python3
"""Fan-out benchmark: one publisher, S subscribers in one channel, Agora against a reference.

For each S (default 100 and 1000) and each server (Agora, then the reference), a fresh
server is started and measured:

- memory: the server's RSS before the subscribers connect, with S idle identified and
  subscribed connections (per connection: the difference / S), and its peak over the run;
- ``burst``: K messages sent as fast as they are acknowledged, with at most ``--window``
  commands outstanding on the publisher's one connection;
- ``steady``: ``--rate`` messages/s for ``--duration`` seconds, sent on schedule whatever
  the replies (open loop, so a slow server cannot slow the sender down and hide latency).

Each run reports delivered messages/s (deliveries across all subscribers / wall time from
the first send to the last delivery) and the latency of every delivery: the publisher puts
``time.time_ns()`` in the message text, the subscriber reads its own clock when the frame
arrives (same host, same clock).

The reference is a bare ``websockets`` server (this file with ``--reference-server``): no
auth, no store, no validation. ``subscribe`` adds the connection to a set, ``message.send``
encodes the event once and ``websockets.broadcast``-s it to that set, then replies. Agora's
figures are also printed as ratios to it.

Processes (``--pin`` places them on a 2-core machine; see benchmarks/README.md):

- the server under test, a subprocess on a free 127.0.0.1 port (Agora: ``python3 -m server
  serve --rate-limit 0`` on a temporary database);
- ``--workers`` subscriber processes holding S / workers connections each, on uvloop, with a
  minimal WebSocket client (inline handshake and frame parsing, no task per connection or
  per message), so that the clients take as little CPU from the server as possible;
- this process: the orchestrator and the publisher (a ``websockets`` client).

Run ``python3 benchmarks/fanout.py`` (about 75 s) or ``--quick`` (a smoke run, about 20 s).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import contextlib
import ctypes
import hashlib
import itertools
import math
import multiprocessing
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from http import HTTPStatus
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import msgpack
import psutil
import uvloop
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
GATEWAY = "/gateway?v=1&encoding=msgpack"
#: A benchmark message's text starts with ``~b<phase>~<seq>~<send time in ns>~``.
MARK = b"~b"
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: Upper bound on the life of any process or loop of this benchmark, in seconds.
LIFETIME = 900.0
#: Connections a worker opens at once (the reference server's accept backlog is finite).
CONNECT_CONCURRENCY = 32
#: Server CPU (% of one core) under which a burst run is marked as not server-bound.
SATURATED_PCT = 85.0
#: Messages of the unmeasured warm-up phase that also checks the whole path works.
WARMUP_MESSAGES = 20

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
    community = {
        "id": "1",
        "name": "Reference",
        "role": "member",
        "channels": [{"id": channel, "name": "general", "kind": "text"}],
    }

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
                    message = {  # the shape and id sizes of Agora's message
                        "id": str(7_000_000_000_000_000_000 + offset),
                        "channel": channel,
                        "author": {"id": "7000000000000000000", "name": "bench"},
                        "text": d.get("text"),
                        "ts": time.time_ns() // 1_000_000,
                    }
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
    async with serve(
        handler,
        HOST,
        port,
        compression=None,  # as Agora: permessage-deflate off
        ping_interval=None,  # as Agora: no protocol-level pings
        max_size=64 * 1024,
        process_request=health,
        backlog=2048,  # as uvicorn
    ):
        await asyncio.wait_for(stop, LIFETIME)


# ---------------------------------------------------------------------------------------------
# Subscriber workers


def masked_frame(payload: bytes, opcode: int = 0x2) -> bytes:
    """A client-to-server WebSocket frame (final, masked)."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return header + mask + (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")


class Subscriber(asyncio.Protocol):
    """One subscriber connection: a minimal client, cheap per received frame.

    Until subscribed, frames are decoded and queued in ``inbox`` for the setup
    coroutine. Once live, a frame is only searched for ``MARK`` and handed to the
    pool. Server frames are never masked, and neither server fragments messages
    (a fragment is an error here).
    """

    def __init__(self, pool: SubscriberPool) -> None:
        loop = asyncio.get_running_loop()
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.key = base64.b64encode(os.urandom(16))
        self.buffer = b""
        self.upgraded: asyncio.Future[None] = loop.create_future()
        self.inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.live = False
        self.closed = False
        self.close_code: int | None = None
        self.received = 0  # in the current phase
        self.last_seq = -1
        self.next_id = 100

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        transport.write(
            f"GET {GATEWAY} HTTP/1.1\r\nHost: {HOST}:{self.pool.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {self.key.decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError(f"connection lost: {exc}"))
        self.inbox.put_nowait(None)
        if not self.closed:
            self.closed = True
            self.pool.lost(self)

    def send(self, frame: dict[str, Any]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(masked_frame(msgpack.packb(frame)))

    def command(self, op: str, d: dict[str, Any]) -> int:
        self.next_id += 1
        self.send({"op": op, "id": self.next_id, "d": d})
        return self.next_id

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        buf = self.buffer + data if self.buffer else data
        if not self.upgraded.done():
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buf
                if len(buf) > 16 * 1024:
                    self._fail("handshake response too long")
                return
            head, buf = buf[:end], buf[end + 4 :]
            accept = base64.b64encode(hashlib.sha1(self.key + WS_GUID).digest())
            if not head.startswith(b"HTTP/1.1 101") or accept not in head:
                self._fail(f"handshake refused: {head[:200]!r}")
                return
            self.upgraded.set_result(None)
        i, n = 0, len(buf)
        while n - i >= 2:
            b0, b1 = buf[i], buf[i + 1]
            if not b0 & 0x80 or b1 & 0x80:
                self._fail("a fragmented or masked frame from the server")
                return
            length = b1 & 0x7F
            start = i + 2
            if length == 126:
                start += 2
                length = int.from_bytes(buf[i + 2 : start], "big")
            elif length == 127:
                start += 8
                length = int.from_bytes(buf[i + 2 : start], "big")
            end = start + length
            if end > n:
                break
            payload, i = buf[start:end], end
            opcode = b0 & 0x0F
            if opcode in (0x1, 0x2):
                if self.live:
                    at = payload.find(MARK)
                    if at >= 0:
                        self.pool.deliver(self, payload, at, now)
                    else:
                        self.pool.other(payload)
                else:
                    self._setup_frame(payload)
            elif opcode == 0x8:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                assert self.transport is not None
                self.transport.write(masked_frame(payload[:2], 0x8))
                self.transport.close()
                return
            elif opcode == 0x9:
                assert self.transport is not None
                self.transport.write(masked_frame(payload, 0xA))
            elif opcode != 0xA:
                self._fail(f"unexpected frame opcode {opcode}")
                return
        self.buffer = buf[i:]

    def _setup_frame(self, payload: bytes) -> None:
        frame = msgpack.unpackb(payload)
        if frame.get("op") == "reply" and frame.get("id") == self.pool.subscribe_id:
            self.live = True  # from the very next frame, events may come
        self.inbox.put_nowait(frame)

    def _fail(self, reason: str) -> None:
        self.pool.failures.append(reason)
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError(reason))
        if self.transport is not None:
            self.transport.abort()


class SubscriberPool:
    """A worker's connections and the counts and latencies of the current phase."""

    subscribe_id = 2

    def __init__(self, port: int, token: str, channel: str, count: int) -> None:
        self.port = port
        self.token = token
        self.channel = channel
        self.count = count
        self.subs: list[Subscriber] = []
        self.failures: list[str] = []
        self.heartbeat_s = 30.0
        self.phase = -1
        self.per_conn = 0
        self.expected = 0
        self.received = 0
        self.latencies = array.array("q")  # microseconds
        self.last_rx = 0
        self.disorder = 0
        self.stale = 0
        self.others = 0
        self.errors = 0
        self.lost_in_phase = 0
        self.done = asyncio.Event()

    async def open_all(self, timeout: float) -> None:
        slots = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def open_one() -> None:
            async with slots:
                await self._open()

        async with asyncio.timeout(timeout):
            await asyncio.gather(*(open_one() for _ in range(self.count)))

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        _, sub = await loop.create_connection(lambda: Subscriber(self), HOST, self.port)
        self.subs.append(sub)
        await sub.upgraded
        hello = await self._next(sub, "hello")
        self.heartbeat_s = hello["d"].get("heartbeat_ms", 30_000) / 1000
        sub.send({"op": "identify", "id": 1, "d": {"token": self.token}})
        await self._next(sub, "reply")
        sub.send({"op": "subscribe", "id": self.subscribe_id, "d": {"channel": self.channel}})
        await self._next(sub, "reply")
        if not sub.live:
            raise RuntimeError("subscribe was not answered in order")

    @staticmethod
    async def _next(sub: Subscriber, op: str) -> dict[str, Any]:
        frame = await sub.inbox.get()
        if frame is None:
            raise ConnectionError(f"closed with {sub.close_code} while waiting for {op}")
        if frame.get("op") != op:
            raise RuntimeError(f"expected {op}, got {frame}")
        return frame

    async def heartbeat(self) -> None:
        """Ping every connection once per half heartbeat, spread over the interval."""
        interval = self.heartbeat_s / 2
        for _ in range(int(LIFETIME / interval) + 1):
            for sub in self.subs:
                await asyncio.sleep(interval / len(self.subs))
                if not sub.closed:
                    sub.command("ping", {})

    def arm(self, phase: int, per_conn: int) -> None:
        self.phase, self.per_conn = phase, per_conn
        open_subs = [s for s in self.subs if not s.closed]
        for sub in open_subs:
            sub.received, sub.last_seq = 0, -1
        self.expected = per_conn * len(open_subs)
        self.received = self.last_rx = 0
        self.disorder = self.stale = self.others = self.errors = self.lost_in_phase = 0
        self.latencies = array.array("q")
        self.done = asyncio.Event()
        if self.expected == 0:
            self.done.set()

    def deliver(self, sub: Subscriber, payload: bytes, at: int, now: int) -> None:
        header = payload[at + 2 : at + 64].split(b"~", 3)
        try:
            phase, seq, sent = int(header[0]), int(header[1]), int(header[2])
        except (ValueError, IndexError):
            self.others += 1
            return
        if phase != self.phase:
            self.stale += 1
            return
        if seq <= sub.last_seq:
            self.disorder += 1
        sub.last_seq = seq
        sub.received += 1
        self.latencies.append((now - sent) // 1000)
        self.last_rx = now
        self.received += 1
        if self.received >= self.expected:
            self.done.set()

    def other(self, payload: bytes) -> None:
        self.others += 1
        if b"\xa2op\xa5error" in payload:
            self.errors += 1

    def expect(self, per_conn: int) -> None:
        """Lower the count each connection waits for (the publisher sent fewer)."""
        if per_conn < self.per_conn and not self.done.is_set():
            self.expected -= (self.per_conn - per_conn) * sum(not s.closed for s in self.subs)
            self.per_conn = per_conn
            if self.received >= self.expected:
                self.done.set()

    def lost(self, sub: Subscriber) -> None:
        if self.phase >= 0 and not self.done.is_set():
            self.lost_in_phase += 1
            self.expected -= max(0, self.per_conn - sub.received)
            if self.received >= self.expected:
                self.done.set()

    def close_all(self) -> None:
        for sub in self.subs:
            if sub.transport is not None:
                sub.transport.abort()


def worker_main(conn: Connection, port: int, token: str, channel: str, count: int) -> None:
    """Entry point of a subscriber process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator stops us
    with contextlib.suppress(asyncio.CancelledError):
        uvloop.run(_worker(conn, port, token, channel, count))


async def _worker(conn: Connection, port: int, token: str, channel: str, count: int) -> None:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    commands: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

    def readable() -> None:
        try:
            command = conn.recv()
        except (EOFError, OSError):  # the orchestrator is gone
            loop.remove_reader(conn.fileno())
            command = ("stop",)
        if command[0] == "stop":  # at once, even in the middle of a phase
            main.cancel()
        elif command[0] == "expect":  # the publisher stopped short: expect fewer, now
            pool.expect(command[1])
        else:
            commands.put_nowait(command)

    loop.add_reader(conn.fileno(), readable)
    os.set_blocking(conn.fileno(), True)  # uvloop made it non-blocking: recv needs whole messages
    pool = SubscriberPool(port, token, channel, count)
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
            cpu = time.process_time() - cpu
            conn.send(
                (
                    "result",
                    {
                        "expected": pool.per_conn * pool.count,
                        "received": pool.received,
                        "latencies": array.array("q", sorted(pool.latencies)).tobytes(),
                        "last_rx": pool.last_rx,
                        "disorder": pool.disorder,
                        "stale": pool.stale,
                        "errors": pool.errors,
                        "lost": pool.lost_in_phase,
                        "close_codes": [s.close_code for s in pool.subs if s.closed],
                        "cpu": cpu,
                    },
                )
            )
    except Exception:
        with contextlib.suppress(OSError):
            failures = "\n".join(pool.failures[:5])
            conn.send(("error", traceback.format_exc() + failures))
    finally:
        if heartbeat is not None:
            heartbeat.cancel()
        pool.close_all()


# ---------------------------------------------------------------------------------------------
# The orchestrator's side of the workers, the publisher and the server process


class WorkerPool:
    """The subscriber processes of one run, and their answers."""

    def __init__(self, n: int, port: int, token: str, channel: str, size: int, cpus: set[int]):
        ctx = multiprocessing.get_context("spawn")
        self.inbox: asyncio.Queue[tuple[int, tuple[Any, ...]]] = asyncio.Queue()
        self.procs: list[multiprocessing.process.BaseProcess] = []
        self.conns: list[Connection] = []
        loop = asyncio.get_running_loop()
        n = max(1, min(n, size))
        for i in range(n):
            count = size // n + (1 if i < size % n else 0)
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=worker_main, args=(child, port, token, channel, count), daemon=True
            )
            proc.start()
            CHILDREN.append(proc)
            child.close()
            if cpus:
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(proc.pid, cpus)  # type: ignore[arg-type]
            self.procs.append(proc)
            self.conns.append(parent)
            loop.add_reader(parent.fileno(), self._readable, i)
            os.set_blocking(parent.fileno(), True)  # as in _worker

    def _readable(self, i: int) -> None:
        try:
            self.inbox.put_nowait((i, self.conns[i].recv()))
        except (EOFError, OSError) as exc:
            asyncio.get_running_loop().remove_reader(self.conns[i].fileno())
            self.inbox.put_nowait((i, ("exit", repr(exc), self.procs[i].exitcode)))

    async def gather(self, kind: str, timeout: float) -> list[Any]:
        """One ``kind`` answer from each worker, in worker order."""
        answers: dict[int, Any] = {}
        async with asyncio.timeout(timeout):
            while len(answers) < len(self.procs):
                i, message = await self.inbox.get()
                if message[0] != kind:
                    raise RuntimeError(f"subscriber worker {i}: {message[0]} {message[1:]}")
                answers[i] = message[1] if len(message) > 1 else None
        return [answers[i] for i in range(len(self.procs))]

    def send(self, message: tuple[Any, ...]) -> None:
        for conn in self.conns:
            conn.send(message)

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(proc.pid).cpu_times()
                total += times.user + times.system
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


@dataclass
class Published:
    sent: int
    acked: int
    errors: list[Any]
    first_send: int  # ns
    last_send: int
    last_ack: int
    ack_latencies: list[int]  # ns
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
        if answer.get("op") != "reply":
            raise RuntimeError(f"identify failed: {answer}")
        return cls(ws, answer["d"]["communities"][0]["channels"][0]["id"])

    async def publish(
        self,
        phase: int,
        count: int,
        *,
        window: int,
        rate: float | None,
        text_bytes: int,
        timeout: float,
    ) -> Published:
        """Send ``count`` messages, at most ``window`` unanswered, at ``rate``/s if given."""
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(window)
        pending: dict[int, int] = {}
        result = Published(0, 0, [], 0, 0, 0, [])

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
                    text = f"~b{phase}~{seq}~{sent}~".ljust(text_bytes, ".")
                    pending[self.next_id] = sent
                    d = {"channel": self.channel, "text": text}
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


class RssSampler:
    """The server's peak RSS while it is measured, sampled with psutil.

    Not the kernel's high-water mark (VmHWM): that includes the 64 MiB Agora's
    Argon2 password hashing takes at startup and registration, and gives back.
    """

    def __init__(self, proc: psutil.Process, interval: float = 0.02) -> None:
        self.proc = proc
        self.interval = interval
        self.peak = 0
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        for _ in range(int(LIFETIME / self.interval)):
            self.sample()
            await asyncio.sleep(self.interval)

    def sample(self) -> int:
        with contextlib.suppress(psutil.Error):
            rss = self.proc.memory_info().rss
            self.peak = max(self.peak, rss)
            return rss
        return 0

    def stop(self) -> int:
        self.task.cancel()
        self.sample()
        return self.peak


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent in user and system mode so far."""
    times = psutil.cpu_times()
    return times.user + times.nice + times.system


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _die_with_parent() -> None:
    if _libc is not None:
        _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: even a kill -9 of us stops it


def start_server(
    target: str, port: int, tmp: Path, extra: list[str], cpus: set[int]
) -> subprocess.Popen[bytes]:
    if target == "agora":
        db = tmp / f"agora-{port}.db"
        command = [sys.executable, "-m", "server", "serve", "--port", str(port), "--db", str(db)]
        command += ["--rate-limit", "0", "--log-level", "warning", *extra]
    else:
        command = [sys.executable, str(Path(__file__).resolve()), "--reference-server"]
        command += ["--port", str(port)]
    log = (tmp / f"{target}-{port}.log").open("wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA_")}
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,  # only calls prctl: safe enough after fork
    )
    log.close()
    CHILDREN.append(proc)
    if cpus:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(proc.pid, cpus)
    return proc


def stop_child(proc: subprocess.Popen[bytes] | multiprocessing.process.BaseProcess) -> None:
    """Terminate a child, then kill it if it is still there after a grace period."""
    if isinstance(proc, subprocess.Popen):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(3)
    elif proc.is_alive():
        proc.terminate()
        proc.join(3)
        if proc.is_alive():
            proc.kill()
            proc.join(3)


def log_tail(tmp: Path, target: str, port: int) -> str:
    with contextlib.suppress(OSError):
        return (tmp / f"{target}-{port}.log").read_text(errors="replace")[-2000:]
    return ""


async def wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=1, trust_env=False) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"http://{HOST}:{port}/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    raise TimeoutError(f"the server was not healthy within {timeout} s")


async def register(port: int) -> str:
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
        response = await http.post(
            f"http://{HOST}:{port}/api/v1/auth/register",
            json={"username": "bench", "password": "bench-password"},
        )
        response.raise_for_status()
        return response.json()["token"]


# ---------------------------------------------------------------------------------------------
# Runs


@dataclass
class Phase:
    mode: str
    label: str
    sent: int
    acked: int
    errors: int
    expected: int
    delivered: int
    wall_s: float
    send_rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    ack_p50_ms: float
    drain_ms: float
    server_cpu_s: float
    client_cpu_s: float
    other_cpu_s: float  # used by processes outside this benchmark meanwhile
    lost_conns: int
    close_codes: list[int | None]
    disorder: int
    stale: int

    @property
    def throughput(self) -> float:
        return self.delivered / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def server_cpu_pct(self) -> float:
        return 100 * self.server_cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def server_us_per_delivery(self) -> float:
        return 1e6 * self.server_cpu_s / self.delivered if self.delivered else 0.0

    @property
    def client_us_per_delivery(self) -> float:
        return 1e6 * self.client_cpu_s / self.delivered if self.delivered else 0.0

    @property
    def other_cpu_pct(self) -> float:
        return 100 * self.other_cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def saturated(self) -> bool:
        """Whether the server was the limit (a burst run with the server's core busy)."""
        return self.mode != "burst" or self.server_cpu_pct >= SATURATED_PCT


@dataclass
class ServerRun:
    target: str
    size: int
    connected: int = 0
    connect_s: float = 0.0
    rss_before: int = 0
    rss_idle: int = 0
    rss_peak: int = 0
    phases: dict[str, Phase] = field(default_factory=dict)

    @property
    def per_conn(self) -> float:
        return (self.rss_idle - self.rss_before) / self.connected if self.connected else 0.0


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


async def run_phase(
    args: argparse.Namespace,
    workers: WorkerPool,
    publisher: Publisher,
    server: psutil.Process,
    size: int,
    phase: int,
    mode: str,
) -> Phase:
    if mode == "burst":
        count = args.messages or burst_messages(size, args.quick)
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
    published = await publisher.publish(
        phase, count, window=window, rate=rate, text_bytes=args.text_bytes, timeout=timeout
    )
    client_cpu = time.process_time() - client_cpu
    workers.send(("expect", published.sent))
    if published.errors:
        print(f"{len(published.errors)} message.send errors, the first: {published.errors[0]}")
    if published.timed_out:
        label += f", timed out after {published.sent}"
    results = await workers.gather("result", timeout + args.drain_timeout + 30)
    ours = sum(server.cpu_times()[:2]) + time.process_time() + workers.cpu_seconds() - ours
    other_cpu_s = max(0.0, busy_seconds() - busy - ours)
    server_cpu = sum(server.cpu_times()[:2]) - server_cpu
    latencies: list[int] = sorted(  # the workers' runs are sorted: this is a linear merge
        itertools.chain.from_iterable(array.array("q", r["latencies"]) for r in results)
    )
    last_rx = max(r["last_rx"] for r in results)
    wall_s = max(0, last_rx - published.first_send) / 1e9
    send_s = (published.last_send - published.first_send) / 1e9
    acks = sorted(published.ack_latencies)
    return Phase(
        mode=mode,
        label=label,
        sent=published.sent,
        acked=published.acked,
        errors=len(published.errors) + sum(r["errors"] for r in results),
        expected=sum(r["expected"] for r in results),
        delivered=sum(r["received"] for r in results),
        wall_s=wall_s,
        send_rate=(published.sent - 1) / send_s if send_s > 0 else 0.0,
        p50_ms=percentile(latencies, 0.50) / 1000,
        p99_ms=percentile(latencies, 0.99) / 1000,
        max_ms=(latencies[-1] if latencies else 0) / 1000,
        ack_p50_ms=percentile(acks, 0.50) / 1e6,
        drain_ms=max(0, last_rx - published.last_ack) / 1e6,
        server_cpu_s=server_cpu,
        client_cpu_s=client_cpu + sum(r["cpu"] for r in results),
        other_cpu_s=other_cpu_s,
        lost_conns=sum(r["lost"] for r in results),
        close_codes=sorted({c for r in results for c in r["close_codes"]}, key=str),
        disorder=sum(r["disorder"] for r in results),
        stale=sum(r["stale"] for r in results),
    )


async def bench_one(args: argparse.Namespace, target: str, size: int, tmp: Path) -> ServerRun:
    run = ServerRun(target, size)
    port = free_port()
    proc = start_server(target, port, tmp, args.agora_args, args.server_cpus)
    workers: WorkerPool | None = None
    publisher: Publisher | None = None
    sampler: RssSampler | None = None
    try:
        await wait_healthy(port, proc, timeout=30)
        server = psutil.Process(proc.pid)
        token = await register(port) if target == "agora" else ""
        publisher = await Publisher.open(port, token)
        await asyncio.sleep(args.settle)
        sampler = RssSampler(server)
        run.rss_before = sampler.sample()
        started = time.perf_counter()
        workers = WorkerPool(args.workers, port, token, publisher.channel, size, args.client_cpus)
        run.connected = sum(await workers.gather("ready", 40 + size / 10))
        run.connect_s = time.perf_counter() - started
        await asyncio.sleep(args.settle)
        run.rss_idle = sampler.sample()
        warm_up = await run_phase(args, workers, publisher, server, size, 0, "warm-up")
        if warm_up.delivered != warm_up.expected or warm_up.errors:
            raise RuntimeError(f"the warm-up failed: {describe(run, warm_up)}")
        for phase, mode in enumerate(("burst", "steady"), start=1):
            run.phases[mode] = result = await run_phase(
                args, workers, publisher, server, size, phase, mode
            )
            print(describe(run, result), flush=True)
        run.rss_peak = sampler.stop()
    except Exception:
        print(f"--- {target} server log (tail) ---\n{log_tail(tmp, target, port)}", flush=True)
        raise
    finally:
        if sampler is not None:
            sampler.stop()
        if publisher is not None:
            await publisher.close()
        if workers is not None:
            workers.close()
        stop_child(proc)
    return run


def describe(run: ServerRun, p: Phase) -> str:
    lost = p.expected - p.delivered
    extra = f", {lost} deliveries lost" if lost else ""
    extra += f", {p.errors} errors" if p.errors else ""
    extra += f", {p.lost_conns} connections closed {p.close_codes}" if p.lost_conns else ""
    extra += f", {p.disorder} out of order" if p.disorder else ""
    extra += f", {p.stale} late from an earlier run" if p.stale else ""
    return (
        f"{run.target:>9} S={run.size:<5} {p.mode:<6} {p.label:<11} "
        f"{p.throughput:>10,.0f} deliveries/s  latency p50 {p.p50_ms:7.1f} ms "
        f"p99 {p.p99_ms:7.1f} ms max {p.max_ms:7.1f} ms | sent {p.sent} at {p.send_rate:,.0f}/s, "
        f"ack p50 {p.ack_p50_ms:.2f} ms, drain {p.drain_ms:.0f} ms | server CPU "
        f"{p.server_cpu_pct:.0f}% ({p.server_us_per_delivery:.1f} us/delivery), clients "
        f"{p.client_us_per_delivery:.1f} us/delivery, other processes {p.other_cpu_pct:.0f}%{extra}"
    )


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "-"


def markdown(runs: list[ServerRun], args: argparse.Namespace) -> str:
    mib = 1024 * 1024
    reference = {r.size: r for r in runs if r.target == "reference"}
    lines = [
        f"Fan-out, one channel, one publisher; burst: K messages with window "
        f"{args.window}; steady: {args.rate:g} msg/s for {args.duration:g} s; "
        f"{args.text_bytes}-byte texts; {args.workers} subscriber processes; "
        f"{os.cpu_count()} CPUs{', pinned' if args.pin else ''}.",
        "",
        "| S | run | server | deliveries/s | p50 ms | p99 ms | max ms | lost | "
        "server CPU | server µs/delivery | other CPU | throughput vs ref | p99 vs ref |",
        "|--:|-----|--------|-------------:|-------:|-------:|-------:|-----:|"
        "-----------:|-------------------:|----------:|------------------:|-----------:|",
    ]
    unsaturated = False
    for run in runs:
        for p in run.phases.values():
            ref = reference.get(run.size)
            rp = ref.phases.get(p.mode) if ref is not None and run is not ref else None
            mark = "" if p.saturated else " *"
            unsaturated |= bool(mark)
            lines.append(
                f"| {run.size} | {p.mode} ({p.label}) | {run.target} | {p.throughput:,.0f}{mark} | "
                f"{p.p50_ms:.1f} | {p.p99_ms:.1f} | {p.max_ms:.1f} | {p.expected - p.delivered} | "
                f"{p.server_cpu_pct:.0f}% | {p.server_us_per_delivery:.1f} | "
                f"{p.other_cpu_pct:.0f}% | "
                f"{ratio(p.throughput, rp.throughput) if rp else '-'} | "
                f"{ratio(p.p99_ms, rp.p99_ms) if rp else '-'} |"
            )
    if unsaturated:
        lines += [
            "",
            f"\\* server CPU under {SATURATED_PCT:.0f}%: not what set the pace (the clients, "
            "other processes or the publisher's round trips were).",
        ]
    lines += [
        "",
        "| S | server | RSS before MiB | RSS with S idle MiB | peak RSS MiB | KiB per idle "
        "connection | per-connection vs ref |",
        "|--:|--------|---------------:|--------------------:|-------------:|"
        "-------------------------:|----------------------:|",
    ]
    for run in runs:
        ref = reference.get(run.size)
        lines.append(
            f"| {run.size} | {run.target} | {run.rss_before / mib:.1f} | "
            f"{run.rss_idle / mib:.1f} | {run.rss_peak / mib:.1f} | {run.per_conn / 1024:.1f} | "
            f"{ratio(run.per_conn, ref.per_conn) if ref and ref is not run else '-'} |"
        )
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
                run = await bench_one(args, target, size, Path(tmp))
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
    parser.add_argument("--reference-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="a small smoke run (< 40 s)")
    parser.add_argument("--sizes", default=None, help="subscriber counts (default 100,1000)")
    parser.add_argument("--targets", default="agora,reference", help="servers to measure")
    parser.add_argument(
        "-k",
        "--messages",
        type=int,
        default=None,
        help="burst messages (default min(2000, 500000 / S); --quick: min(200, 20000 / S))",
    )
    parser.add_argument(
        "--window", type=int, default=8, help="burst: most unanswered sends (default 8)"
    )
    parser.add_argument("--rate", type=float, default=50.0, help="steady msg/s (default 50)")
    parser.add_argument("--duration", type=float, default=None, help="steady seconds (10)")
    parser.add_argument(
        "--steady-window", type=int, default=1000, help="steady: most unanswered sends (1000)"
    )
    parser.add_argument("--text-bytes", type=int, default=100, help="message text size (100)")
    parser.add_argument("--workers", type=int, default=2, help="subscriber processes (2)")
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="pin the server to CPU 0 and the clients to the others (default on if >1 CPU)",
    )
    parser.add_argument("--phase-timeout", type=float, default=60.0, help="publish deadline, s")
    parser.add_argument(
        "--drain-timeout", type=float, default=15.0, help="wait for late deliveries, s"
    )
    parser.add_argument("--settle", type=float, default=0.5, help="pause before RSS samples, s")
    parser.add_argument(
        "--agora-args", default="", help="more options for `server serve` (one string)"
    )
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    args = parser.parse_args(argv)
    quick = args.quick
    args.sizes = [int(s) for s in (args.sizes or ("20,100" if quick else "100,1000")).split(",")]
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if not set(args.targets) <= {"agora", "reference"}:
        parser.error("--targets takes agora and/or reference")
    args.duration = args.duration or (2.0 if quick else 10.0)
    args.agora_args = shlex.split(args.agora_args)
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    args.pin = args.pin and len(cpus) > 1
    args.server_cpus = {cpus[0]} if args.pin else set()
    args.client_cpus = set(cpus[1:]) if args.pin else set()
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.reference_server:
        uvloop.run(reference_server(args.port))
        return
    if args.client_cpus:
        os.sched_setaffinity(0, args.client_cpus)
    started = time.perf_counter()
    try:
        runs = uvloop.run(bench(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.exit("interrupted")
    finally:
        for child in CHILDREN:
            stop_child(child)
    table = markdown(runs, args)
    print(f"\n{table}\n\n(total {time.perf_counter() - started:.0f} s)")
    if args.markdown:
        args.markdown.write_text(table + "\n")


if __name__ == "__main__":
    main()
