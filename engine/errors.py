"""The project's exceptions.

Two sides, as in h11: a *local* error means the caller did something the
protocol or the current state does not allow; a *remote* error means the peer
(the realtime server) sent something we cannot use. Foreign exceptions from
socket libraries are mapped into these at the transport edge, so callers only
ever catch ``engine`` exceptions.
"""

from __future__ import annotations

RAW_LIMIT = 500
"""How much of an offending raw message an exception carries."""


def clip(text: str, limit: int = RAW_LIMIT) -> str:
    """Cut ``text`` to ``limit`` characters, marking the cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters]"


class EngineError(Exception):
    """Base class of every exception the library raises on purpose."""


class ProtocolError(EngineError):
    """A message from the server could not be decoded.

    Raised by :func:`engine.protocol.decode` for malformed JSON, a message that
    is not an object, or a field of the wrong type. ``raw`` holds the offending
    text, clipped to a few hundred characters so logs stay readable. ``code``
    is the ``Error`` event code the session reports it under.
    """

    code = "protocol_error"

    def __init__(self, message: str, raw: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.raw = clip(raw)

    def __str__(self) -> str:
        if not self.raw:
            return self.message
        return f"{self.message} (raw: {self.raw})"


class UpdateRejected(EngineError):
    """A ``session.update`` was refused locally because the server would reject it now."""


class SessionClosed(EngineError):
    """The session is closed; the call cannot proceed."""


class TransportError(EngineError):
    """The transport failed (connect, send or receive)."""


class BinaryFrameError(ProtocolError, TransportError):
    """The server sent a binary frame that is not UTF-8 text; realtime APIs speak JSON in text frames.

    Raised by a transport's ``receive``; the connection stays open, and the
    session reports it as a non-fatal ``Error`` (``binary_frame``) and reads on.
    It is a :class:`TransportError` too, for code that reads a socket directly.
    """

    code = "binary_frame"


class HandshakeError(TransportError):
    """The server refused the WebSocket handshake.

    ``status`` is the HTTP status code when the server sent one (401 and 403
    mean the credentials were refused and retrying will not help).
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def is_auth_failure(self) -> bool:
        """True when the server refused the credentials."""
        return self.status in (401, 403)


class ConnectionClosed(TransportError):
    """The socket closed. ``code`` and ``reason`` are the close frame's, when one came."""

    def __init__(self, message: str, code: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason

    @property
    def clean(self) -> bool:
        """True for a normal closure (1000) or going away (1001)."""
        return self.code in (1000, 1001)


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside a (possibly nested) exception group, in order; ``[exc]`` for any other."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]
