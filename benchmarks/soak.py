#!/usr/bin/env python3
"""Soak: N minutes of mixed traffic against one started server, reported interval by interval.

The traffic, all on the owner account of a fresh deployment (embedded by default):

- ``--senders`` sessions send ``--rate`` messages/s in total (open loop, each with a nonce)
  to three text channels; each send's acknowledgement latency is recorded;
- ``--receivers`` sessions subscribed to the three channels; each one drops its connection
  every ``--reconnect-s`` seconds (with jitter), reconnects, and resumes with ``since`` and
  ``epoch``: it must get ``recovered: true`` and the missed events replayed;
- one session pages through ``history`` of a random channel once a second;
- one session runs a workshop: a poll is created, voted on and closed every 20 s;
- the reference: one session sends ``ping`` (a command that touches no store) 5 times a
  second, its round trip measured beside the others.

Each interval prints the server's RSS, the p50/p99 of each latency, counts and errors. At
the end every receiver must have seen every acknowledged message, once and in offset order;
the RSS drift is the last interval's RSS minus the first's.

Run ``python3 benchmarks/soak.py`` (30 minutes), ``--minutes 3``, or ``--minutes 0.2`` (smoke).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import random
import secrets
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import uvloop
from deployment import Deployment, start
from fanout import CHILDREN, HOST, stop_child
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

#: Channels the messages go to.
CHANNELS = 3
#: Seconds between workshop poll rounds, and between history requests.
POLL_EVERY = 20.0
HISTORY_EVERY = 1.0
PING_EVERY = 0.2


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p * len(ordered) + 0.5) - 1))]


@dataclass
class Interval:
    """What happened in one reporting interval."""

    ack_ms: list[float] = field(default_factory=list)
    history_ms: list[float] = field(default_factory=list)
    ping_ms: list[float] = field(default_factory=list)
    poll_ms: list[float] = field(default_factory=list)
    errors: int = 0
    reconnects: int = 0
    not_recovered: int = 0


class Session:
    """One identified msgpack session: commands with ids, events to a callback."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.on_event: Any = None
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, port: int, token: str) -> tuple[Session, dict[str, Any]]:
        ws = await connect(f"ws://{HOST}:{port}/gateway?v=1&encoding=msgpack", max_size=None)
        msgpack.unpackb(await ws.recv())  # hello
        session = cls(ws)
        identity = await session.ok("identify", {"token": token})
        return session, identity

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in self.ws:
                frame = msgpack.unpackb(message, raw=False)
                if frame["op"] in ("reply", "error"):
                    future = self.waiting.pop(frame.get("id", -1), None)
                    if future is not None and not future.done():
                        future.set_result(frame)
                elif frame["op"] == "event" and self.on_event is not None:
                    self.on_event(frame)
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(ConnectionError("the session closed"))

    async def command(self, op: str, d: dict[str, Any]) -> dict[str, Any]:
        command_id = next(self.ids)
        future = asyncio.get_running_loop().create_future()
        self.waiting[command_id] = future
        await self.ws.send(msgpack.packb({"op": op, "id": command_id, "d": d}))
        return await asyncio.wait_for(future, 30)

    async def ok(self, op: str, d: dict[str, Any]) -> dict[str, Any]:
        frame = await self.command(op, d)
        if frame["op"] != "reply":
            raise RuntimeError(f"{op}: {frame['d']}")
        return frame["d"]

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader


class Soak:
    def __init__(self, server: Deployment, args: argparse.Namespace) -> None:
        self.server = server
        self.args = args
        self.now = Interval()
        self.channels: list[str] = []
        #: (channel, message id) of every acknowledged message -> its text
        self.acked: dict[tuple[str, str], str] = {}
        self.seen: list[dict[tuple[str, str], str]] = []
        self.disorder = 0
        self.stopping = False

    async def setup(self) -> str:
        owner, identity = await Session.open(self.server.port, self.server.token)
        community = identity["communities"][0]["id"]
        for i in range(CHANNELS):
            answer = await owner.ok("channel.create", {"community": community, "name": f"soak{i}"})
            self.channels.append(answer["channel"]["id"])
        room = await owner.ok(
            "channel.create", {"community": community, "name": "room", "kind": "workshop"}
        )
        await owner.close()
        return room["channel"]["id"]

    # traffic

    async def sender(self, rate: float) -> None:
        session, _ = await Session.open(self.server.port, self.server.token)
        started, sends = time.perf_counter(), itertools.count()
        pending: set[asyncio.Task[None]] = set()
        while not self.stopping:
            due = started + next(sends) / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            task = asyncio.create_task(self.send_one(session, due))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending, return_exceptions=True)
        await session.close()

    async def send_one(self, session: Session, due: float) -> None:
        channel = random.choice(self.channels)
        text = secrets.token_hex(8)
        try:
            frame = await session.command(
                "message.send", {"channel": channel, "text": text, "nonce": text}
            )
        except (ConnectionError, TimeoutError):
            self.now.errors += 1
            return
        if frame["op"] != "reply":
            self.now.errors += 1
            return
        self.now.ack_ms.append((time.perf_counter() - due) * 1000)
        self.acked[(channel, frame["d"]["message"]["id"])] = text

    async def receiver(self, index: int) -> None:
        seen = self.seen[index]
        last: dict[str, int] = {}
        epochs: dict[str, str] = {}

        def on_event(frame: dict[str, Any]) -> None:
            channel, offset = frame.get("ch"), frame.get("o")
            if channel not in last or offset is None:
                return
            if offset != last[channel] + 1:
                self.disorder += 1
            last[channel] = offset
            if frame["t"] == "message.created":
                message = frame["d"]["message"]
                seen[(channel, message["id"])] = message["text"]

        while True:
            session, _ = await Session.open(self.server.port, self.server.token)
            session.on_event = on_event
            for channel in self.channels:
                d: dict[str, Any] = {"channel": channel}
                if channel in last:
                    d |= {"since": last[channel], "epoch": epochs[channel]}
                answer = await session.ok("subscribe", d)
                if channel in last and not answer["recovered"]:
                    self.now.not_recovered += 1
                last.setdefault(channel, answer["offset"])
                epochs[channel] = answer["epoch"]
            if self.stopping:
                await asyncio.sleep(self.args.drain_s)  # the last replays and live events
                await session.close()
                return
            pause = self.args.reconnect_s * random.uniform(0.5, 1.5)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stopped(), pause)
            await session.close()
            self.now.reconnects += 1

    async def stopped(self) -> None:
        while not self.stopping:
            await asyncio.sleep(0.1)

    async def timed(self, session: Session, op: str, d: dict[str, Any], into: list[float]) -> Any:
        begun = time.perf_counter()
        try:
            answer = await session.ok(op, d)
        except (RuntimeError, ConnectionError, TimeoutError):
            self.now.errors += 1
            return None
        into.append((time.perf_counter() - begun) * 1000)
        return answer

    async def every(self, seconds: float, act: Any) -> None:
        session, _ = await Session.open(self.server.port, self.server.token)
        while not self.stopping:
            await act(session)
            await asyncio.sleep(seconds)
        await session.close()

    async def history(self, session: Session) -> None:
        d = {"channel": random.choice(self.channels), "limit": 100}
        await self.timed(session, "history", d, self.now.history_ms)

    async def ping(self, session: Session) -> None:
        await self.timed(session, "ping", {}, self.now.ping_ms)

    def workshop(self, room: str) -> Any:
        async def poll_round(session: Session) -> None:
            d = {"channel": room, "question": "Which?", "options": ["a", "b", "c"]}
            created = await self.timed(session, "poll.create", d, self.now.poll_ms)
            if created is None:
                return
            poll = {"channel": room, "poll": created["poll"]["id"]}
            await self.timed(session, "poll.vote", poll | {"choices": [1]}, self.now.poll_ms)
            await self.timed(session, "poll.close", poll, self.now.poll_ms)

        return poll_round

    # the run

    async def run(self) -> list[str]:
        args = self.args
        room = await self.setup()
        starter, _ = await Session.open(self.server.port, self.server.token)
        await starter.ok("workshop.start", {"channel": room, "title": "soak"})
        await starter.close()
        self.seen = [{} for _ in range(args.receivers)]
        process = self.server.process
        tasks = [asyncio.create_task(self.receiver(i)) for i in range(args.receivers)]
        await asyncio.sleep(1)  # every receiver subscribed before the first send
        tasks += [
            asyncio.create_task(self.sender(args.rate / args.senders)) for _ in range(args.senders)
        ]
        tasks += [
            asyncio.create_task(self.every(HISTORY_EVERY, self.history)),
            asyncio.create_task(self.every(PING_EVERY, self.ping)),
            asyncio.create_task(self.every(POLL_EVERY, self.workshop(room))),
        ]
        rows, rss = [], []
        print(HEADER, flush=True)
        started = time.perf_counter()
        for n in itertools.count(1):
            await asyncio.sleep(max(0.0, started + n * args.interval - time.perf_counter()))
            done, self.now = self.now, Interval()
            rss.append(process.memory_info().rss / 2**20)
            rows.append(row(time.perf_counter() - started, rss[-1], done))
            print(rows[-1], flush=True)
            if any(t.done() for t in tasks):
                for t in tasks:
                    if t.done() and t.exception() is not None:
                        raise t.exception()  # type: ignore[misc]
            if n * args.interval >= args.minutes * 60 - 1e-6:
                break
        self.stopping = True
        await asyncio.gather(*tasks)
        return self.summary(rss)

    def summary(self, rss: list[float]) -> list[str]:
        lost = [sum(1 for k in self.acked if k not in seen) for seen in self.seen]
        wrong = [
            sum(1 for k, text in seen.items() if self.acked.get(k, text) != text)
            for seen in self.seen
        ]
        return [
            f"- **RSS**: {rss[0]:.1f} MiB after the first interval, {rss[-1]:.1f} MiB after the "
            f"last (drift {rss[-1] - rss[0]:+.1f} MiB), lowest {min(rss):.1f}, highest "
            f"{max(rss):.1f}.",
            f"- **acknowledged messages**: {len(self.acked):,}; not seen by a receiver: "
            f"{', '.join(map(str, lost))} (one figure per receiver); seen with another text: "
            f"{sum(wrong)}; events out of offset order: {self.disorder}.",
            f"- **tracebacks in the server log**: {self.server.tracebacks()}; server "
            f"{'still running' if self.server.proc.poll() is None else 'EXITED'}.",
        ]


HEADER = (
    "| time | RSS MiB | sends | ack p50/p99 ms | history p50/p99 ms | poll cmds p50/p99 ms "
    "| ping p50/p99 ms (reference) | reconnects | not recovered | errors |\n"
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def row(elapsed: float, rss: float, i: Interval) -> str:
    def pair(values: list[float]) -> str:
        if not values:
            return "-"
        return f"{percentile(values, 0.5):.1f} / {percentile(values, 0.99):.1f}"

    return (
        f"| {elapsed:5.0f} s | {rss:7.1f} | {len(i.ack_ms):5} | {pair(i.ack_ms)} | "
        f"{pair(i.history_ms)} | {pair(i.poll_ms)} | {pair(i.ping_ms)} | {i.reconnects} | "
        f"{i.not_recovered} | {i.errors} |"
    )


async def main_async(args: argparse.Namespace) -> None:
    async with contextlib.AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="agora-soak-")))
        server = await start(args.deployment, tmp, stack, args.agora_args)
        print(
            f"soak: {args.deployment}, {args.minutes:g} min, {args.rate:g} msg/s from "
            f"{args.senders} senders, {args.receivers} receivers reconnecting every "
            f"~{args.reconnect_s:g} s; server pid {server.proc.pid}",
            flush=True,
        )
        summary = await Soak(server, args).run()
        print("\n" + "\n".join(summary))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--minutes", type=float, default=30.0, help="length of the run (default 30)")
    add("--deployment", choices=("embedded", "scaled"), default="embedded")
    add("--rate", type=float, default=50.0, help="messages/s, all senders (default 50)")
    add("--senders", type=int, default=4, help="sender sessions (default 4)")
    add("--receivers", type=int, default=4, help="receiver sessions (default 4)")
    add("--reconnect-s", type=float, default=10.0, help="receivers reconnect every ~s (10)")
    add(
        "--interval",
        type=float,
        default=0.0,
        help="report every s (default: 1/10 of the run, 10 s to 180 s)",
    )
    add("--drain-s", type=float, default=3.0, help="wait for the last events, s (3)")
    add("--agora-args", default="", help="more options for `server serve` (one string)")
    args = parser.parse_args(argv)
    args.agora_args = shlex.split(args.agora_args)
    if not args.interval:
        args.interval = min(180.0, max(10.0, args.minutes * 6))
    args.interval = min(args.interval, args.minutes * 60)
    try:
        uvloop.run(main_async(args))
    except KeyboardInterrupt:
        sys.exit("interrupted")
    finally:
        for child in CHILDREN:
            stop_child(child)


if __name__ == "__main__":
    main()
