"""The gateway's Prometheus metrics, in a registry of its own (never the process-global one).

One :class:`GatewayMetrics` per gateway; :meth:`GatewayMetrics.observe` is a
sync session callback, so every call's events feed it inline.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from engine.core import events as ev

CALL_STATES = ("starting", "active", "ending")
"""Live calls by state: ``starting`` (socket open, waiting for the carrier's start and the
session), ``active`` (the session is ready), ``ending`` (closing the session and the socket)."""

_LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class GatewayMetrics:
    """Counters, gauges and histograms of one gateway."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.live_calls = Gauge("engine_live_calls", "Live calls by state", ["state"], registry=r)
        for state in CALL_STATES:
            self.live_calls.labels(state=state).set(0)
        self.calls_started = Counter(
            "engine_calls_started", "Calls admitted, by carrier", ["carrier"], registry=r
        )
        self.calls_refused = Counter(
            "engine_calls_refused", "Calls refused, by reason (full, draining)", ["reason"], registry=r
        )
        self.calls_failed = Counter(
            "engine_calls_failed", "Calls that ended on a failure, by carrier", ["carrier"], registry=r
        )
        self.first_audio = Histogram(
            "engine_turn_first_audio_seconds",
            "End of the caller's turn to the first assistant audio received",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.first_played = Histogram(
            "engine_turn_first_played_seconds",
            "End of the caller's turn to the first assistant audio the carrier played",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.turn_total = Histogram(
            "engine_turn_total_seconds",
            "End of the caller's turn to the end of the response",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.interruptions = Counter("engine_interruptions", "Barge-ins", registry=r)
        self.tool_calls = Counter("engine_tool_calls", "Tool calls, by tool", ["tool"], registry=r)
        self.errors = Counter("engine_errors", "Errors, by code", ["code"], registry=r)

    def observe(self, event: object) -> None:
        """A session callback (sync, so the dispatcher runs it inline) counting what matters."""
        if isinstance(event, ev.TurnMetrics):
            for histogram, value in (
                (self.first_audio, event.time_to_first_audio),
                (self.first_played, event.time_to_first_played),
                (self.turn_total, event.total_seconds),
            ):
                if value is not None:
                    histogram.observe(value)
        elif isinstance(event, ev.Interrupted):
            self.interruptions.inc()
        elif isinstance(event, ev.ToolCall):
            self.tool_calls.labels(tool=event.name).inc()
        elif isinstance(event, ev.Error):
            self.errors.labels(code=event.code).inc()

    def error(self, code: str) -> None:
        """Count an error of the gateway's own (e.g. ``carrier_malformed``)."""
        self.errors.labels(code=code).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


OBSERVED = (ev.TurnMetrics, ev.Interrupted, ev.ToolCall, ev.Error)
"""The event types :meth:`GatewayMetrics.observe` reads (register it for these only)."""
