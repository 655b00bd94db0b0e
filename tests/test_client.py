"""The Python client against real servers: commands, events, heartbeats, reconnect and resume."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time

import pytest

from clients import Client, CommandError, ConnectionClosed, Event, Gap
from tests.conftest import UNSOLICITED, AgoraProcess, PlugTo, eventually, new_user, timeout

_unique = itertools.count()


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
    # A heartbeat of a second leaves a ping 0.7 s to spare: at 0.3 s, a 210 ms stall of a
    # loaded machine was enough to miss one (loaded run 3 at 8f4fc12).
    heartbeat_ms = round(timeout(1.0) * 1000)
    node = make_server(heartbeat_ms=heartbeat_ms).nodes[0]
    account = await new_user(node)
    async with Client(node.ws, account["token"]) as client:
        # The client pings every 0.8 heartbeat on its own; the server would close a
        # session silent for 1.5. Six pings span more than three such windows.
        pings = node.metric("agora_frames_in_total") + 6
        await eventually(
            lambda: node.metric("agora_frames_in_total") >= pings, "six pings", wait=20
        )
        assert client.connections == 1
        assert node.metric("agora_closes_total", 'code="4009"') == 0
        assert await client.request("ping") == {}


async def test_slow_ping_replies_do_not_delay_the_next_ping(make_server, plug_to: PlugTo) -> None:
    heartbeat_ms = round(timeout(1.0) * 1000)
    node = make_server(heartbeat_ms=heartbeat_ms).nodes[0]
    account = await new_user(node)
    plug = await plug_to(node)
    # Each reply takes 0.9 heartbeat to come back. A client that waited 0.8 heartbeat
    # after the reply would ping 1.7 apart, past the server's 1.5-heartbeat cut-off.
    plug.delay_down = 0.9 * heartbeat_ms / 1000
    async with Client(plug.ws, account["token"], reconnect=False):  # a 4009 ends the pings
        pings = node.metric("agora_frames_in_total") + 4
        await eventually(
            lambda: node.metric("agora_frames_in_total") >= pings, "four pings", wait=30
        )
        assert node.metric("agora_closes_total", 'code="4009"') == 0


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


async def test_too_many_missed_events_yield_a_gap(make_server, plug_to: PlugTo) -> None:
    server = make_server(rate_limit=0, replay_cap=5)
    account = await new_user(server)
    # Through a plug, so that the reader cannot reconnect before all 8 are sent.
    plug = await plug_to(server.nodes[0])
    async with Client(plug.ws, account["token"]) as reader:
        general = reader.channel_named("general")
        await reader.subscribe(general)
        await plug.unplug()
        async with Client(server.nodes[-1].ws, account["token"], reconnect=False) as writer:
            for i in range(8):
                await writer.send_message(general, f"m{i}")
            await plug.plug()
            # the reader reconnects on its own; this one goes live after the gap
            await eventually(lambda: reader.connections == 2, "the reader reconnected")
            await writer.send_message(general, "live")
        gap = await channel_event(reader)
        # offset 1 is the account's member.joined, seen before the unplug
        assert gap == Gap(general, 1, 9)
        assert await texts(reader, 1) == ["live"]
        missed = await reader.history(general, before=gap.until + 1, limit=gap.until - gap.after)
        assert [e.o for e in missed] == list(range(2, 10))


async def test_a_subscribe_dropped_before_its_reply_is_sent_again_after_the_reconnect(
    make_server, plug_to: PlugTo
) -> None:
    server = make_server(rate_limit=0)
    account = await new_user(server)
    node = server.nodes[0]
    plug = await plug_to(node)
    async with Client(plug.ws, account["token"]) as reader:
        general = reader.channel_named("general")
        # The node is stopped, so the subscribe reaches it but cannot be answered before
        # the connection drops.
        os.kill(node.proc.pid, signal.SIGSTOP)
        try:
            sent = plug.carried_up
            subscribing = asyncio.create_task(reader.subscribe(general))
            await eventually(lambda: plug.carried_up > sent, "the subscribe was sent")
            await plug.unplug()
        finally:
            os.kill(node.proc.pid, signal.SIGCONT)
        await plug.plug()
        reply = await asyncio.wait_for(subscribing, timeout(30))
        assert reply["offset"] >= 1  # the account's member.joined
        assert reader.connections == 2
        async with Client(server.nodes[-1].ws, account["token"], reconnect=False) as writer:
            await writer.send_message(general, "heard")
        assert await texts(reader, 1) == ["heard"]


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


# communities (docs/protocol.md §5.8)


async def until(client: Client, t: str, test=lambda event: True) -> Event:
    """The next event of type ``t`` that passes ``test``, passing over the rest."""
    async with asyncio.timeout(timeout(10)):
        while True:
            event = await client.next_event(timeout(10))
            if isinstance(event, Event) and event.t == t and test(event):
                return event


def unique(name: str) -> str:
    return f"{name} {next(_unique)}x{time.monotonic_ns()}"


async def test_community_commands_return_what_they_made_and_changed(server: AgoraProcess) -> None:
    ann_account, bob_account = await new_user(server, "ann"), await new_user(server, "bob")
    bob_id = bob_account["user"]["id"]
    async with (
        Client(server.ws, ann_account["token"]) as ann,
        Client(server.ws, bob_account["token"]) as bob,
    ):
        club = await ann.create_community(unique("Club"))
        assert club["role"] == "owner" and [c["name"] for c in club["channels"]] == ["general"]
        room = await ann.create_channel(club["id"], " Reading  Room ", topic="what we read")
        assert (room["name"], room["kind"], room["topic"]) == (
            "reading-room",
            "text",
            "what we read",
        )
        invite = await ann.create_invite(club["id"], max_uses=1)
        assert (invite["community"], invite["role"], invite["uses"]) == (club["id"], "member", 0)
        joined = await bob.accept_invite(invite["code"])
        assert (joined["id"], joined["role"]) == (club["id"], "member")
        member = await ann.set_role(club["id"], bob_id, "facilitator")
        assert (member["id"], member["role"]) == (bob_id, "facilitator")
        assert [m["role"] for m in await ann.members(club["id"])] == ["owner", "facilitator"]
        archived = await bob.update_channel(room["id"], archived=True, slowmode_s=5)
        assert (archived["archived"], archived["slowmode_s"]) == (True, 5)
        online = await ann.presence(club["id"])
        assert online == {ann.identity["user"]["id"]: "online", bob_id: "online"}
        await bob.set_presence("idle")
        assert (await ann.presence(club["id"]))[bob_id] == "idle"
        await ann.set_role(club["id"], bob_id, "member")
        await ann.timeout_member(club["id"], bob_id, 60)
        with pytest.raises(CommandError) as caught:
            await bob.send_message(bob.channel_named("general", club["id"]), "muted?")
        assert caught.value.code == "forbidden"
        await ann.timeout_member(club["id"], bob_id, 0)
        await bob.send_message(bob.channel_named("general", club["id"]), "back")
        page = await ann.audit_log(club["id"], limit=3)
        assert [e["action"] for e in page["entries"]] == [
            "member.timeout",
            "member.timeout",
            "member.role",
        ]
        older = await ann.audit_log(club["id"], before=page["next"])
        assert [e["action"] for e in older["entries"]] == [
            "channel.update",
            "member.role",
            "invite.create",
            "channel.create",
        ]
        await ann.kick(club["id"], bob_id)
        assert [m["id"] for m in await ann.members(club["id"])] == [ann.identity["user"]["id"]]
        again = await ann.create_invite(club["id"])
        await bob.accept_invite(again["code"])
        await ann.ban(club["id"], bob_id)
        with pytest.raises(CommandError) as caught:
            await bob.accept_invite(again["code"])
        assert caught.value.code == "forbidden"


async def test_the_view_of_communities_follows_community_and_user_events(
    server: AgoraProcess,
) -> None:
    ann_account, bob_account = await new_user(server, "ann"), await new_user(server, "bob")
    async with (
        Client(server.ws, ann_account["token"]) as ann,
        Client(server.ws, ann_account["token"]) as ann_elsewhere,
        Client(server.ws, bob_account["token"]) as bob,
    ):
        name = unique("Club")
        club = await ann.create_community(name)
        # community.joined: the user's other session learns of it
        await until(
            ann_elsewhere, "community.joined", lambda e: e.d["community"]["id"] == club["id"]
        )
        assert ann_elsewhere.community(name)["id"] == club["id"]
        invite = await ann.create_invite(club["id"])
        await bob.accept_invite(invite["code"])
        general = bob.channel_named("general", name)
        await bob.subscribe(general)
        # channel.created: a new channel is in channel_named
        room = await ann.create_channel(club["id"], "poetry")
        for member in (bob, ann_elsewhere):  # each session hears it in its own time
            await until(member, "channel.created", lambda e: e.d["channel"]["id"] == room["id"])
            assert member.channel_named("poetry", club["id"]) == room["id"]
        # channel.updated: a renamed channel goes by its new name
        await ann.update_channel(room["id"], name="Verse", position=0)
        await until(bob, "channel.updated", lambda e: e.d["channel"]["id"] == room["id"])
        assert bob.channel_named("verse", club["id"]) == room["id"]
        with pytest.raises(KeyError):
            bob.channel_named("poetry", club["id"])
        # member.updated: one's own role
        await ann.set_role(club["id"], bob.identity["user"]["id"], "facilitator")
        await until(bob, "member.updated")
        assert bob.community(club["id"])["role"] == "facilitator"
        # member.left: a kicked member's community disappears, and is not resubscribed
        await ann.kick(club["id"], bob.identity["user"]["id"])
        await until(bob, "member.left", lambda e: e.ch == club["id"])
        assert club["id"] not in [c["id"] for c in bob.communities]
        with pytest.raises(KeyError):
            bob.channel_named("general", club["id"])
        assert general not in bob.offsets
        assert bob.community(0)["name"] == "Agora"
