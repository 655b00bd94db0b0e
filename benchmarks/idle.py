#!/usr/bin/env python3
"""Idle connections: N identified, subscribed, heartbeating sessions in one server process.

For Agora, then the reference (``fanout.py``'s bare ``websockets`` server, same count): the
server's RSS before and with N idle connections (KiB per connection), its CPU over
``--idle`` seconds while every connection pings once per half heartbeat, and, for Agora, its
garbage-collection pauses (the ``agora_gc_pause_seconds`` histogram and the longest pause, from
``/metrics``). The clients are ``fanout.py``'s picows subscribers in ``--workers`` processes,
bound to ``--addresses`` source addresses in 127.0.0.0/8. ``--trace`` instead runs Agora under
tracemalloc and prints where the bytes of one connection go, by file and line and by type.
benchmarks/README.md has the details.

Run ``python3 benchmarks/idle.py`` (10,000 connections, about 2 minutes) or ``--quick``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import psutil
import uvloop
from picows import ws_connect

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fanout import (
    CHILDREN,
    HOST,
    LIFETIME,
    Processes,
    Publisher,
    Subscriber,
    SubscriberPool,
    _die_with_parent,
    busy_seconds,
    listen,
    pin_cpus,
    run_bench,
    stop_child,
    wait_healthy,
)

ROOT = Path(__file__).resolve().parent.parent


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ---------------------------------------------------------------------------------------------
# Client workers


class IdlePool(SubscriberPool):
    """A worker's connections, each from one of ``addresses`` (round robin)."""

    def __init__(self, port: int, token: str, channel: str, count: int, addresses: list[str]):
        super().__init__(port, token, channel, count)
        self.addresses = addresses
        self.next_address = 0

    async def _open(self, slots: asyncio.Semaphore) -> None:
        address = self.addresses[self.next_address % len(self.addresses)]
        self.next_address += 1
        async with slots:
            _, sub = await ws_connect(
                lambda *_: Subscriber(self),
                self.url,
                use_aiofastnet=False,
                read_buffer_init_size=1024,
                local_addr=(address, 0),
            )
            if not isinstance(sub, Subscriber):
                raise ConnectionError("closed during the handshake")
            self.subs.append(sub)
            hello = await sub.next("hello")
            self.heartbeat_s = hello["d"].get("heartbeat_ms", 30_000) / 1000
            sub.send({"op": "identify", "id": 1, "d": {"token": self.token}})
            await sub.next("reply")
            sub.send({"op": "subscribe", "id": self.subscribe_id, "d": {"channel": self.channel}})
            await sub.next("reply")


def idle_worker_main(
    conn: Connection, port: int, token: str, channel: str, count: int, addresses: list[str]
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise_nofile()
    with contextlib.suppress(asyncio.CancelledError):
        uvloop.run(_idle_worker(conn, port, token, channel, count, addresses))


async def _idle_worker(
    conn: Connection, port: int, token: str, channel: str, count: int, addresses: list[str]
) -> None:
    main = asyncio.current_task()
    assert main is not None
    pool = IdlePool(port, token, channel, count, addresses)
    commands: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

    def command(message: tuple[Any, ...]) -> None:
        if message[0] in ("stop", "exit"):
            main.cancel()
        else:
            commands.put_nowait(message)

    listen(conn, command)
    heartbeat: asyncio.Task[None] | None = None
    try:
        await pool.open_all(timeout=60 + count / 20)
        heartbeat = asyncio.create_task(pool.heartbeat())
        conn.send(("ready", len(pool.subs)))
        for _ in range(100):
            await asyncio.wait_for(commands.get(), LIFETIME)  # ("count",)
            codes = Counter(s.close_code for s in pool.subs if s.closed)
            conn.send(("count", (sum(not s.closed for s in pool.subs), dict(codes))))
    except Exception:
        import traceback

        with contextlib.suppress(OSError):
            conn.send(("error", traceback.format_exc() + "\n".join(pool.failures[:5])))
    finally:
        if heartbeat is not None:
            heartbeat.cancel()
        for sub in pool.subs:
            if sub.transport is not None:
                sub.transport.disconnect(graceful=False)


# ---------------------------------------------------------------------------------------------
# The server, optionally under tracemalloc


def agora_server(trace: Path | None, argv: list[str]) -> None:
    """``agora`` with ``argv``, plus two signal handlers.

    SIGUSR1 runs one full garbage collection, which the server's own ``gc.callbacks`` hook
    times into ``agora_gc_longest_pause_seconds{generation="2"}``: the pause a full collection
    costs with the connections open. With ``trace`` (tracemalloc on), SIGUSR2 takes the
    baseline, and a second SIGUSR2 writes the difference since to ``trace``.
    """
    signal.signal(signal.SIGUSR1, lambda *_: gc.collect())
    if trace is not None:
        tracemalloc.start(1)
        snapshots: dict[str, Any] = {}

        def types() -> Counter[str]:
            sizes: Counter[str] = Counter()
            for obj in gc.get_objects():
                sizes[type(obj).__qualname__] += sys.getsizeof(obj)
            return sizes

        def snapshot(*_: Any) -> None:
            gc.collect()
            if "before" not in snapshots:
                snapshots["before"] = tracemalloc.take_snapshot()
                snapshots["types"] = types()
                return
            after = tracemalloc.take_snapshot()
            by_type = types()
            by_type.subtract(snapshots["types"])
            lines = []
            for key in ("filename", "lineno"):
                for stat in after.compare_to(snapshots["before"], key)[:40]:
                    lines.append(f"{key}\t{stat.size_diff}\t{stat.count_diff}\t{stat.traceback}")
            for name, size in by_type.most_common(40):
                lines.append(f"type\t{size}\t0\t{name}")
            trace.write_text("\n".join(lines) + "\n")

        signal.signal(signal.SIGUSR2, snapshot)
    sys.path.insert(0, str(ROOT))
    from server.operator.cli import main

    sys.exit(main(argv))


def start_agora(port: int, log: Path, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    db = log.with_suffix(".db")
    serve = ["serve", "--port", str(port), "--db", str(db), "--rate-limit", "0"]
    serve += ["--log-level", "warning", "--max-sessions-per-user", "0"]
    serve += ["--max-connections-per-address", "0", *args.agora_args]
    trace = str(log.with_suffix(".trace")) if args.trace else ""
    command = [sys.executable, __file__, "--agora-server", trace, "--", *serve]
    return _spawn(command, log, args.server_cpus)


def start_reference(port: int, log: Path, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    command = [sys.executable, str(ROOT / "benchmarks" / "fanout.py"), "--reference-server"]
    return _spawn([*command, "--port", str(port)], log, args.server_cpus)


def _spawn(command: list[str], log: Path, cpus: set[int]) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if not k.startswith("AGORA_")},
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
    CHILDREN.append(proc)
    if cpus:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(proc.pid, cpus)
    return proc


async def gc_figures(port: int) -> dict[str, float]:
    """``count<g>``, ``sum<g>`` and ``longest<g>`` of each generation g, from /metrics."""
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", trust_env=False) as http:
        text = (await http.get("/metrics", timeout=10)).text
    figures: dict[str, float] = {}
    series = {
        "agora_gc_pause_seconds_count": "count",
        "agora_gc_pause_seconds_sum": "sum",
        "agora_gc_longest_pause_seconds": "longest",
    }
    for line in text.splitlines():
        name, _, rest = line.partition("{")
        if name in series and rest.startswith('generation="'):
            generation = rest[len('generation="')]
            figures[f"{series[name]}{generation}"] = float(line.rsplit(" ", 1)[1])
    return figures


# ---------------------------------------------------------------------------------------------
# One run


class IdleRun:
    def __init__(self, args: argparse.Namespace, target: str, tmp: Path) -> None:
        import socket

        self.args, self.target = args, target
        with socket.socket() as s:
            s.bind((HOST, 0))
            self.port = s.getsockname()[1]
        self.log = tmp / f"{target}-{self.port}.log"
        self.connected = self.open_after = 0
        self.codes: dict[Any, int] = {}
        self.rss_before = self.rss_idle = 0
        self.cpu_pct = self.other_pct = 0.0
        self.connect_s = 0.0
        self.gc: dict[str, float] = {}
        self.full_pause: float | None = None

    @property
    def per_conn(self) -> float:
        return (self.rss_idle - self.rss_before) / max(1, self.connected)

    async def run(self) -> None:
        args = self.args
        agora = self.target == "agora"
        start = start_agora if agora else start_reference
        proc = start(self.port, self.log, args)
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(stop_child, proc)
            token = await wait_healthy(self.port, proc, register=agora)
            server = psutil.Process(proc.pid)
            publisher = await Publisher.open(self.port, token)
            channel = publisher.channel
            await publisher.close()
            await asyncio.sleep(args.settle)
            if args.trace:
                proc.send_signal(signal.SIGUSR2)
                await asyncio.sleep(args.settle)
            self.rss_before = server.memory_info().rss
            n = args.workers
            counts = [args.connections // n + (i < args.connections % n) for i in range(n)]
            addresses = [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(args.addresses)]
            jobs = [
                (self.port, token, channel, c, addresses[i::n] or addresses)
                for i, c in enumerate(counts)
            ]
            started = time.perf_counter()
            workers = Processes("idle worker", idle_worker_main, jobs, args.client_cpus)
            stack.callback(workers.close)
            self.connected = sum(await workers.gather("ready", 120 + args.connections / 20))
            self.connect_s = time.perf_counter() - started
            print(
                f"{self.target}: {self.connected} connected in {self.connect_s:.1f} s", flush=True
            )
            await asyncio.sleep(args.settle)
            self.rss_idle = server.memory_info().rss
            if args.trace:
                proc.send_signal(signal.SIGUSR2)
                await asyncio.sleep(args.settle * 4)
                print_trace(self.log.with_suffix(".trace"), self.connected)
            # The idle window: every connection pings once per half heartbeat.
            cpu0, busy0, t0 = sum(server.cpu_times()[:2]), busy_seconds(), time.perf_counter()
            clients0 = workers.cpu_seconds()
            await asyncio.sleep(args.idle)
            wall = time.perf_counter() - t0
            server_cpu = sum(server.cpu_times()[:2]) - cpu0
            others = busy_seconds() - busy0 - server_cpu - (workers.cpu_seconds() - clients0)
            self.cpu_pct, self.other_pct = 100 * server_cpu / wall, 100 * max(0.0, others) / wall
            workers.send(("count",))
            answers = await workers.gather("count", 30)
            self.open_after = sum(a[0] for a in answers)
            for _, codes in answers:
                for code, k in codes.items():
                    self.codes[code] = self.codes.get(code, 0) + k
            if agora:
                self.gc = await gc_figures(self.port)
                # One full collection now, with every connection open: its pause.
                proc.send_signal(signal.SIGUSR1)
                for _ in range(100):
                    after = await gc_figures(self.port)
                    if after.get("count2", 0) > self.gc.get("count2", 0):
                        self.full_pause = after["sum2"] - self.gc.get("sum2", 0)
                        break
                    await asyncio.sleep(0.1)


def print_trace(path: Path, connections: int) -> None:
    for _ in range(100):
        if path.exists():
            break
        time.sleep(0.1)
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    total = sum(int(r[1]) for r in rows if r[0] == "filename")
    print(f"\ntracemalloc: {total / connections:.0f} B per connection (by file, top 40 sum)")
    for kind in ("filename", "lineno", "type"):
        print(f"\n-- by {kind} (bytes per connection, objects per connection) --")
        for _, size, count, where in (r for r in rows if r[0] == kind):
            per = int(size) / connections
            if abs(per) >= 16:
                print(f"{per:8.0f} {int(count) / connections:6.1f}  {where}")


def markdown(runs: list[IdleRun], args: argparse.Namespace) -> str:
    ref = next((r for r in runs if r.target == "reference"), None)
    lines = [
        f"Idle: {args.connections:,} identified, subscribed connections pinging every half"
        f" heartbeat; {args.workers} client processes on {args.addresses} addresses;"
        f" idle CPU over {args.idle:.0f} s; {os.cpu_count()} CPUs,"
        f" {'pinned' if args.pin else 'unpinned'}.",
        "",
        "| server | connected | open after | closes | RSS before MiB | RSS idle MiB"
        " | KiB per connection | vs ref | idle server CPU | other CPU | young collections"
        " | longest young ms | full collections | longest full ms | a full collection now ms |",
        "|---|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]

    def ms(seconds: float | None) -> str:
        return "-" if seconds is None else f"{1000 * seconds:.1f}"

    for r in runs:
        vs = "-" if ref is None or r is ref else f"{r.per_conn / max(1, ref.per_conn):.2f}x"
        g = r.gc
        young = f"{int(g['count0'] + g['count1']):,}" if g else "-"
        young_ms = ms(max(g["longest0"], g["longest1"])) if g else "-"
        full = f"{int(g['count2'])}" if g else "-"
        full_ms = ms(g["longest2"]) if g and g["count2"] else "-"
        lines.append(
            f"| {r.target} | {r.connected:,} | {r.open_after:,} | {r.codes or '-'}"
            f" | {r.rss_before / 2**20:.1f} | {r.rss_idle / 2**20:.1f} | {r.per_conn / 1024:.1f}"
            f" | {vs} | {r.cpu_pct:.1f}% | {r.other_pct:.0f}% | {young} | {young_ms}"
            f" | {full} | {full_ms} | {ms(r.full_pause)} |"
        )
    return "\n".join(lines)


async def bench(args: argparse.Namespace) -> list[IdleRun]:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    runs = []
    with tempfile.TemporaryDirectory(prefix="agora-idle-") as tmp:
        for target in args.targets:
            run = IdleRun(args, target, Path(tmp))
            try:
                await run.run()
            except Exception:
                with contextlib.suppress(OSError):
                    print(f"--- {target} server log (tail) ---\n{run.log.read_text()[-2000:]}")
                raise
            runs.append(run)
    return runs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="a smoke run: 500 connections, 5 s idle")
    add("-n", "--connections", type=int, default=None, help="connections (10000)")
    add("--workers", type=int, default=4, help="client processes (4)")
    add("--addresses", type=int, default=8, help="client source addresses in 127/8 (8)")
    add("--idle", type=float, default=None, help="seconds of idle CPU measured (30)")
    add("--targets", default="agora,reference", help="servers to measure")
    add("--settle", type=float, default=2.0, help="pause before RSS samples, s (2)")
    add("--trace", action="store_true", help="Agora under tracemalloc: where the bytes go")
    add("--pin", action=argparse.BooleanOptionalAction, default=True, help="as fanout.py")
    add("--agora-args", default="", help="more options for `server serve` (one string)")
    add("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    args.connections = args.connections or (500 if args.quick else 10_000)
    args.idle = args.idle if args.idle is not None else (5.0 if args.quick else 30.0)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if not set(args.targets) <= {"agora", "reference"}:
        parser.error("--targets takes agora and/or reference")
    if args.trace:
        args.targets = ["agora"]
    args.agora_args = shlex.split(args.agora_args)
    pin_cpus(args)
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--agora-server"]:
        agora_server(Path(argv[1]) if argv[1] else None, argv[3:])
        return
    raise_nofile()
    args = parse_args(argv)
    started = time.perf_counter()
    runs = run_bench(bench, args)
    table = markdown(runs, args)
    print(f"\n{table}\n\n(total {time.perf_counter() - started:.0f} s)")
    if args.markdown:
        args.markdown.write_text(table + "\n")


if __name__ == "__main__":
    main()
