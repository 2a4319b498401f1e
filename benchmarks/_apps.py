"""Minimal in-memory servers and transports for the benchmarks.

They answer the session handshake the way the service does (``session.created``,
then ``session.updated`` for the ``session.update``) and otherwise cost as little
as possible, so what is measured is the client.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel

import engine
from benchmarks._common import KEY, MEMORY_URL
from benchmarks._stream import AWAIT_CREATE
from engine.errors import ConnectionClosed
from engine.transports.base import Transport, TransportSettings
from engine.transports.memory import MemoryConnector

CREATED = json.dumps({"type": "session.created", "session": {"type": "realtime", "id": "sess_bench"}})


def updated(update_text: str) -> str:
    """``session.updated`` echoing the configuration of a ``session.update``."""
    session = json.loads(update_text).get("session", {})
    return json.dumps({"type": "session.updated", "session": session})


async def handshake(transport: Transport) -> None:
    """Serve the session handshake on ``transport``."""
    await transport.send(CREATED)
    while True:
        text = await transport.receive()
        if '"session.update"' in text[:40]:
            await transport.send(updated(text))
            return


async def drain(transport: Transport, on_text: Callable[[str], None] | None = None) -> None:
    """Read and discard client messages until the connection closes."""
    try:
        while True:
            text = await transport.receive()
            if on_text is not None:
                on_text(text)
    except ConnectionClosed:
        return


class Push:
    """Handshake, then push pre-encoded server events as fast as the link takes them.

    The push starts when :attr:`go` is set; :attr:`started` is the time of the first send.
    At an :data:`~benchmarks._stream.AWAIT_CREATE` marker it waits for the client's next
    ``response.create``, as a server does before answering a tool output.
    """

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = texts
        self.go = anyio.Event()
        self.started = math.nan
        self.creates = 0  # response.create messages received from the client
        self._created = anyio.Event()

    def _saw(self, text: str) -> None:
        if text.startswith('{"type":"response.create"'):
            self.creates += 1
            self._created.set()

    def check_handshake(self, path: str, headers: Mapping[str, str]) -> tuple[int, str] | None:
        return None

    async def handle(self, transport: Transport, path: str, headers: Mapping[str, str]) -> None:
        try:
            await handshake(transport)
            async with anyio.create_task_group() as tg:
                tg.start_soon(drain, transport, self._saw)
                await self.go.wait()
                self.started = time.perf_counter()
                awaited = 0
                for text in self.texts:
                    if text == AWAIT_CREATE:
                        awaited += 1
                        while self.creates < awaited:
                            self._created = anyio.Event()
                            await self._created.wait()
                        continue
                    await transport.send(text)
        except* ConnectionClosed:
            pass  # the session left


def provider(url: str = MEMORY_URL) -> engine.Inworld:
    """An Inworld provider pointed at ``url``."""
    return engine.Inworld(api_key=KEY, url=url)


@asynccontextmanager
async def serving(app: Any, max_buffer: float = 16) -> AsyncIterator[MemoryConnector]:
    """Serve ``app`` in memory for the block; yields the connector for sessions."""
    connector = MemoryConnector(max_buffer)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(connector.serve, app)
            yield connector
            tg.cancel_scope.cancel()
    finally:
        connector.close()


class NullTransport:
    """A socket that is only a sink: the handshake is scripted, sends are counted.

    ``on_send(text)`` sees every client message as the socket writer hands it over.
    """

    def __init__(self, on_send: Callable[[str], None]) -> None:
        self._on_send = on_send
        self._inbox: list[str] = [CREATED]
        self._wake = anyio.Event()
        self._closed = False

    async def send(self, text: str) -> None:
        if self._closed:
            raise ConnectionClosed("closed", 1000)
        if '"session.update"' in text[:40]:
            self._inbox.append(updated(text))
            self._wake.set()
        self._on_send(text)

    async def receive(self) -> str:
        while not self._inbox:
            if self._closed:
                raise ConnectionClosed("closed", 1000)
            self._wake = anyio.Event()
            await self._wake.wait()
        return self._inbox.pop(0)

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        self._closed = True
        self._wake.set()
        await anyio.lowlevel.checkpoint()


class NullConnector:
    """A :class:`~engine.transports.base.Connector` of :class:`NullTransport` sockets."""

    def __init__(self, on_send: Callable[[str], None]) -> None:
        self._on_send = on_send

    @asynccontextmanager
    async def __call__(
        self, url: str, headers: Mapping[str, str], settings: TransportSettings
    ) -> AsyncIterator[NullTransport]:
        transport = NullTransport(self._on_send)
        try:
            yield transport
        finally:
            await transport.aclose()
