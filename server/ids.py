"""Identifiers: strings of time-ordered 63-bit integers, like Discord's snowflakes.

Sorting ids as integers sorts them by creation time; 22 random low bits make
collisions between processes vanishingly unlikely without coordination.
"""

from __future__ import annotations

import secrets
import time

_EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def new_id() -> str:
    return str(((now_ms() - _EPOCH_MS) << 22) | secrets.randbits(22))


def now_ms() -> int:
    return time.time_ns() // 1_000_000
