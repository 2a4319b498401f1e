"""Shared helpers for the local server tests: synthetic audio, a checking client, GA orders."""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from engine.protocol import decode
from engine.protocol.server import UnknownServerEvent
from engine.server import LocalServer
from engine.transports import TransportSettings, connect
from engine.transports.base import Transport
from tests.protocol.ga_oracle import INWORLD_EXTRAS, assert_ga_server_event

RATE = 24000
CHUNK_MS = 60

SETTINGS = TransportSettings(close_timeout=0.5, keepalive_interval=None)
"""Socket settings for tests: short closes, no keep-alive pings."""

AUDIO_RESPONSE = [
    "response.created",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
    "<deltas>",
    "response.output_audio.done",
    "response.output_audio_transcript.done",
    "response.content_part.done",
    "response.output_item.done",
    "conversation.item.done",
    "response.done",
]
"""The GA order of an audio response (docs/protocol.md §6.1 steps 9-17), deltas collapsed."""

TEXT_RESPONSE = [
    "response.created",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
    "<deltas>",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "conversation.item.done",
    "response.done",
]
"""The GA order of a text-only response (docs/protocol.md §6.2)."""

CANCELLED_AUDIO = [
    "response.output_audio.done",
    "response.output_audio_transcript.done",
    "response.content_part.done",
    "response.output_item.done",
    "conversation.item.done",
    "response.done",
]
"""The GA closing order of a cancelled audio response (docs/protocol.md §6.4)."""

DELTAS = frozenset(
    {
        "response.output_audio.delta",
        "response.output_audio_transcript.delta",
        "response.output_text.delta",
        "response.function_call_arguments.delta",
        "conversation.item.input_audio_transcription.delta",
    }
)


def make_server(**options: Any) -> LocalServer:
    """A server for tests: as fast as possible, short closes, no keep-alive (override any option)."""
    options.setdefault("pace", 0)
    options.setdefault("settings", SETTINGS)
    return LocalServer(**options)


def tone(ms: int, amplitude: float = 0.5, hz: float = 300.0, rate: int = RATE) -> bytes:
    """PCM16 mono sine (amplitude as a fraction of full scale)."""
    n = rate * ms // 1000
    peak = amplitude * 32767
    return struct.pack(f"<{n}h", *(int(peak * math.sin(2 * math.pi * hz * i / rate)) for i in range(n)))


def silence(ms: int, rate: int = RATE) -> bytes:
    """PCM16 mono silence."""
    return bytes(2 * (rate * ms // 1000))


def appends(pcm: bytes, chunk_ms: int = CHUNK_MS, rate: int = RATE) -> list[dict[str, Any]]:
    """``input_audio_buffer.append`` events carrying ``pcm`` in chunks, as pipecat sends them."""
    size = 2 * rate * chunk_ms // 1000
    return [
        {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm[i : i + size]).decode()}
        for i in range(0, len(pcm), size)
    ]


def collapse(types: Sequence[str]) -> list[str]:
    """Event types with every run of streaming deltas replaced by one ``<deltas>``."""
    out: list[str] = []
    for kind in types:
        if kind in DELTAS:
            if not out or out[-1] != "<deltas>":
                out.append("<deltas>")
        else:
            out.append(kind)
    return out


def _as_ga_rates(value: Any) -> Any:
    """A copy with every PCM ``format`` at 24 kHz.

    GA fixes PCM at 24000 Hz; Inworld accepts 8000-48000 (docs/protocol.md §4.1), so
    other rates are the one documented deviation the schema check tolerates.
    """
    if isinstance(value, list):
        return [_as_ga_rates(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _as_ga_rates(v) for k, v in value.items()}
    if out.get("type") == "audio/pcm" and isinstance(out.get("rate"), int):
        out["rate"] = 24000
    return out


def check_server_event(text: str) -> dict[str, Any]:
    """Decode with the project's codec and validate against openai-python's GA schema.

    ``ping`` is Inworld-only (no GA schema); Inworld's extensions (``audio.output.model``,
    ``providerData``, ``temperature``) and PCM rates other than 24 kHz are allowed.
    """
    event = decode(text)
    payload: dict[str, Any] = json.loads(text)
    assert not isinstance(event, UnknownServerEvent), payload["type"]
    if payload["type"] != "ping":
        assert_ga_server_event(_as_ga_rates(payload), INWORLD_EXTRAS)
    return payload


class Client:
    """A test client over any transport: every server event it receives is checked."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.received: list[dict[str, Any]] = []

    async def send(self, event: dict[str, Any]) -> None:
        """Send one client event."""
        await self.transport.send(json.dumps(event))

    async def send_all(self, events: Sequence[dict[str, Any]]) -> None:
        """Send several client events in order."""
        for event in events:
            await self.send(event)

    async def recv(self) -> dict[str, Any]:
        """The next server event other than ``ping``, checked."""
        while True:
            payload = check_server_event(await self.transport.receive())
            self.received.append(payload)
            if payload["type"] != "ping":
                return payload

    async def until(self, kind: str) -> list[dict[str, Any]]:
        """Events up to and including the first of type ``kind``."""
        out: list[dict[str, Any]] = []
        while True:
            event = await self.recv()
            out.append(event)
            if event["type"] == kind:
                return out

    async def expect(self, kind: str) -> dict[str, Any]:
        """The next event, which must be of type ``kind``."""
        event = await self.recv()
        assert event["type"] == kind, event
        return event

    async def greeted(self) -> None:
        """Consume ``session.created`` and ``conversation.created``."""
        await self.expect("session.created")
        await self.expect("conversation.created")


@asynccontextmanager
async def serve_and_connect(server: LocalServer, *, greet: bool = True) -> AsyncIterator[Client]:
    """Run ``server`` on a loopback socket and connect one checking client to it."""
    async with server.running(), connect(server.url(), server.headers(), SETTINGS) as transport:
        client = Client(transport)
        if greet:
            await client.greeted()
        yield client
