"""Events encoded once for many users: ``thread.activity`` on a thread's followers'
topic, ``mention`` of ``@here`` on the community's, and ``thread.followed``, which
moves a user's sessions on every node on or off a thread's topic.

Every test runs in both deployments; in the scaled one sessions sit on both nodes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.discussion_helpers import Club, close_all, connect, event, node, session_for, uid


@pytest.fixture(autouse=True)
async def _close_sessions() -> AsyncIterator[None]:
    yield
    await close_all()


async def thread_in(community: Club, title: str) -> str:
    reply = await community.owner.ok(
        "thread.create", {"channel": community.general, "title": title, "text": "first"}
    )
    return reply["thread"]["id"]


async def post(session: Any, channel: str, text: str) -> dict[str, Any]:
    return (await session.ok("message.send", {"channel": channel, "text": text}))["message"]


async def test_thread_activity_reaches_every_follower_once_on_the_thread_topic(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    owner_tab = await connect(node(server, 1), owner.token)  # type: ignore[attr-defined]
    reader = await club.join(1)
    reader_tab = await connect(node(server, 0), reader.token)  # type: ignore[attr-defined]
    poster = await club.join(0)
    thread = await thread_in(club, "Chapter three")

    await reader.ok("thread.follow", {"thread": thread})
    followed = await event(reader_tab, "thread.followed")
    assert followed["d"]["thread"]["id"] == thread and followed["d"]["following"] is True
    await poster.ok("thread.follow", {"thread": thread})
    await event(poster, "thread.followed")

    mine = await post(owner, thread, "from the creator")
    theirs = await post(poster, thread, "from a poster")
    for session in (reader, reader_tab):
        first = await event(session, "thread.activity")
        assert first["ch"] == thread
        assert first["d"]["message"]["id"] == mine["id"]
        assert first["d"]["user"] == uid(owner)
        assert (await event(session, "thread.activity"))["d"]["message"]["id"] == theirs["id"]
    # the author's own sessions skip their message: the next they hear is the poster's
    for session in (owner, owner_tab):
        heard = await event(session, "thread.activity")
        assert heard["d"]["message"]["id"] == theirs["id"]


async def test_unfollowing_stops_thread_activity_in_every_session(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    reader = await club.join(1)
    reader_tab = await connect(node(server, 0), reader.token)  # type: ignore[attr-defined]
    quiet, lively = await thread_in(club, "Quiet"), await thread_in(club, "Lively")
    for thread in (quiet, lively):
        await reader.ok("thread.follow", {"thread": thread})
        for session in (reader, reader_tab):
            assert (await event(session, "thread.followed"))["d"]["thread"]["id"] == thread

    await reader_tab.ok("thread.unfollow", {"thread": quiet})
    unfollowed = await event(reader, "thread.followed")
    assert unfollowed["d"] == {"thread": unfollowed["d"]["thread"], "following": False}
    assert unfollowed["d"]["thread"]["id"] == quiet
    await post(owner, quiet, "nobody follows this")
    sentinel = await post(owner, lively, "after the quiet one")
    for session in (reader, reader_tab):
        assert (await event(session, "thread.activity"))["d"]["message"]["id"] == sentinel["id"]
    fresh = await connect(node(server, 1), reader.token)  # type: ignore[attr-defined]
    assert [t["id"] for t in fresh.identity["threads"]] == [lively]


async def test_a_kicked_member_hears_no_more_activity_of_its_threads(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    other_club = await Club.create(server, await session_for(server, 1, "owner"))
    member = await club.join(1)
    invite = await other_club.owner.ok("invite.create", {"community": other_club.id})
    await member.ok("invite.accept", {"code": invite["invite"]["code"]})
    inside, elsewhere = await thread_in(club, "Inside"), await thread_in(other_club, "Elsewhere")
    for thread in (inside, elsewhere):
        await member.ok("thread.follow", {"thread": thread})
        await event(member, "thread.followed")

    await owner.ok("member.kick", {"community": club.id, "user": uid(member)})
    await event(member, "member.left", ch=club.id)
    await post(owner, inside, "after the kick")
    sentinel = await post(other_club.owner, elsewhere, "still followed")
    assert (await event(member, "thread.activity"))["d"]["message"]["id"] == sentinel["id"]
    fresh = await connect(node(server, 0), member.token)  # type: ignore[attr-defined]
    assert [t["id"] for t in fresh.identity["threads"]] == [elsewhere]


async def test_here_is_one_mention_on_the_community_topic_heard_once_each(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    owner_tab = await connect(node(server, 1), owner.token)  # type: ignore[attr-defined]
    alice, bob = await club.join(0, name="alice"), await club.join(1, name="bob")
    alice_name = alice.identity["user"]["username"]

    here = await post(owner, club.general, f"@here and @{alice_name}, we start")
    later = await post(owner, club.general, f"@{alice_name} one more")
    for session in (alice, bob):
        mention = await event(session, "mention")
        assert mention["ch"] == club.id
        assert mention["d"]["message"]["id"] == here["id"]
        assert mention["d"]["user"] == uid(owner)
    assert (await event(alice, "mention"))["d"]["message"]["id"] == later["id"]
    # nobody mentions themselves: the author's sessions hear a mention only from others
    reply = await post(alice, club.general, f"@{owner.identity['user']['username']} ok")
    assert (await event(owner_tab, "mention"))["d"]["message"]["id"] == reply["id"]
    fresh = await connect(node(server, 1), bob.token)  # type: ignore[attr-defined]
    counts = {r["channel"]: r["mentions"] for r in fresh.identity["reads"]}
    assert counts[club.general] == 1
