"""Helpers for the gateway's runtime tests: a gateway served in-process, a raw HTTP client, phones.

``running_gateway`` serves a :class:`Gateway` with hypercorn (under the
running backend) on 127.0.0.1 port 0, against a LocalServer. Twilio calls use
the simulated carrier of tests/gateway/carrier.py; ``Phone`` is a small
carrier of the same behaviour that speaks Telnyx's names (``stream_id``,
``call_control_id``, A-law): paced 20 ms frames, ``dtmf`` and ``stop``; it
"plays" the media it receives at ``speed`` times real time and echoes each
``mark`` only once the audio before it has played; ``clear`` drops what is
queued and echoes the marks it dropped at once.
"""

from __future__ import annotations

import array
import base64
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import attrs

import engine
from engine.audio import g711_encode
from engine.demo import speech
from engine.gateway.agent import Agent
from engine.gateway.app import BridgeOptions, Gateway
from engine.gateway.calls import TRACE_CALLS, Tracing
from engine.gateway.serve import listening_socket, serve_gateway
from engine.server import LocalServer
from engine.transports import connect
from engine.transports.base import Transport
from tests.gateway.carrier import twilio_call

RATE = 8000
FRAME = 160  # 20 ms of μ-law


def ulaw_speech(seconds: float = 0.6, kind: str = "audio/pcmu") -> bytes:
    """The demo's synthetic "speech" at 8 kHz, in μ-law or A-law (loud enough for the local VAD)."""
    pcm = speech(seconds, rate=RATE)
    samples = array.array("h")
    samples.frombytes(pcm)
    return g711_encode(kind, samples)


def ulaw_silence(ms: int, kind: str = "audio/pcmu") -> bytes:
    """G.711 silence (μ-law 0xFF, A-law 0xD5: the codes of zero)."""
    return (b"\xff" if kind == "audio/pcmu" else b"\xd5") * (RATE * ms // 1000)


def weather_agent(**kwargs: Any) -> Agent:
    """An agent with the weather tool; records the tool's calls in ``agent.calls``."""
    agent = Agent(config=engine.SessionConfig(instructions="weather bot"), **kwargs)
    agent.calls = []  # type: ignore[attr-defined]

    @agent.tool
    async def get_weather(city: str) -> dict[str, object]:
        """Current weather for a city.

        Args:
            city: the city name.
        """
        agent.calls.append(city)  # type: ignore[attr-defined]
        return {"city": city, "temp_c": 21}

    return agent


class Seen:
    """A sync agent callback that records every event and wakes :meth:`until`."""

    def __init__(self) -> None:
        self.events: list[object] = []
        self._changed = anyio.Event()

    def __call__(self, event: object) -> None:
        self.events.append(event)
        self._changed.set()
        self._changed = anyio.Event()

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def until(self, done: Any) -> None:
        while not done():
            await self._changed.wait()


@attrs.define
class Served:
    """A gateway being served: its object, port, the local realtime server behind it, and its stop."""

    gateway: Gateway
    port: int
    server: LocalServer
    stop: anyio.Event
    stopped: anyio.Event

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


@asynccontextmanager
async def running_gateway(
    agent: Agent | None = None,
    *,
    max_calls: int = 4,
    secrets: Mapping[str, str] | None = None,
    pace: float = 0.0,
    drain_timeout: float = 5.0,
    mark_every: int = 1,
    expected_key: str | None = None,
    api_key: str = "local-key",
    tracing: Tracing | None = TRACE_CALLS,
) -> AsyncIterator[Served]:
    """Serve a gateway in-process on 127.0.0.1 port 0 until the block ends (then drain)."""
    async with LocalServer(pace=pace, ping_interval=None, expected_key=expected_key).running() as server:
        gateway = Gateway(
            agent or weather_agent(settings=engine.SessionSettings(ready_timeout=3, close_timeout=1)),
            max_calls=max_calls,
            provider=engine.Inworld(api_key=api_key, url=server.url()),
            secrets=secrets,
            bridge=BridgeOptions(start_timeout=3.0, close_timeout=1.0, mark_every=mark_every),
            tracing=tracing,
        )
        sock = listening_socket("127.0.0.1", 0)
        stop, stopped = anyio.Event(), anyio.Event()
        served = Served(
            gateway=gateway, port=sock.getsockname()[1], server=server, stop=stop, stopped=stopped
        )

        async def run() -> None:
            try:
                await serve_gateway(gateway, sock, stop=stop, drain_timeout=drain_timeout)
            finally:
                stopped.set()

        with sock:
            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
                try:
                    yield served
                finally:
                    stop.set()
                    with anyio.fail_after(drain_timeout + 5):
                        await stopped.wait()


async def http(
    port: int, method: str, path: str, *, body: bytes = b"", headers: Mapping[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request to 127.0.0.1:port (Connection: close): status, headers, body."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(request)
        data = b""
        while True:
            try:
                data += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                break
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    if parsed.get("transfer-encoding") == "chunked":
        rest = _unchunk(rest)
    return int(status_line.split()[1]), parsed, rest


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return out


class Phone:
    """A Telnyx-like carrier on one call (see the module docstring); A-law, Telnyx's field names."""

    def __init__(self, transport: Transport, *, speed: float = 4.0, call_sid: str = "v3:call-1") -> None:
        self.transport = transport
        self.speed = speed
        self.call_sid = call_sid
        self.stream_sid = "stream-1"
        self.received: list[dict[str, Any]] = []  # every frame the gateway sent, in order
        self.played_bytes = 0
        self.echoed: list[str] = []
        self.cleared_marks: list[str] = []
        self.clears = 0
        self._queue: list[bytes | str] = []  # audio to play, and mark names, in order
        self._wake = anyio.Event()
        self._changed = anyio.Event()
        self._chunk = 0
        self._timestamp = 0
        self.closed: BaseException | None = None

    @property
    def played_ms(self) -> float:
        return self.played_bytes / 8

    async def start(self, parameters: Mapping[str, str] | None = None) -> None:
        await self.send({"event": "connected", "version": "1.0.0"})
        fmt = {"encoding": "PCMA", "sample_rate": 8000, "channels": 1}
        start = {"user_id": "U1", "call_control_id": self.call_sid, "media_format": fmt}
        start["custom_parameters"] = dict(parameters or {})
        await self.send(
            {"event": "start", "sequence_number": "1", "start": start, "stream_id": self.stream_sid}
        )

    async def send(self, frame: Mapping[str, Any]) -> None:
        await self.transport.send(json.dumps(frame))

    async def speak(self, audio: bytes, *, paced: bool = True) -> None:
        """Send caller audio in 20 ms frames (paced at ``speed`` times real time)."""
        for offset in range(0, len(audio), FRAME):
            self._chunk += 1
            payload = base64.b64encode(audio[offset : offset + FRAME]).decode()
            media = {"track": "inbound", "chunk": str(self._chunk), "timestamp": str(self._timestamp)}
            await self.send(
                {"event": "media", "stream_id": self.stream_sid, "media": {**media, "payload": payload}}
            )
            self._timestamp += 20
            if paced:
                await anyio.sleep(0.02 / self.speed)

    async def press(self, digit: str) -> None:
        await self.send({"event": "dtmf", "stream_id": self.stream_sid, "dtmf": {"digit": digit}})

    async def hang_up(self) -> None:
        await self.send(
            {"event": "stop", "stream_id": self.stream_sid, "stop": {"call_control_id": self.call_sid}}
        )

    async def run(self) -> None:
        """Read the gateway's frames and play them until the socket closes."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._play)
            try:
                while True:
                    frame = json.loads(await self.transport.receive())
                    self.received.append(frame)
                    kind = frame.get("event")
                    if kind == "media":
                        self._queue.append(base64.b64decode(frame["media"]["payload"]))
                    elif kind == "mark":
                        self._queue.append(frame["mark"]["name"])
                    elif kind == "clear":
                        self.clears += 1
                        self.played_at_clear = self.played_ms
                        dropped = [x for x in self._queue if isinstance(x, str)]
                        self._queue.clear()
                        for name in dropped:
                            self.cleared_marks.append(name)
                            await self._echo(name)
                    self._wake.set()
                    self._notify()
            except engine.ConnectionClosed as exc:
                self.closed = exc
            except engine.TransportError as exc:
                self.closed = exc
            finally:
                self._notify()
                tg.cancel_scope.cancel()

    async def _echo(self, name: str) -> None:
        self.echoed.append(name)
        await self.send({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})

    async def _play(self) -> None:
        while True:
            if not self._queue:
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            head = self._queue[0]
            if isinstance(head, str):
                self._queue.pop(0)
                await self._echo(head)
                self._notify()
                continue
            # Play 20 ms at a time so a clear cuts in promptly.
            piece = head[:FRAME]
            await anyio.sleep(len(piece) / 8000 / self.speed)
            if self._queue and self._queue[0] is head:
                self.played_bytes += len(piece)
                rest = head[FRAME:]
                if rest:
                    self._queue[0] = rest
                else:
                    self._queue.pop(0)
                self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def until(self, done: Any) -> None:
        """Wait until ``done()`` holds (re-checked whenever something arrives or plays)."""
        while not done():
            if self.closed is not None and not done():
                raise AssertionError(f"the gateway closed the call first: {self.closed!r}")
            await self._changed.wait()

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.received if f.get("event") == kind]


@asynccontextmanager
async def phone_call(
    served: Served,
    *,
    speed: float = 4.0,
    parameters: Mapping[str, str] | None = None,
    start: bool = True,
    headers: Mapping[str, str] | None = None,
    dialect: str = "twilio",
) -> AsyncIterator[Any]:
    """A call to the gateway's stream: Twilio's simulated carrier (tests/gateway/carrier.py), or a
    Telnyx-speaking :class:`Phone`; started, its frames read in the background."""
    url = f"{served.ws}/{dialect}/stream"
    if dialect == "twilio":
        async with twilio_call(
            url, parameters=parameters, headers=headers, speed=speed, start=start
        ) as carrier:
            yield carrier
        return
    settings = engine.TransportSettings(close_timeout=1)
    async with connect(url, headers or {}, settings) as transport:
        phone = Phone(transport, speed=speed)
        async with anyio.create_task_group() as tg:
            tg.start_soon(phone.run)
            if start:
                await phone.start(parameters)
            yield phone
            tg.cancel_scope.cancel()


def frames(phone: Any, kind: str) -> list[dict[str, Any]]:
    """The frames of ``kind`` the gateway sent to ``phone``."""
    return [f for f in phone.received if f.get("event") == kind]
