"""Threaded discussions (issue 10, docs/protocol.md §5.9) over real sockets.

Every test runs in both deployments. In the scaled one the sessions of a test are
spread over the two nodes on purpose (``node(server, i)``), so that each event
shown here crosses from one node to the other. Each test makes a community of its
own, so the tests share one server without hearing each other.

"X does not hear Y" is shown with a sentinel: an event the same node publishes to
the same listener *after* Y would have been, so Y would have come first.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.agora_cli import agora, storage
from tests.conftest import RawSession, ServerLog, http_json, timeout
from tests.discussion_helpers import (
    Club,
    all_events,
    close_all,
    connect,
    error,
    event,
    kinds,
    node,
    send,
    session_for,
    uid,
    until,
    username,
)


@pytest.fixture(autouse=True)
async def _close_sessions() -> AsyncIterator[None]:
    yield
    await close_all()


# threads


async def test_followers_hear_thread_activity_and_the_parent_hears_created_then_updated(
    server,
) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    creator = await club.join(1, name="creator")
    poster = await club.join(0, name="poster")
    await owner.ok("subscribe", {"channel": club.general})
    root = await send(owner, club.general, "Chapter 3 is strange")
    made = await creator.ok(
        "thread.create", {"channel": club.general, "title": " Chapter 3 ", "message": root["id"]}
    )
    thread = made["thread"]
    assert (thread["kind"], thread["parent"], thread["community"]) == (
        "thread",
        club.general,
        club.id,
    )
    assert (thread["title"], thread["created_by"], thread["message"]) == (
        "Chapter 3",
        uid(creator),
        root["id"],
    )
    assert (thread["name"], thread["tags"], thread["resolved"], thread["replies"]) == (
        thread["id"],
        [],
        False,
        0,
    )
    created = await event(owner, "thread.created", ch=club.general)
    assert created["d"] == {"thread": thread, "by": uid(creator)} and created["o"] >= 1
    # the creator follows it: a post by someone else reaches them, wherever they are
    posted = await send(poster, thread["id"], "I agree")
    activity = await event(creator, "thread.activity")
    assert activity["ch"] == thread["id"] and activity["d"]["user"] == uid(poster)
    assert activity["d"]["message"] == posted
    assert activity["d"]["thread"]["id"] == thread["id"]
    # the poster follows it now, and does not hear their own post: a read marker they move
    # after it is the next thing they hear
    await poster.ok("read.mark", {"channel": club.general, "o": 1})
    heard = await until(poster, "read.updated")
    assert "thread.activity" not in kinds(heard), heard
    fresh = await connect(node(server, 1), poster.token)  # type: ignore[attr-defined]
    assert thread["id"] in [t["id"] for t in fresh.identity["threads"]]
    # the parent hears thread.updated within 2 s, with the new counts
    started = time.monotonic()
    updated = await event(owner, "thread.updated", ch=club.general, seconds=5)
    assert time.monotonic() - started < timeout(2.5)
    d = updated["d"]
    assert d["thread"]["id"] == thread["id"]
    assert (d["replies"], d["last_ts"], d["participants"]) == (1, posted["ts"], [uid(poster)])
    assert (d["tags"], d["resolved"]) == ([], False)
    assert d["thread"]["replies"] == 1 and d["thread"]["last_ts"] == posted["ts"]
    # the root message carries its thread
    root_now = (await owner.ok("history", {"channel": club.general}))["events"]
    assert [e["d"]["message"].get("thread") for e in root_now if e["t"] == "message.created"] == [
        thread["id"]
    ]
    # unfollow stops it: a mention the same node sends later arrives with nothing before it
    await creator.ok("thread.unfollow", {"thread": thread["id"]})
    await send(poster, thread["id"], "more")
    await send(poster, club.general, f"@{username(creator)} look")
    heard = await until(creator, "mention")
    assert "thread.activity" not in kinds(heard), heard
    # follow refusals are those of subscribe
    assert error(await creator.command("thread.follow", {"thread": "404"}))[0] == "not_found"
    outsider = await session_for(server, 1, "outsider")
    refused = await outsider.command("thread.follow", {"thread": thread["id"]})
    assert error(refused)[0] == "forbidden"
    not_a_thread = await creator.command("thread.follow", {"thread": club.general})
    assert error(not_a_thread)[0] == "bad_request"
    # follow again: it comes back
    await creator.ok("thread.follow", {"thread": thread["id"]})
    again = await send(owner, thread["id"], "the owner posts")
    assert (await event(creator, "thread.activity"))["d"]["message"] == again
    assert (await event(poster, "thread.activity"))["d"]["message"] == again


async def test_a_thread_with_an_opening_post_has_its_own_log(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    member = await club.join(1)
    made = await member.ok(
        "thread.create",
        {"channel": club.general, "title": "Ideas", "text": "first!", "tags": ["A", " b ", "a"]},
    )
    thread = made["thread"]
    assert thread["tags"] == ["a", "b"] and thread["replies"] == 0 and "message" not in thread
    await owner.ok("subscribe", {"channel": thread["id"], "since": 0})
    opening = await event(owner, "message.created", ch=thread["id"])
    assert (opening["o"], opening["d"]["message"]["text"]) == (1, "first!")
    reply = await send(owner, thread["id"], "second")
    assert reply["channel"] == thread["id"]
    events = await all_events(owner, thread["id"])
    assert [e["d"]["message"]["text"] for e in events] == ["first!", "second"]
    listed = await owner.ok("thread.list", {"channel": club.general})
    updated = next(t for t in listed["threads"] if t["thread"]["id"] == thread["id"])
    assert updated["replies"] == 1
    # threads are not the community's channels
    fresh = await connect(node(server, 0), member.token)  # type: ignore[attr-defined]
    mine = next(c for c in fresh.identity["communities"] if c["id"] == club.id)
    assert thread["id"] not in [c["id"] for c in mine["channels"]]
    assert thread["id"] in [t["id"] for t in fresh.identity["threads"]]
    # a thread of a thread is refused, and so is one in an unknown channel
    nested = await owner.command("thread.create", {"channel": thread["id"], "title": "x"})
    assert error(nested)[0] == "bad_request"
    missing = await owner.command("thread.create", {"channel": "404", "title": "x"})
    assert error(missing)[0] == "not_found"


async def test_a_forum_takes_threads_listed_by_activity_in_pages_and_by_tag(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    forum = await club.channel("questions", "forum")
    member = await club.join(1)
    other = await club.join(0, name="other")
    facilitator = await club.join(1, "facilitator", "facilitator")
    said = await member.command("message.send", {"channel": forum, "text": "hi"})
    assert error(said)[0] == "bad_request"
    untexted = await member.command("thread.create", {"channel": forum, "title": "no text"})
    assert error(untexted)[0] == "bad_request"
    threads = []
    for i, tags in enumerate([["setup"], ["bug"], ["setup", "bug"]]):
        made = await member.ok(
            "thread.create", {"channel": forum, "title": f"q{i}", "text": f"body {i}", "tags": tags}
        )
        threads.append(made["thread"]["id"])
    await asyncio.sleep(0.002)  # a later millisecond for the next post
    await send(other, threads[0], "an answer")  # q0 is now the latest activity
    listed = await other.ok("thread.list", {"channel": forum})
    order = [t["thread"]["id"] for t in listed["threads"]]
    assert order[0] == threads[0] and sorted(order) == sorted(threads)
    by_activity = sorted(listed["threads"], key=lambda t: (t["last_ts"], t["thread"]["id"]))
    assert [t["thread"]["id"] for t in reversed(by_activity)] == order
    assert "next" not in listed
    first = await other.ok("thread.list", {"channel": forum, "limit": 2})
    assert [t["thread"]["id"] for t in first["threads"]] == order[:2]
    rest = await other.ok("thread.list", {"channel": forum, "limit": 2, "before": first["next"]})
    assert [t["thread"]["id"] for t in rest["threads"]] == order[2:]
    assert "next" not in rest
    tagged = await other.ok("thread.list", {"channel": forum, "tag": "bug"})
    assert [t["thread"]["id"] for t in tagged["threads"]] == [
        t for t in order if t in (threads[1], threads[2])
    ]
    summary = listed["threads"][0]
    assert set(summary) == {"thread", "replies", "last_ts", "tags", "resolved"}
    assert (summary["replies"], summary["tags"]) == (1, ["setup"])
    # thread.update: the creator and facilitators, nobody else
    await owner.ok("subscribe", {"channel": forum})
    done = await member.ok("thread.update", {"thread": threads[1], "tags": ["fixed"]})
    assert done["thread"]["tags"] == ["fixed"]
    heard = await event(owner, "thread.updated", ch=forum)
    assert (heard["d"]["thread"]["id"], heard["d"]["tags"]) == (threads[1], ["fixed"])
    assert "participants" in heard["d"]
    resolved = await facilitator.ok("thread.update", {"thread": threads[1], "resolved": True})
    assert resolved["thread"]["resolved"] is True
    assert (await event(owner, "thread.updated", ch=forum))["d"]["resolved"] is True
    refused = await other.command("thread.update", {"thread": threads[1], "resolved": False})
    assert error(refused) == ("forbidden", "manage_threads")
    nothing = await member.command("thread.update", {"thread": threads[1]})
    assert error(nothing)[0] == "bad_request"
    retitled = await member.ok("thread.update", {"thread": threads[1], "title": "renamed"})
    assert retitled["thread"]["title"] == "renamed"
    assert (await other.ok("thread.list", {"channel": forum, "tag": "fixed"}))["threads"][0][
        "resolved"
    ] is True


async def test_a_thread_from_one_message_twice_is_the_same_thread_from_either_node(
    server,
) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    first = await club.join(0, name="first")
    second = await club.join(1, name="second")
    message = await send(owner, club.general, "start here")
    d = {"channel": club.general, "title": "one", "message": message["id"]}
    a = await first.ok("thread.create", d)
    b = await second.ok("thread.create", {**d, "title": "two"})
    assert a["thread"] == b["thread"]
    gone = await owner.command(
        "thread.create", {"channel": club.general, "title": "x", "message": "12345"}
    )
    assert error(gone)[0] == "not_found"


# edits, deletes, and what a deleted text never does again


async def test_only_the_author_edits_and_a_deleted_text_never_comes_back(
    server, tmp_path: Path
) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    author = await club.join(1, name="author")
    other = await club.join(0, name="other")
    facilitator = await club.join(1, "facilitator", "facilitator")
    await other.ok("subscribe", {"channel": club.general})
    first = await send(author, club.general, "the plum is ripe")
    refused = await other.command(
        "message.edit", {"channel": club.general, "message": first["id"], "text": "mine now"}
    )
    assert error(refused) == ("forbidden", "edit_messages")
    edited = await author.ok(
        "message.edit",
        {"channel": club.general, "message": first["id"], "text": "the pear is ripe"},
    )
    assert edited["message"]["text"] == "the pear is ripe" and edited["message"]["edited_ts"] > 0
    heard = await event(other, "message.updated", ch=club.general)
    assert heard["d"]["message"] == edited["message"]
    found = await other.ok("message.search", {"community": club.id, "query": "pear"})
    assert [m["id"] for m in found["messages"]] == [first["id"]]
    assert (await other.ok("message.search", {"community": club.id, "query": "plum"}))[
        "messages"
    ] == []
    # delete: the author, or a facilitator; not another member
    secret = await send(author, club.general, "the secret quince recipe")
    other_secret = await send(other, club.general, "another quince secret")
    refused = await other.command(
        "message.delete", {"channel": club.general, "message": secret["id"]}
    )
    assert error(refused) == ("forbidden", "delete_messages")
    revised = {"channel": club.general, "message": secret["id"], "text": "quince recipe v2"}
    await author.ok("message.edit", revised)  # its message.updated frame must go too
    await author.ok("message.delete", {"channel": club.general, "message": secret["id"]})
    await facilitator.ok("message.delete", {"channel": club.general, "message": other_secret["id"]})
    assert (await event(other, "message.updated", ch=club.general))["d"]["message"]["id"] == (
        secret["id"]
    )
    deleted = await event(other, "message.deleted", ch=club.general)
    assert deleted["d"] == {"id": secret["id"]}
    assert (await event(other, "message.deleted", ch=club.general))["d"] == {
        "id": other_secret["id"]
    }
    again = await author.ok("message.delete", {"channel": club.general, "message": secret["id"]})
    assert again == {}
    no_edit = await author.command(
        "message.edit", {"channel": club.general, "message": secret["id"], "text": "back"}
    )
    assert error(no_edit)[0] == "not_found"
    # never again: history, a replay since 0, search, export
    for events in (
        await all_events(owner, club.general),
        await replay(owner, club.general),
    ):
        gone = [e["d"]["message"] for e in events if e["t"] == "message.created"]
        by_id = {m["id"]: m for m in gone}
        for mid in (secret["id"], other_secret["id"]):
            assert by_id[mid]["deleted"] is True and by_id[mid]["text"] == ""
            assert by_id[mid]["reactions"] == []
        assert "quince" not in repr(events)
    found = await owner.ok("message.search", {"community": club.id, "query": "quince"})
    assert found["messages"] == []
    path = tmp_path / "club.json"
    done = agora("export", club.id, path, *storage(server))
    assert done.returncode == 0, done.stderr
    text = path.read_text()
    assert "the pear is ripe" in text and "quince" not in text and "plum" not in text


async def replay(session, channel: str) -> list[dict[str, Any]]:
    """Every event a ``subscribe`` with ``since: 0`` replays (a fresh subscription)."""
    head = (await session.ok("history", {"channel": channel, "limit": 1}))["events"][-1]["o"]
    await session.ok("unsubscribe", {"channel": channel})
    session.early.clear()
    reply = await session.ok("subscribe", {"channel": channel, "since": 0})
    assert reply["recovered"] is True and reply["offset"] >= head
    replayed = [f for f in session.early if f.get("op") == "event" and f.get("ch") == channel]
    session.early.clear()
    return replayed


# reactions, pins, replies


async def test_reactions_are_one_per_user_and_emoji_and_at_most_20_emoji(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    member = await club.join(1)
    guest = await club.join(0, "guest", "guest")
    await owner.ok("subscribe", {"channel": club.general})
    message = await send(owner, club.general, "react to me")
    target = {"channel": club.general, "message": message["id"]}
    await member.ok("reaction.add", {**target, "emoji": "👍"})
    heard = await event(owner, "reaction.updated", ch=club.general)
    assert heard["d"] == {
        "message": message["id"],
        "emoji": "👍",
        "count": 1,
        "user": uid(member),
        "added": True,
    }
    await guest.ok("reaction.add", {**target, "emoji": "👍"})  # participate: guests react
    assert (await event(owner, "reaction.updated", ch=club.general))["d"]["count"] == 2
    await member.ok("reaction.add", {**target, "emoji": "👍"})  # twice: nothing changes
    await member.ok("reaction.remove", {**target, "emoji": "🎉"})  # never added: nothing
    await member.ok("reaction.remove", {**target, "emoji": "👍"})
    removed = await event(owner, "reaction.updated", ch=club.general)
    assert (removed["d"]["count"], removed["d"]["added"], removed["d"]["user"]) == (
        1,
        False,
        uid(member),
    )
    [now] = [
        e["d"]["message"]
        for e in await all_events(owner, club.general)
        if e["t"] == "message.created" and e["d"]["message"]["id"] == message["id"]
    ]
    assert now["reactions"] == [{"emoji": "👍", "count": 1, "users": [uid(guest)]}]
    for i in range(19):
        await member.ok("reaction.add", {**target, "emoji": f"e{i}"})
    too_many = await member.command("reaction.add", {**target, "emoji": "one-too-many"})
    assert error(too_many)[0] == "too_large"
    await owner.ok("reaction.add", {**target, "emoji": "e0"})  # an existing emoji still counts
    [now] = [
        e["d"]["message"]
        for e in await all_events(owner, club.general)
        if e["t"] == "message.created" and e["d"]["message"]["id"] == message["id"]
    ]
    assert len(now["reactions"]) == 20 and now["reactions"][1]["count"] == 2
    await owner.ok("message.delete", target)
    gone = await member.command("reaction.add", {**target, "emoji": "👍"})
    assert error(gone)[0] == "not_found"
    outsider = await session_for(server, 1, "outsider")
    refused = await outsider.command("reaction.add", {**target, "emoji": "👍"})
    assert error(refused)[0] == "forbidden"
    assert now["reactions"][0]["emoji"] == "👍"  # in the order each emoji was first used


async def test_pins_need_pin_messages_and_channel_pins_gives_each_its_offset(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    member = await club.join(1)
    facilitator = await club.join(0, "facilitator", "facilitator")
    await member.ok("subscribe", {"channel": club.general})
    first = await send(member, club.general, "pin me")
    second = await send(member, club.general, "me too")
    target = {"channel": club.general, "message": first["id"]}
    assert error(await member.command("message.pin", target)) == ("forbidden", "pin_messages")
    await facilitator.ok("message.pin", {**target, "message": second["id"]})
    await facilitator.ok("message.pin", target)
    heard = await event(member, "message.pinned", ch=club.general)
    assert heard["d"] == {"message": second["id"], "pinned": True}
    pins = (await member.ok("channel.pins", {"channel": club.general}))["messages"]
    assert [m["id"] for m in pins] == [first["id"], second["id"]]  # oldest first
    history = await all_events(member, club.general)
    offsets = {e["d"]["message"]["id"]: e["o"] for e in history if e["t"] == "message.created"}
    assert [m["o"] for m in pins] == [offsets[first["id"]], offsets[second["id"]]]
    assert all(m["pinned"] is True for m in pins)
    await facilitator.ok("message.unpin", target)
    assert (await event(member, "message.pinned", ch=club.general))["d"]["pinned"] is True
    assert (await event(member, "message.pinned", ch=club.general))["d"] == {
        "message": first["id"],
        "pinned": False,
    }
    pins = (await member.ok("channel.pins", {"channel": club.general}))["messages"]
    assert [m["id"] for m in pins] == [second["id"]]
    # a deleted message leaves the pins and cannot be pinned
    await member.ok("message.delete", {"channel": club.general, "message": second["id"]})
    assert (await member.ok("channel.pins", {"channel": club.general}))["messages"] == []
    again = await facilitator.command("message.pin", {**target, "message": second["id"]})
    assert error(again)[0] == "not_found"


async def test_reply_to_names_a_message_of_the_same_channel(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    member = await club.join(1)
    other = await club.channel("other")
    question = await send(owner, club.general, "a question")
    answer = await send(member, club.general, "an answer", reply_to=question["id"])
    assert answer["reply_to"] == question["id"]
    across = await member.command(
        "message.send", {"channel": other, "text": "x", "reply_to": question["id"]}
    )
    assert error(across)[0] == "not_found"
    unknown = await member.command(
        "message.send", {"channel": club.general, "text": "x", "reply_to": "999"}
    )
    assert error(unknown)[0] == "not_found"
    await owner.ok("message.delete", {"channel": club.general, "message": question["id"]})
    to_deleted = await member.command(
        "message.send", {"channel": club.general, "text": "x", "reply_to": question["id"]}
    )
    assert error(to_deleted)[0] == "not_found"


# mentions and read state


async def test_a_mention_reaches_a_user_anywhere_and_counts_until_read(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    mentioned = await club.join(1, name="mentioned")  # not subscribed to anything
    quiet = await club.channel("quiet")
    said = await send(owner, quiet, f"hello @{username(mentioned).upper()} and @nobody")
    heard = await event(mentioned, "mention")
    assert heard["ch"] == uid(mentioned) and heard["d"] == {"message": said, "user": uid(owner)}
    reads = await reads_of(server, mentioned, 0)
    assert (reads[quiet]["unread"], reads[quiet]["mentions"], reads[quiet]["o"]) == (1, 1, 0)
    reads = await reads_of(server, mentioned, 1)  # survives a reconnect, on either node
    assert reads[quiet]["mentions"] == 1
    head = (await owner.ok("history", {"channel": quiet, "limit": 1}))["events"][-1]["o"]
    await mentioned.ok("read.mark", {"channel": quiet, "o": head})
    reads = await reads_of(server, mentioned, 0)
    assert (reads[quiet]["unread"], reads[quiet]["mentions"], reads[quiet]["o"]) == (0, 0, head)
    # @here: from a facilitator it reaches the members online; from a member it is text
    member = await club.join(0, name="plain")
    await send(member, quiet, "@here anyone?")
    await send(owner, quiet, f"@{username(mentioned)} sentinel")
    before = await until(mentioned, "mention")
    assert [f["d"]["message"]["text"] for f in before if f.get("t") == "mention"] == [
        f"@{username(mentioned)} sentinel"
    ]
    here = await send(owner, quiet, "@here meeting now")
    for session in (mentioned, member):  # one event on the community's topic
        heard = await event(session, "mention")
        assert heard["ch"] == club.id and heard["d"]["message"] == here
    # someone outside the community is not mentioned: the next thing they hear is the DM
    outsider = await session_for(server, 1, "outsider")
    await send(owner, quiet, f"@{username(outsider)} are you there?")
    await owner.ok("dm.open", {"user": uid(outsider)})  # they share the first community
    assert "mention" not in kinds(await until(outsider, "dm.created"))
    # the author is never mentioned by their own message
    await send(owner, quiet, f"@{username(owner)} note to self")
    await owner.ok("read.mark", {"channel": club.general, "o": 1})
    assert "mention" not in kinds(await until(owner, "read.updated"))


async def reads_of(server, session, i: int) -> dict[str, dict[str, Any]]:
    """The read state a fresh identify of ``session``'s user on node i gives, by channel."""
    fresh = await connect(node(server, i), session.token)
    reads = {r["channel"]: r for r in fresh.identity["reads"]}
    await fresh.ws.close()
    return reads


async def test_read_markers_cap_at_the_head_never_move_back_and_reach_every_session(
    server,
) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    reader = await club.join(0, name="reader")
    other_tab = await connect(node(server, 1), reader.token)  # type: ignore[attr-defined]
    for i in range(3):
        await send(owner, club.general, f"news {i}")
    await send(reader, club.general, "my own message is never unread")
    head = (await owner.ok("history", {"channel": club.general, "limit": 1}))["events"][-1]["o"]
    reads = await reads_of(server, reader, 1)
    assert (reads[club.general]["o"], reads[club.general]["unread"]) == (0, 3)
    await reader.ok("read.mark", {"channel": club.general, "o": 2})
    heard = await event(other_tab, "read.updated")
    assert heard["ch"] == uid(reader) and heard["d"] == {"channel": club.general, "o": 2}
    assert (await event(reader, "read.updated"))["d"]["o"] == 2
    reads = await reads_of(server, reader, 0)
    assert reads[club.general]["o"] == 2
    await reader.ok("read.mark", {"channel": club.general, "o": 10**9})
    assert (await event(other_tab, "read.updated"))["d"] == {"channel": club.general, "o": head}
    await reader.ok("read.mark", {"channel": club.general, "o": 1})  # backwards: nothing
    await reader.ok("read.mark", {"channel": club.general, "o": 0})
    await reader.ok("read.mark", {"channel": club.general, "o": head})  # the same: nothing
    await send(owner, club.general, "after")
    await reader.ok("read.mark", {"channel": club.general, "o": head + 1})
    heard = await until(other_tab, "read.updated")
    assert [f["d"]["o"] for f in heard if f.get("t") == "read.updated"] == [head + 1]
    reads = await reads_of(server, reader, 1)
    assert (reads[club.general]["o"], reads[club.general]["unread"]) == (head + 1, 0)
    refused = await reader.command("read.mark", {"channel": "404", "o": 1})
    assert error(refused)[0] == "not_found"


# direct messages


async def test_a_dm_is_one_channel_per_pair_readable_by_those_two_only(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    friend = await club.join(1, name="friend")
    stranger = await session_for(server, 0, "stranger")  # in the default community only
    opened = await owner.ok("dm.open", {"user": uid(friend)})
    channel = opened["channel"]
    assert channel["kind"] == "dm" and sorted(channel["members"]) == sorted(
        [uid(owner), uid(friend)]
    )
    assert "community" not in channel
    heard = await event(friend, "dm.created")
    assert heard["ch"] == uid(friend) and heard["d"] == {"channel": channel}
    assert (await friend.ok("dm.open", {"user": uid(owner)}))["channel"] == channel
    assert (await owner.ok("dm.open", {"user": uid(friend)}))["channel"] == channel
    await friend.ok("subscribe", {"channel": channel["id"]})
    said = await send(owner, channel["id"], f"psst @{username(friend)}")
    assert (await event(friend, "message.created", ch=channel["id"]))["d"]["message"] == said
    assert (await event(friend, "mention"))["d"]["message"] == said
    # dm.created came once: the next user event is the sentinel
    await owner.ok("dm.open", {"user": uid(friend)})
    await friend.ok("read.mark", {"channel": channel["id"], "o": 1})
    assert "dm.created" not in kinds(await until(friend, "read.updated"))
    fresh = await connect(node(server, 0), friend.token)  # type: ignore[attr-defined]
    assert [d["id"] for d in fresh.identity["dms"]] == [channel["id"]]
    reads = {r["channel"]: r for r in fresh.identity["reads"]}
    assert reads[channel["id"]]["o"] == 1
    # the refusals
    assert error(await owner.command("dm.open", {"user": uid(owner)}))[0] == "bad_request"
    assert error(await owner.command("dm.open", {"user": "404"}))[0] == "not_found"
    for op, d in [
        ("history", {"channel": channel["id"]}),
        ("subscribe", {"channel": channel["id"]}),
        ("message.send", {"channel": channel["id"], "text": "let me in"}),
        ("typing.start", {"channel": channel["id"]}),
    ]:
        assert error(await stranger.command(op, d))[0] == "forbidden", op


async def invited(server, club: Club, i: int) -> RawSession:
    """A session of an account registered with an invite: in ``club`` only."""
    code = (await club.owner.ok("invite.create", {"community": club.id}))["invite"]["code"]
    name = f"only{os.getpid()}x{os.urandom(3).hex()}"
    status, body = http_json(
        "POST",
        node(server, i).http + "/api/v1/auth/register",
        {"username": name, "password": "correct horse", "invite": code},
    )
    assert status == 201, body
    return await connect(node(server, i), body["token"])


async def test_dm_open_needs_a_shared_community(server) -> None:
    clubs = [await Club.create(server, await session_for(server, i, "owner")) for i in (0, 1)]
    first, second = [await invited(server, club, i) for i, club in enumerate(clubs)]
    assert [c["id"] for c in first.identity["communities"]] == [clubs[0].id]
    refused = await first.command("dm.open", {"user": uid(second)})
    assert error(refused) == ("forbidden", "direct_message")
    assert error(await second.command("dm.open", {"user": uid(first)}))[0] == "forbidden"
    # toward a member of a shared community it works
    assert (await clubs[0].owner.ok("dm.open", {"user": uid(first)}))["channel"]["kind"] == "dm"


# typing


async def test_typing_reaches_other_subscribers_once_in_3_s_and_not_the_typer(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    typer = await club.join(1, name="typer")
    typer_tab = await connect(node(server, 0), typer.token)  # type: ignore[attr-defined]
    for session in (owner, typer_tab):
        await session.ok("subscribe", {"channel": club.general})
    await typer.ok("typing.start", {"channel": club.general})
    heard = await event(owner, "typing.started", ch=club.general)
    assert heard["d"] == {"user": uid(typer), "name": typer.identity["user"]["name"]}
    assert "o" not in heard
    await typer.ok("typing.start", {"channel": club.general})  # within 3 s: nothing
    await send(typer, club.general, "sentinel")
    assert "typing.started" not in kinds(await until(owner, "message.created"))
    # the typer's own other session hears nothing of it
    assert "typing.started" not in kinds(await until(typer_tab, "message.created"))
    # it is never stored
    events = await all_events(owner, club.general)
    assert "typing.started" not in [e["t"] for e in events]
    guest = await club.join(0, "guest", "guest")
    assert error(await guest.command("typing.start", {"channel": club.general})) == (
        "forbidden",
        "post",
    )


# search


async def test_search_finds_whole_words_by_channel_and_author_in_pages_and_only_readable(
    server,
) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    member = await club.join(1)
    notes = await club.channel("notes")
    texts = [
        (owner, club.general, "Walrus tusks are long"),
        (member, club.general, "a walrus sleeps"),
        (member, notes, "the WALRUS swims, the walrus eats"),
        (owner, notes, "walruses are plural"),
    ]
    sent = [await send(who, channel, text) for who, channel, text in texts]
    thread = await owner.ok(
        "thread.create", {"channel": club.general, "title": "t", "text": "walrus in a thread"}
    )
    in_thread = (await all_events(owner, thread["thread"]["id"]))[0]["d"]["message"]
    found = await member.ok("message.search", {"community": club.id, "query": "walrus"})
    ids = [m["id"] for m in found["messages"]]
    walrus = [sent[0], sent[1], sent[2], in_thread]  # not "walruses": whole words only
    assert ids == newest_first(walrus)
    assert all("o" in m for m in found["messages"])
    both = await member.ok("message.search", {"community": club.id, "query": "walrus SLEEPS"})
    assert [m["id"] for m in both["messages"]] == [sent[1]["id"]]
    in_notes = await member.ok(
        "message.search", {"community": club.id, "query": "walrus", "channel": notes}
    )
    assert [m["id"] for m in in_notes["messages"]] == [sent[2]["id"]]
    in_general = await member.ok(
        "message.search", {"community": club.id, "query": "walrus", "channel": club.general}
    )  # the channel's own messages, not its threads'
    assert [m["id"] for m in in_general["messages"]] == newest_first([sent[0], sent[1]])
    by_owner = await member.ok(
        "message.search", {"community": club.id, "query": "walrus", "author": uid(owner)}
    )
    assert [m["id"] for m in by_owner["messages"]] == newest_first([sent[0], in_thread])
    page = await member.ok("message.search", {"community": club.id, "query": "walrus", "limit": 3})
    assert [m["id"] for m in page["messages"]] == ids[:3]
    rest = await member.ok(
        "message.search",
        {"community": club.id, "query": "walrus", "limit": 3, "before": page["next"]},
    )
    assert [m["id"] for m in rest["messages"]] == ids[3:] and "next" not in rest
    # never a channel the searcher cannot read: another community, a DM
    elsewhere = await session_for(server, 0, "elsewhere")
    secret_club = await Club.create(server, elsewhere)
    await send(elsewhere, secret_club.general, "walrus secrets")
    dm = (await owner.ok("dm.open", {"user": uid(member)}))["channel"]
    await send(owner, dm["id"], "a private walrus")
    again = await member.ok("message.search", {"community": club.id, "query": "walrus"})
    assert [m["id"] for m in again["messages"]] == ids
    refused = await member.command("message.search", {"community": secret_club.id, "query": "x"})
    assert error(refused)[0] == "forbidden"
    other_channel = await member.command(
        "message.search",
        {"community": club.id, "query": "walrus", "channel": secret_club.general},
    )
    assert error(other_channel)[0] in ("forbidden", "bad_request")
    no_words = await member.command("message.search", {"community": club.id, "query": "!!"})
    assert error(no_words)[0] == "bad_request"


def newest_first(items: list[dict[str, Any]], ts: str = "ts") -> list[str]:
    """The ids of message or resource objects in the order of paged lists: ``ts``, then id."""
    return [m["id"] for m in sorted(items, key=lambda m: (m[ts], m["id"]), reverse=True)]


# resources


async def test_resources_are_added_listed_and_collected_from_messages(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    member = await club.join(1)
    guest = await club.join(0, "guest", "guest")
    added = await member.ok(
        "resource.add",
        {
            "community": club.id,
            "title": "The Style Guide",
            "url": "https://example.org/style",
            "note": "read before posting",
            "tags": ["Docs"],
        },
    )
    resource = added["resource"]
    assert {k: resource[k] for k in ("title", "url", "note", "tags", "by", "shares")} == {
        "title": "The Style Guide",
        "url": "https://example.org/style",
        "note": "read before posting",
        "tags": ["docs"],
        "by": uid(member),
        "shares": 0,
    }
    clash = await owner.command(
        "resource.add", {"community": club.id, "title": "again", "url": "https://example.org/style"}
    )
    assert error(clash)[0] == "conflict"
    refused = await guest.command("resource.add", {"community": club.id, "title": "x"})
    assert error(refused) == ("forbidden", "post")
    note = await owner.ok("resource.add", {"community": club.id, "title": "House rules"})
    shared = await send(
        member, club.general, "see https://example.org/a, and (https://example.org/b)."
    )
    await send(owner, club.general, "again: https://example.org/a")
    listed = (await guest.ok("resource.list", {"community": club.id}))["resources"]
    by_title = {r["title"]: r for r in listed}
    assert [r["id"] for r in listed] == newest_first(listed)
    assert sorted(by_title) == sorted(
        ["House rules", "The Style Guide", "https://example.org/a", "https://example.org/b"]
    )
    a = by_title["https://example.org/a"]
    assert (a["url"], a["shares"], a["by"]) == ("https://example.org/a", 2, uid(member))
    assert a["message"] == {"channel": club.general, "id": shared["id"]}
    assert by_title["https://example.org/b"]["shares"] == 1
    assert "note" not in by_title["House rules"] and "url" not in by_title["House rules"]
    assert note["resource"]["id"] == by_title["House rules"]["id"]
    tagged = await guest.ok("resource.list", {"community": club.id, "tag": "DOCS"})
    assert [r["id"] for r in tagged["resources"]] == [resource["id"]]
    query = await guest.ok("resource.list", {"community": club.id, "query": "BEFORE post"})
    assert [r["id"] for r in query["resources"]] == [resource["id"]]
    query = await guest.ok("resource.list", {"community": club.id, "query": "example.org/b"})
    assert [r["title"] for r in query["resources"]] == ["https://example.org/b"]
    first = await guest.ok("resource.list", {"community": club.id, "limit": 2})
    rest = await guest.ok(
        "resource.list", {"community": club.id, "limit": 2, "before": first["next"]}
    )
    assert [r["id"] for r in first["resources"] + rest["resources"]] == [r["id"] for r in listed]
    outsider = await session_for(server, 1, "outsider")
    assert error(await outsider.command("resource.list", {"community": club.id}))[0] == (
        "forbidden"
    )


# every command refuses bad payloads, and the server logs no traceback for any


def bad_payloads(ch: str, community: str, message: str, thread: str) -> list[tuple[str, Any, str]]:
    """(op, d, the code it answers) for payloads that break §5.9's field rules."""
    long = "x" * 201
    target = {"channel": ch, "message": message}
    return [
        ("thread.create", {"channel": ch}, "bad_request"),
        ("thread.create", {"channel": ch, "title": " "}, "bad_request"),
        ("thread.create", {"channel": ch, "title": long}, "too_large"),
        ("thread.create", {"channel": ch, "title": "t", "text": ""}, "bad_request"),
        ("thread.create", {"channel": ch, "title": "t", "message": 5}, "bad_request"),
        ("thread.create", {"channel": ch, "title": "t", "tags": "a"}, "bad_request"),
        ("thread.create", {"channel": ch, "title": "t", "tags": [5]}, "bad_request"),
        ("thread.create", {"channel": ch, "title": "t", "tags": [" "]}, "bad_request"),
        ("thread.create", {"channel": ch, "title": "t", "tags": ["x" * 33]}, "bad_request"),
        ("thread.create", {"channel": ch, "title": "t", "tags": list("abcdefghijk")}, "too_large"),
        ("thread.list", {"channel": ch, "limit": 0}, "bad_request"),
        ("thread.list", {"channel": ch, "limit": 101}, "bad_request"),
        ("thread.list", {"channel": ch, "before": "nonsense"}, "bad_request"),
        ("thread.list", {"channel": ch, "tag": 1}, "bad_request"),
        ("thread.list", {"channel": thread}, "bad_request"),  # threads hold no threads
        ("thread.update", {"thread": thread, "resolved": "yes"}, "bad_request"),
        ("thread.update", {"thread": thread, "title": ""}, "bad_request"),
        ("thread.update", {"thread": thread}, "bad_request"),
        ("thread.update", {"thread": ch, "resolved": True}, "bad_request"),  # not a thread
        ("thread.follow", {}, "bad_request"),
        ("thread.unfollow", {"thread": 7}, "bad_request"),
        ("message.send", {"channel": ch, "text": "x", "reply_to": 5}, "bad_request"),
        ("message.send", {"channel": ch, "text": "x", "reply_to": ""}, "bad_request"),
        ("message.edit", {**target}, "bad_request"),
        ("message.edit", {**target, "text": " "}, "bad_request"),
        ("message.edit", {**target, "text": "x" * 4001}, "too_large"),
        ("message.edit", {"channel": ch, "text": "x"}, "bad_request"),
        ("message.delete", {"message": message}, "bad_request"),
        ("reaction.add", {**target}, "bad_request"),
        ("reaction.add", {**target, "emoji": ""}, "bad_request"),
        ("reaction.add", {**target, "emoji": "  "}, "bad_request"),
        ("reaction.add", {**target, "emoji": "x" * 33}, "too_large"),
        ("reaction.remove", {**target, "emoji": 1}, "bad_request"),
        ("message.pin", {"channel": ch, "message": None}, "bad_request"),
        ("message.unpin", {"channel": ch}, "bad_request"),
        ("channel.pins", {}, "bad_request"),
        ("channel.pins", {"channel": "x" * 65}, "too_large"),
        ("dm.open", {}, "bad_request"),
        ("dm.open", {"user": 5}, "bad_request"),
        ("typing.start", {"channel": ""}, "bad_request"),
        ("read.mark", {"channel": ch}, "bad_request"),
        ("read.mark", {"channel": ch, "o": -1}, "bad_request"),
        ("read.mark", {"channel": ch, "o": "1"}, "bad_request"),
        ("read.mark", {"channel": ch, "o": 1.5}, "bad_request"),
        ("read.mark", {"channel": ch, "o": True}, "bad_request"),
        ("message.search", {"community": community}, "bad_request"),
        ("message.search", {"community": community, "query": ""}, "bad_request"),
        ("message.search", {"community": community, "query": "?!"}, "bad_request"),
        ("message.search", {"community": community, "query": long}, "too_large"),
        ("message.search", {"community": community, "query": "a", "limit": 0}, "bad_request"),
        ("message.search", {"community": community, "query": "a", "before": "x"}, "bad_request"),
        ("message.search", {"community": community, "query": "a", "author": 1}, "bad_request"),
        ("resource.add", {"community": community}, "bad_request"),
        ("resource.add", {"community": community, "title": ""}, "bad_request"),
        ("resource.add", {"community": community, "title": long}, "too_large"),
        ("resource.add", {"community": community, "title": "t", "url": "ftp://x"}, "bad_request"),
        ("resource.add", {"community": community, "title": "t", "url": "a b"}, "bad_request"),
        (
            "resource.add",
            {"community": community, "title": "t", "url": "https://x.org/" + "a" * 2000},
            "too_large",
        ),
        ("resource.add", {"community": community, "title": "t", "note": "n" * 4001}, "too_large"),
        ("resource.add", {"community": community, "title": "t", "tags": [""]}, "bad_request"),
        ("resource.list", {"community": community, "limit": 101}, "bad_request"),
        ("resource.list", {"community": community, "before": "soon"}, "bad_request"),
        ("resource.list", {"community": community, "tag": 3}, "bad_request"),
        ("resource.list", {}, "bad_request"),
    ]


async def test_every_discussion_command_refuses_bad_payloads_without_a_traceback(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    message = await send(owner, club.general, "target")
    thread = await owner.ok("thread.create", {"channel": club.general, "title": "t"})
    log = ServerLog(server)
    answers = []
    for op, d, code in bad_payloads(club.general, club.id, message["id"], thread["thread"]["id"]):
        answer = await owner.command(op, d)
        answers.append((op, d, answer["op"], answer["d"].get("code")))
        assert answer["op"] == "error" and answer["d"]["code"] == code, (op, d, answer)
        assert answer["d"]["message"], answer
    await owner.ok("ping")  # still open and answering
    log.assert_no_traceback()
    assert "internal" not in [a[3] for a in answers]
