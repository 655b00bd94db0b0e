"""Discussions and moderation together (docs/protocol.md §5.8, §5.9): a kicked member
hears nothing more of the community, followed threads included, and a timed-out member
changes nothing; and what identify lists of a user's discussions, in its order.
Both deployments; the kicked member's session is on the other node.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tests.discussion_helpers import (
    Club,
    close_all,
    connect,
    error,
    kinds,
    node,
    send,
    session_for,
    uid,
    until,
)


@pytest.fixture(autouse=True)
async def _close_sessions() -> AsyncIterator[None]:
    yield
    await close_all()


async def test_a_kicked_member_hears_nothing_more_of_the_threads_they_followed(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    kicked = await club.join(1, name="kicked")
    made = await owner.ok(
        "thread.create", {"channel": club.general, "title": "secret plans", "text": "hush"}
    )
    thread = made["thread"]["id"]
    await send(kicked, thread, "I follow this now")
    await owner.ok("member.kick", {"community": club.id, "user": uid(kicked)})
    await send(owner, thread, "not for the kicked member")
    await owner.ok("dm.open", {"user": uid(kicked)})  # they still share the first community
    heard = await until(kicked, "dm.created")  # published by the same node after the post
    assert "member.left" in kinds(heard)
    assert "thread.activity" not in kinds(heard), heard
    fresh = await connect(node(server, 0), kicked.token)  # type: ignore[attr-defined]
    assert thread not in [t["id"] for t in fresh.identity["threads"]]
    assert thread not in [r["channel"] for r in fresh.identity["reads"]]


async def test_a_timed_out_member_changes_no_thread(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    member = await club.join(1)
    made = await member.ok("thread.create", {"channel": club.general, "title": "mine", "text": "x"})
    thread = made["thread"]["id"]
    await owner.ok("member.timeout", {"community": club.id, "user": uid(member), "seconds": 600})
    refused = await member.command("thread.update", {"thread": thread, "resolved": True})
    assert error(refused)[0] == "forbidden"


async def test_a_timed_out_member_reads_but_does_not_post_react_type_or_share(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    member = await club.join(1)
    message = await send(owner, club.general, "hello")
    made = await owner.ok("thread.create", {"channel": club.general, "title": "t", "text": "x"})
    thread = made["thread"]["id"]
    await owner.ok("member.timeout", {"community": club.id, "user": uid(member), "seconds": 600})
    target = {"channel": club.general, "message": message["id"]}
    for op, d, permission in [
        ("message.send", {"channel": thread, "text": "x"}, "post"),
        ("thread.create", {"channel": club.general, "title": "t"}, "post"),
        ("reaction.add", {**target, "emoji": "👍"}, "participate"),
        ("typing.start", {"channel": club.general}, "post"),
        ("resource.add", {"community": club.id, "title": "x"}, "post"),
    ]:
        assert error(await member.command(op, d)) == ("forbidden", permission), op
    for op, d in [
        ("history", {"channel": thread}),
        ("thread.list", {"channel": club.general}),
        ("channel.pins", {"channel": club.general}),
        ("message.search", {"community": club.id, "query": "hello"}),
        ("resource.list", {"community": club.id}),
        ("read.mark", {"channel": club.general, "o": 1}),
    ]:
        await member.ok(op, d)


async def test_identify_lists_dms_and_followed_threads_latest_activity_first(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    people = [await club.join(i % 2, name=f"p{i}") for i in range(3)]
    dms = [(await owner.ok("dm.open", {"user": uid(p)}))["channel"]["id"] for p in people]
    threads = []
    for title in ("one", "two"):
        made = await owner.ok("thread.create", {"channel": club.general, "title": title})
        threads.append(made["thread"]["id"])
    for place, text in ((dms[0], "first"), (threads[0], "first"), (dms[1], "2"), (dms[0], "3")):
        sent = await send(owner, place, text)
        while time.time() * 1000 < sent["ts"] + 1:  # the next one in a later millisecond:
            await asyncio.sleep(0.001)  # activity within one millisecond sorts by id
    fresh = await connect(node(server, 1), owner.token)  # type: ignore[attr-defined]
    assert [t["id"] for t in fresh.identity["threads"]] == [threads[0], threads[1]]
    assert [d["id"] for d in fresh.identity["dms"]] == [dms[0], dms[1], dms[2]]


async def test_a_thread_of_an_archived_channel_takes_no_new_messages(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    member = await club.join(1)
    channel = await club.channel("closing")
    made = await owner.ok("thread.create", {"channel": channel, "title": "t", "text": "open"})
    thread = made["thread"]["id"]
    await send(member, thread, "before the archive")
    await owner.ok("channel.update", {"channel": channel, "archived": True})
    for who in (member, owner):
        refused = await who.command("message.send", {"channel": thread, "text": "after"})
        assert error(refused)[0] == "conflict"
    history = await member.ok("history", {"channel": thread})
    assert [e["d"]["message"]["text"] for e in history["events"]] == ["open", "before the archive"]
