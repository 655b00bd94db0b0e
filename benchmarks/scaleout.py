#!/usr/bin/env python3
"""Scale-out benchmark: the scaled deployment (PostgreSQL store, Redis broker), 1 node and 2.

Three deployments, each with S subscribers in one channel and one publisher, measured in one
run: the bare ``websockets`` reference server of ``fanout.py`` (one process); one
``agora serve --database postgresql://… --redis …`` node; two such nodes sharing the database
and the Redis, with the subscribers split half and half and the publisher on node 1. The
benchmark starts its own PostgreSQL (fsync on, a fresh database for each deployment) and its
own Redis. Each deployment gets a ``burst`` of K messages sent as fast as they are
acknowledged and a ``steady`` run at each ``--rate`` (open loop). Every run reports
deliveries/s, latency p50/p99/max (same-node and cross-node apart), lost, duplicate and
out-of-order deliveries, and the CPU of every process, PostgreSQL and Redis included. The
subscribers, the publisher and the reference server are ``fanout.py``'s.
benchmarks/README.md has the details.

Run ``python3 benchmarks/scaleout.py`` (about 2 minutes) or ``--quick`` (about 30 s).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import itertools
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import uvloop
from fanout import (
    CHILDREN,
    COUNTS,
    HOST,
    WARMUP_MESSAGES,
    Publisher,
    WorkerPool,
    _die_with_parent,
    burst_messages,
    per,
    percentile,
    start_server,
    stop_child,
    table,
    wait_healthy,
)
from pgserver import PostgresServer, postgres_installed
from redis.asyncio import Redis
from redis.exceptions import RedisError

#: Node CPU (% of one core) from which a node counts as what set the pace.
SATURATED_PCT = 85.0
#: Machine CPU (% of all CPUs) from which the machine counts as full.
MACHINE_FULL_PCT = 90.0
#: A steady rate asking this share of the burst's deliveries/s or more is at capacity.
AT_CAPACITY = 0.9
#: CPU (% of one core) of processes outside the benchmark from which the run is flagged.
OTHER_PCT = 20.0
#: Redis records events slower than this many ms (LATENCY LATEST, printed at the end).
REDIS_LATENCY_THRESHOLD_MS = 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def pin(pid: int, cpus: set[int]) -> None:
    if cpus:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, cpus)


def busy_seconds() -> float:
    """CPU seconds the whole machine has been busy. Unlike ``fanout.busy_seconds`` this counts
    interrupts too: on loopback much of TCP's work runs as softirq, which the processes' own
    CPU times include."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def cpu_seconds(process: psutil.Process) -> float:
    with contextlib.suppress(psutil.Error):
        return sum(process.cpu_times()[:2])  # user + system, all threads
    return 0.0


# ---------------------------------------------------------------------------------------------
# Redis, and the processes of one deployment (PostgreSQL is ``pgserver.PostgresServer``)


class RedisServer:
    """A private ``redis-server``, the broker: append-only file fsynced every second, no RDB
    snapshots (the tests' settings; it holds no durable data)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = Redis.from_url(self.url, socket_timeout=10)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    async def start(self, cpus: set[int]) -> psutil.Process:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [executable, "--port", str(self.port), "--bind", HOST]
        command += ["--dir", str(self.directory), "--appendonly", "yes"]
        command += ["--appendfsync", "everysec", "--save", ""]
        command += ["--latency-monitor-threshold", str(REDIS_LATENCY_THRESHOLD_MS)]
        with (self.directory / "redis.log").open("wb") as log:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # only calls prctl: safe enough after fork
            )
        CHILDREN.append(self.proc)
        pin(self.proc.pid, cpus)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            try:
                await self.client.ping()
                return psutil.Process(self.proc.pid)
            except (RedisError, OSError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.aclose()
        if self.proc is not None:
            stop_child(self.proc)

    async def command_stats(self) -> dict[str, tuple[int, float]]:
        """Calls and µs of Redis's own time, by command, since the last ``reset``."""
        info = await self.client.info("commandstats")
        return {
            name.removeprefix("cmdstat_"): (int(s["calls"]), float(s["usec"]))
            for name, s in info.items()
        }

    async def reset(self) -> None:
        await self.client.config_resetstat()

    async def latency_events(self) -> list[str]:
        """Redis's latency monitor: each kind of event over the threshold, its worst in ms."""
        latest = await self.client.execute_command("LATENCY", "LATEST")
        return [
            f"{event.decode() if isinstance(event, bytes) else event} (worst {worst} ms)"
            for event, _, _, worst, *_ in latest
        ]


@dataclass
class Node:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    process: psutil.Process
    log: Path

    async def counters(self) -> dict[str, float]:
        """The node's gap-repair and broker-resume counters (0 for the reference)."""
        found = {"gaps_repaired": 0.0, "broker_resumes": 0.0}
        async with httpx.AsyncClient(trust_env=False) as http:
            with contextlib.suppress(httpx.HTTPError):
                response = await http.get(f"http://{HOST}:{self.port}/metrics", timeout=5)
                for line in response.text.splitlines():
                    for name in found:
                        if line.startswith(f"agora_{name}_total "):
                            found[name] = float(line.rsplit(" ", 1)[1])
        return found


def layout(nodes: int, cpus: list[int], pinned: bool) -> tuple[list[set[int]], set[int]]:
    """The CPUs of each node, and of the subscribers and the publisher.

    One node gets the first CPU to itself and the clients share the others, as in
    ``fanout.py``. Two nodes get a CPU each, and the clients float over all of them: on 2 CPUs
    there is no core left to give them, and pinning them next to one node would starve that
    node. Redis always floats (see ``Deployment.run``).
    """
    if not pinned or len(cpus) < 2:
        return [set() for _ in range(nodes)], set(cpus)
    if nodes == 1:
        return [{cpus[0]}], set(cpus[1:])
    return [{cpus[i % len(cpus)]} for i in range(nodes)], set(cpus)


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class Group:
    """The deliveries to one set of subscribers (one node's, or all) in one run."""

    label: str
    subscribers: int
    expected: int
    delivered: int
    throughput: float  # deliveries/s
    p50_ms: float
    p99_ms: float
    max_ms: float
    lost_conns: int
    duplicates: int
    disorder: int
    stale: int
    errors: int

    @property
    def lost(self) -> int:
        return self.expected - self.delivered


@dataclass
class Run:
    deployment: str
    mode: str
    label: str
    sent: int
    send_rate: float
    timed_out: bool
    groups: list[Group]
    cpu_pct: dict[str, float]  # by process, % of one core
    machine_pct: float  # the whole machine's busy time, % of all its CPUs
    node_us: float  # the nodes' CPU time per delivery
    all_us: float  # the CPU time of every process of the benchmark per delivery
    redis_top: list[tuple[str, int, float]] = field(default_factory=list)  # command, calls, µs
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds, by process
    counters: dict[str, float] = field(default_factory=dict)

    @property
    def all(self) -> Group:
        return self.groups[-1]

    def group(self, label: str) -> Group | None:
        return next((g for g in self.groups if g.label == label), None)

    def bound(self) -> str:
        """What set the pace, read off the CPU figures."""
        full = [
            f"{name}'s core ({pct:.0f}%)"
            for name, pct in self.cpu_pct.items()
            if name.startswith(("node", "server")) and pct >= SATURATED_PCT
        ]
        if self.machine_pct >= MACHINE_FULL_PCT:
            full.append(f"the machine ({self.machine_pct:.0f}% of its {os.cpu_count()} CPUs)")
        return " and ".join(full) or "neither a node's core nor the machine (round trips?)"


def summarize(label: str, subscribers: int, results: list[dict[str, Any]], first: int) -> Group:
    total = {k: sum(r[k] for r in results) for k in COUNTS}
    latencies: list[int] = sorted(  # each worker's are sorted: a linear merge
        itertools.chain.from_iterable(array.array("q", r["latencies"]) for r in results)
    )
    last_rx = max(r["last_rx"] for r in results)
    return Group(
        label=label,
        subscribers=subscribers,
        expected=0,  # set by the caller, which knows how many were sent
        delivered=total["received"],
        throughput=per(total["received"], max(0, last_rx - first) / 1e9),
        p50_ms=percentile(latencies, 0.50) / 1000,
        p99_ms=percentile(latencies, 0.99) / 1000,
        max_ms=(latencies[-1] if latencies else 0) / 1000,
        lost_conns=total["lost"],
        duplicates=total["duplicates"],
        disorder=total["disorder"],
        stale=total["stale"],
        errors=total["errors"],
    )


# ---------------------------------------------------------------------------------------------
# One deployment


class Deployment:
    """PostgreSQL's database and Redis (for Agora), the server processes, S subscribers split
    over them, one publisher."""

    def __init__(
        self,
        args: argparse.Namespace,
        target: str,
        nodes: int,
        tmp: Path,
        postgres: PostgresServer | None,
    ) -> None:
        self.args, self.target, self.tmp = args, target, tmp
        self.postgres = postgres
        self.agora = target == "agora"
        self.name = f"agora, {nodes} node{'s' * (nodes > 1)}" if self.agora else "reference"
        self.n = nodes
        self.nodes: list[Node] = []
        self.redis: RedisServer | None = None
        self.redis_process: psutil.Process | None = None
        self.pools: list[WorkerPool] = []
        self.sizes: list[int] = []
        self.runs: list[Run] = []
        self.latency_events: list[str] = []

    def group_labels(self) -> list[str]:
        if self.n == 1:
            return ["all"]
        return ["same node", "cross node", "all"] if self.n == 2 else [*map(str, range(self.n))]

    async def run(self) -> None:
        args = self.args
        node_cpus, rest = layout(self.n, args.cpus, args.pin)
        if rest:
            os.sched_setaffinity(0, rest)  # this process: the publisher
        async with contextlib.AsyncExitStack() as stack:
            extra: list[str] = []
            if self.agora:
                assert self.postgres is not None
                database = self.postgres.create_database(f"scaleout{self.n}node")
                self.redis = RedisServer(self.tmp / f"redis-{self.n}")
                stack.push_async_callback(self.redis.stop)
                # PostgreSQL and Redis float: every message.send waits on a round trip to each
                # (the append, then PUBLISH); pinned beside the busy subscribers, each round
                # trip would wait for the scheduler.
                self.redis_process = await self.redis.start(set(args.cpus))
                extra = ["--database", database, "--redis", self.redis.url, *args.agora_args]
            token = ""
            for i in range(self.n):
                port = free_port()
                log = self.tmp / f"{self.target}-{self.n}-node{i + 1}.log"
                proc = start_server(self.target, port, log, extra, node_cpus[i])
                stack.callback(stop_child, proc)
                # Node 1 registers the account; the others share it through PostgreSQL.
                registered = await wait_healthy(port, proc, register=self.agora and i == 0)
                token = token or registered
                name = "server" if not self.agora else f"node{i + 1}"
                self.nodes.append(Node(name, port, proc, psutil.Process(proc.pid), log))
            self.publisher = publisher = await Publisher.open(self.nodes[0].port, token)
            stack.push_async_callback(publisher.close)
            size, n = args.subscribers, self.n
            self.sizes = [size // n + (1 if i < size % n else 0) for i in range(n)]
            per_node = max(1, args.workers // n)
            for node, count in zip(self.nodes, self.sizes, strict=True):
                pool = WorkerPool(per_node, node.port, token, publisher.channel, count, rest)
                stack.callback(pool.close)
                self.pools.append(pool)
            started = time.perf_counter()
            ready = await asyncio.gather(*(p.gather("ready", 40 + size / 10) for p in self.pools))
            connected = sum(sum(r) for r in ready)
            print(
                f"{self.name:>15}: {connected} subscribers connected in "
                f"{time.perf_counter() - started:.1f} s",
                flush=True,
            )
            if connected != size:
                raise RuntimeError(f"only {connected} of {size} subscribers connected")
            await asyncio.sleep(args.settle)
            warm_up = await self.run_phase(0, "warm-up", None)
            if warm_up.all.lost or warm_up.all.errors:
                raise RuntimeError(f"the warm-up failed: {self.describe(warm_up)}")
            phases = [("burst", None)] + [("steady", rate) for rate in args.rates]
            for phase, (mode, rate) in enumerate(phases, start=1):
                self.runs.append(await self.run_phase(phase, mode, rate))
                print(self.describe(self.runs[-1]), flush=True)
            if self.redis is not None:
                self.latency_events = await self.redis.latency_events()

    def cpu_now(self) -> dict[str, float]:
        times = {node.name: cpu_seconds(node.process) for node in self.nodes}
        if self.redis_process is not None:
            times["redis"] = cpu_seconds(self.redis_process)
        if self.postgres is not None:
            times["postgres"] = self.postgres.cpu_seconds()
        times["subscribers"] = sum(pool.cpu_seconds() for pool in self.pools)
        times["publisher"] = time.process_time()
        return times

    async def run_phase(self, phase: int, mode: str, rate: float | None) -> Run:
        args, publisher = self.args, self.publisher
        if mode == "burst":
            count = args.messages or burst_messages(args.subscribers, args.quick)
            window, label, timeout = args.window, f"K={count}", args.phase_timeout
        elif mode == "steady":
            assert rate is not None
            count = max(1, round(rate * args.duration))
            window, label = args.steady_window, f"{rate:g} msg/s"
            timeout = args.duration + args.phase_timeout
        else:  # warm-up: unmeasured, and a check that the whole path works
            count, window, label, timeout = WARMUP_MESSAGES, 1, "warm-up", 30.0
        for pool in self.pools:
            pool.send(("phase", phase, count, timeout + args.drain_timeout))
        await asyncio.gather(*(pool.gather("armed", 10) for pool in self.pools))
        counters = await self.counters()
        if self.redis is not None:
            await self.redis.reset()
        cpu, busy, started = self.cpu_now(), busy_seconds(), time.perf_counter()
        published = await publisher.publish(phase, count, window, rate, args.text_bytes, timeout)
        for pool in self.pools:
            pool.send(("expect", published.sent))
        answers = await asyncio.gather(
            *(pool.gather("result", timeout + args.drain_timeout + 30) for pool in self.pools)
        )
        wall = time.perf_counter() - started
        cpu = {k: v - cpu[k] for k, v in self.cpu_now().items()}
        busy = busy_seconds() - busy
        groups = [
            summarize(label, size, results, published.first_send)
            for label, size, results in zip(self.group_labels(), self.sizes, answers, strict=False)
        ]
        if self.n > 1:
            everything = list(itertools.chain.from_iterable(answers))
            groups.append(summarize("all", sum(self.sizes), everything, published.first_send))
        for group in groups:
            group.expected = published.sent * group.subscribers
        group_all = groups[-1]
        group_all.errors += len(published.errors)
        if published.errors:
            print(f"{len(published.errors)} message.send errors, the first: {published.errors[0]}")
        if published.timed_out:
            label += f", timed out after {published.sent}"
        cpu_pct = {k: 100 * per(v, wall) for k, v in cpu.items()}
        ours = sum(cpu.values())
        cpu_pct["other"] = 100 * per(max(0.0, busy - ours), wall)
        node_cpu = sum(cpu[node.name] for node in self.nodes)
        top: list[tuple[str, int, float]] = []
        if self.redis is not None:
            stats = await self.redis.command_stats()
            top = sorted(((k, *v) for k, v in stats.items()), key=lambda s: -s[2])[:3]
        after = await self.counters()
        return Run(
            deployment=self.name,
            mode=mode,
            label=label,
            sent=published.sent,
            send_rate=per(published.sent - 1, (published.last_send - published.first_send) / 1e9),
            timed_out=published.timed_out,
            groups=groups,
            cpu_pct=cpu_pct,
            machine_pct=100 * per(busy, wall * (psutil.cpu_count() or 1)),
            node_us=1e6 * per(node_cpu, group_all.delivered),
            all_us=1e6 * per(ours, group_all.delivered),
            redis_top=top,
            cpu_s=cpu,
            counters={k: after[k] - counters[k] for k in after},
        )

    async def counters(self) -> dict[str, float]:
        total = {"gaps_repaired": 0.0, "broker_resumes": 0.0}
        if self.agora:
            for node in self.nodes:
                for k, v in (await node.counters()).items():
                    total[k] += v
        return total

    def describe(self, run: Run) -> str:
        lines = [
            f"{self.name:>15} {run.mode:<6} {run.label:<11} sent {run.sent} at "
            f"{run.send_rate:,.0f}/s | CPU % of one core: {cpu_text(run)} | "
            f"us/delivery: nodes {run.node_us:.1f}, all processes {run.all_us:.1f}"
        ]
        for g in run.groups:
            extra = f", {g.lost} deliveries lost" if g.lost else ""
            extra += f", {g.errors} errors" if g.errors else ""
            extra += f", {g.lost_conns} connections closed" if g.lost_conns else ""
            extra += f", {g.disorder} out of order" if g.disorder else ""
            extra += f", {g.duplicates} duplicates" if g.duplicates else ""
            extra += f", {g.stale} late from an earlier run" if g.stale else ""
            lines.append(
                f"{'':>15}   {g.label:<10} S={g.subscribers:<5} {g.throughput:>10,.0f} "
                f"deliveries/s  latency p50 {g.p50_ms:7.1f} ms p99 {g.p99_ms:7.1f} ms "
                f"max {g.max_ms:7.1f} ms{extra}"
            )
        if run.redis_top:
            top = ", ".join(
                f"{k} {calls} x {per(us, calls):.0f} us" for k, calls, us in run.redis_top
            )
            lines.append(
                f"{'':>15}   redis: {top}; CPU s: {store_cpu_text(run)}; {counters_text(run)}"
            )
        return "\n".join(lines)


def cpu_text(run: Run) -> str:
    return ", ".join(f"{k} {v:.0f}" for k, v in run.cpu_pct.items()) + (
        f"; machine {run.machine_pct:.0f}% of {os.cpu_count()} CPUs"
    )


def store_cpu_text(run: Run) -> str:
    """Redis's and PostgreSQL's CPU seconds in the run, and PostgreSQL's per message sent."""
    redis, postgres = run.cpu_s.get("redis", 0.0), run.cpu_s.get("postgres", 0.0)
    return (
        f"redis {redis:.2f}, postgres {postgres:.2f} "
        f"({1e6 * per(postgres, run.sent):.0f} us per message)"
    )


def counters_text(run: Run) -> str:
    return (
        f"gaps repaired {run.counters.get('gaps_repaired', 0):.0f}, "
        f"broker resumes {run.counters.get('broker_resumes', 0):.0f}"
    )


# ---------------------------------------------------------------------------------------------
# Report


def find(runs: list[Run], deployment: str, mode: str, label: str = "") -> Run | None:
    return next(
        (
            r
            for r in runs
            if r.deployment == deployment and r.mode == mode and r.label.startswith(label)
        ),
        None,
    )


def report(deployments: list[Deployment], args: argparse.Namespace) -> str:
    runs = [run for d in deployments for run in d.runs]
    rows = []
    for run in runs:
        for g in run.groups:
            first = g is run.groups[0]
            name, what = (run.deployment, f"{run.mode} ({run.label})") if first else ("", "")
            rows.append(
                f"{name} | {what} | {g.label} | {g.throughput:,.0f} | {g.p50_ms:.1f} | "
                f"{g.p99_ms:.1f} | {g.max_ms:.1f} | {g.lost} | {g.duplicates} | {g.disorder} | "
                + (f"{cpu_text(run)} | {run.node_us:.1f} | {run.all_us:.1f}" if first else " |  | ")
            )
    pinned = "nodes pinned one per CPU, the rest on the others" if args.pin else "unpinned"
    version = getattr(args, "postgres_version", "")
    store = f"PostgreSQL {version.split()[0]} (fsync on) and Redis pub/sub; " if version else ""
    lines = [
        f"Scale-out, one channel, S = {args.subscribers} subscribers, one publisher on node 1; "
        f"{store}"
        f"burst: K messages with window {args.window}; steady: "
        f"{' and '.join(f'{r:g}' for r in args.rates)} msg/s for {args.duration:g} s; "
        f"{args.text_bytes}-byte texts; {args.workers} subscriber processes; "
        f"{os.cpu_count()} CPUs, {pinned}.",
        "",
        *table(
            "deployment | run | subscribers | deliveries/s | p50 ms | p99 ms | max ms | lost | "
            "dup | disorder | CPU % of one core | node µs/delivery | all µs/delivery",
            rows,
            left=("deployment", "run", "subscribers", "CPU % of one core"),
        ),
        "",
        *conclusions(runs, args),
    ]
    for d in deployments:
        if d.latency_events:
            lines.append(f"- Redis latency monitor ({d.name}): {', '.join(d.latency_events)}")
    return "\n".join(lines)


def conclusions(runs: list[Run], args: argparse.Namespace) -> list[str]:
    lines = []
    one, two = find(runs, "agora, 1 node", "burst"), find(runs, "agora, 2 nodes", "burst")
    if one and two:
        lines.append(
            f"- **2 processes vs 1** (burst, S = {args.subscribers}): "
            f"{two.all.throughput:,.0f} against {one.all.throughput:,.0f} deliveries/s, "
            f"**{per(two.all.throughput, one.all.throughput):.2f}x**. One node was bound by "
            f"{one.bound()}; two nodes by {two.bound()}."
        )
        # Every process of the benchmark shares these CPUs: their CPU time per delivery caps
        # the deliveries/s that any number of nodes can reach on this machine.
        cpus = len(args.cpus) or os.cpu_count() or 1
        caps = [
            f"{run.deployment}: {run.all_us:.1f} µs of CPU per delivery, {run.node_us:.1f} of "
            f"them in the nodes; a ceiling of {per(cpus * 1e6, run.all_us):,.0f} deliveries/s, "
            f"{100 * per(run.all.throughput * run.all_us, cpus * 1e6):.0f}% of it reached"
            for run in (one, two)
        ]
        lines.append(
            "- **what bounds it**: the nodes, PostgreSQL, Redis, the subscribers and the "
            f"publisher share {cpus} CPUs, so their CPU time per delivery caps the deliveries/s. "
            f"{'. '.join(caps)}. More nodes can only help with more cores than the nodes and "
            "their clients need."
        )
    for rate in args.rates:
        label = f"{rate:g} msg/s"
        two_s = find(runs, "agora, 2 nodes", "steady", label)
        one_s = find(runs, "agora, 1 node", "steady", label)
        ref = find(runs, "reference", "steady", label)
        cross = two_s and two_s.group("cross node")
        same = two_s and two_s.group("same node")
        if not (two_s and cross and same):
            continue
        others = [f"same node {same.p99_ms:.1f} ms"]
        if one_s:
            others.append(f"one node {one_s.all.p99_ms:.1f} ms")
        if ref:
            others.append(f"reference {ref.all.p99_ms:.1f} ms")
        needed, capacity = rate * args.subscribers, two.all.throughput if two else 0.0
        load = (
            f"at or over the capacity the burst measured ({needed:,.0f} deliveries/s asked "
            f"for, {capacity:,.0f} possible): this latency is queueing, and grows with --duration"
            if needed > AT_CAPACITY * capacity
            else f"within the capacity the burst measured ({capacity:,.0f} deliveries/s)"
        )
        lines.append(
            f"- **cross-node p99** at S = {args.subscribers}, {label}: "
            f"**{cross.p99_ms:.1f} ms** ({', '.join(others)}); {load}."
        )
    shared = [r for r in runs if r.cpu_pct.get("other", 0) >= OTHER_PCT]
    if shared:
        worst = max(r.cpu_pct["other"] for r in shared)
        lines.append(
            f"- **the machine was shared**: processes outside the benchmark used up to "
            f"{worst:.0f}% of a core in {len(shared)} of {len(runs)} runs; run again when it "
            "is quiet."
        )
    bad = [
        f"{r.deployment} {r.mode} ({r.label}) {g.label}"
        for r in runs
        for g in r.groups
        if g.lost or g.duplicates or g.disorder or g.errors or g.lost_conns
    ]
    lines.append(
        f"- lost, duplicate or out-of-order deliveries in: {', '.join(bad)}."
        if bad
        else "- no delivery was lost, duplicated or out of order; no connection was closed."
    )
    repairs = [
        r for r in runs if r.counters.get("gaps_repaired") or r.counters.get("broker_resumes")
    ]
    lines.append(
        "- the broker: "
        + (
            "; ".join(f"{r.deployment} {r.mode} ({r.label}): {counters_text(r)}" for r in repairs)
            if repairs
            else "no gap repaired and no broker resume in any run (agora_gaps_repaired_total, "
            "agora_broker_resumes_total)."
        )
    )
    return lines


# ---------------------------------------------------------------------------------------------
# Command line


async def bench(args: argparse.Namespace) -> list[Deployment]:
    # SIGTERM cancels the run like Ctrl-C does: every ``finally`` stops its processes.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    deployments = []
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="agora-scaleout-")))
        postgres = None
        if any(target == "agora" for target, _ in args.deployments):
            # One cluster for the run, floating like Redis; a fresh database per deployment.
            postgres = PostgresServer()
            stack.callback(postgres.remove)
            postgres.start(set(args.cpus))
            args.postgres_version = postgres.version()
        for target, nodes in args.deployments:
            db = postgres if target == "agora" else None
            deployment = Deployment(args, target, nodes, tmp, db)
            try:
                await deployment.run()
            except Exception:
                for node in deployment.nodes:
                    with contextlib.suppress(OSError):
                        tail = node.log.read_text(errors="replace")[-2000:]
                        print(f"--- {deployment.name} {node.name} log (tail) ---\n{tail}")
                if postgres is not None:
                    print(f"--- PostgreSQL log (tail) ---\n{postgres.log_tail()}")
                raise
            deployments.append(deployment)
    return deployments


DEPLOYMENTS = {"reference": ("reference", 1), "one": ("agora", 1), "two": ("agora", 2)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="a small smoke run (about 30 s)")
    add("-s", "--subscribers", type=int, default=None, help="S (default 1000; --quick: 100)")
    add("--deployments", default="reference,one,two", help="of reference, one, two")
    k_help = "burst messages (default min(2000, 500000 / S); --quick: min(200, 20000 / S))"
    add("-k", "--messages", type=int, default=None, help=k_help)
    add("--window", type=int, default=8, help="burst: most unanswered sends (default 8)")
    add("--rate", default="100,25", help="steady msg/s, comma-separated (default 100,25)")
    add("--duration", type=float, default=None, help="steady seconds (10; --quick: 2)")
    add("--steady-window", type=int, default=1000, help="steady: most unanswered sends (1000)")
    add("--text-bytes", type=int, default=100, help="message text size (100)")
    add("--workers", type=int, default=2, help="subscriber processes, split over the nodes (2)")
    pin_help = "pin each node to a CPU of its own (default on if >1 CPU); see the README"
    add("--pin", action=argparse.BooleanOptionalAction, default=True, help=pin_help)
    add("--phase-timeout", type=float, default=60.0, help="publish deadline, s")
    add("--drain-timeout", type=float, default=30.0, help="wait for late deliveries, s")
    add("--settle", type=float, default=0.5, help="pause after connecting, s")
    add("--agora-args", default="", help="more options for `server serve` (one string)")
    add("--markdown", type=Path, help="also write the tables to this file")
    args = parser.parse_args(argv)
    args.subscribers = args.subscribers or (100 if args.quick else 1000)
    args.rates = [float(r) for r in args.rate.split(",") if r.strip()]
    args.duration = args.duration or (2.0 if args.quick else 10.0)
    args.agora_args = shlex.split(args.agora_args)
    names = [d.strip() for d in args.deployments.split(",") if d.strip()]
    if not names or not set(names) <= set(DEPLOYMENTS):
        parser.error("--deployments takes reference, one and/or two")
    args.deployments = [DEPLOYMENTS[d] for d in names]
    args.cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    args.pin = args.pin and len(args.cpus) > 1
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if any(t == "agora" for t, _ in args.deployments):
        if shutil.which("redis-server") is None:
            sys.exit("redis-server is not installed (apt-get install -y redis-server)")
        if not postgres_installed():
            sys.exit("PostgreSQL is not installed (apt-get install -y postgresql)")
    started = time.perf_counter()
    try:
        deployments = uvloop.run(bench(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.exit("interrupted")
    finally:
        for child in CHILDREN:
            stop_child(child)
    text = report(deployments, args)
    print(f"\n{text}\n\n(total {time.perf_counter() - started:.0f} s)")
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
