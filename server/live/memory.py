"""The LiveState of the embedded deployment: dictionaries in this process."""

from __future__ import annotations

import time

from server.live.base import OnPresenceChange, aggregate

#: Most throttle counters kept (an address or username each): beyond, the oldest go.
MAX_COUNTERS = 100_000


class MemoryLiveState:
    def __init__(self) -> None:
        self._sessions: dict[str, dict[str, str]] = {}  # user -> session -> status
        self._claims: dict[str, float] = {}  # key -> monotonic expiry
        self._counters: dict[str, list[float]] = {}  # key -> [count, monotonic window end]

    async def start(self, on_change: OnPresenceChange) -> None:
        """One process: no other can die under it, so ``on_change`` is never called."""

    async def stop(self) -> None:
        self._sessions.clear()
        self._claims.clear()
        self._counters.clear()

    async def update(self, user_id: str, session_id: str, status: str | None) -> str | None:
        sessions = self._sessions.setdefault(user_id, {})
        before = aggregate(sessions.values())
        if status is None:
            sessions.pop(session_id, None)
        else:
            sessions[session_id] = status
        after = aggregate(sessions.values())
        if not sessions:
            del self._sessions[user_id]
        return after if after != before else None

    async def statuses(self, user_ids: list[str]) -> dict[str, str]:
        found = {}
        for user_id in user_ids:
            sessions = self._sessions.get(user_id)
            if sessions:
                found[user_id] = aggregate(sessions.values())
        return found

    async def claim(self, key: str, ms: int) -> int:
        now = time.monotonic()
        expiry = self._claims.get(key)
        if expiry is not None and expiry > now:
            return max(1, round((expiry - now) * 1000))
        if len(self._claims) > 100_000:  # bounded: drop the expired ones
            self._claims = {k: e for k, e in self._claims.items() if e > now}
        self._claims[key] = now + ms / 1000
        return 0

    async def hit(self, key: str, limit: int, ms: int) -> int:
        now = time.monotonic()
        counter = self._counters.get(key)
        if counter is None or counter[1] <= now:
            if len(self._counters) >= MAX_COUNTERS:
                self._forget_counters(now)
            self._counters[key] = [1, now + ms / 1000]
            return 0
        if counter[0] >= limit:
            return max(1, round((counter[1] - now) * 1000))
        counter[0] += 1
        return 0

    async def release(self, key: str) -> None:
        counter = self._counters.get(key)
        if counter is not None and counter[0] > 0:
            counter[0] -= 1

    def _forget_counters(self, now: float) -> None:
        """Bounded: drop the closed windows, then the oldest if still full."""
        self._counters = {k: c for k, c in self._counters.items() if c[1] > now}
        while len(self._counters) >= MAX_COUNTERS:
            del self._counters[next(iter(self._counters))]
