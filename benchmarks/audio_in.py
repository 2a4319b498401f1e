"""Audio in: 20 ms PCM frames through ``send_audio`` to ``input_audio_buffer.append`` messages.

Engine: a ready session on a sink socket (:class:`~benchmarks._apps.NullTransport`)
is given the audio as fast as it takes it; timed until the socket writer has
handed over the last append (re-chunking to 60 ms, base64, JSON, the outbox and
the writer included).

Floor: the same 20 ms frames joined into the same 60 ms chunks, then ``base64``
and ``json.dumps``: the same messages, with no runtime around them.
"""

from __future__ import annotations

import base64
import json
import time

import anyio

import engine
from benchmarks._apps import NullConnector, provider
from benchmarks._common import BOTH, FRAME_BYTES, Figure, best_of, frames, pcm, ratio

NAME = "audio_in"
BACKENDS = BOTH
TARGET = 0.7
CHUNK_FRAMES = 3
"""The session's 60 ms chunk is three 20 ms frames."""


def floor(pieces: list[bytes]) -> float:
    """Seconds for the floor to turn ``pieces`` into append messages."""
    b64encode, dumps = base64.b64encode, json.dumps
    start = time.perf_counter()
    for i in range(0, len(pieces), CHUNK_FRAMES):
        chunk = b"".join(pieces[i : i + CHUNK_FRAMES])
        dumps({"type": "input_audio_buffer.append", "audio": b64encode(chunk).decode("ascii")})
    return time.perf_counter() - start


async def engine_once(pieces: list[bytes]) -> float:
    """Seconds for a session to turn ``pieces`` into append messages on the socket."""
    expected = len(pieces) // CHUNK_FRAMES
    count = [0]
    ended = [0.0]
    finished = anyio.Event()

    def on_send(text: str) -> None:
        if text.startswith('{"type":"input_audio_buffer.append"'):
            count[0] += 1
            if count[0] == expected:
                ended[0] = time.perf_counter()
                finished.set()

    session = engine.Session(provider(), connector=NullConnector(on_send))
    async with session.connect():
        start = time.perf_counter()
        for piece in pieces:
            await session.send_audio(piece)
        with anyio.fail_after(60):
            await finished.wait()
    return ended[0] - start


def run(backend: str, quick: bool) -> list[Figure]:
    """Real-time factor (audio seconds per wall second) of the engine and the floor."""
    seconds, k = (6.0, 3) if quick else (120.0, 7)
    pieces = frames(pcm(seconds))
    assert all(len(p) == FRAME_BYTES for p in pieces) and len(pieces) % CHUNK_FRAMES == 0
    floor_best, _ = best_of(k, lambda: floor(pieces))
    engine_best, _ = best_of(k, lambda: anyio.run(engine_once, pieces, backend=backend))
    engine_speed, floor_speed = seconds / engine_best, seconds / floor_best
    r = ratio(engine_speed, floor_speed)
    return [
        Figure(
            benchmark=NAME,
            backend=backend,
            metric="x real time",
            unit="audio s / s",
            engine=engine_speed,
            floor=floor_speed,
            ratio=r,
            target=f">= {TARGET}x floor",
            met=r >= TARGET,
            extra={
                "audio_seconds": seconds,
                "frames": len(pieces),
                "best_of": k,
                "engine_us_per_frame": engine_best / len(pieces) * 1e6,
                "floor_us_per_frame": floor_best / len(pieces) * 1e6,
                "engine_cpu_share_per_realtime_call": 1 / engine_speed,
            },
        )
    ]
