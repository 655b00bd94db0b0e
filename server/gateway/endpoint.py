"""The WebSocket endpoint at ``/gateway``: handshake checks and the session's loops.

A raw ASGI app, reached before Starlette's middleware (see ``server.app``), so
that it holds the server's own ``send`` and can write frames directly (see
``server.gateway.transport``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection
from starlette.types import Message, Receive, Scope, Send

from protocol import PROTOCOL_VERSION, CloseCode, Encoding, Wire, hello
from server.gateway.session import Session
from server.gateway.transport import TransportWriter
from server.ids import now_ms

log = logging.getLogger("agora.gateway")

#: Most bytes a session's transport buffers before writes wait (asyncio's default).
TRANSPORT_HIGH_WATER = 64 * 1024

#: Most inbound messages handled as one group (see ``Session.receive_many``).
RECEIVED_AT_ONCE = 64

if TYPE_CHECKING:
    from server.app import Agora


class Gateway:
    def __init__(self, agora: Agora) -> None:
        self.agora = agora

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        encoding = await self._handshake(scope, send)
        if encoding is None:
            return
        # The session never reads the request again: its headers (a kilobyte a connection)
        # need not live as long as it does. (The scope itself is uvicorn's, held to the end.)
        scope["headers"] = []
        await self._serve(Session(self.agora, encoding), receive, send)

    async def _handshake(self, scope: Scope, send: Send) -> Encoding | None:
        """Accept; the session's encoding, or None once refused (closed)."""
        conn = HTTPConnection(scope)
        await send({"type": "websocket.accept"})
        if not self._origin_allowed(conn):
            await self._refuse(send, CloseCode.POLICY_VIOLATION, "origin not allowed")
            return None
        version = conn.query_params.get("v", str(PROTOCOL_VERSION))
        if version != str(PROTOCOL_VERSION):
            await self._refuse(
                send, CloseCode.UNSUPPORTED, f"unsupported protocol version {version[:16]!r}"
            )
            return None
        try:
            return Encoding(conn.query_params.get("encoding", Encoding.MSGPACK))
        except ValueError:
            await self._refuse(
                send, CloseCode.UNSUPPORTED, "unsupported encoding; use msgpack or json"
            )
            return None

    async def _refuse(self, send: Send, code: CloseCode, reason: str) -> None:
        self.agora.metrics.closes.labels(str(int(code))).inc()
        await send({"type": "websocket.close", "code": code, "reason": reason})

    def _origin_allowed(self, conn: HTTPConnection) -> bool:
        """Browsers send Origin; other clients need no check (they carry no cookies).

        With ``public_origin`` set, a browser must also have reached the server by
        that name (``Host``): a page whose own name was pointed at this server (DNS
        rebinding) sends its own name in both Origin and Host, which would
        otherwise pass as the same origin.
        """
        origin = conn.headers.get("origin")
        if origin is None:
            return True
        settings = self.agora.settings
        host = conn.headers.get("host", "").lower()
        public_host = settings.public_host
        if public_host is not None and host != public_host:
            return False
        allowed = settings.origins
        if "*" in allowed or origin.rstrip("/") in allowed:
            return True
        # Same origin: the host (and port) the browser connected to. The scheme is
        # not compared: behind a TLS-terminating proxy the server sees ws://.
        try:
            return urlsplit(origin).netloc.lower() == host
        except ValueError:  # e.g. "http://[": not an origin
            return False

    async def _serve(self, session: Session, receive: Receive, send: Send) -> None:
        agora = self.agora
        settings = agora.settings
        agora.sessions.add(session)
        agora.metrics.connections.inc()
        direct = TransportWriter.of(send)
        session.outbox.attach(send, direct)
        if direct is not None:
            agora.metrics.direct_writes.inc()
            # The transport's buffer counts against the outbox limit: keep it to a quarter,
            # so that a replay pausing at half the limit never overflows it (see Outbox).
            direct.limit_buffer(min(TRANSPORT_HIGH_WATER, settings.outbox_limit // 4))
        session.send(
            hello(
                heartbeat_ms=settings.heartbeat_ms,
                server=settings.server_name,
                max_frame=settings.max_frame,
                ts=now_ms(),
            )
        )
        session.start_timers()
        if agora.draining:
            session.drain()
        try:
            while True:
                message = await receive()
                if message["type"] != "websocket.receive":
                    break
                # What else has arrived is handled with it: a run of sends becomes one batch.
                datas = [_payload(message)]
                while direct is not None and direct.received() and len(datas) < RECEIVED_AT_ONCE:
                    message = await receive()  # already there: no wait
                    if message["type"] != "websocket.receive":
                        break
                    datas.append(_payload(message))
                await session.receive_many(datas)
                if message["type"] != "websocket.receive":
                    break
        finally:
            session.stop_timers()
            session.leave_all()
            agora.sessions.discard(session)
            agora.metrics.frames_out_of_closed += session.outbox.sent
            agora.metrics.connections.dec()
            if direct is not None:
                agora.metrics.direct_writes.dec()
            if session.user is not None:
                agora.metrics.sessions.dec()
            await session.outbox.stop()
            try:
                await agora.closed(session)
            except Exception as exc:  # presence is forgettable: log, never fail the close
                log.warning("after session %s closed: %s", session.id, exc)


def _payload(message: Message) -> Wire:
    data = message.get("bytes")
    return data if data is not None else message.get("text", "")
