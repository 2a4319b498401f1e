"""The demo: a short scripted call that exercises the whole library, with a live timeline.

``python -m engine demo`` starts the local realtime server in-process on a free
loopback port and runs a conversation against it: a text turn, a voice turn
from synthesized audio that makes the model call a tool, and a barge-in that
cuts the assistant off (with the truncation to what was heard). A simulated
speaker plays the assistant's audio in real time and acknowledges it, so the
playback ledger and per-turn latency figures are real. ``--provider openai``
speaks OpenAI's dialect (URL form, auth, session fields) to the same local
server; with ``--url`` the script runs against a real endpoint (the key comes
from ``INWORLD_API_KEY`` / ``OPENAI_API_KEY``); ``--wav`` sends a recording as
the user's voice.
"""

from __future__ import annotations

import argparse
import array
import math
import os
import tempfile
import time
import wave
from pathlib import Path
from typing import Any, TextIO

import anyio

import engine
from engine import events as ev

RATE = 24000
FRAME_MS = 20


def speech(seconds: float, *, rate: int = RATE, loudness: float = 0.3) -> bytes:
    """Synthesized "speech": a voiced, wobbling tone between short silences (PCM16 mono)."""
    silence = bytes(int(rate * 0.2) * 2)
    samples = array.array("h")
    for n in range(int(rate * seconds)):
        t = n / rate
        envelope = 0.6 + 0.4 * math.sin(2 * math.pi * 3 * t)
        value = math.sin(2 * math.pi * (180 + 40 * math.sin(2 * math.pi * 2 * t)) * t)
        samples.append(int(32767 * loudness * envelope * value))
    return silence + samples.tobytes() + silence * 4


def read_wav(path: Path, rate: int) -> bytes:
    """A WAV file as 16-bit mono PCM at ``rate`` (mixed down and resampled linearly if needed)."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV files are supported")
        channels, source_rate = wav.getnchannels(), wav.getframerate()
        frames = array.array("h", wav.readframes(wav.getnframes()))
    mono = [sum(frames[i : i + channels]) // channels for i in range(0, len(frames), channels)]
    if source_rate == rate or not mono:
        return array.array("h", mono).tobytes()
    out = array.array("h")
    step = source_rate / rate
    for n in range(int(len(mono) / step)):
        pos = n * step
        i = int(pos)
        frac = pos - i
        nxt = mono[min(i + 1, len(mono) - 1)]
        out.append(int(mono[i] * (1 - frac) + nxt * frac))
    return out.tobytes()


class Timeline:
    """Prints what happens, with the time since the start of the call."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.start = time.monotonic()
        self.metrics: list[ev.TurnMetrics] = []
        self.tools: list[str] = []
        self.interruptions: list[ev.Interrupted] = []
        self.errors: list[ev.Error] = []
        self._changed = anyio.Event()

    async def wait_turns(self, count: int) -> None:
        """Wait until ``count`` turns have finished (their ``TurnMetrics`` arrived)."""
        with anyio.fail_after(30):
            while len(self.metrics) < count:
                await self._changed.wait()
                self._changed = anyio.Event()

    def line(self, what: str, detail: str = "") -> None:
        """One timeline row."""
        self.out.write(f"{time.monotonic() - self.start:7.2f}s  {what:<14} {detail}\n")
        self.out.flush()

    def __call__(self, event: Any) -> None:
        if isinstance(event, ev.StateChanged):
            self.line("state", f"{event.old} -> {event.new}")
        elif isinstance(event, ev.UserTranscript) and event.final:
            self.line("user", repr(event.text))
        elif isinstance(event, ev.AssistantTranscript | ev.AssistantText) and event.final:
            self.line("assistant", repr(event.text))
        elif isinstance(event, ev.ToolCall):
            self.line("tool call", f"{event.name}({event.arguments})")
        elif isinstance(event, ev.ToolResult):
            self.tools.append(event.name)
            self.line("tool result", f"{event.name} -> {event.output}")
        elif isinstance(event, ev.Interrupted):
            self.interruptions.append(event)
            self.line("interrupted", f"item {event.item_id}: the user heard {event.played_ms} ms")
        elif isinstance(event, ev.SpeechStarted):
            self.line("speech", f"started at {event.audio_start_ms} ms of input")
        elif isinstance(event, ev.SpeechStopped):
            self.line("speech", f"stopped at {event.audio_end_ms} ms of input")
        elif isinstance(event, ev.TurnMetrics):
            self.metrics.append(event)
            self._changed.set()
            self.line("latency", _latency(event))
        elif isinstance(event, ev.Error):
            self.errors.append(event)
            self.line("error", f"{event.code}: {event.message}")
        elif isinstance(event, ev.Reconnecting):
            self.line("reconnecting", f"attempt {event.attempt} in {event.delay:.2f}s")


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def _latency(m: ev.TurnMetrics) -> str:
    parts = [f"turn {m.turn}: first audio {_ms(m.time_to_first_audio)}"]
    parts.append(f"first played {_ms(m.time_to_first_played)}")
    if m.tool_seconds is not None:
        parts.append(f"tools {_ms(m.tool_seconds)}")
    parts.append(f"total {_ms(m.total_seconds)}")
    if m.usage is not None and m.usage.total_tokens is not None:
        parts.append(f"{m.usage.total_tokens} tokens")
    return ", ".join(parts)


class Speaker:
    """A simulated loudspeaker: plays ``AudioOut`` in real time and acknowledges what was played."""

    def __init__(self, session: engine.Session) -> None:
        self.session = session
        self.played_ms: dict[str | None, float] = {}
        self.queue: list[ev.AudioOut] = []
        self.wake = anyio.Event()
        self.idle = anyio.Event()

    def enqueue(self, event: ev.AudioOut) -> None:
        """Callback for ``AudioOut``."""
        self.queue.append(event)
        self.wake.set()

    def stop(self, event: ev.Interrupted) -> None:
        """Callback for ``Interrupted``: flush what is queued, as a real player must."""
        self.queue = [a for a in self.queue if a.response_id != event.response_id]

    async def run(self) -> None:
        """Play forever (until cancelled)."""
        while True:
            if not self.queue:
                self.idle.set()
                self.wake = anyio.Event()
                await self.wake.wait()
                self.idle = anyio.Event()
                continue
            chunk = self.queue.pop(0)
            await anyio.sleep(chunk.duration_ms / 1000)
            if chunk.item_id is not None:
                done = self.played_ms.get(chunk.item_id, 0.0) + chunk.duration_ms
                self.played_ms[chunk.item_id] = done
                self.session.audio_played(chunk.item_id, done)


async def stream_audio(session: engine.Session, pcm: bytes, realtime: bool) -> None:
    """Send PCM in 20 ms frames, paced like a microphone when ``realtime``."""
    frame = RATE * 2 * FRAME_MS // 1000
    for offset in range(0, len(pcm), frame):
        await session.send_audio(pcm[offset : offset + frame])
        if realtime:
            await anyio.sleep(FRAME_MS / 1000)


async def run_demo(args: argparse.Namespace, out: TextIO) -> int:
    """Run the scripted call; returns the exit status (``--timeline``: also draw it)."""
    if getattr(args, "timeline", None) is None:
        return await _run_demo(args, out, None)
    with tempfile.TemporaryDirectory(prefix="engine-demo-") as folder:
        recording = Path(folder) / "demo.jsonl"
        status = await _run_demo(args, out, recording)
        from engine.timeline import render_file

        args.timeline.write_text(render_file(recording), encoding="utf-8")
    out.write(f"timeline: {args.timeline}\n")
    return status


async def _run_demo(args: argparse.Namespace, out: TextIO, recording: Path | None) -> int:
    from engine.server import LocalServer

    timeline = Timeline(out)
    server: LocalServer | None = None
    async with anyio.create_task_group() as tg:
        if args.url is None:
            server = LocalServer(pace=args.pace, ping_interval=5.0)
            await tg.start(server.run, "127.0.0.1", 0)
            if args.provider == "openai":  # the local server speaks both handshakes
                provider: Any = engine.OpenAI(api_key="local-demo-key", url=server.openai_url())
            else:
                provider = engine.Inworld(api_key="local-demo-key", url=server.url())
            timeline.line("server", f"local realtime server on 127.0.0.1:{server.port}")
        elif args.provider == "openai":
            provider = engine.OpenAI(api_key=_key("OPENAI_API_KEY"), url=args.url)
        else:
            provider = engine.Inworld(api_key=_key("INWORLD_API_KEY"), url=args.url)
        session = engine.Session(
            provider,
            engine.SessionConfig(instructions="You are a cheerful travel assistant. Keep answers short."),
            record=recording,
        )

        @session.tool
        async def get_weather(city: str) -> dict[str, Any]:
            """Current weather for a city.

            Args:
                city: the city name, e.g. Paris.
            """
            await anyio.sleep(0.05)
            return {"city": city, "temp_c": 21, "sky": "sunny"}

        speaker = Speaker(session)
        session.on()(timeline)
        session.on(ev.AudioOut)(speaker.enqueue)
        session.on(ev.Interrupted)(speaker.stop)
        tg.start_soon(speaker.run)

        async with session.connect():
            timeline.line("connected", f"{session.provider.name}, state {session.state}")
            await _text_turn(session, timeline)
            await speaker.idle.wait()  # let the answer finish playing before the user speaks
            await _voice_turn(session, timeline, server, args)
            await speaker.idle.wait()
            await _barge_in(session, timeline, server, speaker)
        tg.cancel_scope.cancel()
    _summary(session, timeline, out)
    return 0 if not [e for e in timeline.errors if e.fatal] else 1


async def _text_turn(session: engine.Session, timeline: Timeline) -> None:
    timeline.line("-- text turn", "the user types")
    await session.send_text("Hello! Who are you?")
    await timeline.wait_turns(1)


async def _voice_turn(
    session: engine.Session, timeline: Timeline, server: Any, args: argparse.Namespace
) -> None:
    timeline.line("-- voice turn", "the user speaks (server VAD ends the turn; the model calls a tool)")
    if server is not None:
        server.say_next("What's the weather in Paris?")
    pcm = read_wav(args.wav, RATE) if args.wav else speech(1.2)
    await stream_audio(session, pcm, False)
    await timeline.wait_turns(2)


async def _barge_in(session: engine.Session, timeline: Timeline, server: Any, speaker: Speaker) -> None:
    timeline.line("-- barge-in", "the user cuts the assistant off mid-sentence")
    await session.send_text("Tell me a long story about the sea, the ships and the lighthouse keepers.")
    await session.wait_for(ev.AudioOut, timeout=30)
    await anyio.sleep(1.0)  # let the speaker play about a second of it
    if server is not None:
        server.say_next("Sorry, stop there.")
    async with anyio.create_task_group() as tg:
        tg.start_soon(stream_audio, session, speech(0.8), True)
        await session.wait_for(ev.Interrupted, timeout=30)
    await timeline.wait_turns(4)  # the interrupted turn, then the answer to "stop there"


def _summary(session: engine.Session, timeline: Timeline, out: TextIO) -> None:
    out.write("\n== summary ==\n")
    out.write(f"turns: {len(timeline.metrics)}\n")
    for m in timeline.metrics:
        out.write(f"  {_latency(m)}\n")
    out.write(f"tool calls answered: {', '.join(timeline.tools) or 'none'}\n")
    for cut in timeline.interruptions:
        out.write(f"barge-in: item {cut.item_id} truncated to the {cut.played_ms} ms the user heard\n")
    out.write(f"errors: {len(timeline.errors)} ({sum(e.fatal for e in timeline.errors)} fatal)\n")
    out.write("history:\n")
    for item in session.history:
        who = item.role or item.type
        text = item.text or item.arguments or item.output or ""
        out.write(f"  {who:<22} {text[:70]!r}\n")
    out.write(f"final state: {session.state}\n")


def _key(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"set {name} to run against a real endpoint")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's command-line options."""
    parser.add_argument("--backend", choices=("trio", "asyncio"), default="trio")
    parser.add_argument("--url", help="a real endpoint instead of the local server")
    parser.add_argument("--provider", choices=("inworld", "openai"), default="inworld")
    parser.add_argument("--wav", type=Path, help="a 16-bit WAV file to send as the user's voice")
    parser.add_argument("--pace", type=float, default=1.0, help="local server pacing (1.0 = real time)")
    parser.add_argument("--timeline", type=Path, help="also write the call's timeline (HTML) to this file")
