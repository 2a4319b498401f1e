"""The instruments of :mod:`engine.observe.meters` as ``prometheus_client`` metrics.

The gateway's ``/metrics`` serves these, fed by the same :class:`CallMeters`
as the OpenTelemetry instruments, so the two cannot tell different stories.
Attributes become labels under short names (``gen_ai.tool.name`` is
``tool``, ``error.type`` is ``code``...); each metric keeps the labels listed
here (``gen_ai.system`` is left out: a gateway serves one provider).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from engine.observe.meters import LATENCY_BUCKETS

LABELS = {
    "gen_ai.tool.name": "tool",
    "engine.tool.outcome": "outcome",
    "error.type": "code",
    "engine.reconnect.kind": "kind",
    "engine.state": "state",
    "gen_ai.token.type": "type",
}
"""Attribute -> label name."""


class _Metric:
    def __init__(self, metric: Any, labels: tuple[str, ...]) -> None:
        self._metric = metric
        self._labels = labels
        self._keys = tuple(key for key, label in LABELS.items() if label in labels)

    def _child(self, attributes: Mapping[str, Any]) -> Any:
        if not self._labels:
            return self._metric
        names = {LABELS[key]: str(attributes.get(key, "")) for key in self._keys}
        return self._metric.labels(**names)

    def add(self, amount: float, attributes: Mapping[str, Any]) -> None:
        self._child(attributes).inc(amount)

    def record(self, amount: float, attributes: Mapping[str, Any]) -> None:
        self._child(attributes).observe(amount)


class PrometheusInstruments:
    """:class:`~engine.observe.meters.CallMeters`' sink in a ``prometheus_client`` registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry

        def seconds(name: str, doc: str, *labels: str) -> _Metric:
            return _Metric(Histogram(name, doc, labels, buckets=LATENCY_BUCKETS, registry=r), labels)

        def counter(name: str, doc: str, *labels: str) -> _Metric:
            return _Metric(Counter(name, doc, labels, registry=r), labels)

        self.first_audio = seconds(
            "engine_turn_first_audio_seconds",
            "End of the caller's turn to the first assistant audio received",
        )
        self.first_played = seconds(
            "engine_turn_first_played_seconds", "End of the caller's turn to the first assistant audio played"
        )
        self.turn = seconds(
            "engine_turn_total_seconds", "End of the caller's turn to the end of the response"
        )
        self.interruptions = counter("engine_interruptions", "Barge-ins")
        self.tool_calls = counter("engine_tool_calls", "Tool calls, by tool", "tool")
        self.tool_duration = seconds(
            "engine_tool_seconds", "Tool call durations, by tool and outcome", "tool", "outcome"
        )
        self.errors = counter("engine_errors", "Errors, by code", "code")
        self.reconnects = counter("engine_reconnects", "New sockets, by kind (reconnect, rollover)", "kind")
        self.sessions = _Metric(
            Gauge("engine_sessions", "Live sessions by conversation state", ["state"], registry=r), ("state",)
        )
        self.audio_dropped = counter("engine_audio_dropped", "Audio-dropped reports")
        self.tokens = _Metric(
            Histogram(
                "engine_turn_tokens",
                "Tokens per turn, by type (input, output)",
                ["type"],
                buckets=(10, 100, 1000, 10_000, 100_000),
                registry=r,
            ),
            ("type",),
        )
        self.cost = counter("engine_cost", "What the turns cost (in the price table's currency)")
