"""What every benchmark shares: the figure record, statistics, test audio, a free port, process figures.

A benchmark module exposes ``NAME``, ``BACKENDS`` and ``run(backend, quick) -> list[Figure]``;
:mod:`benchmarks.__main__` runs each (benchmark, backend) pair in its own child process.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

RATE = 24_000
"""Sample rate of every stream (PCM16 mono)."""
FRAME_MS = 20
"""What an application gives ``send_audio`` at a time, like a microphone callback."""
FRAME_BYTES = RATE * 2 * FRAME_MS // 1000
DELTA_MS = 60
"""Audio per ``response.output_audio.delta`` (as the local server and Inworld send it)."""
KEY = "bench-key"
MEMORY_URL = "ws://memory/api/v1/realtime/session"

BOTH = ("asyncio", "trio")


@attrs.frozen(kw_only=True)
class Figure:
    """One row of the report: an engine figure beside its floor, the ratio and the target."""

    benchmark: str
    backend: str
    metric: str
    unit: str
    engine: float
    floor: float | None = None
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A plain dict for the JSON report."""
        return attrs.asdict(self)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank; ``nan`` for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def distribution_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50 / p99 / max (and the count) of durations given in seconds, in milliseconds."""
    return {
        "p50_ms": percentile(seconds, 50) * 1000,
        "p99_ms": percentile(seconds, 99) * 1000,
        "max_ms": (max(seconds) if seconds else math.nan) * 1000,
        "count": len(seconds),
    }


def best_of(k: int, measure: Callable[[], float]) -> tuple[float, list[float]]:
    """Run ``measure`` (returns seconds) ``k`` times; the fastest and all of them."""
    runs = [measure() for _ in range(k)]
    return min(runs), runs


def pcm(seconds: float) -> bytes:
    """``seconds`` of quiet, non-silent PCM16 (a low sawtooth: every byte value varies)."""
    samples = int(RATE * seconds)
    one = bytes((i * 7) & 0xFF if i % 2 == 0 else 0 for i in range(2 * 480))
    return (one * (samples * 2 // len(one) + 1))[: samples * 2]


def frames(data: bytes, size: int = FRAME_BYTES) -> list[bytes]:
    """``data`` cut into ``size``-byte frames (the last may be shorter)."""
    return [data[i : i + size] for i in range(0, len(data), size)]


def ratio(engine: float, floor: float) -> float:
    """``engine / floor`` (``nan`` when the floor is zero)."""
    return engine / floor if floor else math.nan


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the OS picks it; closed again at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU seconds consumed so far by process ``pid`` (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def rss_bytes() -> int:
    """Resident set size of this process now (Linux ``/proc``)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def mean(values: Iterable[float]) -> float:
    """Arithmetic mean (``nan`` for none)."""
    items = list(values)
    return sum(items) / len(items) if items else math.nan
