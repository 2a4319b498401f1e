"""G.711 end to end in the local server: μ-law and A-law in (the VAD hears them) and out (the voice).

So a phone call runs offline with no conversion anywhere: the gateway passes
the carrier's μ-law through and the local server speaks μ-law back.
"""

from __future__ import annotations

import array
import base64
import math
from typing import Any

import anyio
import pytest

import engine
from engine.core import events as ev
from engine.core.effects import Emit
from engine.protocol import AudioFormat, SessionConfig
from engine.server.audio import CHUNK_MS, InputDecoder, g711_decode, g711_encode, voice_chunk
from engine.server.vad import EnergyVad
from tests.core.driver import Driver as CoreDriver
from tests.core.driver import sent
from tests.e2e.helpers import SETTINGS, collect_until, inworld, make_server, next_event
from tests.gateway.carrier import silence_ulaw, speech_ulaw
from tests.server.helpers import collapse
from tests.server.test_session import Driver, types

RATE = 8000
FORMATS = ["audio/pcmu", "audio/pcma"]


def samples(ms: int, amplitude: float = 0.0, hz: float = 300.0) -> array.array[int]:
    n = RATE * ms // 1000
    peak = amplitude * 32767
    return array.array("h", (int(peak * math.sin(2 * math.pi * hz * i / RATE)) for i in range(n)))


def g711_appends(kind: str, audio: array.array[int], chunk_ms: int = 20) -> list[dict[str, Any]]:
    data = g711_encode(kind, audio)
    size = RATE * chunk_ms // 1000  # one byte per sample
    return [
        {"type": "input_audio_buffer.append", "audio": base64.b64encode(data[i : i + size]).decode()}
        for i in range(0, len(data), size)
    ]


def test_the_codec_agrees_with_the_g711_tables() -> None:
    # Values from ITU-T G.711 (and every table printed from it): digital silence is
    # 0xFF in μ-law and 0xD5 in A-law; the extreme μ-law codes decode to ±32124;
    # A-law's smallest codes 0x55/0xD5 decode to -8/+8.
    zero = array.array("h", [0])
    assert g711_encode("audio/pcmu", zero) == b"\xff"
    assert g711_encode("audio/pcma", zero) == b"\xd5"
    assert list(g711_decode("audio/pcmu", b"\x00\x80")) == [-32124, 32124]
    assert list(g711_decode("audio/pcma", b"\x55\xd5")) == [-8, 8]


@pytest.mark.parametrize("kind", FORMATS)
def test_one_byte_per_sample_and_a_close_round_trip(kind: str) -> None:
    audio = samples(20, amplitude=0.5)
    encoded = g711_encode(kind, audio)
    assert len(encoded) == 160  # 20 ms at 8 kHz
    back = g711_decode(kind, encoded)
    assert len(back) == 160
    # Logarithmic quantisation: the error stays within a few percent of the sample.
    assert all(abs(a - b) <= max(64, abs(a) // 16) for a, b in zip(audio, back, strict=True))


@pytest.mark.parametrize("kind", FORMATS)
def test_the_vad_hears_g711_speech_at_its_true_time(kind: str) -> None:
    decoder, vad = InputDecoder(kind), EnergyVad(RATE)
    data = g711_encode(kind, samples(500) + samples(600, amplitude=0.3) + samples(700))
    events = []
    for i in range(0, len(data), 160):
        events += vad.feed(decoder.decode(data[i : i + 160]))
    assert [(type(e).__name__, getattr(e, "start_ms", None)) for e in events] == [
        ("SpeechStart", 500),
        ("SpeechStop", 500),
    ]
    assert abs(events[1].end_ms - 1100) <= 20  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", FORMATS)
def test_the_synthetic_voice_is_encoded_in_the_output_format(kind: str) -> None:
    chunk = base64.b64decode(voice_chunk(kind, RATE))
    assert len(chunk) == RATE * CHUNK_MS // 1000  # 480 bytes: one per sample
    voice = g711_decode(kind, chunk)
    peak = max(abs(s) for s in voice)
    assert 400 < peak < 1200  # the quiet tone (amplitude 800), not silence and not noise
    assert EnergyVad(RATE).feed(voice * 20) == []  # too quiet to echo back through the VAD


@pytest.mark.parametrize("kind", FORMATS)
def test_a_voice_turn_in_and_out_in_g711(kind: str) -> None:
    driver = Driver()
    fmt = {"type": kind}
    driver.update({"audio": {"input": {"format": fmt}, "output": {"format": fmt}}})
    out = driver.send_all(g711_appends(kind, samples(1000) + samples(1000, amplitude=0.5) + samples(800)))
    kinds = collapse(types(out))
    assert kinds[:3] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
    ]
    assert abs(out[0]["audio_start_ms"] - 1000) <= 20
    assert abs(out[1]["audio_end_ms"] - 2000) <= 20
    audio = [base64.b64decode(e["delta"]) for e in out if e["type"] == "response.output_audio.delta"]
    assert audio, kinds
    assert all(len(chunk) == RATE * CHUNK_MS // 1000 for chunk in audio)
    assert {bytes(chunk) for chunk in audio} == {base64.b64decode(voice_chunk(kind, RATE))}


# The core's arithmetic for G.711: one byte per sample, 8 bytes per millisecond.


def _g711_speaking(kind: str) -> CoreDriver:
    d = CoreDriver(SessionConfig(input_format=AudioFormat(type=kind), output_format=AudioFormat(type=kind)))
    d.ready()
    d.user_turn("item_u1")
    d.start_reply("resp_1", "item_a1")
    return d


@pytest.mark.parametrize("kind", FORMATS)
def test_audio_out_lasts_one_ms_per_8_bytes_in_g711(kind: str) -> None:
    d = _g711_speaking(kind)
    out = d.audio("resp_1", "item_a1", base64.b64encode(bytes(480)).decode())
    (chunk,) = [e.event for e in out if isinstance(e, Emit) and isinstance(e.event, ev.AudioOut)]
    assert (chunk.encoding, chunk.sample_rate, len(chunk.pcm)) == (kind, 8000, 480)
    assert chunk.duration_ms == 60  # PCM16 arithmetic would say 30
    assert d.conv.ledger.received_ms("item_a1") == 60


def test_pcm_audio_out_keeps_two_bytes_per_sample() -> None:
    chunk = ev.AudioOut(pcm=bytes(960), sample_rate=24000, item_id="a", response_id="r")
    assert chunk.duration_ms == 20


@pytest.mark.parametrize("kind", FORMATS)
def test_a_barge_in_truncates_g711_audio_at_the_acknowledged_ms(kind: str) -> None:
    d = _g711_speaking(kind)
    d.audio("resp_1", "item_a1", base64.b64encode(bytes(8 * 200)).decode())  # 200 ms received
    d.take()
    d.do(d.conv.audio_played("item_a1", 120))  # the carrier's mark echo: 120 ms heard
    d.clock.now += 5.0  # the wall clock alone would say all of it played
    out = d.server("input_audio_buffer.speech_started", item_id="item_u2", audio_start_ms=3000)
    truncates = [m for m in sent(out) if m["type"] == "conversation.item.truncate"]
    assert truncates == [
        {"type": "conversation.item.truncate", "item_id": "item_a1", "content_index": 0, "audio_end_ms": 120}
    ]


# Over a real socket: a Session configured μ-law end to end against the local server.


@pytest.mark.anyio
async def test_a_mu_law_session_against_the_local_server_talks_and_truncates_in_g711_ms() -> None:
    mulaw = AudioFormat(type="audio/pcmu")
    config = engine.SessionConfig(input_format=mulaw, output_format=mulaw)
    server = make_server()
    with anyio.fail_after(10):
        async with server.running():
            session = engine.Session(inworld(server), config, settings=SETTINGS)
            async with session.connect():
                stream = session.events()
                server.say_next("hello")
                for frame in _frames(speech_ulaw(0.6) + silence_ulaw(700)):
                    await session.send_audio(frame)
                turn = await collect_until(stream, lambda e: isinstance(e, ev.TurnMetrics))
                audio = [e for e in turn if isinstance(e, ev.AudioOut)]
                assert audio, [type(e).__name__ for e in turn]
                assert {(e.encoding, e.sample_rate) for e in audio} == {("audio/pcmu", 8000)}
                assert all(e.duration_ms == len(e.pcm) / 8 for e in audio)
                assert [e.text for e in turn if isinstance(e, ev.UserTranscript) and e.final] == ["hello"]
                for e in audio:
                    session.audio_played(e.item_id or "", e.duration_ms)  # heard in full

                # A long answer of which the caller heard 300 ms, then a barge-in.
                await session.send_text("Tell me a long story about the sea and the ships.")
                long_turn = await collect_until(stream, lambda e: isinstance(e, ev.TurnMetrics))
                (item,) = {e.item_id for e in long_turn if isinstance(e, ev.AudioOut)}
                received = sum(e.duration_ms for e in long_turn if isinstance(e, ev.AudioOut))
                assert received > 1000
                session.audio_played(item or "", 300)
                server.say_next("stop")
                for frame in _frames(speech_ulaw(0.5) + silence_ulaw(700)):
                    await session.send_audio(frame)
                interrupted = await next_event(stream, ev.Interrupted)
                # The server's answer to the truncate (it may come after the next turn's audio).
                await collect_until(stream, lambda e: isinstance(e, ev.ItemUpdated) and e.item.id == item)
            conversation = server.connections[0].conversation
    assert (interrupted.item_id, interrupted.played_ms) == (item, 300)
    assert conversation.audio_ms[item or ""] == 300  # the server truncated at the G.711 position


def _frames(audio: bytes) -> list[bytes]:
    return [audio[i : i + 160] for i in range(0, len(audio), 160)]
