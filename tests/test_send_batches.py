"""Sends that arrive together: a run of ``message.send`` carried out as one batch.

The commands go out in one socket write, so the server reads them together. Each
is still checked, rate-limited and answered on its own, in the order it was sent;
the stored messages keep that order, and a subscriber hears them in it.
"""

from __future__ import annotations

from typing import Any

from protocol import Encoding, encode
from tests.agora_cli import ok, storage
from tests.conftest import RawSession as Session
from tests.conftest import new_user, raw_session, read_events


async def written_together(session: Session, frames: list[dict[str, Any]]) -> list[int]:
    """Send ``frames`` in one write to the socket; their ids."""
    protocol = session.ws.protocol
    for frame in frames:
        data = encode(frame, session.encoding)
        if isinstance(data, str):
            protocol.send_text(data.encode())
        else:
            protocol.send_binary(data)
    session.ws.transport.write(b"".join(protocol.data_to_send()))
    return [frame["id"] for frame in frames if isinstance(frame.get("id"), int)]


async def answers(session: Session, count: int) -> list[dict[str, Any]]:
    """The next ``count`` replies and errors, in the order they came."""
    got: list[dict[str, Any]] = []
    while len(got) < count:
        frame = await session.recv(10)
        if frame["op"] in ("reply", "error"):
            got.append(frame)
        else:
            session.early.append(frame)
    return got


async def stored_texts(session: Session, channel: str) -> list[str]:
    history = await session.ok("history", {"channel": channel, "limit": 50})
    return [e["d"]["message"]["text"] for e in history["events"] if e["t"] == "message.created"]


def send(command_id: int, channel: str, text: str, **more: Any) -> dict[str, Any]:
    return {"op": "message.send", "id": command_id, "d": {"channel": channel, "text": text, **more}}


async def scratch_channel(server: Any) -> tuple[str, str]:
    """A token and an empty channel of its own (offsets from 1)."""
    account = await new_user(server)
    ((channel, _),) = ok("channel", "create", "Agora", "scratch", *storage(server))
    return account["token"], channel


async def test_sends_that_arrive_together_are_stored_answered_and_delivered_in_order(
    make_server, encoding: Encoding
) -> None:
    server = make_server(rate_limit=0)
    token, channel = await scratch_channel(server)
    listener = await raw_session(server.nodes[0], token=token)
    await listener.ok("subscribe", {"channel": channel})
    sender = await raw_session(server.nodes[-1], encoding, token=token)
    batched_before = server.metric("agora_batched_commands_total")
    texts = [f"m{i}" for i in range(20)]
    ids = await written_together(
        sender, [send(100 + i, channel, text) for i, text in enumerate(texts)]
    )
    replies = await answers(sender, len(ids))
    assert [r["id"] for r in replies] == ids
    assert [r["op"] for r in replies] == ["reply"] * 20
    assert [r["d"]["message"]["text"] for r in replies] == texts
    heard = await read_events(listener, 20, t="message.created")
    assert [e["d"]["message"]["text"] for e in heard] == texts
    assert [e["o"] for e in heard] == list(range(1, 21))
    assert [e["d"]["message"]["id"] for e in heard] == [r["d"]["message"]["id"] for r in replies]
    assert await stored_texts(listener, channel) == texts
    # They were carried out in batches, not one by one.
    assert server.metric("agora_batched_commands_total") - batched_before >= 2


async def test_each_command_of_a_run_is_answered_in_its_place(make_server) -> None:
    server = make_server(rate_limit=0)
    token, channel = await scratch_channel(server)
    sender = await raw_session(server, token=token)
    frames = [
        send(1, channel, "first", nonce="n1"),
        send(2, "000000000000000000", "nowhere"),  # not_found
        {"op": "message.send", "id": 3, "d": {"channel": channel}},  # no text: bad_request
        {"op": "ping", "id": 4, "d": {}},
        send(5, channel, "second"),
        send(6, channel, "first again", nonce="n1"),  # the same nonce: the first message
        send(7, channel, "third"),
    ]
    ids = await written_together(sender, frames)
    got = await answers(sender, len(ids))
    assert [a["id"] for a in got] == ids
    assert [a["op"] for a in got] == ["reply", "error", "error", "reply", "reply", "reply", "reply"]
    assert got[1]["d"]["code"] == "not_found"
    assert got[2]["d"]["code"] == "bad_request"
    assert got[5]["d"]["message"] == got[0]["d"]["message"]
    assert await stored_texts(sender, channel) == ["first", "second", "third"]


async def test_rate_limited_sends_in_a_run_are_refused_in_their_place(make_server) -> None:
    server = make_server(rate_limit=1, rate_burst=6)
    token, channel = await scratch_channel(server)
    sender = await raw_session(server, token=token)  # identify took one of the six
    ids = await written_together(sender, [send(10 + i, channel, f"m{i}") for i in range(8)])
    got = await answers(sender, len(ids))
    assert [a["id"] for a in got] == ids
    codes = [a["d"]["code"] if a["op"] == "error" else "ok" for a in got]
    assert codes == ["ok"] * 5 + ["rate_limited"] * 3
    reader = await raw_session(server, token=token)
    assert await stored_texts(reader, channel) == [f"m{i}" for i in range(5)]


async def test_a_run_to_two_channels_keeps_each_channels_order(make_server) -> None:
    server = make_server(rate_limit=0)
    token, first = await scratch_channel(server)
    ((second, _),) = ok("channel", "create", "Agora", "scratch-2", *storage(server))
    listener = await raw_session(server.nodes[0], token=token)
    for channel in (first, second):
        await listener.ok("subscribe", {"channel": channel})
    sender = await raw_session(server.nodes[-1], token=token)
    frames = [send(30 + i, (first, second)[i % 2], f"m{i}") for i in range(12)]
    ids = await written_together(sender, frames)
    got = await answers(sender, len(ids))
    assert [a["id"] for a in got] == ids
    assert [a["op"] for a in got] == ["reply"] * 12
    heard = await read_events(listener, 12, t="message.created")
    for at, channel in enumerate((first, second)):
        texts = [e["d"]["message"]["text"] for e in heard if e["ch"] == channel]
        assert texts == [f"m{i}" for i in range(at, 12, 2)]
        assert [e["o"] for e in heard if e["ch"] == channel] == list(range(1, 7))
