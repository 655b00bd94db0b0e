"""Bounded TCP connections: deadlines for request headers and bodies, a cap per address.

uvicorn keeps a connection open for as long as its peer cares to send nothing,
and a socket that never completes its request costs a file descriptor and
memory: 1,100 silent sockets once took a server off the air. ``ConnectionGuard``
watches every connection uvicorn accepts, through the two protocol classes
``protocol_classes`` makes (uvicorn's own, subclassed, passed as
``Config(http=…, ws=…)``):

- **At accept**: a client address (an IPv6 client's /64, as ``server.addresses``
  counts it) that already holds
  ``max_connections_per_address`` connections has the new one closed at once,
  before it is read (no HTTP answer: nothing was asked yet).
- **Request headers**: from the accept, and from the first byte of each next
  request on a kept-alive connection, the complete headers must arrive within
  ``request_header_timeout_ms``; otherwise the connection is closed.
- **Request body**: once the headers are in, the whole body must arrive within
  ``request_body_timeout_ms``; otherwise the connection is closed (the app sees
  the client disconnect). A WebSocket upgrade has no body: its own deadlines
  (identify, heartbeat) take over.

Each deadline is one ``loop.call_later`` handle (a heap entry, not a task),
cancelled when the awaited part arrives. The guard also counts every open
connection and logs a warning when they near the file-descriptor limit, which
``raise_fd_limit`` lifts to its hard maximum at start.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from server.addresses import address_key
from server.settings import Settings
from server.waiting import LazyEvent, LazyQueue

log = logging.getLogger("agora.connections")

#: Open connections, as a share of the file-descriptor limit, that log a warning.
FD_WARNING_SHARE = 0.8
#: Below this share the warning is re-armed, so that a level hovering at it logs once.
FD_REARM_SHARE = 0.7


def raise_fd_limit() -> int:
    """Lift the soft limit on open files to the hard one; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:  # e.g. a platform capping it lower
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, hard, exc)
        else:
            log.info("raised the open-file limit from %d to %d", soft, hard)
            soft = hard
    return soft


class ConnectionGuard:
    """Every open connection of one server process, by client address."""

    def __init__(self, settings: Settings, fd_limit: int) -> None:
        self.header_timeout = settings.request_header_timeout_ms / 1000
        self.body_timeout = settings.request_body_timeout_ms / 1000
        self.per_address = settings.max_connections_per_address
        self.fd_limit = fd_limit
        #: transport -> its client address (None for a Unix socket: no cap)
        self.open: dict[Any, str | None] = {}
        self.by_address: dict[str, int] = {}
        #: addresses at their cap, logged once each until they drop below it
        self._refusing: set[str] = set()
        self._near_fd_limit = False

    def admit(self, transport: asyncio.BaseTransport) -> bool:
        """Count a new connection; False if its address is at its cap (close it then)."""
        if transport in self.open:  # a WebSocket upgrade: the same connection
            return True
        peer = transport.get_extra_info("peername")
        address = address_key(peer[0]) if isinstance(peer, tuple) else None
        if address is not None:
            count = self.by_address.get(address, 0)
            if self.per_address and count >= self.per_address:
                if address not in self._refusing:
                    self._refusing.add(address)
                    log.warning(
                        "%s holds %d connections (max_connections_per_address): closing"
                        " its new ones until it has fewer",
                        address,
                        count,
                    )
                return False
            self.by_address[address] = count + 1
        self.open[transport] = address
        self._check_fd_headroom()
        return True

    def release(self, transport: asyncio.BaseTransport) -> None:
        """Forget a closed connection (a second call for the same one does nothing)."""
        if transport not in self.open:
            return
        address = self.open.pop(transport)
        if address is not None:
            left = self.by_address[address] - 1
            if left:
                self.by_address[address] = left
            else:
                del self.by_address[address]
            if self.per_address and left < self.per_address:
                self._refusing.discard(address)
        if self._near_fd_limit and len(self.open) < FD_REARM_SHARE * self.fd_limit:
            self._near_fd_limit = False

    def _check_fd_headroom(self) -> None:
        if not self._near_fd_limit and len(self.open) >= FD_WARNING_SHARE * self.fd_limit:
            self._near_fd_limit = True
            log.warning(
                "%d open connections: near this process's limit of %d open files; past it new"
                " connections fail. Raise the limit (ulimit -n, LimitNOFILE=) or lower"
                " max_connections_per_address",
                len(self.open),
                self.fd_limit,
            )


def protocol_classes(
    guard: ConnectionGuard,
) -> tuple[type[HttpToolsProtocol], type[WebSocketsSansIOProtocol]]:
    """uvicorn's HTTP (httptools) and WebSocket (websockets-sansio) protocols, guarded."""

    class GuardedHttpProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if not guard.admit(transport):
                transport.close()
                return
            self._arm(guard.header_timeout, "its request headers")

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            guard.release(self.transport)
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._deadline is None:  # the next request on a kept-alive connection
                self._arm(guard.header_timeout, "its request headers")

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()
            if not (self.parser.should_upgrade() and self._should_upgrade()):
                self._arm(guard.body_timeout, "its request body")

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def handle_websocket_upgrade(self) -> None:
            self._disarm()
            super().handle_websocket_upgrade()

        def _arm(self, seconds: float, what: str) -> None:
            self._deadline = self.loop.call_later(seconds, self._late, what)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _late(self, what: str) -> None:
            self._deadline = None
            # Debug only: a flood of silent sockets must not become a flood of log lines.
            log.debug("closing a connection from %s: it did not send %s in time", self.client, what)
            if not self.transport.is_closing():
                self.transport.close()

    class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
        """uvicorn's WebSocket protocol, guarded, and lighter by 3 KiB a connection.

        Made by GuardedHttpProtocol on an upgrade, on the same (admitted)
        transport; the transport reports its end to this protocol from then on.
        Its receive queue and ``writable`` event allocate their waiters when
        first waited on (``server.waiting``), and the handshake's request and
        response headers are let go once the response is sent.

        Slots for uvicorn's own attributes: past 30 names an instance's
        ``__dict__`` stops sharing its keys with the class's other instances,
        and uvicorn sets 37, so each connection had a dict of its own (1.5 KiB).
        Slots are found before the dict, which then is never made. An attribute
        a later uvicorn adds lands in the dict again, costing memory, nothing else.
        """

        __slots__ = (
            "app",
            "app_state",
            "asgi_version",
            "client",
            "close_sent",
            "close_timeout",
            "close_timer",
            "config",
            "conn",
            "connections",
            "curr_msg_data_type",
            "default_headers",
            "disconnected",
            "frames",
            "handshake_complete",
            "handshake_initiated",
            "initial_response",
            "last_ping_rtt",
            "logger",
            "loop",
            "pending_ping_payload",
            "ping_interval",
            "ping_sent_at",
            "ping_timeout",
            "ping_timer",
            "pong_timer",
            "queue",
            "read_paused",
            "request",
            "response",
            "root_path",
            "scheme",
            "scope",
            "server",
            "tasks",
            "transport",
            "writable",
        )

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.queue = LazyQueue()  # type: ignore[assignment]
            self.writable = LazyEvent()  # type: ignore[assignment]
            self.writable.set()

        async def send(self, message: Any) -> None:
            await super().send(message)
            if message["type"] == "websocket.accept" and self.handshake_complete:
                # websockets' parser keeps the request to the end: empty its headers.
                if self.request is not None:
                    self.request.headers.clear()
                self.request = self.response = None

        def connection_lost(self, exc: Exception | None) -> None:
            guard.release(self.transport)
            super().connection_lost(exc)

    return GuardedHttpProtocol, GuardedWebSocketProtocol
