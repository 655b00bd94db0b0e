"""The hub: fans each channel's events out to this process's subscribed sessions.

One ``ChannelFeed`` per channel with local subscribers. The feed delivers
durable events in offset order: a frame that arrives ahead of its turn (two
publishers raced, or the broker dropped one) waits until the gap is filled
from the store, and a frame already delivered is dropped. Each event is
encoded once per wire encoding in use, wrapped once in an ``OutFrame``, and the
same object is pushed to every recipient's outbox: no per-recipient encoding
and no awaiting on the fan-out path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import msgpack

from protocol import Encoding, transcode
from server.broker import Broker
from server.metrics import Metrics
from server.outbox import Outbox, OutFrame
from server.store import Store

if TYPE_CHECKING:
    from collections.abc import Iterable

log = logging.getLogger("agora.hub")

#: How long an out-of-order event waits for the missing ones before the feed
#: reads them from the store, in seconds.
GAP_REPAIR_DELAY = 0.25


class Joining:
    """A subscriber not yet on the live path.

    While its replay is read (``after`` is None) live events wait here. Once
    replayed up to ``after``, it takes only events past ``after`` until the
    feed itself has delivered past it (a feed can lag behind the store when
    its broker is late), and then joins the live set.
    """

    __slots__ = ("after", "encoding", "events", "outbox")

    def __init__(self, outbox: Outbox, encoding: Encoding) -> None:
        self.outbox = outbox
        self.encoding = encoding
        self.events: list[tuple[int, OutFrame]] = []
        self.after: int | None = None

    def take(self, offset: int, frame: OutFrame) -> None:
        if self.after is None:
            self.events.append((offset, frame))
        elif offset > self.after:
            self.outbox.push(frame)


class ChannelFeed:
    """A channel's local subscribers and the offset delivered to them last."""

    def __init__(self, hub: Hub, channel: str) -> None:
        self.hub = hub
        self.channel = channel
        self.last = 0
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.live: dict[Encoding, set[Outbox]] = {e: set() for e in Encoding}
        self.joining: dict[Outbox, Joining] = {}
        self._early: dict[int, bytes] = {}
        self._before_ready: list[bytes] = []
        self._repair: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return sum(len(s) for s in self.live.values()) + len(self.joining)

    # membership

    def join(self, outbox: Outbox, encoding: Encoding) -> Joining:
        """Start buffering live events for a subscriber that is being replayed to."""
        joining = self.joining[outbox] = Joining(outbox, encoding)
        return joining

    def go_live(self, joining: Joining, after: int) -> None:
        """Push the buffered events past ``after``, then deliver live from now on."""
        if self.joining.get(joining.outbox) is not joining:
            return
        for offset, frame in joining.events:
            if offset > after:
                joining.outbox.push(frame)
        joining.events.clear()
        joining.after = after
        self._promote()

    def _promote(self) -> None:
        """Move subscribers whose replay the feed has caught up with to the live set."""
        for outbox, joining in list(self.joining.items()):
            if joining.after is not None and joining.after <= self.last:
                del self.joining[outbox]
                self.live[joining.encoding].add(outbox)

    def leave(self, outbox: Outbox) -> None:
        self.joining.pop(outbox, None)
        for outboxes in self.live.values():
            outboxes.discard(outbox)

    # delivery

    def receive(self, frame: bytes) -> None:
        """Take one msgpack event frame from the broker."""
        try:
            offset = msgpack.unpackb(frame, raw=False).get("o")
        except (ValueError, msgpack.ExtraData, AttributeError):
            log.warning("dropped an undecodable frame on channel %s", self.channel)
            return
        if not isinstance(offset, int):
            self._fan_out(None, frame)
            return
        if offset <= self.last:
            return  # delivered already
        if offset > self.last + 1:
            self._early[offset] = frame
            if self._repair is None:
                self._repair = asyncio.get_running_loop().call_later(
                    GAP_REPAIR_DELAY, self.hub.repair, self
                )
            return
        self._deliver(offset, frame)
        while (frame := self._early.pop(self.last + 1, None)) is not None:
            self._deliver(self.last + 1, frame)
        if not self._early and self._repair is not None:
            self._repair.cancel()
            self._repair = None

    def fill(self, frames: Iterable[bytes]) -> None:
        """Deliver frames read from the store to close a gap, then what waited on it.

        ``receive`` drains the waiting frames once the gap is closed; any still
        waiting are past a gap the store could not fill, and go out in order
        rather than stall the channel.
        """
        self._repair = None
        for frame in frames:
            self.receive(frame)
        early, self._early = self._early, {}
        for offset in sorted(early):
            self._deliver(offset, early[offset])

    def _deliver(self, offset: int, frame: bytes) -> None:
        self.last = offset
        self._fan_out(offset, frame)
        if self.joining:
            self._promote()

    def _fan_out(self, offset: int | None, frame: bytes) -> None:
        started = time.perf_counter()
        recipients = 0
        for encoding, outboxes in self.live.items():
            if not outboxes and not any(j.encoding is encoding for j in self.joining.values()):
                continue
            out = OutFrame(transcode(frame, encoding))
            for outbox in outboxes:  # a push never changes the set: see Session.overflowed
                outbox.push(out)
            recipients += len(outboxes)
            if offset is not None:
                for joining in self.joining.values():
                    if joining.encoding is encoding:
                        joining.take(offset, out)
        self.hub.metrics.observe_fanout(recipients, time.perf_counter() - started)


class Hub:
    def __init__(self, store: Store, broker: Broker, metrics: Metrics) -> None:
        self.store = store
        self.broker = broker
        self.metrics = metrics
        self.feeds: dict[str, ChannelFeed] = {}

    async def start(self) -> None:
        await self.broker.start(self.on_message)

    async def stop(self) -> None:
        await self.broker.stop()

    def on_message(self, channel: str, frame: bytes) -> None:
        feed = self.feeds.get(channel)
        if feed is None:
            return
        if feed.ready.done():
            feed.receive(frame)
        else:  # its baseline offset is being read: sort this frame out after that
            feed._before_ready.append(frame)

    async def feed(self, channel: str) -> ChannelFeed:
        """The channel's feed, subscribing this process to the channel if needed."""
        feed = self.feeds.get(channel)
        if feed is None:
            feed = self.feeds[channel] = ChannelFeed(self, channel)
            try:
                await self.broker.subscribe(channel)
                feed.last = (await self.store.log_head(channel)).offset
            except BaseException as exc:
                del self.feeds[channel]
                feed.ready.set_exception(exc)
                feed.ready.exception()  # retrieved: the joiners re-raise it below
                raise
            feed.ready.set_result(None)
            for frame in feed._before_ready:
                feed.receive(frame)
            feed._before_ready.clear()
        else:
            await asyncio.shield(feed.ready)
        return feed

    def release(self, feed: ChannelFeed) -> None:
        """Unsubscribe this process from a channel nobody here listens to any more."""
        if len(feed) == 0 and self.feeds.get(feed.channel) is feed:
            del self.feeds[feed.channel]
            if feed._repair is not None:
                feed._repair.cancel()
            task = asyncio.ensure_future(self.broker.unsubscribe(feed.channel))
            task.add_done_callback(_log_failure)

    def repair(self, feed: ChannelFeed) -> None:
        task = asyncio.ensure_future(self._repair(feed))
        task.add_done_callback(_log_failure)

    async def _repair(self, feed: ChannelFeed) -> None:
        if not feed._early:
            feed._repair = None
            return
        # Read through the newest waiting frame: there may be more than one gap.
        frames = await self.store.read_after(feed.channel, feed.last, max(feed._early) - feed.last)
        self.metrics.gaps_repaired.inc()
        feed.fill(frames)


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("hub task failed", exc_info=task.exception())
