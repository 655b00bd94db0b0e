"""The LiveState interface.

What a LiveState promises:

- **Presence** is kept per session: ``update`` sets one session's status
  (``online`` or ``idle``; None when it closed) and returns the user's new
  status only when it changed, exactly once across every process for each
  change. A user is ``online`` while any session is, ``idle`` when all are,
  ``offline`` with none.
- Sessions of a process that dies without closing them go offline within
  the presence timeout: a surviving process notices and reports each change
  through ``on_change``, once.
- **Claims**: ``claim(key, ms)`` succeeds for one caller per key until ``ms``
  have passed (slow mode, "this node fires this timer").
- **Counters** (login throttling): ``hit(key, limit, ms)`` counts one
  attempt in a window of ``ms`` that opens at the key's first attempt; over
  ``limit`` in the window the attempt is not counted and the answer is the
  time until the window closes. ``release`` takes one back (an attempt that
  did not fail). Counts are shared by every process of a deployment.
- While a Redis-backed state cannot reach Redis, calls raise ``Unavailable``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

STATUSES = ("online", "idle", "offline")

#: Called when the sweep of a dead process changed a user's status: (user id, status).
OnPresenceChange = Callable[[str, str], Awaitable[None]]


def aggregate(statuses: Iterable[str]) -> str:
    """A user's status from their sessions' statuses."""
    found = "offline"
    for status in statuses:
        if status == "online":
            return "online"
        found = "idle"
    return found


class LiveState(Protocol):
    async def start(self, on_change: OnPresenceChange) -> None: ...

    async def stop(self) -> None: ...

    async def update(self, user_id: str, session_id: str, status: str | None) -> str | None:
        """Set a session's status (None: it closed); the user's new status if it changed."""

    async def statuses(self, user_ids: list[str]) -> dict[str, str]:
        """The status of each user who is not offline."""

    async def claim(self, key: str, ms: int) -> int:
        """0 if this caller now holds ``key`` for ``ms``; else ms until it is free."""

    async def hit(self, key: str, limit: int, ms: int) -> int:
        """Count an attempt: 0 if within ``limit`` per window of ``ms``; else ms until
        the window closes (and it was not counted)."""

    async def release(self, key: str) -> None:
        """Take back one counted attempt of ``key``."""
