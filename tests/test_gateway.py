"""The core contract of PROTOCOL.md over real sockets, in both encodings."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import time
from typing import Any

import msgpack
import pytest
from websockets.asyncio.client import connect

from protocol import Encoding, encode
from tests.agora_cli import storage
from tests.conftest import (
    AgoraProcess,
    RawSession,
    ServerLog,
    closed_with,
    documented_close,
    general_channel,
    new_user,
    raw_session,
    read_events,
    timeout,
)


async def identified(node: AgoraProcess, encoding: Encoding) -> tuple[RawSession, str]:
    """A new account's session on ``node`` (pick one of ``server.nodes``), and #general.

    Tests with two sessions put them on ``server.nodes[0]`` and ``server.nodes[-1]``:
    in the scaled deployment, what one sends then crosses to the other node.
    """
    account = await new_user(node)
    session = await raw_session(node, encoding, token=account["token"])
    return session, general_channel(session.identity)


async def test_hello_comes_first_with_its_fields(server: AgoraProcess, encoding: Encoding) -> None:
    session = await raw_session(server, encoding)
    assert session.hello["op"] == "hello"
    assert session.hello["d"]["protocol"] == 1
    assert session.hello["d"]["heartbeat_ms"] > 0
    assert session.hello["d"]["max_frame"] == 64 * 1024
    assert isinstance(session.hello["d"]["server"], str)
    # the server's clock, for countdowns: this machine's, within the time it took to connect
    assert abs(session.hello["d"]["ts"] - time.time() * 1000) < 60_000
    await session.ws.close()


async def test_identify_replies_user_session_and_communities(
    server: AgoraProcess, encoding: Encoding
) -> None:
    account = await new_user(server)
    session = await raw_session(server, encoding, token=account["token"])
    d = session.identity
    assert d["user"]["id"] == account["user"]["id"]
    assert isinstance(d["session"], str)
    community = d["communities"][0]
    assert community["role"] in ("owner", "member")
    assert {"id", "name", "kind"} <= set(community["channels"][0])
    assert "general" in [c["name"] for c in community["channels"]]
    await session.ws.close()


async def test_commands_before_identify_are_unauthorized(
    server: AgoraProcess, encoding: Encoding
) -> None:
    session = await raw_session(server, encoding)
    for op, d in [
        ("ping", {}),
        ("subscribe", {"channel": "x"}),
        ("message.send", {"channel": "x", "text": "hi"}),
    ]:
        frame = await session.command(op, d)
        assert frame["op"] == "error"
        assert frame["d"]["code"] == "unauthorized"
    await session.ws.close()


async def test_identify_twice_is_a_conflict(server: AgoraProcess, encoding: Encoding) -> None:
    account = await new_user(server)
    session = await raw_session(server, encoding, token=account["token"])
    frame = await session.command("identify", {"token": account["token"]})
    assert frame["d"]["code"] == "conflict"
    await session.ws.close()


async def test_bad_token_gets_an_error_then_close_4001(
    server: AgoraProcess, encoding: Encoding
) -> None:
    session = await raw_session(server, encoding)
    frame = await session.command("identify", {"token": "123.not-the-secret"})
    assert frame["d"] == {"code": "unauthorized", "message": "bad token"}
    assert await closed_with(session.ws) == documented_close(4001, "bad token")


async def test_identify_deadline_closes_with_4001(make_server) -> None:
    server = make_server(identify_timeout_ms=300)
    session = await raw_session(server)
    assert await closed_with(session.ws, wait=3) == documented_close(4001, "not identified in time")


async def test_silent_session_is_closed_with_4009(make_server) -> None:
    server = make_server(heartbeat_ms=300)
    account = await new_user(server)
    session = await raw_session(server, token=account["token"])
    assert session.hello["d"]["heartbeat_ms"] == 300
    assert await closed_with(session.ws, wait=3) == documented_close(4009, "no heartbeat")


async def test_pings_keep_a_session_alive(make_server) -> None:
    heartbeat_ms = round(timeout(0.6) * 1000)
    server = make_server(heartbeat_ms=heartbeat_ms, rate_limit=0)
    account = await new_user(server)
    session = await raw_session(server, token=account["token"])
    window = 1.5 * heartbeat_ms / 1000  # silence this long closes the session (4009)
    loop = asyncio.get_running_loop()
    until = loop.time() + 3 * window
    while loop.time() < until:  # pings, a sixth of a window apart, for three windows
        assert (await session.command("ping"))["op"] == "reply"
        await asyncio.sleep(window / 6)
    assert session.ws.close_code is None
    await session.ws.close()


async def test_silent_session_is_closed_with_4009_no_sooner_than_its_window(make_server) -> None:
    heartbeat_ms = 300
    server = make_server(heartbeat_ms=heartbeat_ms, rate_limit=0)
    account = await new_user(server)
    session = await raw_session(server, token=account["token"])
    loop = asyncio.get_running_loop()
    last_sent = loop.time()  # the server sees the ping after this
    assert (await session.command("ping"))["op"] == "reply"
    # The shared sweep acts within a tick after the window (docs §3); the wait is generous.
    assert await closed_with(session.ws, wait=3) == documented_close(4009, "no heartbeat")
    # Never early: the server's clock counts in whole milliseconds, hence the 5 ms.
    assert loop.time() - last_sent >= 1.5 * heartbeat_ms / 1000 - 0.005


async def test_the_heartbeat_sweep_closes_the_silent_session_and_not_the_pinging_one(
    make_server,
) -> None:
    heartbeat_ms = round(timeout(0.6) * 1000)
    server = make_server(heartbeat_ms=heartbeat_ms, rate_limit=0)
    pinging = await raw_session(server, token=(await new_user(server))["token"])
    silent = await raw_session(server, token=(await new_user(server))["token"])
    window = 1.5 * heartbeat_ms / 1000

    async def keep_pinging() -> None:
        while True:
            assert (await pinging.command("ping"))["op"] == "reply"
            await asyncio.sleep(window / 6)

    pinger = asyncio.create_task(keep_pinging())
    try:
        assert await closed_with(silent.ws, wait=3 * window + 3) == documented_close(
            4009, "no heartbeat"
        )
        assert not pinger.done()
    finally:
        pinger.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pinger
    assert (await pinging.command("ping"))["op"] == "reply"
    await pinging.ws.close()


async def test_an_identified_session_outlives_the_identify_deadline(make_server) -> None:
    server = make_server(identify_timeout_ms=300)
    account = await new_user(server)
    identified_first = await raw_session(server, token=account["token"])
    late = await raw_session(server)  # its deadline comes after the first one's
    assert await closed_with(late.ws, wait=3) == documented_close(4001, "not identified in time")
    assert (await identified_first.command("ping"))["op"] == "reply"
    await identified_first.ws.close()


VERSION_REFUSED = documented_close(4002, "unsupported protocol version '2'")
ENCODING_REFUSED = documented_close(4002, "unsupported encoding; use msgpack or json")


def version_refused(value: str) -> tuple[int, str]:
    """§9's reason for ``v=2``, for another value (shown up to 16 characters)."""
    code, reason = VERSION_REFUSED
    return code, reason.replace(repr("2"), repr(value[:16]))


@pytest.mark.parametrize(
    ("query", "close"),
    [
        ("v=2&encoding=msgpack", VERSION_REFUSED),
        ("v=01", version_refused("01")),
        ("v=", version_refused("")),
        ("v=12345678901234567890", version_refused("1234567890123456")),
        ("v=x&encoding=xml", version_refused("x")),  # the version is checked first
        ("v=1&encoding=xml", ENCODING_REFUSED),
        ("encoding=cbor", ENCODING_REFUSED),
        ("encoding=JSON", ENCODING_REFUSED),
    ],
)
async def test_unsupported_version_or_encoding_closes_with_4002(
    server: AgoraProcess, query: str, close: tuple[int, str]
) -> None:
    ws = await connect(f"{server.ws}/gateway?{query}")
    read: list[Any] = []
    assert await closed_with(ws, read=read) == close
    assert read == []  # before hello


async def test_defaults_are_v1_msgpack(server: AgoraProcess) -> None:
    session = await raw_session(server, query="")
    assert session.hello["d"]["protocol"] == 1
    await session.ws.close()


async def test_frame_over_the_limit_closes_with_1009(make_server) -> None:
    server = make_server(max_frame=1024)
    account = await new_user(server)
    session = await raw_session(server, token=account["token"])
    channel = general_channel(session.identity)
    ok = await session.command("message.send", {"channel": channel, "text": "x" * 500})
    assert ok["op"] == "reply"
    await session.send(
        {"op": "message.send", "id": 99, "d": {"channel": channel, "text": "x" * 2000}}
    )
    assert await session.close_code() == 1009


async def test_a_text_message_that_is_not_utf8_closes_with_1007(
    server: AgoraProcess, encoding: Encoding
) -> None:
    session, _ = await identified(server, encoding)
    await session.ws.send(b'{"op": "ping", "id": 1, "d": {"x": "\xff"}}', text=True)
    code, _ = await closed_with(session.ws)  # the reason is the WebSocket layer's
    assert code == 1007


async def test_message_of_the_wrong_kind_is_bad_frame_and_session_stays(
    server: AgoraProcess, encoding: Encoding
) -> None:
    session, _ = await identified(server, encoding)
    wrong = "{}" if encoding is Encoding.MSGPACK else b"\x80"
    await session.ws.send(wrong)
    frame = await session.recv()
    assert frame["op"] == "error" and frame["d"]["code"] == "bad_frame"
    assert "id" not in frame
    assert (await session.command("ping"))["op"] == "reply"
    await session.ws.close()


@pytest.mark.parametrize("payload", ["garbage", "[1, 2]", "12"])
async def test_undecodable_or_non_map_frames_are_bad_frame(
    server: AgoraProcess, encoding: Encoding, payload: str
) -> None:
    session, _ = await identified(server, encoding)
    if encoding is Encoding.MSGPACK:
        data = {"garbage": b"\xc1\xff", "[1, 2]": msgpack.packb([1, 2]), "12": msgpack.packb(12)}[
            payload
        ]
    else:
        data = payload
    await session.ws.send(data)
    frame = await session.recv()
    assert frame["d"]["code"] == "bad_frame"
    assert (await session.command("ping"))["op"] == "reply"
    await session.ws.close()


@pytest.mark.parametrize("number", ["1e999", "-1e999", "NaN", "Infinity"])
async def test_json_numbers_that_are_not_finite_are_bad_frame(
    server: AgoraProcess, number: str
) -> None:
    session, _ = await identified(server, Encoding.JSON)
    await session.ws.send(f'{{"op": "ping", "id": 9, "d": {{}}, "x": {number}}}')
    answer = await session.recv()
    assert answer["op"] == "error" and answer["d"]["code"] == "bad_frame"
    assert "id" not in answer
    assert (await session.command("ping"))["op"] == "reply"
    await session.ws.close()


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        ({"op": "no.such.op", "id": 5, "d": {}}, "no.such.op"),
        ({"op": "message.send", "id": 5, "d": {"channel": "c"}}, "'text'"),
        ({"op": "message.send", "id": 5, "d": {"channel": 7, "text": "x"}}, "'channel'"),
        ({"op": "history", "id": 5, "d": {"channel": "c", "limit": 101}}, "'limit'"),
        ({"op": "subscribe", "id": 5, "d": {"channel": "c", "since": "x"}}, "'since'"),
        ({"op": "ping", "id": 5, "d": []}, "'d'"),
    ],
)
async def test_bad_requests_name_the_field_and_echo_the_id(
    server: AgoraProcess, encoding: Encoding, frame: dict, field: str
) -> None:
    session, _ = await identified(server, encoding)
    await session.send(frame)
    answer = await session.recv()
    assert answer["op"] == "error"
    assert answer["id"] == 5
    assert answer["d"]["code"] == "bad_request"
    assert field in answer["d"]["message"]
    await session.ws.close()


async def test_unknown_op_with_a_lone_surrogate_is_bad_request_and_session_stays(
    server: AgoraProcess,
) -> None:
    session, _ = await identified(server, Encoding.JSON)
    log = ServerLog(server)
    await session.ws.send('{"op":"\\ud800","id":3}')  # an escape JSON allows, UTF-8 cannot carry
    answer = await session.recv()
    assert answer == {
        "op": "error",
        "id": 3,
        "d": {"code": "bad_request", "message": "unknown op '\\ud800'"},
    }
    assert (await session.command("ping"))["op"] == "reply"
    log.assert_no_traceback()
    await session.ws.close()


#: A msgpack extension value in every form: fixext 1/2/4/8/16, ext 8/16/32 with and
#: without data, and a timestamp (type -1).
EXTENSIONS = [
    b"\xd4\x05x",
    b"\xd5\x05xx",
    b"\xd6\x05xxxx",
    b"\xd7\x05" + b"x" * 8,
    b"\xd8\x05" + b"x" * 16,
    b"\xc7\x00\x05",
    b"\xc7\x03\x05xxx",
    b"\xc8\x00\x00\x05",
    b"\xc8\x00\x03\x05xxx",
    b"\xc9\x00\x00\x00\x00\x05",
    b"\xc9\x00\x00\x00\x03\x05xxx",
    b"\xd6\xff\x00\x00\x00\x01",
]


async def test_msgpack_extension_values_of_any_length_are_bad_frame(server: AgoraProcess) -> None:
    session, _ = await identified(server, Encoding.MSGPACK)
    log = ServerLog(server)
    for value in EXTENSIONS:
        # {"op": "ping", "id": 7, "x": <extension>}: a ping but for the extension value
        await session.ws.send(b"\x83\xa2op\xa4ping\xa2id\x07\xa1x" + value)
        answer = await session.recv()
        assert answer["op"] == "error", value
        assert answer["d"]["code"] == "bad_frame", value
        assert "id" not in answer
    assert (await session.command("ping"))["op"] == "reply"
    log.assert_no_traceback()
    await session.ws.close()


async def test_frame_without_usable_id_gets_error_without_id(
    server: AgoraProcess, encoding: Encoding
) -> None:
    session, _ = await identified(server, encoding)
    await session.send({"op": "ping", "id": "seven"})
    answer = await session.recv()
    assert answer["d"]["code"] == "bad_request" and "id" not in answer
    await session.ws.close()


async def test_too_long_text_is_too_large(server: AgoraProcess, encoding: Encoding) -> None:
    session, channel = await identified(server, encoding)
    frame = await session.command("message.send", {"channel": channel, "text": "x" * 4001})
    assert frame["d"]["code"] == "too_large"
    await session.ws.close()


async def test_unknown_channel_is_not_found(server: AgoraProcess, encoding: Encoding) -> None:
    session, _ = await identified(server, encoding)
    for op, d in [
        ("subscribe", {"channel": "nope"}),
        ("history", {"channel": "nope"}),
        ("message.send", {"channel": "nope", "text": "hi"}),
    ]:
        frame = await session.command(op, d)
        assert frame["d"]["code"] == "not_found", (op, frame)
    await session.ws.close()


async def test_commands_are_answered_in_order(server: AgoraProcess, encoding: Encoding) -> None:
    session, channel = await identified(server, encoding)
    ops = []
    for i in range(1, 41):
        op = ["ping", "history", "message.send", "no.such"][i % 4]
        d = {
            "ping": {},
            "history": {"channel": channel, "limit": 1},
            "message.send": {"channel": channel, "text": f"m{i}"},
            "no.such": {},
        }[op]
        await session.send({"op": op, "id": 1000 + i, "d": d})
        ops.append(1000 + i)
    answered = []
    while len(answered) < len(ops):
        frame = await session.recv()
        if frame["op"] in ("reply", "error"):
            answered.append(frame["id"])
    assert answered == ops
    await session.ws.close()


async def test_message_reaches_every_subscriber_and_the_sender(
    server: AgoraProcess, encoding: Encoding
) -> None:
    alice, channel = await identified(server.nodes[0], encoding)
    bob, _ = await identified(
        server.nodes[-1], Encoding.JSON if encoding is Encoding.MSGPACK else Encoding.MSGPACK
    )
    await alice.ok("subscribe", {"channel": channel})
    await bob.ok("subscribe", {"channel": channel})
    reply = await alice.ok("message.send", {"channel": channel, "text": "hello, cohort"})
    message = reply["message"]
    assert message["text"] == "hello, cohort"
    assert message["channel"] == channel
    assert message["author"]["id"] == alice.identity["user"]["id"]
    assert isinstance(message["author"]["name"], str)
    assert isinstance(message["ts"], int) and isinstance(message["id"], str)
    for session in (alice, bob):
        frames = [*session.early]
        session.early.clear()
        while not any(f["op"] == "event" for f in frames):
            frames.append(await session.recv())
        event = next(f for f in frames if f["op"] == "event")
        assert event["t"] == "message.created"
        assert event["ch"] == channel
        assert isinstance(event["o"], int) and event["o"] >= 1
        assert event["d"]["message"] == message
    await alice.ws.close()
    await bob.ws.close()


async def test_unsubscribe_stops_events(server: AgoraProcess, encoding: Encoding) -> None:
    alice, channel = await identified(server.nodes[-1], encoding)
    bob, _ = await identified(server.nodes[0], encoding)
    # still subscribed, on bob's node: it sees every event bob would have seen
    witness, _ = await identified(server.nodes[0], encoding)
    await witness.ok("subscribe", {"channel": channel})
    await bob.ok("subscribe", {"channel": channel})
    await bob.ok("unsubscribe", {"channel": channel})
    sent = (await alice.ok("message.send", {"channel": channel, "text": "are you there?"}))[
        "message"
    ]
    async with asyncio.timeout(timeout(10)):
        while (await read_events(witness, 1, t="message.created"))[0]["d"]["message"] != sent:
            pass
    # A node hands an event to all its subscribers at once: had bob still been one, the
    # event would be queued for him ahead of the answer to the command he sends now.
    await bob.ok("ping")
    assert not [f for f in bob.early if f["op"] == "event"]
    for session in (alice, bob, witness):
        await session.ws.close()


async def test_raw_ping_frame_with_extra_keys_is_fine(server: AgoraProcess) -> None:
    session, _ = await identified(server, Encoding.MSGPACK)
    await session.ws.send(encode({"op": "ping", "id": 3, "d": {}, "future": [1]}, Encoding.MSGPACK))
    assert (await session.recv())["op"] == "reply"
    await session.ws.close()


def corrupt_first_event(server: Any, channel: str) -> None:
    """Overwrite the first event of ``channel`` with bytes that are not msgpack, in the
    running deployment's own storage (as a failing disk or a bad restore would)."""
    kind, where = storage(server)
    if kind == "--db":
        with contextlib.closing(sqlite3.connect(where)) as db, db:
            db.execute(
                "UPDATE events SET frame = ? WHERE channel_id = ? AND o = 1", (b"\xc1", channel)
            )
    elif kind == "--database":
        statement = f"UPDATE events SET frame = '\\xc1' WHERE channel_id = '{channel}' AND o = 1"
        subprocess.run(["psql", "-X", "-q", "-d", where, "-c", statement], check=True)
    else:
        raise NotImplementedError(f"corrupting a {kind} store")


async def test_a_command_the_server_fails_on_is_answered_internal(make_server) -> None:
    server = make_server()
    node = server.nodes[0]
    account = await new_user(node)
    session = await raw_session(node, token=account["token"])
    channel = general_channel(session.identity)  # its first event: this account's join
    corrupt_first_event(server, channel)
    before = node.metric("agora_errors_total", 'code="internal"')
    answer = await session.command("history", {"channel": channel})
    assert answer == {
        "op": "error",
        "id": answer["id"],
        "d": {"code": "internal", "message": "the server failed to handle this command"},
    }
    assert node.metric("agora_errors_total", 'code="internal"') == before + 1
    assert (await session.command("ping"))["op"] == "reply"  # the session stays open
    await session.ws.close()


async def test_commands_while_the_store_is_unreachable_are_answered_unavailable(
    make_server,
) -> None:
    server = make_server(rate_limit=0)
    if len(server.nodes) == 1:  # (pytest imports conftest apart: isinstance would not do)
        pytest.skip("the embedded store is a file the server holds open: it cannot be unreachable")
    node = server.nodes[0]
    account = await new_user(node)
    session = await raw_session(node, token=account["token"])
    channel = general_channel(session.identity)
    d = {"channel": channel, "text": "through the outage", "nonce": "outage-1"}
    server.redis.kill()
    answer = await session.command("message.send", d)
    assert answer == {
        "op": "error",
        "id": answer["id"],
        "d": {
            "code": "unavailable",
            "message": "the server's storage is unavailable; retry shortly",
            "retry_after_ms": 1000,
        },
    }
    server.redis.start()
    # the session stays open: retried after retry_after_ms, with the same nonce, it goes
    # through once the node has reconnected, and is stored once
    async with asyncio.timeout(timeout(20)):
        while answer["op"] == "error":
            assert answer["d"]["code"] == "unavailable", answer
            await asyncio.sleep(answer["d"]["retry_after_ms"] / 1000)
            answer = await session.command("message.send", d)
    history = await session.ok("history", {"channel": channel})
    texts = [e["d"]["message"]["text"] for e in history["events"] if e["t"] == "message.created"]
    assert texts == ["through the outage"]
    await session.ws.close()
