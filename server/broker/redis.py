"""The Redis Broker of the scaled deployment: Redis pub/sub between processes.

One pub/sub connection per process, read by one task. A channel is
subscribed while this process has a local subscriber to it. Frames travel as
the stored msgpack bytes. When the connection drops (Redis restarts, the
network fails, Redis cuts a slow subscriber off), the reader reconnects with
backoff, resubscribes every channel, and once Redis has confirmed them all
calls ``on_resume`` so the Hub reads what was published meanwhile from the
Store. Subscribing waits for Redis's confirmation, so a frame published after
``subscribe`` returns is never missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterable

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError

from server.broker.base import OnMessage, OnResume
from server.errors import Unavailable
from server.redis_support import connection_pool, unavailable_on_errors

log = logging.getLogger("agora.broker")

#: Prefix of the Redis pub/sub channel that carries an Agora channel's events.
PREFIX = "agora:ch:"
#: Connections for ``publish`` (the pub/sub connection is separate).
PUBLISH_CONNECTIONS = 16
#: Seconds between PINGs on the pub/sub connection ...
PING_INTERVAL = 5.0
#: ... and the silence after which it counts as dead.
DEAD_AFTER = 3 * PING_INTERVAL
#: Reconnect backoff, in seconds: first delay and ceiling.
BACKOFF_FIRST, BACKOFF_MAX = 0.05, 2.0
#: Channels per SUBSCRIBE command when resubscribing.
SUBSCRIBE_BATCH = 500


class RedisBroker:
    def __init__(self, url: str) -> None:
        self.url = url
        self._pool = connection_pool(url, max_connections=PUBLISH_CONNECTIONS)
        self._redis = Redis(connection_pool=self._pool)
        self._channels: set[str] = set()  # what this process wants to hear
        self._confirming: dict[str, deque[asyncio.Future[None]]] = {}
        self._conn: AbstractConnection | None = None  # set while connected
        self._write_lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        self._on_message: OnMessage | None = None
        self._on_resume: OnResume | None = None

    async def start(self, on_message: OnMessage, on_resume: OnResume) -> None:
        self._on_message, self._on_resume = on_message, on_resume
        first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read(first), name="agora-redis-broker")
        await first

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        await self._redis.aclose()
        await self._pool.disconnect()

    async def publish(self, channel: str, frame: bytes) -> None:
        with unavailable_on_errors():
            await self._redis.publish(PREFIX + channel, frame)

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)
        confirmed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Confirmations come back in the order the commands were sent, so each
        # waiting future must stand for a command that really went out.
        self._confirming.setdefault(channel, deque()).append(confirmed)
        sending = asyncio.ensure_future(self._send("SUBSCRIBE", PREFIX + channel))
        sending.add_done_callback(lambda done: self._unless_sent(done, channel, confirmed))
        await asyncio.shield(sending)  # a cancelled caller still lets the command finish
        await confirmed

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        if self._conn is not None:
            await self._send("UNSUBSCRIBE", PREFIX + channel)

    # the pub/sub connection

    async def _send(self, *args: str) -> None:
        conn = self._conn
        if conn is None:
            raise Unavailable("Redis is unavailable: the broker is reconnecting")
        async with self._write_lock:
            try:
                await conn.send_command(*args, check_health=False)
            except (RedisError, OSError) as exc:
                # The reader sees the same failure and reconnects.
                raise Unavailable(f"Redis is unavailable: {exc}") from exc

    async def _read(self, first: asyncio.Future[None]) -> None:
        """Keep one subscribed connection, reconnecting with backoff for as long as we run."""
        delay = BACKOFF_FIRST
        while True:
            conn = self._pool.make_connection()
            pinger: asyncio.Task[None] | None = None
            try:
                await conn.connect()
                self._conn = conn
                pinger = asyncio.create_task(self._ping())
                pending = set(self._channels)
                for batch in _batches(pending, SUBSCRIBE_BATCH):
                    await self._send("SUBSCRIBE", *(PREFIX + c for c in batch))
                if not first.done():
                    first.set_result(None)
                elif not pending:
                    self._resumed()
                delay = BACKOFF_FIRST
                while True:
                    self._handle(await conn.read_response(timeout=DEAD_AFTER), pending)
            except (RedisError, OSError, Unavailable) as exc:
                if not first.done():
                    first.set_exception(Unavailable(f"Redis is unavailable: {exc}"))
                    return
                log.warning("Redis pub/sub connection lost (%s); reconnecting in %.2fs", exc, delay)
            finally:
                self._conn = None
                if pinger is not None:
                    pinger.cancel()
                lost = Unavailable("Redis is unavailable: the connection was lost")
                for waiting in self._confirming.values():
                    for future in waiting:
                        if not future.done():
                            future.set_exception(lost)
                            future.exception()  # retrieved here; an awaiter still gets it
                self._confirming.clear()
                with contextlib.suppress(Exception):
                    await conn.disconnect()
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    def _handle(self, reply: object, pending: set[str]) -> None:
        if not isinstance(reply, list) or len(reply) < 3:
            return
        kind = reply[0]
        if kind == b"message":
            assert self._on_message is not None
            self._on_message(reply[1][len(PREFIX) :].decode(), reply[2])
        elif kind == b"subscribe":
            channel = reply[1][len(PREFIX) :].decode()
            waiting = self._confirming.get(channel)
            if waiting:
                confirmed = waiting.popleft()
                if not waiting:
                    del self._confirming[channel]
                if not confirmed.done():  # its subscriber may have been cancelled
                    confirmed.set_result(None)
            if channel in pending:
                pending.discard(channel)
                if not pending:
                    self._resumed()
        # "unsubscribe" confirmations and PONGs only prove the connection is alive

    def _unless_sent(
        self, sending: asyncio.Future[None], channel: str, confirmed: asyncio.Future[None]
    ) -> None:
        """Forget the confirmation a SUBSCRIBE that failed to go out will never get."""
        if sending.cancelled() or sending.exception() is not None:
            waiting = self._confirming.get(channel)
            if waiting is not None and confirmed in waiting:
                waiting.remove(confirmed)
                if not waiting:
                    del self._confirming[channel]

    def _resumed(self) -> None:
        log.info("Redis pub/sub resubscribed; catching up from the store")
        assert self._on_resume is not None
        self._on_resume()

    async def _ping(self) -> None:
        with contextlib.suppress(Unavailable):
            while True:
                await asyncio.sleep(PING_INTERVAL)
                await self._send("PING")


def _batches(items: Iterable[str], size: int) -> Iterable[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
