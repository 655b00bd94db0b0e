"""``agora chat`` in a workshop channel, driven in a pseudo-terminal against real servers.

As in ``test_terminal``: the real ``agora chat`` in a pty, rendered by pyte, talking
to the first node; the facilitator and the other people are Python ``Client``s on
the last node, so in the scaled deployment what the screen shows has crossed
between nodes. The workshop's side panel is read off the screen; what the
terminal's commands did is read from the facilitator's kept workshop.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from clients import Client
from tests.conftest import AgoraProcess, eventually, new_user
from tests.test_terminal import Terminal, nodes


def panels(screen: str) -> int:
    """How many bordered panes side by side: 3 with the workshop panel."""
    return screen.splitlines()[0].count("╮")


@dataclass
class Workshop:
    terminal: Terminal
    account: dict[str, Any]  # the terminal's user
    ann: Client  # the community's owner
    channel: str
    name: str  # the workshop channel's name
    community: str


@contextlib.asynccontextmanager
async def in_a_workshop_channel(
    server: AgoraProcess, chat: Callable[..., Terminal], *, role: str = "member"
) -> AsyncIterator[Workshop]:
    """Ann's community with a workshop channel, and ``agora chat`` of a member (with
    ``role``) showing that channel."""
    tui, elsewhere = nodes(server)
    ann_account = await new_user(elsewhere, "ann")
    account = await new_user(elsewhere, "tui")
    name = f"room-{secrets.token_hex(3)}"
    async with Client(elsewhere.ws, ann_account["token"]) as ann:
        club = await ann.create_community(f"Workshops {secrets.token_hex(3)}")
        channel = await ann.create_channel(club["id"], name, kind="workshop")
        invite = await ann.create_invite(club["id"])
        async with Client(elsewhere.ws, account["token"]) as member:
            await member.accept_invite(invite["code"])
        if role != "member":
            await ann.set_role(club["id"], account["user"]["id"], role)
        await ann.subscribe(channel["id"])
        terminal = chat("--server", tui.http, "--token", account["token"], "--channel", name)
        await terminal.see("● connected", f"#{name} · ")
        yield Workshop(terminal, account, ann, channel["id"], name, club["id"])


@pytest.fixture
async def room(server: AgoraProcess, chat: Callable[..., Terminal]) -> AsyncIterator[Workshop]:
    """A member's ``agora chat`` in a workshop channel (see ``in_a_workshop_channel``)."""
    async with in_a_workshop_channel(server, chat) as room:
        yield room


async def test_a_member_follows_the_workshop_and_raises_a_hand_votes_asks_and_upvotes(
    room: Workshop,
) -> None:
    terminal, ann, ch = room.terminal, room.ann, room.channel
    me = room.account["user"]["id"]
    terminal.type("/hand")
    await terminal.see("no workshop is live here")
    assert panels(terminal.text) == 2  # no workshop, no panel
    await ann.workshop_start(ch, "Garden plan", ["Intro", {"title": "Ideas", "minutes": 9}])
    await terminal.see("Workshop: Garden plan", "1. Intro", "2. Ideas (9 min)")
    await terminal.see("started 'Garden")  # a line in the transcript
    await ann.agenda_next(ch)
    await terminal.see("▶ 1. Intro", "agenda item 1: Intro")
    await ann.agenda_next(ch)
    await terminal.see("▶ 2. Ideas", "✓ 1. Intro", "Timer: Ideas 8:5")  # counting down

    terminal.type("/hand")
    await terminal.see("you raised your hand", "your hand is 1st in line")
    await eventually(lambda: ann.workshops[ch].place_in_queue(me) == 1, "the hand at Ann's")
    await ann.hand_raise(ch)
    await terminal.see(f"2. {ann.identity['user']['name']}")
    terminal.type("/hand")
    await terminal.see("you lowered your hand")
    await eventually(lambda: ann.workshops[ch].place_in_queue(me) is None, "lowered")

    await ann.poll_create(ch, "Where first?", ["Beds", "Pond"])
    await terminal.see("Poll 1 (open, 0 votes)", "Where first?", "poll: Where first? (/vote 1 N)")
    terminal.type("/vote 1 2")
    await terminal.see("you voted in poll 1: Pond", "2. Pond █", "Poll 1 (open, 1 vote)")
    await eventually(
        lambda: ann.workshops[ch].workshop["polls"][0]["tallies"] == [0, 1], "the vote"
    )
    terminal.type("/vote 1 7")
    await terminal.see("poll 1 has options 1 to 2")

    asked = await ann.question_ask(ch, "Who waters?")
    await terminal.see("1. △0 Who waters?")
    terminal.type("/ask Can kids join?")
    await terminal.see("2. △0 Can kids join?")
    await eventually(lambda: len(ann.workshops[ch].workshop["questions"]) == 2, "asked")
    mine = next(q for q in ann.workshops[ch].workshop["questions"] if q["id"] != asked["id"])
    assert mine["text"] == "Can kids join?" and mine["by"] == me
    terminal.type("/upvote 1")
    await terminal.see("you upvoted question 1", "1. ▲1 Who waters?")
    await eventually(lambda: ann.workshops[ch].question(asked["id"])["votes"] == 1, "upvoted")

    terminal.type("/workshop")
    await terminal.see("— Workshop: Garden plan", "— Questions (/upvote N):")
    await ann.workshop_end(ch)
    await terminal.see("'Garden plan' ended")
    await terminal.wait(lambda s: panels(s) == 2, "the panel gone")


async def test_a_facilitator_runs_the_workshop_from_the_terminal(
    server: AgoraProcess, chat: Any
) -> None:
    async with in_a_workshop_channel(server, chat, role="facilitator") as room:
        terminal, ann, ch = room.terminal, room.ann, room.channel
        terminal.type('/start "Book club" "Warm-up:5" Chapter')
        await terminal.see("Workshop: Book club", "1. Warm-up (5 min)", "2. Chapter")
        await eventually(lambda: ann.workshops[ch].live, "the workshop at Ann's")
        terminal.type("/next")
        await terminal.see("▶ 1. Warm-up", "Timer: Warm-up 4:")
        terminal.type("/timer cancel")
        await eventually(lambda: ann.workshops[ch].workshop["timer"] is None, "the timer cancelled")
        terminal.type("/timer 90 Reading")
        await terminal.see("Timer: Reading 1:")
        await eventually(
            lambda: (ann.workshops[ch].workshop["timer"] or {}).get("label") == "Reading",
            "the timer at Ann's",
        )
        terminal.type('/poll "Finished it?" yes "not yet"')
        await terminal.see("Poll 1 (open, 0 votes)", "2. not yet")
        await ann.poll_vote(ch, ann.workshops[ch].workshop["polls"][0]["id"], [1])
        await terminal.see("2. not yet █")
        terminal.type("/poll close 1")
        await terminal.see("Poll 1 (closed, 1 vote)", "poll closed: Finished it?")
        await ann.hand_raise(ch)
        await terminal.see(f"1. {ann.identity['user']['name']}")
        terminal.type("/call")
        await terminal.see(f"speaking: {ann.identity['user']['name']}")
        await eventually(
            lambda: ann.workshops[ch].workshop["hands"]["speaking"] == ann.identity["user"]["id"],
            "Ann called",
        )
        terminal.type("/end")
        await terminal.see("'Book club' ended")
        await eventually(lambda: ann.workshops[ch].recap is not None, "the recap at Ann's")
        assert ann.workshops[ch].recap["speakers"] == [
            {"user": ann.identity["user"]["id"], "turns": 1}
        ]


async def test_workshop_commands_outside_a_workshop_and_for_members_say_why(
    room: Workshop,
) -> None:
    terminal = room.terminal
    terminal.type('/start "Mine"')
    await terminal.see("/start failed: forbidden")
    terminal.type("/help workshop")
    await terminal.see('/poll "QUESTION"', "/timer DURATION", "/answer N [TEXT]", "/end")
    terminal.type("/join general")
    await terminal.see("#general · ")
    terminal.type("/vote 1 1")
    await terminal.see("this is not a workshop channel")


async def test_a_member_in_a_breakout_group_gets_its_room_and_reports(
    room: Workshop,
) -> None:
    terminal, ann, ch = room.terminal, room.ann, room.channel
    me = room.account["user"]["id"]
    await ann.workshop_start(ch, "Groups")
    await terminal.see("Workshop: Groups")
    breakout = await ann.breakout_open(ch, 1, assignment=[[me]])
    group_room = f"{room.name}-group-1"
    await terminal.see("— you are in Group 1", "Breakout: you are in Group 1", f"#{group_room}")
    terminal.type(f"/join {group_room}")
    await terminal.see(f"#{group_room} · ")
    await ann.breakout_broadcast(ch, "Two minutes left")
    await terminal.see("Two minutes left")
    terminal.type("/report We pick raised beds")
    await terminal.see("reported to the main room")
    await eventually(
        lambda: (
            ann.workshops[ch].workshop["reports"]
            == [{"group": breakout["groups"][0]["id"], "text": "We pick raised beds", "by": me}]
        ),
        "the report at Ann's",
    )
