"""Test servers: an app for :func:`serve` and a raw socket server that never answers."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import attrs

from engine.errors import ConnectionClosed
from engine.transports.base import Transport, TransportSettings
from engine.transports.listen import serve

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class EchoApp:
    """Echoes text; the path picks other behaviour.

    ``/bye`` closes with 4001 "bye"; ``/big?size=N`` sends one message of N
    characters. Refuses (401) a handshake without ``Authorization``. Records
    every accepted path and headers, and how each connection ended.
    """

    def __init__(self) -> None:
        self.seen: list[tuple[str, Mapping[str, str]]] = []
        self.ended: list[ConnectionClosed] = []
        self.accepted = anyio.Event()
        self.finished = anyio.Event()

    def check_handshake(self, path: str, headers: Mapping[str, str]) -> tuple[int, str] | None:
        if "authorization" not in headers:
            return (401, "missing Authorization")
        return None

    async def handle(self, transport: Transport, path: str, headers: Mapping[str, str]) -> None:
        self.seen.append((path, headers))
        self.accepted.set()
        try:
            if path.startswith("/bye"):
                await transport.aclose(4001, "bye")
            elif path.startswith("/big"):
                await transport.send("x" * int(path.partition("size=")[2]))
                await transport.receive()
            elif path.startswith("/crash"):
                raise RuntimeError("handler bug")
            else:
                while True:
                    await transport.send(await transport.receive())
        except ConnectionClosed as exc:
            self.ended.append(exc)
        finally:
            self.finished.set()


@attrs.define
class RunningServer:
    """A :func:`serve` task the test can stop without ending its own scope."""

    url: str
    scope: anyio.CancelScope

    def stop(self) -> None:
        self.scope.cancel()


@asynccontextmanager
async def running(app: EchoApp, settings: TransportSettings | None = None) -> AsyncIterator[RunningServer]:
    """Run ``serve(app)`` on 127.0.0.1 with a free port for the block."""
    scope = anyio.CancelScope()

    async def run(*, task_status: anyio.abc.TaskStatus[int]) -> None:
        with scope:
            await serve(app, "127.0.0.1", 0, settings=settings, task_status=task_status)

    async with anyio.create_task_group() as group:
        port = await group.start(run)
        yield RunningServer(f"ws://127.0.0.1:{port}", scope)
        scope.cancel()


async def accept_upgrade(stream: anyio.abc.SocketStream, key: bytes) -> None:
    """Answer a WebSocket upgrade request by hand: 101 with the accept hash of ``key``."""
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
    await stream.send(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


@attrs.define
class SilentServer:
    """Completes the upgrade by hand, then reads and ignores everything (no pong, no close)."""

    url: str = ""
    upgrade: bool = True
    """False: never answer the HTTP request either."""
    dropped: anyio.Event = attrs.field(factory=anyio.Event)

    async def handle(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            request = b""
            while b"\r\n\r\n" not in request and self.upgrade:
                request += await stream.receive()
            found = re.search(rb"sec-websocket-key:\s*(\S+)", request, re.IGNORECASE)
            if found is not None:
                await accept_upgrade(stream, found.group(1))
            try:
                while True:
                    await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                self.dropped.set()


@asynccontextmanager
async def silent_server(*, upgrade: bool = True) -> AsyncIterator[SilentServer]:
    """Run a :class:`SilentServer` on 127.0.0.1 with a free port for the block."""
    server = SilentServer(upgrade=upgrade)
    async with (
        await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0) as listener,
        anyio.create_task_group() as group,
    ):
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        server.url = f"ws://127.0.0.1:{port}"
        group.start_soon(listener.serve, server.handle)
        yield server
        group.cancel_scope.cancel()


@asynccontextmanager
async def hangup_server(*, read_request: bool = True) -> AsyncIterator[str]:
    """A TCP server on 127.0.0.1 that closes each connection without answering the upgrade; yields its URL."""

    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            request = b""
            while read_request and b"\r\n\r\n" not in request:
                request += await stream.receive()

    async with (
        await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0) as listener,
        anyio.create_task_group() as group,
    ):
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        group.start_soon(listener.serve, handle)
        yield f"ws://127.0.0.1:{port}"
        group.cancel_scope.cancel()
