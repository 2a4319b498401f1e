"""The transport under asyncio, over websockets' asyncio API (websockets >= 13).

websockets already pings (``ping_interval``/``ping_timeout``, closing with 1011
on a late pong), bounds the close handshake (``close_timeout``) and limits
message size (``max_size``, in bytes), so this module maps settings in and
exceptions out (:func:`map_error`). Two defaults are turned off so both backends
behave the same: permessage-deflate (trio-websocket has none, and base64 audio
barely compresses) and proxies from the environment (trio-websocket ignores them).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.connection import Connection
from websockets.exceptions import (
    ConnectionClosed as WsConnectionClosed,
)
from websockets.exceptions import (
    InvalidHandshake,
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
    WebSocketException,
)
from websockets.protocol import State

from engine.errors import HandshakeError, TransportError
from engine.redaction import redact
from engine.transports.base import HUNG_UP, TransportSettings, as_text, cause_of, closed, refused, timed_out
from engine.transports.urls import redact_headers, redact_url

logger = logging.getLogger(__name__)
_WS_LOGGER = logging.getLogger("websockets.client")  # created at import, so redaction finds it


def map_error(exc: BaseException) -> BaseException:
    """Translate a websockets or socket exception into :mod:`engine.errors`.

    Anything else (the caller's own exceptions, cancellation) comes back unchanged.
    """
    if isinstance(exc, WsConnectionClosed):
        # The peer's close frame says why; without one, the frame we sent does
        # (1009 too big, 1011 keep-alive timeout); with neither it was abnormal.
        frame = exc.rcvd or exc.sent
        return closed(None) if frame is None else closed(frame.code, frame.reason)
    if isinstance(exc, InvalidStatus):
        body = exc.response.body or b""
        return refused(exc.response.status_code, body.decode("utf-8", "replace"))
    if isinstance(exc, InvalidMessage) and isinstance(exc.__cause__, EOFError):
        return TransportError(HUNG_UP)  # not a refusal: a retry may well succeed
    if isinstance(exc, InvalidHandshake):
        return HandshakeError(f"WebSocket handshake failed: {redact(str(exc))}")
    if isinstance(exc, InvalidURI):
        return ValueError("invalid WebSocket URL")  # the message would repeat the URL
    if isinstance(exc, OSError | WebSocketException):
        return TransportError(f"socket error: {redact(repr(exc))}")
    return exc


class AsyncioTransport:
    """A :class:`~engine.transports.base.Transport` over a websockets connection.

    Used on both sides: the client connection from :func:`connect` and each
    accepted connection of the asyncio server in :mod:`engine.transports.listen`.
    """

    def __init__(self, ws: Connection, settings: TransportSettings) -> None:
        self._ws = ws
        self._settings = settings

    async def send(self, text: str) -> None:
        """Send one text message."""
        try:
            await self._ws.send(text)
        except WebSocketException as exc:
            raise map_error(exc) from cause_of(exc)

    async def receive(self) -> str:
        """Wait for the next message; a binary frame is decoded as UTF-8 (see ``as_text``)."""
        try:
            message = await self._ws.recv()
        except WebSocketException as exc:
            raise map_error(exc) from cause_of(exc)
        return as_text(message)

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close, giving the peer ``close_timeout`` seconds to answer. Never raises.

        websockets bounds the wait itself; the outer bound and the final abort
        make sure the socket is gone even if that wait is cut short.
        """
        try:
            with anyio.move_on_after(self._settings.close_timeout):
                await self._ws.close(code, reason)
        except Exception as exc:  # a failed close still leaves us closed
            logger.debug("error while closing: %r", exc)
        finally:
            if self._ws.state is not State.CLOSED:
                self._ws.transport.abort()


class RedactingLogger(logging.LoggerAdapter[logging.Logger]):
    """Logger for websockets that hides credentials in its DEBUG handshake dump.

    websockets logs the request line and every header at DEBUG level
    (``> GET %s HTTP/1.1``, ``< %s %s %s``, ``> %s: %s``); those carry API keys.
    """

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        """Log through the wrapped logger with secret arguments redacted."""
        if isinstance(msg, str) and msg[:2] in ("> ", "< ") and args:
            if msg.endswith("%s: %s") and len(args) == 2:
                name = str(args[0])
                args = (name, redact_headers({name: str(args[1])})[name])
            else:
                args = tuple(redact_url(arg) if isinstance(arg, str) and "?" in arg else arg for arg in args)
        super().log(level, msg, *args, **kwargs)


def ws_options(settings: TransportSettings) -> dict[str, Any]:
    """websockets keyword arguments shared by client and server."""
    return {
        "max_size": settings.max_message_size,
        "open_timeout": settings.connect_timeout,
        "ping_interval": settings.keepalive_interval,
        "ping_timeout": settings.keepalive_timeout,
        "close_timeout": settings.close_timeout,
        "compression": None,
    }


@asynccontextmanager
async def connect(
    url: str, headers: Mapping[str, str], settings: TransportSettings
) -> AsyncIterator[AsyncioTransport]:
    """Open a client WebSocket under asyncio; close it (bounded) on exit.

    Does not apply the URL policy: go through :func:`engine.transports.connect`.

    Raises:
        HandshakeError: the server answered the upgrade with an HTTP error.
        TransportError: DNS, TCP or TLS failure, or ``connect_timeout`` expired.
    """
    try:
        ws = await ws_connect(
            url,
            additional_headers=dict(headers),
            proxy=None,
            logger=RedactingLogger(_WS_LOGGER),
            **ws_options(settings),
        )
    except TimeoutError:
        raise timed_out(settings) from None
    except (OSError, WebSocketException) as exc:
        raise map_error(exc) from cause_of(exc)
    transport = AsyncioTransport(ws, settings)
    try:
        yield transport
    finally:
        await transport.aclose()
