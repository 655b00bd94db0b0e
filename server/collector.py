"""The cyclic garbage collector: the start-up heap frozen, thresholds set, pauses measured.

Every object the collector tracks is scanned by each full (generation 2)
collection, and the event loop stands still meanwhile: at 10,000 connections
a full collection scanned about 1.5 million objects, and every delivery in
flight waited for it. Two things shrink that pause and make it rarer:

- ``freeze_startup_heap``: once the app has started, everything alive then
  (modules, the app, its caches: hundreds of thousands of objects that live
  as long as the process) is moved to the permanent generation, which no
  collection scans (``gc.freeze``). Garbage among them would never be freed,
  so the heap is collected first.
- ``set_full_threshold``: a full collection is considered after this many
  collections of the middle generation (Python's default is 10, one per
  70,000 net allocations: while 10,000 clients connect, nine full
  collections of up to 0.4 s ran). Python still runs one only once the
  long-lived heap has grown by a quarter since the last. The young
  generations keep Python's thresholds: raising the first (to 10,000) made
  fewer young collections, but each of up to 137 ms while clients connected,
  against 17 ms.

``CollectorPauses`` measures each collection through ``gc.callbacks``, into
the ``agora_gc_pause_seconds`` histogram by generation and the longest pause
seen (``agora_gc_longest_pause_seconds``).
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram

log = logging.getLogger("agora.collector")

#: Bucket bounds of the pause histogram, in seconds.
PAUSE_BUCKETS = (1e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.5, 1.0)


def freeze_startup_heap() -> int:
    """Collect, then move every object alive now out of the collector's way; their count."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("froze the start-up heap (%d objects) out of the garbage collector's scans", frozen)
    return frozen


def set_full_threshold(threshold: int) -> None:
    """Consider a full collection after ``threshold`` middle ones (0: Python's default)."""
    if threshold > 0:
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, threshold)


class CollectorPauses:
    """Times every garbage collection of this process (``start`` to ``stop``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        histogram = Histogram(
            "agora_gc_pause_seconds",
            "Time the garbage collector held the event loop, per collection, by generation",
            ["generation"],
            buckets=PAUSE_BUCKETS,
            registry=registry,
        )
        longest = Gauge(
            "agora_gc_longest_pause_seconds",
            "The longest garbage collection since the server started, by generation",
            ["generation"],
            registry=registry,
        )
        generations = range(3)
        self._histograms = [histogram.labels(str(g)) for g in generations]
        self._longest_gauges = [longest.labels(str(g)) for g in generations]
        self._longest = [0.0, 0.0, 0.0]
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        generation = info["generation"]
        self._histograms[generation].observe(pause)
        if pause > self._longest[generation]:
            self._longest[generation] = pause
            self._longest_gauges[generation].set(pause)

    def start(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def stop(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
