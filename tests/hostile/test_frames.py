"""Frames that are not what a realtime server should send: binary frames, under every transport.

Realtime APIs speak JSON in text frames. A binary frame that is not UTF-8 text
is a bad message, not a dead socket: the session reports a non-fatal
``Error(code="binary_frame", source="protocol")`` and goes on, under
trio-websocket, websockets and the in-memory transport alike. A binary frame
that is UTF-8 JSON is read as text (some servers send JSON that way), and one
that is UTF-8 but not JSON is the usual ``protocol_error``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

import engine
from engine import events as ev
from engine.errors import BinaryFrameError, TransportError
from engine.transports import MemoryConnector
from engine.transports.asyncio_ws import AsyncioTransport
from engine.transports.base import as_text
from engine.transports.memory import MemoryTransport
from engine.transports.trio_ws import TrioTransport
from tests.actors.helpers import make_session
from tests.actors.peer import Peer, Reply, running_peer

pytestmark = pytest.mark.anyio

NOT_UTF8 = b"\xff\xfe\x00binary garbage\x80"


async def send_binary(transport: Any, data: bytes) -> None:
    """Send ``data`` as one binary frame from the server's end of any transport."""
    if isinstance(transport, MemoryTransport):
        await transport.send(data)
    elif isinstance(transport, TrioTransport):
        await transport._ws.send_message(data)
    else:
        assert isinstance(transport, AsyncioTransport)
        await transport._ws.send(data)


class BinaryPeer(Peer):
    """Answers the first text message with ``frame`` as a binary frame before the usual answer."""

    def __init__(self, frame: bytes) -> None:
        super().__init__()
        self.frame = frame
        self.sent_binary = False

    async def push(self, events: Reply) -> None:
        if not self.sent_binary and any(e["type"] == "conversation.item.added" for e in events):
            self.sent_binary = True
            assert self.transport is not None
            await send_binary(self.transport, self.frame)
        await super().push(events)


@asynccontextmanager
async def serving(peer: Peer, transport: str) -> AsyncIterator[dict[str, Any]]:
    """The peer on a real socket, or behind a MemoryConnector; yields the session's extra arguments."""
    if transport == "socket":
        async with running_peer(peer):
            yield {}
        return
    with MemoryConnector() as connector:
        async with anyio.create_task_group() as group:
            await group.start(connector.serve, peer)
            yield {"connector": connector}
            group.cancel_scope.cancel()


@pytest.mark.parametrize("transport", ["socket", "memory"])
@pytest.mark.parametrize(
    ("frame", "code"),
    [(NOT_UTF8, "binary_frame"), (b"\xc3\x28", "binary_frame"), (b"not json", "protocol_error")],
)
async def test_a_binary_frame_is_a_non_fatal_protocol_error(transport: str, frame: bytes, code: str) -> None:
    # Before the fix a binary frame that was not UTF-8 dropped the socket (a reconnect per frame).
    peer = BinaryPeer(frame)
    with anyio.fail_after(5):
        async with serving(peer, transport) as extra:
            session = make_session(peer, **extra)
            seen: list[Any] = []
            session.on(ev.Error, ev.Reconnecting)(seen.append)
            async with session.connect():
                await session.send_text("hello")
                await session.wait_for(ev.ResponseDone, timeout=2)
                await session.send_text("and again")  # the same socket goes on
                await session.wait_for(ev.ResponseDone, timeout=2)
    assert [(type(e), e.code, e.source, e.fatal) for e in seen] == [(ev.Error, code, "protocol", False)]
    assert len(peer.paths) == 1


@pytest.mark.parametrize("transport", ["socket", "memory"])
async def test_json_in_a_binary_frame_is_read_as_text(transport: str) -> None:
    peer = BinaryPeer(b'{"type": "conversation.created", "conversation": {"id": "conv_2"}}')
    with anyio.fail_after(5):
        async with serving(peer, transport) as extra:
            session = make_session(peer, **extra)
            errors: list[Any] = []
            session.on(ev.Error)(errors.append)
            async with session.connect():
                await session.send_text("hello")
                await session.wait_for(ev.ResponseDone, timeout=2)
    assert errors == []
    assert peer.sent_binary


def test_a_frame_that_is_not_utf8_is_a_binary_frame_error_that_is_also_a_transport_error() -> None:
    with pytest.raises(BinaryFrameError, match="binary frame of 3 bytes is not UTF-8") as caught:
        as_text(b"\xff\xfe\x00")
    assert caught.value.code == "binary_frame"
    assert isinstance(caught.value, TransportError)  # what code reading a socket directly catches
    assert as_text(bytearray(b"ok")) == "ok"


async def test_the_memory_transport_carries_binary_frames() -> None:
    client, server = engine.transports.memory_pair()
    with anyio.fail_after(1):
        await server.send(b'"text"')
        await server.send(NOT_UTF8)
        await server.send("after")
        assert await client.receive() == '"text"'
        with pytest.raises(BinaryFrameError):
            await client.receive()
        assert await client.receive() == "after"
        await client.aclose()
        await server.aclose()
