"""What the terminal client knows: communities, channels, transcripts, unread counts.

No I/O and no UI here, so that the rules (ordering by offset, echo and
reconciliation by nonce, one line per message however often it arrives) can be
read and tested on their own.

A transcript keeps the order a reader saw things in: live messages and system
lines are appended; only older history and gap repairs are inserted, by offset.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

#: Lines kept per channel; older ones are dropped and can be paged in again.
MAX_LINES = 2000

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


@dataclass(eq=False)
class ChannelState:
    id: str
    name: str
    community_id: str
    community: str
    lines: list[Line] = field(default_factory=list)
    unread: int = 0
    #: the latest page of history has been asked for
    loaded: bool = False
    #: nothing older than the first line is left on the server
    complete: bool = False

    @property
    def label(self) -> str:
        return f"#{self.name}"

    def oldest(self) -> int | None:
        return next((line.o for line in self.lines if line.o is not None), None)

    def newest(self) -> int:
        return next((line.o for line in reversed(self.lines) if line.o is not None), 0)


class ChatState:
    """Every channel the user can see, and what has been shown in each."""

    def __init__(self, identity: dict[str, Any]) -> None:
        self.user: dict[str, Any] = identity["user"]
        self.communities: list[dict[str, Any]] = []
        self.channels: dict[str, ChannelState] = {}
        #: user id -> ``online`` or ``idle`` (absent: offline), from ``community.presence``
        #: and ``presence.updated``
        self.presence: dict[str, str] = {}
        self.current: str | None = None
        for community in identity["communities"]:
            self.add_community(community)

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
        return state

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
        first = [c for c in self.channels.values() if c.community_id == self.first_community()]
        return next((c for c in first if c.name == "general"), first[0] if first else None)

    def first_community(self) -> str | None:
        return self.communities[0]["id"] if self.communities else None

    def enter(self, channel: ChannelState) -> None:
        self.current = channel.id
        channel.unread = 0

    def resolve(self, name: str) -> ChannelState:
        """A channel by ``name``, ``#name`` or ``community/name``; ``LookupError`` says why not."""
        community, _, channel_name = name.rpartition("/")
        channel_name = channel_name.removeprefix("#").casefold()
        found = [
            c
            for c in self.channels.values()
            if c.name.casefold() == channel_name
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
        if t == "member.joined" and o is not None and not self._has_offset(channel, o):
            member = d.get("member", {})
            who = member.get("name") or member.get("username") or "someone"
            self._place(channel, Line("system", f"{who} joined {channel.community}", o=o))
            return True
        return False

    def add_history(self, channel: ChannelState, events: list[dict[str, Any]]) -> bool:
        """Take a ``history`` page (oldest first); True if anything new was added."""
        changed = False
        for frame in events:
            if frame.get("t") == "message.created":
                message = frame["d"]["message"]
                changed |= self._add_message(channel, message, frame.get("o"), live=False)
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
        existing = self._find(channel, message)
        if existing is not None:
            if existing.kind == "message" and (o is None or existing.o == o):
                return False
            # our echo (or a reply that came before its event) becomes the stored message
            existing.kind, existing.text, existing.error = "message", message["text"], ""
            existing.id, existing.ts = message["id"], message["ts"]
            existing.author = message["author"]["name"]
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
        )
        self._place(channel, line)
        if live and channel.id != self.current and message["author"]["id"] != self.user["id"]:
            channel.unread += 1
        return True

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
