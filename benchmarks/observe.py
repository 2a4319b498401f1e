"""Observe: what ``engine.observe.instrument`` costs the ingest path, with only the API in use.

Engine: the ingest benchmark's session (:mod:`benchmarks.ingest`) with
``engine.observe.instrument(session)`` attached and no OpenTelemetry SDK
configured (the API's no-op tracer and meter, as in an application that has
not set up exporting). Floor: the same session, same messages, not
instrumented, in the same run; runs alternate so drift hits both. The ratio
is instrumented over plain events per second (target: at most 5 % slower).
Beside them, the same with the SDK configured and spans dropped by a no-op
processor (what recording costs before any exporter).
"""

from __future__ import annotations

import time
from typing import Any

import anyio

import engine
import engine.observe
from benchmarks._apps import Push, provider, serving
from benchmarks._common import BOTH, Figure, ratio
from benchmarks._stream import AWAIT_CREATE, conversation, dumps
from benchmarks.ingest import get_weather

NAME = "observe"
BACKENDS = BOTH
TARGET = 0.95


async def once(texts: list[str], last_response: str, mode: str) -> float:
    """Seconds for one session to take ``texts`` in (``mode``: plain, api or sdk)."""
    app = Push(texts)
    finished = anyio.Event()
    ended = [0.0]

    def on_event(event: Any) -> None:
        if isinstance(event, engine.events.ResponseDone) and event.response_id == last_response:
            ended[0] = time.perf_counter()
            finished.set()

    async with serving(app) as connector:
        session = engine.Session(provider(), connector=connector)
        session.tool(get_weather)
        session.on()(on_event)
        if mode == "api":
            engine.observe.instrument(session)
        elif mode == "sdk":
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.trace import TracerProvider

            sdk = {"tracer_provider": TracerProvider(), "meter_provider": MeterProvider()}
            engine.observe.instrument(session, **sdk)
        async with session.connect():
            app.go.set()
            with anyio.fail_after(120):
                await finished.wait()
    return ended[0] - app.started


def run(backend: str, quick: bool) -> list[Figure]:
    """Events per second instrumented (API only) against plain, best of k, alternating."""
    turns, k = (4, 3) if quick else (40, 9)
    events = conversation(turns)
    texts = [dumps(e) for e in events]
    last = next(e["response"]["id"] for e in reversed(events) if e["type"] == "response.done")
    best: dict[str, float] = {}
    for _ in range(k):
        for mode in ("plain", "api", "sdk"):
            seconds = anyio.run(once, texts, last, mode, backend=backend)
            best[mode] = min(best.get(mode, seconds), seconds)
    n = sum(1 for t in texts if t != AWAIT_CREATE)
    api_rate, plain_rate, sdk_rate = n / best["api"], n / best["plain"], n / best["sdk"]
    r = ratio(api_rate, plain_rate)
    return [
        Figure(
            benchmark=NAME,
            backend=backend,
            metric="ingest events/s, instrumented (API only)",
            unit="events/s",
            engine=api_rate,
            floor=plain_rate,
            ratio=r,
            target=f">= {TARGET}x not instrumented",
            met=r >= TARGET,
            extra={
                "server_events": n,
                "best_of": k,
                "overhead_percent": (1 - r) * 100,
                "sdk_events_per_s": sdk_rate,
                "sdk_ratio": sdk_rate / plain_rate,
            },
        )
    ]
