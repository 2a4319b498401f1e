"""The transport under trio, over trio-websocket.

Design: one nursery per connection holds trio-websocket's reader task and our
keep-alive task. trio-websocket sends no pings of its own, so
:meth:`TrioTransport.keep_alive` pings every ``keepalive_interval`` and, when no
pong comes within ``keepalive_timeout``, closes the socket with 1011 (as
websockets does); the pending and later ``receive`` calls then raise
:class:`~engine.errors.ConnectionClosed` with that code.

TCP and TLS are opened here rather than by trio-websocket, so a refused
connection or a bad certificate fails at once with a clear error instead of
leaving the handshake waiting until ``connect_timeout``. trio-websocket does
not report a server that drops the TCP connection without answering the
upgrade (its handshake would wait for ``connect_timeout``), so the stream is
handed to it behind :class:`_Watched`, which ends the wait on the hang-up. Every foreign
exception is translated in :func:`map_error` and :meth:`TrioTransport._closed`,
and the nursery's exception group is unwrapped in :func:`_raise_one`.

trio-websocket measures ``max_message_size`` with ``len()``, so for text it
counts characters where websockets counts bytes: the same or a looser limit.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, NoReturn, cast
from urllib.parse import urlsplit

import h11
import trio
import trio_websocket as tw
import wsproto.utilities

from engine.errors import ConnectionClosed, EngineError, HandshakeError, TransportError, unwrap
from engine.redaction import redact
from engine.transports.base import (
    HUNG_UP,
    TransportSettings,
    as_text,
    cause_of,
    closed,
    refused,
    timed_out,
)

logger = logging.getLogger(__name__)

QUEUE_SIZE = 16
"""Messages trio-websocket buffers before its reader stops reading.

A full queue also stops pongs from being read, so a consumer that stalls longer
than ``keepalive_timeout`` gets its connection closed; 16 matches websockets.
"""

KEEPALIVE_FAILURE = (1011, "keepalive ping timeout")

_Stream = trio.SocketStream | trio.SSLStream[trio.SocketStream]


def map_error(exc: BaseException, *, handshake: bool = False) -> BaseException:
    """Translate a trio-websocket, trio, wsproto, h11 or socket exception into :mod:`engine.errors`.

    With ``handshake`` (the upgrade is not complete, so no caller code has run)
    every other ``Exception`` is foreign too and becomes a ``HandshakeError``;
    otherwise anything else (the caller's own exceptions, cancellation) comes
    back unchanged. Messages are redacted: a server may echo the key.
    """
    if isinstance(exc, tw.ConnectionRejected):
        return refused(int(exc.status_code), _body(exc.body))
    if isinstance(exc, tw.ConnectionClosed):
        return _closed_error(exc.reason)
    if isinstance(exc, tw.HandshakeError):
        return HandshakeError(f"WebSocket handshake failed: {redact(repr(exc))}")
    if isinstance(exc, h11.ProtocolError | wsproto.utilities.ProtocolError):
        # A garbled answer to the upgrade: trio-websocket's reader then fails inside h11.
        if handshake:
            return HandshakeError(f"the server's answer is not a valid WebSocket upgrade ({_named(exc)})")
        return TransportError(f"WebSocket protocol error ({_named(exc)})")
    if isinstance(exc, trio.BrokenResourceError) and isinstance(exc.__cause__, ssl.SSLError):
        return TransportError(f"TLS handshake failed: {exc.__cause__}")
    if isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError | OSError):
        return TransportError(f"socket error: {redact(repr(exc))}")
    if handshake and isinstance(exc, Exception) and not isinstance(exc, EngineError | ValueError):
        return HandshakeError(f"WebSocket handshake failed ({_named(exc)})")
    return exc


def _named(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {redact(str(exc))}"


def _body(body: bytes | None) -> str:
    return body.decode("utf-8", "replace") if body else ""


class TrioTransport:
    """A :class:`~engine.transports.base.Transport` over a trio-websocket connection.

    Used on both sides: the client connection from :func:`connect` and each
    accepted connection of the trio server in :mod:`engine.transports.listen`.
    """

    def __init__(self, ws: tw.WebSocketConnection, settings: TransportSettings) -> None:
        self._ws = ws
        self._settings = settings
        # trio-websocket records 1000 whenever we start the close, whatever code
        # we sent; remember ours (or the keep-alive failure) to report it.
        self._local_close: tuple[int, str] | None = None

    async def send(self, text: str) -> None:
        """Send one text message."""
        try:
            await self._ws.send_message(text)
        except tw.ConnectionClosed as exc:
            raise self._closed(exc) from cause_of(exc)

    async def receive(self) -> str:
        """Wait for the next message; a binary frame is decoded as UTF-8 (see ``as_text``)."""
        try:
            message = await self._ws.get_message()
        except tw.ConnectionClosed as exc:
            raise self._closed(exc) from cause_of(exc)
        return as_text(message)

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close, giving the peer ``close_timeout`` seconds to answer. Never raises.

        When the peer does not answer in time, trio-websocket's own cleanup drops
        the TCP connection as the wait is cancelled.
        """
        if self._local_close is None and self._ws.closed is None:
            self._local_close = (code, reason)
        with trio.move_on_after(self._settings.close_timeout):
            try:
                await self._ws.aclose(code, reason or None)
            except Exception as exc:  # a failed close still leaves us closed
                logger.debug("error while closing: %r", exc)

    async def keep_alive(self) -> None:
        """Ping every ``keepalive_interval``; close with 1011 when a pong is late.

        Returns at once when keep-alive is disabled, and quietly once the
        connection is closed. Run it in the connection's nursery.
        """
        interval = self._settings.keepalive_interval
        if interval is None:
            return
        while True:
            await trio.sleep(interval)
            with trio.move_on_after(self._settings.keepalive_timeout) as waiting:
                try:
                    await self._ws.ping()
                except (tw.ConnectionClosed, ValueError):
                    return
            if waiting.cancelled_caught:
                logger.info("no pong within %.1fs: closing", self._settings.keepalive_timeout)
                await self.aclose(*KEEPALIVE_FAILURE)
                return

    def _closed(self, exc: tw.ConnectionClosed) -> ConnectionClosed:
        if self._local_close is None:
            return _closed_error(exc.reason)
        return closed(*self._local_close)


def _closed_error(reason: tw.CloseReason | None) -> ConnectionClosed:
    if reason is None:  # trio-websocket had not recorded why: treat as abnormal
        return closed(None)
    return closed(reason.code, reason.reason or "")


@asynccontextmanager
async def connect(
    url: str, headers: Mapping[str, str], settings: TransportSettings
) -> AsyncIterator[TrioTransport]:
    """Open a client WebSocket under trio; close it (bounded) on exit.

    Does not apply the URL policy: go through :func:`engine.transports.connect`.

    Raises:
        HandshakeError: the server answered the upgrade with an HTTP error.
        TransportError: DNS, TCP or TLS failure, or ``connect_timeout`` expired.
    """
    transport: TrioTransport | None = None
    try:
        async with trio.open_nursery() as nursery:
            ws, stream = await _open(nursery, url, headers, settings)
            transport = TrioTransport(ws, settings)
            nursery.start_soon(transport.keep_alive)
            try:
                yield transport
            finally:
                await transport.aclose()
                # trio-websocket leaves the socket open when the peer closed first.
                await trio.aclose_forcefully(stream)
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        _raise_one(group, handshake=transport is None)


async def _open(
    nursery: trio.Nursery, url: str, headers: Mapping[str, str], settings: TransportSettings
) -> tuple[tw.WebSocketConnection, _Stream]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    extra = [(name.encode(), value.encode()) for name, value in headers.items()]
    try:
        with trio.fail_after(settings.connect_timeout):
            stream = await _open_stream(host, port, secure)
            watched = _Watched(stream)
            try:
                with trio.CancelScope() as watched.handshake:
                    ws = await tw.wrap_client_stream(
                        nursery,
                        cast(Any, watched),  # it only uses the Stream interface (and .socket, forwarded)
                        _host_header(host, port, secure),
                        resource,
                        extra_headers=extra,
                        message_queue_size=QUEUE_SIZE,
                        max_message_size=settings.max_message_size,
                    )
                    watched.handshake = None
                    return ws, stream
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
            await trio.aclose_forcefully(stream)
            raise TransportError(HUNG_UP)
    except trio.TooSlowError:
        raise timed_out(settings) from None
    except (OSError, trio.BrokenResourceError) as exc:
        raise map_error(exc) from cause_of(exc)


class _Watched(trio.abc.Stream):
    """The connection's stream, as trio-websocket reads it; a hang-up cancels ``handshake``.

    ``handshake`` is the cancel scope around the opening handshake, and None
    once it is over (from then on trio-websocket reports a hang-up itself).
    """

    def __init__(self, inner: _Stream) -> None:
        self.inner = inner
        self.handshake: trio.CancelScope | None = None

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        try:
            data = await self.inner.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._hung_up()
            raise
        if not data:
            self._hung_up()
        return bytes(data)

    def _hung_up(self) -> None:
        if self.handshake is not None:
            self.handshake.cancel()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # .socket, for trio-websocket's local/remote


async def _open_stream(host: str, port: int, secure: bool) -> _Stream:
    if not secure:
        return await trio.open_tcp_stream(host, port)
    stream = await trio.open_ssl_over_tcp_stream(
        host, port, ssl_context=ssl.create_default_context(), https_compatible=True
    )
    try:
        await stream.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream


def _host_header(host: str, port: int, secure: bool) -> str:
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass
    return host if port == (443 if secure else 80) else f"{host}:{port}"


def _raise_one(group: BaseExceptionGroup[BaseException], *, handshake: bool = False) -> NoReturn:
    """Re-raise the one meaningful exception of a nursery's group, mapped.

    The nursery wraps everything (the caller's own exception included); no
    group may cross the public API. Cancellations are dropped when something
    else failed; with several real failures the caller's own comes first.
    """
    chosen = unwrap(group, cancelled=trio.Cancelled, prefer=lambda e: map_error(e, handshake=handshake) is e)
    mapped = map_error(chosen, handshake=handshake)
    if mapped is not chosen:
        raise mapped from cause_of(chosen)
    context = chosen.__context__
    try:
        raise chosen
    finally:
        chosen.__context__ = context  # do not chain the group we unwrapped
