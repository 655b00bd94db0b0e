"""A token bucket: ``rate`` commands per minute with bursts of up to ``burst``."""

from __future__ import annotations

import time


class TokenBucket:
    __slots__ = ("_per_second", "_stamp", "_tokens", "burst")

    def __init__(self, per_minute: int, burst: int) -> None:
        self._per_second = per_minute / 60.0
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._stamp = time.monotonic()

    def take(self) -> float:
        """Spend a token: 0.0 if there was one, else the seconds until there is."""
        if self._per_second <= 0:
            return 0.0
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self._per_second)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self._per_second
