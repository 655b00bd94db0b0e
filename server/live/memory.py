"""The LiveState of the embedded deployment: dictionaries in this process."""

from __future__ import annotations

import time

from server.live.base import OnPresenceChange, aggregate


class MemoryLiveState:
    def __init__(self) -> None:
        self._sessions: dict[str, dict[str, str]] = {}  # user -> session -> status
        self._claims: dict[str, float] = {}  # key -> monotonic expiry

    async def start(self, on_change: OnPresenceChange) -> None:
        """One process: no other can die under it, so ``on_change`` is never called."""

    async def stop(self) -> None:
        self._sessions.clear()
        self._claims.clear()

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
