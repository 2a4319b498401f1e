"""An in-memory transport pair, and a connector that serves apps without sockets.

Tests of the session, and of the local realtime server, run over this the same
way they would over a socket: :func:`memory_pair` links two
:class:`MemoryTransport` ends with bounded anyio memory streams, and a close
carries its code and reason to the other end, as a WebSocket close frame does.
:class:`MemoryConnector` plugs into anything that takes a
:class:`~engine.transports.base.Connector` and hands each connection to a
server (:meth:`MemoryConnector.serve` runs a
:class:`~engine.transports.base.ServerApp`, handshake check included).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from engine.errors import ConnectionClosed, TransportError
from engine.transports._serving import RequestHeaders, check_handshake, run_app
from engine.transports.base import ServerApp, TransportSettings, as_text, closed, refused, timed_out

_YIELD_EVERY = 16
"""Messages a busy end passes before it yields to the scheduler anyway."""


class MemoryTransport:
    """One end of an in-memory text link; a :class:`~engine.transports.base.Transport`.

    Messages sent before a close are still delivered; after them the other
    end's ``receive`` raises :class:`~engine.errors.ConnectionClosed` with the
    closing end's code and reason. Either end's ``send`` after a close raises it too.
    """

    def __init__(
        self, send: MemoryObjectSendStream[str | bytes], receive: MemoryObjectReceiveStream[str | bytes]
    ) -> None:
        self._send = send
        self._receive = receive
        self._close: tuple[int, str] | None = None
        self._peer: MemoryTransport | None = None
        self._sent = 0
        self._received = 0

    @property
    def close_code(self) -> int | None:
        """The code of the close that ended this link, or ``None`` while open."""
        return self._close[0] if self._close is not None else None

    async def send(self, text: str | bytes) -> None:
        """Send one text message (``bytes``: a binary frame), waiting while the buffer is full."""
        try:
            # Like a socket write with room in the buffer: no task switch, except
            # one every few messages so a fast sender still lets others run.
            self._sent += 1
            if self._sent % _YIELD_EVERY:
                try:
                    self._send.send_nowait(text)
                    return
                except anyio.WouldBlock:
                    pass
            await self._send.send(text)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise self._closed() from None

    async def receive(self) -> str:
        """Wait for the next message; a binary frame is decoded as UTF-8 (see ``as_text``)."""
        try:
            self._received += 1
            if self._received % _YIELD_EVERY:
                try:
                    message = self._receive.receive_nowait()
                except anyio.WouldBlock:
                    message = await self._receive.receive()
            else:
                message = await self._receive.receive()
        except (anyio.ClosedResourceError, anyio.EndOfStream):
            raise self._closed() from None
        return message if type(message) is str else as_text(message)

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close both directions, telling the other end ``code`` and ``reason``. Never raises."""
        for end in (self, self._peer):
            if end is not None and end._close is None:
                end._close = (code, reason)
        self._send.close()
        self._receive.close()
        await anyio.lowlevel.checkpoint()

    def _closed(self) -> ConnectionClosed:
        return closed(*(self._close or (1006, "")))


def memory_pair(max_buffer: float = 16) -> tuple[MemoryTransport, MemoryTransport]:
    """Return ``(client, server)``, two linked ends buffering ``max_buffer`` messages each way.

    ``max_buffer=0`` makes every send wait for the matching receive;
    ``math.inf`` never blocks (use only where the reader is known to keep up).
    """
    to_server_send, to_server_receive = anyio.create_memory_object_stream[str | bytes](max_buffer)
    to_client_send, to_client_receive = anyio.create_memory_object_stream[str | bytes](max_buffer)
    client = MemoryTransport(to_server_send, to_client_receive)
    server = MemoryTransport(to_client_send, to_server_receive)
    client._peer, server._peer = server, client
    return client, server


async def _discard(*ends: MemoryTransport) -> None:
    """Close both ends of a link that never opened (no close frame: 1006)."""
    with anyio.CancelScope(shield=True):
        for end in ends:
            await end.aclose(1006)


class MemoryRequest:
    """A connection attempt as the in-memory server sees it: accept or reject it."""

    def __init__(self, url: str, headers: Mapping[str, str], server_end: MemoryTransport) -> None:
        parts = urlsplit(url)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.headers: Mapping[str, str] = RequestHeaders(headers.items())
        self._server_end = server_end
        self._answered = anyio.Event()
        self.refusal: tuple[int, str] | None = None

    def accept(self) -> MemoryTransport:
        """Complete the handshake; return the server's end of the link."""
        self._answered.set()
        return self._server_end

    def reject(self, status: int, body: str = "") -> None:
        """Refuse the handshake: the client's connect raises ``HandshakeError(status)``."""
        self.refusal = (status, body)
        self._answered.set()


class MemoryConnector:
    """A :class:`~engine.transports.base.Connector` whose server lives in the same process.

    Each ``async with connector(url, headers, settings)`` creates a
    :func:`memory_pair` and queues a :class:`MemoryRequest`; it returns once the
    server accepts (or raises once it rejects). Serve the queue with
    :meth:`serve` (an app) or :meth:`next_request` (by hand). Close the
    connector when done (``with MemoryConnector() as connector:``).
    """

    def __init__(self, max_buffer: float = 16) -> None:
        self._max_buffer = max_buffer
        self._requests_in, self._requests_out = anyio.create_memory_object_stream[MemoryRequest](math.inf)

    @asynccontextmanager
    async def __call__(
        self, url: str, headers: Mapping[str, str] | None = None, settings: TransportSettings | None = None
    ) -> AsyncIterator[MemoryTransport]:
        """Connect to the in-memory server; close (code 1000) on exit.

        Raises:
            HandshakeError: the server rejected the request.
            TransportError: no answer within ``connect_timeout``.
        """
        settings = settings or TransportSettings()
        client, server = memory_pair(self._max_buffer)
        request = MemoryRequest(url, headers or {}, server)
        try:
            await self._handshake(request, settings)
        except BaseException:
            await _discard(client, server)
            raise
        try:
            yield client
        finally:
            await client.aclose()

    async def _handshake(self, request: MemoryRequest, settings: TransportSettings) -> None:
        try:
            self._requests_in.send_nowait(request)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise TransportError("the memory connector is closed") from None
        with anyio.move_on_after(settings.connect_timeout):
            await request._answered.wait()
        if not request._answered.is_set():
            raise timed_out(settings)
        if request.refusal is not None:
            raise refused(*request.refusal)

    def close(self) -> None:
        """Stop taking connections; pending ones are refused with 503, ``serve`` returns."""
        self._requests_in.close()
        while True:
            try:
                request = self._requests_out.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
            request.reject(503, "connector closed")
        self._requests_out.close()

    def __enter__(self) -> MemoryConnector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def next_request(self) -> MemoryRequest:
        """Wait for the next connection attempt.

        Raises:
            anyio.EndOfStream: the connector was closed.
        """
        try:
            return await self._requests_out.receive()
        except anyio.ClosedResourceError:
            raise anyio.EndOfStream from None

    async def serve(
        self, app: ServerApp, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve ``app`` for every connection, like :func:`listen.serve`.

        Runs until cancelled or until the connector is closed (then it waits
        for the open connections' handlers to finish).
        """
        async with anyio.create_task_group() as group:
            task_status.started()
            while True:
                try:
                    request = await self.next_request()
                except anyio.EndOfStream:
                    return
                refusal = check_handshake(app, request.path, request.headers)
                if refusal is not None:
                    request.reject(*refusal)
                    continue
                group.start_soon(run_app, app, request.accept(), request.path, request.headers)
