"""Deadlines of many sessions, checked by one periodic sweep instead of a timer each.

A ``loop.call_later`` per session and deadline costs a ``TimerHandle`` (and,
on uvloop, a libuv timer) for every connection: at 10,000 idle connections
that is 20,000 handles, re-armed at every heartbeat. A ``DeadlineWheel`` keeps
the sessions in buckets of ``tick`` seconds by deadline, and one callback a
tick takes out the buckets that are due and asks ``due(item)`` of each item.
``due`` returns None (done: the deadline was acted on, or no longer applies)
or a new deadline, to be checked again then.

An item is never checked before its deadline, and at most about one ``tick``
after it (plus however late the event loop runs the sweep). The sweep runs
only while some item waits.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger("agora.deadlines")

T = TypeVar("T")

#: The longest tick: a deadline is acted on within about this long after it passes.
MAX_TICK = 1.0
#: The shortest tick (short timeouts in tests): a sweep costs little, but not nothing.
MIN_TICK = 0.01


def tick_for(timeout: float) -> float:
    """A tick for deadlines ``timeout`` seconds away: a tenth of it, within [MIN_TICK, MAX_TICK]."""
    return min(MAX_TICK, max(MIN_TICK, timeout / 10))


class DeadlineWheel(Generic[T]):
    """Items (hashable) by deadline, in buckets of ``tick`` seconds of the loop's clock."""

    __slots__ = ("_buckets", "_due", "_handle", "_loop", "_next", "_slot_of", "tick")

    def __init__(self, tick: float, due: Callable[[T], float | None]) -> None:
        self.tick = tick
        self._due = due
        self._buckets: dict[int, set[T]] = {}
        self._slot_of: dict[T, int] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next = 0  # the first slot not swept yet

    def __len__(self) -> int:
        return len(self._slot_of)

    def add(self, item: T, deadline: float) -> None:
        """Check ``item`` once the loop's clock reaches ``deadline`` (replacing any earlier one)."""
        self.remove(item)
        slot = math.ceil(deadline / self.tick)  # swept at slot * tick >= deadline
        if self._handle is None:
            self._start(slot)
        slot = max(slot, self._next)
        bucket = self._buckets.get(slot)
        if bucket is None:
            self._buckets[slot] = bucket = set()
        bucket.add(item)
        self._slot_of[item] = slot

    def remove(self, item: T) -> None:
        """Forget ``item`` (nothing happens if it is not here)."""
        slot = self._slot_of.pop(item, None)
        if slot is not None:
            bucket = self._buckets[slot]
            bucket.discard(item)
            if not bucket:
                del self._buckets[slot]

    def _start(self, slot: int) -> None:
        loop = self._loop = asyncio.get_running_loop()
        now_slot = math.floor(loop.time() / self.tick)
        self._next = now_slot + 1
        self._handle = loop.call_at((now_slot + 1) * self.tick, self._sweep)

    def _sweep(self) -> None:
        loop = self._loop
        assert loop is not None
        current = math.floor(loop.time() / self.tick)
        buckets = self._buckets
        # Slots in between with nothing due are skipped at once (e.g. after a long stall).
        slots = range(self._next, current + 1)
        if len(buckets) < len(slots):
            due_slots = sorted(s for s in buckets if s <= current)
        else:
            due_slots = [s for s in slots if s in buckets]
        self._next = current + 1
        for slot in due_slots:
            for item in buckets.pop(slot):
                del self._slot_of[item]
                try:
                    again = self._due(item)
                except Exception:  # one item's failure must not stop everyone's deadlines
                    log.exception("a deadline check failed")
                    continue
                if again is not None:
                    self.add(item, again)
        if self._slot_of:
            self._handle = loop.call_at((current + 1) * self.tick, self._sweep)
        else:
            self._handle = None

    def stop(self) -> None:
        """Forget every item and stop sweeping."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._buckets.clear()
        self._slot_of.clear()
