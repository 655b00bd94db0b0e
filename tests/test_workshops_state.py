"""A workshop's state a client can trust (issue 11, docs/protocol.md §5.10 "Following a
workshop"): the ``subscribe`` snapshot plus the events after it, folded with
``protocol.workshop.apply``, equals ``workshop.state`` after every step, in the pattern of
``test_discussions_state``'s verify test.

A facilitator and three participants (one a guest) act at random, each step chosen among
what the state allows (the seed is printed; ``AGORA_TEST_SEED`` replays one). Three
followers check every step: one subscribed before the workshop started, a late joiner
that subscribes a third of the way in, and one that unsubscribes, misses some steps and
comes back with ``since`` (its replay, folded onto what it had, must give the new
snapshot). Each actor's ``mine`` is checked against what its own replies said.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import RawSession
from tests.discussion_helpers import close_all, connect, node, uid
from tests.workshop_helpers import Follower, Room, folded, group_of, make_room


@pytest.fixture(autouse=True)
async def _close_sessions() -> AsyncIterator[None]:
    yield
    await close_all()


STEPS = 70
WORDS = ["why", "how", "monads", "tea", "later", "again", "slides", "pairs"]


class Script:
    """Chooses and runs one valid action at a time; keeps each actor's ballots and upvotes."""

    def __init__(self, room: Room, rng: random.Random) -> None:
        self.room, self.rng = room, rng
        self.fac = room.facilitator
        self.people = [room.facilitator, *room.participants]
        self.guest = room.participants[-1]
        self.ballots: dict[str, dict[str, list[int]]] = {uid(p): {} for p in self.people}
        self.upvoted: dict[str, set[str]] = {uid(p): set() for p in self.people}
        self.done: list[str] = []
        #: actions every run has, each the first time its actor may take it
        self.first = ["hand.raise", "poll.vote", "question.ask"]

    def mine(self, user: str, w: dict[str, Any]) -> dict[str, Any]:
        polls = {p["id"]: p for p in w["polls"]}
        ballots = {
            poll: choices
            for poll, choices in self.ballots[user].items()
            if not (polls[poll]["anonymous"] and polls[poll]["closed"])
        }
        return {"ballots": ballots, "upvoted": sorted(self.upvoted[user])}

    async def step(self, w: dict[str, Any]) -> RawSession:
        """One action on workshop ``w`` (the state as of the last check); who did it."""
        rng, d = self.rng, self.room.d
        who = self.fac if rng.random() < 0.4 else rng.choice(self.room.participants)
        me = uid(who)
        hands = w["hands"]
        queue = [h["user"] for h in hands["queue"]]
        open_polls = [p for p in w["polls"] if not p["closed"]]
        visible = [q for q in w["questions"] if not q["hidden"]]
        mine_q = [q for q in visible if q.get("by") == me]
        options: list[tuple[str, dict[str, Any]]] = [
            ("hand.raise", d()),
            ("hand.lower", d()),
            ("pulse.send", d(kind=rng.choice(["agree", "confused", "slower", "faster"]))),
            ("question.ask", d(text=" ".join(rng.choices(WORDS, k=3)) + "?")),
        ]
        if who is not self.guest:
            options.append(("message.send", d(text=rng.choice(WORDS))))
        for poll in open_polls:
            n = len(poll["options"])
            k = rng.randint(1, n) if poll["multi"] else 1
            options.append(("poll.vote", d(poll=poll["id"], choices=rng.sample(range(n), k))))
        for q in visible:
            op = "question.unvote" if q["id"] in self.upvoted[me] else "question.upvote"
            options.append((op, d(question=q["id"])))
        if mine_q:
            options.append(("question.hide", d(question=rng.choice(mine_q)["id"])))
        if w["breakout"] is not None and (group := group_of(w["breakout"], me)):
            options.append(("breakout.report", {"channel": group["channel"], "text": "we did"}))
        if who is self.fac and rng.random() < 0.8:
            options = []  # mostly driving: the facilitator's own moves
        if who is self.fac:
            options += [
                ("agenda.goto", d(index=rng.randrange(len(w["agenda"])))),
                ("hand.order", d(order=rng.choice(["fifo", "fair"]))),
                ("hand.lower", d(all=True)),
            ]
            if w["current"] < len(w["agenda"]) - 1:
                options.append(("agenda.next", d()))
            if queue:
                options += [("hand.call", d()), ("hand.call", d(user=rng.choice(queue)))]
                options.append(("hand.lower", d(user=rng.choice(queue))))
            if hands["speaking"]:
                options.append(("hand.lower", d(user=hands["speaking"])))
            if len(w["polls"]) < 6:
                n = rng.randint(2, 4)
                options.append(
                    (
                        "poll.create",
                        d(
                            question=rng.choice(WORDS) + "?",
                            options=[f"option {i}" for i in range(n)],
                            multi=rng.random() < 0.5,
                            anonymous=rng.random() < 0.4,
                        ),
                    )
                )
            options += [("poll.close", d(poll=p["id"])) for p in open_polls]
            for q in visible:
                answer = d(question=q["id"])
                if rng.random() < 0.5:
                    answer["text"] = "because"
                options += [("question.answer", answer), ("question.hide", d(question=q["id"]))]
            if w["timer"] is None:
                options.append(("timer.start", d(seconds=rng.randint(300, 900), label="t")))
            else:
                options += [("timer.extend", d(seconds=60)), ("timer.cancel", d())]
            if w["breakout"] is None:
                opening = d(groups=rng.randint(1, 2))
                if w["timer"] is None and rng.random() < 0.3:
                    opening["minutes"] = 10  # with the workshop's timer, labelled Breakouts
                options.append(("breakout.open", opening))
            else:
                options.append(("breakout.close", d()))
        by_op: dict[str, list[dict[str, Any]]] = {}
        for op, payload in options:
            by_op.setdefault(op, []).append(payload)
        op = rng.choice(sorted(by_op))  # each kind of action alike, however many targets
        for must in self.first:
            if must in by_op:
                op = must
                self.first.remove(must)
                break
        payload = rng.choice(by_op[op])
        self.done.append(op)
        answer = await who.ok(op, payload)
        if op == "poll.vote":
            self.ballots[me][payload["poll"]] = answer["choices"]
            assert answer["choices"] == sorted(set(payload["choices"])), (payload, answer)
        elif op == "question.upvote":
            self.upvoted[me].add(payload["question"])
        elif op == "question.unvote":
            self.upvoted[me].discard(payload["question"])
        return who


async def check_all(room: Room, who: RawSession, script: Script, followers: list[Follower]):
    """``workshop.state`` as ``who``: every follower's fold at its offset equals it, and its
    ``mine`` is what ``who``'s replies said."""
    state = await room.state(who)
    for f in followers:
        await f.check(state, f"seed step {len(script.done)}: {script.done[-3:]}")
    if state["workshop"] is not None:
        expected = script.mine(uid(who), state["workshop"])
        hidden = {q["id"] for q in state["workshop"]["questions"] if q["hidden"]}
        got = state["mine"]
        assert got["ballots"] == expected["ballots"], (script.done[-3:], got, expected)
        assert sorted(set(got["upvoted"]) - hidden) == sorted(set(expected["upvoted"]) - hidden)
    return state


async def test_the_subscribe_snapshot_and_the_events_after_it_equal_workshop_state_every_step(
    server,
) -> None:
    seed = int(os.environ.get("AGORA_TEST_SEED", random.randrange(10**9)))
    print(f"workshop verify seed: {seed} (AGORA_TEST_SEED={seed} replays it)")
    rng = random.Random(seed)
    room = await make_room(server, 3, guests=1)
    script = Script(room, rng)
    watcher = await connect(node(server, 1), room.participants[0].token)  # type: ignore[attr-defined]
    early = Follower(watcher, room.channel)
    await early.subscribe()
    assert early.snapshot is None
    agenda = [{"title": "Intro"}, {"title": "Pairs", "minutes": 15}, {"title": "Plenary"}]
    agenda.append({"title": "Wrap-up", "minutes": 5})
    await room.start("Verified", agenda)
    await room.attend()
    followers = [early]
    resub: Follower | None = None
    away: tuple[int, Any] | None = None  # (last offset, state) of the follower that left
    try:
        state = await check_all(room, room.fac, script, followers)
        for anonymous in (False, True):  # polls to vote in from the start
            poll = room.d(question="first?", options=["a", "b", "c"], anonymous=anonymous)
            await room.fac.ok("poll.create", {**poll, "multi": anonymous})
            script.done.append("poll.create")
            state = await check_all(room, room.fac, script, followers)
        for i in range(STEPS):
            if i == STEPS // 3:  # a late joiner, on the other node
                session = await connect(node(server, 0), room.participants[1].token)  # type: ignore[attr-defined]
                late = Follower(session, room.channel)
                reply = await late.subscribe()
                expected = script.mine(uid(room.participants[1]), reply["workshop"])
                assert reply["mine"]["ballots"] == expected["ballots"], (reply["mine"], expected)
                followers.append(late)
            if i == STEPS // 2:  # one that leaves for a while
                session = await connect(node(server, 1), room.facilitator.token)  # type: ignore[attr-defined]
                resub = Follower(session, room.channel)
                await resub.subscribe()
                followers.append(resub)
            if i == STEPS // 2 + 5 and resub is not None:
                await resub.catch_up(state["offset"])
                await resub.session.ok("unsubscribe", room.d())
                resub._drain_early()
                away = (resub.last_o, resub.state_at())
                followers.remove(resub)
            if i == STEPS // 2 + 15 and resub is not None and away is not None:
                last, had = away
                reply = await resub.subscribe(since=last)
                assert reply["recovered"] is True, reply
                offsets = [e["o"] for e in resub.replayed]
                assert offsets == list(range(last + 1, reply["offset"] + 1)), offsets
                assert folded(had, resub.replayed) == reply["workshop"], seed
                followers.append(resub)
            who = await script.step(state["workshop"])
            state = await check_all(room, who, script, followers)
        await room.fac.ok("workshop.end", room.d())
        state = await check_all(room, room.fac, script, followers)
        assert state["workshop"] is None
    finally:
        print("actions:", " ".join(script.done))
    counted = set(script.done)
    assert {"hand.raise", "poll.vote", "question.ask"} <= counted, counted


async def test_votes_upvotes_and_hands_at_once_from_both_nodes_lose_nothing(server) -> None:
    room = await make_room(server, 12, guests=2)  # alternating over the nodes
    people = room.participants
    watchers = [Follower(await connect(node(server, i), room.fac.token), room.channel)  # type: ignore[attr-defined]
                for i in (0, 1)]  # fmt: skip
    for w in watchers:
        await w.subscribe()
    await room.start("Rush")
    single = await room.fac.ok("poll.create", room.d(question="1?", options=["a", "b", "c"]))
    multi = await room.fac.ok(
        "poll.create", room.d(question="2?", options=["x", "y"], multi=True, anonymous=True)
    )
    question = (await room.fac.ok("question.ask", room.d(text="Everyone agree?")))["question"]

    async def everything(i: int, p: RawSession) -> None:
        await p.ok("poll.vote", room.d(poll=single["poll"]["id"], choices=[i % 3]))
        await p.ok("poll.vote", room.d(poll=multi["poll"]["id"], choices=[0, 1]))
        await p.ok("question.upvote", room.d(question=question["id"]))
        await p.ok("hand.raise", room.d())
        await p.ok("pulse.send", room.d(kind="agree"))
        await p.ok("poll.vote", room.d(poll=single["poll"]["id"], choices=[(i + 1) % 3]))

    await asyncio.gather(*(everything(i, p) for i, p in enumerate(people)))
    state = await room.state()
    for w in watchers:
        await w.check(state)
    w = state["workshop"]
    polls = {p["id"]: p for p in w["polls"]}
    n = len(people)
    one = polls[single["poll"]["id"]]
    assert one["voters"] == n and one["tallies"] == [
        sum(1 for i in range(n) if (i + 1) % 3 == k) for k in range(3)
    ]
    assert (polls[multi["poll"]["id"]]["voters"], polls[multi["poll"]["id"]]["tallies"]) == (
        n,
        [n, n],
    )
    assert w["questions"][0]["votes"] == n
    assert sorted(h["user"] for h in w["hands"]["queue"]) == sorted(map(uid, people))
    assert w["pulse"]["agree"] == n
