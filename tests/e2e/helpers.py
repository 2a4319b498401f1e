"""Shared helpers for the end-to-end tests: the local server on a real socket, a wire tap, events.

Every e2e test runs a :class:`~engine.server.LocalServer` on 127.0.0.1 (port 0)
through :meth:`LocalServer.run` and points a real :class:`engine.Session` at it.
:class:`Wire` is a connector that opens the real socket (``engine.transports.connect``)
and keeps every client message, so tests can assert on exactly what went out,
connection by connection, next to what the server recorded.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
import attrs

import engine
from engine.actors.dispatch import EventStream
from engine.demo import speech as speech  # re-exported: the synthesized "speech" PCM
from engine.protocol.items import Item
from engine.server import LocalServer
from engine.server.app import PATH
from engine.transports import TransportSettings, connect
from engine.transports.base import Transport
from tests.actors.helpers import collect_until as collect_until  # re-exported
from tests.actors.helpers import next_event as next_event  # re-exported

E = TypeVar("E")

KEY = "e2e-local-key"
RATE = 24000
CHUNK_BYTES = RATE * 2 * 60 // 1000
"""One 60 ms ``input_audio_buffer.append`` at 24 kHz PCM16 (the session's default chunk)."""

SERVER_SETTINGS = TransportSettings(close_timeout=0.5, keepalive_interval=None)
SETTINGS = engine.SessionSettings(close_timeout=0.5)
"""Every test session: a short close bound keeps the suite fast."""


def make_server(**options: Any) -> LocalServer:
    """A local server for tests: as fast as possible, no pings, short closes (override any option)."""
    options.setdefault("pace", 0)
    options.setdefault("ping_interval", None)
    options.setdefault("settings", SERVER_SETTINGS)
    return LocalServer(**options)


def inworld(server: LocalServer, key: str = KEY) -> engine.Inworld:
    """An Inworld provider pointed at the running ``server`` (it adds ``key`` and ``protocol`` itself)."""
    return engine.Inworld(api_key=key, url=f"ws://{server.host}:{server.port}{PATH}")


# ---------------------------------------------------------------------- the wire tap


@attrs.define
class WireLog:
    """One client connection as the client opened it: URL, headers and every message sent."""

    url: str
    headers: dict[str, str]
    sent: list[dict[str, Any]] = attrs.field(factory=list)

    def types(self) -> list[str]:
        """Types of the messages sent, in order."""
        return [m["type"] for m in self.sent]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        """The messages of ``kind``, in order."""
        return [m for m in self.sent if m["type"] == kind]

    def appended_bytes(self) -> int:
        """Audio bytes carried by the ``input_audio_buffer.append`` messages."""
        return sum(len(base64.b64decode(m["audio"])) for m in self.of_type("input_audio_buffer.append"))


class _Tap:
    """A transport that keeps a copy of every message sent through it (and may stall)."""

    def __init__(self, inner: Transport, log: WireLog, wire: Wire, index: int) -> None:
        self._inner = inner
        self._log = log
        self._wire = wire
        self._index = index

    async def send(self, text: str) -> None:
        message = json.loads(text)
        self._log.sent.append(message)
        if self._index in self._wire.stall_audio_on and message["type"] == "input_audio_buffer.append":
            self._wire.audio_stalled.set()
            await anyio.sleep_forever()  # a stalled uplink: this message never leaves
        await self._inner.send(text)

    async def receive(self) -> str:
        return await self._inner.receive()

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        await self._inner.aclose(code, reason)


class Wire:
    """A :class:`~engine.transports.base.Connector` over real sockets that records the client side.

    On the connections numbered in ``stall_audio_on`` the uplink stalls at the first
    ``input_audio_buffer.append`` (and ``audio_stalled`` is set): the session's
    writer waits there for good, so its outbox fills up and the audio actor waits
    in ``outbox.send()``.
    """

    def __init__(self, *, stall_audio_on: tuple[int, ...] = ()) -> None:
        self.connections: list[WireLog] = []
        self.stall_audio_on = stall_audio_on
        self.audio_stalled = anyio.Event()

    @asynccontextmanager
    async def __call__(
        self, url: str, headers: Mapping[str, str], settings: TransportSettings
    ) -> AsyncIterator[Transport]:
        log = WireLog(url=url, headers=dict(headers))
        async with connect(url, headers, settings) as transport:
            self.connections.append(log)
            yield _Tap(transport, log, self, len(self.connections) - 1)

    def sent(self) -> list[dict[str, Any]]:
        """Every message of every connection, in order."""
        return [m for c in self.connections for m in c.sent]


# ---------------------------------------------------------------------- events


class Recorder:
    """A catch-all callback: every event the session published, in order (complete after close)."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def __call__(self, event: Any) -> None:
        self.events.append(event)

    def of_type(self, kind: type[E]) -> list[E]:
        """The recorded events of ``kind``, in order."""
        return [e for e in self.events if isinstance(e, kind)]


async def turn_done(stream: EventStream) -> engine.events.TurnMetrics:
    """Wait for the end of the current turn (its ``TurnMetrics``)."""
    return await next_event(stream, engine.events.TurnMetrics)


async def stream_audio(session: engine.Session, pcm: bytes, frame_ms: int = 20) -> None:
    """Send PCM in ``frame_ms`` frames as fast as the session takes them."""
    frame = RATE * 2 * frame_ms // 1000
    for offset in range(0, len(pcm), frame):
        await session.send_audio(pcm[offset : offset + frame])


# ---------------------------------------------------------------------- conversations


def text_of(item: Item) -> str:
    """An item's words: message text or transcript, call arguments or call output."""
    if item.type == "function_call":
        return item.arguments or ""
    if item.type == "function_call_output":
        return item.output or ""
    return item.text


def summary(items: Any) -> list[tuple[Any, ...]]:
    """Items as ``(id, type, role, call_id, words)`` rows, for comparing two conversations."""
    return [(i.id, i.type, i.role, i.call_id, text_of(i)) for i in items]


def outputs_per_call(items: Any) -> dict[str | None, int]:
    """How many ``function_call_output`` items answer each ``function_call`` (and stray outputs)."""
    counts: dict[str | None, int] = {i.call_id: 0 for i in items if i.type == "function_call"}
    for item in items:
        if item.type == "function_call_output":
            counts[item.call_id] = counts.get(item.call_id, 0) + 1
    return counts


def play_all(session: engine.Session, events: list[Any]) -> dict[str, float]:
    """Acknowledge every ``AudioOut`` in ``events`` as played in full, as an instant speaker would.

    Returns the milliseconds acknowledged per item. Without acknowledgements the
    session estimates playback from the wall clock, and at ``pace=0`` a whole
    answer arrives at once, so a later user turn would count as a barge-in.
    """
    played: dict[str, float] = {}
    for event in events:
        if isinstance(event, engine.events.AudioOut) and event.item_id is not None:
            played[event.item_id] = played.get(event.item_id, 0.0) + event.duration_ms
    for item_id, ms in played.items():
        session.audio_played(item_id, ms)
    return played
