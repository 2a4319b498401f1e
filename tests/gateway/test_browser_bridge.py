"""The browser bridge over a real socket, with a scripted page (no browser): protocol, acks, reconnect, end.

The page is a small WebSocket client speaking the page's protocol (binary audio
both ways, JSON control): websockets under asyncio, trio-websocket under trio.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
import sniffio

from engine.demo import speech
from engine.gateway import browser_protocol as bp
from engine.observe.logs import CallFilter
from engine.server.faults import Faults
from tests.gateway.serving import Served, http, running_gateway

pytestmark = pytest.mark.anyio
RATE = 24000
FRAME = RATE * 2 // 50  # 20 ms of PCM16


class Page:
    """A scripted page on ``WS /browser``: what it received, by kind, and a way to answer."""

    def __init__(self, socket: Any, trio: bool) -> None:
        self._socket = socket
        self._trio = trio
        self.hello: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []
        self.audio: dict[str, int] = {}  # item id -> bytes received
        self.flushes: list[str | None] = []
        self.close_code: int | None = None

    async def send(self, frame: str | bytes) -> None:
        await (self._socket.send_message(frame) if self._trio else self._socket.send(frame))

    async def receive(self) -> str | bytes:
        return await (self._socket.get_message() if self._trio else self._socket.recv())

    async def speak(self, pcm: bytes) -> None:
        for offset in range(0, len(pcm), FRAME):
            await self.send(pcm[offset : offset + FRAME])

    async def until(self, done: Any) -> None:
        """Read frames (acknowledging all audio as played at once) until ``done()`` or the close."""
        while not done():
            try:
                frame = await self.receive()
            except Exception as closed:  # the library's own "connection closed" exception
                self.close_code = _close_code(closed, self._socket)
                return
            if isinstance(frame, bytes):
                item, pcm = bp.split_audio_frame(frame)
                self.audio[item] = self.audio.get(item, 0) + len(pcm)
                await self.send(bp.control("played", item_id=item, ms=self.audio[item] / (RATE * 2 / 1000)))
                continue
            message = json.loads(frame)
            if message["type"] == "hello":
                self.hello = message
            elif message["type"] == "flush":
                self.flushes.append(message["item_id"])
            else:
                self.events.append(message["event"])

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == kind]


def _close_code(error: BaseException, socket: Any) -> int | None:
    """The close code the gateway sent: websockets' ``rcvd``, or trio-websocket's ``reason``."""
    received = getattr(error, "rcvd", None)
    if received is not None:
        return int(received.code)
    if not hasattr(error, "rcvd") and hasattr(getattr(error, "reason", None), "code"):
        return int(error.reason.code)  # type: ignore[attr-defined]
    return None


@asynccontextmanager
async def page(served: Served, path: str = "/browser") -> AsyncIterator[Page]:
    url = f"{served.ws}{path}"
    if sniffio.current_async_library() == "trio":
        import trio
        import trio_websocket

        # As engine/transports/trio_ws.py: trio-websocket leaves the TCP stream to its opener.
        async with trio.open_nursery() as nursery:
            stream = await trio.open_tcp_stream("127.0.0.1", served.port)
            try:
                socket = await trio_websocket.wrap_client_stream(nursery, stream, "127.0.0.1", path)
                try:
                    yield Page(socket, trio=True)
                finally:
                    await socket.aclose()
            finally:
                await trio.aclose_forcefully(stream)
        return
    from websockets.asyncio.client import connect

    async with connect(url) as socket:
        yield Page(socket, trio=False)


def words(seconds: float) -> bytes:
    return speech(seconds, rate=RATE)


async def test_a_page_talks_acknowledges_and_hangs_up() -> None:
    with anyio.fail_after(10):
        async with running_gateway() as served, page(served) as p:
            await p.until(lambda: p.hello)
            assert (p.hello["input_rate"], p.hello["output_rate"]) == (RATE, RATE)
            assert p.hello["states"]["conversation"] == "session_ready"
            await p.send("garbage")  # counted and logged; the call goes on
            served.server.say_next("What's the weather in Paris?")
            await p.speak(words(0.6) + bytes(RATE * 2 * 6 // 10))
            await p.until(lambda: p.of("metrics"))
            (call,) = p.of("tool_call")
            assert call["name"] == "get_weather" and json.loads(call["arguments"]) == {"city": "Paris"}
            (turn,) = p.of("metrics")
            assert turn["first_played_ms"] is not None  # measured from the page's acknowledgements
            assert [e["text"] for e in p.of("user") if e["final"]] == ["What's the weather in Paris?"]
            live = served.gateway.registry.live[0]
            assert (live.carrier, live.turns) == ("browser", 1)
            await p.send(bp.control("hangup"))
            await p.until(lambda: False)
            await served.gateway.registry.wait_idle()
            assert p.close_code == 1000
            assert live.end_reason == "caller hung up" and not live.failed
            _, _, metrics = await http(served.port, "GET", "/metrics")
            assert 'engine_errors_total{code="browser_malformed"} 1.0' in metrics.decode()


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.addFilter(CallFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_every_record_of_a_browser_call_names_the_call() -> None:
    handler = _Records()
    logger = logging.getLogger("engine")
    logger.addHandler(handler)
    try:
        with anyio.fail_after(10):
            async with running_gateway() as served, page(served) as p:
                await p.until(lambda: p.hello)
                await p.send("garbage")  # logged by the bridge as an unusable frame
                await p.send(bp.control("hangup"))
                await p.until(lambda: False)
                await served.gateway.registry.wait_idle()
    finally:
        logger.removeHandler(handler)
    call_id = p.hello["call_id"]
    unusable = [r for r in handler.records if "unusable frame" in r.getMessage()]
    assert unusable and all(r.call_id == call_id for r in unusable)  # type: ignore[attr-defined]
    assert all(r.carrier_ids == " carrier=browser" for r in unusable)  # type: ignore[attr-defined]


async def test_the_page_sees_the_session_reconnect() -> None:
    with anyio.fail_after(10):
        async with running_gateway() as served, page(served) as p:
            served.server.inject(Faults(drop_at="response.created", close_code=1011), index=0)
            await p.until(lambda: p.hello)
            served.server.say_next("hello")
            await p.speak(words(0.6) + bytes(RATE * 2 * 6 // 10))
            await p.until(lambda: p.of("reconnected"))
            kinds = [e["kind"] for e in p.events if e["kind"] in ("reconnecting", "reconnected")]
            assert kinds == ["reconnecting", "reconnected"]
            moves = [e["new"] for e in p.of("state") if e["machine"] == "conversation"]
            assert "reconnecting" in moves and moves[moves.index("reconnecting") + 1] == "session_ready"


async def test_a_session_that_cannot_start_is_told_to_the_page() -> None:
    with anyio.fail_after(10):
        async with running_gateway(expected_key="another-key") as served, page(served) as p:
            await p.until(lambda: False)
            await served.gateway.registry.wait_idle()
    (error,) = p.of("error")
    assert error["fatal"] and error["message"].startswith("session failed")
    assert p.close_code == 1011 and not p.hello
