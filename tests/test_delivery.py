"""Durable delivery: offsets, replay with since, recovery, history, idempotent sends."""

from __future__ import annotations

import asyncio

from protocol import Encoding
from tests.agora_cli import ok, storage
from tests.conftest import (
    BIG_TEXT,
    AgoraProcess,
    eventually,
    general_channel,
    kernel_buffering,
    never_reading,
    new_user,
    raw_session,
    read_events,
)


async def fresh_channel_server(make_server, **settings) -> tuple[AgoraProcess, str, str]:
    """A server of its own, an empty channel on it (offsets start at 1), and a token.

    Not general: the account's ``member.joined`` is there already. The tests send
    through ``server.nodes[-1]`` and subscribe on ``server.nodes[0]``: in the scaled
    deployment, every event they read has crossed between nodes.
    """
    server = make_server(rate_limit=0, **settings)
    account = await new_user(server)
    ((channel, _),) = ok("channel", "create", "Agora", "scratch", *storage(server))
    return server, channel, account["token"]


async def send_many(server: AgoraProcess, token: str, channel: str, texts: list[str]) -> list[int]:
    session = await raw_session(server, token=token)
    offsets = []
    for text in texts:
        await session.ok("message.send", {"channel": channel, "text": text})
    events = [f for f in session.early if f["op"] == "event"]
    offsets = [f["o"] for f in events]
    await session.ws.close()
    return offsets


async def test_offsets_are_gapless_from_one(make_server) -> None:
    server, channel, token = await fresh_channel_server(make_server)
    sub = await raw_session(server.nodes[0], token=token)
    assert (await sub.ok("subscribe", {"channel": channel}))["offset"] == 0
    await send_many(server.nodes[-1], token, channel, [f"m{i}" for i in range(25)])
    events = await read_events(sub, 25)
    assert [e["o"] for e in events] == list(range(1, 26))
    await sub.ws.close()


async def test_subscribe_since_replays_missed_events_then_replies(
    make_server, encoding: Encoding
) -> None:
    server, channel, token = await fresh_channel_server(make_server)
    await send_many(server.nodes[-1], token, channel, [f"m{i}" for i in range(1, 11)])
    sub = await raw_session(server.nodes[0], encoding, token=token)
    reply = await sub.command("subscribe", {"channel": channel, "since": 4})
    replayed = [f for f in sub.early if f["op"] == "event"]
    assert [e["o"] for e in replayed] == [5, 6, 7, 8, 9, 10]
    assert [e["d"]["message"]["text"] for e in replayed] == [f"m{i}" for i in range(5, 11)]
    assert reply["d"]["recovered"] is True
    assert reply["d"]["offset"] == 10
    assert isinstance(reply["d"]["epoch"], str)
    await sub.ws.close()


async def test_subscribe_without_since_replays_nothing(make_server) -> None:
    server, channel, token = await fresh_channel_server(make_server)
    await send_many(server.nodes[-1], token, channel, ["a", "b", "c"])
    sub = await raw_session(server.nodes[0], token=token)
    reply = await sub.ok("subscribe", {"channel": channel})
    assert reply == {"offset": 3, "epoch": reply["epoch"], "recovered": False}
    assert not [f for f in sub.early if f["op"] == "event"]
    await send_many(server.nodes[-1], token, channel, ["d"])
    (live,) = await read_events(sub, 1)
    assert live["o"] == 4
    await sub.ws.close()


async def test_more_missed_than_the_cap_replays_none(make_server) -> None:
    server, channel, token = await fresh_channel_server(make_server, replay_cap=5)
    await send_many(server.nodes[-1], token, channel, [f"m{i}" for i in range(12)])
    sub = await raw_session(server.nodes[0], token=token)
    reply = await sub.ok("subscribe", {"channel": channel, "since": 6})  # 6 missed > 5
    assert reply["recovered"] is False and reply["offset"] == 12
    assert not [f for f in sub.early if f["op"] == "event"]
    within = await sub.ok("subscribe", {"channel": channel, "since": 7})  # 5 missed
    assert within["recovered"] is True
    assert [f["o"] for f in sub.early if f["op"] == "event"] == [8, 9, 10, 11, 12]
    await sub.ws.close()


async def test_a_stale_epoch_is_not_recovered(make_server) -> None:
    server, channel, token = await fresh_channel_server(make_server)
    await send_many(server.nodes[-1], token, channel, ["a", "b"])
    sub = await raw_session(server.nodes[0], token=token)
    reply = await sub.ok("subscribe", {"channel": channel, "since": 1, "epoch": "not-this-log"})
    assert reply["recovered"] is False
    assert not [f for f in sub.early if f["op"] == "event"]
    right = await sub.ok("subscribe", {"channel": channel, "since": 1, "epoch": reply["epoch"]})
    assert right["recovered"] is True
    await sub.ws.close()


async def test_since_beyond_the_log_is_not_recovered(make_server) -> None:
    server, channel, token = await fresh_channel_server(make_server)
    sub = await raw_session(server.nodes[0], token=token)
    reply = await sub.ok("subscribe", {"channel": channel, "since": 50})
    assert reply["recovered"] is False and reply["offset"] == 0
    await sub.ws.close()


async def test_replay_joins_live_sends_with_no_gap_and_no_duplicate(
    make_server, encoding: Encoding
) -> None:
    server, channel, token = await fresh_channel_server(make_server)
    await send_many(server.nodes[-1], token, channel, [f"before{i}" for i in range(50)])
    sending = asyncio.Event()
    total = 300

    async def publisher() -> None:
        session = await raw_session(server.nodes[-1], token=token)
        for i in range(total):
            await session.send(
                {"op": "message.send", "id": i + 1, "d": {"channel": channel, "text": f"live{i}"}}
            )
            if i == 20:
                sending.set()
            if i % 10 == 0:
                await asyncio.sleep(0)
        answered = 0
        while answered < total:
            frame = await session.recv()
            answered += frame["op"] == "reply"
        await session.ws.close()

    task = asyncio.create_task(publisher())
    await sending.wait()
    subscribers = []
    for since in (0, 10, 30):  # subscribe repeatedly while the publisher is mid-flight
        sub = await raw_session(server.nodes[0], encoding, token=token)
        reply = await sub.ok("subscribe", {"channel": channel, "since": since})
        assert reply["recovered"] is True
        subscribers.append((sub, since))
        await asyncio.sleep(0.01)
    await task
    for sub, since in subscribers:
        events = await read_events(sub, 50 + total - since)
        assert [e["o"] for e in events] == list(range(since + 1, 50 + total + 1))
        await sub.ok("ping")
        assert not [f for f in sub.early if f["op"] == "event"], "an event came twice"
        await sub.ws.close()


async def test_history_pages_backwards_oldest_first(make_server, encoding: Encoding) -> None:
    server, channel, token = await fresh_channel_server(make_server)
    await send_many(server.nodes[-1], token, channel, [f"m{i}" for i in range(1, 131)])
    session = await raw_session(server.nodes[0], encoding, token=token)
    latest = (await session.ok("history", {"channel": channel}))["events"]
    assert [e["o"] for e in latest] == list(range(81, 131))  # default limit 50
    assert latest[0]["t"] == "message.created" and latest[0]["ch"] == channel
    page = await session.ok("history", {"channel": channel, "before": 81, "limit": 100})
    assert [e["o"] for e in page["events"]] == list(range(1, 81))
    tail = await session.ok("history", {"channel": channel, "before": 1})
    assert tail["events"] == []
    over = await session.command("history", {"channel": channel, "limit": 101})
    assert over["d"]["code"] == "bad_request"
    await session.ws.close()


async def test_a_nonce_makes_a_send_idempotent(server: AgoraProcess, encoding: Encoding) -> None:
    account = await new_user(server)
    other = await new_user(server)
    alice = await raw_session(server.nodes[0], encoding, token=account["token"])
    channel = general_channel(alice.identity)
    await alice.ok("subscribe", {"channel": channel})
    first = await alice.ok("message.send", {"channel": channel, "text": "once", "nonce": "n-1"})
    again = await alice.ok("message.send", {"channel": channel, "text": "once", "nonce": "n-1"})
    assert again["message"] == first["message"]
    assert first["message"]["nonce"] == "n-1"
    await alice.ok("ping")
    created = [f for f in alice.early if f["op"] == "event"]
    assert len(created) == 1, "the retry created a second event"
    bob = await raw_session(server.nodes[-1], encoding, token=other["token"])
    theirs = await bob.ok("message.send", {"channel": channel, "text": "mine", "nonce": "n-1"})
    assert theirs["message"]["id"] != first["message"]["id"]
    await alice.ws.close()
    await bob.ws.close()


async def test_subscribing_again_keeps_live_delivery(make_server) -> None:
    server, channel, token = await fresh_channel_server(make_server)
    sub = await raw_session(server.nodes[0], token=token)
    await sub.ok("subscribe", {"channel": channel})
    await sub.ok("subscribe", {"channel": channel})  # the only subscriber, again
    await send_many(server.nodes[-1], token, channel, ["one"])
    assert [e["o"] for e in await read_events(sub, 1)] == [1]
    await sub.send({"op": "unsubscribe", "id": 90, "d": {"channel": channel}})
    await sub.send({"op": "subscribe", "id": 91, "d": {"channel": channel}})
    await sub.ok("ping")
    await send_many(server.nodes[-1], token, channel, ["two"])
    assert [e["o"] for e in await read_events(sub, 1)] == [2]
    await sub.ws.close()


async def test_a_replay_larger_than_the_outbox_arrives_whole(make_server) -> None:
    limit = 64 * 1024
    server, channel, token = await fresh_channel_server(make_server, outbox_limit=limit)
    node = server.nodes[0]
    connect_args = never_reading(node)
    # more than the kernel holds for a client that does not read, and the outbox on top
    count = (kernel_buffering(connect_args) + limit) // len(BIG_TEXT.encode()) + 1
    texts = [f"{i:04d}{BIG_TEXT}" for i in range(count)]
    await send_many(server.nodes[-1], token, channel, texts)
    sub = await raw_session(node, token=token, **connect_args)
    await sub.send({"op": "subscribe", "id": 1, "d": {"channel": channel, "since": 0}})
    # It reads nothing yet: the replay fills the kernel's buffers, then the outbox past
    # half its limit, and waits for the client instead of overflowing (4010) while over a
    # quarter (its coalesced write may have left the kernel only part of that half).
    await eventually(
        lambda: node.metric("agora_outbox_bytes") > limit // 4,
        "the replay waiting on the outbox",
        wait=30,
    )
    reply = await sub.ok("ping")  # now it reads: the replay, the subscribe's reply, this one
    assert reply == {}
    (subscribed,) = [f for f in sub.early if f.get("id") == 1]
    assert subscribed["op"] == "reply" and subscribed["d"]["recovered"] is True
    replayed = [f for f in sub.early if f["op"] == "event"]
    assert [f["o"] for f in replayed] == list(range(1, count + 1))
    assert [f["d"]["message"]["text"] for f in replayed] == texts
    assert node.metric("agora_closes_total", 'code="4010"') == 0
    await sub.ws.close()


async def test_a_replay_goes_out_in_few_socket_writes_and_in_order(make_server) -> None:
    server, channel, token = await fresh_channel_server(make_server)
    count = 60
    await send_many(server.nodes[-1], token, channel, [f"m{i}" for i in range(count)])
    node = server.nodes[0]
    sub = await raw_session(node, token=token)
    writes = node.metric("agora_socket_writes_total")
    frames = node.metric("agora_frames_out_total")
    reply = await sub.ok("subscribe", {"channel": channel, "since": 0})
    assert reply["recovered"] is True
    # the replay's frames were pushed in one turn: they share a write; the reply has its own
    assert node.metric("agora_frames_out_total") - frames >= count + 1
    assert node.metric("agora_socket_writes_total") - writes <= count // 4
    events = [f for f in sub.early if f["op"] == "event"]
    assert [e["o"] for e in events] == list(range(1, count + 1))
    assert [e["d"]["message"]["text"] for e in events] == [f"m{i}" for i in range(count)]
    await sub.ws.close()
