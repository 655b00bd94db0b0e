"""Workshops (issue 11, docs/protocol.md §5.10) over real sockets, in both deployments.

Each test makes a community of its own with a ``workshop`` channel, a facilitator and
participants spread over the nodes (``make_room``). The facilitator's session follows the
channel as a client does (``Follower``: the ``subscribe`` snapshot, then each event through
``protocol.workshop.apply``); ``ok`` runs one command and returns exactly the durable
events it caused, read up to the offset a ``workshop.state`` after it names, and checks on
the way that the fold equals that state.

"Nothing was published" is shown the same way: the events up to the offset of a
``workshop.state`` asked after the command are none.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from protocol import Encoding
from tests.conftest import RawSession, ServerLog, raw_session, timeout
from tests.discussion_helpers import (
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
)
from tests.workshop_helpers import Follower, Room, follow, group_of, live_room, make_room


@pytest.fixture(autouse=True)
async def _close_sessions() -> AsyncIterator[None]:
    yield
    await close_all()


async def act(
    room: Room, f: Follower, session: RawSession, op: str, d: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run one command as ``session``: its answer frame and the durable events it caused."""
    await f.catch_up((await room.state())["offset"])
    mark = len(f.events)
    answer = await session.command(op, d)
    state = await room.state()
    await f.check(state, f"{op} {d}")
    return answer, f.events[mark:]


async def ok(
    room: Room, f: Follower, session: RawSession, op: str, d: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    answer, events = await act(room, f, session, op, d)
    assert answer["op"] == "reply", (op, d, answer)
    return answer["d"], events


def ts(events: list[dict[str, Any]]) -> list[str]:
    return [e["t"] for e in events]


def users(queue: list[dict[str, Any]]) -> list[str]:
    return [h["user"] for h in queue]


def in_rule_order(hands: dict[str, Any]) -> bool:
    """The queue is in §5.10's order for its ``order``: fifo by ``raised_ts``, fair by fewest
    ``turns`` then ``raised_ts``, ties by user id; each entry's ``turns`` is the user's."""
    queue = hands["queue"]
    assert all(h["turns"] == hands["turns"].get(h["user"], 0) for h in queue), hands
    key = (
        (lambda h: (h["turns"], h["raised_ts"], h["user"]))
        if hands["order"] == "fair"
        else (lambda h: (h["raised_ts"], h["user"]))
    )
    return queue == sorted(queue, key=key)


EMPTY_MINE = {"ballots": {}, "upvoted": []}


# start, state, end


async def test_a_workshop_starts_is_read_with_workshop_state_and_subscribe_and_ends(
    server,
) -> None:
    room = await make_room(server, 2)
    f = await follow(room.fac, room.channel)
    assert f.snapshot is None
    none = await room.state()
    assert none["workshop"] is None and none["offset"] == f.offset
    agenda = [{"title": "Welcome"}, {"title": "Talk", "minutes": 20}]
    d = room.d(title="Thursday lab", agenda=agenda)
    started, events = await ok(room, f, room.fac, "workshop.start", d)
    w = started["workshop"]
    assert ts(events) == ["workshop.started"] and events[0]["d"] == {"workshop": w}
    assert w["id"] and w["started_ts"] > 0
    assert {k: v for k, v in w.items() if k not in ("id", "started_ts")} == {
        "channel": room.channel,
        "title": "Thursday lab",
        "by": uid(room.fac),
        "agenda": agenda,
        "current": -1,
        "hands": {"order": "fifo", "queue": [], "speaking": None, "turns": {}},
        "polls": [],
        "questions": [],
        "timer": None,
        "breakout": None,
        "reports": [],
        "pulse": {"agree": 0, "confused": 0, "slower": 0, "faster": 0},
    }
    state = await room.state(room.participants[0])
    assert state == {"workshop": w, "offset": events[0]["o"], "mine": EMPTY_MINE}
    # a late subscriber gets it in its subscribe reply, as of the reply's offset
    late = await follow(room.participants[1], room.channel)
    assert (late.snapshot, late.offset, late.mine) == (w, events[0]["o"], EMPTY_MINE)
    # one live workshop a channel; never in a text channel
    assert error(await room.fac.command("workshop.start", room.d(title="two")))[0] == "conflict"
    text = await room.fac.command("workshop.start", {"channel": room.club.general, "title": "x"})
    assert error(text)[0] == "bad_request"
    assert error(await room.fac.command("workshop.state", {"channel": "404"}))[0] == "not_found"
    # the end: a recap, workshop.ended, and nothing live any more
    ended, events = await ok(room, f, room.fac, "workshop.end", room.d())
    recap = ended["recap"]
    [over] = [e for e in events if e["t"] == "workshop.ended"]
    assert over["d"]["recap"] == recap and over["d"]["workshop"]["id"] == w["id"]
    assert (recap["id"], recap["channel"], recap["title"]) == (w["id"], room.channel, w["title"])
    assert recap["started_ts"] == w["started_ts"] <= recap["ended_ts"]
    assert recap["thread"]
    assert (await room.state())["workshop"] is None
    assert error(await room.participants[0].command("hand.raise", room.d()))[0] == "conflict"
    assert error(await room.fac.command("workshop.end", room.d()))[0] == "conflict"
    # the channel takes the next one
    again = await room.fac.ok("workshop.start", room.d(title="next week"))
    assert again["workshop"]["id"] != w["id"] and again["workshop"]["agenda"] == []


async def test_workshop_end_ends_the_timer_closes_the_polls_and_the_breakout_first(
    server,
) -> None:
    room = await make_room(server, 2)
    a = room.participants[0]
    f = await follow(room.fac, room.channel)
    await room.start("Ending")
    await room.attend()
    poll = (await room.fac.ok("poll.create", room.d(question="?", options=["x", "y"])))["poll"]
    await a.ok("poll.vote", room.d(poll=poll["id"], choices=[1]))
    timer = (await room.fac.ok("timer.start", room.d(seconds=600)))["timer"]
    breakout = await room.fac.ok("breakout.open", room.d(groups=1))
    group = breakout["breakout"]["groups"][0]["channel"]
    # a recap channel that is not one of this community's text, forum or workshop channels
    # is refused, and the workshop goes on
    elsewhere = await session_for(server, 0, "elsewhere")
    other_club = (await elsewhere.ok("community.create", {"name": f"Other {uid(elsewhere)}"}))[
        "community"
    ]
    thread = (await room.fac.ok("thread.create", {"channel": room.club.general, "title": "t"}))[
        "thread"
    ]
    for wrong in (other_club["channels"][0]["id"], thread["id"], group, "404"):
        refused = await room.fac.command("workshop.end", room.d(recap_channel=wrong))
        assert refused["op"] == "error", (wrong, refused)
        assert refused["d"]["code"] in ("bad_request", "forbidden", "not_found"), refused
    assert (await room.state())["workshop"] is not None
    ended, events = await ok(room, f, room.fac, "workshop.end", room.d())
    kinds_ = ts(events)
    assert kinds_.index("workshop.ended") > max(
        kinds_.index("timer.ended"), kinds_.index("poll.closed"), kinds_.index("breakout.closed")
    ), kinds_
    stopped = next(e for e in events if e["t"] == "timer.ended")["d"]
    assert stopped["timer"]["id"] == timer["id"] and stopped["cancelled"] is True
    closed = next(e for e in events if e["t"] == "poll.closed")["d"]["poll"]
    assert (closed["id"], closed["closed"], closed["tallies"]) == (poll["id"], True, [0, 1])
    [recap_poll] = ended["recap"]["polls"]
    assert recap_poll == {**closed, "ballots": {uid(a): [1]}}
    refused = await a.command("message.send", {"channel": group, "text": "after the end"})
    assert error(refused)[0] == "conflict"  # the groups' rooms are archived


async def test_a_workshop_holds_at_most_100_polls_and_500_questions(server) -> None:
    room = await make_room(server, 4)
    await room.start("Crowded")
    for i in range(100):
        await room.fac.ok("poll.create", room.d(question=f"poll {i}?", options=["a", "b"]))
    refused = await room.fac.command(
        "poll.create", room.d(question="one more?", options=["a", "b"])
    )
    assert error(refused)[0] == "too_large"
    askers = [room.fac, *room.participants]

    async def ask(session: RawSession, n: int) -> None:
        for i in range(n):
            await session.ok("question.ask", room.d(text=f"question {i} of {uid(session)}"))

    await asyncio.gather(*(ask(s, 100) for s in askers))
    refused = await room.participants[0].command("question.ask", room.d(text="one more?"))
    assert error(refused)[0] == "too_large"
    w = (await room.state())["workshop"]
    assert (len(w["polls"]), len(w["questions"])) == (100, 500)


async def test_without_a_live_workshop_every_command_but_start_state_and_participation_conflicts(
    server,
) -> None:
    room = await make_room(server, 1)
    p = room.participants[0]
    d = room.d
    for session, op, payload in [
        (room.fac, "workshop.end", d()),
        (room.fac, "agenda.next", d()),
        (room.fac, "agenda.goto", d(index=0)),
        (p, "hand.raise", d()),
        (p, "hand.lower", d()),
        (room.fac, "hand.lower", d(all=True)),
        (room.fac, "hand.call", d()),
        (room.fac, "hand.order", d(order="fair")),
        (room.fac, "poll.create", d(question="q", options=["a", "b"])),
        (p, "poll.vote", d(poll="123", choices=[0])),
        (room.fac, "poll.close", d(poll="123")),
        (p, "question.ask", d(text="why?")),
        (p, "question.upvote", d(question="123")),
        (p, "question.unvote", d(question="123")),
        (room.fac, "question.answer", d(question="123")),
        (room.fac, "question.hide", d(question="123")),
        (room.fac, "timer.start", d(seconds=60)),
        (room.fac, "timer.extend", d(seconds=60)),
        (room.fac, "timer.cancel", d()),
        (room.fac, "breakout.open", d(groups=2)),
        (room.fac, "breakout.broadcast", d(text="hi")),
        (room.fac, "breakout.close", d()),
        (p, "pulse.send", d(kind="agree")),
    ]:
        assert error(await session.command(op, payload))[0] == "conflict", op
    assert (await p.ok("workshop.state", d()))["workshop"] is None
    await room.fac.ok("community.participation", {"community": room.club.id})


# the agenda


async def test_the_agenda_moves_by_next_and_goto_and_a_timeboxed_item_starts_its_timer(
    server,
) -> None:
    room = await make_room(server, 1)
    f = await follow(room.fac, room.channel)
    agenda = [
        {"title": "Intro"},
        {"title": "Pairs", "minutes": 2},
        {"title": "Plenary", "minutes": 1},
    ]
    await room.start("Agenda", agenda)
    reply, events = await ok(room, f, room.fac, "agenda.next", room.d())
    assert reply == {} and ts(events) == ["agenda.moved"]
    assert events[0]["d"]["current"] == 0 and events[0]["d"]["started_ts"] > 0
    # onto a timeboxed item: its timer starts, labelled with its title
    _, events = await ok(room, f, room.fac, "agenda.next", room.d())
    assert ts(events) == ["agenda.moved", "timer.started"]
    pairs = events[1]["d"]["timer"]
    assert (pairs["label"], pairs["seconds"]) == ("Pairs", 120)
    assert pairs["ends_at"] == pairs["started_ts"] + 120_000
    # the next timeboxed item ends that timer (cancelled) before its own starts
    _, events = await ok(room, f, room.fac, "agenda.next", room.d())
    assert sorted(ts(events)) == ["agenda.moved", "timer.ended", "timer.started"]
    assert ts(events).index("timer.ended") < ts(events).index("timer.started")
    ended = next(e for e in events if e["t"] == "timer.ended")["d"]
    assert ended["timer"]["id"] == pairs["id"] and ended["cancelled"] is True
    plenary = next(e for e in events if e["t"] == "timer.started")["d"]["timer"]
    assert (plenary["label"], plenary["seconds"]) == ("Plenary", 60) and plenary["id"] != pairs[
        "id"
    ]
    # past the last item: conflict; out of range: bad_request
    assert error(await room.fac.command("agenda.next", room.d()))[0] == "conflict"
    for index in (3, 49):
        assert error(await room.fac.command("agenda.goto", room.d(index=index)))[0] == (
            "bad_request"
        )
    # going back starts an item again; an item without minutes leaves the timer running
    _, events = await ok(room, f, room.fac, "agenda.goto", room.d(index=0))
    assert ts(events) == ["agenda.moved"]
    at = events[0]["d"]["started_ts"]
    w = (await room.state())["workshop"]
    assert w["current"] == 0 and w["agenda"][0]["started_ts"] == at
    assert "ended_ts" not in w["agenda"][0]
    assert w["agenda"][2]["ended_ts"] == at
    assert w["agenda"][1]["started_ts"] <= w["agenda"][1]["ended_ts"]
    assert w["timer"]["id"] == plenary["id"]
    # goto a timeboxed item: the running timer ends, the item's starts
    _, events = await ok(room, f, room.fac, "agenda.goto", room.d(index=1))
    assert sorted(ts(events)) == ["agenda.moved", "timer.ended", "timer.started"]
    again = next(e for e in events if e["t"] == "timer.started")["d"]["timer"]
    assert again["label"] == "Pairs" and again["id"] not in (pairs["id"], plenary["id"])


# hands


async def test_hands_queue_in_fifo_order_and_hand_call_takes_the_first_or_the_one_named(
    server,
) -> None:
    room, f = await live_room(server, 3)
    a, b, c = room.participants
    for p in (a, b, c):
        reply, events = await ok(room, f, p, "hand.raise", room.d())
        assert reply == {} and ts(events) == ["hands.updated"]
    hands = events[-1]["d"]["hands"]
    assert (hands["order"], hands["speaking"], hands["turns"]) == ("fifo", None, {})
    assert sorted(users(hands["queue"])) == sorted(map(uid, (a, b, c)))
    raised = {h["user"]: h["raised_ts"] for h in hands["queue"]}
    assert raised[uid(a)] <= raised[uid(b)] <= raised[uid(c)]
    assert in_rule_order(hands), hands
    # a hand already up: nothing changes, nothing is published
    reply, events = await ok(room, f, b, "hand.raise", room.d())
    assert (reply, events) == ({}, [])
    # hand.call: the first of the queue speaks, leaves the queue and counts a turn
    first = hands["queue"][0]["user"]
    _, events = await ok(room, f, room.fac, "hand.call", room.d())
    hands = events[-1]["d"]["hands"]
    assert ts(events) == ["hands.updated"]
    assert (hands["speaking"], hands["turns"]) == (first, {first: 1})
    assert first not in users(hands["queue"]) and len(hands["queue"]) == 2
    # or the one named, who must be in the queue
    named = hands["queue"][-1]["user"]
    _, events = await ok(room, f, room.fac, "hand.call", room.d(user=named))
    hands = events[-1]["d"]["hands"]
    assert (hands["speaking"], hands["turns"]) == (named, {first: 1, named: 1})
    missing = await room.fac.command("hand.call", room.d(user=first))
    assert error(missing)[0] == "not_found"
    # the last one lowers their own hand; the speaker keeps speaking
    [last] = users(hands["queue"])
    last_session = next(p for p in (a, b, c) if uid(p) == last)
    _, events = await ok(room, f, last_session, "hand.lower", room.d())
    hands = events[-1]["d"]["hands"]
    assert (hands["queue"], hands["speaking"]) == ([], named)
    assert error(await room.fac.command("hand.call", room.d()))[0] == "conflict"
    # the speaker lowering their hand ends the turn; the turn stays counted
    speaker = next(p for p in (a, b, c) if uid(p) == named)
    _, events = await ok(room, f, speaker, "hand.lower", room.d())
    hands = events[-1]["d"]["hands"]
    assert ts(events) == ["hands.updated"]
    assert (hands["speaking"], hands["turns"]) == (None, {first: 1, named: 1})


async def test_fair_order_puts_fewest_turns_first_then_the_earliest_raised_ties_by_user_id(
    server,
) -> None:
    room, f = await live_room(server, 4)
    a, b, c, d = room.participants
    await ok(room, f, a, "hand.raise", room.d())
    await ok(room, f, b, "hand.raise", room.d())
    _, events = await ok(room, f, room.fac, "hand.call", room.d())
    spoke = events[-1]["d"]["hands"]["speaking"]  # a, unless both hands went up in one ms
    waiting = ({uid(a), uid(b)} - {spoke}).pop()
    for p in (a, b):
        if uid(p) == spoke:
            await ok(room, f, p, "hand.raise", room.d())  # up again, with a turn taken
    await ok(room, f, c, "hand.raise", room.d())
    _, events = await ok(room, f, d, "hand.raise", room.d())
    hands = events[-1]["d"]["hands"]
    assert hands["order"] == "fifo" and in_rule_order(hands), hands
    assert users(hands["queue"])[0] == waiting  # fifo: the earliest raised
    # fair: the one with a turn goes last
    reply, events = await ok(room, f, room.fac, "hand.order", room.d(order="fair"))
    assert reply == {} and ts(events) == ["hands.updated"]
    hands = events[-1]["d"]["hands"]
    assert hands["order"] == "fair" and in_rule_order(hands), hands
    assert users(hands["queue"])[-1] == spoke
    assert {h["user"]: h["turns"] for h in hands["queue"]} == {
        waiting: 0,
        uid(c): 0,
        uid(d): 0,
        spoke: 1,
    }
    # hand.call takes the first in fair order
    expected = users(hands["queue"])[0]
    _, events = await ok(room, f, room.fac, "hand.call", room.d())
    assert events[-1]["d"]["hands"]["speaking"] == expected == waiting
    # hands raised at once: whatever the clock gave them, the queue is in the one order
    await ok(room, f, room.fac, "hand.lower", room.d(all=True))
    replies = await asyncio.gather(*(p.command("hand.raise", room.d()) for p in (a, b, c, d)))
    assert all(r["op"] == "reply" for r in replies), replies
    state = await room.state()
    await f.check(state)
    hands = state["workshop"]["hands"]
    assert sorted(users(hands["queue"])) == sorted(map(uid, (a, b, c, d)))
    assert in_rule_order(hands), hands
    assert set(users(hands["queue"])[:2]) == {uid(c), uid(d)}  # no turns yet
    # back to fifo: by raised_ts alone
    _, events = await ok(room, f, room.fac, "hand.order", room.d(order="fifo"))
    hands = events[-1]["d"]["hands"]
    assert hands["order"] == "fifo" and in_rule_order(hands), hands


async def test_hands_are_lowered_by_their_owner_by_a_facilitator_one_or_all(server) -> None:
    room, f = await live_room(server, 3, guests=1)
    a, b, guest = room.participants
    for p in (a, b, guest):  # guests take part too
        await ok(room, f, p, "hand.raise", room.d())
    reply, events = await ok(room, f, a, "hand.lower", room.d())
    assert reply == {} and ts(events) == ["hands.updated"]
    hands = events[-1]["d"]["hands"]
    assert sorted(users(hands["queue"])) == sorted([uid(b), uid(guest)]) and in_rule_order(hands)
    _, events = await ok(room, f, room.fac, "hand.lower", room.d(user=uid(b)))
    assert users(events[-1]["d"]["hands"]["queue"]) == [uid(guest)]
    # a hand that is not up: nothing to publish
    assert (await ok(room, f, a, "hand.lower", room.d())) == ({}, [])
    await ok(room, f, a, "hand.raise", room.d())
    _, events = await ok(room, f, room.fac, "hand.lower", room.d(all=True))
    assert ts(events) == ["hands.updated"] and events[-1]["d"]["hands"]["queue"] == []
    # a facilitator lowering the speaker's hand ends the turn
    await ok(room, f, b, "hand.raise", room.d())
    _, events = await ok(room, f, room.fac, "hand.call", room.d())
    assert events[-1]["d"]["hands"]["speaking"] == uid(b)
    _, events = await ok(room, f, room.fac, "hand.lower", room.d(user=uid(b)))
    hands = events[-1]["d"]["hands"]
    assert (hands["speaking"], hands["turns"]) == (None, {uid(b): 1})


# polls


async def test_a_single_choice_poll_takes_one_ballot_per_user_that_a_later_vote_replaces(
    server,
) -> None:
    room, f = await live_room(server, 3, guests=1)
    a, b, guest = room.participants
    made, events = await ok(
        room,
        f,
        room.fac,
        "poll.create",
        room.d(question="Which day?", options=["Mon", "Tue", "Wed"]),
    )
    poll = made["poll"]
    assert ts(events) == ["poll.created"] and events[0]["d"] == {"poll": poll}
    assert poll["id"] and poll["ts"] > 0
    assert {k: v for k, v in poll.items() if k not in ("id", "ts")} == {
        "question": "Which day?",
        "options": ["Mon", "Tue", "Wed"],
        "multi": False,
        "anonymous": False,
        "tallies": [0, 0, 0],
        "voters": 0,
        "closed": False,
        "by": uid(room.fac),
    }
    vote = room.d(poll=poll["id"], choices=[0])
    voted, events = await ok(room, f, a, "poll.vote", vote)
    assert voted["choices"] == [0] and voted["poll"]["tallies"] == [1, 0, 0]
    assert ts(events) == ["poll.updated"] and events[0]["d"] == {"poll": voted["poll"]}
    await ok(room, f, guest, "poll.vote", vote)  # guests vote
    # a changed vote moves the ballot: voters stays the number of people
    voted, events = await ok(room, f, a, "poll.vote", {**vote, "choices": [2]})
    assert (voted["poll"]["tallies"], voted["poll"]["voters"]) == ([1, 0, 1], 2)
    # the same ballot again changes nothing
    voted, events = await ok(room, f, a, "poll.vote", {**vote, "choices": [2]})
    assert events == [] and voted["choices"] == [2] and voted["poll"]["tallies"] == [1, 0, 1]
    # several choices on a single-choice poll, or one out of range
    for choices in ([0, 1], [3], [-1], []):
        refused = await b.command("poll.vote", {**vote, "choices": choices})
        assert error(refused)[0] == "bad_request", choices
    assert error(await b.command("poll.vote", {**vote, "poll": "404"}))[0] == "not_found"
    mine = (await room.state(a))["mine"]
    assert mine == {"ballots": {poll["id"]: [2]}, "upvoted": []}
    assert (await room.state(b))["mine"] == EMPTY_MINE
    # closed: the tallies stay, votes conflict
    closed, events = await ok(room, f, room.fac, "poll.close", room.d(poll=poll["id"]))
    assert closed["poll"]["closed"] is True and closed["poll"]["tallies"] == [1, 0, 1]
    assert ts(events) == ["poll.closed"] and events[0]["d"] == {"poll": closed["poll"]}
    assert error(await b.command("poll.vote", vote))[0] == "conflict"
    assert error(await a.command("poll.vote", vote))[0] == "conflict"
    assert error(await room.fac.command("poll.close", room.d(poll="404")))[0] == "not_found"
    w = (await room.state())["workshop"]
    assert w["polls"] == [closed["poll"]]


async def test_a_multi_choice_poll_takes_several_choices_and_polls_keep_creation_order(
    server,
) -> None:
    room, f = await live_room(server, 2)
    a, b = room.participants
    first = (await room.fac.ok("poll.create", room.d(question="one?", options=["y", "n"])))["poll"]
    made, _ = await ok(
        room,
        f,
        room.fac,
        "poll.create",
        room.d(question="Which topics?", options=["a", "b", "c", "d"], multi=True),
    )
    poll = made["poll"]
    assert poll["multi"] is True and poll["anonymous"] is False
    vote = room.d(poll=poll["id"])
    voted, events = await ok(room, f, a, "poll.vote", {**vote, "choices": [3, 0]})
    assert voted["choices"] == [0, 3] and voted["poll"]["tallies"] == [1, 0, 0, 1]
    assert ts(events) == ["poll.updated"]
    await ok(room, f, b, "poll.vote", {**vote, "choices": [0]})
    voted, _ = await ok(room, f, a, "poll.vote", {**vote, "choices": [1, 2]})
    assert (voted["poll"]["tallies"], voted["poll"]["voters"]) == ([1, 1, 1, 0], 2)
    refused = await a.command("poll.vote", {**vote, "choices": [1, 4]})
    assert error(refused)[0] == "bad_request"
    state = await room.state(a)
    assert [p["id"] for p in state["workshop"]["polls"]] == [first["id"], poll["id"]]
    assert state["mine"]["ballots"] == {poll["id"]: [1, 2]}


# Q&A


async def test_questions_take_one_upvote_per_user_order_by_votes_and_hiding_drops_by(
    server,
) -> None:
    room, f = await live_room(server, 3, guests=1)
    a, b, guest = room.participants
    asked, events = await ok(room, f, a, "question.ask", room.d(text="What is a monad?"))
    q1 = asked["question"]
    assert ts(events) == ["question.asked"] and events[0]["d"] == {"question": q1}
    assert q1["id"] and q1["ts"] > 0 and "answer" not in q1
    assert {k: v for k, v in q1.items() if k not in ("id", "ts")} == {
        "text": "What is a monad?",
        "by": uid(a),
        "votes": 0,
        "answered": False,
        "hidden": False,
    }
    q2 = (await ok(room, f, guest, "question.ask", room.d(text="Is it a burrito?")))[0]["question"]
    # equal votes: the earliest asked first
    order = [q["id"] for q in (await room.state())["workshop"]["questions"]]
    assert order == [q1["id"], q2["id"]]
    up = room.d(question=q2["id"])
    voted, events = await ok(room, f, b, "question.upvote", up)
    assert voted["question"]["votes"] == 1 and ts(events) == ["question.updated"]
    assert events[0]["d"] == {"question": voted["question"]}
    order = [q["id"] for q in (await room.state())["workshop"]["questions"]]
    assert order == [q2["id"], q1["id"]]  # most votes first
    # once per user
    voted, events = await ok(room, f, b, "question.upvote", up)
    assert voted["question"]["votes"] == 1 and events == []
    await ok(room, f, a, "question.upvote", up)
    assert (await room.state(b))["mine"]["upvoted"] == [q2["id"]]
    # unvote takes it back, once
    voted, events = await ok(room, f, b, "question.unvote", up)
    assert voted["question"]["votes"] == 1 and ts(events) == ["question.updated"]
    voted, events = await ok(room, f, b, "question.unvote", up)
    assert voted["question"]["votes"] == 1 and events == []
    assert (await room.state(b))["mine"]["upvoted"] == []
    assert error(await b.command("question.upvote", room.d(question="404")))[0] == "not_found"
    # an answer, with its text or without
    answered, events = await ok(
        room, f, room.fac, "question.answer", room.d(question=q1["id"], text="A monoid.")
    )
    q1 = answered["question"]
    assert (q1["answered"], q1["answer"], q1["votes"]) == (True, "A monoid.", 0)
    assert events[0]["d"] == {"question": q1}
    answered, _ = await ok(room, f, room.fac, "question.answer", room.d(question=q2["id"]))
    assert answered["question"]["answered"] is True and "answer" not in answered["question"]
    # hidden: by is gone everywhere, and it stays hidden; its asker may withdraw their own
    hidden, events = await ok(room, f, room.fac, "question.hide", room.d(question=q2["id"]))
    assert hidden["question"]["hidden"] is True and "by" not in hidden["question"]
    assert events[0]["d"] == {"question": hidden["question"]}
    q3 = (await ok(room, f, b, "question.ask", room.d(text="Never mind")))[0]["question"]
    withdrawn, _ = await ok(room, f, b, "question.hide", room.d(question=q3["id"]))
    assert withdrawn["question"]["hidden"] is True and "by" not in withdrawn["question"]
    refused = await a.command("question.upvote", room.d(question=q2["id"]))
    assert error(refused)[0] == "conflict"  # differences (ao)
    await ok(room, f, room.fac, "question.answer", room.d(question=q2["id"], text="No."))
    questions = {q["id"]: q for q in (await room.state())["workshop"]["questions"]}
    assert questions[q2["id"]]["hidden"] is True and "by" not in questions[q2["id"]]
    for e in await all_events(room.fac, room.channel):
        question = e["d"].get("question")
        if question and question["id"] in (q2["id"], q3["id"]) and question["hidden"]:
            assert "by" not in question, e


# timers


async def test_a_timer_starts_extends_and_is_cancelled_and_one_at_a_time(server) -> None:
    room, f = await live_room(server, 1)
    for op, d in [("timer.extend", room.d(seconds=5)), ("timer.cancel", room.d())]:
        assert error(await room.fac.command(op, d))[0] == "conflict", op
    started, events = await ok(room, f, room.fac, "timer.start", room.d(seconds=600, label="Break"))
    timer = started["timer"]
    assert ts(events) == ["timer.started"] and events[0]["d"] == {"timer": timer}
    assert (timer["label"], timer["seconds"]) == ("Break", 600)
    assert timer["ends_at"] == timer["started_ts"] + 600_000
    assert error(await room.fac.command("timer.start", room.d(seconds=5)))[0] == "conflict"
    extended, events = await ok(room, f, room.fac, "timer.extend", room.d(seconds=60))
    longer = extended["timer"]
    assert ts(events) == ["timer.started"] and events[0]["d"] == {"timer": longer}
    assert longer["id"] == timer["id"] and longer["ends_at"] == timer["ends_at"] + 60_000
    reply, events = await ok(room, f, room.fac, "timer.cancel", room.d())
    assert reply == {} and ts(events) == ["timer.ended"]
    assert events[0]["d"]["timer"]["id"] == timer["id"] and events[0]["d"]["cancelled"] is True
    assert (await room.state())["workshop"]["timer"] is None
    unlabelled = (await room.fac.ok("timer.start", room.d(seconds=30)))["timer"]
    assert "label" not in unlabelled and unlabelled["id"] != timer["id"]


async def test_a_timer_that_runs_out_ends_exactly_once(server) -> None:
    room = await make_room(server, 1)
    f = await follow(room.participants[0], room.channel)
    await room.start()
    first = (await room.fac.ok("timer.start", room.d(seconds=1)))["timer"]
    ended = await f.next_event("timer.ended", seconds=10)
    assert ended["d"]["timer"]["id"] == first["id"] and ended["d"]["cancelled"] is False
    assert (await room.state())["workshop"]["timer"] is None
    assert error(await room.fac.command("timer.cancel", room.d()))[0] == "conflict"
    # a second timer's end is the sentinel: every node has looked again since the first
    second = (await room.fac.ok("timer.start", room.d(seconds=1)))["timer"]
    sentinel = await f.next_event("timer.ended", seconds=10)
    assert sentinel["d"]["timer"]["id"] == second["id"]
    endings = [e["d"]["timer"]["id"] for e in f.events if e["t"] == "timer.ended"]
    assert endings == [first["id"], second["id"]]
    stored = [e for e in await all_events(room.fac, room.channel) if e["t"] == "timer.ended"]
    assert [e["d"]["timer"]["id"] for e in stored] == [first["id"], second["id"]]
    await f.check(await room.state())


# breakouts


async def test_breakout_open_deals_the_attendees_into_groups_only_they_and_facilitators_read(
    server,
) -> None:
    room = await make_room(server, 5)
    absent = await room.club.join(1, name="absent")  # a member who never attended
    f = await follow(room.fac, room.channel)
    await room.start()
    await room.attend(*room.participants, room.owner)  # the owner attends, above facilitator
    opened, events = await ok(room, f, room.fac, "breakout.open", room.d(groups=2))
    breakout = opened["breakout"]
    assert ts(events) == ["breakout.opened"] and events[0]["d"] == {"breakout": breakout}
    assert breakout["id"] and "ends_at" not in breakout
    groups = breakout["groups"]
    assert [g["name"] for g in groups] == ["Group 1", "Group 2"]
    dealt = [u for g in groups for u in g["members"]]
    assert sorted(dealt) == sorted(map(uid, room.participants))  # each attendee once
    assert sorted(len(g["members"]) for g in groups) == [2, 3]
    assert not {uid(room.fac), uid(room.owner), uid(absent)} & set(dealt)
    by_id = {uid(p): p for p in room.participants}
    one, two = ([by_id[u] for u in g["members"]] for g in groups)
    ch1, ch2 = groups[0]["channel"], groups[1]["channel"]
    # the group's channel: kind breakout under the workshop channel, for its members
    await one[0].ok("subscribe", {"channel": ch1})
    await one[1].ok("subscribe", {"channel": ch1})
    await two[0].ok("subscribe", {"channel": ch2})
    said = await send(one[1], ch1, "hello group one")
    heard = await event(one[0], "message.created", ch=ch1)
    assert heard["d"]["message"] == said
    await room.fac.ok("history", {"channel": ch1})
    await room.owner.ok("history", {"channel": ch2})
    for outsider in (two[0], absent):
        for op in ("subscribe", "history"):
            assert error(await outsider.command(op, {"channel": ch1}))[0] == "forbidden", op
        refused = await outsider.command("message.send", {"channel": ch1, "text": "let me in"})
        assert error(refused)[0] == "forbidden"
    fresh = await connect(node(server, 0), one[0].token)  # type: ignore[attr-defined]
    mine = next(c for c in fresh.identity["communities"] if c["id"] == room.club.id)
    assert {ch1, ch2}.isdisjoint(c["id"] for c in mine["channels"])  # identify lists neither
    assert error(await room.fac.command("breakout.open", room.d(groups=2)))[0] == "conflict"
    # a broadcast reaches every group's channel, by its sender
    reply, _ = await ok(room, f, room.fac, "breakout.broadcast", room.d(text="5 minutes left"))
    assert reply == {}
    for session, ch in ((one[0], ch1), (two[0], ch2)):
        message = (await event(session, "message.created", ch=ch))["d"]["message"]
        assert (message["text"], message["author"]["id"]) == ("5 minutes left", uid(room.fac))
    # reports: by a member in their group's channel (or a facilitator), into the workshop
    reply, events = await ok(
        room, f, one[0], "breakout.report", {"channel": ch1, "text": "We agree"}
    )
    assert reply == {} and ts(events) == ["breakout.reported"]
    assert events[0]["d"] == {"group": groups[0]["id"], "text": "We agree", "by": uid(one[0])}
    refused = await two[0].command("breakout.report", {"channel": ch1, "text": "not mine"})
    assert error(refused)[0] == "forbidden"
    _, events = await ok(room, f, room.fac, "breakout.report", {"channel": ch2, "text": "Notes"})
    reports = [
        {"group": groups[0]["id"], "text": "We agree", "by": uid(one[0])},
        {"group": groups[1]["id"], "text": "Notes", "by": uid(room.fac)},
    ]
    assert (await room.state())["workshop"]["reports"] == reports
    # close: the reports come back, the groups' channels are archived but readable
    closed, events = await ok(room, f, room.fac, "breakout.close", room.d())
    assert closed["reports"] == reports and closed["breakout"]["id"] == breakout["id"]
    assert ts(events) == ["breakout.closed"] and events[0]["d"] == closed
    w = (await room.state())["workshop"]
    assert w["breakout"] is None and w["reports"] == reports
    created = [e for e in await all_events(one[0], ch1) if e["t"] == "message.created"]
    assert [e["d"]["message"]["text"] for e in created] == ["hello group one", "5 minutes left"]
    late = await one[0].command("breakout.report", {"channel": ch1, "text": "late"})
    assert error(late)[0] == "conflict"
    assert error(await room.fac.command("breakout.close", room.d()))[0] == "conflict"
    # archived: closed to new messages, also for a session that read the room while open
    archived = await one[0].command("message.send", {"channel": ch1, "text": "after"})
    assert error(archived)[0] == "conflict", archived


async def test_breakout_open_with_an_assignment_and_minutes_starts_the_breakouts_timer(
    server,
) -> None:
    room = await make_room(server, 3)
    a, b, c = room.participants
    stranger = await session_for(server, 0, "stranger")  # not in the community
    f = await follow(room.fac, room.channel)
    await room.start()
    refused = await room.fac.command(
        "breakout.open", room.d(groups=2, assignment=[[uid(a)], [uid(stranger)]])
    )
    assert error(refused)[0] == "bad_request"
    assignment = [[uid(a), uid(b)], [uid(c)]]
    opened, events = await ok(
        room, f, room.fac, "breakout.open", room.d(groups=2, minutes=5, assignment=assignment)
    )
    breakout = opened["breakout"]
    assert [g["members"] for g in breakout["groups"]] == assignment
    assert sorted(ts(events)) == ["breakout.opened", "timer.started"]
    timer = next(e for e in events if e["t"] == "timer.started")["d"]["timer"]
    assert (timer["label"], timer["seconds"]) == ("Breakouts", 300)
    assert breakout["ends_at"] == timer["ends_at"]
    assert group_of(breakout, uid(c))["name"] == "Group 2"


# pulse


async def test_pulse_counts_each_participants_latest_pulse(server) -> None:
    room, f = await live_room(server, 3, guests=1)
    a, b, guest = room.participants
    reply, events = await ok(room, f, a, "pulse.send", room.d(kind="agree"))
    assert reply == {} and ts(events) == ["pulse.updated"]
    assert events[0]["d"] == {"counts": {"agree": 1, "confused": 0, "slower": 0, "faster": 0}}
    await ok(room, f, b, "pulse.send", room.d(kind="agree"))
    _, events = await ok(room, f, guest, "pulse.send", room.d(kind="slower"))
    assert events[0]["d"]["counts"] == {"agree": 2, "confused": 0, "slower": 1, "faster": 0}
    _, events = await ok(room, f, a, "pulse.send", room.d(kind="confused"))  # the latest counts
    assert events[0]["d"]["counts"] == {"agree": 1, "confused": 1, "slower": 1, "faster": 0}
    assert (await ok(room, f, a, "pulse.send", room.d(kind="confused")))[1] == []
    assert (await room.state())["workshop"]["pulse"] == events[0]["d"]["counts"]


async def test_a_pulse_stops_counting_after_its_window_with_a_pulse_updated(make_server) -> None:
    server = make_server(pulse_window_ms=2_000)  # 60 s by default
    room = await make_room(server, 1)
    f = await follow(room.participants[0], room.channel)
    await room.start()
    await room.participants[0].ok("pulse.send", room.d(kind="slower"))
    counted = await f.next_event("pulse.updated")
    assert counted["d"]["counts"] == {"agree": 0, "confused": 0, "slower": 1, "faster": 0}
    # 2 s, then within about 1 s; the sessions ping meanwhile
    deadline = asyncio.get_running_loop().time() + timeout(15)
    while True:
        try:
            expired = await f.next_event("pulse.updated", seconds=5)
            break
        except TimeoutError:
            assert asyncio.get_running_loop().time() < deadline, "the pulse never expired"
            await f.session.ok("ping")
            await room.fac.ok("ping")
    assert expired["d"]["counts"] == {"agree": 0, "confused": 0, "slower": 0, "faster": 0}
    await f.check(await room.state())
    assert [e["t"] for e in f.events].count("pulse.updated") == 2


# participation
# participation


async def test_participation_counts_what_each_member_did_over_the_last_sessions(server) -> None:
    room = await make_room(server, 3)
    quiet, busy, voter = room.participants
    never = await room.club.join(1, name="never")
    f = await follow(room.fac, room.channel)
    await send(busy, room.channel, "before it starts: not counted")
    first = await room.start("First session")
    await room.attend(quiet, busy)
    await send(busy, room.channel, "one")
    await send(busy, room.channel, "two")
    await busy.ok("hand.raise", room.d())
    await room.fac.ok("hand.call", room.d())
    poll = (await room.fac.ok("poll.create", room.d(question="?", options=["a", "b"])))["poll"]
    await busy.ok("poll.vote", room.d(poll=poll["id"], choices=[1]))
    await busy.ok("poll.vote", room.d(poll=poll["id"], choices=[0]))  # one poll, one vote
    mine = (await busy.ok("question.ask", room.d(text="mine?")))["question"]
    theirs = (await room.fac.ok("question.ask", room.d(text="theirs?")))["question"]
    await busy.ok("question.upvote", room.d(question=theirs["id"]))
    await busy.ok("question.upvote", room.d(question=mine["id"]))
    await room.fac.ok("workshop.end", room.d())
    await send(busy, room.channel, "after it ended: not counted")
    for p in (quiet, busy):
        await p.ok("unsubscribe", room.d())
    second = await room.start("Second session")
    await busy.ok("subscribe", room.d())  # attends, and does nothing else
    poll = (await room.fac.ok("poll.create", room.d(question="?", options=["a", "b"])))["poll"]
    await voter.ok("poll.vote", room.d(poll=poll["id"], choices=[0]))  # acting is attending
    await f.catch_up((await room.state())["offset"])

    answer = await room.fac.ok("community.participation", {"community": room.club.id})
    sessions = answer["sessions"]
    assert [s["id"] for s in sessions] == [second["id"], first["id"]]  # newest first
    assert {k: sessions[1][k] for k in ("channel", "title", "started_ts")} == {
        "channel": room.channel,
        "title": "First session",
        "started_ts": first["started_ts"],
    }
    assert sessions[1]["ended_ts"] >= first["started_ts"] and "ended_ts" not in sessions[0]
    members = {m["user"]: m for m in answer["members"]}
    zero = {"messages": 0, "hands": 0, "turns": 0, "votes": 0, "questions": 0, "upvotes": 0}
    assert members[uid(busy)] == {
        "user": uid(busy),
        "attended": 2,
        "messages": 2,
        "hands": 1,
        "turns": 1,
        "votes": 1,
        "questions": 1,
        "upvotes": 2,
    }
    assert members[uid(quiet)] == {"user": uid(quiet), "attended": 1, **zero}
    assert members[uid(voter)] == {"user": uid(voter), "attended": 1, **zero, "votes": 1}
    if uid(never) in members:
        assert members[uid(never)] == {"user": uid(never), "attended": 0, **zero}
    silent = set(answer["silent"])
    assert uid(quiet) in silent and not silent & {uid(busy), uid(voter), uid(never)}
    assert uid(room.fac) not in silent  # differences (an): driving is taking part
    # the last session only: busy attended it without taking part
    last = await room.fac.ok("community.participation", {"community": room.club.id, "sessions": 1})
    assert [s["id"] for s in last["sessions"]] == [second["id"]]
    members = {m["user"]: m for m in last["members"]}
    assert members[uid(busy)] == {"user": uid(busy), "attended": 1, **zero}
    assert uid(busy) in last["silent"] and uid(voter) not in last["silent"]
    assert uid(quiet) not in last["silent"]


# the recap


async def test_the_recap_thread_holds_the_results_and_open_questions_become_followed_threads(
    server,
) -> None:
    room = await make_room(server, 5)
    a, b, c, d, e = room.participants  # e attends and does nothing
    recaps = await room.club.channel("recaps")
    await room.owner.ok("subscribe", {"channel": recaps})
    f = await follow(room.fac, room.channel)
    agenda = [{"title": "Intro"}, {"title": "Talk", "minutes": 30}]
    workshop = await room.start("Monads, gently", agenda)
    await room.attend()
    await room.fac.ok("agenda.next", room.d())
    await room.fac.ok("agenda.next", room.d())  # Talk: its timer runs until the end
    for p in (a, b):
        await p.ok("hand.raise", room.d())
    await room.fac.ok("hand.call", room.d(user=uid(a)))
    await room.fac.ok("hand.call", room.d(user=uid(b)))
    await a.ok("hand.raise", room.d())
    await room.fac.ok("hand.call", room.d())
    options = ["yes", "no"]
    open_poll = await room.fac.ok("poll.create", room.d(question="Clear?", options=options))
    named = open_poll["poll"]["id"]
    for p, choice in ((a, 0), (b, 1), (c, 1)):
        await p.ok("poll.vote", room.d(poll=named, choices=[choice]))
    anon = await room.fac.ok(
        "poll.create",
        room.d(question="Which part?", options=["p", "q", "r"], multi=True, anonymous=True),
    )
    secret = anon["poll"]["id"]
    await a.ok("poll.vote", room.d(poll=secret, choices=[0, 2]))
    await d.ok("poll.vote", room.d(poll=secret, choices=[1]))
    q1 = (await a.ok("question.ask", room.d(text="What is X?")))["question"]["id"]
    q2 = (await b.ok("question.ask", room.d(text="How about Y?")))["question"]["id"]
    q3 = (await c.ok("question.ask", room.d(text="Something rude")))["question"]["id"]
    await c.ok("question.upvote", room.d(question=q2))
    await d.ok("question.upvote", room.d(question=q2))
    await a.ok("question.upvote", room.d(question=q1))
    await room.fac.ok("question.answer", room.d(question=q1, text="X is x."))
    await room.fac.ok("question.hide", room.d(question=q3))
    await send(a, room.channel, "I see")
    await send(d, room.channel, "me too")
    await send(d, room.channel, "and a question")
    assignment = [[uid(a), uid(b)], [uid(c), uid(d)]]
    breakout = (await room.fac.ok("breakout.open", room.d(groups=2, assignment=assignment)))[
        "breakout"
    ]
    g1, g2 = breakout["groups"]
    await a.ok("breakout.report", {"channel": g1["channel"], "text": "Group one says X"})
    await c.ok("breakout.report", {"channel": g2["channel"], "text": "Group two says Y"})
    await room.fac.ok("breakout.close", room.d())

    ended = await room.fac.ok("workshop.end", room.d(recap_channel=recaps))
    recap = ended["recap"]
    over = await f.next_event("workshop.ended")
    assert over["d"]["recap"] == recap and recap["id"] == workshop["id"]
    assert (recap["channel"], recap["title"]) == (recaps, "Monads, gently")
    assert recap["started_ts"] == workshop["started_ts"] <= recap["ended_ts"]
    assert [(i["title"], i.get("minutes")) for i in recap["agenda"]] == [
        ("Intro", None),
        ("Talk", 30),
    ]
    assert recap["agenda"][0]["started_ts"] <= recap["agenda"][0]["ended_ts"]
    polls = {p["id"]: p for p in recap["polls"]}
    assert [p["id"] for p in recap["polls"]] == [named, secret]
    assert (polls[named]["tallies"], polls[named]["voters"], polls[named]["closed"]) == (
        [1, 2],
        3,
        True,
    )
    assert polls[named]["ballots"] == {uid(a): [0], uid(b): [1], uid(c): [1]}
    assert (polls[secret]["tallies"], polls[secret]["voters"], polls[secret]["closed"]) == (
        [1, 1, 1],
        2,
        True,
    )
    assert "ballots" not in polls[secret]
    questions = {q["id"]: q for q in recap["questions"]}
    assert set(questions) == {q1, q2}  # the hidden one is left out
    assert (questions[q1]["votes"], questions[q1]["answered"], questions[q1]["answer"]) == (
        1,
        True,
        "X is x.",
    )
    assert (questions[q2]["votes"], questions[q2]["answered"], questions[q2]["by"]) == (
        2,
        False,
        uid(b),
    )
    assert {s["user"]: s["turns"] for s in recap["speakers"]} == {uid(a): 2, uid(b): 1}
    assert recap["reports"] == [
        {"group": g1["id"], "text": "Group one says X", "by": uid(a)},
        {"group": g2["id"], "text": "Group two says Y", "by": uid(c)},
    ]
    counts = {
        p["user"]: {k: v for k, v in p.items() if k != "user"} for p in recap["participation"]
    }

    def did(messages=0, hands=0, turns=0, votes=0, questions=0, upvotes=0) -> dict[str, int]:
        return {"messages": messages, "hands": hands, "turns": turns,
                "votes": votes, "questions": questions, "upvotes": upvotes}  # fmt: skip

    assert (
        set(map(uid, (a, b, c, d, e)))
        <= set(counts)
        <= set(map(uid, (*room.participants, room.fac)))
    )

    assert {u: counts[u] for u in map(uid, (a, b, c, d, e))} == {
        uid(e): did(),  # one entry per attendee
        uid(a): did(messages=1, hands=2, turns=2, votes=2, questions=1, upvotes=1),
        uid(b): did(hands=1, turns=1, votes=1, questions=1),
        uid(c): did(votes=1, questions=1, upvotes=1),
        uid(d): did(messages=2, votes=1, upvotes=1),
    }
    # the recap thread: in recap_channel, titled after the workshop, by the facilitator; and
    # the open question (unanswered, not hidden) gets a thread of its own there
    made = [await event(room.owner, "thread.created", ch=recaps) for _ in range(2)]
    [recap_made] = [e["d"] for e in made if e["d"]["thread"]["id"] == recap["thread"]]
    [question_made] = [e["d"] for e in made if e["d"]["thread"]["id"] != recap["thread"]]
    thread = recap_made["thread"]
    assert recap_made["by"] == uid(room.fac)
    assert (thread["title"], thread["parent"], thread["created_by"]) == (
        "Monads, gently",
        recaps,
        uid(room.fac),
    )
    first = (await all_events(room.owner, thread["id"]))[0]["d"]["message"]
    assert first["author"]["id"] == uid(room.fac) and first["recap"] == recap
    for words in ("Monads, gently", "Clear?", "Which part?", "What is X?", "How about Y?"):
        assert words in first["text"], (words, first["text"])
    assert "Group one says X" in first["text"] and "Something rude" not in first["text"]
    question_thread = question_made["thread"]
    assert question_thread["title"] == "How about Y?" and question_thread["parent"] == recaps
    opening = (await all_events(room.owner, question_thread["id"]))[0]["d"]["message"]
    assert (opening["text"], opening["author"]["id"]) == ("How about Y?", uid(b))
    assert "recap" not in opening
    assert questions[q2]["thread"] == question_thread["id"] and "thread" not in questions[q1]
    listed = (await room.owner.ok("thread.list", {"channel": recaps}))["threads"]
    assert sorted(t["thread"]["id"] for t in listed) == sorted(
        [thread["id"], question_thread["id"]]
    )
    answer = await send(room.fac, question_thread["id"], "Y is y.")
    for follower in (b, c, d):  # the asker and the upvoters
        heard = await event(follower, "thread.activity", ch=question_thread["id"])
        assert heard["d"]["message"] == answer
    await room.fac.ok("dm.open", {"user": uid(a)})  # the sentinel for one who did not upvote
    assert "thread.activity" not in kinds(await until(a, "dm.created"))


# bad payloads


def bad_payloads(
    ch: str, idle: str, text_channel: str, community: str, poll: str, question: str, user: str
) -> list[tuple[str, dict[str, Any], str]]:
    """(op, d, the code it answers) for payloads that break §5.10's field rules. ``ch`` has
    a live workshop (agenda of 2 items, ``user``'s hand up, ``poll`` single choice of 2
    options, ``question``); ``idle`` is a workshop channel without one."""
    long = "x" * 201
    c = {"channel": ch}
    i = {"channel": idle}
    return [
        ("workshop.start", {**i}, "bad_request"),
        ("workshop.start", {**i, "title": ""}, "bad_request"),
        ("workshop.start", {**i, "title": "  "}, "bad_request"),
        ("workshop.start", {**i, "title": 5}, "bad_request"),
        ("workshop.start", {**i, "title": long}, "too_large"),
        ("workshop.start", {"title": "t"}, "bad_request"),
        ("workshop.start", {"channel": "x" * 65, "title": "t"}, "too_large"),
        ("workshop.start", {"channel": text_channel, "title": "t"}, "bad_request"),
        ("workshop.start", {**i, "title": "t", "agenda": "intro"}, "bad_request"),
        ("workshop.start", {**i, "title": "t", "agenda": [5]}, "bad_request"),
        ("workshop.start", {**i, "title": "t", "agenda": [{}]}, "bad_request"),
        ("workshop.start", {**i, "title": "t", "agenda": [{"title": ""}]}, "bad_request"),
        ("workshop.start", {**i, "title": "t", "agenda": [{"title": long}]}, "too_large"),  # §10
        (
            "workshop.start",
            {**i, "title": "t", "agenda": [{"title": "a", "minutes": 0}]},
            "bad_request",
        ),
        (
            "workshop.start",
            {**i, "title": "t", "agenda": [{"title": "a", "minutes": 1441}]},
            "bad_request",
        ),
        (
            "workshop.start",
            {**i, "title": "t", "agenda": [{"title": "a", "minutes": "5"}]},
            "bad_request",
        ),
        (
            "workshop.start",
            {**i, "title": "t", "agenda": [{"title": "a", "minutes": True}]},
            "bad_request",
        ),
        ("workshop.start", {**i, "title": "t", "agenda": [{"title": "a"}] * 51}, "too_large"),
        ("workshop.state", {}, "bad_request"),
        ("workshop.state", {"channel": 5}, "bad_request"),
        ("workshop.state", {"channel": text_channel}, "bad_request"),
        ("workshop.end", {**c, "recap_channel": 5}, "bad_request"),
        ("workshop.end", {**c, "recap_channel": ""}, "bad_request"),
        ("workshop.end", {"recap_channel": text_channel}, "bad_request"),
        ("agenda.next", {}, "bad_request"),
        ("agenda.next", {"channel": ""}, "bad_request"),
        ("agenda.goto", {**c}, "bad_request"),
        ("agenda.goto", {**c, "index": "1"}, "bad_request"),
        ("agenda.goto", {**c, "index": -1}, "bad_request"),
        ("agenda.goto", {**c, "index": 1.5}, "bad_request"),
        ("agenda.goto", {**c, "index": True}, "bad_request"),
        ("agenda.goto", {**c, "index": 2}, "bad_request"),  # the agenda has 2 items
        ("agenda.goto", {**c, "index": 51}, "bad_request"),
        ("hand.raise", {"channel": ""}, "bad_request"),
        ("hand.raise", {"channel": text_channel}, "bad_request"),
        ("hand.raise", {"channel": "404"}, "not_found"),
        ("hand.lower", {**c, "user": 5}, "bad_request"),
        ("hand.lower", {**c, "user": ""}, "bad_request"),
        ("hand.lower", {**c, "all": "yes"}, "bad_request"),
        ("hand.call", {**c, "user": 5}, "bad_request"),
        ("hand.call", {**c, "user": "404"}, "not_found"),
        ("hand.order", {**c}, "bad_request"),
        ("hand.order", {**c, "order": "lifo"}, "bad_request"),
        ("hand.order", {**c, "order": 1}, "bad_request"),
        ("poll.create", {**c, "options": ["a", "b"]}, "bad_request"),
        ("poll.create", {**c, "question": "", "options": ["a", "b"]}, "bad_request"),
        ("poll.create", {**c, "question": "q" * 1001, "options": ["a", "b"]}, "too_large"),
        ("poll.create", {**c, "question": "q"}, "bad_request"),
        ("poll.create", {**c, "question": "q", "options": "a,b"}, "bad_request"),
        ("poll.create", {**c, "question": "q", "options": []}, "bad_request"),
        ("poll.create", {**c, "question": "q", "options": ["a"]}, "bad_request"),
        ("poll.create", {**c, "question": "q", "options": ["a", ""]}, "bad_request"),
        ("poll.create", {**c, "question": "q", "options": ["a", " "]}, "bad_request"),
        ("poll.create", {**c, "question": "q", "options": ["a", 5]}, "bad_request"),
        ("poll.create", {**c, "question": "q", "options": ["a", long]}, "too_large"),  # §10
        ("poll.create", {**c, "question": "q", "options": list("abcdefghijk")}, "too_large"),
        (
            "poll.create",
            {**c, "question": "q", "options": ["a", "b"], "multi": "yes"},
            "bad_request",
        ),
        (
            "poll.create",
            {**c, "question": "q", "options": ["a", "b"], "anonymous": 1},
            "bad_request",
        ),
        (
            "poll.create",
            {"channel": text_channel, "question": "q", "options": ["a", "b"]},
            "bad_request",
        ),
        ("poll.vote", {**c, "choices": [0]}, "bad_request"),
        ("poll.vote", {**c, "poll": poll}, "bad_request"),
        ("poll.vote", {**c, "poll": poll, "choices": 0}, "bad_request"),
        ("poll.vote", {**c, "poll": poll, "choices": []}, "bad_request"),
        ("poll.vote", {**c, "poll": poll, "choices": [2]}, "bad_request"),
        ("poll.vote", {**c, "poll": poll, "choices": [-1]}, "bad_request"),
        ("poll.vote", {**c, "poll": poll, "choices": ["0"]}, "bad_request"),
        ("poll.vote", {**c, "poll": poll, "choices": [True]}, "bad_request"),
        ("poll.vote", {**c, "poll": poll, "choices": [0, 1]}, "bad_request"),
        ("poll.vote", {**c, "poll": poll, "choices": [0] * 11}, "too_large"),
        ("poll.vote", {**c, "poll": 5, "choices": [0]}, "bad_request"),
        ("poll.vote", {**c, "poll": "404", "choices": [0]}, "not_found"),
        ("poll.close", {**c}, "bad_request"),
        ("poll.close", {**c, "poll": ""}, "bad_request"),
        ("poll.close", {**c, "poll": "404"}, "not_found"),
        ("question.ask", {**c}, "bad_request"),
        ("question.ask", {**c, "text": ""}, "bad_request"),
        ("question.ask", {**c, "text": "   "}, "bad_request"),
        ("question.ask", {**c, "text": 5}, "bad_request"),
        ("question.ask", {**c, "text": "q" * 1001}, "too_large"),
        ("question.upvote", {**c}, "bad_request"),
        ("question.upvote", {**c, "question": 5}, "bad_request"),
        ("question.upvote", {**c, "question": "404"}, "not_found"),
        ("question.unvote", {**c, "question": ""}, "bad_request"),
        ("question.unvote", {**c, "question": "404"}, "not_found"),
        ("question.answer", {**c}, "bad_request"),
        ("question.answer", {**c, "question": question, "text": 5}, "bad_request"),
        ("question.answer", {**c, "question": question, "text": "a" * 4001}, "too_large"),
        ("question.answer", {**c, "question": "404"}, "not_found"),
        ("question.hide", {**c}, "bad_request"),
        ("question.hide", {**c, "question": "404"}, "not_found"),
        ("timer.start", {**c}, "bad_request"),
        ("timer.start", {**c, "seconds": 0}, "bad_request"),
        ("timer.start", {**c, "seconds": 21601}, "bad_request"),
        ("timer.start", {**c, "seconds": "60"}, "bad_request"),
        ("timer.start", {**c, "seconds": 1.5}, "bad_request"),
        ("timer.start", {**c, "seconds": 60, "label": 5}, "bad_request"),
        ("timer.start", {**c, "seconds": 60, "label": long}, "too_large"),
        ("timer.extend", {**c}, "bad_request"),
        ("timer.extend", {**c, "seconds": 0}, "bad_request"),
        ("timer.extend", {**c, "seconds": -5}, "bad_request"),
        ("timer.cancel", {}, "bad_request"),
        ("breakout.open", {**c}, "bad_request"),
        ("breakout.open", {**c, "groups": 0}, "bad_request"),
        ("breakout.open", {**c, "groups": 51}, "bad_request"),
        ("breakout.open", {**c, "groups": "2"}, "bad_request"),
        ("breakout.open", {**c, "groups": 2, "minutes": 0}, "bad_request"),
        ("breakout.open", {**c, "groups": 2, "minutes": 1441}, "bad_request"),
        ("breakout.open", {**c, "groups": 2, "assignment": "x"}, "bad_request"),
        ("breakout.open", {**c, "groups": 2, "assignment": [[user]]}, "bad_request"),
        ("breakout.open", {**c, "groups": 2, "assignment": [[user], [user]]}, "bad_request"),
        ("breakout.open", {**c, "groups": 2, "assignment": [[user], "x"]}, "bad_request"),
        ("breakout.open", {**c, "groups": 2, "assignment": [[user], [5]]}, "bad_request"),
        ("breakout.open", {**c, "groups": 2, "assignment": [[user], ["404"]]}, "bad_request"),
        ("breakout.broadcast", {**c}, "bad_request"),
        ("breakout.broadcast", {**c, "text": ""}, "bad_request"),
        ("breakout.broadcast", {**c, "text": "x" * 4001}, "too_large"),
        ("breakout.report", {**c}, "bad_request"),
        ("breakout.report", {**c, "text": " "}, "bad_request"),
        ("breakout.report", {**c, "text": "x" * 4001}, "too_large"),
        ("breakout.close", {"channel": 7}, "bad_request"),
        ("pulse.send", {**c}, "bad_request"),
        ("pulse.send", {**c, "kind": "happy"}, "bad_request"),
        ("pulse.send", {**c, "kind": 1}, "bad_request"),
        ("pulse.send", {"channel": text_channel, "kind": "agree"}, "bad_request"),
        ("community.participation", {}, "bad_request"),
        ("community.participation", {"community": 5}, "bad_request"),
        ("community.participation", {"community": "x" * 65}, "too_large"),
        ("community.participation", {"community": community, "sessions": 0}, "bad_request"),
        ("community.participation", {"community": community, "sessions": 51}, "bad_request"),
        ("community.participation", {"community": community, "sessions": "5"}, "bad_request"),
    ]


async def test_every_workshop_command_refuses_bad_payloads_without_a_traceback(server) -> None:
    room = await make_room(server, 1)
    idle = await room.club.channel("idle", "workshop")
    other = room.participants[0]
    await room.start("Payloads", [{"title": "one"}, {"title": "two"}])
    await other.ok("hand.raise", room.d())
    poll = (await room.fac.ok("poll.create", room.d(question="q", options=["a", "b"])))["poll"]
    question = (await other.ok("question.ask", room.d(text="q?")))["question"]
    before = await room.state()
    log = ServerLog(server)
    payloads = bad_payloads(
        room.channel, idle, room.club.general, room.club.id, poll["id"], question["id"], uid(other)
    )
    wrong = []
    for op, d, code in payloads:
        answer = await room.owner.command(op, d)
        if answer["op"] != "error" or answer["d"].get("code") != code or not answer["d"]["message"]:
            wrong.append((op, d if len(repr(d)) < 200 else f"{repr(d)[:200]}…", code, answer))
    assert wrong == [], "\n".join(map(repr, wrong))
    await room.owner.ok("ping")  # still open and answering
    log.assert_no_traceback()
    # none of them changed the workshop
    after = await room.state()
    assert after["workshop"] == before["workshop"] and after["offset"] == before["offset"]
    assert (await room.owner.ok("workshop.state", {"channel": idle}))["workshop"] is None


async def test_a_lone_surrogate_in_a_nested_string_is_a_bad_request(server) -> None:
    """JSON escapes can put a lone surrogate in an agenda title, a poll option or an
    assignment's user id; none can be stored, and none may cost a traceback."""
    room = await make_room(server, 1)
    await room.start()
    owner = await raw_session(node(server, 0), Encoding.JSON, token=room.owner.token)  # type: ignore[attr-defined]
    log = ServerLog(server)
    idle = await room.club.channel("idle2", "workshop")
    for op, d in [
        ("workshop.start", {"channel": idle, "title": "t", "agenda": [{"title": "\ud800"}]}),
        ("poll.create", room.d(question="q", options=["a", "\ud800"])),
        ("breakout.open", room.d(groups=1, assignment=[["\ud800"]])),
    ]:
        command_id = next(owner.ids)
        # json.dumps escapes the surrogate (\ud800), as a browser's JSON.stringify would
        await owner.ws.send(json.dumps({"op": op, "id": command_id, "d": d}))
        answer = await owner.recv()
        while answer.get("id") != command_id:
            answer = await owner.recv()
        assert answer["op"] == "error" and answer["d"]["code"] == "bad_request", (op, answer)
    await owner.ws.close()
    log.assert_no_traceback()


async def test_who_is_in_the_channel_when_a_workshop_starts_attends_it(server) -> None:
    room = await make_room(server, 2)
    await room.attend()  # before the start: the participants are there already
    await room.start()
    participants = {uid(p) for p in room.participants}
    async with asyncio.timeout(timeout(10)):  # each node records its own subscribers
        while True:
            answer = await room.fac.ok("community.participation", {"community": room.club.id})
            if participants <= {m["user"] for m in answer["members"] if m["attended"]}:
                break
            await asyncio.sleep(0.05)
    breakout = (await room.fac.ok("breakout.open", room.d(groups=2)))["breakout"]
    assert sorted(u for g in breakout["groups"] for u in g["members"]) == sorted(participants)
