"""The project's exceptions, error codes and its one exception-group policy.

The error policy, as in h11 and wsproto:

* **local misuse raises** :class:`UsageError` (a wrong argument, a call the
  session's state does not allow) and never becomes an event. Where a
  ``TypeError`` or ``ValueError`` was raised before, the exception is both
  (:class:`UsageTypeError`, :class:`UsageValueError`, :class:`ConfigError`),
  so ``except TypeError`` keeps working;
* **peer faults become** ``Error`` **events** (:class:`ErrorSource` says whose:
  the server's error event, a message we could not use, a tool, a callback, or
  a local queue's overflow policy); only a fatal one ends the session, and a
  call made after that raises :class:`SessionClosed` carrying the reason and
  the fatal ``Error``. "Not connected yet" is :class:`NotConnected`, a
  different exception;
* every code the library emits is an :class:`ErrorCode` member (a server's own
  codes pass through as the strings it sent);
* foreign exceptions from socket libraries are mapped at the transport edge
  (:class:`TransportError`, :class:`HandshakeError`, :class:`ConnectionClosed`),
  and no exception group crosses the public API: the session, the transports
  and the local server unwrap with :func:`unwrap`.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Every ``Error.code`` the library emits itself (they compare equal to the plain strings)."""

    # the server's side (reported by the core, or the server's own code when it sent none)
    SERVER_ERROR = "server_error"
    """The server sent an error event without a code or type."""
    INVALID_REQUEST_ERROR = "invalid_request_error"
    """A request the server refused without saying more (GA's error type for it)."""
    RESPONSE_FAILED = "response_failed"
    """A response ended ``failed`` without a code of its own."""
    TRANSCRIPTION_FAILED = "transcription_failed"
    SESSION_EXPIRED = "session_expired"
    """The server's code for a session at its time limit (the session rolls over)."""
    CONNECTION_FAILED = "connection_failed"
    """The connection could not be (re)established: fatal."""
    # messages we could not use (source protocol)
    PROTOCOL_ERROR = "protocol_error"
    BINARY_FRAME = "binary_frame"
    INVALID_TEXT = "invalid_text"
    INVALID_EVENT = "invalid_event"
    INVALID_AUDIO = "invalid_audio"
    UNEXPECTED_EVENT = "unexpected_event"
    DUPLICATE_EVENT = "duplicate_event"
    ILLEGAL_TRANSITION = "illegal_transition"
    # deadlines of the response slot
    RESPONSE_TIMEOUT = "response_timeout"
    RESPONSE_STALLED = "response_stalled"
    CANCEL_TIMEOUT = "cancel_timeout"
    USER_TURN_LOST = "user_turn_lost"
    UPDATE_TIMEOUT = "update_timeout"
    """No answer to a ``session.update`` in time."""
    # out-of-band answers (Session.ask): why one ended without an answer
    ASK_FAILED = "ask_failed"
    """The out-of-band response ended ``failed`` or ``cancelled``."""
    ASK_TIMEOUT = "ask_timeout"
    """No out-of-band answer within the ask's timeout."""
    ASK_LOST = "ask_lost"
    """The socket dropped (or was down) before the out-of-band answer came."""
    # local overflow policies and late work (source local)
    SESSION_CLOSED = "session_closed"
    DUPLICATE_TOOL_OUTPUT = "duplicate_tool_output"
    AUDIO_DROPPED = "audio_dropped"
    AUDIO_MISALIGNED = "audio_misaligned"
    EVENTS_DROPPED = "events_dropped"
    # the application's code
    TOOL_OUTPUT_TOO_LARGE = "tool_output_too_large"
    CALLBACK_FAILED = "callback_failed"
    SLOW_CALLBACK = "slow_callback"


class ErrorSource(StrEnum):
    """Whose fault an ``Error`` reports."""

    SERVER = "server"
    """The server's error event (or the connection to it)."""
    PROTOCOL = "protocol"
    """A message from the server we could not use."""
    LOCAL = "local"
    """This process: a queue's overflow policy, work arriving after close."""
    TOOL = "tool"
    """A tool handler's output."""
    CALLBACK = "callback"
    """An application callback."""

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

    code = ErrorCode.PROTOCOL_ERROR

    def __init__(self, message: str, raw: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.raw = clip(raw)

    def __str__(self) -> str:
        if not self.raw:
            return self.message
        return f"{self.message} (raw: {self.raw})"


class UsageError(EngineError):
    """Local misuse: the arguments or the session's state do not allow this call.

    Raised synchronously by the call itself; nothing is sent and no event is emitted.
    """


class UsageTypeError(UsageError, TypeError):
    """An argument of the wrong type (a ``TypeError`` too)."""


class UsageValueError(UsageError, ValueError):
    """An argument whose value is not allowed (a ``ValueError`` too)."""


class UpdateRejected(UsageError):
    """A ``session.update`` was refused: locally (the server would reject it now), or by the server.

    ``param`` and ``code`` are the server's, from its ``error`` (``None`` for a local refusal).
    """

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class AskFailed(EngineError):
    """An out-of-band request (``Session.ask``) ended without an answer.

    ``code`` says why: ``ask_failed`` (the response ended failed or cancelled),
    ``ask_timeout``, ``ask_lost`` (the socket dropped), or the server's own code
    from the ``error`` it answered the request with.
    """

    def __init__(self, message: str, *, code: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.request_id = request_id


class NotConnected(UsageError):
    """The session is not connected yet: a command was called before ``connect()``."""


class SessionClosed(EngineError):
    """The session closed (by ``aclose()``, or a fatal error); the call cannot proceed.

    Attributes:
        reason: why it ended in a few words: the fatal error's ``code: message``, or ``"closed"``.
        error: the fatal ``Error`` event that ended it, if one did.
    """

    def __init__(self, message: str, *, reason: str = "", error: Any = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.error = error


class TransportError(EngineError):
    """The transport failed (connect, send or receive)."""


class BinaryFrameError(ProtocolError, TransportError):
    """The server sent a binary frame that is not UTF-8 text; realtime APIs speak JSON in text frames.

    Raised by a transport's ``receive``; the connection stays open, and the
    session reports it as a non-fatal ``Error`` (``binary_frame``) and reads on.
    It is a :class:`TransportError` too, for code that reads a socket directly.
    """

    code = ErrorCode.BINARY_FRAME


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


def unwrap(
    group: BaseException,
    *,
    cancelled: type[BaseException] | tuple[type[BaseException], ...],
    prefer: Callable[[BaseException], bool] | None = None,
) -> BaseException:
    """The one exception to raise out of a task group's (possibly nested) group.

    The one policy of the library (session, transports, local server): a
    ``KeyboardInterrupt`` or ``SystemExit`` wins; cancellations (``cancelled``:
    the backend's class, passed in so this module stays free of anyio) are
    dropped when anything else failed; among the rest the first that ``prefer``
    accepts (the caller's own exception, say), else the first in order.
    """
    found = leaves(group)
    fatal = [exc for exc in found if isinstance(exc, KeyboardInterrupt | SystemExit)]
    real = [exc for exc in found if not isinstance(exc, cancelled)]
    candidates = fatal or real or found
    if prefer is not None:
        return next((exc for exc in candidates if prefer(exc)), candidates[0])
    return candidates[0]
