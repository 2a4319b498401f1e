"""The dispatcher's counters, in all and per host, and their Prometheus text (labelled with the host)."""

from __future__ import annotations

import attrs

COUNTERS = ("queued", "placed", "refused", "failed_over", "finished", "failed")


@attrs.frozen(kw_only=True)
class HostStats:
    """What one host did: calls placed on it (a resumed call counts again) and finished there."""

    host: str
    placed: int = 0
    finished: int = 0
    alive: bool = True


@attrs.define(kw_only=True)
class DispatchStats:
    """Calls queued (waited for a slot), placed, refused, failed over, finished and failed."""

    queued: int = 0
    placed: int = 0
    refused: int = 0
    failed_over: int = 0
    finished: int = 0
    failed: int = 0
    hosts: tuple[HostStats, ...] = ()

    def prometheus(self) -> str:
        """The counters in Prometheus' text format (needs ``prometheus_client``, part of the ray extra)."""
        from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

        registry = CollectorRegistry(auto_describe=True)
        calls = Counter(
            "engine_dispatch_calls", "Placed calls by what happened to them", ["event"], registry=registry
        )
        for name in COUNTERS:
            calls.labels(event=name).inc(getattr(self, name))
        per_host = Counter(
            "engine_dispatch_host_calls",
            "Calls per host by what happened",
            ["host", "event"],
            registry=registry,
        )
        alive = Gauge(
            "engine_dispatch_host_alive", "1 while the host is in the pool", ["host"], registry=registry
        )
        for host in self.hosts:
            per_host.labels(host=host.host, event="placed").inc(host.placed)
            per_host.labels(host=host.host, event="finished").inc(host.finished)
            alive.labels(host=host.host).set(1 if host.alive else 0)
        return generate_latest(registry).decode()
