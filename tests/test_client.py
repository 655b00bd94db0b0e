"""The Python client against real servers: commands, events, heartbeats, reconnect and resume."""

from __future__ import annotations

import asyncio

import pytest

from clients import Client, CommandError, ConnectionClosed, Event, Gap
from tests.conftest import UNSOLICITED, AgoraProcess, eventually, new_user, timeout


async def channel_event(client: Client, seconds: float = 10) -> Event | Gap:
    """The next channel event or gap, passing over community and user events."""
    while True:
        event = await client.next_event(seconds)
        if isinstance(event, Gap) or event.o is not None or event.t not in UNSOLICITED:
            return event


async def texts(client: Client, count: int) -> list[str]:
    out = []
    while len(out) < count:
        event = await channel_event(client, timeout(10))
        assert isinstance(event, Event), event
        out.append(event.d["message"]["text"])
    return out


async def test_commands_return_replies_and_raise_typed_errors(client: Client) -> None:
    general = client.channel_named("general")
    await client.subscribe(general)
    message = await client.send_message(general, "hi")
    assert message["text"] == "hi" and message["nonce"]
    event = await channel_event(client)
    assert isinstance(event, Event) and event.d["message"] == message
    assert client.offsets[general] == event.o
    with pytest.raises(CommandError) as caught:
        await client.request("history", {"channel": "nope"})
    assert caught.value.code == "not_found"


async def test_a_bad_token_fails_to_connect_with_4001(server: AgoraProcess) -> None:
    with pytest.raises(ConnectionClosed) as caught:
        await Client(server.ws, "1.wrong").connect()
    assert caught.value.code == 4001


async def test_heartbeats_keep_the_connection(make_server) -> None:
    heartbeat_ms = round(timeout(0.3) * 1000)
    node = make_server(heartbeat_ms=heartbeat_ms).nodes[0]
    account = await new_user(node)
    async with Client(node.ws, account["token"]) as client:
        # The client pings every 0.8 heartbeat on its own; the server would close a
        # session silent for 1.5. Six pings span more than three such windows.
        pings = node.metric("agora_frames_in_total") + 6
        await eventually(
            lambda: node.metric("agora_frames_in_total") >= pings, "six pings", wait=10
        )
        assert client.connections == 1
        assert node.metric("agora_closes_total", 'code="4009"') == 0
        assert await client.request("ping") == {}


async def test_resumes_after_kill_9_with_every_event_once_in_order(make_server) -> None:
    server = make_server(rate_limit=0)
    first, last = server.nodes[0], server.nodes[-1]  # the reader's node, the writers'
    account = await new_user(server)
    async with Client(first.ws, account["token"]) as reader:
        general = reader.channel_named("general")
        await reader.subscribe(general)
        async with Client(last.ws, account["token"], reconnect=False) as writer:
            for i in range(5):
                await writer.send_message(general, f"before {i}")
        assert await texts(reader, 5) == [f"before {i}" for i in range(5)]
        server.kill()
        server.start()
        async with Client(last.ws, account["token"], reconnect=False) as writer:
            for i in range(5):
                await writer.send_message(general, f"while away {i}")
        got = await texts(reader, 5)
        assert got == [f"while away {i}" for i in range(5)]
        async with Client(last.ws, account["token"], reconnect=False) as writer:
            await writer.send_message(general, "after")
        assert await texts(reader, 1) == ["after"]
        assert reader.connections == 2


async def test_too_many_missed_events_yield_a_gap(make_server) -> None:
    server = make_server(rate_limit=0, replay_cap=5)
    account = await new_user(server)
    async with Client(server.nodes[0].ws, account["token"]) as reader:
        general = reader.channel_named("general")
        await reader.subscribe(general)
        server.kill()
        server.start()
        async with Client(server.nodes[-1].ws, account["token"], reconnect=False) as writer:
            for i in range(8):
                await writer.send_message(general, f"m{i}")
            # the reader reconnects on its own; this one goes live after the gap
            await eventually(lambda: reader.connections == 2, "the reader reconnected")
            await writer.send_message(general, "live")
        gap = await channel_event(reader)
        # offset 1 is the account's member.joined, seen before the kill
        assert gap == Gap(general, 1, 9)
        assert await texts(reader, 1) == ["live"]
        missed = await reader.history(general, before=gap.until + 1, limit=gap.until - gap.after)
        assert [e.o for e in missed] == list(range(2, 10))


async def test_a_send_retried_across_a_reconnect_is_stored_once(make_server) -> None:
    server = make_server(rate_limit=0)
    account = await new_user(server)
    async with Client(server.ws, account["token"]) as client:
        general = client.channel_named("general")
        first = await client.send_message(general, "only once", nonce="retry-me")
        server.kill()
        server.start()
        again = await client.send_message(general, "only once", nonce="retry-me")
        assert again == first
        history = await client.history(general)
        messages = [e for e in history if e.t == "message.created"]
        assert [e.d["message"]["id"] for e in messages] == [first["id"]]


async def test_json_encoding_works_the_same(server: AgoraProcess) -> None:
    account = await new_user(server)
    async with Client(server.ws, account["token"], encoding="json") as client:
        general = client.channel_named("general")
        await client.subscribe(general)
        sent = await client.send_message(general, "über 😀")
        event = await channel_event(client)
        assert isinstance(event, Event) and event.d["message"] == sent


async def test_close_ends_events_and_fails_later_requests(server: AgoraProcess) -> None:
    account = await new_user(server)
    client = Client(server.ws, account["token"])
    await client.connect()
    ended = asyncio.Event()

    async def consume() -> None:
        async for _ in client.events():
            pass
        ended.set()

    consumer = asyncio.create_task(consume())
    await client.close()
    await asyncio.wait_for(ended.wait(), timeout(5))
    await consumer
    with pytest.raises(ConnectionClosed):
        await client.request("ping")
