"""The workshop part of the Python client (docs/protocol.md §5.10): commands and state.

``WorkshopCommands`` is a mixin of ``Client``: one method per workshop
command. ``Workshops`` is what the client keeps, as ``client.workshops``: for
each subscribed workshop channel, a ``Followed`` with the live workshop (or
``None``), the user's own ballots and upvotes (``mine``), and the recap of the
last workshop that ended there::

    await client.subscribe(room)
    followed = client.workshops[room]
    if followed.workshop is not None:
        print(followed.workshop["title"], followed.current_item())

The workshop is never computed here: it starts from the ``subscribe`` reply's
``workshop`` (the state as of the reply's ``offset``) and each durable event of
the channel with ``o`` above that offset goes through ``protocol.workshop.apply``,
the one fold the server uses too. After a reconnect the client subscribes again
and starts from the new reply. ``workshop_state()`` takes a fresher snapshot
when it is ahead of what was applied.

``mine`` comes from the snapshots and from this client's own ``poll_vote``,
``question_upvote`` and ``question_unvote``; the user's other sessions' votes
show in it after the next snapshot (``workshop_state()`` or a reconnect).

The state changes in the client's reader, before the event is yielded by
``events()``; what a command's reply says (a new poll, a vote) is in the state
once its event has arrived, which may be just after the reply.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clients.discussions import _given
from protocol import workshop as fold

if TYPE_CHECKING:
    from clients.client import Event

log = logging.getLogger("agora.client")


def _no_ballots() -> dict[str, Any]:
    return {"ballots": {}, "upvoted": []}


@dataclass(slots=True)
class Followed:
    """One subscribed workshop channel, as this client knows it."""

    channel: str
    #: the live workshop (the workshop object of §5.10), or None when none is live
    workshop: dict[str, Any] | None = None
    #: ``{ballots: {poll id: [choices]}, upvoted: [question ids]}``: the user's own
    mine: dict[str, Any] = field(default_factory=_no_ballots)
    #: the channel offset the state is as of: events at or below it are in it already
    offset: int = 0
    #: the recap of the last workshop that ended here while the client listened
    recap: dict[str, Any] | None = None

    @property
    def live(self) -> bool:
        return self.workshop is not None

    def current_item(self) -> dict[str, Any] | None:
        """The agenda item the workshop is on, or None before the first ``agenda.next``."""
        if self.workshop is None:
            return None
        current, agenda = self.workshop["current"], self.workshop["agenda"]
        return agenda[current] if 0 <= current < len(agenda) else None

    def poll(self, poll_id: str) -> dict[str, Any] | None:
        if self.workshop is None:
            return None
        return next((p for p in self.workshop["polls"] if p["id"] == poll_id), None)

    def question(self, question_id: str) -> dict[str, Any] | None:
        if self.workshop is None:
            return None
        return next((q for q in self.workshop["questions"] if q["id"] == question_id), None)

    def place_in_queue(self, user: str) -> int | None:
        """``user``'s place in the hand queue (1 is next), or None when not in it."""
        if self.workshop is None:
            return None
        queue = self.workshop["hands"]["queue"]
        return next((i for i, hand in enumerate(queue, 1) if hand["user"] == user), None)

    def ballot(self, poll_id: str) -> list[int] | None:
        """The user's own choices in a poll, when known."""
        return self.mine["ballots"].get(poll_id)

    def upvoted(self, question_id: str) -> bool:
        return question_id in self.mine["upvoted"]

    # keeping it

    def take(
        self, workshop: dict[str, Any] | None, mine: dict[str, Any] | None, offset: int
    ) -> None:
        """A snapshot (a ``subscribe`` or ``workshop.state`` reply) as of ``offset``."""
        self.workshop = copy.deepcopy(workshop)
        self.mine = _mine_of(mine)
        self.offset = offset

    def apply(self, event: Event) -> None:
        """One durable event of the channel; those at or below ``offset`` are in already."""
        if event.o is None or event.o <= self.offset:
            return
        self.offset = event.o
        if event.t not in fold.WORKSHOP_EVENTS:
            return
        frame = {"t": event.t, "d": event.d}
        self.workshop = fold.apply(self.workshop, frame)
        if event.t in ("workshop.started", "workshop.ended"):
            self.mine = _no_ballots()
            if event.t == "workshop.ended":
                self.recap = copy.deepcopy(event.d.get("recap"))
        elif event.t == "poll.closed" and event.d["poll"].get("anonymous"):
            # the server forgets who chose what in an anonymous poll when it closes
            self.mine["ballots"].pop(event.d["poll"]["id"], None)


def _mine_of(mine: dict[str, Any] | None) -> dict[str, Any]:
    kept = _no_ballots()
    if mine:
        kept["ballots"] = {k: list(v) for k, v in mine.get("ballots", {}).items()}
        kept["upvoted"] = list(mine.get("upvoted", []))
    return kept


class Workshops(Mapping[str, Followed]):
    """The subscribed workshop channels, by channel id.

    ``server_now_ms()`` is the server's clock as well as the client can tell, to count
    a timer down to its ``ends_at``: the client takes ``hello``'s ``ts`` and the
    server's times in the events it hears (a message's ``ts``, a timer's
    ``started_ts``) as lower bounds of the server's clock when they arrived.
    """

    def __init__(self) -> None:
        self._channels: dict[str, Followed] = {}
        #: the server's clock minus this machine's, in ms, as far as events tell
        self.clock_skew_ms: float | None = None

    def server_now_ms(self) -> float:
        """The server's time now, in ms since the epoch (this machine's clock until an
        event has said better)."""
        return time.time() * 1000 + (self.clock_skew_ms or 0)

    def _saw_server_time(self, ts: Any) -> None:
        if isinstance(ts, int | float):
            skew = ts - time.time() * 1000  # the server's clock was at least this far ahead
            if self.clock_skew_ms is None or skew > self.clock_skew_ms:
                self.clock_skew_ms = skew

    def __getitem__(self, channel: str) -> Followed:
        return self._channels[channel]

    def __iter__(self) -> Iterator[str]:
        return iter(self._channels)

    def __len__(self) -> int:
        return len(self._channels)

    def workshop(self, channel: str) -> dict[str, Any] | None:
        """The live workshop of a subscribed channel, or None."""
        followed = self._channels.get(channel)
        return followed.workshop if followed is not None else None

    def subscribed(self, channel: str, reply: dict[str, Any]) -> None:
        """A ``subscribe`` reply: a workshop channel's carries ``workshop`` (and ``mine``)."""
        if "workshop" not in reply:
            return
        followed = self._channels.get(channel)
        if followed is None:
            followed = self._channels[channel] = Followed(channel)
        followed.take(reply["workshop"], reply.get("mine"), reply["offset"])

    def snapshot(self, channel: str, reply: dict[str, Any]) -> None:
        """A ``workshop.state`` reply: taken when it is ahead of what was applied."""
        followed = self._channels.get(channel)
        if followed is not None and reply["offset"] >= followed.offset:
            followed.take(reply["workshop"], reply.get("mine"), reply["offset"])

    def forget(self, channel: str) -> None:
        self._channels.pop(channel, None)

    def apply(self, event: Event) -> None:
        if event.t == "message.created":
            self._saw_server_time(event.d["message"].get("ts"))
        elif event.t == "timer.started":
            self._saw_server_time(event.d["timer"].get("started_ts"))
        followed = self._channels.get(event.ch)
        if followed is not None:
            followed.apply(event)

    # the user's own ballots and upvotes, from replies

    def voted(self, channel: str, poll: str, choices: list[int]) -> None:
        followed = self._channels.get(channel)
        if followed is not None:
            followed.mine["ballots"][poll] = list(choices)

    def upvote(self, channel: str, question: str, up: bool) -> None:
        followed = self._channels.get(channel)
        if followed is None:
            return
        upvoted: list[str] = followed.mine["upvoted"]
        if up and question not in upvoted:
            upvoted.append(question)
        elif not up and question in upvoted:
            upvoted.remove(question)


def agenda_items(agenda: Iterable[str | dict[str, Any]]) -> list[dict[str, Any]]:
    """An agenda as the wire takes it: each item a title, or ``{title, minutes?}``."""
    return [{"title": item} if isinstance(item, str) else dict(item) for item in agenda]


class WorkshopCommands:
    """The workshop commands (docs/protocol.md §5.10), mixed into ``Client``.

    Each returns what the reply carries (``None`` for ``{}``) or raises
    ``CommandError``: ``conflict`` without a live workshop (and for a second
    start, a vote on a closed poll, a timer already running, …), ``forbidden``
    without ``participate`` or ``run_workshops``, ``not_found`` for an unknown
    poll or question, ``bad_request`` for a channel that is not a workshop's.
    """

    workshops: Workshops
    #: ``Client.request``
    request: Callable[..., Awaitable[dict[str, Any]]]

    # the workshop

    async def workshop_start(
        self, channel: str, title: str, agenda: Iterable[str | dict[str, Any]] = ()
    ) -> dict[str, Any]:
        """Start a workshop in a workshop channel (facilitators); the workshop object.

        ``agenda`` items are titles or ``{title, minutes?}``: moving onto an item
        with ``minutes`` starts a timer of that length.
        """
        d = {"channel": channel, "title": title, "agenda": agenda_items(agenda)}
        return (await self.request("workshop.start", d))["workshop"]

    async def workshop_state(self, channel: str) -> dict[str, Any]:
        """``{workshop, offset, mine}``: the live workshop (None when none is live) as of
        the channel's ``offset``. A subscribed channel's kept state takes it if it is
        ahead."""

        def take(reply: dict[str, Any]) -> None:
            self.workshops.snapshot(channel, reply)

        return await self.request("workshop.state", {"channel": channel}, on_reply=take)

    async def workshop_end(
        self, channel: str, *, recap_channel: str | None = None
    ) -> dict[str, Any]:
        """End the workshop (facilitators); the recap. Its thread is written in
        ``recap_channel`` (default: the workshop channel) just after."""
        d = _given(channel=channel, recap_channel=recap_channel)
        return (await self.request("workshop.end", d))["recap"]

    # the agenda

    async def agenda_next(self, channel: str) -> None:
        """Move onto the next agenda item (``conflict`` past the last)."""
        await self.request("agenda.next", {"channel": channel})

    async def agenda_goto(self, channel: str, index: int) -> None:
        """Move onto the agenda item ``index`` (from 0)."""
        await self.request("agenda.goto", {"channel": channel, "index": index})

    # hands

    async def hand_raise(self, channel: str) -> None:
        await self.request("hand.raise", {"channel": channel})

    async def hand_lower(self, channel: str, user: str | None = None, all: bool = False) -> None:
        """Lower one's own hand; another's (``user``) or every hand (``all``) needs
        ``run_workshops``. Lowering the speaker's hand ends their turn."""
        d = _given(channel=channel, user=user, all=True if all else None)
        await self.request("hand.lower", d)

    async def hand_call(self, channel: str, user: str | None = None) -> None:
        """Give the floor to the next in the queue, or to ``user`` (who must be in it)."""
        await self.request("hand.call", _given(channel=channel, user=user))

    async def hand_order(self, channel: str, order: str) -> None:
        """``fifo`` (by raised time) or ``fair`` (fewest turns first)."""
        await self.request("hand.order", {"channel": channel, "order": order})

    # polls

    async def poll_create(
        self,
        channel: str,
        question: str,
        options: Iterable[str],
        *,
        multi: bool = False,
        anonymous: bool = False,
    ) -> dict[str, Any]:
        """A new poll (facilitators); the poll object."""
        d = {
            "channel": channel,
            "question": question,
            "options": list(options),
            "multi": multi,
            "anonymous": anonymous,
        }
        return (await self.request("poll.create", d))["poll"]

    async def poll_vote(self, channel: str, poll: str, choices: Iterable[int]) -> dict[str, Any]:
        """Vote (again: a later ballot replaces the earlier) with option indices from 0;
        the poll. The ballot goes into ``mine``."""
        d = {"channel": channel, "poll": poll, "choices": list(choices)}
        reply = await self.request("poll.vote", d)
        self.workshops.voted(channel, poll, reply["choices"])
        return reply["poll"]

    async def poll_close(self, channel: str, poll: str) -> dict[str, Any]:
        """Close a poll (facilitators); the poll, final."""
        d = {"channel": channel, "poll": poll}
        return (await self.request("poll.close", d))["poll"]

    # questions

    async def question_ask(self, channel: str, text: str) -> dict[str, Any]:
        """Ask a question; the question object."""
        d = {"channel": channel, "text": text}
        return (await self.request("question.ask", d))["question"]

    async def question_upvote(self, channel: str, question: str) -> dict[str, Any]:
        d = {"channel": channel, "question": question}
        answered = (await self.request("question.upvote", d))["question"]
        self.workshops.upvote(channel, question, True)
        return answered

    async def question_unvote(self, channel: str, question: str) -> dict[str, Any]:
        d = {"channel": channel, "question": question}
        answered = (await self.request("question.unvote", d))["question"]
        self.workshops.upvote(channel, question, False)
        return answered

    async def question_answer(
        self, channel: str, question: str, text: str | None = None
    ) -> dict[str, Any]:
        """Mark a question answered (facilitators), with the answer's text if given."""
        d = _given(channel=channel, question=question, text=text)
        return (await self.request("question.answer", d))["question"]

    async def question_hide(self, channel: str, question: str) -> dict[str, Any]:
        """Hide a question (facilitators; its asker may withdraw their own)."""
        d = {"channel": channel, "question": question}
        return (await self.request("question.hide", d))["question"]

    # the timer

    async def timer_start(
        self, channel: str, seconds: int, *, label: str | None = None
    ) -> dict[str, Any]:
        """Start the workshop's timer (facilitators); the timer. ``conflict`` while one
        runs."""
        d = _given(channel=channel, seconds=seconds, label=label)
        return (await self.request("timer.start", d))["timer"]

    async def timer_extend(self, channel: str, seconds: int) -> dict[str, Any]:
        """Add ``seconds`` to the running timer; the timer (same id, later ``ends_at``)."""
        d = {"channel": channel, "seconds": seconds}
        return (await self.request("timer.extend", d))["timer"]

    async def timer_cancel(self, channel: str) -> None:
        await self.request("timer.cancel", {"channel": channel})

    # breakouts

    async def breakout_open(
        self,
        channel: str,
        groups: int,
        *,
        minutes: int | None = None,
        assignment: list[list[str]] | None = None,
    ) -> dict[str, Any]:
        """Split the attendees (or ``assignment``: one list of user ids per group) into
        ``groups`` groups, each with a channel of its own; the breakout."""
        d = _given(channel=channel, groups=groups, minutes=minutes, assignment=assignment)
        return (await self.request("breakout.open", d))["breakout"]

    async def breakout_broadcast(self, channel: str, text: str) -> None:
        """Post ``text`` in every group's channel (``channel``: the workshop's)."""
        await self.request("breakout.broadcast", {"channel": channel, "text": text})

    async def breakout_report(self, channel: str, text: str) -> None:
        """Report a group's work (``channel``: the group's channel)."""
        await self.request("breakout.report", {"channel": channel, "text": text})

    async def breakout_close(self, channel: str) -> dict[str, Any]:
        """Close the breakout (the groups' channels are archived): ``{breakout, reports}``."""
        return await self.request("breakout.close", {"channel": channel})

    # pulse and participation

    async def pulse_send(self, channel: str, kind: str) -> None:
        """``agree``, ``confused``, ``slower`` or ``faster``; it counts for 60 s."""
        await self.request("pulse.send", {"channel": channel, "kind": kind})

    async def community_participation(
        self, community: str, *, sessions: int | None = None
    ) -> dict[str, Any]:
        """Who took part in the community's last ``sessions`` workshops (facilitators):
        ``{sessions, members, silent}``."""
        d = _given(community=community, sessions=sessions)
        return await self.request("community.participation", d)
