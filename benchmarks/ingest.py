"""Ingest: server events through the full receive path, against the floor on the same messages.

Engine: an in-memory server pushes a recorded-style stream (:mod:`benchmarks._stream`)
as fast as the link takes it; the session decodes each message, feeds the core,
applies the effects and dispatches the user events to one callback. Timed from
the first push to the callback seeing the last ``ResponseDone``.

Floor: the same texts through ``json.loads``, ``base64`` decoding of the audio
and a dict lookup on ``type``: what any client must do at least.

Beside them (in ``extra``), the floor's work done by a plain reader over the
same in-memory transport: what the transport hop alone leaves of the floor.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import anyio

import engine
from benchmarks._apps import Push, provider, serving
from benchmarks._common import BOTH, KEY, MEMORY_URL, Figure, best_of, ratio
from benchmarks._stream import AWAIT_CREATE, conversation, dumps, mix

NAME = "ingest"
BACKENDS = BOTH
TARGETS = {"asyncio": 0.5, "trio": 0.35}


def floor(texts: list[str]) -> float:
    """Seconds for the floor to take ``texts`` in."""
    handlers: dict[str, int] = {"response.output_audio.delta": 1}
    b64decode = base64.b64decode
    loads = json.loads
    start = time.perf_counter()
    for text in texts:
        if text == AWAIT_CREATE:
            continue
        msg = loads(text)
        kind = msg["type"]
        if handlers.get(kind) == 1:
            b64decode(msg["delta"])
    return time.perf_counter() - start


async def get_weather(city: str) -> dict[str, Any]:
    """Current weather for a city.

    Args:
        city: the city name.
    """
    return {"city": city, "temp_c": 21}


async def transport_floor_once(texts: list[str]) -> float:
    """Seconds for a plain reader to take ``texts`` in over the in-memory transport (floor work only)."""
    app = Push(texts)
    b64decode, loads = base64.b64decode, json.loads
    async with serving(app) as connector:
        url = MEMORY_URL + "?key=bench&protocol=realtime"
        async with connector(url, {"Authorization": f"Basic {KEY}"}) as transport:
            await transport.receive()  # session.created
            await transport.send('{"type":"session.update","session":{}}')
            await transport.receive()  # session.updated
            app.go.set()
            for text in texts:
                if text == AWAIT_CREATE:
                    await transport.send('{"type":"response.create"}')
                    continue
                msg = loads(await transport.receive())
                if msg["type"] == "response.output_audio.delta":
                    b64decode(msg["delta"])
            ended = time.perf_counter()
    return ended - app.started


async def engine_once(texts: list[str], last_response: str) -> dict[str, Any]:
    """One session taking ``texts`` in; the elapsed seconds and what the callback saw."""
    app = Push(texts)
    seen = {"events": 0, "errors": 0, "audio": 0}
    finished = anyio.Event()
    ended = [0.0]

    def on_event(event: Any) -> None:
        seen["events"] += 1
        if isinstance(event, engine.events.AudioOut):
            seen["audio"] += 1
        elif isinstance(event, engine.events.Error):
            seen["errors"] += 1
        elif isinstance(event, engine.events.ResponseDone) and event.response_id == last_response:
            ended[0] = time.perf_counter()
            finished.set()

    async with serving(app) as connector:
        session = engine.Session(provider(), connector=connector)
        session.tool(get_weather)
        session.on()(on_event)
        async with session.connect():
            app.go.set()
            with anyio.fail_after(120):
                await finished.wait()
    return {"seconds": ended[0] - app.started, **seen}


def run(backend: str, quick: bool) -> list[Figure]:
    """Events per second of the engine and of the floor, best of k, on ``backend``."""
    turns, k = (4, 3) if quick else (40, 7)
    events = conversation(turns)
    texts = [dumps(e) for e in events]
    last = next(e["response"]["id"] for e in reversed(events) if e["type"] == "response.done")
    floor_best, _ = best_of(k, lambda: floor(texts))
    runs = [anyio.run(engine_once, texts, last, backend=backend) for _ in range(k)]
    hop_best = min(anyio.run(transport_floor_once, texts, backend=backend) for _ in range(k))
    engine_best = min(r["seconds"] for r in runs)
    n = sum(1 for t in texts if t != AWAIT_CREATE)
    engine_rate, floor_rate = n / engine_best, n / floor_best
    target = TARGETS[backend]
    r = ratio(engine_rate, floor_rate)
    return [
        Figure(
            benchmark=NAME,
            backend=backend,
            metric="events/s",
            unit="events/s",
            engine=engine_rate,
            floor=floor_rate,
            ratio=r,
            target=f">= {target}x floor",
            met=r >= target,
            extra={
                "server_events": n,
                "best_of": k,
                "engine_us_per_event": engine_best / n * 1e6,
                "floor_us_per_event": floor_best / n * 1e6,
                "memory_transport_floor_events_per_s": n / hop_best,
                "memory_transport_floor_ratio": floor_best / hop_best,
                "engine_vs_memory_transport_floor": hop_best / engine_best,
                "user_events_seen": runs[0]["events"],
                "audio_out_seen": runs[0]["audio"],
                "errors_seen": runs[0]["errors"],
                "mix": mix(events),
            },
        )
    ]
