"""Discussions on two nodes at once (docs/protocol.md §5.9): the same command sent to
both nodes of the scaled deployment together (and, embedded, pipelined on two
sessions) leaves one consistent state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.discussion_helpers import Club, all_events, close_all, send, session_for, uid


@pytest.fixture(autouse=True)
async def _close_sessions() -> AsyncIterator[None]:
    yield
    await close_all()


#: Found by these tests: PostgresDiscussions.change_message locks the message with
#: ``SELECT m.channel_id, m.o, e.frame FROM messages m JOIN events e … FOR UPDATE OF m``.
#: Under READ COMMITTED a transaction that waited for that lock gets the *latest* row of
#: ``messages`` but the frame of ``events`` as its snapshot saw it before the wait: it
#: changes the stale message and overwrites the change it waited for (a lost update).
async def test_a_thread_from_one_message_on_two_nodes_at_once_is_one_thread(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    racers = [await club.join(i % 2, name=f"r{i}") for i in range(4)]  # two on each node
    roots = []
    for round_ in range(8):
        racing = await send(owner, club.general, f"race {round_}")
        roots.append(racing["id"])
        d = {"channel": club.general, "title": "race", "message": racing["id"]}
        answers = await asyncio.gather(*(r.ok("thread.create", d) for r in racers))
        assert len({a["thread"]["id"] for a in answers}) == 1, round_
    events = await all_events(owner, club.general)
    created = [e["d"]["thread"]["message"] for e in events if e["t"] == "thread.created"]
    assert sorted(created) == sorted(roots)  # one thread.created each


async def test_concurrent_reactions_from_two_nodes_are_all_kept(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    reactors = [await club.join(i % 2, name=f"r{i}") for i in range(4)]  # two on each node
    for round_ in range(8):
        message = await send(owner, club.general, f"react {round_}")
        target = {"channel": club.general, "message": message["id"]}
        await asyncio.gather(
            *(r.ok("reaction.add", {**target, "emoji": f"e{i}"}) for i, r in enumerate(reactors))
        )
        [now] = [
            e["d"]["message"]
            for e in await all_events(owner, club.general)
            if e["t"] == "message.created" and e["d"]["message"]["id"] == message["id"]
        ]
        assert sorted(r["emoji"] for r in now["reactions"]) == ["e0", "e1", "e2", "e3"], now


async def test_dm_open_from_both_sides_at_once_is_one_channel(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    for _ in range(4):
        first = await club.join(0, name="first")
        second = await club.join(1, name="second")
        answers = await asyncio.gather(
            first.ok("dm.open", {"user": uid(second)}), second.ok("dm.open", {"user": uid(first)})
        )
        assert answers[0]["channel"] == answers[1]["channel"]


async def test_replies_posted_on_both_nodes_at_once_are_all_counted(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    posters = [await club.join(i % 2, name=f"p{i}") for i in range(4)]
    made = await owner.ok("thread.create", {"channel": club.general, "title": "busy", "text": "go"})
    thread = made["thread"]["id"]
    for _ in range(ROUNDS):
        await asyncio.gather(*(send(p, thread, "a reply") for p in posters))
    listed = await owner.ok("thread.list", {"channel": club.general})
    [summary] = [t for t in listed["threads"] if t["thread"]["id"] == thread]
    events = await all_events(owner, thread)
    assert [e["o"] for e in events] == list(range(1, 4 * ROUNDS + 2))
    assert summary["replies"] == 4 * ROUNDS


ROUNDS = 5


async def test_last_ts_is_the_latest_message_after_replies_on_both_nodes_at_once(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    posters = [await club.join(i % 2, name=f"p{i}") for i in range(8)]
    made = await owner.ok("thread.create", {"channel": club.general, "title": "busy", "text": "go"})
    thread = made["thread"]["id"]
    latest = 0
    for round_ in range(40):
        sent = await asyncio.gather(*(send(p, thread, f"reply {round_}") for p in posters))
        latest = max(latest, *(m["ts"] for m in sent))
        listed = await owner.ok("thread.list", {"channel": club.general})
        [summary] = [t for t in listed["threads"] if t["thread"]["id"] == thread]
        assert (summary["last_ts"], summary["thread"]["last_ts"]) == (latest, latest), round_
