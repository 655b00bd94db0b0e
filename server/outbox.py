"""What one session has still to write to its WebSocket, bounded in bytes.

The hub pushes the same ``OutFrame`` object to every recipient's outbox: the
event was encoded once, and the ASGI message that carries it was built once.
Pushing never awaits; one writer task per session drains the outbox.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import Counter

from protocol import Encoding, Wire, encode

Send = Callable[[dict[str, Any]], Awaitable[None]]


class OutFrame:
    """One encoded frame and the ASGI message that sends it."""

    __slots__ = ("message", "size")

    def __init__(self, data: Wire) -> None:
        if isinstance(data, str):
            self.message: dict[str, Any] = {"type": "websocket.send", "text": data}
        else:
            self.message = {"type": "websocket.send", "bytes": data}
        self.size = len(data)

    @classmethod
    def of(cls, frame: dict[str, Any], encoding: Encoding) -> OutFrame:
        return cls(encode(frame, encoding))


class Close:
    """The last item of an outbox: close the WebSocket with this code."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class Outbox:
    """A bounded FIFO of frames for one WebSocket, and the task that writes them.

    ``limit`` is in bytes of encoded frames (characters for JSON). A push that
    takes the outbox over it drops everything queued and calls ``on_overflow``
    once: the session is too slow to keep up, and is closed with 4010.
    """

    __slots__ = ("_items", "_wakeup", "closing", "limit", "on_overflow", "size")

    def __init__(self, limit: int, on_overflow: Callable[[], None]) -> None:
        self.limit = limit
        self.on_overflow = on_overflow
        self.size = 0
        self.closing = False
        self._items: deque[OutFrame | Close] = deque()
        self._wakeup = asyncio.Event()

    def push(self, frame: OutFrame) -> None:
        if self.closing:
            return
        self._items.append(frame)
        self.size += frame.size
        if self.size > self.limit:
            self._items.clear()
            self.size = 0
            self.on_overflow()
            return
        self._wakeup.set()

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

    async def wait_below(self, size: int) -> None:
        """Wait until at most ``size`` bytes are queued (for bulk sends like a replay)."""
        while self.size > size and not self.closing:
            await asyncio.sleep(0.005)

    async def write_to(self, send: Send, sent: Counter) -> None:
        """Write frames as they come until a ``Close`` has been written.

        ``sent`` is counted once per burst, not once per frame.
        """
        items = self._items
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            burst = 0
            while items:
                item = items.popleft()
                if isinstance(item, Close):
                    sent.inc(burst)
                    message = {"type": "websocket.close", "code": item.code, "reason": item.reason}
                    await send(message)
                    return
                self.size -= item.size
                await send(item.message)
                burst += 1
            sent.inc(burst)
