"""The hub: fans each channel's events out to this process's subscribed sessions.

It also carries topics: streams of ephemeral events (a community's, a
user's, a thread's followers') that have no offsets and are never replayed. A topic's frame goes to
every listener as it comes (but those of the user ``d.user`` names, for the
events in ``NOT_TO_SELF``), encoded once per encoding, and then to
``on_topic_event`` once, for the domain to act on (a member who left stops
listening).

Internal topics (``serve``) carry what the nodes tell one another, never a
client: each has one handler per node, called with the frame's bytes (e.g.
``server/domain/tokens.py``'s revocations, which close sessions on every node).

One ``ChannelFeed`` per channel with local subscribers. The feed delivers
durable events in offset order: a frame that arrives ahead of its turn (two
publishers raced, or the broker dropped one) waits until the gap is filled
from the store, and a frame already delivered is dropped. Each event is
encoded and framed once per wire encoding in use, and the same ``OutFrame``
is pushed to every recipient's outbox: no per-recipient encoding and no
awaiting on the fan-out path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import msgpack

from protocol import NOT_TO_SELF, Encoding, encode
from server.broker import Broker
from server.errors import Unavailable
from server.gateway.outbox import Outbox, OutFrame
from server.metrics import Metrics
from server.store import Store

log = logging.getLogger("agora.hub")

#: How long an out-of-order event waits for the missing ones before the feed
#: reads them from the store, in seconds.
GAP_REPAIR_DELAY = 0.25
#: Frames a feed reads from the store at once when catching up after a broker outage.
CATCH_UP_PAGE = 500
#: Longest wait between attempts to catch up while the store is unreachable, in seconds.
CATCH_UP_MAX_DELAY = 5.0


class Joining:
    """A subscriber not yet on the live path.

    While its replay is read (``after`` is None) live events wait here, counted
    against its outbox's limit. Once replayed up to ``after``, it takes only
    events past ``after`` until the feed itself has delivered past it (a feed
    can lag behind the store when its broker is late), then joins the live set.
    """

    __slots__ = ("after", "encoding", "events", "outbox", "size")

    def __init__(self, outbox: Outbox, encoding: Encoding) -> None:
        self.outbox = outbox
        self.encoding = encoding
        self.events: list[tuple[int, OutFrame]] = []
        self.size = 0
        self.after: int | None = None

    def take(self, offset: int, frame: OutFrame) -> None:
        if self.after is not None:
            if offset > self.after:
                self.outbox.push(frame)
            return
        self.events.append((offset, frame))
        self.size += frame.size
        if self.size + self.outbox.size > self.outbox.limit:
            self.events.clear()
            self.outbox.on_overflow()


class ChannelFeed:
    """A channel's local subscribers and the offset delivered to them last."""

    def __init__(self, hub: Hub, channel: str) -> None:
        self.hub = hub
        self.channel = channel
        self.last = 0
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.live: dict[Encoding, set[Outbox]] = {e: set() for e in Encoding}
        self.joining: dict[Outbox, Joining] = {}
        #: frames ahead of their turn, by offset, with their decoded maps
        self._early: dict[int, tuple[bytes, dict[str, Any]]] = {}
        self._before_ready: list[bytes] = []  # frames received while `last` was read
        self._repair: asyncio.TimerHandle | asyncio.Task[None] | None = None
        self._catching_up: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return sum(len(s) for s in self.live.values()) + len(self.joining)

    def users(self) -> set[str]:
        """The users of this node's subscribers."""
        outboxes = [o for live in self.live.values() for o in live] + list(self.joining)
        return {o.owner for o in outboxes if o.owner is not None}

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

    def leave(self, outbox: Outbox) -> None:
        """Remove a subscriber; the last one out unsubscribes this process."""
        self.joining.pop(outbox, None)
        for outboxes in self.live.values():
            outboxes.discard(outbox)
        if len(self) == 0:
            self.hub.release(self)

    def _promote(self) -> None:
        """Move subscribers whose replay the feed has caught up with to the live set."""
        for outbox, joining in list(self.joining.items()):
            if joining.after is not None and joining.after <= self.last:
                del self.joining[outbox]
                self.live[joining.encoding].add(outbox)

    # delivery

    def start(self, last: int) -> None:
        """The baseline is read: deliver from ``last`` on, sorting out what came meanwhile."""
        self.last = last
        self.ready.set_result(None)
        for frame in self._before_ready:
            self.receive(frame)
        self._before_ready.clear()

    def receive(self, frame: bytes) -> None:
        """Take one msgpack event frame from the broker."""
        if not self.ready.done():
            self._before_ready.append(frame)
            return
        try:
            event = msgpack.unpackb(frame, raw=False)
            offset = event.get("o")
        except (ValueError, AttributeError):
            log.warning("dropped an undecodable frame on channel %s", self.channel)
            return
        if not isinstance(offset, int):
            self._fan_out(None, frame, event)
        elif offset > self.last + 1:
            self._early[offset] = (frame, event)
            if self._repair is None:
                loop = asyncio.get_running_loop()
                self._repair = loop.call_later(GAP_REPAIR_DELAY, self._start_repair)
        elif offset == self.last + 1:
            self._deliver(offset, frame, event)
            while (early := self._early.pop(self.last + 1, None)) is not None:
                self._deliver(self.last + 1, *early)
            if not self._early and isinstance(self._repair, asyncio.TimerHandle):
                self.stop()  # the gap closed through the broker after all
        # else: delivered already

    def stop(self) -> None:
        if self._repair is not None:
            self._repair.cancel()
            self._repair = None
        if self._catching_up is not None:
            self._catching_up.cancel()
            self._catching_up = None

    def catch_up(self) -> None:
        """Deliver what the store holds past ``last``: the broker may have lost frames.

        A catch-up already running may have read the head before the latest
        outage, so it starts again.
        """
        if not self.ready.done():
            return  # its baseline is still being read, after the broker resubscribed
        if self._catching_up is not None:
            self._catching_up.cancel()
        self._catching_up = asyncio.ensure_future(self._catch_up())

    async def _catch_up(self) -> None:
        delay = GAP_REPAIR_DELAY
        store = self.hub.store
        while self.hub.feeds.get(self.channel) is self:
            try:
                head = (await store.log_head(self.channel)).offset
                while self.last < head:
                    frames = await store.read_after(
                        self.channel, self.last, min(CATCH_UP_PAGE, head - self.last)
                    )
                    if not frames:
                        break
                    for frame in frames:
                        self.receive(frame)
                break
            except Exception as exc:
                log.warning("catching up channel %s failed (%s); retrying", self.channel, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, CATCH_UP_MAX_DELAY)
        self._catching_up = None

    def _start_repair(self) -> None:
        self._repair = asyncio.ensure_future(self._repair_gaps())

    async def _repair_gaps(self) -> None:
        """Read every missing offset up to the newest waiting frame from the store.

        Offsets are gapless and stored before they are published, so the store
        always holds them; frames that arrive during the read wait for the next
        round.
        """
        try:
            if self._early and max(self._early) > self.last:
                frames = await self.hub.store.read_after(
                    self.channel, self.last, max(self._early) - self.last
                )
                self.hub.metrics.gaps_repaired.inc()
                for frame in frames:
                    self.receive(frame)
        except Unavailable as exc:  # an outage: the broker's resume catches up later
            log.warning("gap repair on channel %s failed (%s); retrying", self.channel, exc)
        except Exception:
            log.exception("gap repair failed on channel %s; retrying", self.channel)
        finally:
            self._repair = None
        self._early = {o: f for o, f in self._early.items() if o > self.last}
        if self._early and self.hub.feeds.get(self.channel) is self:
            self._repair = asyncio.get_running_loop().call_later(
                GAP_REPAIR_DELAY, self._start_repair
            )

    def _deliver(self, offset: int, frame: bytes, event: dict[str, Any]) -> None:
        self.last = offset
        self._fan_out(offset, frame, event)
        watcher = self.hub.watchers.get(event.get("t"))  # type: ignore[arg-type]
        if watcher is not None:
            watcher(self, event)
        if self.joining:
            self._promote()

    def _fan_out(self, offset: int | None, frame: bytes, event: dict[str, Any]) -> None:
        started = time.perf_counter()
        recipients = 0
        author = None if offset is not None else not_to_self(event)
        for encoding, outboxes in self.live.items():
            if not outboxes and not any(j.encoding is encoding for j in self.joining.values()):
                continue
            out = OutFrame(frame if encoding is Encoding.MSGPACK else encode(event, encoding))
            if author is not None:
                for outbox in outboxes:
                    if outbox.owner != author:
                        outbox.push(out)
                continue
            for outbox in outboxes:  # a push never changes the set: see Session.overflowed
                outbox.push(out)
            recipients += len(outboxes)
            if offset is not None:
                for joining in self.joining.values():
                    if joining.encoding is encoding:
                        joining.take(offset, out)
        self.hub.metrics.observe_fanout(recipients, time.perf_counter() - started)


def not_to_self(event: dict[str, Any]) -> str | None:
    """The user whose own sessions never get this ephemeral event (``NOT_TO_SELF``)."""
    return (event.get("d") or {}).get("user") if event.get("t") in NOT_TO_SELF else None


class Listener(Protocol):
    """What a topic delivers to: a session's outbox and wire encoding."""

    outbox: Outbox
    encoding: Encoding


#: Called once per topic event after its listeners got it: (topic, event frame).
OnTopicEvent = Callable[[str, dict[str, Any]], None]


class Hub:
    def __init__(self, store: Store, broker: Broker, metrics: Metrics) -> None:
        self.store = store
        self.broker = broker
        self.metrics = metrics
        self.feeds: dict[str, ChannelFeed] = {}
        #: topic -> this process's listeners
        self.topics: dict[str, set[Listener]] = {}
        self._subscribing: dict[str, asyncio.Future[None]] = {}
        self.on_topic_event: OnTopicEvent | None = None
        #: internal topic -> this node's handler of its frames
        self.internal: dict[str, Callable[[bytes], None]] = {}
        #: event type -> called once per node with the feed that delivered it (its
        #: local subscribers), for the domain to act on
        self.watchers: dict[str, Callable[[ChannelFeed, dict[str, Any]], None]] = {}

    async def start(self) -> None:
        await self.broker.start(self.on_message, self.on_resume)

    async def stop(self) -> None:
        for feed in self.feeds.values():
            feed.stop()
        await self.broker.stop()

    def on_message(self, channel: str, frame: bytes) -> None:
        handler = self.internal.get(channel)
        if handler is not None:
            handler(frame)
            return
        feed = self.feeds.get(channel)
        if feed is not None:
            feed.receive(frame)
        elif channel in self.topics:
            self._topic_message(channel, frame)

    # topics

    async def serve(self, topic: str, handler: Callable[[bytes], None]) -> None:
        """Call ``handler`` with every frame published to the internal ``topic``, from any
        node (this one included), until the hub stops.

        Raises ``Unavailable`` if the broker cannot subscribe.
        """
        self.internal[topic] = handler
        await self.broker.subscribe(topic)

    async def listen(self, topic: str, listener: Listener) -> None:
        """Deliver the topic's events to ``listener`` from now on.

        Raises ``Unavailable`` (and delivers nothing) if the broker cannot subscribe.
        """
        listeners = self.topics.get(topic)
        if listeners is None:
            listeners = self.topics[topic] = set()
            self._subscribing[topic] = asyncio.ensure_future(self.broker.subscribe(topic))
        listeners.add(listener)
        subscribing = self._subscribing.get(topic)
        if subscribing is None:
            return
        try:
            await asyncio.shield(subscribing)
        except BaseException:
            self.unlisten(topic, listener)
            raise
        finally:
            if subscribing.done() and self._subscribing.get(topic) is subscribing:
                del self._subscribing[topic]

    def unlisten(self, topic: str, listener: Listener) -> None:
        listeners = self.topics.get(topic)
        if listeners is None:
            return
        listeners.discard(listener)
        if not listeners:
            del self.topics[topic]
            self._unsubscribe_later(topic)

    def _topic_message(self, topic: str, frame: bytes) -> None:
        try:
            event = msgpack.unpackb(frame, raw=False)
        except ValueError:
            log.error("topic %s carried a frame that is not msgpack; dropped", topic)
            return
        framed: dict[Encoding, OutFrame] = {Encoding.MSGPACK: OutFrame(frame)}
        author = not_to_self(event)
        for listener in list(self.topics[topic]):
            if author is not None and listener.outbox.owner == author:
                continue
            out = framed.get(listener.encoding)
            if out is None:
                out = framed[listener.encoding] = OutFrame(encode(event, listener.encoding))
            listener.outbox.push(out)
        if self.on_topic_event is not None:
            self.on_topic_event(topic, event)

    def on_resume(self) -> None:
        """The broker reconnected: every feed reads what it missed from the store."""
        self.metrics.broker_resumes.inc()
        for feed in self.feeds.values():
            feed.catch_up()

    async def feed(self, channel: str) -> ChannelFeed:
        """The channel's feed, subscribing this process to the channel if needed."""
        feed = self.feeds.get(channel)
        if feed is not None:
            await asyncio.shield(feed.ready)
            return feed
        feed = self.feeds[channel] = ChannelFeed(self, channel)
        try:
            await self.broker.subscribe(channel)
            feed.start((await self.store.log_head(channel)).offset)
        except BaseException as exc:
            del self.feeds[channel]
            feed.ready.set_exception(exc)
            feed.ready.exception()  # retrieved: the other waiters re-raise it
            self._unsubscribe_later(channel)
            raise
        return feed

    async def join(
        self, channel: str, outbox: Outbox, encoding: Encoding
    ) -> tuple[ChannelFeed, Joining]:
        """Join the channel's feed as a subscriber about to be replayed to."""
        while True:
            feed = await self.feed(channel)
            if self.feeds.get(channel) is feed:  # not released while this one waited
                return feed, feed.join(outbox, encoding)

    def release(self, feed: ChannelFeed) -> None:
        """Forget a feed nobody here listens to any more."""
        if self.feeds.get(feed.channel) is feed:
            del self.feeds[feed.channel]
            feed.stop()
            self._unsubscribe_later(feed.channel)

    def _unsubscribe_later(self, channel: str) -> None:
        async def unsubscribe() -> None:
            # nobody subscribed or listened again meanwhile
            if not any(channel in held for held in (self.feeds, self.topics, self.internal)):
                await self.broker.unsubscribe(channel)

        asyncio.ensure_future(unsubscribe()).add_done_callback(_log_failure)


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("hub task failed", exc_info=task.exception())
