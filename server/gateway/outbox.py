"""What one session has still to write to its WebSocket, bounded in bytes.

The hub pushes the same ``OutFrame`` object to every recipient's outbox: the
event was encoded and framed once. Pushing never awaits.

Frames pushed to one session in the same turn of the event loop (a burst from
the broker, a replay page, events of several channels, a reply) go out in one
transport write at the end of that turn (``RunWriter``): one syscall instead of
one per frame, and nothing waits for a timer. Where every recipient got the
same run of frames (the hub delivering a batch of broker messages for one
channel), the run is joined once and the same bytes are written to each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from starlette.types import Send
from websockets.frames import Frame, Opcode

from protocol import Encoding, Wire, encode
from server.gateway.transport import TransportWriter
from server.waiting import LazyEvent

log = logging.getLogger("agora.gateway")


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


#: Most bytes of one run: a write this large already shares its syscall among many
#: frames; a longer run would only hold more here before the kernel sees any of it.
RUN_BYTES = 64 * 1024


class RunWriter:
    """Writes, at the end of each turn of the event loop, the runs outboxes started in it.

    One ``call_soon`` per turn for every outbox with a run, not one per outbox.
    ``join`` remembers the runs joined in this turn, so that outboxes holding the
    same frames in the same order (a channel's subscribers) share one ``bytes``.
    """

    __slots__ = ("_joined", "_loop", "_outboxes", "writes")

    def __init__(self) -> None:
        self.writes = 0  # writes of frames to sockets, for the socket-writes metric
        self._outboxes: list[Outbox] = []
        self._joined: dict[tuple[int, int, int], tuple[list[bytes], bytes]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None  # set while a flush is due

    def add(self, outbox: Outbox) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # none due, or due on a loop that is gone (tests)
            self._loop = loop
            self._outboxes.clear()
            self._joined.clear()
            loop.call_soon(self.flush, loop)
        self._outboxes.append(outbox)

    def flush(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is not loop:
            return
        self._loop = None
        outboxes, self._outboxes = self._outboxes, []
        for outbox in outboxes:
            outbox.write_run()
        self._joined.clear()

    def join(self, run: list[bytes]) -> bytes:
        key = (len(run), id(run[0]), id(run[-1]))
        joined = self._joined.get(key)
        if joined is not None and joined[0] == run:  # the same frames (compared by identity first)
            return joined[1]
        data = b"".join(run)
        self._joined[key] = (run, data)  # keeps the frames alive, so their ids stay theirs
        return data


RUNS = RunWriter()


class Outbox:
    """A bounded FIFO of frames for one WebSocket, and the task that writes them.

    ``push`` never awaits. With a ``TransportWriter`` and nothing queued, the
    frame joins this turn's run, written to the socket at the end of the turn
    (see ``RunWriter``); otherwise the frame waits here and a writer task
    sends it when the socket drains. The queue and the task exist only once
    something has had to wait: most sessions, idle or keeping up, never need
    either (a deque and a task with its coroutine are over a kilobyte).

    ``limit`` is in bytes of framed data, and counts every byte the session
    holds in memory: those queued here, those in the run, and those written to
    the transport that the kernel has not taken yet (``pending``). A frame that
    would take a run past the limit first writes the run out, so the kernel
    takes what it can, as if every frame had been written at once. A push that
    takes the session over the limit drops everything queued and calls
    ``on_overflow`` once: the session is too slow to keep up, and is closed
    with 4010. A single frame larger than ``limit`` can never go out; ``fits``
    tells a caller that would rather refuse it.
    """

    __slots__ = (
        "_drained",
        "_items",
        "_run",
        "_run_size",
        "_send",
        "_writer",
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
        self._items: deque[OutFrame | Close] | None = None  # made when a frame must wait
        #: framed bytes to write at the end of the turn: one frame's own bytes until a
        #: second comes (most turns carry one frame, and bytes are no work for the collector)
        self._run: bytes | list[bytes] | None = None
        self._run_size = 0
        self._send: Send | None = None
        self._writer: asyncio.Task[None] | None = None  # while queued frames are being written
        self._drained = LazyEvent()  # set whenever the writer has emptied the queue

    def attach(self, send: Send, direct: TransportWriter | None) -> None:
        """Write to this connection: ``direct`` if there is one, else through ASGI ``send``."""
        self._send = send
        self.direct = direct
        if self._items:
            self._start_writer()

    def pending(self) -> int:
        """Bytes this session holds: queued here, in its run, and in its transport's buffer."""
        direct = self.direct
        held = self.size + self._run_size
        return held + direct.buffered() if direct is not None else held

    def fits(self, frame: OutFrame) -> bool:
        """Whether ``frame`` alone is within the limit (a larger one would overflow)."""
        return frame.size <= self.limit

    def push(self, frame: OutFrame) -> None:
        if self.closing:
            return
        direct = self.direct
        run = self._run
        if run is not None:  # nothing is queued while a run is open (see write_run)
            assert direct is not None
            size = self._run_size + frame.size
            if size <= RUN_BYTES and direct.buffered() + size <= self.limit:
                if isinstance(run, bytes):
                    self._run = [run, frame.framed]
                else:
                    run.append(frame.framed)
                self._run_size = size
                return
            self.write_run()  # the kernel takes what it can before the limit is checked
            self.push(frame)
            return
        if direct is not None and not self._items and direct.ready():
            if direct.buffered() + frame.size <= self.limit:
                self._run = frame.framed
                self._run_size = frame.size
                RUNS.add(self)
                return
            self._overflow()
            return
        self._queue(frame)
        self.size += frame.size
        if self.pending() > self.limit:
            self._overflow()
            return
        self._start_writer()

    def _queue(self, item: OutFrame | Close) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)

    def _start_writer(self) -> None:
        if self._writer is None and self._send is not None:
            self._writer = asyncio.get_running_loop().create_task(self._write_queued())

    def write_run(self) -> None:
        """Write this turn's run now (``RunWriter`` calls it at the end of the turn)."""
        run = self._run
        if run is None:
            return
        self._run = None
        self._run_size = 0
        direct = self.direct
        if direct is not None and direct.open():  # else the connection is going: drop it
            if isinstance(run, bytes):
                direct.write(run)
                self.sent += 1
            else:
                direct.write(RUNS.join(run))
                self.sent += len(run)
            RUNS.writes += 1

    def _overflow(self) -> None:
        if self._items:
            self._items.clear()
        self.size = 0
        self._run = None
        self._run_size = 0
        self.on_overflow()

    def close(self, code: int, reason: str = "", *, flush: bool = True) -> None:
        """Queue the close after what is queued (``flush``) or instead of it."""
        if self.closing:
            return
        self.closing = True
        if flush:
            self.write_run()  # before the close frame, which the writer task sends
        else:
            if self._items:
                self._items.clear()
            self.size = 0
            self._run = None
            self._run_size = 0
        self._queue(Close(code, reason))
        self._start_writer()
        self._drained.set()

    async def wait_below(self, size: int) -> None:
        """Wait until at most ``size`` bytes are pending (for bulk sends like a replay)."""
        while self.pending() > size and not self.closing:
            self.write_run()  # let the kernel take the run before waiting on the rest
            if self.pending() <= size:
                return
            if self._items or self.direct is None:
                self._drained.clear()
                await self._drained.wait()
            elif not await self.direct.wait_writable():
                return  # the connection is gone
            elif self.pending() > size:
                return  # writable, yet over ``size``: a buffer limit above it (see the gateway)

    async def stop(self) -> None:
        """Stop writing (the connection is gone)."""
        writer = self._writer
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _write_queued(self) -> None:
        """Write queued frames as the socket allows, until none is left or a ``Close`` is sent."""
        try:
            await self._write_items()
        except Exception as exc:  # the connection went mid-write; the gateway sees it too
            log.debug("writing to a closed connection: %r", exc)
        finally:
            self._writer = None

    async def _write_items(self) -> None:
        items = self._items
        send = self._send
        direct = self.direct
        assert items is not None and send is not None
        while items:
            item = items[0]
            if isinstance(item, Close):
                items.clear()
                await send({"type": "websocket.close", "code": item.code, "reason": item.reason})
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
            RUNS.writes += 1
        self._drained.set()
