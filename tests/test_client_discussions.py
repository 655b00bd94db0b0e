"""The Python client's discussion commands, and the state it keeps from identify and events.

Each test makes a community of its own (any member may), so that its channels hold
only what the test wrote. Ann is on the first node and Bob on the last: in the
scaled deployment, what one does reaches the other across nodes.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator

from clients import Client
from tests.conftest import AgoraProcess, eventually, new_user


@contextlib.asynccontextmanager
async def two_in_a_club(
    server: AgoraProcess,
) -> AsyncIterator[tuple[Client, Client, str]]:
    """Ann (the club's owner) and Bob in a new community; its ``general`` id."""
    ann_account = await new_user(server.nodes[0], "ann")
    bob_account = await new_user(server.nodes[-1], "bob")
    async with (
        Client(server.nodes[0].ws, ann_account["token"]) as ann,
        Client(server.nodes[-1].ws, bob_account["token"]) as bob,
    ):
        club = await ann.create_community(f"club-{secrets.token_hex(4)}")
        invite = await ann.create_invite(club["id"])
        await bob.accept_invite(invite["code"])
        yield ann, bob, ann.channel_named("general", club["id"])


def user_id(client: Client) -> str:
    return client.identity["user"]["id"]


async def reconnected(server: AgoraProcess, client: Client) -> Client:
    """Another session of the same user, identified (the caller closes it)."""
    again = Client(server.nodes[0].ws, client.token)
    await again.connect()
    return again


async def test_thread_create_list_follow_and_activity_are_kept_in_state(
    server: AgoraProcess,
) -> None:
    async with two_in_a_club(server) as (ann, bob, general):
        await bob.subscribe(general)
        question = await ann.send_message(general, "Which chapter first?")
        thread = await ann.thread_create(general, "Chapter order", message=question["id"])
        assert thread["kind"] == "thread" and thread["parent"] == general
        assert thread["message"] == question["id"] and thread["title"] == "Chapter order"
        assert thread["id"] in ann.threads  # the creator follows it
        # Bob hears thread.created; the message it started from now names the thread
        await eventually(lambda: thread["id"] in bob.discussions.known_threads, "thread.created")
        await eventually(
            lambda: bob.messages.get(question["id"], {}).get("thread") == thread["id"],
            "the message naming its thread",
        )
        assert thread["id"] not in bob.threads  # Bob does not follow it
        page = await bob.thread_list(general)
        assert [s["thread"]["id"] for s in page["threads"]] == [thread["id"]]
        await bob.thread_follow(thread["id"])
        assert thread["id"] in bob.threads
        reply = await ann.send_message(thread["id"], "Start with chapter two.")
        await eventually(lambda: bob.reads.get(thread["id"]) is not None, "thread.activity")
        await eventually(lambda: bob.reads[thread["id"]].unread == 1, "one unread in the thread")
        assert bob.messages[reply["id"]]["text"] == "Start with chapter two."
        # the follow is the server's: a new session has it from identify
        again = await reconnected(server, bob)
        try:
            assert thread["id"] in again.threads
            assert again.reads[thread["id"]].unread == 1
            # one session's unfollow and follow reach the user's other sessions
            await bob.thread_unfollow(thread["id"])
            assert thread["id"] not in bob.threads
            await eventually(lambda: thread["id"] not in again.threads, "unfollowed elsewhere")
            await bob.thread_follow(thread["id"])
            await eventually(lambda: thread["id"] in again.threads, "followed elsewhere")
        finally:
            await again.close()
        updated = await ann.thread_update(thread["id"], resolved=True, tags=["Plot"])
        assert updated["resolved"] is True and updated["tags"] == ["plot"]
        assert ann.threads[thread["id"]]["resolved"] is True


async def test_edit_delete_react_and_pin_are_seen_by_a_second_client(
    server: AgoraProcess,
) -> None:
    async with two_in_a_club(server) as (ann, bob, general):
        await bob.subscribe(general)
        sent = await ann.send_message(general, "Meeting at 7")
        await eventually(lambda: sent["id"] in bob.messages, "the message at Bob's")
        answer = await bob.send_message(general, "I will be there", reply_to=sent["id"])
        assert answer["reply_to"] == sent["id"]

        edited = await ann.edit(general, sent["id"], "Meeting at 8")
        assert edited["text"] == "Meeting at 8" and "edited_ts" in edited
        await eventually(lambda: bob.messages[sent["id"]]["text"] == "Meeting at 8", "the edit")
        assert bob.messages[sent["id"]]["edited_ts"] == edited["edited_ts"]

        await bob.react(general, sent["id"], "👍")
        await ann.react(general, sent["id"], "👍")
        await eventually(
            lambda: (
                bob.messages[sent["id"]]["reactions"]
                == [{"emoji": "👍", "count": 2, "users": [user_id(bob), user_id(ann)]}]
            ),
            "two reactions",
        )
        await bob.unreact(general, sent["id"], "👍")
        await eventually(
            lambda: (
                bob.messages[sent["id"]]["reactions"]
                == [{"emoji": "👍", "count": 1, "users": [user_id(ann)]}]
            ),
            "one reaction left",
        )

        await ann.pin(general, sent["id"])
        await eventually(lambda: bob.messages[sent["id"]].get("pinned") is True, "the pin")
        pins = await bob.pins(general)
        assert [m["id"] for m in pins] == [sent["id"]] and pins[0]["o"] > 0
        await ann.unpin(general, sent["id"])
        await eventually(lambda: "pinned" not in bob.messages[sent["id"]], "the unpin")

        await ann.delete(general, sent["id"])
        await eventually(lambda: bob.messages[sent["id"]].get("deleted") is True, "the delete")
        gone = bob.messages[sent["id"]]
        assert gone["text"] == "" and gone["reactions"] == []


async def test_unread_counts_come_from_identify_and_drop_after_mark_read(
    server: AgoraProcess,
) -> None:
    async with two_in_a_club(server) as (ann, bob, general):
        for n in range(3):
            await bob.send_message(general, f"unread {n}")
        await ann.send_message(general, "my own does not count")
        again = await reconnected(server, ann)
        try:
            assert again.reads[general].unread == 3 and again.reads[general].mentions == 0
            await again.subscribe(general)
            await bob.send_message(general, "one more")
            await eventually(lambda: again.reads[general].unread == 4, "a fourth unread")
            marked = await again.mark_read(general)
            assert marked == again.offsets[general]
            # every session of Ann hears read.updated
            await eventually(lambda: again.reads[general].unread == 0, "read in this session")
            # (Ann's first session identified before the club: it learns of it by the event)
            await eventually(
                lambda: general in ann.reads and ann.reads[general].o == marked,
                "read.updated elsewhere",
            )
            assert ann.reads[general].unread == 0
        finally:
            await again.close()
        fresh = await reconnected(server, ann)
        try:
            assert fresh.reads[general].o == marked and fresh.reads[general].unread == 0
        finally:
            await fresh.close()


async def test_dms_and_the_mention_count_survive_a_reconnect(server: AgoraProcess) -> None:
    async with two_in_a_club(server) as (ann, bob, general):
        dm = await ann.dm_open(user_id(bob))
        assert dm["kind"] == "dm" and sorted(dm["members"]) == sorted([user_id(ann), user_id(bob)])
        assert dm["id"] in ann.dms
        await eventually(lambda: dm["id"] in bob.dms, "dm.created")
        assert (await ann.dm_open(user_id(bob)))["id"] == dm["id"]
        await bob.subscribe(dm["id"])
        bob_name = bob.identity["user"]["username"]
        await ann.send_message(dm["id"], f"hi @{bob_name}, a word in private")
        await eventually(lambda: bob.discussions.mentions(dm["id"]) == 1, "the mention")
        assert bob.discussions.unread(dm["id"]) == 1  # counted once, heard twice
        await ann.send_message(general, f"@{bob_name} see the club")
        await eventually(lambda: bob.discussions.mentions(general) == 1, "a mention in general")
        again = await reconnected(server, bob)
        try:
            assert dm["id"] in again.dms
            assert again.reads[dm["id"]].mentions == 1 and again.reads[general].mentions == 1
            await again.mark_read(general)
            await eventually(lambda: again.reads[general].mentions == 0, "the mention read")
        finally:
            await again.close()


async def test_search_finds_messages_and_resources_are_added_and_listed(
    server: AgoraProcess,
) -> None:
    async with two_in_a_club(server) as (ann, bob, general):
        club = ann.community_of(general)
        assert club is not None
        word = f"zebra{secrets.token_hex(3)}"
        sent = await ann.send_message(general, f"the {word} chapter")
        await ann.send_message(general, "nothing to find here")
        found = await bob.search(club, word)
        assert [m["id"] for m in found["messages"]] == [sent["id"]]
        assert found["messages"][0]["o"] > 0 and sent["id"] in bob.messages
        resource = await bob.resource_add(
            club, "Reading list", url="https://example.org/list", tags=["Books"]
        )
        assert resource["tags"] == ["books"] and resource["by"] == user_id(bob)
        await ann.send_message(general, "see https://example.org/shared, it helps")
        listed = await ann.resource_list(club)
        urls = [r.get("url") for r in listed["resources"]]
        assert "https://example.org/list" in urls and "https://example.org/shared" in urls
        tagged = await ann.resource_list(club, tag="books")
        assert [r["id"] for r in tagged["resources"]] == [resource["id"]]


async def test_typing_reaches_the_other_subscriber(server: AgoraProcess) -> None:
    async with two_in_a_club(server) as (ann, bob, general):
        await bob.subscribe(general)
        await ann.typing(general)
        while True:
            event = await bob.next_event()
            if getattr(event, "t", None) == "typing.started":
                break
        assert event.d["user"] == user_id(ann)  # type: ignore[union-attr]


async def test_a_deleted_mention_no_longer_counts_in_the_client(server: AgoraProcess) -> None:
    async with two_in_a_club(server) as (ann, bob, general):
        await bob.subscribe(general)
        regretted = await ann.send_message(general, f"@{bob.identity['user']['username']} hm")
        await eventually(lambda: bob.discussions.mentions(general) == 1, "the mention")
        assert bob.discussions.unread(general) == 1
        await ann.delete(general, regretted["id"])  # a deleted text mentions nobody
        await eventually(lambda: bob.discussions.mentions(general) == 0, "the mention gone")
        assert bob.discussions.unread(general) == 0


async def test_a_deleted_mention_no_longer_counts_after_a_reconnect(server: AgoraProcess) -> None:
    async with two_in_a_club(server) as (ann, bob, general):
        regretted = await ann.send_message(general, f"@{bob.identity['user']['username']} hm")
        await ann.delete(general, regretted["id"])
        again = await reconnected(server, bob)
        try:
            assert again.reads[general].unread == 0
            assert again.reads[general].mentions == 0
        finally:
            await again.close()
