"""Limits, refusals and failures: rate, flooding, slow consumers, origins, kill -9, SIGTERM."""

from __future__ import annotations

import asyncio
import itertools
import signal
from typing import Any

import msgpack
import pytest
import websockets
from websockets.asyncio.client import connect

from tests.agora_cli import ok, storage
from tests.conftest import (
    BIG_TEXT,
    AgoraProcess,
    RawSession,
    closed_with,
    documented_close,
    eventually,
    general_channel,
    kernel_buffering,
    never_reading,
    new_user,
    raw_session,
    timeout,
)


async def test_rate_limit_answers_rate_limited_with_retry_after(make_server) -> None:
    server = make_server(rate_limit=60, rate_burst=5, flood_limit=100)
    account = await new_user(server)
    session = await raw_session(server, token=account["token"])  # identify spends 1 token
    answers = [await session.command("ping") for _ in range(8)]
    assert [a["op"] for a in answers[:4]] == ["reply"] * 4
    limited = answers[4:]
    assert all(a["op"] == "error" and a["d"]["code"] == "rate_limited" for a in limited)
    assert all(0 < a["d"]["retry_after_ms"] <= 1000 for a in limited)
    assert [a["id"] for a in limited] == [6, 7, 8, 9]  # identify was command 1
    await asyncio.sleep(limited[-1]["d"]["retry_after_ms"] / 1000 + 0.05)
    assert (await session.command("ping"))["op"] == "reply"
    await session.ws.close()


async def test_flooding_after_rate_limited_closes_with_4008(make_server) -> None:
    server = make_server(rate_limit=60, rate_burst=2, flood_limit=5)
    account = await new_user(server)
    session = await raw_session(server, token=account["token"])
    for i in range(20):
        await session.send({"op": "ping", "id": 100 + i, "d": {}})
    assert await closed_with(session.ws) == documented_close(
        4008, "flooding after rate_limited errors"
    )


async def test_slow_consumer_is_cut_at_4010_and_others_keep_receiving(make_server) -> None:
    server = make_server(rate_limit=0, outbox_limit=64 * 1024)
    node = server.nodes[0]  # the slow and the healthy subscriber share it
    account = await new_user(node)
    slow = await raw_session(node, token=account["token"], **never_reading(node))
    channel = general_channel(slow.identity)
    await slow.ok("subscribe", {"channel": channel})
    fast = await raw_session(node, token=account["token"])
    await fast.ok("subscribe", {"channel": channel})
    publisher = await raw_session(server.nodes[-1], token=account["token"])
    text = "x" * 3500
    # ~7 MB: past what the kernel buffers (up to 4 MB here) plus the 64 KiB outbox
    count = 2000
    received = 0

    async def read_fast() -> None:
        nonlocal received
        while received < count:
            frame = await fast.recv(wait=20)
            received += frame["op"] == "event"

    reader = asyncio.create_task(read_fast())
    for i in range(count):
        await publisher.send(
            {"op": "message.send", "id": i + 1, "d": {"channel": channel, "text": text}}
        )
    answered = 0
    while answered < count:
        answered += (await publisher.recv(wait=20))["op"] == "reply"
    await asyncio.wait_for(reader, timeout(30))
    assert received == count, "a healthy subscriber missed events"
    await eventually(lambda: node.metric("agora_closes_total", 'code="4010"') == 1, "4010")
    # once it reads, it finds the close
    assert await closed_with(slow.ws, wait=20) == documented_close(
        4010, "outbound buffer overflowed"
    )
    await fast.ws.close()
    await publisher.ws.close()


async def test_a_burst_to_a_slow_reader_arrives_in_order_up_to_its_4010(make_server) -> None:
    server = make_server(rate_limit=0, outbox_limit=64 * 1024)
    node = server.nodes[0]
    account = await new_user(node)
    slow = await raw_session(node, token=account["token"], **never_reading(node))
    channel = general_channel(slow.identity)
    head = (await slow.ok("subscribe", {"channel": channel}))["offset"]
    publisher = await raw_session(server.nodes[-1], token=account["token"])
    # ~7 MB sent in windows of 50: frames reach the slow reader's outbox several a turn
    # (coalesced into one write), past what the kernel buffers plus the 64 KiB outbox
    count, window = 2000, 50
    for start in range(0, count, window):
        for i in range(start, start + window):
            await publisher.send(
                {
                    "op": "message.send",
                    "id": i + 1,
                    "d": {"channel": channel, "text": f"{i:04d}" + "x" * 3500},
                }
            )
        answered = 0
        while answered < window:
            answered += (await publisher.recv(wait=20))["op"] == "reply"
    await eventually(lambda: node.metric("agora_closes_total", 'code="4010"') == 1, "4010")
    read: list[Any] = []
    assert await closed_with(slow.ws, wait=20, read=read) == documented_close(
        4010, "outbound buffer overflowed"
    )
    events = [msgpack.unpackb(m) for m in read]
    events = [e for e in events if e["op"] == "event" and e["t"] == "message.created"]
    assert events, "the slow reader got nothing before its close"
    # what it got before the cut-off is every event from its subscription on, in order
    assert [e["o"] for e in events] == list(range(head + 1, head + 1 + len(events)))
    texts = [e["d"]["message"]["text"][:4] for e in events]
    assert texts == [f"{i:04d}" for i in range(len(events))]
    assert len(events) < count
    await publisher.ws.close()


@pytest.mark.parametrize("origin", ["https://evil.example", "null"])
async def test_cross_site_origin_is_refused_with_1008(server: AgoraProcess, origin: str) -> None:
    ws = await connect(f"{server.ws}/gateway", origin=origin)
    read: list[Any] = []
    assert await closed_with(ws, read=read) == documented_close(1008, "origin not allowed")
    assert read == []  # not even hello is sent


async def test_same_origin_and_allowed_origins_connect(make_server) -> None:
    server = make_server(allowed_origins="https://school.example").nodes[0]
    for origin in (f"http://127.0.0.1:{server.port}", "https://school.example"):
        ws = await connect(f"{server.ws}/gateway", origin=origin)
        assert b"hello" in await asyncio.wait_for(ws.recv(), timeout(5))
        await ws.close()


async def test_a_channel_of_another_community_is_forbidden(make_server) -> None:
    server = make_server()
    account = await new_user(server)
    outsider = await new_user(server, "outsider")
    where = storage(server)  # the admin CLI, beside the running server
    await asyncio.to_thread(
        ok, "community", "create", "Staff room", "--owner", outsider["user"]["username"], *where
    )
    ((private, *_),) = await asyncio.to_thread(
        ok, "channel", "create", "Staff room", "planning", *where
    )
    session = await raw_session(server, token=account["token"])
    assert [c["name"] for c in session.identity["communities"]] == ["Agora"]
    for op, d in [
        ("subscribe", {"channel": private}),
        ("history", {"channel": private}),
        ("message.send", {"channel": private, "text": "hi"}),
    ]:
        assert (await session.command(op, d))["d"]["code"] == "forbidden"
    await session.ws.close()


@pytest.mark.embedded_only  # the scaled deployment's test is in test_scaleout.py
@pytest.mark.parametrize("synchronous", ["normal", "full"])
async def test_acknowledged_message_survives_kill_9(make_server, synchronous: str) -> None:
    server = make_server(sqlite_synchronous=synchronous)
    account = await new_user(server)
    session = await raw_session(server, token=account["token"])
    channel = general_channel(session.identity)
    sent = [
        (await session.ok("message.send", {"channel": channel, "text": f"keep {i}"}))["message"]
        for i in range(20)
    ]
    server.kill()
    server.start()
    session = await raw_session(server, token=account["token"])
    events = (await session.ok("history", {"channel": channel, "limit": 100}))["events"]
    assert [e["d"]["message"] for e in events if e["t"] == "message.created"] == sent
    await session.ws.close()


async def fill(node: AgoraProcess, token: str, channel: str, count: int) -> None:
    """Store ``count`` big messages in ``channel``, numbered from 0."""
    session = await raw_session(node, token=token)
    for i in range(count):
        await session.ok("message.send", {"channel": channel, "text": f"{i:04d}{BIG_TEXT}"})
    await session.ws.close()


class Stalled:
    """A session whose ``subscribe`` is in flight: its replay is more than the kernel and
    half the outbox hold, and the client reads nothing, so the replay waits (for as long
    as the client does not read) and the command stays unanswered."""

    def __init__(self, session: RawSession, count: int) -> None:
        self.session = session
        self.count = count  # messages in the channel, replayed from offset 1 on

    @classmethod
    async def start(cls, server: Any, token: str, channel: str, limit: int) -> Stalled:
        node = server.nodes[0]
        connect_args = never_reading(node)
        count = kernel_buffering(connect_args) // len(BIG_TEXT.encode()) + 1
        await fill(server.nodes[-1], token, channel, count)
        session = await raw_session(node, token=token, **connect_args)
        await session.send({"op": "subscribe", "id": 1, "d": {"channel": channel, "since": 0}})
        await eventually(
            lambda: node.metric("agora_outbox_bytes") > limit // 4,
            "the replay waiting for the client to read",
            wait=30,
        )
        return cls(session, count)


async def read_until_closed(
    session: RawSession,
) -> tuple[list[dict[str, Any]], tuple[int | None, str]]:
    """Every frame the server sends from now on, and its close code and reason."""
    frames: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout(30)):
            while True:
                frames.append(await session.recv(wait=30))
    except websockets.ConnectionClosed as exc:
        assert exc.rcvd is not None
        return frames, (exc.rcvd.code, exc.rcvd.reason)


async def scratch_channel(server: Any) -> str:
    """A new, empty channel in the community, made with the admin CLI."""
    ((channel, _),) = await asyncio.to_thread(
        ok, "channel", "create", "Agora", f"scratch{next(_scratch)}", *storage(server)
    )
    return channel


_scratch = itertools.count()


async def test_sigterm_answers_the_command_in_flight_then_closes_1001(make_server) -> None:
    limit = 64 * 1024
    server = make_server(rate_limit=0, outbox_limit=limit, shutdown_timeout_ms=60_000)
    node = server.nodes[0]
    account = await new_user(node)
    idle = await raw_session(node, token=account["token"])
    channel = await scratch_channel(server)
    stalled = await Stalled.start(server, account["token"], channel, limit)
    # queued behind the command in flight: never read, so never answered nor carried out
    for i in range(2, 5):
        await stalled.session.send(
            {"op": "message.send", "id": i, "d": {"channel": channel, "text": f"queued {i}"}}
        )
    assert node.proc is not None
    node.proc.send_signal(signal.SIGTERM)
    # the idle session is closed at once, while the busy one's command is still in flight
    assert await closed_with(idle.ws) == documented_close(1001, "server shutting down")
    frames, close = await read_until_closed(stalled.session)
    answers = [f for f in frames if f["op"] in ("reply", "error")]
    assert [(a["op"], a["id"]) for a in answers] == [("reply", 1)]  # only the one in flight
    assert answers[0]["d"]["recovered"] is True
    events = [f for f in frames if f["op"] == "event"]
    assert [e["o"] for e in events] == list(range(1, stalled.count + 1))
    assert frames[-1] == answers[0]  # the whole replay, its reply, then the close
    assert close == documented_close(1001, "server shutting down")
    # uvicorn re-raises the signal once its graceful shutdown is done
    assert node.stop() in (0, -signal.SIGTERM)
    node.start()
    check = await raw_session(node, token=account["token"])
    # two pages of 16 KB: a page over the 64 KiB outbox limit would be refused (too_large)
    stored = (await check.ok("history", {"channel": channel, "limit": 2}))["events"]
    texts = [e["d"]["message"]["text"] for e in stored if e["t"] == "message.created"]
    assert texts[-1] == f"{stalled.count - 1:04d}{BIG_TEXT}"  # no queued command was carried out
    await check.ws.close()


async def test_a_connection_opened_during_the_drain_gets_hello_then_1001(make_server) -> None:
    limit = 64 * 1024
    server = make_server(rate_limit=0, outbox_limit=limit, shutdown_timeout_ms=60_000)
    node = server.nodes[0]
    account = await new_user(node)
    idle = await raw_session(node, token=account["token"])
    # a command in flight keeps the server draining until its client reads
    stalled = await Stalled.start(server, account["token"], await scratch_channel(server), limit)
    assert node.proc is not None
    node.proc.send_signal(signal.SIGTERM)
    assert await closed_with(idle.ws) == documented_close(1001, "server shutting down")
    late = await raw_session(node)  # reads hello
    assert late.hello["op"] == "hello"
    assert await closed_with(late.ws) == documented_close(1001, "server shutting down")
    _, close = await read_until_closed(stalled.session)  # the drain ends
    assert close == documented_close(1001, "server shutting down")
    assert node.stop() in (0, -signal.SIGTERM)


async def test_4009_drops_what_was_queued_even_replies_to_commands_carried_out(
    make_server,
) -> None:
    heartbeat_ms = round(timeout(2) * 1000)
    server = make_server(
        rate_limit=0,
        heartbeat_ms=heartbeat_ms,
        outbox_limit=64 * 1024 * 1024,
        close_timeout_ms=60_000,
    )
    node = server.nodes[0]
    account = await new_user(node)
    channel = await scratch_channel(server)
    connect_args = never_reading(node)
    silent = await raw_session(node, token=account["token"], **connect_args)
    await silent.ok("subscribe", {"channel": channel})
    # Each send brings it a reply and an event of 16 kB: twice what the kernel holds for
    # it, so when it falls silent, frames (replies among them) are still queued.
    count = kernel_buffering(connect_args) // len(BIG_TEXT.encode())
    ids = list(range(100, 100 + count))
    for i in ids:
        await silent.send(
            {"op": "message.send", "id": i, "d": {"channel": channel, "text": BIG_TEXT}}
        )
    # it reads nothing from now on, and sends nothing: 1.5 heartbeats later, 4009
    await eventually(
        lambda: node.metric("agora_closes_total", 'code="4009"') == 1,
        "close 4009",
        wait=30 + 1.5 * heartbeat_ms / 1000,
    )
    frames, close = await read_until_closed(silent)
    assert close == documented_close(4009, "no heartbeat")
    answered = [f["id"] for f in frames if f["op"] in ("reply", "error")]
    assert answered == ids[: len(answered)]  # in order, then cut off
    assert len(answered) < count, "every reply came: nothing queued was dropped"
    check = await raw_session(server.nodes[-1], token=account["token"])
    head = await check.ok("subscribe", {"channel": channel})
    assert head["offset"] == count  # yet every command was carried out
    await check.ws.close()


async def test_a_peer_that_never_reads_is_dropped_after_its_close(make_server) -> None:
    server = make_server(rate_limit=0, close_timeout_ms=500, outbox_limit=64 * 1024)
    node = server.nodes[0]  # both connections on one node: it ends with only the publisher's
    account = await new_user(node)
    dead = await raw_session(node, token=account["token"], **never_reading(node))
    channel = general_channel(dead.identity)
    await dead.ok("subscribe", {"channel": channel})
    publisher = await raw_session(node, token=account["token"])
    for i in range(1500):  # ~5 MB: the dead peer's buffers fill, its outbox overflows
        await publisher.send(
            {"op": "message.send", "id": i + 1, "d": {"channel": channel, "text": "x" * 3500}}
        )
    answered = 0
    while answered < 1500:
        answered += (await publisher.recv(wait=20))["op"] == "reply"
    # The dead peer never reads its close frame; the server drops it anyway.
    await eventually(lambda: node.metric("agora_connections") == 1, "the dead peer dropped")
    assert (await publisher.command("ping"))["op"] == "reply"
    assert node.metric("agora_closes_total", 'code="4010"') == 1
    await publisher.ws.close()
    dead.ws.transport.abort()
