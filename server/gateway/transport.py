"""Writing pre-framed WebSocket frames straight to the connection's transport.

ASGI has only ``await send(message)``: one coroutine, one framing and one
write per frame per recipient. Server-to-client frames are not masked, so a
frame's bytes are the same for every recipient: Agora frames each event once
(``OutFrame.framed``) and, when the server is uvicorn's ``websockets-sansio``
protocol with no extension negotiated, writes those bytes to each socket
synchronously, as ``websockets.broadcast`` does. Anything else (another ASGI
server, another uvicorn protocol, a compression extension) falls back to the
ASGI ``send`` path, which is always correct, only slower.
"""

from __future__ import annotations

from typing import Any

from starlette.types import Send

try:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
except ImportError:  # pragma: no cover - uvicorn without websockets' sans-I/O layer
    WebSocketsSansIOProtocol = None  # type: ignore[assignment,misc]


_PROTOCOL_ATTRIBUTES = ("conn", "transport", "writable", "close_sent", "disconnected", "queue")


class TransportWriter:
    """Synchronous writes of framed bytes to one uvicorn WebSocket connection."""

    __slots__ = ("_protocol", "_transport", "_writable")

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol
        self._transport = protocol.transport
        self._writable = protocol.writable  # cleared while the transport is paused

    @classmethod
    def of(cls, send: Send) -> TransportWriter | None:
        """A writer for the connection behind ASGI ``send``, or None if there is none."""
        protocol = getattr(send, "__self__", None)
        if WebSocketsSansIOProtocol is None or not isinstance(protocol, WebSocketsSansIOProtocol):
            return None
        # The attributes used here are uvicorn's internals: if a release renames
        # them, fall back to ASGI rather than fail.
        if not all(hasattr(protocol, a) for a in _PROTOCOL_ATTRIBUTES):
            return None
        if getattr(protocol.conn, "extensions", True):  # e.g. permessage-deflate
            return None
        return cls(protocol)

    def ready(self) -> bool:
        """Whether a write now goes out without queueing past the transport's limit."""
        return (
            self._writable.is_set()
            and not self._protocol.close_sent
            and not self._transport.is_closing()
        )

    def open(self) -> bool:
        """Whether frames may still be written: no close frame sent, the transport not closing."""
        return not self._protocol.close_sent and not self._transport.is_closing()

    def limit_buffer(self, high: int) -> None:
        """Pause writes (``ready()`` false) once the transport holds more than ``high`` bytes."""
        self._transport.set_write_buffer_limits(high=high)

    def buffered(self) -> int:
        """Bytes written and not yet taken by the kernel: they count against the outbox."""
        return self._transport.get_write_buffer_size()

    def received(self) -> int:
        """Messages received from the client that the app has not taken yet."""
        return self._protocol.queue.qsize()

    def write(self, framed: bytes) -> None:
        self._transport.write(framed)

    def abort(self) -> None:
        """Drop the connection at once, buffered data and all (a peer that never reads)."""
        self._transport.abort()

    async def wait_writable(self) -> bool:
        """Wait until the transport drains below its limit; False if the connection is gone."""
        await self._writable.wait()
        return not (
            self._protocol.disconnected or self._protocol.close_sent or self._transport.is_closing()
        )
