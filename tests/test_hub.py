"""The hub's ordering guarantees, in process: a real SQLiteStore, a MemoryBroker, no sockets.

Frames come from ``store.append`` (stored before published) and are handed to
the feed either through the broker or straight to ``ChannelFeed.receive``, the
way a broker that reorders or loses frames would. What a subscriber got is
read from its ``Outbox``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from protocol import Encoding, encode
from server.broker import MemoryBroker
from server.gateway.hub import ChannelFeed, Hub
from server.gateway.outbox import Close, Outbox, OutFrame
from server.metrics import Metrics
from server.store.sqlite import SQLiteStore
from tests.conftest import timeout


class Setup:
    def __init__(self, store: SQLiteStore, hub: Hub, channel: str) -> None:
        self.store = store
        self.hub = hub
        self.channel = channel

    async def append(self, count: int) -> list[bytes]:
        """Store ``count`` events; their frames, offsets 1, 2, … in order."""
        return [
            (await self.store.append(self.channel, "message.created", {"n": i})).frame
            for i in range(count)
        ]


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    store = SQLiteStore(str(tmp_path / "hub.db"))
    await store.open()
    user = await store.create_user("owner", "Owner", "hash")
    (community,) = await store.communities_of(user.id)
    hub = Hub(store, MemoryBroker(), Metrics())
    await hub.start()
    try:
        yield Setup(store, hub, community.channels[0].id)
    finally:
        for feed in hub.feeds.values():
            if feed._repair is not None:
                feed._repair.cancel()
        await hub.stop()
        await store.close()


def live(
    feed: ChannelFeed,
    encoding: Encoding = Encoding.MSGPACK,
    *,
    limit: int = 1 << 20,
    on_overflow: Any = None,
) -> Outbox:
    """A live subscriber of the feed (joined, and gone live with nothing to replay)."""
    outbox = Outbox(limit, on_overflow or (lambda: None))
    feed.go_live(feed.join(outbox, encoding), feed.last)
    return outbox


def queued(outbox: Outbox) -> list[OutFrame | Close]:
    """What an outbox holds (its queue is made when the first frame must wait)."""
    return list(outbox._items or ())


def frames(outbox: Outbox) -> list[OutFrame]:
    return [item for item in queued(outbox) if isinstance(item, OutFrame)]


def pushed(outbox: Outbox) -> list[int]:
    """The offsets of the msgpack event frames an outbox holds, in order."""
    return [msgpack.unpackb(f.message["bytes"], raw=False)["o"] for f in frames(outbox)]


def repairs(setup: Setup) -> float | None:
    return setup.hub.metrics.registry.get_sample_value("agora_gaps_repaired_total")


async def until_pushed(outbox: Outbox, count: int) -> list[int]:
    """Wait (bounded) until ``count`` frames are queued; return their offsets."""
    async with asyncio.timeout(timeout(5)):
        while len(frames(outbox)) < count:
            await asyncio.sleep(0.01)
    return pushed(outbox)


async def test_in_order_frames_are_delivered_once_each(setup: Setup) -> None:
    feed = await setup.hub.feed(setup.channel)
    outbox = live(feed)
    stored = await setup.append(5)
    for frame in stored:
        await setup.hub.broker.publish(setup.channel, frame)
    assert pushed(outbox) == [1, 2, 3, 4, 5]
    assert [f.message["bytes"] for f in frames(outbox)] == stored
    assert feed.last == 5


async def test_a_frame_already_delivered_is_dropped(setup: Setup) -> None:
    feed = await setup.hub.feed(setup.channel)
    outbox = live(feed)
    one, two, three = await setup.append(3)
    feed.receive(one)
    feed.receive(two)
    feed.receive(one)
    feed.receive(two)
    assert pushed(outbox) == [1, 2]
    feed.receive(three)
    feed.receive(three)
    assert pushed(outbox) == [1, 2, 3]


async def test_frames_out_of_order_come_out_in_order(setup: Setup) -> None:
    feed = await setup.hub.feed(setup.channel)
    outbox = live(feed)
    one, two, three, four = await setup.append(4)
    feed.receive(one)
    feed.receive(three)
    feed.receive(four)
    assert pushed(outbox) == [1]  # 3 and 4 wait for 2
    feed.receive(two)
    assert pushed(outbox) == [1, 2, 3, 4]
    # the gap closed through the broker: no repair is pending and none happened
    assert feed._repair is None
    assert repairs(setup) == 0


async def test_a_frame_the_broker_never_delivers_is_repaired_from_the_store(
    setup: Setup,
) -> None:
    feed = await setup.hub.feed(setup.channel)
    outbox = live(feed)
    one, _lost, three = await setup.append(3)
    feed.receive(one)
    feed.receive(three)
    assert pushed(outbox) == [1]
    assert repairs(setup) == 0
    # GAP_REPAIR_DELAY later, the feed reads #2 from the store
    assert await until_pushed(outbox, 3) == [1, 2, 3]
    assert repairs(setup) == 1
    assert feed.last == 3


async def test_two_frames_the_broker_never_delivers_are_both_repaired(setup: Setup) -> None:
    feed = await setup.hub.feed(setup.channel)
    outbox = live(feed)
    one, _two, three, _four, five = await setup.append(5)
    feed.receive(one)
    feed.receive(three)
    feed.receive(five)  # neither #2 nor #4 ever comes through the broker
    assert (await until_pushed(outbox, 4))[:4] == [1, 2, 3, 4]
    assert await until_pushed(outbox, 5) == [1, 2, 3, 4, 5]


async def test_a_joining_subscriber_buffers_and_go_live_pushes_only_past_after(
    setup: Setup,
) -> None:
    feed = await setup.hub.feed(setup.channel)
    other = live(feed)
    joiner = Outbox(1 << 20, lambda: None)
    joining = feed.join(joiner, Encoding.MSGPACK)
    stored = await setup.append(5)
    for frame in stored[:3]:
        feed.receive(frame)
    assert frames(joiner) == []  # buffered, not pushed, while it is replayed to
    assert pushed(other) == [1, 2, 3]
    feed.go_live(joining, after=2)  # its replay covered 1 and 2
    assert pushed(joiner) == [3]
    for frame in stored[3:]:
        feed.receive(frame)
    assert pushed(joiner) == [3, 4, 5]
    assert pushed(other) == [1, 2, 3, 4, 5]


async def test_go_live_after_everything_buffered_pushes_nothing_twice(setup: Setup) -> None:
    feed = await setup.hub.feed(setup.channel)
    joiner = Outbox(1 << 20, lambda: None)
    joining = feed.join(joiner, Encoding.MSGPACK)
    stored = await setup.append(3)
    for frame in stored:
        feed.receive(frame)
    feed.go_live(joining, after=3)
    assert frames(joiner) == []
    feed.receive(stored[2])  # a duplicate after going live is dropped too
    assert frames(joiner) == []


async def test_a_json_subscriber_gets_json_text_of_the_same_frame(setup: Setup) -> None:
    feed = await setup.hub.feed(setup.channel)
    as_json = live(feed, Encoding.JSON)
    as_msgpack = live(feed, Encoding.MSGPACK)
    appended = await setup.store.append(
        setup.channel, "message.created", {"message": {"text": "héllo ✓", "n": [1, None]}}
    )
    feed.receive(appended.frame)
    (text_frame,) = frames(as_json)
    (bytes_frame,) = frames(as_msgpack)
    assert "bytes" not in text_frame.message
    assert isinstance(text_frame.message["text"], str)
    assert text_frame.message["text"] == encode(appended.event, Encoding.JSON)
    assert json.loads(text_frame.message["text"]) == appended.event
    assert bytes_frame.message["bytes"] == appended.frame
    assert text_frame.size == len(text_frame.framed)
    assert text_frame.framed.endswith(text_frame.message["text"].encode())


async def test_every_subscriber_of_one_encoding_gets_the_same_encoded_frame(
    setup: Setup,
) -> None:
    feed = await setup.hub.feed(setup.channel)
    outboxes = [live(feed, Encoding.JSON) for _ in range(3)]
    (frame,) = await setup.append(1)
    feed.receive(frame)
    first, second, third = (frames(o)[0] for o in outboxes)
    assert first is second is third  # encoded once, not once per recipient


async def test_a_typing_event_reaches_everyone_but_the_typers_own_outboxes(
    setup: Setup,
) -> None:
    feed = await setup.hub.feed(setup.channel)
    typer, other_tab_of_typer, someone = live(feed), live(feed), live(feed)
    typer.owner = other_tab_of_typer.owner = "u1"
    someone.owner = "u2"
    typing = msgpack.packb(
        {"op": "event", "t": "typing.started", "ch": setup.channel, "d": {"user": "u1"}},
        use_bin_type=True,
    )
    feed.receive(typing)
    assert [len(frames(o)) for o in (typer, other_tab_of_typer, someone)] == [0, 0, 1]


async def test_an_event_without_offset_is_fanned_out_at_once_and_leaves_order_alone(
    setup: Setup,
) -> None:
    feed = await setup.hub.feed(setup.channel)
    outbox = live(feed)
    one, two = await setup.append(2)
    typing = msgpack.packb(
        {"op": "event", "t": "typing.started", "ch": setup.channel, "d": {}}, use_bin_type=True
    )
    feed.receive(one)
    feed.receive(typing)
    feed.receive(two)
    got = [msgpack.unpackb(f.message["bytes"], raw=False) for f in frames(outbox)]
    assert [(e["t"], e.get("o")) for e in got] == [
        ("message.created", 1),
        ("typing.started", None),
        ("message.created", 2),
    ]
    assert feed.last == 2


async def test_an_outbox_over_its_limit_calls_on_overflow_exactly_once_and_drops_its_queue(
    setup: Setup,
) -> None:
    feed = await setup.hub.feed(setup.channel)
    stored = await setup.append(10)
    calls: list[int] = []
    slow: Outbox

    def overflowed() -> None:  # what a Session does: close at once, without flushing
        calls.append(len(queued(slow)))
        slow.close(4010, "outbound buffer overflowed", flush=False)

    size = len(stored[0])
    slow = live(feed, limit=size * 3, on_overflow=overflowed)
    fine = live(feed)
    for frame in stored:
        feed.receive(frame)
    assert calls == [0]  # called once, with the queue already dropped
    assert frames(slow) == []  # nothing queued survived the overflow
    assert [type(item) for item in queued(slow)] == [Close]
    assert queued(slow)[0].code == 4010
    assert pushed(fine) == list(range(1, 11))  # the others are not held back


async def test_a_push_over_the_limit_drops_the_whole_queue(setup: Setup) -> None:
    calls = 0

    def overflowed() -> None:
        nonlocal calls
        calls += 1

    outbox = Outbox(100, overflowed)
    outbox.push(OutFrame(b"x" * 60))
    assert (len(queued(outbox)), outbox.size, calls) == (1, 62, 0)  # 60 + a 2-byte header
    outbox.push(OutFrame(b"y" * 60))
    assert (len(queued(outbox)), outbox.size, calls) == (0, 0, 1)
