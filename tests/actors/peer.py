"""A scripted realtime peer for runtime tests: a real WebSocket server on 127.0.0.1.

It answers the handshake the way the service does and plays short, fixed
responses, recording every client message so tests can assert on the wire.
Tests steer it through ``on(type)`` hooks that return server events to send.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio

from engine.errors import ConnectionClosed
from engine.transports.base import Transport
from engine.transports.listen import serve

Reply = list[dict[str, Any]]
Hook = Callable[[dict[str, Any]], Reply]


def audio_b64(ms: int, rate: int = 24000) -> str:
    """Base64 of ``ms`` of quiet PCM16."""
    return base64.b64encode(b"\x01\x00" * (rate * ms // 1000)).decode()


def audio_response(rid: str, item: str, text: str, chunks: int = 3) -> Reply:
    """A GA-ordered audio response (protocol.md §6a steps 9-17)."""
    events: Reply = [
        {"type": "response.created", "response": {"id": rid, "status": "in_progress"}},
        {"type": "response.output_item.added", "response_id": rid, "output_index": 0,
         "item": {"id": item, "type": "message", "role": "assistant", "status": "in_progress", "content": []}},
        {"type": "conversation.item.added",
         "item": {"id": item, "type": "message", "role": "assistant", "content": []}},
        {"type": "response.content_part.added", "response_id": rid, "item_id": item, "output_index": 0,
         "content_index": 0, "part": {"type": "audio", "transcript": ""}},
    ]
    for i in range(chunks):
        events.append({"type": "response.output_audio.delta", "response_id": rid, "item_id": item,
                       "output_index": 0, "content_index": 0, "delta": audio_b64(60)})
        events.append({"type": "response.output_audio_transcript.delta", "response_id": rid, "item_id": item,
                       "output_index": 0, "content_index": 0, "delta": text.split()[i % len(text.split())]})
    events += [
        {"type": "response.output_audio.done", "response_id": rid, "item_id": item},
        {"type": "response.output_audio_transcript.done", "response_id": rid, "item_id": item,
         "transcript": text},
        {"type": "response.done", "response": {"id": rid, "status": "completed",
                                               "usage": {"total_tokens": 12, "input_tokens": 5,
                                                         "output_tokens": 7}}},
    ]
    return events  # fmt: skip


class Peer:
    """Scripted server. Default behaviour: handshake, item echo, one audio answer per response.create."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.hooks: dict[str, Hook] = {}
        self.responses = 0
        self.port = 0
        self.silent_close = False  # never answer the close handshake
        self.transport: Transport | None = None
        self.got = anyio.Event()

    def on(self, kind: str) -> Callable[[Hook], Hook]:
        """Replace the default answer to client events of ``kind``."""

        def register(hook: Hook) -> Hook:
            self.hooks[kind] = hook
            return hook

        return register

    def sent_types(self) -> list[str]:
        """Types of every client message received so far."""
        return [m["type"] for m in self.received]

    def check_handshake(self, path: str, headers: Mapping[str, str]) -> tuple[int, str] | None:
        if "authorization" not in {k.lower() for k in headers}:
            return 401, "missing Authorization"
        return None

    async def handle(self, transport: Transport, path: str, headers: Mapping[str, str]) -> None:
        self.paths.append(path)
        self.headers.append({k.lower(): v for k, v in headers.items()})
        self.transport = transport
        await self.push([{"type": "session.created", "session": {"type": "realtime"}},
                         {"type": "conversation.created", "conversation": {"id": "conv_1"}}])
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
                await anyio.sleep_forever()

    async def push(self, events: Reply) -> None:
        """Send server events now."""
        assert self.transport is not None
        for event in events:
            await self.transport.send(json.dumps(event))

    async def wait_for(self, kind: str) -> dict[str, Any]:
        """Wait until a client message of ``kind`` has arrived; return the first one."""
        while True:
            for message in self.received:
                if message["type"] == kind:
                    return message
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
                    {"type": "conversation.item.done", "item": item}]
        if kind == "response.create":
            self.responses += 1
            n = self.responses
            return audio_response(f"resp_{n}", f"item_a{n}", "Hello from the peer")
        return []


@asynccontextmanager
async def running_peer(peer: Peer | None = None) -> AsyncIterator[Peer]:
    """Serve a peer on 127.0.0.1 for the duration of the block."""
    peer = peer or Peer()
    async with anyio.create_task_group() as tg:
        peer.port = await tg.start(serve, peer, "127.0.0.1", 0)
        yield peer
        tg.cancel_scope.cancel()
