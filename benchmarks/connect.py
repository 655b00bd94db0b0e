#!/usr/bin/env python3
"""Connect-rate benchmark: N sessions opened as fast as the server takes them, Agora beside
the references (``fanout.py``'s bare ``websockets`` server and the node ``ws`` one).

For each server, a fresh process on a free 127.0.0.1 port (started as ``fanout.py`` starts
it) and two phases, each opening ``--sessions`` connections from ``--workers`` client
processes, ``--concurrency`` at a time in each, all kept open until the phase ends:

- ``hello``: connect (TCP + WebSocket handshake) and wait for ``hello``;
- ``session``: connect, ``hello``, ``identify`` (Agora: with a token), ``subscribe`` to the
  community's first channel, and wait for its reply.

Each phase reports sessions/s (sessions / wall time from the start to the last reply), the
server's CPU per session, and the clients' and other processes' CPU. benchmarks/README.md
has the details. Run ``python3 benchmarks/connect.py`` (about 30 s) or ``--quick``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import signal
import socket
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import fanout
import msgpack
import psutil
import uvloop
from fanout import GATEWAY, HOST, LIFETIME, TARGETS, SetupListener
from picows import WSFrame, WSMsgType, WSTransport, ws_connect

PHASES = ("hello", "session")


class ConnectListener(SetupListener):
    """A client connection: every frame but events is decoded and queued for its coroutine."""

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind in fanout.DATA_FRAMES:
            message = msgpack.unpackb(frame.get_payload_as_bytes())
            if message.get("op") != "event":  # presence and joins may come: not counted
                self.inbox.put_nowait(message)
        elif kind is WSMsgType.CLOSE:
            self.close_code = int(frame.get_close_code()) or 1005
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True
        self.inbox.put_nowait(None)


async def open_session(url: str, phase: str, token: str, channel: str) -> ConnectListener:
    """One connection through ``phase``; raises if anything but the expected frames comes."""
    _, client = await ws_connect(ConnectListener, url, use_aiofastnet=False)
    assert isinstance(client, ConnectListener)
    await client.next("hello")
    if phase == "session":
        client.send({"op": "identify", "id": 1, "d": {"token": token}})
        await client.next("reply")
        client.send({"op": "subscribe", "id": 2, "d": {"channel": channel}})
        await client.next("reply")
    return client


def worker_main(conn: Connection, port: int, token: str, channel: str, concurrency: int) -> None:
    """Entry point of a client process: ("go", phase, count) opens ``count`` sessions and
    answers ("done", opened, failures, cpu); ("drop",) closes them; ("stop",) ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator stops us
    with contextlib.suppress(asyncio.CancelledError):
        uvloop.run(_worker(conn, port, token, channel, concurrency))


async def _worker(conn: Connection, port: int, token: str, channel: str, concurrency: int) -> None:
    url = f"ws://{HOST}:{port}{GATEWAY}"
    commands: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
    fanout.listen(conn, commands.put_nowait)
    clients: list[ConnectListener] = []
    failures: list[str] = []

    async def one(slots: asyncio.Semaphore, phase: str) -> None:
        async with slots:
            try:
                clients.append(await open_session(url, phase, token, channel))
            except Exception as exc:  # counted and reported, not fatal to the others
                failures.append(repr(exc))

    try:
        for _ in range(100):
            command = await asyncio.wait_for(commands.get(), LIFETIME)
            if command[0] == "go":
                _, phase, count, timeout = command
                failures.clear()
                cpu, slots = time.process_time(), asyncio.Semaphore(concurrency)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await asyncio.gather(*(one(slots, phase) for _ in range(count)))
                opened = sum(not c.closed for c in clients)
                conn.send(("done", (opened, failures[:3], time.process_time() - cpu)))
            elif command[0] == "drop":
                for client in clients:
                    if client.transport is not None:
                        client.transport.disconnect(graceful=False)
                clients.clear()
                conn.send(("dropped",))
            else:
                return
    finally:
        for client in clients:
            if client.transport is not None:
                client.transport.disconnect(graceful=False)


@dataclass
class Result:
    target: str
    phase: str
    sessions: int
    opened: int
    wall_s: float
    server_cpu_s: float
    client_cpu_s: float
    other_cpu_s: float
    failures: list[str]

    @property
    def rate(self) -> float:
        return fanout.per(self.opened, self.wall_s)

    @property
    def server_us(self) -> float:
        return 1e6 * fanout.per(self.server_cpu_s, self.opened)

    def pct(self, cpu_s: float) -> float:
        """CPU seconds as a share of the phase's wall time, in % of one core."""
        return 100 * fanout.per(cpu_s, self.wall_s)

    def line(self) -> str:
        failed = self.sessions - self.opened
        extra = f", {failed} failed (first: {self.failures[:1]})" if failed else ""
        return (
            f"{self.target:>9} {self.phase:<7} {self.opened} sessions in {self.wall_s:.2f} s: "
            f"{self.rate:,.0f}/s | server CPU {self.pct(self.server_cpu_s):.0f}% "
            f"({self.server_us:.0f} us/session), clients "
            f"{self.pct(self.client_cpu_s):.0f}%, other processes "
            f"{self.pct(self.other_cpu_s):.0f}%{extra}"
        )


async def measure(args: argparse.Namespace, target: str, tmp: Path) -> list[Result]:
    with socket.socket() as s:  # a free port
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    log = tmp / f"{target}-{port}.log"
    proc = fanout.start_server(target, port, log, args.agora_args, args.server_cpus)
    results = []
    try:
        token = await fanout.wait_healthy(port, proc, register=target == "agora")
        server = psutil.Process(proc.pid)
        publisher = await fanout.Publisher.open(port, token)  # learns the channel's id
        channel = publisher.channel
        await publisher.close()
        n = args.workers
        jobs = [(port, token, channel, args.concurrency)] * n
        counts = [args.sessions // n + (1 if i < args.sessions % n else 0) for i in range(n)]
        pool = fanout.Processes("client worker", worker_main, jobs, args.client_cpus)
        try:
            # Not measured: the workers' start-up, and a warm-up of a tenth of the sessions
            # (the first connections of a process pay for its imports and caches).
            for conn, count in zip(pool.conns, counts, strict=True):
                conn.send(("go", "session", max(1, count // 10), args.phase_timeout))
            await pool.gather("done", args.phase_timeout + 30)
            pool.send(("drop",))
            await pool.gather("dropped", 30)
            await asyncio.sleep(args.settle)
            for phase in PHASES:
                for conn, count in zip(pool.conns, counts, strict=True):
                    conn.send(("go", phase, count, args.phase_timeout))
                server_cpu, busy = sum(server.cpu_times()[:2]), fanout.busy_seconds()
                clients_cpu, started = pool.cpu_seconds(), time.perf_counter()
                done = await pool.gather("done", args.phase_timeout + 30)
                wall = time.perf_counter() - started
                server_cpu = sum(server.cpu_times()[:2]) - server_cpu
                clients_cpu = pool.cpu_seconds() - clients_cpu
                other = max(0.0, fanout.busy_seconds() - busy - server_cpu - clients_cpu)
                result = Result(
                    target=target,
                    phase=phase,
                    sessions=args.sessions,
                    opened=sum(d[0] for d in done),
                    wall_s=wall,
                    server_cpu_s=server_cpu,
                    client_cpu_s=clients_cpu,
                    other_cpu_s=other,
                    failures=[f for d in done for f in d[1]],
                )
                print(result.line(), flush=True)
                results.append(result)
                pool.send(("drop",))
                await pool.gather("dropped", 30)
                await asyncio.sleep(args.settle)  # the server closes its side meanwhile
        finally:
            pool.close()
    except Exception:
        with contextlib.suppress(OSError):
            print(f"--- {target} server log (tail) ---\n{log.read_text()[-2000:]}", flush=True)
        raise
    finally:
        fanout.stop_child(proc)
    return results


def markdown(results: list[Result], args: argparse.Namespace) -> str:
    reference = {r.phase: r for r in results if r.target == "reference"}
    rows = []
    for r in results:
        ref = reference.get(r.phase) if r.target != "reference" else None
        rows.append(
            f"{r.phase} | {r.target} | {r.opened:,} | {r.rate:,.0f} | "
            f"{r.pct(r.server_cpu_s):.0f}% | {r.server_us:.0f} | "
            f"{r.pct(r.client_cpu_s):.0f}% | {r.pct(r.other_cpu_s):.0f}% | "
            f"{fanout.ratio(r.rate, ref and ref.rate)}"
        )
    return "\n".join(
        [
            f"Connect rate: {args.sessions:,} sessions from {args.workers} client processes, "
            f"{args.concurrency} at a time in each; hello: connect and wait for hello; session: "
            f"connect, hello, identify, subscribe. {os.cpu_count()} CPUs"
            f"{', pinned' if args.pin else ''}.",
            "",
            *fanout.table(
                "phase | server | sessions | sessions/s | server CPU | server µs/session | "
                "clients CPU | other CPU | rate vs ref",
                rows,
                left=("phase", "server"),
            ),
        ]
    )


async def bench(args: argparse.Namespace) -> list[Result]:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="agora-connect-") as tmp:
        for _ in range(args.repeat):
            for target in args.targets:
                results += await measure(args, target, Path(tmp))
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="a small smoke run (200 sessions)")
    add("--sessions", type=int, default=None, help="sessions per phase (2000)")
    add("--targets", default=",".join(TARGETS), help="servers to measure (agora,reference,node)")
    add("--workers", type=int, default=4, help="client processes (4)")
    add("--concurrency", type=int, default=32, help="sessions opening at once per process (32)")
    add("--repeat", type=int, default=1, help="measure every server this many times, in turn")
    pin_help = "pin the server to CPU 0 and the clients to the others (default on if >1 CPU)"
    add("--pin", action=argparse.BooleanOptionalAction, default=True, help=pin_help)
    add("--phase-timeout", type=float, default=60.0, help="deadline of a phase, s")
    add("--settle", type=float, default=1.0, help="pause between phases, s")
    add("--agora-args", default="", help="more options for `server serve` (one string)")
    add("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    args.sessions = args.sessions or (200 if args.quick else 2000)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if not args.targets or not set(args.targets) <= set(TARGETS):
        parser.error(f"--targets takes some of {', '.join(TARGETS)}")
    args.agora_args = shlex.split(args.agora_args)
    fanout.pin_cpus(args)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.targets = fanout.prepare_node(args.targets)
    started = time.perf_counter()
    results = fanout.run_bench(bench, args)
    table = markdown(results, args)
    print(f"\n{table}\n\n(total {time.perf_counter() - started:.0f} s)")
    if args.markdown:
        args.markdown.write_text(table + "\n")


if __name__ == "__main__":
    main()
