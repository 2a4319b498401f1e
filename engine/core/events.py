"""User-facing events: what callbacks and ``session.events()`` receive.

They are produced by the pure core (:class:`~engine.core.conversation.Conversation`)
as ``Emit`` effects and delivered in order by the runtime's dispatcher.
"""

from __future__ import annotations

from typing import Any

import attrs

from engine.core.metrics import TurnMetrics
from engine.core.states import Phase, State
from engine.errors import ErrorSource
from engine.protocol.config import SessionConfig
from engine.protocol.items import Item, RateLimit, Usage


@attrs.frozen(kw_only=True)
class StateChanged:
    """The conversation moved from ``old`` to ``new``."""

    old: State
    new: State


@attrs.frozen(kw_only=True)
class SessionReady:
    """The server applied our configuration; ``session`` is its effective config."""

    session: dict[str, Any] = attrs.field(factory=dict, repr=False)


@attrs.frozen(kw_only=True)
class SpeechStarted:
    """Server VAD heard the user start speaking."""

    item_id: str | None = None
    audio_start_ms: int | None = None


@attrs.frozen(kw_only=True)
class SpeechStopped:
    """Server VAD heard the user stop speaking."""

    item_id: str | None = None
    audio_end_ms: int | None = None


@attrs.frozen(kw_only=True)
class UserTranscript:
    """The user's words: interim (``final=False``, ``text`` accumulated so far) or final."""

    item_id: str | None
    text: str
    final: bool
    delta: str = ""


@attrs.frozen(kw_only=True)
class AssistantTranscript:
    """Transcript of the assistant's audio: ``delta`` is new, ``text`` is the item so far."""

    item_id: str | None
    response_id: str | None
    delta: str
    text: str
    final: bool = False


@attrs.frozen(kw_only=True)
class AssistantText:
    """Text output (text modality): ``delta`` is new, ``text`` is the item so far."""

    item_id: str | None
    response_id: str | None
    delta: str
    text: str
    final: bool = False


@attrs.frozen(kw_only=True)
class AudioOut:
    """A chunk of assistant audio to play, in the session's output format.

    ``pcm`` holds the bytes as received: 16-bit mono PCM at ``sample_rate`` when
    ``encoding`` is ``audio/pcm``, or G.711 (``audio/pcmu``, ``audio/pcma``, one
    byte per sample at 8 kHz), passed through for a phone line.
    """

    pcm: bytes = attrs.field(repr=lambda pcm: f"<{len(pcm)} bytes>")
    sample_rate: int
    item_id: str | None
    response_id: str | None
    encoding: str = "audio/pcm"

    @property
    def duration_ms(self) -> float:
        """Length of this chunk in milliseconds (2 bytes per sample for PCM16, 1 for G.711)."""
        bytes_per_sample = 2 if self.encoding == "audio/pcm" else 1
        return len(self.pcm) * 1000 / (bytes_per_sample * self.sample_rate)


@attrs.frozen(kw_only=True)
class ResponseStarted:
    """The server started a response."""

    response_id: str | None


@attrs.frozen(kw_only=True)
class ResponseDone:
    """A response ended with ``status`` (completed, cancelled, failed, incomplete)."""

    response_id: str | None
    status: str | None
    usage: Usage | None = None
    status_details: dict[str, Any] | None = None


@attrs.frozen(kw_only=True)
class ItemCreated:
    """An item entered the server conversation."""

    item: Item


@attrs.frozen(kw_only=True)
class ItemUpdated:
    """An item in the conversation changed (completed, transcribed, truncated)."""

    item: Item


@attrs.frozen(kw_only=True)
class ToolCall:
    """The model called a tool; ``arguments`` is the raw JSON text it produced."""

    call_id: str
    name: str
    arguments: str
    response_id: str | None = None


@attrs.frozen(kw_only=True)
class ToolResult:
    """A tool call was answered with ``output`` (``is_error`` for failures and cancels)."""

    call_id: str
    name: str
    output: str
    is_error: bool = False


@attrs.frozen(kw_only=True)
class Interrupted:
    """The assistant was cut off; ``played_ms`` of item ``item_id`` had been heard."""

    item_id: str | None
    response_id: str | None
    played_ms: int | None = None


@attrs.frozen(kw_only=True)
class Error:
    """Something went wrong. ``fatal`` errors end the session; the others are reports.

    ``code`` is an :class:`~engine.errors.ErrorCode` member, or the server's own
    code passed through. ``source`` (an :class:`~engine.errors.ErrorSource`) says
    whose fault: ``server`` (an error event), ``protocol`` (a message we could not
    use), ``local`` (this process: a queue's overflow policy, work arriving after
    close), ``tool`` or ``callback``. A call the caller may not make is never an
    ``Error``: it raises (:mod:`engine.errors` states the policy).
    """

    code: str
    message: str
    fatal: bool = False
    source: str = ErrorSource.SERVER


@attrs.frozen(kw_only=True)
class Reconnecting:
    """The socket dropped; attempt ``attempt`` starts after ``delay`` seconds.

    ``planned``: a rollover (``reset()``, ``max_session_duration``), not a failure.
    """

    attempt: int
    delay: float
    planned: bool = False


@attrs.frozen(kw_only=True)
class Reconnected:
    """A new socket is up and the conversation was restored on it."""

    attempt: int


@attrs.frozen(kw_only=True)
class Closed:
    """The session ended; ``error`` is the fatal error that ended it, if any."""

    reason: str
    error: Error | None = None


@attrs.frozen(kw_only=True)
class ConfigApplied:
    """The server applied a configuration (``session.updated`` after the session is ready).

    ``event_id`` names the ``session.update`` it answers (``None`` when the
    server sent it unasked); ``session`` is the server's effective
    configuration, ``config`` the same parsed (``None`` if it does not parse).
    """

    event_id: str | None = None
    session: dict[str, Any] = attrs.field(factory=dict, repr=False)
    config: SessionConfig | None = attrs.field(default=None, repr=False)


@attrs.frozen(kw_only=True)
class ConfigRejected:
    """The server refused the ``session.update`` ``event_id`` (or never answered: ``update_timeout``)."""

    event_id: str
    code: str
    message: str
    param: str | None = None


@attrs.frozen(kw_only=True)
class IdleTimeout:
    """Server VAD's idle timeout fired: the user said nothing for ``idle_timeout_ms``."""

    item_id: str | None = None
    audio_start_ms: int | None = None
    audio_end_ms: int | None = None


@attrs.frozen(kw_only=True)
class Dtmf:
    """A key press (``0``-``9``, ``*``, ``#``, ``A``-``D``) on a phone call.

    From the provider (a SIP call: ``received_at`` is its timestamp) or, as
    :class:`engine.gateway.events.Dtmf`, from the gateway's carrier.
    """

    digit: str
    received_at: int | None = None


@attrs.frozen(kw_only=True)
class RateLimits:
    """The provider's rate limits as they stand (OpenAI sends them as each response starts)."""

    rate_limits: tuple[RateLimit, ...] = ()


@attrs.frozen(kw_only=True)
class McpProgress:
    """A server-side MCP step: listing a server's tools (``list_tools``) or a ``call``.

    ``status`` is ``in_progress``, ``completed`` or ``failed``.
    """

    stage: str
    status: str
    item_id: str | None = None
    response_id: str | None = None


@attrs.frozen(kw_only=True)
class OutOfBandDone:
    """An out-of-band answer (``Session.ask``) is complete; it never entered the conversation.

    ``request_id`` names the ask (``Conversation.newest_ask``), ``response_id`` the
    server's response; ``status`` is ``completed`` or ``incomplete`` (cut at
    ``max_output_tokens``); ``usage`` is its own and counts in no ``TurnMetrics``.
    """

    request_id: str
    response_id: str | None
    text: str
    status: str = "completed"
    usage: Usage | None = None


@attrs.frozen(kw_only=True)
class OutOfBandFailed:
    """An out-of-band request ended without an answer; ``code`` says why (``AskFailed`` has the list)."""

    request_id: str
    code: str
    message: str
    response_id: str | None = None


@attrs.frozen(kw_only=True)
class RawEvent:
    """A server event the library does not model, delivered only to whom asked for it.

    Opt-in (``Session(raw_events=True)``, or any ``session.events(RawEvent)``
    or callback for it): without one the core builds none. ``event`` is the
    decoded wire object (an ``UnknownServerEvent`` keeps the whole message).
    """

    type: str
    event: Any = attrs.field(repr=False)


UserEvent = (
    StateChanged
    | SessionReady
    | SpeechStarted
    | SpeechStopped
    | UserTranscript
    | AssistantTranscript
    | AssistantText
    | AudioOut
    | ResponseStarted
    | ResponseDone
    | ItemCreated
    | ItemUpdated
    | ToolCall
    | ToolResult
    | Interrupted
    | Error
    | Reconnecting
    | Reconnected
    | TurnMetrics
    | Closed
    | ConfigApplied
    | ConfigRejected
    | IdleTimeout
    | Dtmf
    | RateLimits
    | McpProgress
    | OutOfBandDone
    | OutOfBandFailed
    | RawEvent
)

__all__ = [
    "AssistantText",
    "AssistantTranscript",
    "AudioOut",
    "Closed",
    "ConfigApplied",
    "ConfigRejected",
    "Dtmf",
    "Error",
    "IdleTimeout",
    "Interrupted",
    "ItemCreated",
    "ItemUpdated",
    "McpProgress",
    "OutOfBandDone",
    "OutOfBandFailed",
    "Phase",
    "RateLimits",
    "RawEvent",
    "Reconnected",
    "Reconnecting",
    "ResponseDone",
    "ResponseStarted",
    "SessionReady",
    "SpeechStarted",
    "SpeechStopped",
    "State",
    "StateChanged",
    "ToolCall",
    "ToolResult",
    "TurnMetrics",
    "UserEvent",
    "UserTranscript",
]
