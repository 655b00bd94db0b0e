"""The Broker contract (server/broker/base.py), run against every Broker implementation.

The first section holds for every broker and uses only the ``Broker``
interface; ``backend.make()`` gives another broker on the same transport (the
same object in-process, another connection for Redis). The last section is
about what only a networked broker does: reconnect, resubscribe, resume, and
fail fast while its server is gone.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from server.broker import Broker, MemoryBroker
from server.broker.redis import RedisBroker
from server.errors import Unavailable
from tests.conftest import RedisProcess, free_port, timeout


class Inbox:
    """What one broker delivered: frames by channel, and how often it resumed."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, bytes]] = []
        self.resumes = 0
        self.changed = asyncio.Event()

    def on_message(self, channel: str, frame: bytes) -> None:
        self.frames.append((channel, frame))
        self.changed.set()

    def on_resume(self) -> None:
        self.resumes += 1
        self.changed.set()

    async def wait_for(self, condition: Any, seconds: float = 5) -> None:
        async with asyncio.timeout(timeout(seconds)):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


class MemoryBackend:
    def __init__(self) -> None:
        self.broker = MemoryBroker()

    def make(self) -> MemoryBroker:
        return self.broker


class RedisBackend:
    def __init__(self, redis: RedisProcess) -> None:
        self.redis = redis

    def make(self) -> RedisBroker:
        return RedisBroker(self.redis.url)


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Any:
    if request.param == "redis":
        return RedisBackend(request.getfixturevalue("shared_redis"))
    return MemoryBackend()


@pytest.fixture
async def started(backend: Any) -> AsyncIterator[tuple[Broker, Inbox]]:
    broker, inbox = backend.make(), Inbox()
    await broker.start(inbox.on_message, inbox.on_resume)
    try:
        yield broker, inbox
    finally:
        await broker.stop()


async def test_a_subscribed_channel_receives_the_exact_bytes_published(
    started: tuple[Broker, Inbox],
) -> None:
    broker, inbox = started
    await broker.subscribe("c1")
    frame = b"\x85\xa2op\xa5event" + bytes(range(256))
    await broker.publish("c1", frame)
    await inbox.wait_for(lambda: inbox.frames)
    assert inbox.frames == [("c1", frame)]


async def test_frames_from_one_publisher_arrive_in_order(started: tuple[Broker, Inbox]) -> None:
    broker, inbox = started
    await broker.subscribe("c1")
    for i in range(200):
        await broker.publish("c1", b"%d" % i)
    await inbox.wait_for(lambda: len(inbox.frames) == 200)
    assert [f for _, f in inbox.frames] == [b"%d" % i for i in range(200)]


async def test_only_subscribed_channels_are_delivered(started: tuple[Broker, Inbox]) -> None:
    broker, inbox = started
    await broker.subscribe("wanted")
    await broker.publish("unwanted", b"no")
    await broker.publish("wanted", b"yes")
    # Both brokers hand one publisher's frames over in the order it published them (the
    # memory broker at once, Redis down one pub/sub connection): had "no" been
    # delivered, it would have come before "yes".
    await inbox.wait_for(lambda: ("wanted", b"yes") in inbox.frames)
    assert inbox.frames == [("wanted", b"yes")]


async def test_after_unsubscribe_nothing_arrives(started: tuple[Broker, Inbox]) -> None:
    broker, inbox = started
    await broker.subscribe("c1")
    await broker.subscribe("c2")
    await broker.unsubscribe("c1")
    await broker.publish("c1", b"gone")
    await broker.publish("c2", b"marker")  # "gone", delivered, would come before it
    await inbox.wait_for(lambda: ("c2", b"marker") in inbox.frames)
    assert inbox.frames == [("c2", b"marker")]


async def test_subscribing_again_after_unsubscribing_delivers_again(
    started: tuple[Broker, Inbox],
) -> None:
    broker, inbox = started
    await broker.subscribe("c1")
    await broker.unsubscribe("c1")
    await broker.subscribe("c1")
    await broker.publish("c1", b"back")
    await inbox.wait_for(lambda: inbox.frames)
    assert inbox.frames == [("c1", b"back")]


async def test_a_frame_published_elsewhere_after_subscribe_returns_arrives(
    backend: Any, started: tuple[Broker, Inbox]
) -> None:
    broker, inbox = started
    publisher, _ = backend.make(), Inbox()
    if publisher is not broker:
        await publisher.start(_.on_message, _.on_resume)
    try:
        for i in range(20):  # no confirmation race: each publish follows a subscribe
            await broker.subscribe(f"ch{i}")
            await publisher.publish(f"ch{i}", b"first")
        await inbox.wait_for(lambda: len(inbox.frames) == 20)
        assert sorted(inbox.frames) == sorted((f"ch{i}", b"first") for i in range(20))
    finally:
        if publisher is not broker:
            await publisher.stop()


# a networked broker: the Redis one


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[RedisProcess]:
    redis = RedisProcess(tmp_path / "redis").start()
    try:
        yield redis
    finally:
        redis.kill()


def redis_command(redis: RedisProcess, command: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", redis.port), timeout=5) as s:
        s.sendall(command + b"\r\n")
        return s.recv(4096)


async def test_redis_broker_resubscribes_and_resumes_after_its_connection_is_killed(
    private_redis: RedisProcess,
) -> None:
    broker, inbox = RedisBroker(private_redis.url), Inbox()
    await broker.start(inbox.on_message, inbox.on_resume)
    try:
        await broker.subscribe("c1")
        assert redis_command(private_redis, b"CLIENT KILL TYPE pubsub").startswith(b":1")
        await inbox.wait_for(lambda: inbox.resumes == 1)
        await broker.publish("c1", b"after")
        await inbox.wait_for(lambda: inbox.frames)
        assert inbox.frames == [("c1", b"after")]
    finally:
        await broker.stop()


async def test_redis_broker_fails_fast_while_redis_is_down_and_recovers_after(
    private_redis: RedisProcess,
) -> None:
    broker, inbox = RedisBroker(private_redis.url), Inbox()
    await broker.start(inbox.on_message, inbox.on_resume)
    try:
        await broker.subscribe("c1")
        private_redis.kill()
        # Both fail while Redis is still down: had either waited for Redis to come
        # back, it would never return, as Redis starts only after them.
        async with asyncio.timeout(timeout(30)):  # a hang's guard, not a measure
            with pytest.raises(Unavailable):
                await broker.publish("c1", b"lost")
            with pytest.raises(Unavailable):
                await broker.subscribe("c2")
        private_redis.start()  # same port, empty: pub/sub keeps no state
        await inbox.wait_for(lambda: inbox.resumes == 1, seconds=10)
        await broker.subscribe("c2")
        await broker.publish("c1", b"one")
        await broker.publish("c2", b"two")
        await inbox.wait_for(lambda: len(inbox.frames) == 2)
        assert inbox.frames == [("c1", b"one"), ("c2", b"two")]
    finally:
        await broker.stop()


async def test_redis_broker_start_raises_unavailable_without_redis() -> None:
    broker = RedisBroker(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    with pytest.raises(Unavailable):
        await broker.start(Inbox().on_message, Inbox().on_resume)
    await broker.stop()
