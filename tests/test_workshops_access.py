"""Who may do what in a workshop (docs/protocol.md §5.10, §5.8): participants take part and
never drive; one ballot per user; nobody but its voter ever learns an anonymous ballot; a
breakout room is its group's and the facilitators'; participation is for facilitators.
Both deployments; each test has a community of its own.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.agora_cli import agora, storage
from tests.conftest import ServerLog
from tests.discussion_helpers import close_all, error, session_for, uid
from tests.workshop_helpers import (
    FACILITATOR_OPS,
    Follower,
    facilitator_commands,
    follow,
    make_room,
)


@pytest.fixture(autouse=True)
async def _close_sessions() -> AsyncIterator[None]:
    yield
    await close_all()


#: The commands that need a timer running or a breakout open to do anything.
NEEDS_TIMER_OR_BREAKOUT = {"timer.extend", "timer.cancel", "breakout.broadcast", "breakout.close"}


async def test_participants_cannot_drive_any_of_the_facilitators_controls(server) -> None:
    room = await make_room(server, 3, guests=1)
    member, other, guest = room.participants
    idle = await room.club.channel("idle", "workshop")
    await room.start("Controls", [{"title": "one"}, {"title": "two", "minutes": 5}])
    await other.ok("hand.raise", room.d())
    poll = (await room.fac.ok("poll.create", room.d(question="q", options=["a", "b"])))["poll"]
    question = (await other.ok("question.ask", room.d(text="mine")))["question"]
    commands = facilitator_commands(
        room, poll=poll["id"], question=question["id"], other=uid(other)
    )
    assert [name for name, _, _ in commands] == list(FACILITATOR_OPS)
    # each would work in the state it is tried in: workshop.start on an idle channel, the
    # timer and breakout commands once a timer runs and a breakout is open
    first = [c for c in commands if c[1] not in NEEDS_TIMER_OR_BREAKOUT]
    later = [c for c in commands if c[1] in NEEDS_TIMER_OR_BREAKOUT]
    first = [
        (name, op, {**d, "channel": idle} if op == "workshop.start" else d) for name, op, d in first
    ]
    before = await room.state()
    refused = []
    for session in (member, guest):
        for name, op, d in first:
            answer = await session.command(op, d)
            if error(answer) != ("forbidden", "run_workshops"):
                refused.append((name, uid(session), answer))
    assert (await room.state())["offset"] == before["offset"]  # nothing happened
    await room.fac.ok("timer.start", room.d(seconds=600))
    await room.fac.ok(
        "breakout.open",
        room.d(groups=2, assignment=[[uid(member), uid(guest)], [uid(other)]]),
    )
    before = await room.state()
    for session in (member, guest):
        for name, op, d in later:
            answer = await session.command(op, d)
            if error(answer) != ("forbidden", "run_workshops"):
                refused.append((name, uid(session), answer))
    assert refused == [], "\n".join(map(repr, refused))
    assert (await room.state())["offset"] == before["offset"]
    assert (await room.owner.ok("workshop.state", {"channel": idle}))["workshop"] is None
    # their own hand and question are theirs to lower and withdraw, not another's
    await other.ok("hand.lower", room.d())
    await other.ok("question.hide", room.d(question=question["id"]))


async def test_outsiders_and_timed_out_members_take_no_part(server) -> None:
    room = await make_room(server, 1)
    member = room.participants[0]
    outsider = await session_for(server, 1, "outsider")
    await room.start()
    poll = (await room.fac.ok("poll.create", room.d(question="q", options=["a", "b"])))["poll"]
    for op, d in [
        ("subscribe", room.d()),
        ("workshop.state", room.d()),
        ("hand.raise", room.d()),
        ("poll.vote", room.d(poll=poll["id"], choices=[0])),
        ("question.ask", room.d(text="me?")),
        ("pulse.send", room.d(kind="agree")),
    ]:
        assert error(await outsider.command(op, d))[0] == "forbidden", op
    await room.owner.ok(
        "member.timeout", {"community": room.club.id, "user": uid(member), "seconds": 600}
    )
    for op, d in [
        ("hand.raise", room.d()),
        ("poll.vote", room.d(poll=poll["id"], choices=[0])),
        ("question.ask", room.d(text="me?")),
        ("pulse.send", room.d(kind="agree")),
    ]:
        assert error(await member.command(op, d)) == ("forbidden", "participate"), op
    await member.ok("workshop.state", room.d())  # reading still works


async def test_a_second_vote_replaces_the_first_and_voters_stays_1(server) -> None:
    room = await make_room(server, 1)
    voter = room.participants[0]
    await room.start()
    for anonymous in (False, True):
        d = room.d(question="again?", options=["a", "b", "c"], anonymous=anonymous)
        poll = (await room.fac.ok("poll.create", d))["poll"]
        vote = room.d(poll=poll["id"])
        first = await voter.ok("poll.vote", {**vote, "choices": [0]})
        second = await voter.ok("poll.vote", {**vote, "choices": [2]})
        assert (first["poll"]["voters"], first["poll"]["tallies"]) == (1, [1, 0, 0])
        assert (second["poll"]["voters"], second["poll"]["tallies"]) == (1, [0, 0, 1])
        assert second["choices"] == [2]
        [now] = [p for p in (await room.state())["workshop"]["polls"] if p["id"] == poll["id"]]
        assert (now["voters"], now["tallies"]) == (1, [0, 0, 1])


#: Keys that carry what a ballot chose.
CHOICE_KEYS = {"choices", "choice", "ballot", "ballots", "index", "vote", "votes_for"}


def links(document: Any, poll: str, user: str) -> list[Any]:
    """The parts of ``document`` about ``poll`` (a map with the poll's id as one of its
    values) that name ``user`` together with what was chosen (a key of ``CHOICE_KEYS`` at
    any depth). Naming a user without choices (who voted) is no link."""
    found: list[Any] = []

    def has_choice_key(node: Any) -> bool:
        if isinstance(node, dict):
            return any(k in CHOICE_KEYS or has_choice_key(v) for k, v in node.items())
        if isinstance(node, list):
            return any(has_choice_key(v) for v in node)
        return False

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if poll in node.values() and user in json.dumps(node) and has_choice_key(node):
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str) and node.startswith(("{", "[")):  # JSON inside a string
            with contextlib.suppress(ValueError):
                walk(json.loads(node))

    walk(document)
    return found


def export(server: Any, community: str, path: Path) -> Any:
    done = agora("export", community, path, *storage(server))
    assert done.returncode == 0, done.stderr
    return json.loads(path.read_text())


async def test_nobody_learns_who_chose_what_in_an_anonymous_poll(server, tmp_path: Path) -> None:
    room = await make_room(server, 2)
    voter, other = room.participants
    log = ServerLog(server)
    await room.start("Secret ballot")
    watchers: list[Follower] = [await follow(s, room.channel) for s in (room.fac, voter, other)]
    fac_w, voter_w, other_w = watchers
    anon = (
        await room.fac.ok(
            "poll.create", room.d(question="Honestly?", options=["a", "b", "c"], anonymous=True)
        )
    )["poll"]
    named = (await room.fac.ok("poll.create", room.d(question="Openly?", options=["x", "y"])))[
        "poll"
    ]
    secret = anon["id"]
    replies = [
        await voter.ok("poll.vote", room.d(poll=secret, choices=[2])),
        await other.ok("poll.vote", room.d(poll=secret, choices=[0])),
        await voter.ok("poll.vote", room.d(poll=secret, choices=[1])),
    ]
    await voter.ok("poll.vote", room.d(poll=named["id"], choices=[0]))
    assert replies[-1]["choices"] == [1] and replies[-1]["poll"]["tallies"] == [1, 1, 0]
    assert uid(voter) not in json.dumps(replies[1])  # the other voter's own reply

    async def everyone_caught_up() -> dict[str, Any]:
        state = await room.state()
        for w in watchers:
            await w.catch_up(state["offset"])
        return state

    def told(w: Follower, about: str) -> list[dict[str, Any]]:
        """Frames ``w``'s session heard that mention ``about``'s id and a voter of the other."""
        return [f for f in w.frames if secret in json.dumps(f) and about in json.dumps(f)]

    # while it is open: the events, the state and mine
    await everyone_caught_up()
    for w in (fac_w, other_w):
        assert told(w, uid(voter)) == [], told(w, uid(voter))
    for w in (fac_w, voter_w):
        assert told(w, uid(other)) == [], told(w, uid(other))
    for w in watchers:
        assert links(w.frames, secret, uid(voter)) == []
    for session in (room.fac, other):
        state = await room.state(session)
        assert uid(voter) not in json.dumps(state["workshop"])
    assert secret not in (await room.state(room.fac))["mine"]["ballots"]
    assert (await room.state(other))["mine"]["ballots"] == {secret: [0]}  # their own only
    assert (await room.state(voter))["mine"]["ballots"] == {secret: [1], named["id"]: [0]}
    history = await fac_w.session.ok("history", room.d(limit=100))
    assert [
        e for e in history["events"] if secret in json.dumps(e) and uid(voter) in json.dumps(e)
    ] == []
    opened = export(server, room.club.id, tmp_path / "open.json")
    assert links(opened, secret, uid(voter)) == []
    assert links(opened, secret, uid(other)) == []
    # closed: the link is gone for the voter too
    await room.fac.ok("poll.close", room.d(poll=secret))
    await everyone_caught_up()
    assert secret not in (await room.state(voter))["mine"]["ballots"]
    for w in (fac_w, other_w):
        assert told(w, uid(voter)) == []
    # the end: the recap has no ballots for it, and the export links nobody to it
    ended = await room.fac.ok("workshop.end", room.d())
    [recap_anon] = [p for p in ended["recap"]["polls"] if p["id"] == secret]
    assert "ballots" not in recap_anon and recap_anon["tallies"] == [1, 1, 0]
    [recap_named] = [p for p in ended["recap"]["polls"] if p["id"] == named["id"]]
    assert recap_named["ballots"] == {uid(voter): [0]}
    await everyone_caught_up()
    for w in watchers:
        assert links(w.frames, secret, uid(voter)) == []
        assert links(w.frames, secret, uid(other)) == []
    closed = export(server, room.club.id, tmp_path / "closed.json")
    assert links(closed, secret, uid(voter)) == [] and links(closed, secret, uid(other)) == []
    # the same search finds the named poll's ballots in the recap: it would see a link
    assert links(closed, named["id"], uid(voter)) != []
    log_text = log.text()
    assert uid(voter) not in log_text and uid(other) not in log_text, log_text


async def test_a_breakout_room_is_read_by_its_group_and_facilitators_only(server) -> None:
    room = await make_room(server, 4, guests=1)
    a, b, c, guest = room.participants
    await room.start()
    assignment = [[uid(a), uid(guest)], [uid(b), uid(c)]]
    breakout = (await room.fac.ok("breakout.open", room.d(groups=2, assignment=assignment)))[
        "breakout"
    ]
    one, two = (g["channel"] for g in breakout["groups"])
    for session, channel in ((a, one), (guest, one), (b, two), (c, two)):
        await session.ok("subscribe", {"channel": channel})
        await session.ok("history", {"channel": channel})
    for session, channel in ((b, one), (c, one), (a, two), (guest, two)):
        for op in ("subscribe", "history"):
            assert error(await session.command(op, {"channel": channel}))[0] == "forbidden", (
                op,
                uid(session),
            )
        refused = await session.command("breakout.report", {"channel": channel, "text": "x"})
        assert error(refused)[0] == "forbidden"
    for session in (room.fac, room.owner):
        for channel in (one, two):
            await session.ok("history", {"channel": channel})
    await room.fac.ok("breakout.close", room.d())
    for op in ("subscribe", "history"):  # archived, and still its group's
        assert error(await b.command(op, {"channel": one}))[0] == "forbidden", op
    await a.ok("history", {"channel": one})


async def test_participants_cannot_read_the_participation_view(server) -> None:
    room = await make_room(server, 2, guests=1)
    member, guest = room.participants
    outsider = await session_for(server, 1, "outsider")
    await room.start()
    d = {"community": room.club.id}
    for session in (member, guest):
        assert error(await session.command("community.participation", d)) == (
            "forbidden",
            "read_participation",
        )
    assert error(await outsider.command("community.participation", d))[0] == "forbidden"
    await room.fac.ok("community.participation", d)
    await room.owner.ok("community.participation", d)
