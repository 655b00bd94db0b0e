"""What one session has still to write to its WebSocket, bounded in bytes.

The hub pushes the same ``OutFrame`` object to every recipient's outbox: the
event was encoded and framed once. Pushing never awaits.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from starlette.types import Send
from websockets.frames import Frame, Opcode

from protocol import Encoding, Wire, encode
from server.gateway.transport import TransportWriter
from server.waiting import LazyEvent


class OutFrame:
    """One encoded frame, framed once for the wire; the same object goes to every recipient."""

    __slots__ = ("data", "framed", "size", "text")

    def __init__(self, data: Wire) -> None:
        self.text = isinstance(data, str)
        self.data = data.encode() if isinstance(data, str) else bytes(data)
        opcode = Opcode.TEXT if self.text else Opcode.BINARY
        self.framed = Frame(opcode, self.data).serialize(mask=False)
        self.size = len(self.framed)

    @classmethod
    def of(cls, frame: dict[str, Any], encoding: Encoding) -> OutFrame:
        return cls(encode(frame, encoding))

    @property
    def message(self) -> dict[str, Any]:
        """The ASGI message that sends this frame (the fallback path)."""
        if self.text:
            return {"type": "websocket.send", "text": self.data.decode()}
        return {"type": "websocket.send", "bytes": self.data}


class Close:
    """The last item of an outbox: close the WebSocket with this code."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class Outbox:
    """A bounded FIFO of frames for one WebSocket, and the task that writes them.

    ``push`` never awaits. With a ``TransportWriter`` and nothing queued, it
    writes the frame to the socket at once; otherwise the frame waits here and
    the writer task sends it when the socket drains. ``limit`` is in bytes of
    framed data, and counts every byte the session holds in memory: those
    queued here and those written to the transport that the kernel has not
    taken yet (``pending``). A push that takes the session over it drops
    everything queued and calls ``on_overflow`` once: the session is too slow
    to keep up, and is closed with 4010. A single frame larger than ``limit``
    can never go out; ``fits`` tells a caller that would rather refuse it.
    """

    __slots__ = (
        "_drained",
        "_items",
        "_wakeup",
        "closing",
        "direct",
        "limit",
        "on_overflow",
        "owner",
        "sent",
        "size",
    )

    def __init__(self, limit: int, on_overflow: Callable[[], None]) -> None:
        self.limit = limit
        self.on_overflow = on_overflow
        self.size = 0
        self.sent = 0  # frames written, for the frames-out metric
        self.closing = False
        self.direct: TransportWriter | None = None
        self.owner: str | None = None  # the session's user, once identified
        self._items: deque[OutFrame | Close] = deque()
        self._wakeup = LazyEvent()
        self._drained = LazyEvent()  # set whenever the writer has emptied the queue

    def pending(self) -> int:
        """Bytes this session holds: queued here, and in its transport's write buffer."""
        direct = self.direct
        return self.size + (direct.buffered() if direct is not None else 0)

    def fits(self, frame: OutFrame) -> bool:
        """Whether ``frame`` alone is within the limit (a larger one would overflow)."""
        return frame.size <= self.limit

    def push(self, frame: OutFrame) -> None:
        if self.closing:
            return
        direct = self.direct
        if direct is not None and not self._items and direct.ready():
            if direct.buffered() + frame.size <= self.limit:
                direct.write(frame.framed)
                self.sent += 1
                return
            self._overflow()
            return
        self._items.append(frame)
        self.size += frame.size
        if self.pending() > self.limit:
            self._overflow()
            return
        self._wakeup.set()

    def _overflow(self) -> None:
        self._items.clear()
        self.size = 0
        self.on_overflow()

    def close(self, code: int, reason: str = "", *, flush: bool = True) -> None:
        """Queue the close after what is queued (``flush``) or instead of it."""
        if self.closing:
            return
        self.closing = True
        if not flush:
            self._items.clear()
            self.size = 0
        self._items.append(Close(code, reason))
        self._wakeup.set()
        self._drained.set()

    async def wait_below(self, size: int) -> None:
        """Wait until at most ``size`` bytes are pending (for bulk sends like a replay)."""
        while self.pending() > size and not self.closing:
            if self._items or self.direct is None:
                self._drained.clear()
                await self._drained.wait()
            elif not await self.direct.wait_writable():
                return  # the connection is gone
            elif self.pending() > size:
                return  # writable, yet over ``size``: a buffer limit above it (see the gateway)

    async def write_to(self, send: Send) -> None:
        """Write queued frames as the socket allows, until a ``Close`` has been written."""
        items = self._items
        direct = self.direct
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while items:
                item = items[0]
                if isinstance(item, Close):
                    items.clear()
                    await send(
                        {"type": "websocket.close", "code": item.code, "reason": item.reason}
                    )
                    return
                if direct is not None:
                    if not direct.ready():
                        if not await direct.wait_writable():
                            return  # the connection is gone; the gateway sees it too
                        continue  # the queue may have changed meanwhile (a close, an overflow)
                    items.popleft()
                    self.size -= item.size
                    direct.write(item.framed)
                else:
                    items.popleft()
                    self.size -= item.size
                    await send(item.message)
                self.sent += 1
            self._drained.set()
