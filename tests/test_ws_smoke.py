from __future__ import annotations

import asyncio
import copy

import pytest

from protocol.workshop import apply
from tests.discussion_helpers import Club, close_all, event, session_for, uid

pytestmark = pytest.mark.asyncio


async def test_smoke(server):
    try:
        owner = await session_for(server, 0, "owner")
        club = await Club.create(server, owner)
        ws = await club.channel("live", "workshop")
        alice = await club.join(1, name="alice")
        bob = await club.join(0, name="bob")
        sub = await alice.ok("subscribe", {"channel": ws})
        assert sub["workshop"] is None
        await owner.ok(
            "workshop.start",
            {"channel": ws, "title": "T", "agenda": [{"title": "a", "minutes": 1}, {"title": "b"}]},
        )
        await owner.ok("agenda.next", {"channel": ws})
        await alice.ok("hand.raise", {"channel": ws})
        await bob.ok("subscribe", {"channel": ws})
        await bob.ok("hand.raise", {"channel": ws})
        await owner.ok("hand.order", {"channel": ws, "order": "fair"})
        await owner.ok("hand.call", {"channel": ws})
        poll = (
            await owner.ok(
                "poll.create",
                {"channel": ws, "question": "q?", "options": ["x", "y"], "anonymous": True},
            )
        )["poll"]
        await alice.ok("poll.vote", {"channel": ws, "poll": poll["id"], "choices": [0]})
        await alice.ok("poll.vote", {"channel": ws, "poll": poll["id"], "choices": [1]})
        await bob.ok("poll.vote", {"channel": ws, "poll": poll["id"], "choices": [1]})
        q = (await bob.ok("question.ask", {"channel": ws, "text": "why?"}))["question"]
        await alice.ok("question.upvote", {"channel": ws, "question": q["id"]})
        await alice.ok("pulse.send", {"channel": ws, "kind": "agree"})
        b = (await owner.ok("breakout.open", {"channel": ws, "groups": 2, "minutes": 5}))[
            "breakout"
        ]
        g = next(g for g in b["groups"] if uid(alice) in g["members"])
        await alice.ok("subscribe", {"channel": g["channel"]})
        await alice.ok("message.send", {"channel": g["channel"], "text": "hi group"})
        await alice.ok("breakout.report", {"channel": g["channel"], "text": "we agree"})
        other = next(x for x in b["groups"] if x is not g)
        if other["members"]:
            err = await alice.command("subscribe", {"channel": other["channel"]})
            assert err["op"] == "error" and err["d"]["code"] == "forbidden", err
        await owner.ok("breakout.close", {"channel": ws})
        mine = await alice.ok("workshop.state", {"channel": ws})
        assert mine["mine"]["ballots"] == {poll["id"]: [1]}
        st = await owner.ok("workshop.state", {"channel": ws})
        # fold: alice's subscribe snapshot + events
        frames = []
        while alice.early:
            frames.append(alice.early.pop(0))
        state = copy.deepcopy(sub["workshop"])
        off = sub["offset"]
        for f in frames:
            if f.get("op") == "event" and f.get("ch") == ws and f.get("o", 0) > off:
                state = apply(state, f)
        assert state == st["workshop"], (state, st["workshop"])
        part = await owner.ok("community.participation", {"community": club.id})
        print(part)
        recap = (await owner.ok("workshop.end", {"channel": ws}))["recap"]
        print(recap)
        assert recap["polls"][0]["tallies"] == [0, 2]
        th = await owner.ok("thread.list", {"channel": ws})
        assert len(th["threads"]) == 2, th
        hist = await owner.ok("history", {"channel": recap["thread"]})
        print(hist["events"][0]["d"]["message"]["text"])
    finally:
        await close_all()


async def test_timer_ends_once(server):
    try:
        owner = await session_for(server, 0, "owner")
        club = await Club.create(server, owner)
        ws = await club.channel("live", "workshop")
        alice = await club.join(1, name="alice")
        await owner.ok("workshop.start", {"channel": ws, "title": "T"})
        await alice.ok("subscribe", {"channel": ws})
        await owner.ok("timer.start", {"channel": ws, "seconds": 1})
        ended = await event(alice, "timer.ended", ch=ws, seconds=5)
        assert ended["d"]["cancelled"] is False
        await alice.ok("pulse.send", {"channel": ws, "kind": "agree"})
        st = await alice.ok("workshop.state", {"channel": ws})
        assert st["workshop"]["timer"] is None and st["workshop"]["pulse"]["agree"] == 1
        await asyncio.sleep(1.5)
        st = await alice.ok("history", {"channel": ws})
        assert [e["t"] for e in st["events"]].count("timer.ended") == 1
    finally:
        await close_all()


async def test_those_in_the_channel_at_the_start_attend(server):
    try:
        owner = await session_for(server, 0, "owner")
        club = await Club.create(server, owner)
        ws = await club.channel("live", "workshop")
        alice = await club.join(1, name="alice")
        bob = await club.join(0, name="bob")
        for s in (alice, bob):
            await s.ok("subscribe", {"channel": ws})
        await owner.ok("workshop.start", {"channel": ws, "title": "T"})
        await event(alice, "workshop.started", ch=ws)
        await event(bob, "workshop.started", ch=ws)
        for _ in range(100):
            part = await owner.ok("community.participation", {"community": club.id})
            attended = {m["user"] for m in part["members"] if m["attended"]}
            if {uid(alice), uid(bob)} <= attended:
                break
            await asyncio.sleep(0.05)
        assert {uid(alice), uid(bob)} <= attended
        b = (await owner.ok("breakout.open", {"channel": ws, "groups": 2}))["breakout"]
        assert sorted(len(g["members"]) for g in b["groups"]) == [1, 1]
    finally:
        await close_all()
