#!/usr/bin/env python3
"""The gateway fuzzer, run long: generated frames against a started server, every answer
checked against docs/protocol.md, and the server log searched for tracebacks.

The strategies are ``tests/fuzz_strategies.py``'s (``tests/test_fuzz.py`` runs them for a
few hundred frames in CI). Rounds of ``--round`` frames go to one session each, turn by
turn: not-frames, raw bytes and text, invalid commands, fuzzed valid commands; msgpack and
json. A wrong answer is recorded (not shrunk) and the run goes on; a session that closes is
counted and replaced. The reference: ``ping`` round trips on one session, measured in the
same run, for the frames/s a session gets when nothing is fuzzed.

Run ``python3 benchmarks/fuzz.py`` (5 minutes), ``--seconds 10`` (a smoke run),
``--deployment scaled`` (PostgreSQL + Redis).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import shlex
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import uvloop
from deployment import Deployment, start
from fanout import CHILDREN, HOST, ROOT, stop_child
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

sys.path.insert(0, str(ROOT))  # ``protocol`` and ``tests`` of this checkout

from protocol import Encoding
from tests.fuzz_strategies import (
    Case,
    Known,
    commands,
    invalid_commands,
    not_frames,
    raw_bytes,
    raw_text,
)

FAMILIES: dict[str, Callable[[Encoding, Known], st.SearchStrategy[Case]]] = {
    "not frames": lambda e, k: not_frames(e),
    "raw bytes/text": lambda e, k: st.one_of(raw_bytes(e), raw_text(e)),
    "invalid commands": invalid_commands,
    "valid commands": commands,
}
#: Wrong answers printed in full (all are counted).
SHOWN = 10


class Fuzzer:
    def __init__(self, server: Deployment, args: argparse.Namespace) -> None:
        self.server = server
        self.args = args
        self.sent: Counter[str] = Counter()
        self.wrong: list[str] = []
        self.closed = 0
        self.codes: Counter[str] = Counter()
        self.known = Known(())

    def session(self, encoding: Encoding) -> contextlib.AbstractContextManager[ClientConnection]:
        @contextlib.contextmanager
        def opened() -> Any:
            url = f"ws://{HOST}:{self.server.port}/gateway?v=1&encoding={encoding.value}"
            with connect(url, compression=None, max_size=None) as ws:
                decode(ws.recv(10), encoding)  # hello
                answer = command(ws, encoding, "identify", {"token": self.server.token})
                if not self.known.ids:
                    community = answer["d"]["communities"][0]
                    ids = [community["id"], *(c["id"] for c in community["channels"])]
                    self.known = Known((*ids, answer["d"]["user"]["id"]))
                yield ws

        return opened()

    def reference(self, seconds: float) -> float:
        """Ping round trips per second on one session."""
        with self.session(Encoding.MSGPACK) as ws:
            count, ends = 0, time.perf_counter() + seconds
            while time.perf_counter() < ends:
                command(ws, Encoding.MSGPACK, "ping", {})
                count += 1
        return count / seconds

    def round(self, family: str, encoding: Encoding) -> None:
        """``--round`` generated frames of one family on one session."""
        with self.session(encoding) as ws:
            state = {"ws": ws}

            @settings(
                max_examples=self.args.round,
                deadline=None,
                database=None,
                phases=[Phase.generate],  # nothing to shrink: wrong answers are listed
                suppress_health_check=list(HealthCheck),
            )
            @given(FAMILIES[family](encoding, self.known))
            def run(case: Case) -> None:
                ws = state["ws"]
                if ws is None:
                    return
                try:
                    ws.send(case.message)
                    self.sent[family] += 1
                    answer = next_answer(ws, encoding)
                except ConnectionClosed:
                    self.closed += 1
                    state["ws"] = None
                    return
                if answer["op"] == "error":
                    self.codes[answer["d"]["code"]] += 1
                problem = case.check(answer)
                if problem is not None:
                    self.wrong.append(f"{encoding.value}: {problem}")

            run()


def decode(message: bytes | str, encoding: Encoding) -> dict[str, Any]:
    if encoding is Encoding.JSON:
        return json.loads(message)
    return msgpack.unpackb(message, raw=False)


def next_answer(ws: ClientConnection, encoding: Encoding) -> dict[str, Any]:
    while True:
        frame = decode(ws.recv(30), encoding)
        if frame["op"] in ("reply", "error"):
            return frame


def command(ws: ClientConnection, encoding: Encoding, op: str, d: dict[str, Any]) -> Any:
    frame = {"op": op, "id": 1, "d": d}
    ws.send(json.dumps(frame) if encoding is Encoding.JSON else msgpack.packb(frame))
    return next_answer(ws, encoding)


def fuzz(fuzzer: Fuzzer, args: argparse.Namespace) -> tuple[float, float]:
    """Rounds until ``--seconds`` or ``--examples``; (reference pings/s, fuzz frames/s)."""
    pings = fuzzer.reference(min(5.0, max(1.0, args.seconds / 20)))
    started = time.perf_counter()
    turns = itertools.product(FAMILIES, [Encoding.MSGPACK, Encoding.JSON])
    for family, encoding in itertools.cycle(list(turns)):
        fuzzer.round(family, encoding)
        total = sum(fuzzer.sent.values())
        elapsed = time.perf_counter() - started
        print(
            f"  {elapsed:6.0f} s  {total:9,} frames  {len(fuzzer.wrong)} wrong  "
            f"{fuzzer.server.tracebacks()} tracebacks",
            flush=True,
        )
        if elapsed >= args.seconds or (args.examples and total >= args.examples):
            return pings, total / elapsed
    raise AssertionError("unreachable")


async def main_async(args: argparse.Namespace) -> None:
    async with contextlib.AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="agora-fuzz-")))
        server = await start(args.deployment, tmp, stack, args.agora_args)
        fuzzer = Fuzzer(server, args)
        print(f"fuzzing the {args.deployment} deployment for {args.seconds:g} s", flush=True)
        pings, rate = await asyncio.to_thread(fuzz, fuzzer, args)
        alive = server.proc.poll() is None
        tracebacks = server.tracebacks()
        total = sum(fuzzer.sent.values())
        print()
        print("| figure | value |")
        print("|---|---|")
        print(f"| frames sent | {total:,} |")
        for family, count in fuzzer.sent.items():
            print(f"| ... {family} | {count:,} |")
        print(f"| fuzz frames/s (one session at a time) | {rate:,.0f} |")
        print(f"| reference: ping round trips/s, one session | {pings:,.0f} |")
        print(f"| answers outside what the docs allow | {len(fuzzer.wrong)} |")
        print(f"| sessions the server closed | {fuzzer.closed} |")
        print(f"| tracebacks in the server log | {tracebacks} |")
        print(f"| server still running | {'yes' if alive else 'NO'} |")
        codes = ", ".join(f"{c} {n:,}" for c, n in fuzzer.codes.most_common())
        print(f"\nerror codes answered: {codes}")
        for line in fuzzer.wrong[:SHOWN]:
            print(f"  wrong: {line}")
        if tracebacks:
            print(f"\n--- server log (tail) ---\n{server.log.read_text()[-3000:]}")
        if fuzzer.wrong or tracebacks or not alive:
            raise SystemExit(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--deployment", choices=("embedded", "scaled"), default="embedded")
    add("--seconds", type=float, default=300.0, help="how long to fuzz, s (default 300)")
    add("--examples", type=int, default=0, help="stop after this many frames (0: no limit)")
    add("--round", type=int, default=500, help="frames per session and round (default 500)")
    add("--agora-args", default="", help="more options for `server serve` (one string)")
    args = parser.parse_args(argv)
    args.agora_args = shlex.split(args.agora_args)
    try:
        uvloop.run(main_async(args))
    except KeyboardInterrupt:
        sys.exit("interrupted")
    finally:
        for child in CHILDREN:
            stop_child(child)


if __name__ == "__main__":
    main()
