"""The workshop acceptance script (issue 11): a facilitator and five participants, one of
them a bot on the Python client with a bot token, run a whole workshop (agenda, hands in
fair order, a poll and an anonymous poll, Q&A, timers, two breakout groups with
report-backs, pulse) and the server is killed with ``kill -9`` in the middle: the embedded
server is restarted; in the scaled deployment one of the two nodes dies for good and its
clients move to the other. The workshop goes on: every client reconnects and resubscribes
with ``since``, its fold still equals ``workshop.state``, the state is what it was, the
timer that was running ends exactly once. The recap thread's structured recap then holds
exactly the results the script produced, counted by the script as it went.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from clients import Client, Event, Gap
from tests.conftest import Plug, PlugTo, eventually, http_json
from tests.discussion_helpers import all_events, close_all, connect, error, event, send, uid
from tests.workshop_helpers import folded, follow, make_room


@pytest.fixture(autouse=True)
async def _close_sessions() -> AsyncIterator[None]:
    yield
    await close_all()


class Bot:
    """A bot account on the Python client: it reconnects and resumes by itself."""

    def __init__(self, client: Client, channel: str) -> None:
        self.client, self.channel = client, channel
        self.events: list[Event] = []
        self.gaps: list[Gap] = []
        self.snapshot: dict[str, Any] | None = None
        self.offset = 0
        self.reader: asyncio.Task[None] | None = None

    @property
    def id(self) -> str:
        return self.client.identity["user"]["id"]

    async def follow(self) -> None:
        reply = await self.client.subscribe(self.channel)
        self.snapshot, self.offset = reply["workshop"], reply["offset"]
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for item in self.client.events():
            if isinstance(item, Gap):
                self.gaps.append(item)
            else:
                self.events.append(item)

    def last_o(self) -> int:
        mine = [e.o for e in self.events if e.ch == self.channel and e.o is not None]
        return max(mine, default=self.offset)

    def state(self) -> Any:
        """The snapshot and every event after it, each exactly once and in order."""
        mine = [e for e in self.events if e.ch == self.channel and e.o is not None]
        offsets = [e.o for e in mine]
        assert offsets == list(range(self.offset + 1, self.offset + 1 + len(mine))), offsets
        frames = [{"t": e.t, "d": e.d, "o": e.o} for e in mine]
        return folded(self.snapshot, frames)

    async def ok(self, op: str, d: dict[str, Any]) -> dict[str, Any]:
        return await self.client.request(op, d)

    async def stop(self) -> None:
        await self.client.close()
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader


async def test_a_whole_workshop_survives_kill_9_and_its_recap_holds_exactly_what_happened(
    make_server, plug_to: PlugTo, deployment: str
) -> None:
    server = make_server(rate_limit=0)
    scaled = deployment == "scaled"
    room = await make_room(server, 4, name="retro")  # facilitator on node 1, p0..p3 alternating
    # the bot: made by the community's owner, invited, on the Python client; in the scaled
    # deployment it reaches node 1 through a balancer that is turned to node 0 when 1 dies
    status, made = http_json(
        "POST",
        server.nodes[0].http + "/api/v1/bots",
        {"username": f"helper{uid(room.owner)[-6:]}"},
        token=room.owner.token,  # type: ignore[attr-defined]
    )
    assert status == 201, made
    balancer = await plug_to(server.nodes[-1])
    client = Client(balancer.ws if scaled else server.ws, made["token"])
    await client.connect()
    code = (await room.owner.ok("invite.create", {"community": room.club.id}))["invite"]["code"]
    await client.accept_invite(code)
    bot = Bot(client, room.channel)
    try:
        await run_script(server, scaled, room, bot, balancer)
    finally:
        await bot.stop()


class Tally:
    """What each user did, counted by the script: the recap's participation must agree."""

    def __init__(self) -> None:
        self.counts: dict[str, Counter[str]] = {}
        self.voted: dict[str, set[str]] = {}

    def add(self, user: str, what: str, n: int = 1) -> None:
        self.counts.setdefault(user, Counter())[what] += n

    def vote(self, user: str, poll: str) -> None:
        self.voted.setdefault(user, set()).add(poll)

    def of(self, user: str) -> dict[str, int]:
        c = self.counts.get(user, Counter())
        return {
            "messages": c["messages"],
            "hands": c["hands"],
            "turns": c["turns"],
            "votes": len(self.voted.get(user, ())),
            "questions": c["questions"],
            "upvotes": c["upvotes"],
        }


async def run_script(server: Any, scaled: bool, room: Any, bot: Bot, balancer: Plug) -> None:
    fac, (p1, p2, p3, p4) = room.fac, room.participants
    d = room.d
    tally = Tally()
    agenda = [
        {"title": "Check-in"},
        {"title": "Discuss", "minutes": 20},
        {"title": "Breakouts"},
        {"title": "Wrap-up"},
    ]
    workshop = await room.start("Sprint retro", agenda)
    # everyone follows (and so attends); the facilitator's fold is checked at every phase
    followers = {uid(s): await follow(s, room.channel) for s in (fac, p1, p2, p3, p4)}
    await bot.follow()
    people: dict[str, Any] = {uid(s): s for s in (p1, p2, p3, p4)}
    people[bot.id] = bot
    node_of = {uid(fac): 1, uid(p1): 0, uid(p2): 1, uid(p3): 0, uid(p4): 1}

    async def act(user: str, op: str, payload: dict[str, Any]) -> dict[str, Any]:
        who = people.get(user) or fac
        return await who.ok(op, payload)

    async def checked() -> dict[str, Any]:
        state = await room.state()
        for f in followers.values():
            await f.check(state)
        return state

    await fac.ok("agenda.next", d())
    # hands, in fair order
    await fac.ok("hand.order", d(order="fair"))
    for user in (uid(p1), uid(p2), uid(p3)):
        await act(user, "hand.raise", d())
        tally.add(user, "hands")
    state = await checked()
    first = state["workshop"]["hands"]["queue"][0]["user"]
    await fac.ok("hand.call", d())
    tally.add(first, "turns")
    await act(first, "hand.lower", d())  # done speaking
    for user in (first, uid(p4), bot.id):
        await act(user, "hand.raise", d())
        tally.add(user, "hands")
    called = []
    for _ in range(2):
        state = await checked()
        hands = state["workshop"]["hands"]
        queue = hands["queue"]
        fair = sorted(queue, key=lambda h: (h["turns"], h["raised_ts"], h["user"]))
        assert queue == fair and queue[-1]["user"] == first, hands  # one turn taken: last
        await fac.ok("hand.call", d())
        called.append(queue[0]["user"])
        tally.add(queue[0]["user"], "turns")
        state = await checked()
        assert state["workshop"]["hands"]["speaking"] == called[-1]
    assert first not in called
    await fac.ok("hand.lower", d(all=True))
    speakers = {first: 1, called[0]: 1, called[1]: 1}
    # a poll, and an anonymous one
    pace = (
        await fac.ok("poll.create", d(question="Pace?", options=["too slow", "right", "too fast"]))
    )["poll"]["id"]
    for user, choice in ((uid(p1), 0), (uid(p2), 1), (uid(p3), 1), (uid(p4), 1), (bot.id, 2)):
        await act(user, "poll.vote", d(poll=pace, choices=[choice]))
        tally.vote(user, pace)
    await act(uid(p1), "poll.vote", d(poll=pace, choices=[1]))  # a change of mind
    helped = (
        await fac.ok(
            "poll.create",
            d(
                question="What helped?",
                options=["slides", "pairs", "demo"],
                multi=True,
                anonymous=True,
            ),
        )
    )["poll"]["id"]
    for user, choices in ((uid(p1), [0, 1]), (uid(p2), [2]), (bot.id, [1])):
        await act(user, "poll.vote", d(poll=helped, choices=choices))
        tally.vote(user, helped)
    # Q&A
    qa = (await act(uid(p2), "question.ask", d(text="Can we get the slides?")))["question"]["id"]
    qb = (await act(bot.id, "question.ask", d(text="Is there a recording?")))["question"]["id"]
    qc = (await act(uid(p3), "question.ask", d(text="What about homework?")))["question"]["id"]
    for user in (uid(p2), bot.id, uid(p3)):
        tally.add(user, "questions")
    for user, question in ((uid(p1), qa), (uid(p3), qa), (uid(p4), qb), (bot.id, qa)):
        await act(user, "question.upvote", d(question=question))
        tally.add(user, "upvotes")
    await fac.ok("question.answer", d(question=qa, text="Yes, tonight."))
    for user, text in ((uid(p1), "hello"), (bot.id, "bot says hi"), (uid(p4), "+1")):
        if user == bot.id:
            await bot.client.send_message(room.channel, text)
        else:
            await send(people[user], room.channel, text)
        tally.add(user, "messages")
    # the timeboxed item's timer is cancelled; a short one runs as the server dies
    await fac.ok("agenda.next", d())
    await fac.ok("timer.cancel", d())
    running = (await fac.ok("timer.start", d(seconds=2, label="Quick write")))["timer"]
    before = await checked()
    await eventually(lambda: bot.last_o() >= before["offset"], "the bot catching up")

    # kill -9
    if scaled:
        balancer.target_port = server.nodes[0].port  # the balancer now sends clients to node 0
        server.nodes[1].kill()
    else:
        server.kill()
        server.start()
    alive = server.nodes[0]
    for user, f in followers.items():
        if not scaled or node_of[user] == 1:
            with contextlib.suppress(Exception):
                await f.session.ws.close()
            f.session = await connect(alive, f.session.token)  # type: ignore[attr-defined]
            if user == uid(fac):
                room.facilitator = f.session
            else:
                people[user] = f.session
            reply = await f.subscribe(since=f.last_o)
            assert reply["recovered"] is True, reply
    fac, d = room.fac, room.d
    p1, p2, p3, p4 = (people[uid(p)] for p in (p1, p2, p3, p4))
    await eventually(lambda: bot.client.connected and bot.client.connections >= 2, "bot back", 30)
    # the state is intact: what it was, but for the timer, which ends exactly once
    fac_f = followers[uid(fac)]
    if (
        fac_f.state_at() is not None
        and (fac_f.state_at()["timer"] or {}).get("id") == running["id"]
    ):
        ended = await fac_f.next_event("timer.ended", seconds=15)
        assert ended["d"]["timer"]["id"] == running["id"] and ended["d"]["cancelled"] is False
    after = await checked()
    assert after["workshop"]["timer"] is None
    assert {k: v for k, v in after["workshop"].items() if k != "timer"} == {
        k: v for k, v in before["workshop"].items() if k != "timer"
    }
    sentinel = (await fac.ok("timer.start", d(seconds=1)))["timer"]
    ended = await fac_f.next_event("timer.ended", seconds=15)
    assert ended["d"]["timer"]["id"] == sentinel["id"]

    # the workshop goes on: close the poll, breakouts with report-backs, pulse
    await fac.ok("poll.close", d(poll=pace))
    await fac.ok("agenda.next", d())
    breakout = (await fac.ok("breakout.open", d(groups=2)))["breakout"]
    groups = breakout["groups"]
    dealt = sorted(u for g in groups for u in g["members"])
    assert dealt == sorted(people) and sorted(len(g["members"]) for g in groups) == [2, 3]
    reports = []
    for i, group in enumerate(groups, start=1):
        members = group["members"]
        for user in members:
            await act(user, "subscribe", {"channel": group["channel"]})
        writer, reporter = members[0], members[-1]
        if writer == bot.id:
            await bot.client.send_message(group["channel"], f"notes of group {i}")
        else:
            await send(people[writer], group["channel"], f"notes of group {i}")
        tally.add(writer, "messages")
        text = f"Group {i}: we would pair more"
        await act(reporter, "breakout.report", {"channel": group["channel"], "text": text})
        reports.append({"group": group["id"], "text": text, "by": reporter})
    closed = await fac.ok("breakout.close", d())
    assert closed["reports"] == reports
    for user, kind in ((uid(p1), "agree"), (uid(p2), "agree"), (bot.id, "faster")):
        await act(user, "pulse.send", d(kind=kind))
    await fac.ok("agenda.next", d())
    state = await checked()
    assert state["workshop"]["pulse"] == {"agree": 2, "confused": 0, "slower": 0, "faster": 1}
    await eventually(lambda: bot.last_o() >= state["offset"], "the bot catching up")
    assert bot.state() == state["workshop"] and bot.gaps == []

    # the end, and the recap
    ended = await fac.ok("workshop.end", d())
    recap = ended["recap"]
    assert (recap["id"], recap["channel"], recap["title"]) == (
        workshop["id"],
        room.channel,
        "Sprint retro",
    )
    assert [i["title"] for i in recap["agenda"]] == [i["title"] for i in agenda]
    polls = {p["id"]: p for p in recap["polls"]}
    assert [p["id"] for p in recap["polls"]] == [pace, helped]
    assert (polls[pace]["tallies"], polls[pace]["voters"], polls[pace]["closed"]) == (
        [0, 4, 1],
        5,
        True,
    )
    assert polls[pace]["ballots"] == {
        uid(p1): [1], uid(p2): [1], uid(p3): [1], uid(p4): [1], bot.id: [2]
    }  # fmt: skip
    assert (polls[helped]["tallies"], polls[helped]["voters"], polls[helped]["closed"]) == (
        [1, 2, 1],
        3,
        True,
    )
    assert "ballots" not in polls[helped]
    questions = {q["id"]: q for q in recap["questions"]}
    assert {q: (v["votes"], v["answered"]) for q, v in questions.items()} == {
        qa: (3, True),
        qb: (1, False),
        qc: (0, False),
    }
    assert questions[qa]["answer"] == "Yes, tonight."
    assert (questions[qb]["by"], questions[qc]["by"]) == (bot.id, uid(p3))
    assert {s["user"]: s["turns"] for s in recap["speakers"]} == speakers
    assert recap["reports"] == reports
    participation = {p["user"]: p for p in recap["participation"]}
    for user in people:
        assert participation[user] == {"user": user, **tally.of(user)}, user
    # the recap thread in the workshop channel, whose first message carries the recap
    made = [await followers[uid(p1)].next_event("thread.created") for _ in range(3)]
    threads = {e["d"]["thread"]["id"]: e["d"] for e in made}  # the recap's and two questions'
    assert set(threads) == {recap["thread"], questions[qb]["thread"], questions[qc]["thread"]}
    assert threads[recap["thread"]]["thread"]["title"] == "Sprint retro"
    assert threads[recap["thread"]]["by"] == uid(fac)
    assert threads[questions[qb]["thread"]]["thread"]["title"] == "Is there a recording?"
    first_message = (await all_events(fac, recap["thread"]))[0]["d"]["message"]
    assert first_message["recap"] == recap and "Sprint retro" in first_message["text"]
    # the open questions carry on in threads their asker and upvoters follow
    assert questions[qb]["thread"] and questions[qc]["thread"] and "thread" not in questions[qa]
    answer = await send(fac, questions[qb]["thread"], "Yes, on the wiki.")
    heard = await event(p4, "thread.activity", ch=questions[qb]["thread"])
    assert heard["d"]["message"] == answer

    def bot_heard() -> bool:
        return any(
            e.t == "thread.activity" and e.d["message"]["id"] == answer["id"] for e in bot.events
        )

    await eventually(bot_heard, "thread.activity for the bot")
    # the timer that was running at the kill ended exactly once
    history = await all_events(fac, room.channel)
    endings = Counter(e["d"]["timer"]["id"] for e in history if e["t"] == "timer.ended")
    assert endings[running["id"]] == 1 and endings[sentinel["id"]] == 1, endings
    # and the community's participation view counts this one workshop
    view = await fac.ok("community.participation", {"community": room.club.id})
    assert [s["id"] for s in view["sessions"]] == [workshop["id"]]
    members = {m["user"]: m for m in view["members"]}
    for user in people:
        assert members[user] == {"user": user, "attended": 1, **tally.of(user)}, user
    assert error(await p1.command("community.participation", {"community": room.club.id}))[0] == (
        "forbidden"
    )


async def test_the_recap_threads_are_written_once_when_the_server_dies_right_after_the_end(
    make_server, deployment: str
) -> None:
    server = make_server(rate_limit=0)
    scaled = deployment == "scaled"
    room = await make_room(server, 2, name="short")  # the facilitator on node 1
    asker, upvoter = room.participants
    await room.start("Cut short")
    await room.attend()
    question = (await asker.ok("question.ask", room.d(text="Left open?")))["question"]["id"]
    await upvoter.ok("question.upvote", room.d(question=question))
    recap = (await room.fac.ok("workshop.end", room.d()))["recap"]
    # kill -9 at once: the threads may or may not be written yet
    if scaled:
        server.nodes[1].kill()
    else:
        server.kill()
        server.start()
    alive = server.nodes[0]
    fac = await connect(alive, room.fac.token)  # type: ignore[attr-defined]
    [open_question] = recap["questions"]
    wanted = {recap["thread"], open_question["thread"]}
    listed: list[dict[str, Any]] = []

    async def threads() -> set[str]:
        listed[:] = (await fac.ok("thread.list", {"channel": room.channel}))["threads"]
        return {t["thread"]["id"] for t in listed}

    async with asyncio.timeout(15):  # a node writes them within a second of starting
        while await threads() != wanted:
            await asyncio.sleep(0.1)
    # a second's timer after the restart is the sentinel: the nodes have looked again since
    await fac.ok("workshop.start", room.d(title="after"))
    await fac.ok("subscribe", room.d())
    await fac.ok("timer.start", room.d(seconds=1))
    await event(fac, "timer.ended", ch=room.channel, seconds=15)
    assert await threads() == wanted
    history = await all_events(fac, room.channel)
    made = Counter(e["d"]["thread"]["id"] for e in history if e["t"] == "thread.created")
    assert made == dict.fromkeys(wanted, 1), made
    for thread in wanted:
        messages = [e for e in await all_events(fac, thread) if e["t"] == "message.created"]
        assert len(messages) == 1, (thread, messages)
    opening = (await all_events(fac, open_question["thread"]))[0]["d"]["message"]
    assert (opening["text"], opening["author"]["id"]) == ("Left open?", uid(asker))
    recap_message = (await all_events(fac, recap["thread"]))[0]["d"]["message"]
    assert recap_message["recap"] == recap
