#!/usr/bin/env python3
"""The outside probe of issue 13, re-run: what an attacker on the network can do to a server.

Each probe starts a fresh embedded server (``agora serve``, default settings, its own
database) from each checkout given, and attacks it over 127.0.0.0/8 the way a client on
the internet could. Loopback has sixteen million addresses, so "many attackers" and "the
real user" come from different client addresses, as they would on the internet.

- ``guess``: one address sends wrong passwords for one account, one after another, for
  ``--seconds``: how many were checked (401) per minute, and how many refused (429).
- ``flood``: 100 workers, each from its own address, send bad logins (unknown names) as fast
  as they are answered, while a real user logs in every 0.5 s from another address: the real
  login's latency and status.
- ``silent``: 1,100 TCP connections (from 11 addresses) that never send a byte: how many the
  server still holds open after 30 s, and whether ``/healthz`` answers meanwhile.
- ``hoard``: one account's 1,000 WebSockets each ask for five 1.6 MB ``history`` pages and
  never read: the server's peak RSS, and the sessions it closed (by close code).

``python3 benchmarks/probe.py --checkout /tmp/before --checkout .`` prints one column per
checkout (the first is the reference: e.g. a clone of the commit before the change).
About 3 minutes per checkout; ``--quick`` shortens every probe.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import msgpack
import psutil
from websockets.client import ClientProtocol
from websockets.protocol import State
from websockets.uri import parse_uri

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``agora serve`` of one checkout on a free port, with a fresh database."""

    def __init__(self, checkout: Path, tmp: Path, extra: list[str]) -> None:
        self.port = free_port()
        self.log = tmp / f"server-{self.port}.log"
        command = [sys.executable, "-m", "server", "serve", "--port", str(self.port)]
        command += ["--db", str(tmp / f"agora-{self.port}.db"), *extra]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA_")}
        env["PYTHONPATH"] = str(checkout)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                command, cwd=checkout, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.ps = psutil.Process(self.proc.pid)
        self.url = f"http://127.0.0.1:{self.port}"

    async def healthy(self) -> None:
        async with httpx.AsyncClient(trust_env=False) as http:
            for _ in range(600):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the server exited: {self.log.read_text()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(self.url + "/healthz", timeout=1)).status_code == 200:
                        return
                await asyncio.sleep(0.05)
        raise TimeoutError("the server did not become healthy")

    def rss_mib(self) -> float:
        return self.ps.memory_info().rss / 2**20

    def tracebacks(self) -> int:
        return self.log.read_text(errors="replace").count("Traceback")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def client(address: str = "127.0.0.1", **kwargs: Any) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(transport=transport, trust_env=False, timeout=60, **kwargs)


async def register(server: Server, username: str, address: str = "127.0.0.1") -> str:
    async with client(address) as http:
        answer = await http.post(
            server.url + "/api/v1/auth/register",
            json={"username": username, "password": PASSWORD},
        )
        answer.raise_for_status()
        return answer.json()["token"]


async def login(http: httpx.AsyncClient, url: str, username: str, password: str) -> int:
    answer = await http.post(
        url + "/api/v1/auth/login", json={"username": username, "password": password}
    )
    return answer.status_code


# probes: each returns rows of (figure, value)


async def guess(server: Server, seconds: float) -> list[tuple[str, str]]:
    await register(server, "victim")
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + seconds
    async with client("127.0.9.1") as http:
        while time.monotonic() < deadline:
            status = await login(http, server.url, "victim", secrets.token_hex(6))
            statuses[status] = statuses.get(status, 0) + 1
    per_minute = 60 / seconds
    return [
        ("wrong passwords checked per minute (401)", f"{statuses.get(401, 0) * per_minute:,.0f}"),
        ("refused per minute (429)", f"{statuses.get(429, 0) * per_minute:,.0f}"),
        ("other answers", _statuses({s: n for s, n in statuses.items() if s not in (401, 429)})),
    ]


async def flood(server: Server, seconds: float) -> list[tuple[str, str]]:
    await register(server, "realuser")
    stop = asyncio.Event()
    attacker_statuses: dict[int, int] = {}

    async def attacker(n: int) -> None:
        async with client(f"127.0.{10 + n // 250}.{1 + n % 250}") as http:
            while not stop.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    status = await login(http, server.url, f"nobody{n}", "wrong password")
                    attacker_statuses[status] = attacker_statuses.get(status, 0) + 1

    attackers = [asyncio.create_task(attacker(n)) for n in range(100)]
    await asyncio.sleep(2)  # let the flood build up
    latencies: list[float] = []
    real_statuses: dict[int, int] = {}
    async with client("127.0.0.1") as http:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.monotonic()
            status = await login(http, server.url, "realuser", PASSWORD)
            latencies.append(time.monotonic() - started)
            real_statuses[status] = real_statuses.get(status, 0) + 1
            await asyncio.sleep(max(0.0, 0.5 - (time.monotonic() - started)))
    stop.set()
    await asyncio.gather(*attackers, return_exceptions=True)
    return [
        ("real login latency, median (s)", f"{statistics.median(latencies):.2f}"),
        ("real login latency, max (s)", f"{max(latencies):.2f}"),
        ("real login answers", _statuses(real_statuses)),
        ("flood answers", _statuses(attacker_statuses)),
    ]


async def silent(server: Server, count: int, wait: float) -> list[tuple[str, str]]:
    sockets = []
    refused = 0
    for n in range(count):
        s = socket.socket()
        s.bind((f"127.0.{20 + n // 100}.{1 + n % 100}", 0))
        s.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(s, ("127.0.0.1", server.port))
        except OSError:
            refused += 1
            s.close()
            continue
        sockets.append(s)
    healthz = "no answer"
    with contextlib.suppress(httpx.HTTPError):
        async with client("127.0.0.2") as http:
            healthz = str((await http.get(server.url + "/healthz", timeout=5)).status_code)
    await asyncio.sleep(wait)
    still_open = sum(_open(s) for s in sockets)
    for s in sockets:
        s.close()
    return [
        (f"silent sockets opened (of {count})", f"{len(sockets):,}"),
        (f"still open after {wait:.0f} s", f"{still_open:,}"),
        ("/healthz while they were open", healthz),
    ]


def _open(s: socket.socket) -> bool:
    """Whether the server has not closed its side (no EOF, no reset, nothing to read)."""
    try:
        return s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


async def hoard(server: Server, count: int, wait: float) -> list[tuple[str, str]]:
    token = await register(server, "hoarder")
    channel = await _fill_channel(server, token)
    rss_before = server.rss_mib()
    loop = asyncio.get_running_loop()
    sockets = []
    for n in range(count):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.bind((f"127.0.{40 + n // 250}.{1 + n % 250}", 0))
        s.setblocking(False)
        try:
            await loop.sock_connect(s, ("127.0.0.1", server.port))
            ws = await _handshake(loop, s, server.port)
        except (OSError, ConnectionError):
            s.close()
            continue
        frames = [{"op": "identify", "id": 1, "d": {"token": token}}]
        frames += [
            {"op": "history", "id": 2 + i, "d": {"channel": channel, "limit": 100}}
            for i in range(5)
        ]
        for frame in frames:
            ws.send_binary(msgpack.packb(frame))
        with contextlib.suppress(OSError):
            await loop.sock_sendall(s, b"".join(ws.data_to_send()))
        sockets.append(s)
    peak = server.rss_mib()
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        peak = max(peak, server.rss_mib())
        await asyncio.sleep(0.2)
    async with client("127.0.0.2") as http:
        metrics = (await http.get(server.url + "/metrics")).text
    for s in sockets:
        s.close()
    closes = {
        line.split('code="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("agora_closes_total{")
    }
    return [
        (f"sockets that asked and never read (of {count})", f"{len(sockets):,}"),
        ("server RSS before (MiB)", f"{rss_before:,.0f}"),
        ("server RSS peak (MiB)", f"{peak:,.0f}"),
        ("closed by the server", ", ".join(f"{n:.0f} x {c}" for c, n in closes.items()) or "none"),
    ]


async def _fill_channel(server: Server, token: str) -> str:
    """100 messages of 4,000 four-byte characters (a 1.6 MB history page); the channel id."""
    from websockets.asyncio.client import connect

    url = f"ws://127.0.0.1:{server.port}/gateway?v=1&encoding=json"
    async with connect(url, max_size=None) as ws:
        await ws.recv()  # hello
        await ws.send(json.dumps({"op": "identify", "id": 1, "d": {"token": token}}))
        ready = json.loads(await ws.recv())
        channel = ready["d"]["communities"][0]["channels"][0]["id"]
        sent = 0
        while sent < 100:  # one at a time, waiting out the session's rate limit
            send = {"channel": channel, "text": "😀" * 4000}
            await ws.send(json.dumps({"op": "message.send", "id": 2 + sent, "d": send}))
            while (answer := json.loads(await ws.recv())).get("op") not in ("reply", "error"):
                pass
            if answer["op"] == "reply":
                sent += 1
            else:
                await asyncio.sleep(answer["d"].get("retry_after_ms", 1000) / 1000)
    return channel


async def _handshake(
    loop: asyncio.AbstractEventLoop, s: socket.socket, port: int
) -> ClientProtocol:
    ws = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}/gateway?v=1&encoding=msgpack"))
    ws.send_request(ws.connect())
    await loop.sock_sendall(s, b"".join(ws.data_to_send()))
    while ws.state is State.CONNECTING:
        data = await asyncio.wait_for(loop.sock_recv(s, 4096), 10)
        if not data:
            raise ConnectionError("closed during the handshake")
        ws.receive_data(data)
    if ws.handshake_exc is not None:
        raise ConnectionError(str(ws.handshake_exc))
    return ws


def _statuses(counts: dict[int, int]) -> str:
    return ", ".join(f"{n:,} x {status}" for status, n in sorted(counts.items())) or "none"


# running


async def run(checkout: Path, args: argparse.Namespace) -> dict[str, list[tuple[str, str]]]:
    quick = args.quick
    probes: dict[str, Callable[[Server], Awaitable[list[tuple[str, str]]]]] = {
        "guess": lambda s: guess(s, 5 if quick else 20),
        "flood": lambda s: flood(s, 5 if quick else 15),
        "silent": lambda s: silent(s, 110 if quick else 1100, 5 if quick else 30),
        "hoard": lambda s: hoard(s, 100 if quick else 1000, 5 if quick else 15),
    }
    results: dict[str, list[tuple[str, str]]] = {}
    for name, probe in probes.items():
        if args.only and name not in args.only:
            continue
        with tempfile.TemporaryDirectory(prefix="agora-probe-") as tmp:
            server = Server(checkout, Path(tmp), args.server_args.split())
            try:
                await server.healthy()
                print(f"{checkout}: {name}…", file=sys.stderr, flush=True)
                rows = await probe(server)
                rows.append(("tracebacks in the server log", str(server.tracebacks())))
                results[name] = rows
            finally:
                server.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", action="append", type=Path, help="repeatable; default .")
    parser.add_argument("--only", action="append", choices=["guess", "flood", "silent", "hoard"])
    parser.add_argument("--quick", action="store_true", help="short probes (a smoke run)")
    parser.add_argument("--server-args", default="", help="extra options for agora serve")
    args = parser.parse_args()
    checkouts = [c.resolve() for c in args.checkout or [ROOT]]
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = [asyncio.run(run(checkout, args)) for checkout in checkouts]
    print("| probe | figure | " + " | ".join(c.name or str(c) for c in checkouts) + " |")
    print("|---|---|" + "---:|" * len(checkouts))
    for probe, rows in results[0].items():
        for i, (figure, _) in enumerate(rows):
            cells = [r.get(probe, [])[i][1] if i < len(r.get(probe, [])) else "" for r in results]
            print(f"| {probe} | {figure} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
