"""The Serve hop: the same phone calls through Ray Serve's proxy against plain ``engine serve``.

Both gateways run the same agent against the same local realtime server (its
own process, ``pace=0``: the answer is sent as fast as it is made) with the
same simulated carriers (in this process, asyncio): each call is a Twilio
Media Stream sending a 20 ms ``media`` frame every 20 ms, and it echoes every
``mark`` as soon as it arrives (an instant loudspeaker). Each call is one
turn: 0.5 s of silence, 0.6 s of speech, then silence until the answer's
first ``media`` frame arrives and until it has stopped coming; then it hangs
up. Waves of concurrent calls follow one another.

* **Plain**: ``engine serve --backend asyncio`` in its own process (hypercorn).
* **Serve**: :func:`engine.scale.serve.deploy` on a local Ray cluster: one
  replica, Serve's HTTP proxy in front (each WebSocket message crosses the
  proxy actor, then a Ray call to the replica, and back).

Figures:

* **Turn round trip** (4 concurrent calls: the hop, not the machine's
  contention): from the last speech frame sent to the answer's first
  ``media`` frame received (p50, p99). It holds the server's silence window
  and its answer, the same for both paths, plus one frame up and one frame
  down through each gateway; the difference between the two paths is what
  the Serve hop adds to a frame in each direction (``extra.added_ms``, half
  of it per direction in ``extra.added_per_frame_ms``).
* **CPU per call** (20 concurrent calls): CPU seconds per call-second over
  the turns, of every process the path uses: the plain gateway's process,
  or every Ray process of the local cluster (raylet, GCS, Serve's controller
  and proxy, the replica: ``extra.split_pct_core``). Ratio against the plain
  gateway. ``extra.added_p50_ms_at_this_load``: the round trip's added p50
  at this load (on 2 cores the Serve path then competes for the CPU).

No target: the issue sets none. ``BACKENDS``: asyncio (Ray runs asyncio).
"""

from __future__ import annotations

import array
import base64
import json
import os
import subprocess
import sys
import time
from typing import Any

import anyio

from benchmarks._common import KEY, Figure, cpu_seconds_of, distribution_ms, free_port, ratio
from benchmarks._server import Server, local_server
from engine.audio import g711_encode
from engine.demo import speech
from engine.transports import TransportSettings, connect
from engine.transports.base import Transport

NAME = "serve_hop"
BACKENDS = ("asyncio",)
RATE = 8000
FRAME = 160
ANSWER_TIMEOUT = 10.0
SETTINGS = TransportSettings(close_timeout=1.0, keepalive_interval=None)


def _frames() -> tuple[list[str], str]:
    """The speech as base64 μ-law frames, and one frame of silence."""
    samples = array.array("h")
    samples.frombytes(speech(0.6, rate=RATE))
    audio = g711_encode("audio/pcmu", samples)
    frames = [audio[i : i + FRAME].ljust(FRAME, b"\xff") for i in range(0, len(audio), FRAME)]
    while frames and max(abs(b - 0xFF) if b > 0x7F else abs(b - 0x7F) for b in frames[-1]) < 8:
        frames.pop()  # the speech's trailing quiet: the turn's silence follows it instead
    return [base64.b64encode(f).decode() for f in frames], base64.b64encode(b"\xff" * FRAME).decode()


class Caller:
    """One simulated Twilio call: continuous 20 ms frames, marks echoed at once, turns timed."""

    def __init__(self, transport: Transport, index: int) -> None:
        self.ws = transport
        self.sid = f"MZhop{index:06d}"
        self.round_trips: list[float] = []
        self.unanswered = 0
        self.last_media = 0.0
        self._answered = anyio.Event()
        self._waiting = False
        self._chunk = 0
        self._sequence = 0

    async def run(self, turns: int, speech_frames: list[str], silence: str, warmup: float) -> None:
        await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        fmt = {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1}
        start = {"streamSid": self.sid, "callSid": "CA" + self.sid, "accountSid": "AChop", "mediaFormat": fmt}
        start["tracks"] = ["inbound"]
        await self._send(
            {"event": "start", "start": {**start, "customParameters": {}}, "streamSid": self.sid}
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._read)
            due = time.perf_counter()
            due = await self._pace(due, [silence] * int(warmup / 0.02))
            for _ in range(turns):
                self._answered, self._waiting = anyio.Event(), True
                due = await self._pace(due, speech_frames)
                spoken = time.perf_counter()  # the last loud frame is sent: the server's VAD waits from here
                deadline = spoken + ANSWER_TIMEOUT
                while not self._answered.is_set() and time.perf_counter() < deadline:
                    due = await self._pace(due, [silence])
                if not self._answered.is_set():
                    self.unanswered += 1
                    continue
                self.round_trips.append(self._answered_at - spoken)
                while time.perf_counter() - self.last_media < 0.3:  # the answer is still coming
                    due = await self._pace(due, [silence])
            stop = {"accountSid": "AChop", "callSid": "CA" + self.sid}
            await self._send({"event": "stop", "streamSid": self.sid, "stop": stop})
            tg.cancel_scope.cancel()

    async def _pace(self, due: float, payloads: list[str]) -> float:
        for payload in payloads:
            self._chunk += 1  # every field Twilio sends: the gateway's fast path reads them
            timestamp = str((self._chunk - 1) * 20)
            media = {
                "track": "inbound",
                "chunk": str(self._chunk),
                "timestamp": timestamp,
                "payload": payload,
            }
            await self._send({"event": "media", "media": media, "streamSid": self.sid})
            due += 0.02
            await anyio.sleep(max(0.0, due - time.perf_counter()))
        return due

    async def _send(self, frame: dict[str, Any]) -> None:
        if frame["event"] != "connected":
            self._sequence += 1
            frame["sequenceNumber"] = str(self._sequence)
        await self.ws.send(json.dumps(frame))

    async def _read(self) -> None:
        while True:
            frame = json.loads(await self.ws.receive())
            event = frame.get("event")
            if event == "media":
                self.last_media = time.perf_counter()
                if self._waiting:
                    self._waiting = False
                    self._answered_at = self.last_media
                    self._answered.set()
            elif event == "mark":
                await self._send(
                    {"event": "mark", "streamSid": self.sid, "mark": {"name": frame["mark"]["name"]}}
                )


Measured = tuple[list[float], float, dict[str, float], int]
"""Round trips (s), wall seconds, CPU seconds by process, turns left unanswered."""


async def _calls(url: str, calls: int, turns: int, cpu: Any) -> Measured:
    """``turns`` waves of ``calls`` concurrent one-turn calls: round trips, seconds, CPU by process."""
    speech_frames, silence = _frames()
    callers: list[Caller] = []

    async def one(index: int) -> None:
        async with connect(f"{url}/twilio/stream", {}, SETTINGS) as ws:
            caller = Caller(ws, index)
            callers.append(caller)
            await caller.run(1, speech_frames, silence, warmup=0.5 + (index % calls) * 0.02)

    before, started = cpu(), time.perf_counter()
    for wave in range(turns):  # one turn per call: waves of concurrent calls, one after the other
        async with anyio.create_task_group() as tg:
            for i in range(calls):
                tg.start_soon(one, wave * calls + i)
    seconds, after = time.perf_counter() - started, cpu()
    used = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in after}
    unanswered = sum(c.unanswered for c in callers)
    return [t for c in callers for t in c.round_trips], seconds, used, unanswered


Phases = list[tuple[int, int]]
"""(concurrent calls, waves) of each measuring phase, run in order on the same gateway."""


def _capacity(phases: Phases) -> int:
    """Room for a wave while the previous one's calls are still ending."""
    return 2 * max(calls for calls, _ in phases) + 4


async def _phases(url: str, phases: Phases, cpu: Any) -> list[Measured]:
    return [await _calls(url, calls, waves, cpu) for calls, waves in phases]


def _plain(server: Server, phases: Phases) -> list[Measured]:
    command = [sys.executable, "-m", "engine", "serve", "--backend", "asyncio", "--port", "0"]
    command += ["--url", server.url(), "--max-calls", str(_capacity(phases))]
    env = {**os.environ, "INWORLD_API_KEY": KEY}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        port = int(line.split("127.0.0.1:")[1].split()[0])
        url = f"ws://127.0.0.1:{port}"
        return anyio.run(_phases, url, phases, lambda: {"gateway": cpu_seconds_of(process.pid)})
    finally:
        process.terminate()
        process.wait(15)


def _ray_processes() -> dict[str, float]:
    """CPU seconds so far of every process below this one but the local server, by Ray role."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(parent, []).append(int(entry))
    totals: dict[str, float] = {}
    stack = list(children.get(os.getpid(), []))
    while stack:
        pid = stack.pop()
        stack += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace")
            seconds = cpu_seconds_of(pid)
        except OSError:
            continue
        if "engine.server" in command:
            continue  # the realtime server: the same for both paths
        role = "proxy" if "Proxy" in command else "replica" if "ServeReplica" in command else "other ray"
        totals[role] = totals.get(role, 0.0) + seconds
    return totals


def _serve(server: Server, phases: Phases) -> list[Measured]:
    from ray import serve

    from engine.scale import cluster
    from engine.scale.serve import deploy

    os.environ["INWORLD_API_KEY"] = KEY  # the local cluster's replicas inherit it (read on each dial)
    cluster.connect(num_cpus=2)
    try:
        url = deploy(port=free_port(), url=server.url(), capacity=_capacity(phases), drain_timeout=1.0)
        return anyio.run(_phases, url.replace("http://", "ws://"), phases, _ray_processes)
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        cluster.disconnect()


def run(backend: str, quick: bool) -> list[Figure]:
    # Latency at a light load (the hop itself), CPU at a heavier one (per call, amortised).
    light, heavy = ((2, 1), (3, 1)) if quick else ((4, 12), (20, 3))
    with local_server(pace=0) as server:
        plain = _plain(server, [light, heavy])
        served = _serve(server, [light, heavy])
    figures = []
    direct, hop = distribution_ms(plain[0][0]), distribution_ms(served[0][0])
    for q in ("p50_ms", "p99_ms"):
        added = hop[q] - direct[q]
        figures.append(
            Figure(
                benchmark=NAME,
                backend=backend,
                metric=f"turn round trip through Serve, {q[:3]}",
                unit="ms",
                engine=hop[q],
                floor=direct[q],
                ratio=ratio(hop[q], direct[q]),
                extra={
                    "concurrent_calls": light[0],
                    "turns": hop["count"],
                    "added_ms": added,
                    "added_per_frame_ms": added / 2,
                    "unanswered": {"plain": plain[0][3], "serve": served[0][3]},
                },
            )
        )
    calls = heavy[0]
    _, plain_seconds, plain_cpu, _ = plain[1]
    trips, serve_seconds, serve_cpu, _ = served[1]
    plain_per_call = sum(plain_cpu.values()) / (calls * plain_seconds)
    serve_per_call = sum(serve_cpu.values()) / (calls * serve_seconds)
    split = {k: v / (calls * serve_seconds) * 100 for k, v in serve_cpu.items()}
    loaded = distribution_ms(trips)["p50_ms"] - distribution_ms(plain[1][0])["p50_ms"]
    figures.append(
        Figure(
            benchmark=NAME,
            backend=backend,
            metric="CPU per call (every process of the path)",
            unit="% core",
            engine=serve_per_call * 100,
            floor=plain_per_call * 100,
            ratio=ratio(serve_per_call, plain_per_call),
            extra={"concurrent_calls": calls, "split_pct_core": split, "added_p50_ms_at_this_load": loaded},
        )
    )
    return figures
