#!/usr/bin/env python3
"""Workshop benchmark: P participants in one workshop vote in a poll, then upvote questions.

One Agora server (embedded, as ``fanout.py`` starts it) hosts one live workshop. P
participant connections (``picows``, in ``--workers`` uvloop processes) identify each as its
own account and subscribe to the workshop channel. Then, open loop, every participant casts
one ``poll.vote`` at its own moment spread evenly over ``--seconds`` (P / seconds votes per
second), and after that one ``question.upvote`` the same way. Every vote is a
``poll.updated`` event to all P subscribers, every upvote a ``question.updated``.

Measured per phase: **command latency** (send to reply, at the participant that sent it) and
**event delivery latency** (the command's send to each subscriber's receipt of the event it
caused: the event whose ``voters``, or question ``votes``, equals the count in the command's
reply), lost deliveries, and the server's CPU. The fan-out reference is measured in the same
run with ``fanout.py``'s own code: a fresh Agora and the bare ``websockets`` reference
server, each with P subscribers, a message every 1 / rate s at the same rate for the same
time (its ``steady`` run), and printed beside it. benchmarks/README.md has the details.

Run ``python3 benchmarks/workshop.py`` (about 2 minutes) or ``--quick`` (a smoke run).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import itertools
import os
import signal
import socket
import tempfile
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import msgpack
import psutil
import uvloop
from fanout import (
    CONNECT_CONCURRENCY,
    GATEWAY,
    HOST,
    LIFETIME,
    Processes,
    ServerRun,
    SetupListener,
    busy_seconds,
    listen,
    per,
    percentile,
    pin_cpus,
    run_bench,
    start_server,
    stop_child,
    table,
    wait_healthy,
)
from fanout import parse_args as fanout_args
from picows import WSFrame, WSMsgType, WSTransport, ws_connect
from websockets.asyncio.client import ClientConnection, connect

#: A question's events are keyed ``QUESTION_KEY * (index + 1) + votes``; a poll's by ``voters``.
QUESTION_KEY = 1_000_000
PHASES = ("vote", "upvote")


def event_key(d: dict[str, Any], questions: dict[str, int]) -> int | None:
    """The key of the command that caused an event (or reply) ``d``: the poll's ``voters``,
    or the question's index and ``votes``."""
    if "poll" in d:
        return int(d["poll"]["voters"])
    if "question" in d:
        index = questions.get(d["question"]["id"])
        return None if index is None else QUESTION_KEY * (index + 1) + int(d["question"]["votes"])
    return None


# ---------------------------------------------------------------------------------------------
# Participant workers


class Participant(SetupListener):
    """One participant's connection: setup frames go to ``inbox``; once subscribed, the
    events of interest and the replies to its commands are timed and handed to the pool."""

    def __init__(self, pool: ParticipantPool, index: int, token: str) -> None:
        super().__init__()
        self.pool, self.index, self.token = pool, index, token
        self.received = 0  # events of the current phase

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind in (WSMsgType.BINARY, WSMsgType.TEXT) and frame.fin:
            now = time.time_ns()
            payload = frame.get_payload_as_bytes()
            if not self.live:
                message = msgpack.unpackb(payload)
                if message.get("op") == "reply" and message.get("id") == 2:
                    self.live = True
                if message.get("op") != "event":
                    self.inbox.put_nowait(message)
            elif self.pool.wanted in payload:
                self.pool.receipt(self, msgpack.unpackb(payload), now)
            elif b"\xa2op\xa5event" not in payload:  # a reply or an error
                self.pool.answer(msgpack.unpackb(payload), now)
        elif kind is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif kind is not WSMsgType.PONG:
            transport.disconnect(graceful=False)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.inbox.put_nowait(None)
        if not self.closed:
            self.closed = True
            self.pool.closed += 1


class ParticipantPool:
    """A worker's participants, and the timings of the current phase."""

    def __init__(self, port: int, channel: str, people: list[tuple[int, str]], total: int):
        self.url = f"ws://{HOST}:{port}{GATEWAY}"
        self.channel, self.people, self.total = channel, people, total
        self.subs: list[Participant] = []
        self.closed = 0
        self.ids = itertools.count(100)
        self.arm("", {}, [])

    async def open_all(self, timeout: float) -> None:
        slots = asyncio.Semaphore(CONNECT_CONCURRENCY)
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(self._open(slots, i, t) for i, t in self.people))

    async def _open(self, slots: asyncio.Semaphore, index: int, token: str) -> None:
        async with slots:
            _, sub = await ws_connect(
                lambda *_: Participant(self, index, token), self.url, use_aiofastnet=False
            )
            if not isinstance(sub, Participant):
                raise ConnectionError("closed during the handshake")
            self.subs.append(sub)
            await sub.next("hello")
            sub.send({"op": "identify", "id": 1, "d": {"token": token}})
            await sub.next("reply")
            sub.send({"op": "subscribe", "id": 2, "d": {"channel": self.channel}})
            reply = await sub.next("reply")
            if "workshop" not in reply["d"]:
                raise RuntimeError(f"not a workshop channel's subscribe reply: {reply}")

    async def heartbeat(self) -> None:
        for _ in range(int(LIFETIME / 10) + 1):
            for sub in self.subs:
                await asyncio.sleep(10 / len(self.subs))
                sub.send({"op": "ping", "id": next(self.ids), "d": {}})

    def arm(self, phase: str, questions: dict[str, int], targets: list[str]) -> None:
        self.phase, self.questions, self.targets = phase, questions, targets
        self.wanted = b"poll.updated" if phase == "vote" else b"question.updated"
        self.pending: dict[int, int] = {}  # command id: send time
        self.sent: dict[int, int] = {}  # key: send time
        self.command_us = array.array("q")
        self.errors: list[Any] = []
        self.keys, self.times = array.array("q"), array.array("q")
        for sub in self.subs:
            sub.received = 0
        self.done = asyncio.Event()
        self.answered = 0

    def check(self) -> None:
        if self.answered >= len(self.people) and all(
            s.received >= self.total or s.closed for s in self.subs
        ):
            self.done.set()

    def receipt(self, sub: Participant, message: dict[str, Any], now: int) -> None:
        if message.get("op") != "event":
            return
        key = event_key(message["d"], self.questions)
        if key is None:
            return
        self.keys.append(key)
        self.times.append(now)
        sub.received += 1
        if sub.received >= self.total:
            self.check()

    def answer(self, message: dict[str, Any], now: int) -> None:
        sent = self.pending.pop(message.get("id"), None)
        if sent is None:
            return  # a ping's
        self.answered += 1
        if message.get("op") == "reply":
            self.command_us.append((now - sent) // 1000)
            key = event_key(message["d"], self.questions)
            if key is not None:
                self.sent[key] = sent
        else:
            self.errors.append(message.get("d"))
        self.check()

    async def run(self, t0_ns: int, spread_s: float, poll: str, options: int) -> None:
        """Each participant sends its one command at ``t0 + index / total * spread``."""
        loop = asyncio.get_running_loop()
        start = loop.time() + (t0_ns - time.time_ns()) / 1e9
        subs = sorted(self.subs, key=lambda s: s.index)
        for sub in subs:
            delay = start + sub.index / self.total * spread_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.phase == "vote":
                op, d = "poll.vote", {"poll": poll, "choices": [sub.index % options]}
            else:
                op, d = "question.upvote", {"question": self.targets[sub.index % len(self.targets)]}
            command_id = next(self.ids)
            self.pending[command_id] = time.time_ns()
            sub.send({"op": op, "id": command_id, "d": {"channel": self.channel, **d}})

    def result(self, cpu: float) -> dict[str, Any]:
        return {
            "sent": list(self.sent.items()),
            "command_us": self.command_us.tobytes(),
            "keys": self.keys.tobytes(),
            "times": self.times.tobytes(),
            "errors": self.errors[:5],
            "error_count": len(self.errors),
            "unanswered": len(self.pending),
            "closed": self.closed,
            "cpu": cpu,
        }


def worker_main(conn: Connection, port: int, channel: str, people: list[Any], total: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(asyncio.CancelledError):
        uvloop.run(_worker(conn, port, channel, people, total))


async def _worker(conn: Connection, port: int, channel: str, people: list[Any], total: int) -> None:
    main = asyncio.current_task()
    assert main is not None
    commands: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

    def command(message: tuple[Any, ...]) -> None:
        if message[0] in ("stop", "exit"):
            main.cancel()
        else:
            commands.put_nowait(message)

    listen(conn, command)
    pool = ParticipantPool(port, channel, people, total)
    heartbeat: asyncio.Task[None] | None = None
    try:
        await pool.open_all(timeout=60 + len(people) / 10)
        heartbeat = asyncio.create_task(pool.heartbeat())
        conn.send(("ready", len(pool.subs)))
        for _ in range(len(PHASES) + 1):
            message = await asyncio.wait_for(commands.get(), LIFETIME)
            _, phase, t0_ns, spread_s, poll, options, questions, timeout = message
            pool.arm(phase, {q: i for i, q in enumerate(questions)}, questions)
            cpu = time.process_time()
            sender = asyncio.create_task(pool.run(t0_ns, spread_s, poll, options))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pool.done.wait(), timeout)
            sender.cancel()
            conn.send(("result", pool.result(time.process_time() - cpu)))
    except Exception:
        with contextlib.suppress(OSError):
            conn.send(("error", traceback.format_exc()))
    finally:
        if heartbeat is not None:
            heartbeat.cancel()
        for sub in pool.subs:
            if sub.transport is not None:
                sub.transport.disconnect(graceful=False)


class Workers(Processes):
    """The participant processes, and their answers."""

    def __init__(self, n: int, port: int, channel: str, tokens: list[str], cpus: set[int]):
        people = list(enumerate(tokens))
        # interleaved, so every worker sends all along the phase
        jobs = [(port, channel, people[i::n], len(tokens)) for i in range(n)]
        super().__init__("participant worker", worker_main, jobs, cpus)


# ---------------------------------------------------------------------------------------------
# The facilitator and the run


class Facilitator:
    """The server's first account (its community's owner) on a plain websockets client."""

    def __init__(self, ws: ClientConnection, identity: dict[str, Any]) -> None:
        self.ws, self.identity = ws, identity
        self.ids = itertools.count(10)

    @classmethod
    async def open(cls, port: int, token: str) -> Facilitator:
        ws = await connect(
            f"ws://{HOST}:{port}{GATEWAY}",
            compression=None,
            proxy=None,
            ping_interval=None,
            max_queue=None,  # it reads only replies: joins and presence must not back up
        )
        facilitator = cls(ws, {})
        msgpack.unpackb(await ws.recv())  # hello
        facilitator.identity = await facilitator.ok("identify", {"token": token})
        return facilitator

    async def ok(self, op: str, d: dict[str, Any]) -> dict[str, Any]:
        command_id = next(self.ids)
        await self.ws.send(msgpack.packb({"op": op, "id": command_id, "d": d}))
        async with asyncio.timeout(30):
            while True:
                frame = msgpack.unpackb(await self.ws.recv())
                if frame.get("id") == command_id and frame.get("op") in ("reply", "error"):
                    if frame["op"] != "reply":
                        raise RuntimeError(f"{op}: {frame['d']}")
                    return frame["d"]


@dataclass
class WorkshopPhase:
    name: str
    commands: int
    answered: int
    errors: int
    rate: float  # commands/s sent
    command_p50_ms: float
    command_p99_ms: float
    delivery_p50_ms: float
    delivery_p99_ms: float
    delivery_max_ms: float
    delivered: int
    expected: int
    throughput: float  # deliveries/s
    server_cpu_pct: float
    server_us: float
    other_cpu_pct: float
    closed: int


async def make_participants(port: int, owner: str, count: int) -> list[str]:
    """``count`` bot accounts (``POST /api/v1/bots``: no password hashing), members of the
    owner's community like any; their tokens."""
    tokens: list[str] = []
    slots = asyncio.Semaphore(16)
    headers = {"authorization": f"Bearer {owner}"}
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", trust_env=False) as http:

        async def one(i: int) -> None:
            async with slots:
                answer = await http.post(
                    "/api/v1/bots", json={"username": f"p{i:05d}"}, headers=headers, timeout=30
                )
                tokens.append(answer.raise_for_status().json()["token"])

        await asyncio.gather(*(one(i) for i in range(count)))
    return tokens


async def workshop_run(args: argparse.Namespace, tmp: Path) -> tuple[list[WorkshopPhase], str]:
    """The workshop phases on a fresh Agora; and a line on what the workshop holds after."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    log = tmp / f"workshop-{port}.log"
    proc = start_server("agora", port, log, [], args.server_cpus)
    phases: list[WorkshopPhase] = []
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(stop_child, proc)
        owner = await wait_healthy(port, proc, register=True)
        server = psutil.Process(proc.pid)
        fac = await Facilitator.open(port, owner)
        stack.push_async_callback(fac.ws.close)
        community = fac.identity["communities"][0]["id"]
        made = await fac.ok(
            "channel.create", {"community": community, "name": "workshop", "kind": "workshop"}
        )
        channel = made["channel"]["id"]
        await fac.ok("workshop.start", {"channel": channel, "title": "Benchmark"})
        options = ["a", "b", "c", "d"]
        poll = (
            await fac.ok(
                "poll.create", {"channel": channel, "question": "Which?", "options": options}
            )
        )["poll"]["id"]
        questions = [
            (await fac.ok("question.ask", {"channel": channel, "text": f"Question {i}?"}))[
                "question"
            ]["id"]
            for i in range(args.questions)
        ]
        started = time.perf_counter()
        tokens = await make_participants(port, owner, args.participants)
        print(f"{len(tokens)} participant accounts in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        workers = Workers(args.workers, port, channel, tokens, args.client_cpus)
        stack.callback(workers.close)
        ready = sum(await workers.gather("ready", 120 + args.participants / 5))
        took = time.perf_counter() - started
        print(f"{ready} participants connected and subscribed in {took:.1f} s")
        await asyncio.sleep(args.settle)  # the joins' presence events settle
        for name in PHASES:
            timeout = args.seconds + args.drain_timeout
            t0 = time.time_ns() + 1_000_000_000
            message = ("phase", name, t0, args.seconds, poll, len(options), questions, timeout)
            server_cpu = sum(server.cpu_times()[:2])
            client_cpu = workers.cpu_seconds() + time.process_time()
            busy = busy_seconds()
            workers.send(message)
            results = await workers.gather("result", timeout + 30)
            wall = (time.time_ns() - t0) / 1e9
            server_cpu = sum(server.cpu_times()[:2]) - server_cpu
            ours = server_cpu + workers.cpu_seconds() + time.process_time() - client_cpu
            phases.append(summarize(name, results, args, t0, server_cpu, busy, ours, wall))
            print(describe(phases[-1]), flush=True)
        state = await fac.ok("workshop.state", {"channel": channel})
        w = state["workshop"]
        [counted] = [p for p in w["polls"] if p["id"] == poll]
        votes = sum(q["votes"] for q in w["questions"])
        check = f"poll voters {counted['voters']}, tallies {counted['tallies']}; upvotes {votes}"
        print(f"after: {check}")
    return phases, check


def summarize(
    name: str,
    results: list[dict[str, Any]],
    args: argparse.Namespace,
    t0: int,
    server_cpu: float,
    busy: float,
    ours: float,
    wall: float,
) -> WorkshopPhase:
    sent = dict(kv for r in results for kv in r["sent"])
    command_us = sorted(
        itertools.chain.from_iterable(array.array("q", r["command_us"]) for r in results)
    )
    delivery_us: list[int] = []
    last_rx = t0
    for r in results:
        keys, times = array.array("q", r["keys"]), array.array("q", r["times"])
        for key, at in zip(keys, times, strict=True):
            if key in sent:
                delivery_us.append((at - sent[key]) // 1000)
                last_rx = max(last_rx, at)
    delivery_us.sort()
    first_send = min(sent.values(), default=t0)
    errors = sum(r["error_count"] for r in results)
    if errors:
        print(f"{errors} command errors, e.g. {[e for r in results for e in r['errors']][:2]}")
    other = max(0.0, busy_seconds() - busy - ours)
    span = max(1e-9, (last_rx - first_send) / 1e9)
    return WorkshopPhase(
        name=name,
        commands=args.participants,
        answered=len(command_us),
        errors=errors,
        rate=args.participants / args.seconds,
        command_p50_ms=percentile(command_us, 0.50) / 1000,
        command_p99_ms=percentile(command_us, 0.99) / 1000,
        delivery_p50_ms=percentile(delivery_us, 0.50) / 1000,
        delivery_p99_ms=percentile(delivery_us, 0.99) / 1000,
        delivery_max_ms=(delivery_us[-1] if delivery_us else 0) / 1000,
        delivered=len(delivery_us),
        expected=len(sent) * args.participants,
        throughput=per(len(delivery_us), span),
        server_cpu_pct=100 * per(server_cpu, wall),
        server_us=1e6 * per(server_cpu, len(delivery_us)),
        other_cpu_pct=100 * per(other, wall),
        closed=sum(r["closed"] for r in results),
    )


def describe(p: WorkshopPhase) -> str:
    lost = p.expected - p.delivered
    extra = f", {lost} deliveries lost" if lost else ""
    extra += f", {p.commands - p.answered} commands unanswered" if p.answered < p.commands else ""
    extra += f", {p.closed} connections closed" if p.closed else ""
    return (
        f"workshop {p.name:<7} {p.commands} commands at {p.rate:g}/s: command p50 "
        f"{p.command_p50_ms:.1f} ms p99 {p.command_p99_ms:.1f} ms | delivery p50 "
        f"{p.delivery_p50_ms:.1f} ms p99 {p.delivery_p99_ms:.1f} ms max {p.delivery_max_ms:.1f} "
        f"ms, {p.throughput:,.0f} deliveries/s | server CPU {p.server_cpu_pct:.0f}% "
        f"({p.server_us:.1f} us/delivery), other processes {p.other_cpu_pct:.0f}%{extra}"
    )


async def reference_runs(args: argparse.Namespace, tmp: Path) -> list[ServerRun]:
    """``fanout.py``'s runs at S = participants, its steady rate = the workshop's command rate."""
    rate = args.participants / args.seconds
    targets = "agora,reference" if args.reference else "agora"
    fanout = fanout_args(
        [
            "--sizes", str(args.participants),
            "--targets", targets,
            "--rate", f"{rate:g}",
            "--duration", f"{args.seconds:g}",
            "-k", str(args.burst),
            "--workers", str(args.workers),
            "--pin" if args.pin else "--no-pin",
        ]
    )  # fmt: skip
    runs = []
    for target in fanout.targets:
        run = ServerRun(fanout, target, args.participants, tmp)
        await run.run()
        runs.append(run)
    return runs


def markdown(args: argparse.Namespace, phases: list[WorkshopPhase], runs: list[ServerRun]) -> str:
    steady = {run.target: run.phases["steady"] for run in runs}
    agora, ref = steady.get("agora"), steady.get("reference")

    def vs(value: float, base: Any) -> str:
        return f"{value / base.p99_ms:.2f}x" if base and base.p99_ms else "-"

    rows = [
        f"{p.name} (`{'poll.vote' if p.name == 'vote' else 'question.upvote'}`) | agora | "
        f"{p.commands} at {p.rate:g}/s | {p.command_p50_ms:.1f} | {p.command_p99_ms:.1f} | "
        f"{p.delivery_p50_ms:.1f} | {p.delivery_p99_ms:.1f} | {p.delivery_max_ms:.1f} | "
        f"{p.throughput:,.0f} | {p.expected - p.delivered} | {p.server_cpu_pct:.0f}% | "
        f"{vs(p.delivery_p99_ms, agora)} | {vs(p.delivery_p99_ms, ref)}"
        for p in phases
    ]
    for target, p in steady.items():
        rows.append(
            f"fan-out steady (`message.send`) | {target} | {p.sent} at {p.label} | "
            f"{p.ack_p50_ms:.1f} | - | {p.p50_ms:.1f} | {p.p99_ms:.1f} | {p.max_ms:.1f} | "
            f"{p.throughput:,.0f} | {p.expected - p.delivered} | {p.server_cpu_pct:.0f}% | "
            f"{vs(p.p99_ms, agora) if target != 'agora' else '-'} | "
            f"{vs(p.p99_ms, ref) if target != 'reference' else '-'}"
        )
    return "\n".join(
        [
            f"{args.participants} participants (subscribers) in one workshop channel; each "
            f"command once per participant, spread evenly over {args.seconds:g} s; fan-out: "
            f"`fanout.py`'s steady run at the same rate and S; {args.workers} client "
            f"processes; {os.cpu_count()} CPUs{', pinned' if args.pin else ''}.",
            "",
            *table(
                "run | server | commands | command p50 ms | command p99 ms | delivery p50 ms | "
                "delivery p99 ms | max ms | deliveries/s | lost | server CPU | "
                "delivery p99 vs fan-out | vs reference",
                rows,
            ),
        ]
    )


async def bench(args: argparse.Namespace) -> tuple[list[WorkshopPhase], list[ServerRun], str]:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with tempfile.TemporaryDirectory(prefix="agora-workshop-") as tmp:
        phases, check = await workshop_run(args, Path(tmp))
        runs = await reference_runs(args, Path(tmp)) if args.fanout else []
    return phases, runs, check


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="a small smoke run (P = 50, 2 s phases)")
    add("--participants", type=int, default=None, help="participants (500)")
    add("--seconds", type=float, default=None, help="each phase's spread, s (10)")
    add("--questions", type=int, default=5, help="questions to upvote (5)")
    add("--workers", type=int, default=2, help="participant processes (2)")
    add("--burst", type=int, default=None, help="fan-out burst messages (200; --quick 50)")
    add("--fanout", action=argparse.BooleanOptionalAction, default=True, help="fan-out runs")
    add("--reference", action=argparse.BooleanOptionalAction, default=True,
        help="the reference server's fan-out run")  # fmt: skip
    add("--pin", action=argparse.BooleanOptionalAction, default=True, help="as fanout.py")
    add("--drain-timeout", type=float, default=15.0, help="wait for late deliveries, s")
    add("--settle", type=float, default=1.0, help="pause before measuring, s")
    add("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    args.participants = args.participants or (50 if args.quick else 500)
    args.seconds = args.seconds or (2.0 if args.quick else 10.0)
    args.burst = args.burst or (50 if args.quick else 200)
    pin_cpus(args)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    phases, runs, check = run_bench(bench, args)
    tables = markdown(args, phases, runs)
    print(f"\n{tables}\n\n{check}\n(total {time.perf_counter() - started:.0f} s)")
    if args.markdown:
        args.markdown.write_text(tables + "\n")


if __name__ == "__main__":
    main()
