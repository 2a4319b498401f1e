"""A simulated Twilio carrier, written from Twilio's Media Streams documentation (docs/carriers.md).

It is the phone side of a call, independent of the gateway's codec: a real
WebSocket client (``engine.transports.connect``: trio-websocket under trio,
websockets under asyncio) that behaves as Twilio documents a bidirectional
stream:

* it sends ``connected`` then ``start`` (``streamSid``, ``callSid``,
  ``accountSid``, ``customParameters``, ``mediaFormat`` audio/x-mulaw 8000 mono);
* :meth:`TwilioCarrier.speak` sends the caller's μ-law in 20 ms ``media`` frames
  (160 bytes) paced in real time (divided by ``speed``), ``chunk`` counting
  from 1 and ``timestamp`` in ms since the stream started, both as strings;
* it "plays" the ``media`` it receives through a queue advanced by the clock
  (20 ms steps, each taking ``0.02 / speed`` s), and echoes each ``mark`` once
  all the audio queued before it has played;
* ``clear`` drops the queued audio and echoes at once the marks it dropped;
* :meth:`~TwilioCarrier.press` sends ``dtmf``, :meth:`~TwilioCarrier.hang_up`
  sends ``stop`` and closes.

What it played is exposed for assertions: :attr:`~TwilioCarrier.played`
(the μ-law bytes heard), :attr:`~TwilioCarrier.played_ms`,
:attr:`~TwilioCarrier.echoes` (each mark echoed, with the ms played when it
was echoed and whether a ``clear`` dropped it), :attr:`~TwilioCarrier.clears`
(the ms played at each ``clear``) and :attr:`~TwilioCarrier.received` (every
frame from the server, decoded).

Usage (inside a test, under ``anyio.fail_after``)::

    async with twilio_call(url, parameters={"caller": "+15550100"}, speed=5.0) as phone:
        await phone.speak(speech_ulaw(0.6) + silence_ulaw(800))
        await phone.until(lambda: phone.echoes)          # the bot answered and a mark came back
        await phone.speak(speech_ulaw(0.4))              # barge in
        await phone.until(lambda: phone.clears)
        await phone.hang_up()

``until`` wakes whenever a frame arrives or playback advances, so a test never
sleeps to wait. Speed up the clock with ``speed`` (a test can use 5-20).
"""

from __future__ import annotations

import array
import base64
import json
import sys
import warnings
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
import attrs

from engine.demo import speech
from engine.errors import ConnectionClosed
from engine.transports import TransportSettings, connect
from engine.transports.base import Transport

if sys.version_info >= (3, 13):
    import audioop
else:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop

RATE = 8000
FRAME_BYTES = 160
"""20 ms of μ-law at 8 kHz: Twilio's media frame."""
FRAME_MS = 20
SETTINGS = TransportSettings(close_timeout=0.5, keepalive_interval=None)


def ulaw(pcm16: bytes, rate: int = RATE) -> bytes:
    """Little-endian PCM16 mono at ``rate`` as μ-law at 8 kHz (``audioop``'s resampler and encoder)."""
    if sys.byteorder == "big":
        pcm16 = audioop.byteswap(pcm16, 2)
    if rate != RATE:
        pcm16, _ = audioop.ratecv(pcm16, 2, 1, rate, RATE, None)
    return audioop.lin2ulaw(pcm16, 2)


def speech_ulaw(seconds: float = 0.6, loudness: float = 0.3) -> bytes:
    """The demo's synthetic speech (leading and trailing silence included) as 8 kHz μ-law."""
    return ulaw(speech(seconds, rate=RATE, loudness=loudness))


def silence_ulaw(ms: int) -> bytes:
    """μ-law digital silence (code 0xFF)."""
    return b"\xff" * (RATE * ms // 1000)


@attrs.frozen
class Echo:
    """A mark the carrier echoed: after ``played_ms`` of audio; ``dropped`` when a clear discarded it."""

    name: str
    played_ms: float
    dropped: bool = False


class TwilioCarrier:
    """The carrier's side of one Media Stream over ``transport``; see the module docstring."""

    def __init__(
        self,
        transport: Transport,
        *,
        speed: float = 1.0,
        stream_sid: str = "MZ00000000000000000000000000000001",
        call_sid: str = "CA00000000000000000000000000000001",
        account_sid: str = "AC00000000000000000000000000000001",
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.transport = transport
        self.speed = speed
        self.stream_sid, self.call_sid, self.account_sid = stream_sid, call_sid, account_sid
        self.received: list[dict[str, Any]] = []
        """Every frame the server sent, decoded (non-JSON text is kept as ``{"raw": text}``)."""
        self.played = bytearray()
        """The μ-law audio played to the caller so far."""
        self.echoes: list[Echo] = []
        self.clears: list[float] = []
        """``played_ms`` at each ``clear`` received."""
        self.closed: BaseException | None = None
        """How the socket ended (a ``ConnectionClosed``), once it did."""
        self._queue: deque[bytes | str] = deque()  # audio (bytes) and mark names, in arrival order
        self._chunk = 0
        self._sequence = 0
        self._generation = 0  # bumped by clear: a step in flight from before it does not count
        self._changed = anyio.Event()
        self._wake = anyio.Event()
        self._send_lock = anyio.Lock()
        self._stopped = False

    @property
    def played_ms(self) -> float:
        """Milliseconds of audio played."""
        return len(self.played) * 1000 / RATE

    @property
    def queued_ms(self) -> float:
        """Milliseconds of received audio still waiting to play."""
        return sum(len(x) for x in self._queue if isinstance(x, bytes)) * 1000 / RATE

    def media(self) -> list[dict[str, Any]]:
        """The ``media`` frames received."""
        return [f for f in self.received if f.get("event") == "media"]

    async def until(self, done: Callable[[], object]) -> None:
        """Wait until ``done()`` is true (re-checked on every frame and playback step)."""
        while not done():
            if self.closed is not None and not done():
                raise AssertionError(f"the call ended first: {self.closed!r}")
            self._changed = anyio.Event()
            await self._changed.wait()

    async def send(self, frame: Mapping[str, Any]) -> None:
        """Send one frame as JSON text (a test may send anything, even garbage, with :meth:`send_text`)."""
        await self.send_text(json.dumps(frame))

    async def send_text(self, text: str) -> None:
        async with self._send_lock:
            await self.transport.send(text)

    def _next_sequence(self) -> str:
        self._sequence += 1
        return str(self._sequence)

    async def start(self, parameters: Mapping[str, str] | None = None) -> None:
        """``connected`` then ``start``, as Twilio opens a stream."""
        await self.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self.send(
            {
                "event": "start",
                "sequenceNumber": self._next_sequence(),
                "start": {
                    "accountSid": self.account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1},
                    "customParameters": dict(parameters or {}),
                },
                "streamSid": self.stream_sid,
            }
        )

    async def speak(self, audio: bytes, *, paced: bool = True) -> None:
        """The caller's μ-law ``audio`` in 20 ms ``media`` frames (the last one padded with silence)."""
        for i in range(0, len(audio), FRAME_BYTES):
            frame = audio[i : i + FRAME_BYTES].ljust(FRAME_BYTES, b"\xff")
            self._chunk += 1
            await self.send(
                {
                    "event": "media",
                    "sequenceNumber": self._next_sequence(),
                    "media": {
                        "track": "inbound",
                        "chunk": str(self._chunk),
                        "timestamp": str((self._chunk - 1) * FRAME_MS),
                        "payload": base64.b64encode(frame).decode("ascii"),
                    },
                    "streamSid": self.stream_sid,
                }
            )
            if paced:
                await anyio.sleep(FRAME_MS / 1000 / self.speed)

    async def press(self, digit: str) -> None:
        """The caller presses a key."""
        await self.send(
            {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "sequenceNumber": self._next_sequence(),
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    async def hang_up(self) -> None:
        """``stop``, then the carrier closes the socket."""
        if self._stopped:
            return
        self._stopped = True
        await self.send(
            {
                "event": "stop",
                "sequenceNumber": self._next_sequence(),
                "streamSid": self.stream_sid,
                "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
            }
        )
        await self.transport.aclose(1000, "caller hung up")

    async def run(self) -> None:
        """Read the server's frames and play the audio until the socket closes (run it in a task group)."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._play)
            try:
                while True:
                    text = await self.transport.receive()
                    await self._on_frame(text)
            except ConnectionClosed as exc:
                self.closed = exc
            finally:
                self._notify()
                tg.cancel_scope.cancel()

    async def _on_frame(self, text: str) -> None:
        try:
            frame = json.loads(text)
        except ValueError:
            frame = {"raw": text}
        if not isinstance(frame, dict):
            frame = {"raw": text}
        self.received.append(frame)
        event = frame.get("event")
        if event == "media":
            payload = frame.get("media", {}).get("payload", "")
            self._queue.append(base64.b64decode(payload))
            self._wake.set()
        elif event == "mark":
            self._queue.append(str(frame.get("mark", {}).get("name", "")))
            self._wake.set()
        elif event == "clear":
            self.clears.append(self.played_ms)
            self._generation += 1
            dropped = [x for x in self._queue if isinstance(x, str)]
            self._queue.clear()
            for name in dropped:  # Twilio echoes the marks a clear discards
                await self._echo(name, dropped=True)
        self._notify()

    async def _echo(self, name: str, *, dropped: bool = False) -> None:
        self.echoes.append(Echo(name=name, played_ms=self.played_ms, dropped=dropped))
        if self._stopped:
            return
        await self.send(
            {
                "event": "mark",
                "sequenceNumber": self._next_sequence(),
                "streamSid": self.stream_sid,
                "mark": {"name": name},
            }
        )

    async def _play(self) -> None:
        # The loudspeaker: 20 ms of the head of the queue per step, at `speed` times real time.
        while True:
            if not self._queue:
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            head = self._queue[0]
            if isinstance(head, str):
                self._queue.popleft()
                await self._echo(head)
                self._notify()
                continue
            step = head[:FRAME_BYTES]
            generation = self._generation
            await anyio.sleep(len(step) * 1000 / RATE / 1000 / self.speed)
            if generation != self._generation or not self._queue or self._queue[0] is not head:
                continue  # cleared while this step played: it was cut, not heard
            self.played += step
            rest = head[FRAME_BYTES:]
            if rest:
                self._queue[0] = rest
            else:
                self._queue.popleft()
            self._notify()

    def _notify(self) -> None:
        self._changed.set()


@asynccontextmanager
async def twilio_call(
    url: str,
    *,
    parameters: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    speed: float = 1.0,
    start: bool = True,
    **ids: str,
) -> AsyncIterator[TwilioCarrier]:
    """Dial ``url`` as Twilio would: connect, run the carrier, send ``connected`` and ``start``.

    ``start=False`` leaves the opening to the test (e.g. garbage first).

    On exit the carrier hangs up (``stop``) if it has not, and the socket closes.
    """
    async with connect(url, headers, SETTINGS) as transport, anyio.create_task_group() as tg:
        phone = TwilioCarrier(transport, speed=speed, **ids)
        tg.start_soon(phone.run)
        if start:
            await phone.start(parameters)
        try:
            yield phone
        finally:
            if phone.closed is None:
                with suppress(ConnectionClosed):
                    await phone.hang_up()
            tg.cancel_scope.cancel()


def pcm_samples(data: bytes) -> array.array[int]:
    """μ-law bytes as 16-bit samples (to measure what the caller heard)."""
    samples = array.array("h")
    samples.frombytes(audioop.ulaw2lin(data, 2))
    return samples
