"""The transport interface: a text WebSocket, nothing more.

The runtime only needs four operations (connect, send text, receive text,
close), so every transport fits in a few dozen lines and tests can swap in an
in-memory pair. Library exceptions are mapped to :mod:`engine.errors` here, at
the edge, and nowhere else.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import attrs

from engine.errors import BinaryFrameError, ConnectionClosed, HandshakeError, TransportError, clip
from engine.redaction import contains_secret, redact

HUNG_UP = "the server closed the connection before answering the WebSocket upgrade"
"""The message of the :class:`~engine.errors.TransportError` both socket transports raise then."""


CLOSE_CODES = {
    1000: "normal closure",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1006: "no close frame",
    1007: "invalid data",
    1008: "policy violation",
    1009: "message too big",
    1011: "server error",
    1012: "service restart",
    1013: "try again later",
}
"""What the registered close codes mean (RFC 6455 section 7.4.1), for messages."""


def closed(code: int | None, reason: str = "") -> ConnectionClosed:
    """The error for a closed socket: the close frame's code and reason, or 1006 when none came.

    The reason comes from the peer, so it is redacted (a server may echo the key).
    """
    if code is None:
        return ConnectionClosed("connection closed without a close frame", 1006)
    reason = redact(reason)
    meaning = CLOSE_CODES.get(code)
    text = f"connection closed with code {code}" + (f" ({meaning})" if meaning else "")
    if reason:
        text += f": {clip(reason, 123)}"  # a close reason is at most 123 bytes
    return ConnectionClosed(text, code, reason)


def refused(status: int, body: str = "") -> HandshakeError:
    """The error for an upgrade the server answered with an HTTP error."""
    detail = f" {clip(redact(body), 200)}" if body else ""
    return HandshakeError(f"server refused the WebSocket handshake: HTTP {status}{detail}", status)


def cause_of(exc: BaseException) -> BaseException | None:
    """``exc`` as the cause of the mapped error, or ``None`` when its text holds a secret.

    A foreign exception chained under ours would print whatever its library put
    in its message (a header value, a server's echo of the key) in every traceback.
    """
    text = "".join(traceback.format_exception(exc))
    return None if contains_secret(text) else exc


def timed_out(settings: TransportSettings) -> TransportError:
    """The error for a connect that took longer than ``connect_timeout``."""
    return TransportError(f"connect timed out after {settings.connect_timeout}s")


@attrs.frozen(kw_only=True)
class TransportSettings:
    """Socket settings shared by every transport.

    Attributes:
        max_message_size: largest inbound message accepted, in bytes. Audio
            deltas are large; the default leaves ample room.
        connect_timeout: seconds allowed for TCP, TLS and the WebSocket handshake.
        keepalive_interval: seconds between WebSocket pings (``None`` disables them).
        keepalive_timeout: seconds to wait for a pong before the socket counts as dead.
        close_timeout: seconds to wait for the peer's close frame before dropping the socket.
        allow_insecure: accept plain ``ws://`` to a host that is not loopback.
    """

    max_message_size: int = attrs.field(default=16 * 1024 * 1024)
    connect_timeout: float = 10.0
    keepalive_interval: float | None = 20.0
    keepalive_timeout: float = 20.0
    close_timeout: float = 2.0
    allow_insecure: bool = False

    @max_message_size.validator
    def _check_size(self, _: attrs.Attribute[int], value: int) -> None:
        if value < 1024:
            raise ValueError(f"max_message_size must be at least 1024 bytes, got {value}")


class Transport(Protocol):
    """One open text WebSocket."""

    async def send(self, text: str) -> None:
        """Send one text message. Raises :class:`~engine.errors.ConnectionClosed`."""
        ...

    async def receive(self) -> str:
        """Wait for the next text message. Raises :class:`~engine.errors.ConnectionClosed`."""
        ...

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close, waiting at most ``close_timeout`` for the peer's answer. Never raises."""
        ...


class Connector(Protocol):
    """Opens a :class:`Transport`; used as ``async with connector(url, headers, settings) as t``."""

    def __call__(
        self, url: str, headers: Mapping[str, str], settings: TransportSettings
    ) -> AbstractAsyncContextManager[Transport]: ...


class ServerApp(Protocol):
    """What a server runs for each WebSocket: a handshake check, then a handler.

    The same app serves real sockets (:func:`engine.transports.listen.serve`) and
    in-memory ones (:class:`engine.transports.memory.MemoryConnector`).
    """

    def check_handshake(self, path: str, headers: Mapping[str, str]) -> tuple[int, str] | None:
        """Return ``(status, body)`` to refuse the upgrade, or ``None`` to accept.

        ``path`` includes the query string; ``headers`` is case-insensitive.
        """
        ...

    async def handle(self, transport: Transport, path: str, headers: Mapping[str, str]) -> None:
        """Run one accepted connection; the server closes it when this returns."""
        ...


def as_text(message: str | bytes | bytearray | memoryview) -> str:
    """Return a received message as text.

    Realtime APIs speak JSON in text frames, but some servers put the same JSON
    in binary frames, so a binary frame is decoded as UTF-8 rather than refused;
    one that is not valid UTF-8 raises :class:`~engine.errors.BinaryFrameError`
    (the connection stays open: the caller decides whether to close it).
    """
    if isinstance(message, str):
        return message
    try:
        return bytes(message).decode("utf-8")
    except UnicodeDecodeError:
        raise BinaryFrameError(f"binary frame of {len(message)} bytes is not UTF-8 text") from None
