"""Limits, refusals and failures: rate, flooding, slow consumers, origins, kill -9, SIGTERM."""

from __future__ import annotations

import asyncio
import signal

import pytest
import websockets
from websockets.asyncio.client import connect

from tests.agora_cli import ok, storage
from tests.conftest import (
    AgoraProcess,
    general_channel,
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
    assert await session.close_code() == 4008


async def test_slow_consumer_is_cut_at_4010_and_others_keep_receiving(make_server) -> None:
    server = make_server(rate_limit=0, outbox_limit=64 * 1024)
    account = await new_user(server)
    slow = await raw_session(server, token=account["token"], **never_reading(server))
    channel = general_channel(slow.identity)
    await slow.ok("subscribe", {"channel": channel})
    fast = await raw_session(server, token=account["token"])
    await fast.ok("subscribe", {"channel": channel})
    publisher = await raw_session(server, token=account["token"])
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
    async with asyncio.timeout(timeout(10)):
        while server.metric("agora_closes_total", 'code="4010"') != 1:
            await asyncio.sleep(0.1)
    assert await slow.close_code(wait=20) == 4010  # once it reads, it finds the close
    await fast.ws.close()
    await publisher.ws.close()


async def test_cross_site_origin_is_refused_with_1008(server: AgoraProcess) -> None:
    ws = await connect(f"{server.ws}/gateway", origin="https://evil.example")
    with pytest.raises(websockets.ConnectionClosed) as caught:
        await asyncio.wait_for(ws.recv(), timeout(5))  # not even hello is sent
    assert caught.value.rcvd.code == 1008


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


async def test_sigterm_answers_in_flight_commands_then_closes_1001(make_server) -> None:
    server = make_server(rate_limit=0).nodes[0]
    account = await new_user(server)
    sessions = [await raw_session(server, token=account["token"]) for _ in range(3)]
    channel = general_channel(sessions[0].identity)
    ids = list(range(1, 31))
    for i in ids:
        await sessions[0].send(
            {"op": "message.send", "id": i, "d": {"channel": channel, "text": f"m{i}"}}
        )
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    answered, code = [], None
    try:
        async with asyncio.timeout(timeout(10)):
            while True:
                frame = await sessions[0].recv()
                if frame["op"] in ("reply", "error"):
                    answered.append(frame["id"])
    except websockets.ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd else None
    assert code == 1001
    assert answered == ids[: len(answered)]  # in order, none skipped
    for other in sessions[1:]:
        assert await other.close_code() == 1001
    # uvicorn re-raises the signal once its graceful shutdown is done
    assert server.stop() in (0, -signal.SIGTERM)
    server.start()  # every acknowledged message was stored
    check = await raw_session(server, token=account["token"])
    stored = (await check.ok("history", {"channel": channel, "limit": 100}))["events"]
    assert len(stored) >= len(answered)
    await check.ws.close()


async def test_a_peer_that_never_reads_is_dropped_after_its_close(make_server) -> None:
    server = make_server(rate_limit=0, close_timeout_ms=500, outbox_limit=64 * 1024)
    account = await new_user(server)
    dead = await raw_session(server, token=account["token"], **never_reading(server))
    channel = general_channel(dead.identity)
    await dead.ok("subscribe", {"channel": channel})
    publisher = await raw_session(server, token=account["token"])
    for i in range(1500):  # ~5 MB: the dead peer's buffers fill, its outbox overflows
        await publisher.send(
            {"op": "message.send", "id": i + 1, "d": {"channel": channel, "text": "x" * 3500}}
        )
    answered = 0
    while answered < 1500:
        answered += (await publisher.recv(wait=20))["op"] == "reply"
    # The dead peer never reads its close frame; the server drops it anyway.
    async with asyncio.timeout(timeout(10)):
        while server.metric("agora_connections") != 1:
            assert (await publisher.command("ping"))["op"] == "reply"
            await asyncio.sleep(0.1)
    assert server.metric("agora_closes_total", 'code="4010"') == 1
    await publisher.ws.close()
    dead.ws.transport.abort()
