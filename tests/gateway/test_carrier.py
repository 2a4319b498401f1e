"""The simulated Twilio carrier itself, against a tiny scripted bot on 127.0.0.1 (both backends)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import pytest

from engine.errors import ConnectionClosed
from engine.transports.base import Transport
from engine.transports.listen import serve
from tests.gateway.carrier import (
    FRAME_BYTES,
    SETTINGS,
    Echo,
    TwilioCarrier,
    pcm_samples,
    silence_ulaw,
    speech_ulaw,
    twilio_call,
    ulaw,
)

SPEED = 10.0
MULAW_TONE = bytes([0x10, 0x90]) * 80  # loud codes, so what was played is easy to tell from silence


class Bot:
    """The server side: records what the carrier sends; the test pushes frames through :meth:`send`."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.headers: Mapping[str, str] = {}
        self.transport: Transport | None = None
        self.ended = False
        self._changed = anyio.Event()

    def check_handshake(self, path: str, headers: Mapping[str, str]) -> tuple[int, str] | None:
        return None

    async def handle(self, transport: Transport, path: str, headers: Mapping[str, str]) -> None:
        self.transport, self.headers = transport, headers
        try:
            while True:
                self.frames.append(json.loads(await transport.receive()))
                self._changed.set()
        except ConnectionClosed:
            self.ended = True
            self._changed.set()

    async def until(self, done: Callable[[], object]) -> None:
        while not done():
            self._changed = anyio.Event()
            await self._changed.wait()

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("event") == kind]

    async def send(self, frame: dict[str, Any]) -> None:
        assert self.transport is not None
        await self.transport.send(json.dumps(frame))

    async def play(self, sid: str, audio: bytes) -> None:
        for i in range(0, len(audio), FRAME_BYTES):
            payload = base64.b64encode(audio[i : i + FRAME_BYTES]).decode()
            await self.send({"event": "media", "streamSid": sid, "media": {"payload": payload}})

    async def mark(self, sid: str, name: str) -> None:
        await self.send({"event": "mark", "streamSid": sid, "mark": {"name": name}})


@asynccontextmanager
async def bot_and_phone(**options: Any) -> AsyncIterator[tuple[Bot, TwilioCarrier]]:
    bot = Bot()
    async with anyio.create_task_group() as tg:
        port = await tg.start(partial(serve, bot, "127.0.0.1", 0, settings=SETTINGS))
        async with twilio_call(f"ws://127.0.0.1:{port}/twilio/stream", speed=SPEED, **options) as phone:
            yield bot, phone
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_it_opens_the_stream_as_twilio_documents() -> None:
    with anyio.fail_after(5):
        options = {"parameters": {"caller": "+15550100"}, "headers": {"X-Twilio-Signature": "sig"}}
        async with bot_and_phone(**options) as (bot, phone):
            await bot.until(lambda: len(bot.frames) >= 2)
            connected, start = bot.frames[:2]
            assert connected == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
            assert start["event"] == "start" and start["streamSid"] == phone.stream_sid
            fmt = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
            assert start["start"]["mediaFormat"] == fmt
            assert start["start"]["customParameters"] == {"caller": "+15550100"}
            assert start["start"]["callSid"] == phone.call_sid
            assert {k.lower(): v for k, v in bot.headers.items()}["x-twilio-signature"] == "sig"


@pytest.mark.anyio
async def test_caller_audio_goes_in_paced_20_ms_frames_with_counting_chunks() -> None:
    with anyio.fail_after(5):
        async with bot_and_phone() as (bot, phone):
            began = anyio.current_time()
            await phone.speak(MULAW_TONE * 5 + b"\x10" * 10)  # 100 ms and a bit: the last frame is padded
            took = anyio.current_time() - began
            await bot.until(lambda: len(bot.events("media")) == 6)
            frames = [f["media"] for f in bot.events("media")]
            assert [f["chunk"] for f in frames] == ["1", "2", "3", "4", "5", "6"]
            assert [f["timestamp"] for f in frames] == ["0", "20", "40", "60", "80", "100"]
            assert all(len(base64.b64decode(f["payload"])) == 160 for f in frames)
            assert base64.b64decode(frames[-1]["payload"]) == b"\x10" * 10 + b"\xff" * 150
            assert took >= 6 * 0.02 / SPEED * 0.9  # paced at `speed` times real time


@pytest.mark.anyio
async def test_marks_come_back_only_after_the_audio_before_them_played() -> None:
    with anyio.fail_after(5):
        async with bot_and_phone() as (bot, phone):
            sid = phone.stream_sid
            began = anyio.current_time()
            await bot.play(sid, MULAW_TONE * 10)  # 200 ms
            await bot.mark(sid, "a")
            await bot.play(sid, MULAW_TONE * 5)  # 100 ms
            await bot.mark(sid, "b")
            await bot.until(lambda: len(bot.events("mark")) == 2)
            took = anyio.current_time() - began
            assert [m["mark"]["name"] for m in bot.events("mark")] == ["a", "b"]
            assert all(m["streamSid"] == sid for m in bot.events("mark"))
            assert phone.echoes == [Echo("a", 200.0), Echo("b", 300.0)]
            assert took >= 0.3 / SPEED * 0.9
            assert bytes(phone.played) == MULAW_TONE * 15
            assert phone.played_ms == 300.0


@pytest.mark.anyio
async def test_clear_drops_queued_audio_and_echoes_the_dropped_marks_at_once() -> None:
    with anyio.fail_after(5):
        async with bot_and_phone() as (bot, phone):
            sid = phone.stream_sid
            await bot.play(sid, MULAW_TONE * 50)  # 1 s
            await bot.mark(sid, "late")
            await phone.until(lambda: phone.played_ms >= 100)
            await bot.send({"event": "clear", "streamSid": sid})
            await bot.until(lambda: bot.events("mark"))
            (echo,) = phone.echoes
            assert echo.name == "late" and echo.dropped
            assert 100 <= echo.played_ms < 1000
            assert phone.clears == [echo.played_ms]
            assert phone.queued_ms == 0
            heard = phone.played_ms
            await bot.play(sid, MULAW_TONE)  # audio after the clear plays again
            await bot.mark(sid, "next")
            await phone.until(lambda: len(phone.echoes) == 2)
            assert phone.echoes[1] == Echo("next", heard + 20)


@pytest.mark.anyio
async def test_dtmf_and_hang_up() -> None:
    with anyio.fail_after(5):
        async with bot_and_phone() as (bot, phone):
            await phone.press("5")
            await bot.until(lambda: bot.events("dtmf"))
            assert bot.events("dtmf")[0]["dtmf"] == {"track": "inbound_track", "digit": "5"}
            await phone.hang_up()
            await bot.until(lambda: bot.ended)
            (stop,) = bot.events("stop")
            assert stop["stop"]["callSid"] == phone.call_sid and stop["streamSid"] == phone.stream_sid


def test_speech_helpers_make_8_khz_mu_law() -> None:
    speech = speech_ulaw(0.6)
    assert len(speech) == 8000 * (0.6 + 0.2 + 0.8)  # 200 ms of silence before, 800 ms after
    peak = max(abs(s) for s in pcm_samples(speech))
    assert peak > 5000  # loud enough for a VAD
    assert silence_ulaw(20) == b"\xff" * 160
    assert set(pcm_samples(silence_ulaw(20))) == {0}
    assert len(ulaw(bytes(4800), rate=24000)) == 800  # 100 ms of PCM16 at 24 kHz -> 800 μ-law bytes
