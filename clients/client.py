"""The async Python client of Agora, on the ``websockets`` library.

::

    token = (await register("http://localhost:8000", "ann", "a long password"))["token"]
    async with Client("ws://localhost:8000", token) as client:
        general = client.channel_named("general")
        await client.subscribe(general)
        await client.send_message(general, "hello")
        async for event in client.events():
            print(event.t, event.d)

Commands are awaitables that return the reply's ``d`` (or the object in it)
or raise ``CommandError``. Besides ``subscribe``, ``history`` and
``send_message`` there is one method per community command:
``create_community``, ``create_invite``, ``accept_invite``, ``create_channel``,
``update_channel``, ``members``, ``set_role``, ``timeout_member``, ``kick``,
``ban``, ``audit_log``, ``presence`` and ``set_presence``; one per discussion
command (``clients.discussions``: ``thread_create``, ``thread_list``,
``thread_update``, ``thread_follow``/``thread_unfollow``, ``edit``, ``delete``,
``react``/``unreact``, ``pin``/``unpin``, ``pins``, ``dm_open``, ``typing``,
``mark_read``, ``search``, ``resource_add``, ``resource_list``; ``send_message``
takes ``reply_to``); one per workshop command (``clients.workshops``:
``workshop_start``, ``workshop_state``, ``workshop_end``, ``agenda_next``,
``agenda_goto``, ``hand_raise``, ``hand_lower``, ``hand_call``, ``hand_order``,
``poll_create``, ``poll_vote``, ``poll_close``, ``question_ask``,
``question_upvote``/``unvote``/``answer``/``hide``, ``timer_start``/``extend``/
``cancel``, ``breakout_open``/``broadcast``/``report``/``close``, ``pulse_send``,
``community_participation``); ``request`` sends any other.

It also keeps, in ``discussions``, the followed ``threads``, the ``dms``, the
read state per channel (``reads``: marker, unread and mention counts) and the
``messages`` it has seen, each as it is now (see ``clients.discussions``); and,
in ``workshops``, each subscribed workshop channel's live workshop, folded from
its events with ``protocol.workshop.apply`` (see ``clients.workshops``).

The client keeps ``communities`` (identify's list) current from the community
and user events every session hears: a new or renamed channel is in
``channel_named`` at once, a community the user was kicked from disappears
(and its channels are no longer resubscribed after a reconnect), and a
community joined from any session appears. These events are also yielded by
``events()``, like every other. Heartbeats are automatic. When the connection drops for a
reason worth retrying, the client reconnects with backoff, identifies again and
resubscribes every channel with ``since`` = the highest offset it delivered,
so ``events()`` yields every durable event exactly once and in order. If the
server could not replay everything (``recovered: false``), ``events()`` yields
a ``Gap`` to say which offsets to fetch with ``history``.

Exceptions::

    AgoraClientError
    ├── CommandError        the server answered a command with an ``error`` frame
    │                       (``code``, ``message``, ``retry_after_ms`` for ``rate_limited``)
    └── ConnectionClosed    the connection is gone for good, or dropped in the middle
                            of a command that is not safe to send twice

A command that is safe to send twice (``subscribe``, ``unsubscribe``, ``read.mark``,
``thread.follow``/``unfollow`` and the reads) is sent again once the client has
reconnected, when the connection drops before its reply arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import secrets
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import ClientConnection, connect

from clients.discussions import DiscussionCommands, Discussions
from clients.workshops import WorkshopCommands, Workshops
from protocol import (
    RECONNECTABLE,
    CloseCode,
    Encoding,
    ErrorCode,
    decode,
    encode,
)

log = logging.getLogger("agora.client")


class AgoraClientError(Exception):
    pass


#: Error codes after which ``wait_on_rate_limit`` sends the command again.
_WAIT_AND_RETRY = frozenset({ErrorCode.RATE_LIMITED, ErrorCode.UNAVAILABLE})

#: Commands whose second sending changes nothing the first did not: when the connection
#: drops before their reply, they are sent again on the next connection.
_SAFE_TO_REPEAT = frozenset(
    {
        "subscribe",
        "unsubscribe",
        "read.mark",
        "thread.follow",
        "thread.unfollow",
        "history",
        "message.search",
        "channel.pins",
        "community.members",
        "community.presence",
        "community.participation",
        "resource.list",
        "audit.list",
        "workshop.state",
    }
)


class CommandError(AgoraClientError):
    """An ``error`` frame answering a command."""

    def __init__(self, code: str, message: str, retry_after_ms: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms


class ConnectionClosed(AgoraClientError):
    """The connection closed; ``code`` is the WebSocket close code (1006 if none)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"connection closed with {code} {reason}".strip())
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Event:
    t: str
    ch: str
    d: dict[str, Any]
    o: int | None = None


@dataclass(frozen=True, slots=True)
class Gap:
    """Events ``after < o <= until`` of ``channel`` were not replayed: page ``history``."""

    channel: str
    after: int
    until: int


#: Run by the reader on a command's reply, before any later frame is read.
OnReply = Callable[[dict[str, Any]], "Gap | None"]


def http_url(url: str) -> str:
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "", "", ""))


async def _http(
    method: str,
    base_url: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    token: str | None = None,
) -> dict[str, Any]:
    """One request to the HTTP API: its JSON answer (``{}`` for 204), or ``CommandError``."""

    def run() -> dict[str, Any]:
        headers = {"content-type": "application/json"}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        request = urllib.request.Request(
            http_url(base_url) + path,
            data=None if body is None else json.dumps(body).encode(),
            headers=headers,
            method=method,
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            error = json.loads(exc.read() or b"{}").get("error", {})
            code, message = error.get("code", "internal"), error.get("message", str(exc))
            raise CommandError(code, message) from None

    return await asyncio.to_thread(run)


async def _post(base_url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    return await _http("POST", base_url, path, body)


async def register(
    base_url: str, username: str, password: str, display_name: str | None = None
) -> dict[str, Any]:
    """Create an account: ``{user, token}``."""
    body = {"username": username, "password": password}
    if display_name:
        body["display_name"] = display_name
    return await _post(base_url, "/api/v1/auth/register", body)


async def login(base_url: str, username: str, password: str) -> dict[str, Any]:
    """Log in: ``{user, token}``."""
    return await _post(base_url, "/api/v1/auth/login", {"username": username, "password": password})


async def logout(base_url: str, token: str) -> None:
    """Revoke ``token``: its open sessions close with 4001 ``logged out``."""
    await _http("POST", base_url, "/api/v1/auth/logout", token=token)


async def sessions(base_url: str, token: str) -> list[dict[str, Any]]:
    """The account's sessions (tokens that still work): ``{id, created_ts,
    last_used_ts, label, current}`` each, oldest first."""
    return (await _http("GET", base_url, "/api/v1/auth/sessions", token=token))["sessions"]


async def revoke_session(base_url: str, token: str, session_id: str) -> None:
    """Revoke one of the account's sessions; ``CommandError`` ``not_found`` if it has none
    with this id."""
    path = "/api/v1/auth/sessions/" + quote(session_id, safe="")
    await _http("DELETE", base_url, path, token=token)


async def revoke_other_sessions(base_url: str, token: str) -> int:
    """Revoke every session of the account but ``token``'s; how many were revoked."""
    return (await _http("DELETE", base_url, "/api/v1/auth/sessions", token=token))["revoked"]


async def change_password(base_url: str, token: str, password: str, new_password: str) -> None:
    """Change the password; every other session of the account is revoked."""
    body = {"password": password, "new_password": new_password}
    await _http("POST", base_url, "/api/v1/auth/password", body, token=token)


class Client(DiscussionCommands, WorkshopCommands):
    """One identified connection to an Agora server, kept alive across drops.

    ``max_events`` bounds the queue behind ``events()``: when the application
    stops reading, the client stops reading the socket too, and a server
    eventually closes a session that falls too far behind (4010) — after which
    the client reconnects and resumes.

    With ``wait_on_rate_limit`` a command answered ``rate_limited`` (or
    ``unavailable``: the server's storage is restarting) is sent again after
    ``retry_after_ms`` (within the command's ``timeout``). Until
    that pause is over, every command of this client takes a turn, one per
    ``retry_after_ms``, so concurrent senders trickle out at the rate the server
    allows instead of running into its flood limit (4008) together.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        encoding: Encoding | str = Encoding.MSGPACK,
        reconnect: bool = True,
        max_events: int = 10_000,
        max_backoff: float = 5.0,
        wait_on_rate_limit: bool = False,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.encoding = Encoding(encoding)
        self.reconnect = reconnect
        self.max_backoff = max_backoff
        self.wait_on_rate_limit = wait_on_rate_limit
        #: highest durable offset delivered, per subscribed channel
        self.offsets: dict[str, int] = {}
        #: log epoch per subscribed channel
        self.epochs: dict[str, str] = {}
        self.identity: dict[str, Any] = {}
        #: followed threads, DMs, read state and seen messages (clients.discussions)
        self.discussions = Discussions()
        #: each subscribed workshop channel's live workshop, ballots and upvotes
        #: (clients.workshops)
        self.workshops = Workshops()
        self.hello: dict[str, Any] = {}
        self.connections = 0
        self._events: asyncio.Queue[Event | Gap | ConnectionClosed] = asyncio.Queue(max_events)
        self._pending: dict[int, tuple[asyncio.Future[dict[str, Any]], OnReply | None]] = {}
        self._ids = itertools.count(1)
        self._ws: ClientConnection | None = None
        self._connected = asyncio.Event()
        self._closed: ConnectionClosed | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._last_sent = 0.0  # loop time of the last frame sent: the server's silence starts there
        #: after a ``rate_limited``: the loop time of the next free turn to send,
        #: and the time between turns
        self._paused_until = 0.0
        self._spacing = 0.0

    # lifecycle

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> dict[str, Any]:
        """Connect and identify; returns the identify reply. Raises on failure."""
        ws = await self._open()
        self._supervisor = asyncio.create_task(self._supervise(ws))
        return self.identity

    # the account's tokens (HTTP, with this client's token)

    async def logout(self) -> None:
        """Revoke this client's token on the server, then close (it cannot reconnect)."""
        self.reconnect = False
        await logout(self.url, self.token)
        await self.close()

    async def sessions(self) -> list[dict[str, Any]]:
        """The account's sessions; this client's has ``current: true``."""
        return await sessions(self.url, self.token)

    async def revoke_session(self, session_id: str) -> None:
        await revoke_session(self.url, self.token, session_id)

    async def revoke_other_sessions(self) -> int:
        return await revoke_other_sessions(self.url, self.token)

    async def change_password(self, password: str, new_password: str) -> None:
        """Change the password: every other session closes, this one stays."""
        await change_password(self.url, self.token, password, new_password)

    async def close(self) -> None:
        self.reconnect = False
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self._ws is not None:
            await self._ws.close()
        closed = ConnectionClosed(CloseCode.NORMAL, "closed by the client")
        self._fail_pending(closed)
        self._finish(closed)

    # commands

    async def request(
        self,
        op: str,
        d: dict[str, Any] | None = None,
        *,
        timeout: float = 30,
        on_reply: OnReply | None = None,
    ) -> dict[str, Any]:
        """Send a command and return its reply's ``d``; raise ``CommandError``."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while True:
                if (turn := self._paused_until) > loop.time():
                    self._paused_until = turn + self._spacing
                    await asyncio.sleep(turn - loop.time())
                ws = await self._connection()
                reader = self._reader
                try:
                    return await self._command(ws, op, d or {}, on_reply)
                except ConnectionClosed:
                    if op not in _SAFE_TO_REPEAT or not self.reconnect or reader is None:
                        raise
                    # The reader's end marks the connection as down, so that the next
                    # turn waits for the one that replaces it.
                    await asyncio.wait([reader])
                    log.debug("%s: the connection dropped; sending it again", op)
                except CommandError as exc:
                    if not self.wait_on_rate_limit or exc.code not in _WAIT_AND_RETRY:
                        raise
                    wait = self._spacing = (exc.retry_after_ms or 1000) / 1000
                    self._paused_until = max(self._paused_until, loop.time() + wait)
                    log.debug("%s: %s; sending again in %.3f s", op, exc.code, wait)

    async def subscribe(self, channel: str, *, since: int | None = None) -> dict[str, Any]:
        """Subscribe; with ``since`` the server first replays events after it."""
        d: dict[str, Any] = {"channel": channel}
        if since is not None:
            d["since"] = self.offsets[channel] = since
            if channel in self.epochs:
                d["epoch"] = self.epochs[channel]
        return await self.request("subscribe", d, on_reply=self._tracker(channel, since))

    async def unsubscribe(self, channel: str) -> None:
        self.offsets.pop(channel, None)
        self.epochs.pop(channel, None)
        self.workshops.forget(channel)
        await self.request("unsubscribe", {"channel": channel})

    async def history(
        self, channel: str, *, before: int | None = None, limit: int | None = None
    ) -> list[Event]:
        d: dict[str, Any] = {"channel": channel}
        if before is not None:
            d["before"] = before
        if limit is not None:
            d["limit"] = limit
        reply = await self.request("history", d)
        events = [_event(frame) for frame in reply["events"]]
        for event in events:
            if event.t in ("message.created", "message.updated"):
                self.discussions.remember(event.d["message"])
        return events

    async def send_message(
        self,
        channel: str,
        text: str,
        *,
        nonce: str | None = None,
        reply_to: str | None = None,
    ) -> dict[str, Any]:
        """Send a message (``reply_to``: the id of a message of the channel it answers);
        retried with the same nonce across a reconnect, it is sent once."""
        nonce = nonce or secrets.token_hex(8)
        d = _given(channel=channel, text=text, nonce=nonce, reply_to=reply_to)
        for attempt in range(5):
            try:
                message = (await self.request("message.send", d))["message"]
                self.discussions.sent(message)
                return message
            except ConnectionClosed as exc:
                if not self.reconnect or exc.code not in RECONNECTABLE or attempt == 4:
                    raise
        raise AssertionError("unreachable")

    @property
    def connected(self) -> bool:
        """Connected and identified; False while reconnecting and after the close."""
        return self._connected.is_set() and self._closed is None

    @property
    def closed(self) -> ConnectionClosed | None:
        """Why the client stopped for good, or ``None`` while it is running."""
        return self._closed

    @property
    def communities(self) -> list[dict[str, Any]]:
        """The user's communities in identify's shape, kept current by community events."""
        return self.identity.get("communities", [])

    def community(self, key: int | str = 0) -> dict[str, Any]:
        """A community by position, id or name (names without regard to case)."""
        if isinstance(key, int):
            return self.communities[key]
        for community in self.communities:
            if key == community["id"] or key.casefold() == community["name"].casefold():
                return community
        raise KeyError(key)

    def channel_named(self, name: str, community: int | str = 0) -> str:
        """The id of a channel of a community (position, id or name), by name."""
        for channel in self.community(community)["channels"]:
            if channel["name"] == name:
                return channel["id"]
        raise KeyError(name)

    def community_of(self, channel: str) -> str | None:
        """The id of the community a channel (listed in ``communities``) belongs to."""
        for community in self.communities:
            if any(c["id"] == channel for c in community["channels"]):
                return community["id"]
        return None

    # community commands (docs/protocol.md §5.8)

    async def create_community(self, name: str) -> dict[str, Any]:
        """Create a community (you own it; it has a ``general`` channel); identify's shape."""
        community = (await self.request("community.create", {"name": name}))["community"]
        self._add_community(community)
        return community

    async def create_invite(
        self,
        community: str,
        *,
        max_uses: int | None = None,
        expires_s: int | None = None,
        role: str | None = None,
    ) -> dict[str, Any]:
        """An invite ``{code, community, role, max_uses, uses, expires_ts}``."""
        d = _given(community=community, max_uses=max_uses, expires_s=expires_s, role=role)
        return (await self.request("invite.create", d))["invite"]

    async def accept_invite(self, code: str) -> dict[str, Any]:
        """Join the invite's community; the community in identify's shape."""
        community = (await self.request("invite.accept", {"code": code}))["community"]
        self._add_community(community)
        return community

    async def create_channel(
        self, community: str, name: str, *, kind: str | None = None, topic: str | None = None
    ) -> dict[str, Any]:
        """A new channel (``kind`` text, forum or workshop); the channel object."""
        d = _given(community=community, name=name, kind=kind, topic=topic)
        channel = (await self.request("channel.create", d))["channel"]
        self._put_channel(community, channel)
        return channel

    async def update_channel(
        self,
        channel: str,
        *,
        name: str | None = None,
        topic: str | None = None,
        position: int | None = None,
        archived: bool | None = None,
        slowmode_s: int | None = None,
    ) -> dict[str, Any]:
        """Change a channel's settings; the channel object."""
        d = _given(
            channel=channel,
            name=name,
            topic=topic,
            position=position,
            archived=archived,
            slowmode_s=slowmode_s,
        )
        updated = (await self.request("channel.update", d))["channel"]
        community = self.community_of(channel)
        if community is not None:
            self._put_channel(community, updated)
        return updated

    async def members(self, community: str) -> list[dict[str, Any]]:
        """The community's members (member objects), in join order."""
        return (await self.request("community.members", {"community": community}))["members"]

    async def set_role(self, community: str, user: str, role: str) -> dict[str, Any]:
        """Give a member a role (guest, member, facilitator, admin, owner); the member."""
        d = {"community": community, "user": user, "role": role}
        return (await self.request("member.role", d))["member"]

    async def timeout_member(self, community: str, user: str, seconds: int) -> None:
        """Refuse a member's actions (not reading) for ``seconds``; 0 lifts a time-out."""
        d = {"community": community, "user": user, "seconds": seconds}
        await self.request("member.timeout", d)

    async def kick(self, community: str, user: str) -> None:
        """Remove a member (an invite brings them back)."""
        await self.request("member.kick", {"community": community, "user": user})

    async def ban(self, community: str, user: str) -> None:
        """Remove a member for good: invites no longer let them in."""
        await self.request("member.ban", {"community": community, "user": user})

    async def audit_log(
        self, community: str, *, before: str | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        """A page of the audit log, newest first: ``{entries, next?}``; pass ``next`` as
        ``before`` for the page after it."""
        d = _given(community=community, before=before, limit=limit)
        return await self.request("audit.list", d)

    async def presence(self, community: str) -> dict[str, str]:
        """The members who are not offline: user id -> ``online`` or ``idle``."""
        reply = await self.request("community.presence", {"community": community})
        return {entry["user"]: entry["status"] for entry in reply["online"]}

    async def set_presence(self, status: str) -> None:
        """Say you are ``online`` or ``idle`` (for this session)."""
        await self.request("presence.set", {"status": status})

    # events

    async def events(self) -> AsyncIterator[Event | Gap]:
        """Every event, in order, across reconnects; ends when the client closes for good."""
        while True:
            item = await self._events.get()
            if isinstance(item, ConnectionClosed):
                return
            yield item

    async def next_event(self, timeout: float = 10) -> Event | Gap:
        async with asyncio.timeout(timeout):
            item = await self._events.get()
        if isinstance(item, ConnectionClosed):
            raise item
        return item

    # internals

    def _apply(self, event: Event) -> None:
        """Keep ``communities`` current from a community or user event."""
        d = event.d
        if event.t in ("channel.created", "channel.updated"):
            self._put_channel(event.ch, d["channel"])
        elif event.t == "community.joined":
            self._add_community(d["community"])
        elif event.t == "member.left" and d.get("user") == self.identity.get("user", {}).get("id"):
            self._drop_community(event.ch)
        elif event.t == "member.updated":
            member = d.get("member", {})
            if member.get("id") == self.identity.get("user", {}).get("id"):
                with contextlib.suppress(KeyError):
                    self.community(event.ch)["role"] = member["role"]

    def _add_community(self, community: dict[str, Any]) -> None:
        listed = self.identity.setdefault("communities", [])
        for i, known in enumerate(listed):
            if known["id"] == community["id"]:
                listed[i] = community
                return
        listed.append(community)

    def _put_channel(self, community_id: str, channel: dict[str, Any]) -> None:
        """Add or replace a channel in a community's list, kept in identify's order."""
        try:
            community = self.community(community_id)
        except KeyError:
            return
        channels = [c for c in community["channels"] if c["id"] != channel["id"]]
        channels.append(channel)
        # by position, then creation order (ids are snowflakes: later is larger)
        channels.sort(key=lambda c: (c.get("position", 0), len(c["id"]), c["id"]))
        community["channels"] = channels

    def _drop_community(self, community_id: str) -> None:
        """The user left (was kicked or banned): forget the community and its channels."""
        listed = self.identity.get("communities", [])
        for community in [c for c in listed if c["id"] == community_id]:
            listed.remove(community)
            for channel in community["channels"]:
                self.offsets.pop(channel["id"], None)
                self.epochs.pop(channel["id"], None)
                self.workshops.forget(channel["id"])

    async def _connection(self) -> ClientConnection:
        while True:
            if self._closed is not None:
                raise self._closed
            ws = self._ws
            if ws is not None and self._connected.is_set():
                return ws
            await self._connected.wait()

    async def _open(self) -> ClientConnection:
        query = f"v=1&encoding={self.encoding.value}"
        ws = await connect(
            f"{self.url}/gateway?{query}",
            compression=None,
            ping_interval=None,
            max_size=None,
            open_timeout=10,
        )
        try:
            frame = decode(await ws.recv(), self.encoding, max_size=2**31)
            if frame.get("op") != "hello":
                raise AgoraClientError(f"expected hello, got {frame.get('op')!r}")
            self.hello = frame["d"]
            self.workshops._saw_server_time(self.hello.get("ts"))
            self._ws = ws
            reader = asyncio.create_task(self._read(ws))
            try:
                try:
                    self.identity = await self._command(ws, "identify", {"token": self.token})
                    self.discussions.load(self.identity)
                except CommandError as exc:  # the server closes with 4001 right after
                    raise ConnectionClosed(CloseCode.NOT_AUTHENTICATED, exc.message) from None
                for channel, since in list(self.offsets.items()):
                    d: dict[str, Any] = {"channel": channel, "since": since}
                    if channel in self.epochs:
                        d["epoch"] = self.epochs[channel]
                    await self._command(ws, "subscribe", d, self._tracker(channel, since))
            except BaseException:
                reader.cancel()
                raise
            self._reader = reader
        except websockets.ConnectionClosed as exc:
            await ws.close()
            raise _closed(exc) from None
        except BaseException:
            await ws.close()
            raise
        self.connections += 1
        self._connected.set()
        return ws

    def _tracker(self, channel: str, since: int | None) -> OnReply:
        """What to do with a subscribe reply, in order with the frames around it."""

        def track(reply: dict[str, Any]) -> Gap | None:
            old_epoch = self.epochs.get(channel)
            self.epochs[channel] = reply["epoch"]
            self.discussions.saw_head(channel, reply["offset"])
            self.workshops.subscribed(channel, reply)
            if reply["recovered"]:
                return None
            offset = reply["offset"]
            self.offsets[channel] = offset
            if since is None:
                return None
            after = 0 if old_epoch not in (None, reply["epoch"]) else since
            return Gap(channel, after, offset) if offset > after else None

        return track

    async def _command(
        self, ws: ClientConnection, op: str, d: dict[str, Any], on_reply: OnReply | None = None
    ) -> dict[str, Any]:
        command_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = (future, on_reply)
        try:
            self._last_sent = asyncio.get_running_loop().time()
            await ws.send(encode({"op": op, "id": command_id, "d": d}, self.encoding))
            return await future
        except websockets.ConnectionClosed as exc:
            raise _closed(exc) from None
        finally:
            self._pending.pop(command_id, None)

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for data in ws:
                frame = decode(data, self.encoding, max_size=2**31)
                op = frame.get("op")
                if op == "event":
                    event = _event(frame)
                    if event.o is not None and event.ch in self.offsets:
                        if event.o <= self.offsets[event.ch]:
                            continue  # a replayed event delivered already
                        self.offsets[event.ch] = event.o
                    if event.o is None:
                        self._apply(event)
                    for kept in (self.discussions, self.workshops):
                        try:
                            kept.apply(event)
                        except (KeyError, TypeError, AttributeError, IndexError):  # a shape
                            # it does not know
                            log.warning("cannot keep state from a %s event", event.t, exc_info=True)
                    await self._events.put(event)
                elif op in ("reply", "error"):
                    future, on_reply = self._pending.get(frame.get("id", -1), (None, None))
                    if future is None or future.done():
                        if op == "error":
                            log.warning("error frame: %s", frame.get("d"))
                        continue
                    if op == "reply":
                        if on_reply is not None and (gap := on_reply(frame["d"])) is not None:
                            await self._events.put(gap)
                        future.set_result(frame.get("d", {}))
                    else:
                        err = frame.get("d", {})
                        future.set_exception(
                            CommandError(
                                err.get("code", "internal"),
                                err.get("message", ""),
                                err.get("retry_after_ms"),
                            )
                        )
        except websockets.ConnectionClosed:
            pass
        except Exception:  # a frame this client cannot read: drop the connection, reconnect
            log.exception("dropping the connection after an unreadable frame")
            ws.transport.abort()
        finally:
            closed = _closed_of(ws)
            self._connected.clear()
            self._fail_pending(closed)

    async def _supervise(self, ws: ClientConnection) -> None:
        """Heartbeat while connected; reconnect and resume after a drop worth retrying."""
        backoff = 0.1
        while True:
            heartbeat = asyncio.create_task(self._heartbeat(ws))
            assert self._reader is not None
            try:
                await self._reader
            finally:
                heartbeat.cancel()
            closed = _closed_of(ws)
            if not self.reconnect or closed.code not in RECONNECTABLE:
                self._finish(closed)
                return
            while True:
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, self.max_backoff)
                try:
                    ws = await self._open()
                    backoff = 0.1
                    break
                except ConnectionClosed as exc:
                    if exc.code not in RECONNECTABLE:
                        self._finish(exc)
                        return
                except (
                    OSError,
                    TimeoutError,
                    websockets.InvalidHandshake,
                    AgoraClientError,
                ) as exc:
                    log.info("reconnect failed: %s", exc)

    async def _heartbeat(self, ws: ClientConnection) -> None:
        # A ping once 0.8 heartbeat has passed since the last frame sent (identify, a
        # command, a ping), not since a reply: the server counts silence from what it
        # last received, so a slow reply must not push the next ping past its cut-off.
        period = self.hello.get("heartbeat_ms", 30_000) / 1000 * 0.8
        loop = asyncio.get_running_loop()
        with contextlib.suppress(AgoraClientError, websockets.ConnectionClosed):
            while True:
                await asyncio.sleep(self._last_sent + period - loop.time())
                if loop.time() >= self._last_sent + period:
                    await self._command(ws, "ping", {})

    def _finish(self, closed: ConnectionClosed) -> None:
        self._closed = closed
        self._ws = None
        with contextlib.suppress(asyncio.QueueFull):  # a full queue ends with its reader
            self._events.put_nowait(closed)
        self._connected.set()  # wake waiting requests so they see _closed

    def _fail_pending(self, exc: ConnectionClosed) -> None:
        for future, _ in self._pending.values():
            if not future.done():
                future.set_exception(exc)


def _given(**fields: Any) -> dict[str, Any]:
    """The fields that are not None: a command's ``d``."""
    return {k: v for k, v in fields.items() if v is not None}


def _event(frame: dict[str, Any]) -> Event:
    return Event(frame["t"], frame["ch"], frame.get("d", {}), frame.get("o"))


def _closed_of(ws: ClientConnection) -> ConnectionClosed:
    rcvd = ws.protocol.close_rcvd
    return ConnectionClosed(rcvd.code, rcvd.reason) if rcvd else ConnectionClosed(1006)


def _closed(exc: websockets.ConnectionClosed) -> ConnectionClosed:
    return ConnectionClosed(exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else ConnectionClosed(1006)
