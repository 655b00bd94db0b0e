#!/usr/bin/env python3
"""Acknowledgement latency: ``message.send`` at a steady rate, on both stores.

For each deployment (the embedded server on SQLite; one scaled node on PostgreSQL + Redis),
``--sessions`` sender sessions send at a fixed total rate (open loop: send i is due at
start + i / rate, whatever the replies; its latency is measured from that due time, so a
stall counts for every send it delays). Each rate gets three runs on the same server and
sessions: ``ping`` (the reference: a command that touches no store), ``message.send`` with
the sessions spread over ``--channels`` channels, and ``message.send`` with every send on one
channel (appends to one channel are serialized: the worst case). A listener session
subscribed to every channel checks that each acknowledged message was delivered.
benchmarks/README.md has the details.

Run ``python3 benchmarks/acks.py`` (about 2 minutes) or ``--seconds 0.5`` (a smoke run).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import ctypes
import itertools
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import psutil
import uvloop
from fanout import (
    CHILDREN,
    GATEWAY,
    HOST,
    ROOT,
    per,
    percentile,
    start_server,
    stop_child,
    table,
    wait_healthy,
)
from pgserver import PostgresServer, fsync_latency, postgres_installed
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect
from scaleout import RedisServer, busy_seconds, cpu_seconds, free_port

sys.path.insert(0, str(ROOT))  # the ``server`` package of this checkout, to create channels

#: Command ids of the measured sends start here (the setup's are below).
FIRST_ID = 1000
#: Ids of heartbeat pings (never measured).
HEARTBEAT_IDS = itertools.count(10**9)
#: A session silent for this long sends a ping (the server closes silent sessions: 4009).
HEARTBEAT_S = 10.0
#: Unmeasured sends per deployment before the first run.
WARMUP_SENDS = 200
#: Seconds between the first send's due time and now when a run starts.
LEAD_S = 0.05

DEPLOYMENTS = {"embedded": "embedded (SQLite)", "scaled": "scaled, 1 node (PostgreSQL + Redis)"}


# ---------------------------------------------------------------------------------------------
# A precise periodic timer: timerfd (Linux), else the event loop's timers


class Ticker:
    """Calls ``callback`` at ``start_ns + k * interval_ns`` (CLOCK_MONOTONIC, the clock of
    ``time.monotonic_ns``), or as soon after as the event loop can; late ticks are merged.

    Event loop timers have a resolution of a millisecond (uvloop's clock, epoll's timeout),
    which would add up to 1 ms to every latency measured from a due time; a timerfd wakes
    the loop within microseconds."""

    _libc: Any = None

    def __init__(self, start_ns: int, interval_ns: int, callback: Callable[[], None]) -> None:
        self.loop = asyncio.get_running_loop()
        self.callback = callback
        self.fd = -1
        self.handle: asyncio.TimerHandle | None = None
        if sys.platform == "linux":
            self.fd = self._timerfd(start_ns, interval_ns)
        if self.fd >= 0:
            self.loop.add_reader(self.fd, self._readable)
        else:
            self.start_ns, self.interval_ns = start_ns, interval_ns
            self._schedule(start_ns)

    @classmethod
    def _timerfd(cls, start_ns: int, interval_ns: int) -> int:
        if cls._libc is None:
            cls._libc = ctypes.CDLL(None, use_errno=True)
        timespec = ctypes.c_long * 2
        spec = (timespec * 2)(  # struct itimerspec: it_interval, it_value
            timespec(interval_ns // 10**9, interval_ns % 10**9),
            timespec(start_ns // 10**9, start_ns % 10**9),
        )
        # CLOCK_MONOTONIC = 1; TFD_NONBLOCK | TFD_CLOEXEC; TFD_TIMER_ABSTIME = 1
        fd = int(cls._libc.timerfd_create(1, os.O_NONBLOCK | os.O_CLOEXEC))
        if fd >= 0 and cls._libc.timerfd_settime(fd, 1, ctypes.byref(spec), None) != 0:
            os.close(fd)
            return -1
        return fd

    def _readable(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self.fd, 8)  # the count of expirations: the callback reads the clock
        self.callback()

    def _schedule(self, due_ns: int) -> None:
        delay = max(0.0, (due_ns - time.monotonic_ns()) / 1e9)
        self.handle = self.loop.call_later(delay, self._fallback_tick)

    def _fallback_tick(self) -> None:
        self.callback()
        elapsed = time.monotonic_ns() - self.start_ns
        self._schedule(self.start_ns + (elapsed // self.interval_ns + 1) * self.interval_ns)

    def stop(self) -> None:
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1
        if self.handle is not None:
            self.handle.cancel()


# ---------------------------------------------------------------------------------------------
# Client sessions (picows: a frame is timed when the event loop hands it over)


class Conn(WSListener):
    """One session. During setup, frames go to ``inbox``; then each goes to ``on_message``
    with the ``time.monotonic_ns()`` at which it arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.transport: WSTransport | None = None
        self.inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.on_message: Callable[[dict[str, Any], int], None] | None = None
        self.closed = False
        self.close_code: int | None = None
        self.last_sent = time.monotonic()
        self.next_id = 0

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        now = time.monotonic_ns()
        kind = frame.msg_type
        if kind in (WSMsgType.BINARY, WSMsgType.TEXT) and frame.fin:
            message = msgpack.unpackb(frame.get_payload_as_bytes())
            if self.on_message is not None:
                self.on_message(message, now)
            else:
                self.inbox.put_nowait(message)
        elif kind is WSMsgType.CLOSE:
            self.close_code = int(frame.get_close_code()) or 1005
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True
        self.inbox.put_nowait(None)

    def send(self, message: dict[str, Any]) -> None:
        if self.transport is not None and not self.closed:
            self.transport.send(WSMsgType.BINARY, msgpack.packb(message))
            self.last_sent = time.monotonic()

    async def command(self, op: str, d: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
        """Send a setup command and wait for its reply (events before it are skipped)."""
        self.next_id += 1
        self.send({"op": op, "id": self.next_id, "d": d})
        async with asyncio.timeout(timeout):
            while True:
                message = await self.inbox.get()
                if message is None:
                    raise ConnectionError(f"closed with {self.close_code} during {op}")
                if message.get("id") == self.next_id:
                    if message.get("op") != "reply":
                        raise RuntimeError(f"{op} failed: {message}")
                    return dict(message["d"])

    @classmethod
    async def open(cls, port: int, token: str) -> tuple[Conn, dict[str, Any]]:
        """A connected, identified session, and the identify reply."""
        url = f"ws://{HOST}:{port}{GATEWAY}"
        _, conn = await ws_connect(cls, url, use_aiofastnet=False)
        if not isinstance(conn, Conn):
            raise ConnectionError("closed during the handshake")
        async with asyncio.timeout(30):
            hello = await conn.inbox.get()
        if hello is None or hello.get("op") != "hello":
            raise RuntimeError(f"expected hello, got {hello}")
        return conn, await conn.command("identify", {"token": token})

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.disconnect(graceful=False)


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class Cell:
    deployment: str
    op: str
    channels: int  # the channels the sends went to (0 for ping)
    rate: float
    sent: int = 0
    acked: int = 0
    errors: list[Any] = field(default_factory=list)
    unanswered: int = 0
    undelivered: int | None = None  # acknowledged messages the listener never got
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    p999_ms: float = 0.0
    max_ms: float = 0.0
    lag_p99_ms: float = 0.0  # how late the client sent, at the 99th percentile
    cpu_pct: dict[str, float] = field(default_factory=dict)

    @property
    def run(self) -> str:
        if self.op == "ping":
            return "ping (reference)"
        return f"message.send, {self.channels} channel{'s' * (self.channels > 1)}"


class Bench:
    """One deployment: its server (and PostgreSQL and Redis), the sessions, the runs."""

    def __init__(self, args: argparse.Namespace, name: str, tmp: Path) -> None:
        self.args, self.name, self.tmp = args, name, tmp
        self.label = DEPLOYMENTS[name]
        self.postgres: PostgresServer | None = None
        self.redis: RedisServer | None = None
        self.processes: dict[str, psutil.Process] = {}
        self.senders: list[Conn] = []
        self.listener: Conn | None = None
        self.channels: list[str] = []
        self.cells: list[Cell] = []
        self.phase = 0
        self.heard: dict[int, int] = {}  # phase -> benchmark messages the listener received
        self.log = tmp / f"{name}-server.log"

    async def create_channels(self, database: str | None) -> None:
        """Create the channels in the store before the server starts (there is no command
        to create one); the first account registered is a member of their community."""
        if database is None:
            from server.store.sqlite import SQLiteStore

            store: Any = SQLiteStore(str(self.log.with_suffix(".db")))
        else:
            from server.store.postgres import PostgresStore

            store = PostgresStore(database)
        await store.open()
        try:
            community = (await store.communities())[0]
            for i in range(self.args.channels):
                await store.create_channel(community.id, f"acks-{i}")
        finally:
            await store.close()

    async def run(self, postgres: PostgresServer | None) -> None:
        args = self.args
        if args.client_cpus:
            os.sched_setaffinity(0, args.client_cpus)
        async with contextlib.AsyncExitStack() as stack:
            extra = ["--rate-limit", "0", *args.agora_args]
            database = None
            if self.name == "scaled":
                assert postgres is not None
                self.postgres = postgres
                database = postgres.create_database("acks")
                self.redis = RedisServer(self.tmp / "redis")
                stack.push_async_callback(self.redis.stop)
                self.processes["redis"] = await self.redis.start(set(args.cpus))
                extra += ["--database", database, "--redis", self.redis.url]
            await self.create_channels(database)
            port = free_port()
            proc = start_server("agora", port, self.log, extra, args.server_cpus)
            stack.callback(stop_child, proc)
            token = await wait_healthy(port, proc, register=True)
            self.processes = {"server": psutil.Process(proc.pid), **self.processes}
            for _ in range(args.sessions):
                conn, identified = await Conn.open(port, token)
                stack.callback(conn.close)
                self.senders.append(conn)
            ids = {c["name"]: c["id"] for c in identified["communities"][0]["channels"]}
            self.channels = [ids[f"acks-{i}"] for i in range(args.channels)]
            self.listener, _ = await Conn.open(port, token)
            stack.callback(self.listener.close)
            for channel in self.channels:
                await self.listener.command("subscribe", {"channel": channel})
            self.listener.on_message = self.on_event
            heartbeat = asyncio.create_task(self.heartbeat())
            stack.callback(heartbeat.cancel)
            await self.warm_up()
            layouts = [("ping", 0), ("message.send", args.channels)]
            if args.channels > 1:
                layouts.append(("message.send", 1))
            for rate in args.rates:
                for op, channels in layouts:
                    self.cells.append(await self.run_cell(op, channels, rate))
                    print(describe(self.cells[-1]), flush=True)
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}")

    def on_event(self, message: dict[str, Any], now: int) -> None:
        if message.get("op") != "event":
            return
        text = message.get("d", {}).get("message", {}).get("text", "")
        if text.startswith("~a"):
            phase = int(text[2:].split("~", 1)[0])
            self.heard[phase] = self.heard.get(phase, 0) + 1

    async def heartbeat(self) -> None:
        """A ping from every session that has been silent for a while (as a client does)."""
        while True:
            await asyncio.sleep(HEARTBEAT_S / 4)
            for conn in [*self.senders, self.listener]:
                if conn is not None and time.monotonic() - conn.last_sent > HEARTBEAT_S:
                    conn.send({"op": "ping", "id": next(HEARTBEAT_IDS), "d": {}})

    async def warm_up(self) -> None:
        """Unmeasured sends on every channel, one at a time (also a check that all works)."""
        phase = self.phase = self.phase + 1
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        answers: list[dict[str, Any]] = []

        def on_reply(message: dict[str, Any], now: int) -> None:
            if FIRST_ID <= message.get("id", 0) < FIRST_ID + WARMUP_SENDS:
                answers.append(message)
                if len(answers) == WARMUP_SENDS and not done.done():
                    done.set_result(None)

        for conn in self.senders:
            conn.on_message = on_reply
        for i in range(WARMUP_SENDS):
            conn = self.senders[i % len(self.senders)]
            d = {"channel": self.channels[i % len(self.channels)], "text": f"~a{phase}~{i}~"}
            conn.send({"op": "message.send", "id": FIRST_ID + i, "d": d})
        async with asyncio.timeout(60):
            await done
        failed = [a for a in answers if a.get("op") != "reply"]
        if failed:
            raise RuntimeError(f"the warm-up failed: {failed[0]}")

    async def run_cell(self, op: str, channels: int, rate: float) -> Cell:
        """``rate`` commands/s for ``--seconds``, open loop, measured from their due times."""
        args = self.args
        phase = self.phase = self.phase + 1
        cell = Cell(self.label, op, channels, rate)
        total = max(1, round(rate * args.seconds))
        interval = max(1, round(1e9 / rate))
        due = array.array("q", [0]) * total
        latency = array.array("q", [-1]) * total  # ns; -1: unanswered
        lag = array.array("q", [0]) * total
        senders = self.senders
        finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        state = {"next": 0, "answered": 0}

        def on_reply(message: dict[str, Any], now: int) -> None:
            i = message.get("id", 0) - FIRST_ID
            if not 0 <= i < total or latency[i] >= 0 or not due[i]:
                return  # a heartbeat's reply, or an earlier run's
            latency[i] = now - due[i]
            if message.get("op") == "reply":
                cell.acked += 1
            else:
                cell.errors.append(message.get("d"))
            state["answered"] += 1
            if state["answered"] == total and not finished.done():
                finished.set_result(None)

        def send(i: int) -> None:
            conn = senders[i % len(senders)]
            if op == "ping":
                d: dict[str, Any] = {}
            else:
                channel = self.channels[(i % len(senders)) % channels]
                d = {"channel": channel, "text": f"~a{phase}~{i}~".ljust(args.text_bytes, ".")}
            conn.send({"op": op, "id": FIRST_ID + i, "d": d})
            lag[i] = time.monotonic_ns() - due[i]

        def tick() -> None:
            now = time.monotonic_ns()
            last = min(total, (now - start) // interval + 1)
            while state["next"] < last:
                i = state["next"]
                due[i] = start + i * interval
                send(i)
                state["next"] = i + 1
            if state["next"] >= total:
                ticker.stop()

        for conn in senders:
            conn.on_message = on_reply
        before = self.cpu_now()
        busy, started = busy_seconds(), time.perf_counter()
        start = time.monotonic_ns() + int(LEAD_S * 1e9)
        ticker = Ticker(start, interval, tick)
        try:
            async with asyncio.timeout(args.seconds + LEAD_S + args.drain_timeout):
                await finished
        except TimeoutError:
            pass
        finally:
            ticker.stop()
        wall = time.perf_counter() - started
        cpu = {k: v - before[k] for k, v in self.cpu_now().items()}
        busy = busy_seconds() - busy
        cell.sent = state["next"]
        cell.unanswered = cell.sent - state["answered"]
        if op == "message.send":  # every acknowledged message reaches the listener
            deadline = time.monotonic() + min(5.0, args.drain_timeout)
            while self.heard.get(phase, 0) < cell.acked and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            cell.undelivered = cell.acked - self.heard.get(phase, 0)
        answered = sorted(x for x in latency if x >= 0)
        cell.p50_ms, cell.p99_ms, cell.p999_ms = (
            percentile(answered, p) / 1e6 for p in (0.50, 0.99, 0.999)
        )
        cell.max_ms = (answered[-1] if answered else 0) / 1e6
        cell.lag_p99_ms = percentile(sorted(lag[: cell.sent]), 0.99) / 1e6
        cell.cpu_pct = {k: 100 * per(v, wall) for k, v in cpu.items()}
        cell.cpu_pct["other"] = 100 * per(max(0.0, busy - sum(cpu.values())), wall)
        return cell

    def cpu_now(self) -> dict[str, float]:
        times = {name: cpu_seconds(p) for name, p in self.processes.items()}
        if self.postgres is not None:
            times["postgres"] = self.postgres.cpu_seconds()
        times["client"] = time.process_time()
        return times


# ---------------------------------------------------------------------------------------------
# Report


def sqlite_synchronous(args: argparse.Namespace) -> str:
    """The ``--sqlite-synchronous`` the embedded server runs with."""
    value = os.environ.get("AGORA_SQLITE_SYNCHRONOUS", "normal")
    for i, arg in enumerate(args.agora_args):
        if arg == "--sqlite-synchronous" and i + 1 < len(args.agora_args):
            value = args.agora_args[i + 1]
        elif arg.startswith("--sqlite-synchronous="):
            value = arg.split("=", 1)[1]
    return value.lower()


def fsync_text(args: argparse.Namespace) -> str:
    p50, p99, count = getattr(args, "fsync", (0.0, 0.0, 0))
    return f"the disk's fdatasync of 8 KiB: p50 {p50:.2f} ms, p99 {p99:.2f} ms ({count} in 1 s)"


def cpu_text(cell: Cell) -> str:
    return ", ".join(f"{k} {v:.0f}" for k, v in cell.cpu_pct.items())


def describe(cell: Cell) -> str:
    problems = ""
    if cell.unanswered:
        problems += f", {cell.unanswered} unanswered"
    if cell.errors:
        problems += f", {len(cell.errors)} errors (the first: {cell.errors[0]})"
    if cell.undelivered:
        problems += f", {cell.undelivered} acknowledged but not delivered"
    return (
        f"{cell.deployment:>36} {cell.run:<28} {cell.rate:>6g}/s  sent {cell.sent:>6}  "
        f"p50 {cell.p50_ms:6.2f} p99 {cell.p99_ms:7.2f} p99.9 {cell.p999_ms:7.2f} "
        f"max {cell.max_ms:7.2f} ms | client lag p99 {cell.lag_p99_ms:.2f} ms | "
        f"CPU % of one core: {cpu_text(cell)}{problems}"
    )


def ping_of(cells: list[Cell], cell: Cell) -> Cell | None:
    return next(
        (
            c
            for c in cells
            if c.op == "ping" and (c.deployment, c.rate) == (cell.deployment, cell.rate)
        ),
        None,
    )


def report(benches: list[Bench], args: argparse.Namespace) -> str:
    cells = [cell for b in benches for cell in b.cells]
    rows = []
    for cell in cells:
        ping = ping_of(cells, cell)
        over = (
            f"{cell.p50_ms - ping.p50_ms:+.2f} | {cell.p99_ms - ping.p99_ms:+.2f}"
            if ping is not None and cell is not ping
            else "- | -"
        )
        rows.append(
            f"{cell.deployment} | {cell.run} | {cell.rate:g} | {cell.sent} | {cell.unanswered} | "
            f"{len(cell.errors)} | {cell.p50_ms:.2f} | {cell.p99_ms:.2f} | {cell.p999_ms:.2f} | "
            f"{cell.max_ms:.2f} | {over} | {cpu_text(cell)}"
        )
    stores = []
    if "embedded" in args.deployments:
        stores.append(
            "SQLite (synchronous=full: a commit waits for an fsync)"
            if sqlite_synchronous(args) == "full"
            else "SQLite (synchronous=normal, the default: a commit does not wait for an fsync)"
        )
    if getattr(args, "postgres_version", ""):
        stores.append(f"PostgreSQL {args.postgres_version.split()[0]} (fsync on)")
    pinned = "the server pinned to a CPU, the rest floating" if args.pin else "unpinned"
    lines = [
        f"Acknowledgement latency, open loop: {args.sessions} sender sessions, sends due at "
        f"fixed times and timed from them; {args.seconds:g} s per run; "
        f"{args.text_bytes}-byte texts; a listener subscribed to every channel; "
        f"{'; '.join(stores)}; {fsync_text(args)}; {os.cpu_count()} CPUs, {pinned}.",
        "",
        *table(
            "deployment | run | rate/s | sent | unanswered | errors | p50 ms | p99 ms | "
            "p99.9 ms | max ms | p50 over ping ms | p99 over ping ms | CPU % of one core",
            rows,
            left=("deployment", "run", "CPU % of one core"),
        ),
        "",
        *conclusions(cells, args),
    ]
    return "\n".join(lines)


def conclusions(cells: list[Cell], args: argparse.Namespace) -> list[str]:
    lines = []
    for rate in args.rates:
        parts = []
        for label in dict.fromkeys(c.deployment for c in cells):
            found = [c for c in cells if c.deployment == label and c.rate == rate]
            ping = next((c for c in found if c.op == "ping"), None)
            sends = [c for c in found if c.op == "message.send"]
            if ping is None or not sends:
                continue
            figures = ", ".join(f"{c.p99_ms:.2f} ms on {c.channels}" for c in sends)
            parts.append(f"{label} {figures} (ping {ping.p99_ms:.2f} ms)")
        if parts:
            lines.append(
                f"- **message.send p99 at {rate:g}/s** by channels used: {'; '.join(parts)}."
            )
    lag = max((c.lag_p99_ms for c in cells), default=0.0)
    lines.append(
        f"- the client sent each command within {lag:.2f} ms of its due time at p99 "
        "(a send's latency counts from its due time, whatever delayed it)."
    )
    shared = [c for c in cells if c.cpu_pct.get("other", 0) >= 20]
    if shared:
        worst = max(c.cpu_pct["other"] for c in shared)
        lines.append(
            f"- **the machine was shared**: processes outside the benchmark used up to "
            f"{worst:.0f}% of a core in {len(shared)} of {len(cells)} runs; run again when it "
            "is quiet."
        )
    bad = [
        f"{c.deployment} {c.run} at {c.rate:g}/s"
        for c in cells
        if c.unanswered or c.errors or c.undelivered
    ]
    lines.append(
        f"- unanswered, failed or undelivered sends in: {', '.join(bad)}."
        if bad
        else "- every command was answered without error, and the listener got every "
        "acknowledged message."
    )
    return lines


# ---------------------------------------------------------------------------------------------
# Command line


async def bench(args: argparse.Namespace) -> list[Bench]:
    # SIGTERM cancels the run like Ctrl-C does: every ``finally`` stops its processes.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    benches = []
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="agora-acks-")))
        args.fsync = fsync_latency(tmp)
        postgres = None
        if "scaled" in args.deployments:
            postgres = PostgresServer()
            stack.callback(postgres.remove)
            postgres.start(set(args.cpus))
            args.postgres_version = postgres.version()
        for name in args.deployments:
            b = Bench(args, name, tmp)
            try:
                await b.run(postgres)
            except Exception:
                with contextlib.suppress(OSError):
                    tail = b.log.read_text(errors="replace")[-2000:]
                    print(f"--- {b.label} server log (tail) ---\n{tail}", flush=True)
                if postgres is not None and name == "scaled":
                    print(f"--- PostgreSQL log (tail) ---\n{postgres.log_tail()}", flush=True)
                raise
            benches.append(b)
    return benches


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--deployments", default="embedded,scaled", help="of embedded, scaled (default both)")
    add("--rate", default="100,1000", help="total sends/s, comma-separated (default 100,1000)")
    add("--seconds", type=float, default=10.0, help="length of each run, s (default 10)")
    add("--sessions", type=int, default=10, help="sender sessions (default 10)")
    add("--channels", type=int, default=10, help="channels of the spread runs (default 10)")
    add("--text-bytes", type=int, default=100, help="message text size (100)")
    add("--drain-timeout", type=float, default=10.0, help="wait for late replies, s (10)")
    pin_help = "pin the server to the first CPU, this process to the others (default on)"
    add("--pin", action=argparse.BooleanOptionalAction, default=True, help=pin_help)
    add("--agora-args", default="", help="more options for `server serve` (one string)")
    add("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    args.rates = [float(r) for r in args.rate.split(",") if r.strip()]
    if not args.rates or min(args.rates) <= 0:
        parser.error("--rate takes positive numbers")
    args.deployments = [d.strip() for d in args.deployments.split(",") if d.strip()]
    if not args.deployments or not set(args.deployments) <= set(DEPLOYMENTS):
        parser.error("--deployments takes embedded and/or scaled")
    if args.sessions < 1 or args.channels < 1:
        parser.error("--sessions and --channels must be at least 1")
    args.agora_args = shlex.split(args.agora_args)
    args.cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    args.pin = args.pin and len(args.cpus) > 1
    args.server_cpus = set(args.cpus[:1]) if args.pin else set()
    args.client_cpus = set(args.cpus[1:]) if args.pin else set()
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if "scaled" in args.deployments:
        if shutil.which("redis-server") is None:
            sys.exit("redis-server is not installed (apt-get install -y redis-server)")
        if not postgres_installed():
            sys.exit("PostgreSQL is not installed (apt-get install -y postgresql)")
    started = time.perf_counter()
    try:
        benches = uvloop.run(bench(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.exit("interrupted")
    finally:
        for child in CHILDREN:
            stop_child(child)
    text = report(benches, args)
    print(f"\n{text}\n\n(total {time.perf_counter() - started:.0f} s)")
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
