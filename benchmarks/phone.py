"""Phone calls through the gateway: the bridge hop's CPU and latency per frame, and calls per core.

This process serves the gateway (hypercorn, under the backend measured) on
127.0.0.1; the local realtime server runs in its own process (``pace=1``, as in
the calls benchmark) and so do the carriers (:mod:`benchmarks._carriers`: many
simulated Twilio calls, μ-law 8 kHz, a 20 ms ``media`` frame every 20 ms, marks
echoed once played). Only this process's CPU is counted: both legs of every
call, the carrier's WebSocket (hypercorn) and the realtime one (the engine's
transports), and the bridge between them.

The floor is a bare relay on the same sockets and libraries (the same ASGI
server, the same Starlette socket adapter, the same realtime transports, the
same handshake): per carrier ``media`` frame it does ``json.loads``, takes
the payload and sends ``'{"type":"input_audio_buffer.append","audio":"' +
payload + '"}'``; per audio delta it does ``json.loads``, takes the delta and
sends the carrier's ``media`` frame. No state machine, no marks, no session.

Figures:

* **CPU per frame, each direction**: uplink (carrier ``media`` in to
  ``input_audio_buffer.append`` out; the carriers send, nobody speaks) and
  downlink (audio delta in to carrier ``media`` out, with its mark; the
  carriers are silent, the assistant answers without a pause). This process's
  CPU over the window divided by the frames forwarded in that direction, the
  best of interleaved runs. The downlink is also measured with a mark every
  third chunk instead of every chunk: each mark is one more WebSocket frame
  out and its echo one more in, the price of exact truncation.
* **Added latency per frame** at 100 calls, both directions at once: from the
  carrier socket's ``receive`` returning a ``media`` frame to the realtime
  socket's ``send`` being called with the append that carries it (for the
  engine, which sends 60 ms appends, the frame that completes one), and from
  the realtime socket's ``receive`` returning a delta to the carrier socket's
  ``send`` of its ``media`` frame. Time inside this process only.
* **Phone calls per core**: both directions at once, ramped (25, 50, 100,
  ...) while sustained (no call failed, the carriers kept their 20 ms pace
  within 50 ms at p99, the hop's p99 under 50 ms, the local server not
  saturated); the inverse of this process's CPU seconds per call-second at
  the largest sustained step.
"""

from __future__ import annotations

import binascii
import contextlib
import contextvars
import gc
import json
import logging
import math
import os
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import Process

import engine
from benchmarks._common import BOTH, KEY, Figure, distribution_ms, ratio
from benchmarks._server import Server, local_server
from engine.gateway import app as gateway_app
from engine.gateway.agent import Agent
from engine.gateway.app import BridgeOptions, Gateway
from engine.gateway.bridge import CarrierGone
from engine.gateway.serve import listening_socket, serve_gateway
from engine.transports import connect
from engine.transports.base import Transport, TransportSettings

NAME = "phone"
BACKENDS = BOTH
TARGET_CPU_RATIO = 1.3
TARGET_LATENCY_MS = 1.0
TARGET_CALLS = 150
LATENCY_CALLS = 100
LAG_LIMIT_MS = 50.0
SERVER_BUSY = 0.92
TEXT = (
    "Please read me the complete weather report for every city along the coast, from the north to "
    "the south, with the winds, the tides, the temperatures and the chance of rain for each of them."
)
PCMU = engine.AudioFormat(type="audio/pcmu", rate=8000)
CARRIER_MEDIA = '{"event":"media"'
PAYLOAD = '"payload":"'
APPEND = '{"type":"input_audio_buffer.append","audio":"'
AUDIO_DELTA = '{"type":"response.output_audio.delta"'
RESPONSE_DONE = '{"type":"response.done"'
SESSION_UPDATED = '{"type":"session.updated"'
FRAME_BYTES = 160
"""20 ms of μ-law."""


# ---------------------------------------------------------------------- probes


class Stats:
    """What one run records: frames forwarded and hop latencies while measuring."""

    def __init__(self) -> None:
        self.measuring = False
        self.up_frames = 0
        self.down_frames = 0
        self.up_latency: list[float] = []
        self.down_latency: list[float] = []
        self.clears = 0
        self.probes: list[Probe] = []


STATS = Stats()
PROBE: contextvars.ContextVar[Probe] = contextvars.ContextVar("probe")


class Probe:
    """One call's frames in flight: when each was received, until it is sent on.

    Caller frames are recognised by their first 6 bytes, which the carriers make
    unique per call (:func:`benchmarks._carriers.payload`): a frame the engine
    holds or drops cannot shift the pairing. Assistant deltas are all alike and
    none is dropped without a barge-in, so they pair in order.
    """

    def __init__(self) -> None:
        self.up: dict[str, float] = {}
        self.down: deque[float] = deque()


class TimedSocket(gateway_app._StarletteSocket):
    """The gateway's carrier socket adapter, noting when media frames arrive and leave."""

    def __init__(self, websocket: Any) -> None:
        super().__init__(websocket)
        self.probe = Probe()
        STATS.probes.append(self.probe)
        PROBE.set(self.probe)  # the call's realtime socket is opened in this task or its children

    async def receive(self) -> str | bytes:
        frame = await super().receive()
        if isinstance(frame, str) and frame.startswith(CARRIER_MEDIA):
            at = frame.find(PAYLOAD) + len(PAYLOAD)
            self.probe.up[frame[at : at + 8]] = time.perf_counter()
        return frame

    async def send(self, text: str) -> None:
        if text.startswith('{"event":"clear"'):
            STATS.clears += 1
        if text.startswith(CARRIER_MEDIA) and self.probe.down:
            received = self.probe.down.popleft()
            if STATS.measuring:
                STATS.down_latency.append(time.perf_counter() - received)
                STATS.down_frames += 1
        await super().send(text)


class TimedTransport:
    """A realtime transport noting when appends leave and audio deltas arrive."""

    def __init__(self, inner: Transport, probe: Probe) -> None:
        self.inner = inner
        self.probe = probe

    async def send(self, text: str) -> None:
        if text.startswith(APPEND):
            now = time.perf_counter()
            audio = binascii.a2b_base64(text[len(APPEND) : -2])
            received = [
                self.probe.up.pop(binascii.b2a_base64(audio[at : at + 6], newline=False).decode(), None)
                for at in range(0, len(audio), FRAME_BYTES)
            ]
            if STATS.measuring and received[-1] is not None:  # the frame that completed the append
                STATS.up_latency.append(now - received[-1])
                STATS.up_frames += len(received)
        await self.inner.send(text)

    async def receive(self) -> str:
        text = await self.inner.receive()
        if text.startswith(AUDIO_DELTA):
            self.probe.down.append(time.perf_counter())
        return text

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        await self.inner.aclose(code, reason)


@asynccontextmanager
async def timed_connect(
    url: str, headers: Mapping[str, str], settings: TransportSettings
) -> AsyncIterator[TimedTransport]:
    """The engine's own connector (by backend), wrapped in :class:`TimedTransport`."""
    async with connect(url, headers, settings) as transport:
        yield TimedTransport(transport, PROBE.get())


# ---------------------------------------------------------------------- the engine and the floor


class AskingAgent(Agent):
    """An agent whose calls ask for a long answer when ready and again after each one."""

    def __init__(self, ask: bool) -> None:
        super().__init__(engine.SessionConfig(instructions="You read weather reports."))
        self.ask = ask

    def session(self, config: Any = None, *, provider: Any = None, connector: Any = None) -> Any:
        session = super().session(config, provider=provider, connector=connector)
        if self.ask:

            async def again(_: object) -> None:
                with contextlib.suppress(engine.errors.SessionClosed):  # the call is ending
                    await session.send_text(TEXT)

            session.on(engine.events.SessionReady, engine.events.ResponseDone)(again)
        return session


def _session_update() -> str:
    config = engine.Inworld(api_key=KEY).prepare(engine.SessionConfig(input_format=PCMU, output_format=PCMU))
    return json.dumps({"type": "session.update", "session": config.to_wire()})


SESSION_UPDATE = _session_update()
ASK = [
    json.dumps(
        {
            "type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": TEXT}]},
        }
    ),
    json.dumps({"type": "response.create"}),
]


class Relay:
    """The floor: an ASGI app relaying payloads between the carrier and the realtime socket."""

    def __init__(self, url: str, ask: bool) -> None:
        from starlette.applications import Starlette
        from starlette.routing import WebSocketRoute

        self.url = url
        self.ask = ask
        self.app = Starlette(routes=[WebSocketRoute("/twilio/stream", self._stream)])

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    async def shutdown(self, grace: float) -> None:
        """Nothing to drain: the carriers hang up first."""

    async def _stream(self, websocket: Any) -> None:
        await websocket.accept()
        carrier = TimedSocket(websocket)
        try:
            while True:
                frame = json.loads(await carrier.receive())
                if frame["event"] == "start":
                    sid = frame["start"]["streamSid"]
                    break
            media = '{"event":"media","streamSid":' + json.dumps(sid) + ',"media":{"payload":"'
            headers = {"Authorization": f"Basic {KEY}"}
            async with timed_connect(self.url, headers, TransportSettings()) as realtime:
                await realtime.send(SESSION_UPDATE)
                while not (await realtime.receive()).startswith(SESSION_UPDATED):
                    pass
                lock = anyio.Lock()  # one writer at a time on the realtime socket
                if self.ask:
                    for text in ASK:
                        await realtime.send(text)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._down, realtime, carrier, media, lock)
                    while True:
                        text = await carrier.receive()
                        frame = json.loads(text)
                        event = frame["event"]
                        if event == "media":
                            async with lock:
                                await realtime.send(APPEND + frame["media"]["payload"] + '"}')
                        elif event == "stop":
                            break
                    tg.cancel_scope.cancel()
        except (CarrierGone, engine.errors.ConnectionClosed):
            pass
        finally:
            await carrier.aclose()

    async def _down(self, realtime: TimedTransport, carrier: Any, media: str, lock: anyio.Lock) -> None:
        while True:
            text = await realtime.receive()
            if text.startswith(AUDIO_DELTA):
                await carrier.send(media + json.loads(text)["delta"] + '"}}')
            elif self.ask and text.startswith(RESPONSE_DONE):
                async with lock:
                    for ask in ASK:
                        await realtime.send(ask)


# ---------------------------------------------------------------------- one run


async def _line(process: Process, buffer: bytearray) -> str:
    assert process.stdout is not None
    while b"\n" not in buffer:
        chunk = await process.stdout.receive()
        buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return line.decode()


async def run_once(
    kind: str,
    server: Server,
    calls: int,
    *,
    media: bool,
    ask: bool,
    warmup: float,
    seconds: float,
    profile: Any = None,
    bridge: BridgeOptions | None = None,
) -> dict[str, Any]:
    """Serve ``calls`` carrier calls through the engine's gateway or the relay; measure a window."""
    global STATS
    STATS = Stats()
    if kind == "engine":
        app: Any = Gateway(
            AskingAgent(ask),
            max_calls=calls + 10,
            provider=engine.Inworld(api_key=KEY, url=server.url()),
            connector=timed_connect,
            bridge=bridge or BridgeOptions(),
        )
    else:
        app = Relay(server.url(), ask)
    gateway_app._StarletteSocket = TimedSocket  # type: ignore[misc]  # the gateway's adapter, timed
    sock = listening_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    stop = anyio.Event()
    command = [
        sys.executable,
        "-m",
        "benchmarks._carriers",
        f"ws://127.0.0.1:{port}/twilio/stream",
        str(calls),
    ]
    if not media:
        command.append("--no-media")
    with sock:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: serve_gateway(app, sock, stop=stop, drain_timeout=2.0))
            async with await anyio.open_process(command, stderr=None) as carriers:
                buffer = bytearray()
                with anyio.fail_after(120):
                    while await _line(carriers, buffer) != "READY":
                        pass
                await anyio.sleep(warmup)
                cpu, server_cpu, start = time.process_time(), server.cpu_seconds(), time.perf_counter()
                STATS.measuring = True
                if profile is not None:  # a cProfile.Profile, to see where the window's time goes
                    profile.enable()
                await anyio.sleep(seconds)
                if profile is not None:
                    profile.disable()
                STATS.measuring = False
                cpu = time.process_time() - cpu
                server_cpu = server.cpu_seconds() - server_cpu
                wall = time.perf_counter() - start
                assert carriers.stdin is not None
                await carriers.stdin.send(b"stop\n")
                with anyio.fail_after(60):
                    peer = json.loads(await _line(carriers, buffer))
            stop.set()
    up, down = distribution_ms(STATS.up_latency), distribution_ms(STATS.down_latency)
    return {
        "kind": kind,
        "calls": calls,
        "cpu_share": cpu / wall,
        "server_cpu_share": server_cpu / wall,
        "cpu_s_per_call_s": cpu / (calls * wall),
        "up_frames": STATS.up_frames,
        "down_frames": STATS.down_frames,
        "up_us_per_frame": cpu / STATS.up_frames * 1e6 if STATS.up_frames else math.nan,
        "down_us_per_frame": cpu / STATS.down_frames * 1e6 if STATS.down_frames else math.nan,
        "up_p99_ms": up["p99_ms"],
        "up_p50_ms": up["p50_ms"],
        "down_p99_ms": down["p99_ms"],
        "down_p50_ms": down["p50_ms"],
        "carriers": peer,
        "clears": STATS.clears,
        "deltas_held_at_end": sorted(len(p.down) for p in STATS.probes)[-5:],
        "loadavg_1min": os.getloadavg()[0],
    }


def sustained(result: dict[str, Any]) -> bool:
    """No call failed, the carriers kept pace, and the hop kept up (p99 under the lag limit)."""
    peer = result["carriers"]
    return (
        peer["failed"] == 0
        and peer["started"] == result["calls"]
        and peer["send_lag_p99_ms"] < LAG_LIMIT_MS
        and result["up_p99_ms"] < LAG_LIMIT_MS
        and result["down_p99_ms"] < LAG_LIMIT_MS
    )


def one(kind: str, backend: str, server: Server, calls: int, **options: Any) -> dict[str, Any]:
    """One run in a fresh event loop; logged to stderr."""
    gc.collect()
    result = anyio.run(lambda: run_once(kind, server, calls, **options), backend=backend)
    shown = {k: v for k, v in result.items() if k != "carriers"}
    print(f"phone {kind} {backend}: {shown} carriers={result['carriers']}", file=sys.stderr)
    return result


def ramp(
    kind: str, backend: str, server: Server, steps: list[int], window: dict[str, Any]
) -> list[dict[str, Any]]:
    """Both directions at once, more and more calls while sustained (a failed step is tried once more).

    The ramp goes on past a step that is not sustained until :data:`LATENCY_CALLS`, whose
    latency is a figure of its own.
    """
    results = []
    for calls in steps:
        attempts = []
        for _ in range(2):
            attempts.append(one(kind, backend, server, calls, media=True, ask=True, **window))
            if sustained(attempts[-1]) or attempts[-1]["server_cpu_share"] > SERVER_BUSY:
                break
        best = min(attempts, key=lambda r: (not sustained(r), r["up_p99_ms"]))
        results.append({**best, "sustained": sustained(best), "attempts": len(attempts)})
        if best["server_cpu_share"] > SERVER_BUSY:
            break
        if not results[-1]["sustained"] and calls >= LATENCY_CALLS:
            break
    return results


def _at(results: list[dict[str, Any]], calls: int) -> dict[str, Any] | None:
    return next((r for r in results if r["calls"] == calls), None)


def _best(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The largest step sustained with every step before it sustained too."""
    best = None
    for r in results:
        if not r["sustained"]:
            break
        best = r
    return best


PER_FRAME = (
    # (row, kind, direction, mark_every)
    ("engine", "engine", "up", 1),
    ("relay", "relay", "up", 1),
    ("engine", "engine", "down", 1),
    ("relay", "relay", "down", 1),
    ("engine, marks every 3", "engine", "down", 3),
)
SPARSE_MARKS = 3


def per_frame(
    backend: str, server: Server, calls: int, repeats: int, window: dict[str, Any]
) -> dict[tuple[str, str], dict[str, Any]]:
    """CPU per frame of each (row, direction), the best of ``repeats`` interleaved runs."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for _ in range(repeats):
        for row, kind, direction, every in PER_FRAME:
            result = one(
                kind, backend, server, calls, media=direction == "up", ask=direction == "down",
                bridge=BridgeOptions(mark_every=every), **window,
            )  # fmt: skip
            key = f"{direction}_us_per_frame"
            held = best.get((row, direction))
            if held is None or math.isnan(held[key]) or result[key] < held[key]:
                best[row, direction] = result
    return best


def run(backend: str, quick: bool) -> list[Figure]:
    """The bridge hop per frame (CPU, latency) and phone calls per core, beside the relay's."""
    if quick:
        direction_calls, repeats, steps, window = 3, 1, [5], {"warmup": 0.5, "seconds": 1.0}
    else:
        direction_calls, repeats, window = 50, 2, {"warmup": 2.0, "seconds": 6.0}
        steps = [25, 50, 100, 150, 200, 300, 400]
    latency_calls = steps[0] if quick else LATENCY_CALLS
    logging.getLogger("hypercorn.error").setLevel(logging.WARNING)
    with local_server(pace=1.0) as server:
        frames = per_frame(backend, server, direction_calls, repeats, window)
        ramps = {kind: ramp(kind, backend, server, steps, window) for kind in ("engine", "relay")}
    figures: list[Figure] = []
    for row, _, direction, every in PER_FRAME:
        if row == "relay":
            continue
        e_run, f_run = frames[row, direction], frames["relay", direction]
        e, f = e_run[f"{direction}_us_per_frame"], f_run[f"{direction}_us_per_frame"]
        r = ratio(e, f)
        what = "carrier media -> append" if direction == "up" else "audio delta -> carrier media"
        if every != 1:
            what += f", a mark every {every} chunks"
        figures.append(
            Figure(
                benchmark=NAME, backend=backend, metric=f"CPU per frame, {what}", unit="us",
                engine=e, floor=f, ratio=r, target=f"<= {TARGET_CPU_RATIO}x relay", met=r <= TARGET_CPU_RATIO,
                extra={"calls": direction_calls, "best_of": repeats, "mark_every": every,
                       "engine": e_run, "relay": f_run},
            )
        )  # fmt: skip
    for direction in ("up", "down"):
        e_run, f_run = _at(ramps["engine"], latency_calls), _at(ramps["relay"], latency_calls)
        e = e_run[f"{direction}_p99_ms"] if e_run else math.nan
        f = f_run[f"{direction}_p99_ms"] if f_run else math.nan
        what = "uplink" if direction == "up" else "downlink"
        figures.append(
            Figure(
                benchmark=NAME, backend=backend, unit="ms",
                metric=f"p99 added ms per frame, {what}, {latency_calls} calls",
                engine=e, floor=f, ratio=ratio(e, f), target=f"< {TARGET_LATENCY_MS} ms",
                met=e < TARGET_LATENCY_MS,
                extra={"engine_p50_ms": e_run[f"{direction}_p50_ms"] if e_run else math.nan,
                       "relay_p50_ms": f_run[f"{direction}_p50_ms"] if f_run else math.nan,
                       "loadavg_1min": e_run["loadavg_1min"] if e_run else math.nan},
            )
        )  # fmt: skip
    eng, bare = _best(ramps["engine"]), _best(ramps["relay"])
    if quick:  # a smoke test: a figure even when a loaded machine spoils the one short step
        eng, bare = eng or ramps["engine"][-1], bare or ramps["relay"][-1]
    e_per_core = 1 / eng["cpu_s_per_call_s"] if eng else math.nan
    f_per_core = 1 / bare["cpu_s_per_call_s"] if bare else math.nan
    figures.append(
        Figure(
            benchmark=NAME, backend=backend, metric="phone calls per core (both legs)", unit="calls",
            engine=e_per_core, floor=f_per_core, ratio=ratio(e_per_core, f_per_core),
            target=f">= {TARGET_CALLS}", met=e_per_core >= TARGET_CALLS,
            extra={"measured_at_calls": {"engine": eng["calls"] if eng else 0,
                                         "relay": bare["calls"] if bare else 0},
                   "engine_steps": ramps["engine"], "relay_steps": ramps["relay"]},
        )
    )  # fmt: skip
    return figures
