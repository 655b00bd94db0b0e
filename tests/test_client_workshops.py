"""The Python client's workshop commands, and the workshop it keeps per subscribed channel.

Each test makes a community of its own with a workshop channel. Ann (its owner, so
a facilitator) is on the first node, Bob and Cara on the last: in the scaled
deployment, what Ann does reaches them across nodes. The kept state is checked the
way Zulip's ``verify_action`` does: after the actions, the workshop a client folded
from its events equals what ``workshop.state`` answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from clients import Client, CommandError
from tests.conftest import AgoraProcess, PlugTo, eventually, new_user, timeout


@dataclass
class Room:
    ann: Client
    bob: Client
    cara: Client
    community: str
    channel: str  # the workshop channel
    general: str


@contextlib.asynccontextmanager
async def workshop_room(server: AgoraProcess, bob_url: str | None = None) -> AsyncIterator[Room]:
    """Ann (owner), Bob and Cara in a new community with a workshop channel, each
    subscribed to it. Bob connects to ``bob_url`` if given (a ``Plug``)."""
    accounts = [
        await new_user(server.nodes[0], "ann"),
        await new_user(server.nodes[-1], "bob"),
        await new_user(server.nodes[-1], "cara"),
    ]
    urls = [server.nodes[0].ws, bob_url or server.nodes[-1].ws, server.nodes[-1].ws]
    async with (
        Client(urls[0], accounts[0]["token"]) as ann,
        Client(urls[1], accounts[1]["token"]) as bob,
        Client(urls[2], accounts[2]["token"]) as cara,
    ):
        club = await ann.create_community(f"workshops-{secrets.token_hex(4)}")
        invite = await ann.create_invite(club["id"])
        for member in (bob, cara):
            await member.accept_invite(invite["code"])
        channel = await ann.create_channel(club["id"], "live-room", kind="workshop")
        for member in (ann, bob, cara):
            await member.subscribe(channel["id"])
        yield Room(
            ann, bob, cara, club["id"], channel["id"], ann.channel_named("general", club["id"])
        )


def uid(client: Client) -> str:
    return client.identity["user"]["id"]


async def first_message(client: Client, channel: str, wait: float = 10) -> dict[str, Any]:
    """The first message of a channel or thread, once there is one (a recap thread is
    written just after ``workshop.ended``), for at most ``wait`` (scaled) seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout(wait)
    while True:
        with contextlib.suppress(CommandError):  # not_found until the thread is written
            events = await client.history(channel)
            created = [e.d["message"] for e in events if e.t == "message.created"]
            if created:
                return created[0]
        assert loop.time() < deadline, f"no message in {channel}"
        await asyncio.sleep(0.05)


async def agrees_with_the_server(client: Client, channel: str) -> None:
    """The kept workshop, once it has every event the server's state has, equals it."""
    state = await client.workshop_state(channel)
    followed = client.workshops[channel]
    await eventually(lambda: followed.offset >= state["offset"], "the events up to the state")
    state = await client.workshop_state(channel)  # the same, unless more happened
    assert followed.workshop == state["workshop"]
    assert followed.mine == state["mine"]


async def test_the_kept_workshop_is_the_fold_of_its_events(server: AgoraProcess) -> None:
    async with workshop_room(server) as room:
        ann, bob, cara, ch = room.ann, room.bob, room.cara, room.channel
        assert bob.workshops[ch].workshop is None  # a workshop channel, nothing live
        assert room.general not in bob.workshops  # a text channel is not followed

        started = await ann.workshop_start(
            ch, "Planning day", ["Check-in", {"title": "Ideas", "minutes": 10}, "Wrap-up"]
        )
        assert started["title"] == "Planning day" and started["current"] == -1
        assert [item["title"] for item in started["agenda"]] == ["Check-in", "Ideas", "Wrap-up"]
        await eventually(lambda: bob.workshops[ch].live, "workshop.started at Bob's")
        assert bob.workshops[ch].workshop["id"] == started["id"]

        await ann.agenda_next(ch)
        await eventually(
            lambda: (bob.workshops[ch].current_item() or {}).get("title") == "Check-in",
            "the first agenda item",
        )
        await ann.agenda_next(ch)  # a timeboxed item starts its timer
        await eventually(
            lambda: (bob.workshops.workshop(ch) or {}).get("timer") is not None, "the item's timer"
        )
        assert bob.workshops[ch].workshop["timer"]["label"] == "Ideas"

        await bob.hand_raise(ch)
        await cara.hand_raise(ch)
        await eventually(lambda: bob.workshops[ch].place_in_queue(uid(cara)) == 2, "two hands")
        assert bob.workshops[ch].place_in_queue(uid(bob)) == 1
        await ann.hand_call(ch)
        await eventually(
            lambda: bob.workshops[ch].workshop["hands"]["speaking"] == uid(bob), "Bob speaking"
        )
        assert bob.workshops[ch].place_in_queue(uid(bob)) is None
        assert bob.workshops[ch].place_in_queue(uid(cara)) == 1
        await cara.hand_lower(ch)
        await ann.hand_order(ch, "fair")

        poll = await ann.poll_create(ch, "Which idea first?", ["Garden", "Library", "Cafe"])
        assert poll["tallies"] == [0, 0, 0] and poll["closed"] is False
        voted = await bob.poll_vote(ch, poll["id"], [1])
        assert voted["tallies"] == [0, 1, 0]
        assert bob.workshops[ch].ballot(poll["id"]) == [1]
        await cara.poll_vote(ch, poll["id"], [1])
        await bob.poll_vote(ch, poll["id"], [2])  # a later ballot replaces the earlier
        await eventually(
            lambda: (cara.workshops[ch].poll(poll["id"]) or {}).get("tallies") == [0, 1, 1],
            "the tallies at Cara's",
        )
        closed = await ann.poll_close(ch, poll["id"])
        assert closed["closed"] is True and closed["voters"] == 2
        secret = await ann.poll_create(ch, "Anonymous?", ["yes", "no"], anonymous=True)
        await bob.poll_vote(ch, secret["id"], [0])
        assert bob.workshops[ch].ballot(secret["id"]) == [0]  # while it is open
        assert (await bob.workshop_state(ch))["mine"]["ballots"][secret["id"]] == [0]
        await ann.poll_close(ch, secret["id"])
        await eventually(lambda: bob.workshops[ch].ballot(secret["id"]) is None, "forgotten")

        asked = await cara.question_ask(ch, "Who pays for the cafe?")
        other = await bob.question_ask(ch, "Can we meet on Sundays?")
        await bob.question_upvote(ch, asked["id"])
        assert bob.workshops[ch].upvoted(asked["id"])
        await ann.question_upvote(ch, asked["id"])
        await ann.question_unvote(ch, asked["id"])
        await ann.question_answer(ch, asked["id"], "The community fund.")
        await bob.question_hide(ch, other["id"])  # a withdrawal of one's own
        await eventually(
            lambda: (bob.workshops[ch].question(other["id"]) or {}).get("hidden") is True,
            "the hidden question",
        )
        await eventually(
            lambda: bob.workshops[ch].workshop["questions"][0]["id"] == asked["id"],
            "most votes first",
        )

        await ann.timer_cancel(ch)  # the item's timer
        timer = await ann.timer_start(ch, 300, label="Quiet writing")
        extended = await ann.timer_extend(ch, 60)
        assert extended["id"] == timer["id"] and extended["ends_at"] == timer["ends_at"] + 60_000
        await cara.pulse_send(ch, "slower")
        await eventually(
            lambda: bob.workshops[ch].workshop["pulse"]["slower"] == 1, "the pulse at Bob's"
        )
        for member in (ann, bob, cara):
            await agrees_with_the_server(member, ch)


async def test_a_late_subscriber_starts_from_the_snapshot_with_its_own_ballots(
    server: AgoraProcess,
) -> None:
    async with workshop_room(server) as room:
        ann, bob, ch = room.ann, room.bob, room.channel
        await ann.workshop_start(ch, "Late joiners", ["One", "Two"])
        poll = await ann.poll_create(ch, "Ready?", ["Yes", "No"], multi=True)
        question = await ann.question_ask(ch, "Anything to add?")
        await bob.unsubscribe(ch)
        assert ch not in bob.workshops
        # what Bob does while not subscribed is in the next snapshot's `mine`
        await bob.poll_vote(ch, poll["id"], [0, 1])
        await bob.question_upvote(ch, question["id"])
        await ann.agenda_next(ch)
        await ann.hand_raise(ch)
        reply = await bob.subscribe(ch)
        assert reply["workshop"]["current"] == 0  # as of the reply's offset
        followed = bob.workshops[ch]
        assert followed.offset == reply["offset"]
        assert followed.ballot(poll["id"]) == [0, 1]
        assert followed.upvoted(question["id"])
        assert followed.workshop["hands"]["queue"][0]["user"] == uid(ann)
        await ann.agenda_next(ch)
        await eventually(
            lambda: followed.workshop["current"] == 1, "agenda.moved after subscribing"
        )
        await agrees_with_the_server(bob, ch)


async def test_the_kept_workshop_is_right_again_after_a_reconnect(
    server: AgoraProcess, plug_to: PlugTo
) -> None:
    plug = await plug_to(server.nodes[-1])
    async with workshop_room(server, bob_url=plug.ws) as room:
        ann, bob, ch = room.ann, room.bob, room.channel
        await ann.workshop_start(ch, "Resilient", [{"title": "Only item", "minutes": 5}])
        poll = await ann.poll_create(ch, "Tea or coffee?", ["Tea", "Coffee"])
        await eventually(lambda: bob.workshops[ch].poll(poll["id"]) is not None, "the poll")
        await plug.unplug()
        await eventually(lambda: not bob.connected, "Bob's connection dropped")
        # while Bob is away
        await ann.agenda_next(ch)
        await room.cara.poll_vote(ch, poll["id"], [0])
        asked = await room.cara.question_ask(ch, "Is there cake?")
        await plug.plug()
        await eventually(lambda: bob.connected and bob.connections == 2, "Bob reconnected")
        await eventually(lambda: bob.workshops[ch].question(asked["id"]) is not None, "the news")
        assert bob.workshops[ch].poll(poll["id"])["tallies"] == [1, 0]
        assert bob.workshops[ch].workshop["current"] == 0
        await agrees_with_the_server(bob, ch)


async def test_ending_gives_the_recap_and_its_thread_and_clears_the_state(
    server: AgoraProcess,
) -> None:
    async with workshop_room(server) as room:
        ann, bob, cara, ch = room.ann, room.bob, room.cara, room.channel
        started = await ann.workshop_start(ch, "Retro", ["What went well"])
        await ann.agenda_next(ch)
        await bob.hand_raise(ch)
        await ann.hand_call(ch)
        poll = await ann.poll_create(ch, "Again next month?", ["Yes", "No"])
        await cara.poll_vote(ch, poll["id"], [0])
        open_question = await cara.question_ask(ch, "Where do we meet next?")
        await bob.question_upvote(ch, open_question["id"])
        await bob.send_message(ch, "It went well.")
        recap = await ann.workshop_end(ch)
        assert recap["title"] == "Retro" and recap["thread"]
        assert recap["channel"] == ch
        assert recap["speakers"] == [{"user": uid(bob), "turns": 1}]
        assert recap["polls"][0]["closed"] is True and recap["polls"][0]["tallies"] == [1, 0]
        assert [q["id"] for q in recap["questions"]] == [open_question["id"]]
        by_user = {p["user"]: p for p in recap["participation"]}
        assert by_user[uid(bob)]["messages"] == 1 and by_user[uid(bob)]["upvotes"] == 1
        assert by_user[uid(cara)]["votes"] == 1 and by_user[uid(cara)]["questions"] == 1

        await eventually(lambda: not bob.workshops[ch].live, "workshop.ended at Bob's")
        assert bob.workshops[ch].recap is not None
        assert bob.workshops[ch].recap["thread"] == recap["thread"]
        assert bob.workshops[ch].mine == {"ballots": {}, "upvoted": []}
        assert (await bob.workshop_state(ch))["workshop"] is None

        first = await first_message(bob, recap["thread"])  # written just after the event
        assert first["recap"]["thread"] == recap["thread"]
        assert "Retro" in first["text"]
        # a second workshop can start; the kept state follows it
        again = await ann.workshop_start(ch, "Retro, again")
        assert again["id"] != started["id"]
        await eventually(
            lambda: (bob.workshops.workshop(ch) or {}).get("id") == again["id"], "the next one"
        )


async def test_breakouts_reports_and_participation(server: AgoraProcess) -> None:
    async with workshop_room(server) as room:
        ann, bob, cara, ch = room.ann, room.bob, room.cara, room.channel
        await ann.workshop_start(ch, "Small groups")
        # a subscription made while the workshop is live counts as attending (one made
        # before it started does not, on this server)
        await cara.subscribe(ch)
        breakout = await ann.breakout_open(ch, 2, minutes=5, assignment=[[uid(bob)], [uid(cara)]])
        groups = breakout["groups"]
        assert [g["members"] for g in groups] == [[uid(bob)], [uid(cara)]]
        assert [g["name"] for g in groups] == ["Group 1", "Group 2"]
        # breakout.opened and the timer's timer.started come from one commit, one after
        # the other: wait for both
        await eventually(
            lambda: (
                bob.workshops[ch].workshop["breakout"] is not None
                and bob.workshops[ch].workshop["timer"] is not None
            ),
            "the groups and their timer",
        )
        assert bob.workshops[ch].workshop["timer"]["label"] == "Breakouts"
        bobs_group = groups[0]["channel"]
        with pytest.raises(CommandError) as refused:
            await cara.subscribe(bobs_group)  # only its members and facilitators
        assert refused.value.code == "forbidden"
        await bob.subscribe(bobs_group)
        await ann.breakout_broadcast(ch, "Five minutes left")
        await bob.breakout_report(bobs_group, "We chose the garden.")
        await eventually(
            lambda: (
                bob.workshops[ch].workshop["reports"]
                == [{"group": groups[0]["id"], "text": "We chose the garden.", "by": uid(bob)}]
            ),
            "the report",
        )
        history = await bob.history(bobs_group)
        assert [e.d["message"]["text"] for e in history if e.t == "message.created"] == [
            "Five minutes left"
        ]
        closed = await ann.breakout_close(ch)
        assert closed["reports"][0]["text"] == "We chose the garden."
        await eventually(lambda: bob.workshops[ch].workshop["breakout"] is None, "closed")
        await agrees_with_the_server(bob, ch)
        await ann.workshop_end(ch)

        participation = await ann.community_participation(room.community, sessions=1)
        assert [s["title"] for s in participation["sessions"]] == ["Small groups"]
        members = {m["user"]: m for m in participation["members"]}
        assert members[uid(bob)]["attended"] == 1
        assert uid(cara) in participation["silent"]  # attended, took no part
        with pytest.raises(CommandError) as refused:
            await bob.community_participation(room.community)
        assert refused.value.code == "forbidden"


async def test_errors_name_what_is_wrong(server: AgoraProcess) -> None:
    async with workshop_room(server) as room:
        ann, bob, ch = room.ann, room.bob, room.channel

        async def code_of(command: object) -> str:
            with pytest.raises(CommandError) as refused:
                await command  # type: ignore[misc]
            return refused.value.code

        assert await code_of(bob.hand_raise(ch)) == "conflict"  # nothing live
        assert await code_of(bob.workshop_start(ch, "Mine")) == "forbidden"
        assert await code_of(ann.workshop_start(room.general, "In a text channel")) == "bad_request"
        await ann.workshop_start(ch, "Strict", ["Only"])
        assert await code_of(ann.workshop_start(ch, "A second")) == "conflict"
        await ann.agenda_next(ch)
        assert await code_of(ann.agenda_next(ch)) == "conflict"  # past the last item
        assert await code_of(ann.agenda_goto(ch, 5)) == "bad_request"
        assert await code_of(ann.hand_call(ch)) == "conflict"  # nobody in the queue
        assert await code_of(bob.poll_create(ch, "Mine?", ["a", "b"])) == "forbidden"
        poll = await ann.poll_create(ch, "One choice", ["a", "b"])
        assert await code_of(bob.poll_vote(ch, poll["id"], [0, 1])) == "bad_request"
        assert await code_of(bob.poll_vote(ch, "1234", [0])) == "not_found"
        await ann.poll_close(ch, poll["id"])
        assert await code_of(bob.poll_vote(ch, poll["id"], [0])) == "conflict"
        assert await code_of(ann.timer_cancel(ch)) == "conflict"
        await ann.timer_start(ch, 60)
        assert await code_of(ann.timer_start(ch, 60)) == "conflict"
        assert await code_of(bob.hand_lower(ch, all=True)) == "forbidden"
        assert await code_of(bob.question_upvote(ch, "1234")) == "not_found"
        assert bob.workshops[ch].ballot(poll["id"]) is None  # refused votes are not kept
