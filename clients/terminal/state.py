"""What the terminal client knows: communities, channels, threads, DMs, transcripts,
unread and mention counts.

No I/O and no UI here, so that the rules (ordering by offset, echo and
reconciliation by nonce, one line per message however often it arrives) can be
read and tested on their own.

A transcript keeps the order a reader saw things in: live messages and system
lines are appended; only older history and gap repairs are inserted, by offset.
A message's line changes in place when it is edited, deleted, reacted to or
pinned, or a thread starts from it.

Unread and mention counts start from identify's ``reads`` (the server's read
markers, so they survive a restart) and go up with each new message by someone
else in a channel that is not the current one, and each ``mention``.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from clients.terminal import workshop_view
from clients.workshops import Followed
from protocol.workshop import WORKSHOP_EVENTS

#: Lines kept per channel; older ones are dropped and can be paged in again.
MAX_LINES = 2000

#: Events whose effect a stored message frame already shows (see ``add_history``).
PAST_CHANGES = frozenset({"reaction.updated", "message.pinned", "message.deleted"})

Kind = Literal["message", "pending", "failed", "system"]

_uids = itertools.count(1)


@dataclass(eq=False)
class Line:
    """One line of a transcript. ``uid`` is stable for the line's life; ``rev`` counts edits."""

    kind: Kind
    text: str
    author: str = ""
    ts: int | None = None  # milliseconds since the epoch
    o: int | None = None
    id: str | None = None  # message id, once the server has it
    nonce: str | None = None
    error: str = ""
    uid: int = field(default_factory=lambda: next(_uids))
    rev: int = 0
    author_id: str = ""
    edited: bool = False
    deleted: bool = False
    pinned: bool = False
    #: ``(emoji, count)`` in the order each was first used
    reactions: list[tuple[str, int]] = field(default_factory=list)
    #: ``author: text`` of the message this one answers, shortened
    reply_to: str = ""
    #: the title of the thread started from this message
    thread: str = ""

    def take(self, message: dict[str, Any]) -> None:
        """Show ``message`` as it is now."""
        self.text = message["text"]
        self.edited = "edited_ts" in message
        self.deleted = bool(message.get("deleted"))
        self.pinned = bool(message.get("pinned"))
        self.reactions = [(r["emoji"], r["count"]) for r in message.get("reactions", [])]


@dataclass(eq=False)
class ChannelState:
    id: str
    name: str
    community_id: str
    community: str
    lines: list[Line] = field(default_factory=list)
    unread: int = 0
    mentions: int = 0
    #: the user's read marker here (the server's, from identify and ``read.updated``)
    read_o: int = 0
    #: ``text``, ``forum``, ``workshop``, ``breakout``, ``thread`` or ``dm``
    kind: str = "text"
    #: a thread's (or a breakout group's) parent channel
    parent: str | None = None
    #: a DM's other member (user ids)
    members: list[str] = field(default_factory=list)
    #: the latest page of history has been asked for
    loaded: bool = False
    #: nothing older than the first line is left on the server
    complete: bool = False
    #: who is typing here: user id -> (name, until when on the event loop's clock)
    typing: dict[str, tuple[str, float]] = field(default_factory=dict)

    def typing_line(self, now: float) -> str:
        """Who types here, for the status line ("ann is typing…"); "" once they stopped."""
        names = sorted(name for name, until in self.typing.values() if until > now)
        if not names:
            return ""
        if len(names) == 1:
            return f"{names[0]} is typing…"
        return f"{', '.join(names[:-1])} and {names[-1]} are typing…"

    @property
    def label(self) -> str:
        if self.kind == "thread":
            return f"↳ {self.name}"
        if self.kind == "dm":
            return f"@{self.name}"
        return f"#{self.name}"

    def oldest(self) -> int | None:
        return next((line.o for line in self.lines if line.o is not None), None)

    def newest(self) -> int:
        return next((line.o for line in reversed(self.lines) if line.o is not None), 0)


class ChatState:
    """Every channel the user can see, and what has been shown in each."""

    def __init__(
        self, identity: dict[str, Any], workshops: Mapping[str, Followed] | None = None
    ) -> None:
        self.user: dict[str, Any] = identity["user"]
        #: the workshop channels' live workshops, as the client keeps them
        self.workshops: Mapping[str, Followed] = workshops if workshops is not None else {}
        self.communities: list[dict[str, Any]] = []
        self.channels: dict[str, ChannelState] = {}
        #: user id -> ``online`` or ``idle`` (absent: offline), from ``community.presence``
        #: and ``presence.updated``
        self.presence: dict[str, str] = {}
        self.current: str | None = None
        #: user id -> display name, of everyone seen (authors, members)
        self.names: dict[str, str] = {self.user["id"]: self.user["name"]}
        #: the threads the last ``/threads`` listed, for ``/open N``
        self.listed_threads: list[dict[str, Any]] = []
        for community in identity["communities"]:
            self.add_community(community)
        for thread in identity.get("threads", []):
            self.add_thread(thread)
        for dm in identity.get("dms", []):
            self.add_dm(dm)
        for read in identity.get("reads", []):
            channel = self.channels.get(read["channel"])
            if channel is not None:
                channel.read_o = read["o"]
                channel.unread = read["unread"]
                channel.mentions = read["mentions"]

    # communities and channels, kept current by community and user events

    def add_community(self, community: dict[str, Any]) -> list[ChannelState]:
        """A community joined (or known again); its channels."""
        self.communities = [c for c in self.communities if c["id"] != community["id"]]
        self.communities.append({**community, "channels": []})
        return [self.put_channel(community["id"], channel) for channel in community["channels"]]

    def put_channel(self, community_id: str, channel: dict[str, Any]) -> ChannelState:
        """A channel created or changed; its state."""
        community = next(c for c in self.communities if c["id"] == community_id)
        listed = [c for c in community["channels"] if c["id"] != channel["id"]] + [channel]
        listed.sort(key=lambda c: (c.get("position", 0), len(c["id"]), c["id"]))
        community["channels"] = listed
        state = self.channels.get(channel["id"])
        if state is None:
            state = self.channels[channel["id"]] = ChannelState(
                channel["id"], channel["name"], community_id, community["name"]
            )
        state.name = channel["name"]
        state.kind = channel.get("kind", "text")
        return state

    def add_breakout(self, parent: ChannelState, group: dict[str, Any]) -> ChannelState:
        """The user's breakout group of a workshop channel (``breakout.opened`` names its
        channel, ``identify`` does not), listed as ``<workshop channel>-group-N``."""
        name = f"{parent.name}-{group.get('name', 'group').lower().replace(' ', '-')}"
        channel = {"id": group["channel"], "name": name, "kind": "breakout", "parent": parent.id}
        state = self.put_channel(parent.community_id, channel)
        state.parent = parent.id
        return state

    def add_thread(self, thread: dict[str, Any]) -> ChannelState:
        """A thread to show (followed, opened or started here); its state."""
        state = self.channels.get(thread["id"])
        if state is None:
            community = thread.get("community", "")
            community_name = next((c["name"] for c in self.communities if c["id"] == community), "")
            state = self.channels[thread["id"]] = ChannelState(
                thread["id"], thread["title"], community, community_name, kind="thread"
            )
        state.name = thread["title"]
        state.parent = thread.get("parent")
        return state

    def add_dm(self, dm: dict[str, Any]) -> ChannelState:
        """A direct message channel; its state, named after the other member."""
        state = self.channels.get(dm["id"])
        if state is None:
            state = self.channels[dm["id"]] = ChannelState(
                dm["id"], "", "", "direct message", kind="dm"
            )
            state.members = [m for m in dm.get("members", []) if m != self.user["id"]]
        self.name_dm(state)
        return state

    def name_dm(self, state: ChannelState) -> None:
        state.name = ", ".join(self.names.get(m, "someone") for m in state.members) or "someone"

    def learn_names(self, users: list[dict[str, Any]]) -> None:
        """Display names of users (members); DMs are named after them."""
        for user in users:
            self.names[user["id"]] = user["name"]
        for channel in self.channels.values():
            if channel.kind == "dm":
                self.name_dm(channel)

    def threads_of(self, parent: str) -> list[ChannelState]:
        return [c for c in self.channels.values() if c.kind == "thread" and c.parent == parent]

    def dms(self) -> list[ChannelState]:
        return [c for c in self.channels.values() if c.kind == "dm"]

    def last_message(self, channel: ChannelState, *, mine: bool = False) -> Line | None:
        """The newest message line (the user's own with ``mine``) that is not deleted."""
        for line in reversed(channel.lines):
            if line.kind != "message" or line.id is None or line.deleted:
                continue
            if not mine or line.author_id == self.user["id"]:
                return line
        return None

    def mention(self, message: dict[str, Any]) -> ChannelState | None:
        """A ``mention`` event: one more mention where it was, unless the user is there."""
        channel = self.channels.get(message["channel"])
        if channel is None or channel.id == self.current:
            return None
        channel.mentions += 1
        return channel

    def read(self, channel_id: str, o: int) -> ChannelState | None:
        """``read.updated``: the marker moved (maybe in another session)."""
        channel = self.channels.get(channel_id)
        if channel is None:
            return None
        channel.read_o = max(channel.read_o, o)
        if channel.read_o >= channel.newest():
            channel.unread = channel.mentions = 0
        return channel

    def remove_community(self, community_id: str) -> str | None:
        """The user left (was kicked or banned); the community's name, if it was known."""
        gone = next((c for c in self.communities if c["id"] == community_id), None)
        if gone is None:
            return None
        self.communities.remove(gone)
        for channel in gone["channels"]:
            self.channels.pop(channel["id"], None)
            if self.current == channel["id"]:
                self.current = None
        return gone["name"]

    def knows_community(self, community_id: str) -> bool:
        return any(c["id"] == community_id for c in self.communities)

    def set_presence(self, user_id: str, status: str) -> None:
        if status == "offline":
            self.presence.pop(user_id, None)
        else:
            self.presence[user_id] = status

    @property
    def channel(self) -> ChannelState | None:
        return self.channels.get(self.current) if self.current else None

    def default_channel(self) -> ChannelState | None:
        """``general`` of the first community, else its first channel."""
        first = [
            c
            for c in self.channels.values()
            if c.community_id == self.first_community() and c.kind not in ("thread", "dm")
        ]
        return next((c for c in first if c.name == "general"), first[0] if first else None)

    def first_community(self) -> str | None:
        return self.communities[0]["id"] if self.communities else None

    def enter(self, channel: ChannelState) -> None:
        self.current = channel.id
        channel.unread = channel.mentions = 0

    def resolve(self, name: str) -> ChannelState:
        """A community's channel by ``name``, ``#name`` or ``community/name`` (threads and
        DMs are not named so); ``LookupError`` says why not."""
        community, _, channel_name = name.rpartition("/")
        channel_name = channel_name.removeprefix("#").casefold()
        found = [
            c
            for c in self.channels.values()
            if c.kind not in ("thread", "dm")
            and c.name.casefold() == channel_name
            and (not community or c.community.casefold() == community.casefold())
        ]
        if not found:
            raise LookupError(f"no channel named {name!r} (/channels lists them)")
        if len(found) > 1:
            here = [c for c in found if c.community_id == self._current_community()]
            if len(here) == 1:
                return here[0]
            choices = ", ".join(f"{c.community}/{c.name}" for c in found)
            raise LookupError(f"{name!r} is in several communities: say which ({choices})")
        return found[0]

    def _current_community(self) -> str | None:
        channel = self.channel
        return channel.community_id if channel else self.first_community()

    # lines

    def system(self, text: str, channel: ChannelState | None = None) -> Line | None:
        """A line from the client itself, in ``channel`` (by default the current one)."""
        target = channel or self.channel
        if target is None:
            return None
        line = Line("system", text)
        self._append(target, line)
        return line

    def add_event(self, t: str, channel_id: str, d: dict[str, Any], o: int | None) -> bool:
        """Take an event; True if the channel's transcript changed."""
        channel = self.channels.get(channel_id)
        if channel is None:
            return False
        if t == "message.created":
            return self._add_message(channel, d["message"], o, live=True)
        if t == "message.updated":
            return self._change(channel, d["message"]["id"], lambda line: line.take(d["message"]))
        if t == "message.deleted":
            return self._change(channel, d["id"], _delete)
        if t == "reaction.updated":
            return self._change(channel, d["message"], lambda line: _react(line, d))
        if t == "message.pinned":
            return self._change(channel, d["message"], lambda line: _pin(line, d["pinned"]))
        if t == "thread.created" and o is not None and not self._has_offset(channel, o):
            thread = d["thread"]
            if thread.get("message"):
                self._change(channel, thread["message"], lambda line: _thread(line, thread))
            who = self.names.get(d.get("by", ""), "someone")
            started = f"{who} started the thread '{thread['title']}'"
            self._place(channel, Line("system", started, o=o))
            return True
        if t in WORKSHOP_EVENTS and o is not None and not self._has_offset(channel, o):
            followed = self.workshops.get(channel_id)
            live = followed.workshop if followed is not None else None
            text = workshop_view.event_line(t, d, self.names, live)
            if text is None:
                return False
            self._place(channel, Line("system", text, o=o))
            return True
        if t == "member.joined" and o is not None and not self._has_offset(channel, o):
            member = d.get("member", {})
            who = member.get("name") or member.get("username") or "someone"
            self._place(channel, Line("system", f"{who} joined {channel.community}", o=o))
            return True
        return False

    def add_history(self, channel: ChannelState, events: list[dict[str, Any]]) -> bool:
        """Take a ``history`` page (oldest first); True if anything new was added.

        A stored message frame holds the message as it is now, so the page's
        reactions, pins and deletes are in it already: as events they would put
        back older counts.
        """
        changed = False
        for frame in events:
            if frame.get("t") == "message.created":
                message = frame["d"]["message"]
                changed |= self._add_message(channel, message, frame.get("o"), live=False)
            elif frame.get("t") in PAST_CHANGES:
                continue
            else:
                changed |= self.add_event(frame["t"], channel.id, frame["d"], frame.get("o"))
        return changed

    def add_pending(self, channel: ChannelState, text: str, nonce: str) -> Line:
        """The local echo of a message being sent."""
        line = Line("pending", text, author=self.user["name"], nonce=nonce)
        self._append(channel, line)
        return line

    def confirm(self, channel: ChannelState, message: dict[str, Any]) -> bool:
        """The server's reply to our send: the echo becomes the message (unless already)."""
        return self._add_message(channel, message, None, live=False)

    def fail(self, line: Line, error: str) -> None:
        line.kind, line.error = "failed", error
        line.rev += 1

    # internals

    def _add_message(
        self, channel: ChannelState, message: dict[str, Any], o: int | None, *, live: bool
    ) -> bool:
        self.names.setdefault(message["author"]["id"], message["author"]["name"])
        if channel.kind == "dm" and channel.name == "someone":
            self.name_dm(channel)
        existing = self._find(channel, message)
        if existing is not None:
            if existing.kind == "message" and (o is None or existing.o == o):
                return False
            # our echo (or a reply that came before its event) becomes the stored message
            existing.kind, existing.error = "message", ""
            existing.take(message)
            existing.id, existing.ts = message["id"], message["ts"]
            existing.author = message["author"]["name"]
            existing.author_id = message["author"]["id"]
            if o is not None and existing.o is None:
                existing.o = o
                channel.lines.remove(existing)
                self._place(channel, existing)
            existing.rev += 1
            return True
        line = Line(
            "message",
            message["text"],
            author=message["author"]["name"],
            ts=message["ts"],
            o=o,
            id=message["id"],
            author_id=message["author"]["id"],
        )
        line.take(message)
        if message.get("reply_to"):
            answered = next((x for x in channel.lines if x.id == message["reply_to"]), None)
            line.reply_to = _quote(answered) if answered else "an earlier message"
        if message.get("thread"):
            line.thread = "a thread"
        self._place(channel, line)
        if (
            live
            and channel.id != self.current
            and message["author"]["id"] != self.user["id"]
            and (o is None or o > channel.read_o)
        ):
            channel.unread += 1
        return True

    def _change(
        self, channel: ChannelState, message_id: str, change: Callable[[Line], None]
    ) -> bool:
        """Change the line of a message, if it is shown; True if it was."""
        for line in reversed(channel.lines):
            if line.id == message_id:
                change(line)
                line.rev += 1
                return True
        return False

    def _find(self, channel: ChannelState, message: dict[str, Any]) -> Line | None:
        nonce = message.get("nonce")
        mine = message["author"]["id"] == self.user["id"]
        for line in reversed(channel.lines):
            if line.id == message["id"]:
                return line
            if mine and nonce is not None and line.id is None and line.nonce == nonce:
                return line
        return None

    def _has_offset(self, channel: ChannelState, o: int) -> bool:
        return any(line.o == o for line in channel.lines)

    def _place(self, channel: ChannelState, line: Line) -> None:
        """Put a line in offset order; echoes still being sent stay at the bottom."""
        lines = channel.lines
        if line.o is None:
            self._append(channel, line)
            return
        if line.o > channel.newest():
            position = len(lines)
            while position and lines[position - 1].kind == "pending":
                position -= 1
        else:
            offsets = [(x.o, i) for i, x in enumerate(lines) if x.o is not None]
            index = bisect.bisect_left(offsets, (line.o, -1))
            position = offsets[index][1] if index < len(offsets) else len(lines)
        lines.insert(position, line)
        if len(lines) > MAX_LINES:
            del lines[: len(lines) - MAX_LINES]
            channel.complete = False

    def _append(self, channel: ChannelState, line: Line) -> None:
        channel.lines.append(line)
        if len(channel.lines) > MAX_LINES:
            del channel.lines[: len(channel.lines) - MAX_LINES]
            channel.complete = False


def _delete(line: Line) -> None:
    line.text, line.deleted, line.edited, line.pinned, line.reactions = "", True, False, False, []


def _react(line: Line, d: dict[str, Any]) -> None:
    counts = dict(line.reactions)
    if d["emoji"] not in counts:
        line.reactions.append((d["emoji"], d["count"]))
    line.reactions = [(e, d["count"] if e == d["emoji"] else c) for e, c in line.reactions]
    line.reactions = [(e, c) for e, c in line.reactions if c > 0]


def _pin(line: Line, pinned: bool) -> None:
    line.pinned = pinned


def _thread(line: Line, thread: dict[str, Any]) -> None:
    line.thread = thread["title"]


def _quote(line: Line) -> str:
    text = line.text if len(line.text) <= 30 else line.text[:29] + "…"
    return f"{line.author}: {text}"
