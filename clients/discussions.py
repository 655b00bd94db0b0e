"""The discussion part of the Python client (docs/protocol.md §5.9): commands and state.

``DiscussionCommands`` is a mixin of ``Client``: one method per discussion
command. ``Discussions`` is the state the client keeps from ``identify`` and
from events, as ``client.discussions`` (and the shortcuts ``client.threads``,
``client.dms``, ``client.reads``, ``client.messages``):

- ``threads``: the threads the user follows (thread objects by id), from
  identify's ``threads`` and ``thread.followed`` (a follow, unfollow, new thread
  or first post in any of the user's sessions), and at once from this client's
  own ``thread.create``, ``thread.follow`` and posts; ``thread.updated`` keeps
  them current.
- ``dms``: the user's DM channels by id (identify's ``dms``, ``dm.open``,
  ``dm.created``).
- ``reads``: a ``ReadState`` per channel: the marker ``o`` and the ``unread``
  and ``mentions`` counts. They start from identify's ``reads`` (so they are
  right again after every reconnect) and go up with each new message by
  someone else (``message.created`` in a subscribed channel, ``thread.activity``
  in a followed thread, each message counted once) and each ``mention``; a
  deleted message no longer counts, as unread or as a mention. ``read.updated`` moves the marker:
  what the client saw at or below it is read, and a marker at the newest
  offset the client knows reads everything.
- ``messages``: the messages the client has seen (events, ``history``, sends,
  pins, searches), at most ``MAX_MESSAGES``, each as it is now:
  ``message.updated``, ``message.deleted``, ``reaction.updated``,
  ``message.pinned`` and ``thread.created`` (the message a thread started
  from) change them.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clients.client import Event, OnReply

#: Messages kept in ``Discussions.messages``; the oldest seen are forgotten first.
MAX_MESSAGES = 5000


@dataclass(slots=True)
class ReadState:
    """A user's read marker in one channel and what is after it."""

    o: int = 0
    unread: int = 0
    mentions: int = 0
    #: messages counted in ``unread`` since identify: id -> offset (None until known)
    counted: dict[str, int | None] = field(default_factory=dict)
    #: messages counted in ``mentions`` since identify: id -> offset (None until known)
    mentioned: dict[str, int | None] = field(default_factory=dict)
    #: the newest offset known in the channel (events, subscribe replies; until then
    #: the marker): a marker there has read everything
    head: int = 0


class Discussions:
    """Followed threads, DMs, read state and a message cache, kept from events."""

    def __init__(self) -> None:
        self.user_id: str = ""
        self.threads: dict[str, dict[str, Any]] = {}
        self.dms: dict[str, dict[str, Any]] = {}
        self.reads: dict[str, ReadState] = {}
        self.messages: OrderedDict[str, dict[str, Any]] = OrderedDict()
        #: every thread object seen (followed or not), by id
        self.known_threads: dict[str, dict[str, Any]] = {}

    # loading

    def load(self, identity: dict[str, Any]) -> None:
        """Start again from an ``identify`` reply (the first one or after a reconnect)."""
        self.user_id = identity.get("user", {}).get("id", "")
        self.threads = {t["id"]: t for t in identity.get("threads", [])}
        self.known_threads.update(self.threads)
        self.dms = {c["id"]: c for c in identity.get("dms", [])}
        self.reads = {
            r["channel"]: ReadState(r["o"], r["unread"], r["mentions"], head=r["o"])
            for r in identity.get("reads", [])
        }

    def read_state(self, channel: str) -> ReadState:
        state = self.reads.get(channel)
        if state is None:
            state = self.reads[channel] = ReadState()
        return state

    def saw_head(self, channel: str, offset: int) -> None:
        """The channel's newest offset is at least ``offset`` (a subscribe reply)."""
        state = self.read_state(channel)
        state.head = max(state.head, offset)

    def unread(self, channel: str) -> int:
        state = self.reads.get(channel)
        return state.unread if state else 0

    def mentions(self, channel: str) -> int:
        state = self.reads.get(channel)
        return state.mentions if state else 0

    # the message cache

    def remember(self, message: dict[str, Any]) -> dict[str, Any]:
        """Keep a copy of a message as it is now; the copy."""
        kept = copy.deepcopy(message)
        kept.pop("o", None)
        old = self.messages.pop(kept["id"], None)
        if old is not None and "thread" in old and "thread" not in kept:
            kept["thread"] = old["thread"]
        self.messages[kept["id"]] = kept
        while len(self.messages) > MAX_MESSAGES:
            self.messages.popitem(last=False)
        return kept

    def remember_all(self, messages: Iterable[dict[str, Any]]) -> None:
        for message in messages:
            self.remember(message)

    def put_thread(self, thread: dict[str, Any], *, follow: bool = False) -> None:
        self.known_threads[thread["id"]] = thread
        if follow or thread["id"] in self.threads:
            self.threads[thread["id"]] = thread
        if thread.get("message") and thread["message"] in self.messages:
            self.messages[thread["message"]]["thread"] = thread["id"]

    def sent(self, message: dict[str, Any]) -> None:
        """The reply to the user's own ``message.send``: posting in a thread follows it."""
        self.remember(message)
        thread = self.known_threads.get(message["channel"])
        if thread is not None:
            self.threads[thread["id"]] = thread

    # events

    def apply(self, event: Event) -> None:
        """Keep the state current from one event (durable or not)."""
        d = event.d
        t = event.t
        if t == "message.created":
            self._created(event.ch, d["message"], event.o)
        elif t == "message.updated":
            self.remember(d["message"])
        elif t == "message.deleted":
            self._deleted(event.ch, d["id"])
        elif t == "reaction.updated":
            self._reaction(d)
        elif t == "message.pinned":
            message = self.messages.get(d["message"])
            if message is not None:
                if d["pinned"]:
                    message["pinned"] = True
                else:
                    message.pop("pinned", None)
        elif t == "thread.created":
            self.put_thread(d["thread"], follow=d.get("by") == self.user_id)
        elif t == "thread.updated":
            self.put_thread(d["thread"])
        elif t == "thread.followed":
            if d["following"]:
                self.put_thread(d["thread"], follow=True)
            else:
                self.threads.pop(d["thread"]["id"], None)
        elif t == "thread.activity":
            self.put_thread(d["thread"], follow=True)
            self.remember(d["message"])
            self._count(d["thread"]["id"], d["message"], None)
        elif t == "mention":
            self._mention(d["message"])
        elif t == "read.updated":
            self._read(d["channel"], d["o"])
        elif t == "dm.created":
            self.dms[d["channel"]["id"]] = d["channel"]
        if event.o is not None:
            state = self.read_state(event.ch)
            state.head = max(state.head, event.o)

    def _created(self, channel: str, message: dict[str, Any], o: int | None) -> None:
        self.remember(message)
        if o is not None:
            state = self.read_state(channel)
            for known in (state.counted, state.mentioned):
                if message["id"] in known:
                    known[message["id"]] = o
        self._count(channel, message, o)

    def _count(self, channel: str, message: dict[str, Any], o: int | None) -> None:
        """A new message: one more unread, unless it is ours, read, or counted already."""
        if message["author"]["id"] == self.user_id or message.get("deleted"):
            return
        state = self.read_state(channel)
        if message["id"] in state.counted or (o is not None and o <= state.o):
            return
        state.counted[message["id"]] = o
        state.unread += 1

    def _mention(self, message: dict[str, Any]) -> None:
        channel = message["channel"]
        state = self.read_state(channel)
        o = state.counted.get(message["id"])
        if message["id"] in state.mentioned or (o is not None and o <= state.o):
            return
        self.remember(message)
        state.mentioned[message["id"]] = o
        state.mentions += 1
        self._count(channel, message, o)

    def _deleted(self, channel: str, message_id: str) -> None:
        message = self.messages.get(message_id)
        if message is not None:
            for key in ("edited_ts", "pinned"):
                message.pop(key, None)
            message.update(text="", deleted=True, reactions=[])
        state = self.reads.get(channel)
        if state is None:
            return
        if message_id in state.counted:
            del state.counted[message_id]
            state.unread = max(0, state.unread - 1)
        if message_id in state.mentioned:  # a deleted text mentions nobody any more
            del state.mentioned[message_id]
            state.mentions = max(0, state.mentions - 1)

    def _reaction(self, d: dict[str, Any]) -> None:
        message = self.messages.get(d["message"])
        if message is None:
            return
        reactions: list[dict[str, Any]] = message.setdefault("reactions", [])
        entry = next((r for r in reactions if r["emoji"] == d["emoji"]), None)
        if entry is None:
            entry = {"emoji": d["emoji"], "count": 0, "users": []}
            reactions.append(entry)
        users: list[str] = entry["users"]
        if d["added"] and d["user"] not in users:
            users.append(d["user"])
        elif not d["added"] and d["user"] in users:
            users.remove(d["user"])
        entry["count"] = d["count"]
        if d["count"] == 0:
            reactions.remove(entry)

    def _read(self, channel: str, o: int) -> None:
        state = self.read_state(channel)
        state.o = max(state.o, o)
        if state.o >= state.head:  # the newest the client knows of: everything is read
            state.unread = state.mentions = 0
            state.counted.clear()
            state.mentioned.clear()
            return
        for known, count in ((state.counted, "unread"), (state.mentioned, "mentions")):
            read = [m for m, at in known.items() if at is not None and at <= state.o]
            for message_id in read:
                del known[message_id]
            setattr(state, count, max(0, getattr(state, count) - len(read)))


def _given(**fields: Any) -> dict[str, Any]:
    """The fields that are not None: a command's ``d``."""
    return {k: v for k, v in fields.items() if v is not None}


class DiscussionCommands:
    """The discussion commands (docs/protocol.md §5.9), mixed into ``Client``."""

    discussions: Discussions
    offsets: dict[str, int]

    async def request(
        self,
        op: str,
        d: dict[str, Any] | None = None,
        *,
        timeout: float = 30,
        on_reply: OnReply | None = None,
    ) -> dict[str, Any]:
        raise NotImplementedError

    # state shortcuts

    @property
    def threads(self) -> dict[str, dict[str, Any]]:
        """The threads the user follows: thread objects by id."""
        return self.discussions.threads

    @property
    def dms(self) -> dict[str, dict[str, Any]]:
        """The user's DM channels by id."""
        return self.discussions.dms

    @property
    def reads(self) -> dict[str, ReadState]:
        """Read state per channel: ``o``, ``unread``, ``mentions``."""
        return self.discussions.reads

    @property
    def messages(self) -> OrderedDict[str, dict[str, Any]]:
        """The messages seen, by id, each as it is now."""
        return self.discussions.messages

    # threads

    async def thread_create(
        self,
        channel: str,
        title: str,
        *,
        text: str | None = None,
        message: str | None = None,
        tags: list[str] | None = None,
    ) -> dict[str, Any]:
        """Start a thread in a text or forum channel (from ``message``, or with an
        opening post ``text``); the thread object. The user follows it."""
        d = _given(channel=channel, title=title, text=text, message=message, tags=tags)
        thread = (await self.request("thread.create", d))["thread"]
        self.discussions.put_thread(thread, follow=True)
        return thread

    async def thread_list(
        self,
        channel: str,
        *,
        tag: str | None = None,
        before: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """A page of a channel's threads, latest activity first: ``{threads, next?}``,
        each ``{thread, replies, last_ts, tags, resolved}``."""
        page = await self.request(
            "thread.list", _given(channel=channel, tag=tag, before=before, limit=limit)
        )
        for summary in page["threads"]:
            self.discussions.put_thread(summary["thread"])
        return page

    async def thread_update(
        self,
        thread: str,
        *,
        title: str | None = None,
        tags: list[str] | None = None,
        resolved: bool | None = None,
    ) -> dict[str, Any]:
        """Change a thread's title, tags or resolved flag; the thread object."""
        d = _given(thread=thread, title=title, tags=tags, resolved=resolved)
        updated = (await self.request("thread.update", d))["thread"]
        self.discussions.put_thread(updated)
        return updated

    async def thread_follow(self, thread: str) -> None:
        """Follow a thread: hear ``thread.activity`` for its new messages."""
        await self.request("thread.follow", {"thread": thread})
        known = self.discussions.known_threads.get(thread, {"id": thread})
        self.discussions.threads[thread] = known

    async def thread_unfollow(self, thread: str) -> None:
        await self.request("thread.unfollow", {"thread": thread})
        self.discussions.threads.pop(thread, None)

    # messages

    async def edit(self, channel: str, message: str, text: str) -> dict[str, Any]:
        """Edit one's own message; the message as it is now."""
        d = {"channel": channel, "message": message, "text": text}
        edited = (await self.request("message.edit", d))["message"]
        self.discussions.remember(edited)
        return edited

    async def delete(self, channel: str, message: str) -> None:
        """Delete a message (one's own, or any with ``delete_messages``)."""
        await self.request("message.delete", {"channel": channel, "message": message})

    async def react(self, channel: str, message: str, emoji: str) -> None:
        d = {"channel": channel, "message": message, "emoji": emoji}
        await self.request("reaction.add", d)

    async def unreact(self, channel: str, message: str, emoji: str) -> None:
        d = {"channel": channel, "message": message, "emoji": emoji}
        await self.request("reaction.remove", d)

    async def pin(self, channel: str, message: str) -> None:
        await self.request("message.pin", {"channel": channel, "message": message})

    async def unpin(self, channel: str, message: str) -> None:
        await self.request("message.unpin", {"channel": channel, "message": message})

    async def pins(self, channel: str) -> list[dict[str, Any]]:
        """The channel's pinned messages, oldest first, each with its offset ``o``."""
        messages = (await self.request("channel.pins", {"channel": channel}))["messages"]
        self.discussions.remember_all(messages)
        return messages

    # DMs, typing, read state

    async def dm_open(self, user: str) -> dict[str, Any]:
        """The DM channel with a user (the same one every time); subscribe to read it."""
        channel = (await self.request("dm.open", {"user": user}))["channel"]
        self.discussions.dms[channel["id"]] = channel
        return channel

    async def typing(self, channel: str) -> None:
        """Say the user is typing (others hear ``typing.started``; at most every 3 s)."""
        await self.request("typing.start", {"channel": channel})

    async def mark_read(self, channel: str, o: int | None = None) -> int:
        """Move the read marker to ``o`` (by default the newest offset known); the offset.

        Every session of the user hears ``read.updated``, which updates ``reads``.
        """
        if o is None:
            o = max(self.offsets.get(channel, 0), self.discussions.read_state(channel).head)
            if o == 0:
                latest = await self.request("history", {"channel": channel, "limit": 1})
                o = latest["events"][-1]["o"] if latest["events"] else 0
        if o > 0:
            await self.request("read.mark", {"channel": channel, "o": o})
        return o

    # search and resources

    async def search(
        self,
        community: str,
        query: str,
        *,
        channel: str | None = None,
        author: str | None = None,
        before: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """Messages of a community (channels and threads) with every word of ``query``,
        newest first: ``{messages, next?}``, each message with its offset ``o``."""
        d = _given(
            community=community,
            query=query,
            channel=channel,
            author=author,
            before=before,
            limit=limit,
        )
        page = await self.request("message.search", d)
        self.discussions.remember_all(page["messages"])
        return page

    async def resource_add(
        self,
        community: str,
        title: str,
        *,
        url: str | None = None,
        note: str | None = None,
        tags: list[str] | None = None,
    ) -> dict[str, Any]:
        """Add a link or note to the community's shelf; the resource object."""
        d = _given(community=community, title=title, url=url, note=note, tags=tags)
        return (await self.request("resource.add", d))["resource"]

    async def resource_list(
        self,
        community: str,
        *,
        tag: str | None = None,
        query: str | None = None,
        before: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """A page of the community's resources, newest first: ``{resources, next?}``."""
        d = _given(community=community, tag=tag, query=query, before=before, limit=limit)
        return await self.request("resource.list", d)
