"""Prometheus metrics of one server, in a registry of its own.

A registry per app (not the global default) lets tests run several servers
in one process. Hot paths count in batches: the hub once per event, each
outbox in a plain integer summed when scraped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from server.collector import CollectorPauses
from server.gateway.outbox import RUNS

if TYPE_CHECKING:
    from server.gateway.outbox import Outbox

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.connections = Gauge(
            "agora_connections", "Open WebSocket connections", registry=registry
        )
        self.sessions = Gauge("agora_sessions", "Identified sessions", registry=registry)
        self.direct_writes = Gauge(
            "agora_direct_write_connections",
            "Connections written to directly (the rest go through ASGI send)",
            registry=registry,
        )
        self.frames_in = Counter(
            "agora_frames_in", "Frames received from clients", registry=registry
        )
        self.batched_commands = Counter(
            "agora_batched_commands",
            "Commands carried out as one batch with the same command that arrived with them",
            registry=registry,
        )
        #: frames written by sessions that have ended; live ones are summed at scrape time
        self.frames_out_of_closed = 0
        self.open_outboxes: Callable[[], Iterable[Outbox]] = tuple
        registry.register(_FramesOut(self))
        registry.register(_OutboxBytes(self))
        self.events_published = Counter(
            "agora_events_published", "Durable events stored and published", registry=registry
        )
        self.deliveries = Counter(
            "agora_event_deliveries", "Events pushed to session outboxes", registry=registry
        )
        self.fanout_seconds = Histogram(
            "agora_fanout_seconds",
            "Time to push one event to every local subscriber's outbox",
            buckets=(1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5),
            registry=registry,
        )
        self.errors = Counter(
            "agora_errors", "Error frames sent, by code", ["code"], registry=registry
        )
        self.closes = Counter(
            "agora_closes",
            "Connections closed by the server, by close code",
            ["code"],
            registry=registry,
        )
        self.gaps_repaired = Counter(
            "agora_gaps_repaired", "Out-of-order events repaired from the store", registry=registry
        )
        self.broker_resumes = Counter(
            "agora_broker_resumes",
            "Times the broker reconnected and every feed caught up from the store",
            registry=registry,
        )
        #: ``agora_gc_pause_seconds`` and ``agora_gc_longest_pause_seconds`` (see server.collector)
        self.gc_pauses = CollectorPauses(registry)

    def observe_fanout(self, recipients: int, seconds: float) -> None:
        self.deliveries.inc(recipients)
        self.fanout_seconds.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _FramesOut(Collector):
    """``agora_frames_out_total``, counted by each outbox as a plain integer, and
    ``agora_socket_writes_total``, counted by the gateway's ``RunWriter``.

    A per-frame Counter.inc (a lock) on the fan-out path would cost more than
    the write it counts; summing the outboxes when scraped costs nothing there.
    """

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[CounterMetricFamily]:
        total = self.metrics.frames_out_of_closed + sum(
            o.sent for o in self.metrics.open_outboxes()
        )
        yield CounterMetricFamily("agora_frames_out", "Frames sent to clients", value=total)
        yield CounterMetricFamily(
            "agora_socket_writes",
            "Writes of frames to client sockets (frames of one turn share a write)",
            value=RUNS.writes,
        )


class _OutboxBytes(Collector):
    """``agora_outbox_bytes``: what open sessions hold to write, summed when scraped.

    Their outboxes and their transports' write buffers: every byte a session
    holds counts against its ``outbox_limit``.

    Frames wait in an outbox only while a client reads slower than they come;
    a replay pauses while its session's outbox is over half its limit.
    """

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        total = sum(o.pending() for o in self.metrics.open_outboxes())
        yield GaugeMetricFamily(
            "agora_outbox_bytes", "Bytes queued in session outboxes", value=total
        )
