"""A scripted realtime peer for runtime tests: a real WebSocket server on 127.0.0.1.

It answers the handshake the way the service does and plays short, fixed
responses, recording every client message so tests can assert on the wire.
Tests steer it through ``on(type)`` hooks that return server events to send,
and push events of their own with ``push`` (sends are serialised, so a test
and the peer's own answers never interleave inside a message).

:class:`MuteServer` is the other extreme: it completes the upgrade and the
session handshake by hand over raw TCP, then reads and ignores everything, so
a client's close frame is never answered.
"""

from __future__ import annotations

import base64
import json
import re
import struct
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc

from engine.errors import ConnectionClosed
from engine.transports.base import Transport
from engine.transports.listen import serve
from tests.transports.apps import accept_upgrade

Reply = list[dict[str, Any]]
Hook = Callable[[dict[str, Any]], Reply]

SAMPLE = b"\x01\x00"
"""One quiet PCM16 sample: the peer's audio is made of these."""


def audio_b64(ms: int, rate: int = 24000) -> str:
    """Base64 of ``ms`` of quiet PCM16."""
    return base64.b64encode(SAMPLE * (rate * ms // 1000)).decode()


def pieces(text: str, count: int) -> list[str]:
    """``text`` cut into ``count`` consecutive pieces that join back to it."""
    step = -(-len(text) // count)
    return [text[i * step : (i + 1) * step] for i in range(count)]


def audio_deltas(rid: str, item: str, count: int, ms: int = 60) -> Reply:
    """``count`` audio deltas of ``ms`` each for an assistant item."""
    return [
        {"type": "response.output_audio.delta", "response_id": rid, "item_id": item,
         "output_index": 0, "content_index": 0, "delta": audio_b64(ms)}
        for _ in range(count)
    ]  # fmt: skip


def response_head(rid: str, item: str) -> Reply:
    """``response.created`` and the assistant message item (docs/protocol.md §6.1 steps 9-12)."""
    message = {"id": item, "type": "message", "role": "assistant", "status": "in_progress", "content": []}
    return [
        {"type": "response.created", "response": {"id": rid, "status": "in_progress"}},
        {"type": "response.output_item.added", "response_id": rid, "output_index": 0, "item": message},
        {"type": "conversation.item.added",
         "item": {"id": item, "type": "message", "role": "assistant", "content": []}},
        {"type": "response.content_part.added", "response_id": rid, "item_id": item, "output_index": 0,
         "content_index": 0, "part": {"type": "audio", "transcript": ""}},
    ]  # fmt: skip


def response_done(rid: str, status: str = "completed", output: list[dict[str, Any]] | None = None) -> Reply:
    """``response.done`` with usage (and ``output`` items, for function calls)."""
    response: dict[str, Any] = {
        "id": rid,
        "status": status,
        "output": output or [],
        "usage": {"total_tokens": 12, "input_tokens": 5, "output_tokens": 7},
    }
    if status == "cancelled":
        response["status_details"] = {"type": "cancelled", "reason": "turn_detected"}
    return [{"type": "response.done", "response": response}]


def audio_response(rid: str, item: str, text: str, chunks: int = 3) -> Reply:
    """A GA-ordered audio response (docs/protocol.md §6.1 steps 9-17)."""
    events = response_head(rid, item)
    for delta, words in zip(audio_deltas(rid, item, chunks), pieces(text, chunks), strict=True):
        events.append(delta)
        events.append({"type": "response.output_audio_transcript.delta", "response_id": rid, "item_id": item,
                       "output_index": 0, "content_index": 0, "delta": words})  # fmt: skip
    events += [
        {"type": "response.output_audio.done", "response_id": rid, "item_id": item},
        {"type": "response.output_audio_transcript.done", "response_id": rid, "item_id": item,
         "transcript": text},
    ]  # fmt: skip
    return events + response_done(rid)


def function_call_response(rid: str, calls: list[tuple[str, str, str]]) -> Reply:
    """A response whose output is function calls ``(call_id, name, arguments)`` (docs/protocol.md §6.3)."""
    events: Reply = [{"type": "response.created", "response": {"id": rid, "status": "in_progress"}}]
    done_items = []
    for index, (call_id, name, arguments) in enumerate(calls):
        item_id = f"item_{call_id}"
        started = {"id": item_id, "type": "function_call", "call_id": call_id, "name": name,
                   "arguments": "", "status": "in_progress"}  # fmt: skip
        done = {**started, "arguments": arguments, "status": "completed"}
        done_items.append(done)
        where = {"response_id": rid, "item_id": item_id, "output_index": index, "call_id": call_id}
        events += [
            {"type": "response.output_item.added", "response_id": rid, "output_index": index,
             "item": started},
            {"type": "conversation.item.added", "item": started},
            {"type": "response.function_call_arguments.delta", **where, "delta": arguments},
            {"type": "response.function_call_arguments.done", **where, "name": name, "arguments": arguments},
            {"type": "response.output_item.done", "response_id": rid, "output_index": index, "item": done},
            {"type": "conversation.item.done", "item": done},
        ]  # fmt: skip
    return events + response_done(rid, output=done_items)


def vad_turn(item: str, words: list[str]) -> Reply:
    """A server-VAD user turn (docs/protocol.md §6.1 steps 4-8): speech, commit, item, transcript."""
    user = {"id": item, "type": "message", "role": "user", "content": [{"type": "input_audio"}]}
    events: Reply = [
        {"type": "input_audio_buffer.speech_started", "item_id": item, "audio_start_ms": 100},
        {"type": "input_audio_buffer.speech_stopped", "item_id": item, "audio_end_ms": 900},
        {"type": "input_audio_buffer.committed", "item_id": item, "previous_item_id": None},
        {"type": "conversation.item.added", "item": user},
        {"type": "conversation.item.done", "item": user},
    ]
    events += [
        {"type": "conversation.item.input_audio_transcription.delta", "item_id": item, "content_index": 0,
         "delta": word}
        for word in words
    ]  # fmt: skip
    events.append({"type": "conversation.item.input_audio_transcription.completed", "item_id": item,
                   "content_index": 0, "transcript": "".join(words)})  # fmt: skip
    return events


class Peer:
    """Scripted server. Default behaviour: handshake, item echo, one audio answer per response.create."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.hooks: dict[str, Hook] = {}
        self.responses = 0
        self.port = 0
        self.silent_close = False  # never return from the handler (the library still answers close)
        self.stopping = anyio.Event()  # set when the peer shuts down: ends a silent handler
        self.refuse: tuple[int, str] | None = None  # refuse every handshake with (status, body)
        self.transport: Transport | None = None
        self.got = anyio.Event()
        self._send_lock = anyio.Lock()

    def on(self, kind: str) -> Callable[[Hook], Hook]:
        """Replace the default answer to client events of ``kind``."""

        def register(hook: Hook) -> Hook:
            self.hooks[kind] = hook
            return hook

        return register

    def sent_types(self) -> list[str]:
        """Types of every client message received so far."""
        return [m["type"] for m in self.received]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        """Every client message of ``kind`` received so far, in order."""
        return [m for m in self.received if m["type"] == kind]

    def check_handshake(self, path: str, headers: Mapping[str, str]) -> tuple[int, str] | None:
        if self.refuse is not None:
            return self.refuse
        if "authorization" not in {k.lower() for k in headers}:
            return 401, "missing Authorization"
        return None

    async def handle(self, transport: Transport, path: str, headers: Mapping[str, str]) -> None:
        self.paths.append(path)
        self.headers.append({k.lower(): v for k, v in headers.items()})
        self.transport = transport
        await self.push([{"type": "session.created", "session": {"type": "realtime"}},
                         {"type": "conversation.created", "conversation": {"id": "conv_1"}}])  # fmt: skip
        try:
            while True:
                text = await transport.receive()
                message = json.loads(text)
                self.received.append(message)
                self.got.set()
                self.got = anyio.Event()
                await self.push(self.answer(message))
        except ConnectionClosed:
            return
        finally:
            if self.silent_close:
                await self.stopping.wait()

    async def push(self, events: Reply) -> None:
        """Send server events now, as one uninterrupted run."""
        assert self.transport is not None
        async with self._send_lock:
            for event in events:
                await self.transport.send(json.dumps(event))

    async def wait_for(self, kind: str, count: int = 1) -> dict[str, Any]:
        """Wait until ``count`` client messages of ``kind`` have arrived; return the last of them."""
        while True:
            found = self.of_type(kind)
            if len(found) >= count:
                return found[count - 1]
            await self.got.wait()

    def answer(self, message: dict[str, Any]) -> Reply:
        kind = message["type"]
        if kind in self.hooks:
            return self.hooks[kind](message)
        if kind == "session.update":
            return [{"type": "session.updated", "session": message["session"]}]
        if kind == "conversation.item.create":
            item = message["item"]
            return [{"type": "conversation.item.added", "item": item},
                    {"type": "conversation.item.done", "item": item}]  # fmt: skip
        if kind == "response.create":
            return self.next_audio_response()
        return []

    def next_audio_response(self, text: str = "Hello from the peer") -> Reply:
        """The default answer to ``response.create``: ``resp_N`` with item ``item_aN``."""
        self.responses += 1
        n = self.responses
        return audio_response(f"resp_{n}", f"item_a{n}", text)


@asynccontextmanager
async def running_peer(peer: Peer | None = None) -> AsyncIterator[Peer]:
    """Serve a peer on 127.0.0.1 for the duration of the block."""
    peer = peer or Peer()
    async with anyio.create_task_group() as tg:
        peer.port = await tg.start(serve, peer, "127.0.0.1", 0)
        yield peer
        peer.stopping.set()
        tg.cancel_scope.cancel()


# ---------------------------------------------------------------------- a server that never closes


class MuteServer:
    """Raw TCP: the upgrade and ``session.created``/``session.updated`` by hand, then deaf.

    After the session is ready it reads and discards every byte, so no close
    frame, pong or anything else is ever sent back; ``dropped`` is set when the
    client finally drops the TCP connection.
    """

    def __init__(self) -> None:
        self.port = 0
        self.ready = anyio.Event()
        self.dropped = anyio.Event()

    async def handle(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            buffer = b""
            while b"\r\n\r\n" not in buffer:
                buffer += await stream.receive()
            request, _, buffer = buffer.partition(b"\r\n\r\n")
            found = re.search(rb"sec-websocket-key:\s*(\S+)", request, re.IGNORECASE)
            assert found is not None
            await accept_upgrade(stream, found.group(1))
            await stream.send(_frame({"type": "session.created", "session": {"type": "realtime"}}))
            try:
                while True:
                    message, buffer = await _read_frame(stream, buffer)
                    if message is not None and json.loads(message).get("type") == "session.update":
                        session = json.loads(message)["session"]
                        await stream.send(_frame({"type": "session.updated", "session": session}))
                        break
                self.ready.set()
                while True:  # deaf from now on
                    await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                self.dropped.set()


def _frame(event: dict[str, Any]) -> bytes:
    """An unmasked server text frame."""
    payload = json.dumps(event).encode()
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload


async def _read_frame(stream: anyio.abc.SocketStream, buffer: bytes) -> tuple[str | None, bytes]:
    """One masked client frame: its text (``None`` for control frames) and the bytes after it."""

    async def need(count: int) -> None:
        nonlocal buffer
        while len(buffer) < count:
            buffer += await stream.receive()

    await need(2)
    opcode, size = buffer[0] & 0x0F, buffer[1] & 0x7F
    offset = 2
    if size == 126:
        await need(4)
        size, offset = struct.unpack("!H", buffer[2:4])[0], 4
    elif size == 127:
        await need(10)
        size, offset = struct.unpack("!Q", buffer[2:10])[0], 10
    await need(offset + 4 + size)
    mask = buffer[offset : offset + 4]
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(buffer[offset + 4 : offset + 4 + size]))
    rest = buffer[offset + 4 + size :]
    return (payload.decode() if opcode == 0x1 else None), rest


@asynccontextmanager
async def mute_server() -> AsyncIterator[MuteServer]:
    """Run a :class:`MuteServer` on 127.0.0.1 with a free port for the block."""
    server = MuteServer()
    async with (
        await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0) as listener,
        anyio.create_task_group() as group,
    ):
        server.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        group.start_soon(listener.serve, server.handle)
        yield server
        group.cancel_scope.cancel()
