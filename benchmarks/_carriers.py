"""Many simulated Twilio calls in one process: the carrier side of the phone benchmark.

``python -m benchmarks._carriers URL CALLS [--no-media]`` opens ``CALLS``
Media Streams to ``URL`` (``ws://…/twilio/stream``), each as Twilio does it:
``connected``, ``start`` (μ-law 8 kHz), then a ``media`` frame of 20 ms every
20 ms with ``chunk``/``timestamp``. Audio sent back is "played" on a clock
(8 bytes per ms); each ``mark`` is echoed once the audio before it has
played; ``clear`` drops what is queued and echoes its marks at once. Prints
``READY`` once every call has started; on a line (or end of file) on stdin it
sends ``stop`` on every call, closes them, and prints its figures as one JSON
line. It runs in its own process (asyncio, websockets) so its CPU is not the
gateway's.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import sys
import time
from collections import deque
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

FRAME_MS = 20
FRAME = bytes(0xF0 | (i % 16) for i in range(8 * FRAME_MS))
"""20 ms of quiet μ-law (small magnitudes only: the local server's VAD hears no speech)."""
TAIL = base64.b64encode(FRAME[6:]).decode("ascii")


def payload(chunk: int) -> str:
    """The base64 of a frame whose first 6 bytes (still quiet) spell ``chunk``: the gateway's probe
    recognises each frame by them (6 bytes are 8 base64 characters, whatever follows)."""
    marker = bytes(0xF0 | (chunk >> (4 * k)) & 0xF for k in range(6))
    return base64.b64encode(marker).decode("ascii") + TAIL


class Stats:
    def __init__(self) -> None:
        self.send_lags: list[float] = []
        self.sent = 0
        self.media_received = 0
        self.marks_echoed = 0
        self.failed = 0
        self.errors: list[str] = []
        self.ready = 0


async def call(
    url: str, n: int, calls: int, media: bool, stats: Stats, stop: asyncio.Event, all_ready: asyncio.Event
) -> None:
    sid, call_sid = f"MZbench{n:06d}", f"CAbench{n:06d}"
    quoted = json.dumps(sid)
    async with connect(url, compression=None, max_size=1 << 20, proxy=None) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        start = {
            "accountSid": "ACbench", "streamSid": sid, "callSid": call_sid, "tracks": ["inbound"],
            "customParameters": {},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        }  # fmt: skip
        await ws.send(json.dumps({"event": "start", "sequenceNumber": "1", "start": start, "streamSid": sid}))
        stats.ready += 1
        if stats.ready == calls:
            all_ready.set()
        marks: deque[tuple[float, str]] = deque()  # (due, name), due times never decrease
        state = {"playhead": 0.0, "sequence": 1}

        def sequence() -> str:
            state["sequence"] += 1
            return str(state["sequence"])

        reader = asyncio.create_task(_read(ws, marks, state, stats, quoted, sequence))
        due = time.perf_counter()
        chunk = 0
        try:
            while not stop.is_set():
                now = time.perf_counter()
                if media:
                    stats.send_lags.append(now - due)
                    chunk += 1
                    number = str(chunk)
                    await ws.send(
                        '{"event":"media","sequenceNumber":"' + sequence() + '","media":{"track":"inbound",'
                        + '"chunk":"' + number + '","timestamp":"' + str(chunk * FRAME_MS) + '",'
                        + '"payload":"' + payload(chunk) + '"},"streamSid":' + quoted + "}"
                    )  # fmt: skip
                    stats.sent += 1
                while marks and marks[0][0] <= now:
                    await _echo(ws, marks.popleft()[1], quoted, sequence, stats)
                due += FRAME_MS / 1000
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
            await ws.send(json.dumps({"event": "stop", "sequenceNumber": sequence(), "streamSid": sid,
                                      "stop": {"accountSid": "ACbench", "callSid": call_sid}}))  # fmt: skip
        finally:
            reader.cancel()


async def _echo(ws: ClientConnection, name: str, quoted: str, sequence: Any, stats: Stats) -> None:
    await ws.send(
        '{"event":"mark","sequenceNumber":"' + sequence() + '","streamSid":' + quoted
        + ',"mark":{"name":' + json.dumps(name) + "}}"
    )  # fmt: skip
    stats.marks_echoed += 1


async def _read(
    ws: ClientConnection,
    marks: deque[tuple[float, str]],
    state: dict[str, Any],
    stats: Stats,
    quoted: str,
    sequence: Any,
) -> None:
    async for text in ws:
        frame = json.loads(text)
        event = frame.get("event")
        now = time.perf_counter()
        if event == "media":
            stats.media_received += 1
            played = len(frame["media"]["payload"]) * 3 / 4 / 8000
            state["playhead"] = max(now, state["playhead"]) + played
        elif event == "mark":
            marks.append((max(now, state["playhead"]), frame["mark"]["name"]))
        elif event == "clear":
            state["playhead"] = now
            while marks:
                await _echo(ws, marks.popleft()[1], quoted, sequence, stats)


async def _guarded(*args: Any) -> None:
    stats: Stats = args[4]
    try:
        await call(*args)
    except Exception as exc:
        stats.failed += 1
        if len(stats.errors) < 3:
            stats.errors.append(f"{type(exc).__name__}: {exc}")


def _p99(values: list[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("calls", type=int)
    parser.add_argument("--no-media", action="store_true")
    args = parser.parse_args()
    stats, stop, all_ready = Stats(), asyncio.Event(), asyncio.Event()
    spacing = min(0.005, 1.0 / args.calls)
    tasks = []
    for n in range(args.calls):
        tasks.append(
            asyncio.create_task(_guarded(args.url, n, args.calls, not args.no_media, stats, stop, all_ready))
        )
        await asyncio.sleep(spacing)
    waiter = asyncio.create_task(all_ready.wait())
    await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    stats.send_lags = []  # the figures cover what follows READY
    print("READY", flush=True)
    start = time.perf_counter()
    await asyncio.to_thread(sys.stdin.readline)
    measured = stats.send_lags
    stats.send_lags = []
    stop.set()
    await asyncio.wait(tasks, timeout=10)
    figures = {
        "seconds": time.perf_counter() - start,
        "frames_sent": stats.sent,
        "media_received": stats.media_received,
        "marks_echoed": stats.marks_echoed,
        "send_lag_p99_ms": _p99(measured) * 1000,
        "started": stats.ready,
        "failed": stats.failed,
        "errors": stats.errors,
    }
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
