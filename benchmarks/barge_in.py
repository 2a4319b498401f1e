"""Barge-in reaction: ``speech_started`` at the socket reader to ``Interrupted``, and to the drop.

Each session talks to an in-memory server that loops: an audio answer streamed
in real time (60 ms deltas), a short burst of deltas sent ahead (as services do,
so audio is queued on the client), then ``input_audio_buffer.speech_started``
and the cancelled ``response.done``. Meanwhile the session streams microphone
audio in 20 ms frames in real time. Per barge-in, three clocks:

* *arrival*: the socket reader's ``receive()`` returns the ``speech_started`` text
  (a thin wrapper around the in-memory transport notes the time);
* *interrupted*: a callback for ``Interrupted`` alone runs;
* *dropped*: a "player" callback for ``AudioOut`` and ``Interrupted`` gets the
  ``Interrupted``: every ``AudioOut`` of the cut response queued before it has
  been skipped by then (the dispatcher keeps each subscriber's events in order).

Reported as p50 / p99 / max, with 1 and with many concurrent sessions. The
figure has no floor of its own: it is set beside the same distribution measured
for one session in the same run (the ratio is many / one).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio

import engine
from benchmarks._apps import drain, handshake, provider, serving
from benchmarks._common import BOTH, FRAME_BYTES, FRAME_MS, Figure, distribution_ms, mean, pcm
from benchmarks._stream import Event, audio_response, dumps
from engine.errors import ConnectionClosed
from engine.transports.base import Transport, TransportSettings
from engine.transports.memory import MemoryConnector

NAME = "barge_in"
BACKENDS = BOTH
TARGET_MS = 2.0
BURST = 5
"""Deltas the server sends ahead of real time just before the user cuts in."""
SPEECH_STARTED = '{"type":"input_audio_buffer.speech_started"'
RESPONSE_CREATED = '{"type":"response.created"'
AUDIO_DELTA = '{"type":"response.output_audio.delta"'


def cycle_texts(n: int, chunks: int) -> tuple[list[str], list[str], list[str]]:
    """The head, one delta, and the barge-in tail of cycle ``n`` (pre-encoded)."""
    rid, item = f"resp_{n}", f"item_{n}"
    events = audio_response(rid, item, 1)
    head = [dumps(e) for e in events[:4]]
    delta = [dumps(events[4])]
    cut = {"id": item, "object": "realtime.item", "type": "message", "role": "assistant",
           "status": "incomplete", "content": [{"type": "output_audio", "transcript": ""}]}  # fmt: skip
    user = f"item_u{n}"
    tail: list[Event] = [
        {"type": "input_audio_buffer.speech_started", "item_id": user, "audio_start_ms": 1000 * n},
        {"type": "response.output_item.done", "response_id": rid, "output_index": 0, "item": cut},
        {"type": "response.done", "response": {"id": rid, "object": "realtime.response",
                                               "status": "cancelled", "output": [cut],
                                               "status_details": {"type": "cancelled",
                                                                  "reason": "turn_detected"}}},
        {"type": "input_audio_buffer.speech_stopped", "item_id": user, "audio_end_ms": 1000 * n + 400},
    ]  # fmt: skip
    return head, delta * chunks, [dumps(e) for e in tail]


class Talker:
    """The in-memory server: answers in real time and is cut off, over and over."""

    def __init__(self) -> None:
        self.connections = 0

    def check_handshake(self, path: str, headers: Mapping[str, str]) -> tuple[int, str] | None:
        return None

    async def handle(self, transport: Transport, path: str, headers: Mapping[str, str]) -> None:
        rng = random.Random(self.connections)
        self.connections += 1
        try:
            await self._talk(transport, rng)
        except* ConnectionClosed:
            pass  # the call hung up

    async def _talk(self, transport: Transport, rng: random.Random) -> None:
        await handshake(transport)
        async with anyio.create_task_group() as tg:
            tg.start_soon(drain, transport)
            n = 0
            while True:
                head, deltas, tail = cycle_texts(n, rng.randint(2, 8))
                for text in head:
                    await transport.send(text)
                for text in deltas:
                    await transport.send(text)
                    await anyio.sleep(0.06)
                for text in deltas[:1] * BURST + tail:
                    await transport.send(text)
                await anyio.sleep(rng.uniform(0.05, 0.25))
                n += 1


class Probe:
    """One session's clocks: arrivals noted by the transport wrapper, reactions by callbacks."""

    def __init__(self) -> None:
        self.arrived = 0.0
        self.response: str | None = None  # the response streaming now
        self.received: dict[str | None, int] = {}  # audio deltas read off the socket, per response
        self.delivered: dict[str | None, int] = {}  # AudioOut the player got, per response
        self.to_interrupted: list[float] = []
        self.to_dropped: list[float] = []
        self.dropped: list[int] = []
        self.leaked = 0  # AudioOut of a cut response played after its speech_started arrived
        self.measuring = False

    def saw(self, text: str) -> None:
        if text.startswith(AUDIO_DELTA):
            self.received[self.response] = self.received.get(self.response, 0) + 1
        elif text.startswith(SPEECH_STARTED):
            self.arrived = time.perf_counter()
        elif text.startswith(RESPONSE_CREATED):
            self.received.pop(self.response, None)
            self.response = json.loads(text)["response"]["id"]
            self.arrived = 0.0

    def interrupted(self, event: engine.events.Interrupted) -> None:
        if self.measuring:
            self.to_interrupted.append(time.perf_counter() - self.arrived)

    def player(self, event: Any) -> None:
        rid = event.response_id
        if isinstance(event, engine.events.AudioOut):
            self.delivered[rid] = self.delivered.get(rid, 0) + 1
            if self.arrived and rid == self.response:
                self.leaked += 1
            return
        if self.measuring:
            self.to_dropped.append(time.perf_counter() - self.arrived)
            self.dropped.append(self.received.get(rid, 0) - self.delivered.pop(rid, 0))


class TimedTransport:
    """The in-memory transport with a probe on what the socket reader receives."""

    def __init__(self, inner: Transport, probe: Probe) -> None:
        self._inner = inner
        self._probe = probe

    async def send(self, text: str) -> None:
        await self._inner.send(text)

    async def receive(self) -> str:
        text = await self._inner.receive()
        self._probe.saw(text)
        return text

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        await self._inner.aclose(code, reason)


class TimedConnector:
    """Connects through a :class:`MemoryConnector`, wrapping the socket in a :class:`TimedTransport`."""

    def __init__(self, inner: MemoryConnector, probe: Probe) -> None:
        self._inner = inner
        self._probe = probe

    @asynccontextmanager
    async def __call__(
        self, url: str, headers: Mapping[str, str], settings: TransportSettings
    ) -> AsyncIterator[TimedTransport]:
        async with self._inner(url, headers, settings) as transport:
            yield TimedTransport(transport, self._probe)


async def microphone(session: engine.Session) -> None:
    """Stream 20 ms frames in real time (deadline-paced, so the rate holds under load)."""
    frame = pcm(FRAME_MS / 1000)
    assert len(frame) == FRAME_BYTES
    due = anyio.current_time()
    while True:
        await session.send_audio(frame)
        due += FRAME_MS / 1000
        await anyio.sleep(max(0.0, due - anyio.current_time()))


async def one_call(connector: MemoryConnector, probe: Probe, ready: Any, stop: anyio.Event) -> None:
    """A session that listens, speaks and gets cut off until ``stop``."""
    session = engine.Session(provider(), connector=TimedConnector(connector, probe))
    session.on(engine.events.Interrupted)(probe.interrupted)
    session.on(engine.events.AudioOut, engine.events.Interrupted)(probe.player)
    async with session.connect(), anyio.create_task_group() as tg:
        tg.start_soon(microphone, session)
        ready()
        await stop.wait()
        tg.cancel_scope.cancel()


async def measure(sessions: int, seconds: float, warmup: float) -> list[Probe]:
    """Run ``sessions`` calls for ``warmup + seconds``; the probes of the measured part."""
    probes = [Probe() for _ in range(sessions)]
    stop = anyio.Event()
    up = [0]
    all_up = anyio.Event()

    def ready() -> None:
        up[0] += 1
        if up[0] == sessions:
            all_up.set()

    async with serving(Talker()) as connector, anyio.create_task_group() as tg:
        for probe in probes:
            tg.start_soon(one_call, connector, probe, ready, stop)
        with anyio.fail_after(60):
            await all_up.wait()
        await anyio.sleep(warmup)
        for probe in probes:
            probe.measuring = True
        await anyio.sleep(seconds)
        for probe in probes:
            probe.measuring = False
        stop.set()
    return probes


def _summary(probes: list[Probe]) -> dict[str, Any]:
    to_interrupted = [s for p in probes for s in p.to_interrupted]
    to_dropped = [s for p in probes for s in p.to_dropped]
    dropped = [n for p in probes for n in p.dropped]
    return {
        "interrupted": distribution_ms(to_interrupted),
        "dropped": distribution_ms(to_dropped),
        "audio_out_dropped_per_barge_in": mean(dropped),
        "audio_out_played_after_speech_started": sum(p.leaked for p in probes),
    }


def run(backend: str, quick: bool) -> list[Figure]:
    """p50 / p99 / max of both reactions with one and with many sessions."""
    many = 10 if quick else 100
    plan = [(1, 3.0 if quick else 30.0), (many, 3.0 if quick else 20.0)]
    results = {}
    for sessions, seconds in plan:
        probes = anyio.run(measure, sessions, seconds, 0.5 if quick else 2.0, backend=backend)
        results[sessions] = _summary(probes)
    one, loaded = results[1], results[many]
    figures = []
    for what, label in (("interrupted", "Interrupted"), ("dropped", "queued AudioOut dropped")):
        p99_one, p99_many = one[what]["p99_ms"], loaded[what]["p99_ms"]
        target = what == "interrupted"
        figures.append(
            Figure(
                benchmark=NAME,
                backend=backend,
                metric=f"p99 to {label}, {many} sessions (floor: 1)",
                unit="ms",
                engine=p99_many,
                floor=p99_one,
                ratio=p99_many / p99_one if p99_one else None,
                target=f"< {TARGET_MS} ms" if target else "",
                met=(p99_many < TARGET_MS) if target else None,
                extra={
                    "floor_is": "the same with 1 session",
                    "sessions_1": one[what],
                    f"sessions_{many}": loaded[what],
                    "audio_out_dropped_per_barge_in": {
                        "1": one["audio_out_dropped_per_barge_in"],
                        str(many): loaded["audio_out_dropped_per_barge_in"],
                    },
                    "audio_out_played_after_speech_started": {
                        "1": one["audio_out_played_after_speech_started"],
                        str(many): loaded["audio_out_played_after_speech_started"],
                    },
                },
            )
        )
    return figures
