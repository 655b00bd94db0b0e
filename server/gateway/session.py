"""One client connection after the handshake: its state, limits and outbox.

A session decodes and validates each inbound frame, applies the rate limit,
routes the command to its domain handler and queues the answer. Commands are
handled one at a time (a run of ``message.send`` as one batch), so they are
answered in the order they were sent. All
writes go through ``Session.outbox``; nothing here awaits the network.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from protocol import (
    AuthCloseReason,
    CloseCode,
    Command,
    Encoding,
    ErrorCode,
    ProtocolError,
    Wire,
    decode,
    error,
    error_from,
    parse_command,
    reply,
)
from protocol.schema import MAX_SAFE_INT
from server.errors import Unavailable
from server.gateway.outbox import Outbox, OutFrame
from server.gateway.ratelimit import TokenBucket
from server.gateway.router import CommandRouter, Fatal, Outcome, Reply
from server.ids import new_id

if TYPE_CHECKING:
    from server.app import Agora
    from server.gateway.hub import ChannelFeed
    from server.store import Channel, User

log = logging.getLogger("agora.session")

#: What an ``unavailable`` error asks the client to wait before retrying, in ms.
UNAVAILABLE_RETRY_MS = 1000

router = CommandRouter()


@router.command("ping")
async def ping(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    """Heartbeat: any inbound frame counts, and a ping is the cheapest one."""
    return {}


class Session:
    """One identified (or identifying) client connection.

    Slotted, and holding nothing it could share: at 10,000 idle connections
    every attribute costs 80 KiB. Its identify and heartbeat deadlines live in
    the app's two ``DeadlineWheel``s, not in a timer of its own.
    """

    __slots__ = (
        "__weakref__",
        "_abort_timer",
        "_bucket",
        "_limited_in_a_row",
        "_loop",
        "agora",
        "busy",
        "channels",
        "draining",
        "encoding",
        "feeds",
        "followed",
        "id",
        "last_seen",
        "outbox",
        "token_id",
        "topics",
        "user",
    )

    def __init__(self, agora: Agora, encoding: Encoding) -> None:
        settings = agora.settings
        self.agora = agora
        self.id = new_id()
        self.encoding = encoding
        self.user: User | None = None
        #: the id of the token that identified this session: revoking it closes the session
        self.token_id: str | None = None
        self.outbox = Outbox(settings.outbox_limit, self.overflowed)
        #: channel id -> the feed this session is subscribed to
        self.feeds: dict[str, ChannelFeed] = {}
        #: channels this session's user may read (checked once, forgotten on leaving)
        self.channels: dict[str, Channel] = {}
        #: topics (ephemeral event streams) this session listens to
        self.topics: set[str] = set()
        #: thread id -> its community, for the followed threads whose topics it listens to
        self.followed: dict[str, str] = {}
        self.busy = False
        self.draining = False
        self._loop = asyncio.get_running_loop()
        self.last_seen = self._loop.time()
        self._bucket = TokenBucket(settings.rate_limit, settings.rate_burst)
        self._limited_in_a_row = 0
        self._abort_timer: asyncio.TimerHandle | None = None

    # output

    def send(self, frame: dict[str, Any]) -> None:
        self.outbox.push(OutFrame.of(frame, self.encoding))

    def send_reply(self, command_id: int, d: dict[str, Any]) -> None:
        """Queue a reply like any frame, unless it alone is over the outbox limit.

        Such a reply could never go out (it would close the session with 4010):
        the command gets ``too_large`` instead. What the command did stays done.
        """
        frame = OutFrame.of(reply(command_id, d), self.encoding)
        if self.outbox.fits(frame):
            self.outbox.push(frame)
            return
        self.send_error(
            ProtocolError(
                f"the reply is {frame.size} bytes, over this server's outbox_limit of"
                f" {self.outbox.limit}; ask for less (e.g. a smaller history limit)",
                code=ErrorCode.TOO_LARGE,
                command_id=command_id,
            )
        )

    def send_error(self, exc: ProtocolError) -> None:
        self.agora.metrics.errors.labels(exc.code.value).inc()
        self.send(error_from(exc))

    def close(self, code: CloseCode, reason: str = "", *, flush: bool = True) -> None:
        """Close after what is queued (``flush``) or instead of it.

        A peer that stops reading never lets the close frame out; after
        ``close_timeout_ms`` its connection is dropped.
        """
        if not self.outbox.closing:
            self.agora.metrics.closes.labels(str(int(code))).inc()
            self.outbox.close(code, reason, flush=flush)
            timeout = self.agora.settings.close_timeout_ms / 1000
            self._abort_timer = self._loop.call_later(timeout, self._abort)

    def _abort(self) -> None:
        if self.outbox.direct is not None:
            log.info("session %s did not take its close frame; dropping it", self.id)
            self.outbox.direct.abort()

    def overflowed(self) -> None:
        """The outbox went over its limit: cut this session loose (4010).

        The hub is iterating over outboxes when this runs, so leaving the
        feeds waits for the next turn of the loop.
        """
        self.close(CloseCode.TOO_SLOW, "outbound buffer overflowed", flush=False)
        self._loop.call_soon(self.leave_all)

    def unsubscribe(self, channel_id: str) -> None:
        feed = self.feeds.pop(channel_id, None)
        if feed is not None:
            feed.leave(self.outbox)

    async def listen(self, topic: str) -> None:
        if topic not in self.topics and not self.outbox.closing:
            self.topics.add(topic)
            await self.agora.hub.listen(topic, self)

    def unlisten(self, topic: str) -> None:
        if topic in self.topics:
            self.topics.discard(topic)
            self.agora.hub.unlisten(topic, self)

    def leave_all(self) -> None:
        for channel_id in list(self.feeds):
            self.unsubscribe(channel_id)
        for topic in list(self.topics):
            self.unlisten(topic)

    # input

    async def receive(self, data: Wire) -> None:
        """Handle one inbound WebSocket message."""
        await self.receive_many((data,))

    async def receive_many(self, datas: Sequence[Wire]) -> None:
        """Handle inbound WebSocket messages that arrived together, in order.

        A run of consecutive commands that the router carries out as a batch
        (``message.send``) goes to its batch handler at once: one store
        transaction and one turn of fan-out for the whole run, so that each
        subscriber gets the run in one write. Every command is still checked,
        rate-limited and answered on its own, in the order it was sent.
        """
        self.last_seen = self._loop.time()
        self.agora.metrics.frames_in.inc(len(datas))
        batched = self.agora.router.batch_handlers
        run: list[Command] = []
        for data in datas:
            if self.outbox.closing:
                return
            parsed = self._parse(data)
            if run and not (isinstance(parsed, Command) and parsed.op == run[0].op):
                await self._carry_out_batch(run)
                run = []
                if self.outbox.closing:
                    return
            wait = self._bucket.take()
            if wait == 0.0 and isinstance(parsed, Command) and parsed.op in batched:
                self._limited_in_a_row = 0
                run.append(parsed)
                continue
            if run:  # refused: the run before it is answered first
                await self._carry_out_batch(run)
                run = []
            if isinstance(parsed, Command):
                if self._allow(parsed.id, wait):
                    await self._carry_out(parsed)
            elif self._allow(parsed.command_id, wait):
                self.send_error(parsed)
        if run and not self.outbox.closing:
            await self._carry_out_batch(run)

    def _parse(self, data: Wire) -> Command | ProtocolError:
        try:
            frame = decode(data, self.encoding, max_size=self.agora.settings.max_frame)
            if self.user is None and frame.get("op") != "identify":
                raise ProtocolError(
                    "identify first", code=ErrorCode.UNAUTHORIZED, command_id=_usable_id(frame)
                )
            return parse_command(frame)
        except ProtocolError as exc:
            return exc

    async def _carry_out(self, command: Command) -> None:
        self.busy = True
        try:
            try:
                outcome: Outcome = await self.agora.router.handlers[command.op](self, command.d)
            except Exception as exc:
                outcome = exc
            self._answer(command, outcome)
        finally:
            self._carried_out()

    async def _carry_out_batch(self, commands: list[Command]) -> None:
        if len(commands) == 1:
            await self._carry_out(commands[0])
            return
        self.busy = True
        self.agora.metrics.batched_commands.inc(len(commands))
        try:
            handler = self.agora.router.batch_handlers[commands[0].op]
            try:
                outcomes = await handler(self, [command.d for command in commands])
            except Exception as exc:
                outcomes = [exc] * len(commands)
            for command, outcome in zip(commands, outcomes, strict=True):
                self._answer(command, outcome)
        finally:
            self._carried_out()

    def _answer(self, command: Command, outcome: Outcome) -> None:
        if isinstance(outcome, Reply):
            self.send_reply(command.id, outcome.d)
            outcome.then()
        elif isinstance(outcome, dict):
            self.send_reply(command.id, outcome)
        elif isinstance(outcome, ProtocolError):
            outcome.command_id = command.id
            self.send_error(outcome)
            if isinstance(outcome, Fatal):
                self.close(outcome.close_code, outcome.message)
        elif isinstance(outcome, Unavailable):
            log.warning("command %s failed: %s", command.op, outcome)
            self.send_error(
                ProtocolError(
                    "the server's storage is unavailable; retry shortly",
                    code=ErrorCode.UNAVAILABLE,
                    command_id=command.id,
                    retry_after_ms=UNAVAILABLE_RETRY_MS,
                )
            )
        else:
            log.error("command %s failed", command.op, exc_info=outcome)
            self.send_error(
                ProtocolError(
                    "the server failed to handle this command",
                    code=ErrorCode.INTERNAL,
                    command_id=command.id,
                )
            )

    def _carried_out(self) -> None:
        self.busy = False
        self.last_seen = self._loop.time()  # the client waited on this command
        if self.draining:
            self.close(CloseCode.GOING_AWAY, "server shutting down")

    def _allow(self, command_id: int | None, wait: float) -> bool:
        """Apply the rate limit (``wait``: the bucket's answer); flooding past it closes the
        session (4008)."""
        if wait == 0.0:
            self._limited_in_a_row = 0
            return True
        self._limited_in_a_row += 1
        if self._limited_in_a_row > self.agora.settings.flood_limit:
            self.close(CloseCode.FLOODING, "flooding after rate_limited errors")
            return False
        retry_after_ms = max(1, round(wait * 1000))
        self.agora.metrics.errors.labels(ErrorCode.RATE_LIMITED.value).inc()
        self.send(
            error(
                ErrorCode.RATE_LIMITED,
                f"too many commands; retry in {retry_after_ms} ms",
                command_id=command_id,
                retry_after_ms=retry_after_ms,
            )
        )
        return False

    # deadlines

    def start_timers(self) -> None:
        """Enter the identify and heartbeat deadlines (see ``Agora.deadlines``)."""
        now = self._loop.time()
        settings = self.agora.settings
        self.agora.identify_deadlines.add(self, now + settings.identify_timeout_ms / 1000)
        self.agora.heartbeat_deadlines.add(self, now + heartbeat_window(settings.heartbeat_ms))

    def stop_timers(self) -> None:
        self.agora.identify_deadlines.remove(self)
        self.agora.heartbeat_deadlines.remove(self)
        if self._abort_timer is not None:
            self._abort_timer.cancel()

    def check_identified(self) -> None:
        """The identify deadline has passed: close with 4001 unless identified."""
        if self.user is None:
            self.close(CloseCode.NOT_AUTHENTICATED, AuthCloseReason.NOT_IDENTIFIED)

    def check_heartbeat(self) -> float | None:
        """Close with 4009 if silent for the heartbeat window; else the next deadline."""
        if self.outbox.closing:
            return None
        deadline = self.last_seen + heartbeat_window(self.agora.settings.heartbeat_ms)
        if self._loop.time() >= deadline:
            self.close(CloseCode.HEARTBEAT_TIMEOUT, "no heartbeat", flush=False)
            return None
        return deadline

    def drain(self) -> None:
        """Close with 1001 once the command in flight (if any) is answered."""
        self.draining = True
        if not self.busy:
            self.close(CloseCode.GOING_AWAY, "server shutting down")


def heartbeat_window(heartbeat_ms: int) -> float:
    """Seconds of silence after which a session is closed with 4009: 1.5 heartbeats."""
    return 1.5 * heartbeat_ms / 1000


def _usable_id(frame: dict[str, Any]) -> int | None:
    """The frame's ``id`` if an error may echo it."""
    value = frame.get("id")
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SAFE_INT:
        return value
    return None
