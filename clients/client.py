"""The async Python client of Agora, on the ``websockets`` library.

::

    token = (await register("http://localhost:8000", "ann", "a long password"))["token"]
    async with Client("ws://localhost:8000", token) as client:
        general = client.channel_named("general")
        await client.subscribe(general)
        await client.send_message(general, "hello")
        async for event in client.events():
            print(event.t, event.d)

Commands are awaitables that return the reply's ``d`` or raise
``CommandError``. Heartbeats are automatic. When the connection drops for a
reason worth retrying, the client reconnects with backoff, identifies again and
resubscribes every channel with ``since`` = the highest offset it delivered,
so ``events()`` yields every durable event exactly once and in order. If the
server could not replay everything (``recovered: false``), ``events()`` yields
a ``Gap`` to say which offsets to fetch with ``history``.

Exceptions::

    AgoraClientError
    ├── CommandError        the server answered a command with an ``error`` frame
    │                       (``code``, ``message``, ``retry_after_ms`` for ``rate_limited``)
    └── ConnectionClosed    the connection is gone for good (or dropped mid-command)
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
from urllib.parse import urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import ClientConnection, connect

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


async def _post(base_url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        request = urllib.request.Request(
            http_url(base_url) + path,
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            error = json.loads(exc.read() or b"{}").get("error", {})
            code, message = error.get("code", "internal"), error.get("message", str(exc))
            raise CommandError(code, message) from None

    return await asyncio.to_thread(run)


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


class Client:
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
                try:
                    return await self._command(ws, op, d or {}, on_reply)
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
        return [_event(frame) for frame in reply["events"]]

    async def send_message(
        self, channel: str, text: str, *, nonce: str | None = None
    ) -> dict[str, Any]:
        """Send a message; retried with the same nonce across a reconnect, it is sent once."""
        nonce = nonce or secrets.token_hex(8)
        for attempt in range(5):
            try:
                reply = await self.request(
                    "message.send", {"channel": channel, "text": text, "nonce": nonce}
                )
                return reply["message"]
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

    def channel_named(self, name: str, community: int = 0) -> str:
        """The id of a channel of the ``community``-th community, by name."""
        for channel in self.identity["communities"][community]["channels"]:
            if channel["name"] == name:
                return channel["id"]
        raise KeyError(name)

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
            self._ws = ws
            reader = asyncio.create_task(self._read(ws))
            try:
                try:
                    self.identity = await self._command(ws, "identify", {"token": self.token})
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
        interval = self.hello.get("heartbeat_ms", 30_000) / 1000
        with contextlib.suppress(AgoraClientError, websockets.ConnectionClosed):
            while True:
                await asyncio.sleep(interval * 0.8)
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


def _event(frame: dict[str, Any]) -> Event:
    return Event(frame["t"], frame["ch"], frame.get("d", {}), frame.get("o"))


def _closed_of(ws: ClientConnection) -> ConnectionClosed:
    rcvd = ws.protocol.close_rcvd
    return ConnectionClosed(rcvd.code, rcvd.reason) if rcvd else ConnectionClosed(1006)


def _closed(exc: websockets.ConnectionClosed) -> ConnectionClosed:
    return ConnectionClosed(exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else ConnectionClosed(1006)
