"""Helpers of the workshop tests (issue 11, docs/protocol.md §5.10): a community of one's
own with a workshop channel, a facilitator and participants spread over the nodes, and a
``Follower`` that folds a workshop channel's events with ``protocol.workshop.apply`` from a
``subscribe`` snapshot, as a client does.

Sessions come from ``tests.discussion_helpers`` (closed after each test by its
``close_all``) and hear user events (``thread.activity`` is part of the recap).
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field
from typing import Any

from protocol import workshop as fold
from tests.conftest import RawSession, timeout
from tests.discussion_helpers import Club, all_events, session_for, uid

#: Every facilitator command, with a payload valid in a room where ``poll``, ``question``
#: and a group channel exist (built by ``facilitator_commands``).
FACILITATOR_OPS = (
    "workshop.start",
    "workshop.end",
    "agenda.next",
    "agenda.goto",
    "hand.lower (another's)",
    "hand.lower (all)",
    "hand.call",
    "hand.order",
    "poll.create",
    "poll.close",
    "question.answer",
    "question.hide (another's)",
    "timer.start",
    "timer.extend",
    "timer.cancel",
    "breakout.open",
    "breakout.broadcast",
    "breakout.close",
)


@dataclass
class Room:
    """A community with a workshop channel: its owner, a facilitator and participants."""

    server: Any
    club: Club
    owner: RawSession
    facilitator: RawSession
    participants: list[RawSession]
    channel: str

    @property
    def fac(self) -> RawSession:
        return self.facilitator

    async def start(
        self, title: str = "Workshop", agenda: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        d: dict[str, Any] = {"channel": self.channel, "title": title}
        if agenda is not None:
            d["agenda"] = agenda
        return (await self.facilitator.ok("workshop.start", d))["workshop"]

    async def state(self, session: RawSession | None = None) -> dict[str, Any]:
        """``workshop.state`` as ``session`` (the facilitator) sees it: ``{workshop, offset,
        mine}``."""
        return await (session or self.facilitator).ok("workshop.state", {"channel": self.channel})

    async def attend(self, *sessions: RawSession) -> None:
        """Subscribe each session to the workshop channel (attending, while one is live)."""
        for session in sessions or tuple(self.participants):
            await session.ok("subscribe", {"channel": self.channel})

    def d(self, **more: Any) -> dict[str, Any]:
        """A payload naming the workshop channel."""
        return {"channel": self.channel, **more}


async def make_room(
    server: Any, participants: int = 3, *, guests: int = 0, name: str = "room"
) -> Room:
    """A fresh community with a ``workshop`` channel; the owner on node 0, the facilitator
    on node 1, participants alternating (the last ``guests`` of them guests)."""
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    channel = await club.channel(name, "workshop")
    facilitator = await club.join(1, "facilitator", "fac")
    people = []
    for i in range(participants):
        role = "guest" if i >= participants - guests else "member"
        people.append(await club.join(i, role, f"p{i}"))
    return Room(server, club, owner, facilitator, people, channel)


def by_user(items: list[dict[str, Any]], key: str = "user") -> dict[str, dict[str, Any]]:
    return {item[key]: item for item in items}


def events_of(frames: list[dict[str, Any]], t: str | None = None) -> list[dict[str, Any]]:
    return [f for f in frames if f.get("op") == "event" and t in (None, f.get("t"))]


async def history_of(session: RawSession, channel: str) -> list[dict[str, Any]]:
    """Every durable event of ``channel``, oldest first."""
    return await all_events(session, channel)


def folded(snapshot: dict[str, Any] | None, events: list[dict[str, Any]]) -> Any:
    """``snapshot`` with ``events`` applied in order (a copy)."""
    state = copy.deepcopy(snapshot)
    for event in events:
        state = fold.apply(state, event)
    return state


@dataclass
class Follower:
    """One session following one workshop channel as docs/protocol.md §5.10 says: the
    ``subscribe`` reply's ``workshop`` as of its ``offset``, then each event with a greater
    ``o``, in order, through ``protocol.workshop.apply``.

    Every frame read is kept in ``frames`` (for tests that inspect what a session was
    told); ``events`` holds the channel's durable events past the snapshot, gap-free.
    """

    session: RawSession
    channel: str
    snapshot: dict[str, Any] | None = None
    offset: int = 0
    mine: dict[str, Any] | None = None
    epoch: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    frames: list[dict[str, Any]] = field(default_factory=list)
    replayed: list[dict[str, Any]] = field(default_factory=list)
    last_o: int = 0
    _consumed: int = 0  # how far ``next_event`` has looked in ``events``

    async def subscribe(self, since: int | None = None) -> dict[str, Any]:
        """(Re)subscribe, with ``since`` (and the epoch) if given; start a new fold from the
        reply. The events a ``since`` replay delivered are kept in ``replayed``."""
        d: dict[str, Any] = {"channel": self.channel}
        if since is not None:
            d["since"] = since
            if self.epoch is not None:
                d["epoch"] = self.epoch
        self._drain_early()
        reply = await self.session.ok("subscribe", d)
        early, self.session.early[:] = list(self.session.early), []
        self.frames += early
        self.replayed = [f for f in events_of(early) if f.get("ch") == self.channel]
        assert "workshop" in reply and "mine" in reply, reply
        self.snapshot, self.offset, self.mine = reply["workshop"], reply["offset"], reply["mine"]
        self.epoch = reply["epoch"]
        self.events = []
        self._consumed = 0
        self.last_o = self.offset
        # anything live that came with the replay (o past the offset) is the fold's already
        for frame in self.replayed:
            self._take(frame)
        return reply

    def _drain_early(self) -> None:
        early, self.session.early[:] = list(self.session.early), []
        for frame in early:
            self.frames.append(frame)
            self._take(frame)

    def _take(self, frame: dict[str, Any]) -> None:
        if frame.get("op") != "event" or frame.get("ch") != self.channel or "o" not in frame:
            return
        o = frame["o"]
        if o <= self.last_o:
            return  # part of the snapshot (a since replay delivers those first)
        assert o == self.last_o + 1, f"gap in {self.channel}: {self.last_o} then {o}"
        self.last_o = o
        self.events.append(frame)

    async def catch_up(self, offset: int, seconds: float = 10) -> None:
        """Read until every durable event up to ``offset`` has arrived."""
        self._drain_early()
        async with asyncio.timeout(timeout(seconds)):
            while self.last_o < offset:
                frame = await self.session.recv(seconds)
                self.frames.append(frame)
                self._take(frame)

    async def next_event(self, t: str, seconds: float = 10) -> dict[str, Any]:
        """The next durable event ``t`` of the channel not seen by an earlier call."""
        self._drain_early()
        seen = self._consumed
        async with asyncio.timeout(timeout(seconds)):
            while True:
                for i, frame in enumerate(self.events[seen:], start=seen):
                    if frame["t"] == t:
                        self._consumed = i + 1
                        return frame
                seen = len(self.events)
                frame = await self.session.recv(seconds)
                self.frames.append(frame)
                self._take(frame)

    def state_at(self, offset: int | None = None) -> Any:
        """The fold of the snapshot and the events up to ``offset`` (all of them: None)."""
        upto = [e for e in self.events if offset is None or e["o"] <= offset]
        return folded(self.snapshot, upto)

    async def check(self, state: dict[str, Any], what: str = "") -> None:
        """``state`` is a ``workshop.state`` reply: the fold at its offset must equal it."""
        await self.catch_up(state["offset"])
        assert self.state_at(state["offset"]) == state["workshop"], what


async def follow(session: RawSession, channel: str) -> Follower:
    follower = Follower(session, channel)
    await follower.subscribe()
    return follower


async def live_room(
    server: Any, participants: int = 3, *, guests: int = 0
) -> tuple[Room, Follower]:
    """``make_room``, the facilitator following the channel, and a workshop started."""
    room = await make_room(server, participants, guests=guests)
    f = await follow(room.fac, room.channel)
    await room.start()
    return room, f


def facilitator_commands(
    room: Room, *, poll: str, question: str, other: str
) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, op, d) of each command that needs ``run_workshops``, with valid payloads;
    ``other`` is a participant whose hand is up and whose question is ``question``."""
    d = room.d
    return [
        ("workshop.start", "workshop.start", d(title="a second one")),
        ("workshop.end", "workshop.end", d()),
        ("agenda.next", "agenda.next", d()),
        ("agenda.goto", "agenda.goto", d(index=0)),
        ("hand.lower (another's)", "hand.lower", d(user=other)),
        ("hand.lower (all)", "hand.lower", d(all=True)),
        ("hand.call", "hand.call", d()),
        ("hand.order", "hand.order", d(order="fair")),
        ("poll.create", "poll.create", d(question="Tea?", options=["yes", "no"])),
        ("poll.close", "poll.close", d(poll=poll)),
        ("question.answer", "question.answer", d(question=question, text="42")),
        ("question.hide (another's)", "question.hide", d(question=question)),
        ("timer.start", "timer.start", d(seconds=60)),
        ("timer.extend", "timer.extend", d(seconds=60)),
        ("timer.cancel", "timer.cancel", d()),
        ("breakout.open", "breakout.open", d(groups=2)),
        ("breakout.broadcast", "breakout.broadcast", d(text="two minutes left")),
        ("breakout.close", "breakout.close", d()),
    ]


def group_of(breakout: dict[str, Any], user: str) -> dict[str, Any] | None:
    return next((g for g in breakout["groups"] if user in g["members"]), None)


def me(session: RawSession) -> str:
    return uid(session)
