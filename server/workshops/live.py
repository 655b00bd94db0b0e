"""The state of live workshops on this node, and the one way to change it.

Each workshop's state is the fold (``protocol.workshop.apply``) of its
channel's events from its ``workshop.started`` on. A node keeps the fold of
each workshop it has touched and catches up from the store when the
workshop's ``seq`` shows that another node changed it.

``change`` runs a decision on the current state under this node's lock of the
channel and stores its outcome with ``Store.commit_workshop``, which refuses
it (``Stale``) if another node stored a change first: then the decision runs
again on the newer state. So every change is decided on the state it applies
to, on any number of nodes, and chat in the channel never gets in the way.

Timers and pulses run out without anyone acting: the node that set one
schedules a look at that time, and every node looks each ``SWEEP_S`` for
workshops whose ``due_at`` passed (a node that died, a restart), so each runs
out once, on whichever node stores it first.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgpack

from protocol import ErrorCode, ProtocolError
from protocol.workshop import apply
from server.errors import Unavailable
from server.ids import now_ms
from server.store import Appended
from server.store.workshops import RESET_DUE, SET_DUE, Stale, WorkshopRow, Write

if TYPE_CHECKING:
    from server.app import Agora
    from server.gateway.hub import ChannelFeed

log = logging.getLogger("agora.workshops")

#: Seconds between two looks for timers, pulses and recaps that are due.
SWEEP_S = 1.0
#: How long after its end a workshop's recap is left to the node that ended it.
RECAP_GRACE_MS = 30_000
#: Frames read from the store at once while folding.
FOLD_PAGE = 500
#: Decisions tried before a change gives up (other nodes won every time).
MAX_ATTEMPTS = 50


@dataclass(slots=True)
class Fold:
    """A workshop's state as of the channel offset ``o``, its last workshop event."""

    row: WorkshopRow
    state: dict[str, Any] | None = None
    seq: int = 0  # workshop events applied
    o: int = 0

    def apply(self, frame: dict[str, Any]) -> None:
        self.state = apply(self.state, frame)
        self.seq += 1
        self.o = frame["o"]


@dataclass(slots=True)
class Change:
    """What a decision stores: events, writes, the reply, and when to look again
    (``due_at``: at that time or earlier; with ``reset_due``, exactly then, None: never)."""

    reply: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    due_at: int | None = None
    reset_due: bool = False

    def event(self, t: str, d: dict[str, Any]) -> None:
        self.events.append((t, d))


Decide = Callable[[Fold], Awaitable[Change]]


def no_workshop() -> ProtocolError:
    return ProtocolError("no workshop is live in this channel", code=ErrorCode.CONFLICT)


class LiveWorkshops:
    """This node's folds of live workshops, by channel id."""

    def __init__(self, agora: Agora) -> None:
        self.agora = agora
        self.folds: dict[str, Fold] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        #: channel id -> when this node looks at it next (one timer per channel)
        self._looks: dict[str, tuple[int, asyncio.TimerHandle]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        #: ``(channel id) -> coroutine`` run when a workshop is due (set by ``timers``)
        self.on_due: Callable[[str], Awaitable[None]] | None = None
        #: run for an ended workshop whose recap is not written yet (set by ``recap``)
        self.on_unwritten_recap: Callable[[WorkshopRow], Awaitable[None]] | None = None
        agora.hub.watchers["workshop.started"] = self._attended

    def _attended(self, feed: ChannelFeed, started: dict[str, Any]) -> None:
        """Whoever is in the channel as a workshop starts attends it: each node counts
        its own subscribers (those who subscribe later count as they do)."""
        users = sorted(feed.users())
        if users:
            _spawn(self.agora.store.attend_all(started["d"]["workshop"]["id"], users))

    def lock(self, channel_id: str) -> asyncio.Lock:
        lock = self.locks.get(channel_id)
        if lock is None:
            lock = self.locks[channel_id] = asyncio.Lock()
        return lock

    async def current(self, channel_id: str) -> Fold | None:
        """The live workshop of the channel, folded up to at least the version in its
        ``row``, which a change is decided on (hold the lock)."""
        row = await self.agora.store.live_workshop(channel_id)
        if row is None:
            self.folds.pop(channel_id, None)
            return None
        fold = self.folds.get(channel_id)
        if fold is None or fold.row.id != row.id:
            fold = self.folds[channel_id] = Fold(row, o=row.start_o - 1)
        if fold.seq < row.seq:
            await self._read(fold, until=None)
        fold.row = row
        return fold

    async def _read(self, fold: Fold, until: int | None) -> None:
        store = self.agora.store
        while True:
            frames = await store.workshop_events(fold.row.channel_id, fold.o, until, FOLD_PAGE)
            for frame in frames:
                fold.apply(msgpack.unpackb(frame, raw=False))
            if len(frames) < FOLD_PAGE:
                return

    async def snapshot(
        self, channel_id: str, offset: int | None = None
    ) -> tuple[WorkshopRow | None, dict[str, Any] | None, int | None]:
        """The live workshop, a copy of its state, and the channel offset it is as of:
        as of ``offset`` when given (no workshop if none was live then), else the latest
        (with no workshop, the offset is None: the caller reads the head)."""
        async with self.lock(channel_id):
            fold = await self.current(channel_id)
            if fold is None or (offset is not None and fold.row.start_o > offset):
                return None, None, offset
            if offset is None or fold.o <= offset:
                return fold.row, copy.deepcopy(fold.state), fold.o if offset is None else offset
        # a change landed after ``offset`` was read: fold again, up to it
        earlier = Fold(fold.row, o=fold.row.start_o - 1)
        await self._read(earlier, until=offset)
        return fold.row, earlier.state, offset

    async def change(self, channel_id: str, decide: Decide) -> dict[str, Any]:
        """Decide on the live workshop's state and store the outcome; the reply.

        Raises ``conflict`` when no workshop is live.
        """
        async with self.lock(channel_id):
            for attempt in range(MAX_ATTEMPTS):
                if attempt:  # another node stored first: let its run of changes pass
                    await asyncio.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))
                fold = await self.current(channel_id)
                if fold is None or fold.state is None:
                    raise no_workshop()
                change = await decide(fold)
                if change.reset_due:
                    change.writes.append(Write(RESET_DUE, (change.due_at, fold.row.id)))
                elif change.due_at is not None:
                    due = (change.due_at, change.due_at, fold.row.id)
                    change.writes.append(Write(SET_DUE, due))
                if not change.events and not change.writes:
                    return change.reply
                try:
                    appended = await self.agora.store.commit_workshop(
                        fold.row.id, fold.row.version, channel_id, change.events, change.writes
                    )
                except Stale:
                    continue
                for stored in appended:
                    fold.apply(stored.event)
                await self.publish(channel_id, appended)
                if fold.state is None:  # it ended
                    self.folds.pop(channel_id, None)
                if change.due_at is not None:
                    self.look_at(channel_id, change.due_at)
                return change.reply
        raise Unavailable("the workshop changed too often to store this change")

    async def publish(self, channel_id: str, appended: list[Appended]) -> None:
        """Publish stored workshop events (see ``Agora.publish``)."""
        for stored in appended:
            await self.agora.broker.publish(channel_id, stored.frame)
            self.agora.metrics.events_published.inc()

    # running out

    def look_at(self, channel_id: str, due_at: int) -> None:
        """Look at the workshop at ``due_at`` (or at the earlier time already set)."""
        planned = self._looks.get(channel_id)
        if planned is not None:
            if planned[0] <= due_at:
                return
            planned[1].cancel()
        delay = max(0.0, (due_at - now_ms()) / 1000)
        handle = asyncio.get_running_loop().call_later(delay, self._look, channel_id)
        self._looks[channel_id] = (due_at, handle)

    def _look(self, channel_id: str) -> None:
        self._looks.pop(channel_id, None)
        _spawn(self._due(channel_id))

    async def _due(self, channel_id: str) -> None:
        if self.on_due is not None:
            await self.on_due(channel_id)

    def start(self) -> None:
        self._sweeper = asyncio.ensure_future(self._sweep())

    async def stop(self) -> None:
        for _, handle in self._looks.values():
            handle.cancel()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            try:
                now = now_ms()
                rows = await self.agora.store.due_workshops(now, now - RECAP_GRACE_MS)
            except Exception as exc:  # a store outage: look again next time
                log.warning("looking for due workshops failed: %s", exc)
                continue
            for row in rows:
                try:
                    if row.ended_ts is None:
                        await self._due(row.channel_id)
                    elif self.on_unwritten_recap is not None:
                        await self.on_unwritten_recap(row)
                except Exception as exc:  # the others still get their turn
                    log.warning("workshop %s: %s", row.id, exc)


def _spawn(coroutine: Awaitable[None]) -> None:
    task = asyncio.ensure_future(coroutine)
    task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Future[None]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        if task.exception() is not None:
            log.warning("a workshop's timer failed: %s", task.exception())
