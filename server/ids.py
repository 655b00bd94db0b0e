"""Identifiers: strings of time-ordered 63-bit integers, like Discord's snowflakes.

Sorting ids as integers sorts them by creation time; 22 random low bits make
collisions between processes vanishingly unlikely without coordination. Within
one process they also keep creation order inside a millisecond (each id is above
the last), so lists ordered by time and then id keep things made together in order.
"""

from __future__ import annotations

import secrets
import time

_EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


_last_id = 0


def new_id() -> str:
    global _last_id
    _last_id = max(((now_ms() - _EPOCH_MS) << 22) | secrets.randbits(22), _last_id + 1)
    return str(_last_id)


def now_ms() -> int:
    return time.time_ns() // 1_000_000
