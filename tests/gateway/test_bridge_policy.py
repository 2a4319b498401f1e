"""The bridge's stated policies, driven directly: the uplink's overflow, the mark cadence, the apology."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import anyio
import pytest

import engine
from engine.gateway.agent import Agent
from engine.gateway.bridge import Bridge, CarrierGone, apology
from engine.gateway.calls import CALLER_HUNG_UP, CallRegistry
from engine.gateway.carriers.twilio import TwilioStream
from engine.gateway.metrics import GatewayMetrics
from engine.server.audio import InputDecoder


class ScriptedSocket:
    """The carrier's socket, scripted: frames to receive, then closed; what was sent is kept."""

    def __init__(self, frames: list[str]) -> None:
        self.frames = list(frames)
        self.sent: list[str] = []
        self.closed: tuple[int, str] | None = None

    async def receive(self) -> str | bytes:
        await anyio.lowlevel.checkpoint()
        if not self.frames:
            raise CarrierGone("script ended")
        return self.frames.pop(0)

    async def send(self, text: str) -> None:
        self.sent.append(text)

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)


def twilio(event: str, **body: Any) -> str:
    return json.dumps({"event": event, "streamSid": "MZ1", **body})


START = twilio(
    "start",
    start={
        "streamSid": "MZ1",
        "callSid": "CA1",
        "accountSid": "AC1",
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {},
    },
)


def media(n: int) -> str:
    payload = base64.b64encode(bytes([n % 256]) * 160).decode()
    return twilio(
        "media", media={"track": "inbound", "chunk": str(n), "timestamp": str(20 * n), "payload": payload}
    )


class StillSession:
    """Stands in for a session that takes caller audio only without waiting (it has no ``send_audio``)."""

    def __init__(self) -> None:
        self.audio: list[bytes] = []

    def send_audio_nowait(self, pcm: bytes) -> None:
        self.audio.append(pcm)

    def audio_played(self, item_id: str, ms: float) -> None:
        raise AssertionError("no marks in this script")


@pytest.mark.anyio
async def test_the_reader_hands_caller_audio_over_without_waiting_and_reads_on_to_the_stop() -> None:
    frames = [twilio("connected", protocol="Call", version="1.0.0"), START]
    frames += [media(n) for n in range(60)]
    frames.append(twilio("stop", stop={"callSid": "CA1"}))
    socket = ScriptedSocket(frames)
    registry = CallRegistry(2, GatewayMetrics())
    live = registry.admit("twilio")
    bridge = Bridge(socket, TwilioStream(), Agent(), live, registry)
    session = StillSession()
    bridge._session = session  # type: ignore[assignment]
    with anyio.fail_after(5):
        assert await bridge._await_start() is not None
        await bridge._read_carrier()
    # Every frame, in order, untouched; the overflow policy is the session's (drop newest, reported once).
    assert [payload[0] for payload in session.audio] == list(range(60))
    assert all(len(payload) == 160 for payload in session.audio)
    assert bridge._reason == CALLER_HUNG_UP


@pytest.mark.parametrize("kind", ["audio/pcmu", "audio/pcma", "audio/pcm"])
def test_the_apology_is_a_short_audible_tone_in_the_call_format(kind: str) -> None:
    fmt = engine.AudioFormat(type=kind, rate=8000)
    sound = apology(fmt)
    seconds = len(sound) / fmt.bytes_per_second
    assert 0.5 < seconds < 1.0
    if kind == "audio/pcm":
        import array

        samples = array.array("h")
        samples.frombytes(sound)
    else:
        samples = InputDecoder(kind).decode(sound)
    assert max(abs(s) for s in samples) > 4000  # audible, not silence


@pytest.mark.parametrize("kind", ["audio/pcmu", "audio/pcma"])
def test_the_g711_apology_is_the_pcm_tone_through_the_standard_codec(kind: str) -> None:
    import array

    from engine.audio import g711_decode

    pcm = array.array("h")
    pcm.frombytes(apology(engine.AudioFormat(type="audio/pcm", rate=8000)))
    heard = g711_decode(kind, apology(engine.AudioFormat(type=kind, rate=8000)))
    assert len(heard) == len(pcm)
    # G.711 keeps each sample within its segment's step: about 1/16 of the magnitude, a little near 0.
    assert all(abs(h - p) <= abs(p) / 16 + 16 for h, p in zip(heard, pcm, strict=True))


@pytest.mark.anyio
async def test_audio_queued_when_the_caller_hangs_up_is_not_sent_and_the_call_does_not_fail() -> None:
    # A race seen under load: the reader reads ``stop`` while AudioOut is already queued for the
    # downlink; the stream refuses frames after stop, which once failed the call.
    socket = ScriptedSocket([START, twilio("stop", stop={"callSid": "CA1"})])
    registry = CallRegistry(2, GatewayMetrics())
    bridge = Bridge(socket, TwilioStream(), Agent(), registry.admit("twilio"), registry)
    bridge._session = StillSession()  # type: ignore[assignment]

    async def queued() -> Any:
        for _ in range(3):
            yield engine.events.AudioOut(
                pcm=b"\xff" * 480,
                sample_rate=8000,
                item_id="item_1",
                response_id="resp_1",
                encoding="audio/pcmu",
            )
            await anyio.lowlevel.checkpoint()

    with anyio.fail_after(5):
        assert await bridge._await_start() is not None
        await bridge._read_carrier()  # reads the stop
        async with contextlib.aclosing(queued()) as events:
            await bridge._downlink(events)
    assert socket.sent == []
    assert bridge._failure is None and bridge._reason == CALLER_HUNG_UP
