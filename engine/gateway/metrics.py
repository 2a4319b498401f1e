"""The gateway's Prometheus metrics, in a registry of its own (never the process-global one).

One :class:`GatewayMetrics` per gateway. The calls' own metrics are
:mod:`engine.observe`'s (the instruments of :mod:`engine.observe.meters` as
Prometheus metrics, :mod:`engine.observe.prometheus`), fed by a sync session
callback per call (:meth:`GatewayMetrics.for_call`), inline; the gateway adds
its own (live calls, admissions, refusals, failures).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric

from engine.observe import OBSERVED as OBSERVED  # the events for_call's callback reads
from engine.observe.meters import CallMeters
from engine.observe.prometheus import PrometheusInstruments

CALL_STATES = ("starting", "active", "ending")
"""Live calls by state: ``starting`` (socket open, waiting for the carrier's start and the
session), ``active`` (the session is ready), ``ending`` (closing the session and the socket)."""

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
        # What the sessions report: engine.observe's instruments, fed by its CallMeters (one source).
        self.sessions = PrometheusInstruments(r)
        self.const_labels: dict[str, str] = {}
        """Labels added to every sample rendered (``{"replica": ...}`` on a Ray Serve replica)."""

    def for_call(self) -> Callable[[object], None]:
        """A sync session callback for one call (register it for :data:`OBSERVED`)."""
        meters = CallMeters(self.sessions, {})
        return lambda event: meters.handle(event, time.time_ns())

    def error(self, code: str) -> None:
        """Count an error of the gateway's own (e.g. ``carrier_malformed``)."""
        self.sessions.errors.add(1, {"error.type": code})

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (with :attr:`const_labels` on each sample)."""
        if not self.const_labels:
            return generate_latest(self.registry)
        return generate_latest(_Labelled(self.registry, self.const_labels))


class _Labelled:
    """A registry's metrics with constant labels added to every sample (what ``generate_latest`` reads)."""

    def __init__(self, registry: CollectorRegistry, labels: dict[str, str]) -> None:
        self.registry = registry
        self.labels = labels

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            family.samples = [s._replace(labels={**self.labels, **s.labels}) for s in family.samples]
            yield family
