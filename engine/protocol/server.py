"""Server events, part one: errors, keep-alive, session, conversation and input audio.

The response events live in :mod:`engine.protocol.server_response`. Every field
has a default, so a server that leaves one out is tolerated; a field that is
present with the wrong JSON type is a :class:`~engine.errors.ProtocolError`.

A class is named after its wire ``type`` in CamelCase
(``input_audio_buffer.speech_started`` is ``InputAudioBufferSpeechStarted``).
Where that name would also be a user event's (:mod:`engine.events`), it takes
the ``Event`` suffix OpenAI's own SDK uses: ``ErrorEvent`` (``error``) and
``ResponseDoneEvent`` (``response.done``). One name, one meaning.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from engine.protocol.items import ErrorDetail, Item, RateLimit


@attrs.frozen(kw_only=True)
class ServerEventBase:
    """Fields every server event may carry."""

    TYPE: ClassVar[str] = ""
    event_id: str | None = None


@attrs.frozen(kw_only=True)
class UnknownServerEvent:
    """A message whose ``type`` this library does not model; ``raw`` keeps it whole."""

    type: str
    raw: dict[str, Any]


@attrs.frozen(kw_only=True)
class ErrorEvent(ServerEventBase):
    """The server reports a problem (possibly with an event we sent: see ``error.event_id``)."""

    TYPE: ClassVar[str] = "error"
    error: ErrorDetail = ErrorDetail()


@attrs.frozen(kw_only=True)
class Ping(ServerEventBase):
    """Inworld-only keep-alive; needs no answer."""

    TYPE: ClassVar[str] = "ping"
    timestamp: int | None = None


@attrs.frozen(kw_only=True)
class SessionCreated(ServerEventBase):
    """First event on a new socket, with the server's default session."""

    TYPE: ClassVar[str] = "session.created"
    session: dict[str, Any] | None = None


@attrs.frozen(kw_only=True)
class SessionUpdated(ServerEventBase):
    """Answer to ``session.update`` with the full effective session."""

    TYPE: ClassVar[str] = "session.updated"
    session: dict[str, Any] | None = None


@attrs.frozen(kw_only=True)
class ConversationCreated(ServerEventBase):
    """The default conversation exists."""

    TYPE: ClassVar[str] = "conversation.created"
    conversation: dict[str, Any] | None = None


@attrs.frozen(kw_only=True)
class _ItemEvent(ServerEventBase):
    item: Item | None = None
    previous_item_id: str | None = None


@attrs.frozen(kw_only=True)
class ConversationItemAdded(_ItemEvent):
    """An item entered the conversation (its content may still be filling in)."""

    TYPE: ClassVar[str] = "conversation.item.added"


@attrs.frozen(kw_only=True)
class ConversationItemDone(_ItemEvent):
    """An item is complete."""

    TYPE: ClassVar[str] = "conversation.item.done"


@attrs.frozen(kw_only=True)
class ConversationItemCreated(_ItemEvent):
    """Legacy (beta) name of ``conversation.item.added``, still in the GA union."""

    TYPE: ClassVar[str] = "conversation.item.created"


@attrs.frozen(kw_only=True)
class ConversationItemRetrieved(ServerEventBase):
    """Answer to ``conversation.item.retrieve``."""

    TYPE: ClassVar[str] = "conversation.item.retrieved"
    item: Item | None = None


@attrs.frozen(kw_only=True)
class ConversationItemTruncated(ServerEventBase):
    """An assistant audio item was trimmed."""

    TYPE: ClassVar[str] = "conversation.item.truncated"
    item_id: str | None = None
    content_index: int | None = None
    audio_end_ms: int | None = None


@attrs.frozen(kw_only=True)
class ConversationItemDeleted(ServerEventBase):
    """An item was removed."""

    TYPE: ClassVar[str] = "conversation.item.deleted"
    item_id: str | None = None


@attrs.frozen(kw_only=True)
class InputAudioTranscriptionDelta(ServerEventBase):
    """A piece of the user's transcript (arrives independently of the response)."""

    TYPE: ClassVar[str] = "conversation.item.input_audio_transcription.delta"
    item_id: str | None = None
    content_index: int | None = None
    delta: str = ""
    logprobs: Any = None


@attrs.frozen(kw_only=True)
class InputAudioTranscriptionCompleted(ServerEventBase):
    """The user's final transcript for an item."""

    TYPE: ClassVar[str] = "conversation.item.input_audio_transcription.completed"
    item_id: str | None = None
    content_index: int | None = None
    transcript: str = ""
    usage: dict[str, Any] | None = None
    logprobs: Any = None
    languages: Any = None


@attrs.frozen(kw_only=True)
class InputAudioTranscriptionFailed(ServerEventBase):
    """Transcription of a user item failed."""

    TYPE: ClassVar[str] = "conversation.item.input_audio_transcription.failed"
    item_id: str | None = None
    content_index: int | None = None
    error: ErrorDetail | None = None


@attrs.frozen(kw_only=True)
class InputAudioTranscriptionSegment(ServerEventBase):
    """A diarized transcript segment."""

    TYPE: ClassVar[str] = "conversation.item.input_audio_transcription.segment"
    id: str | None = None
    item_id: str | None = None
    content_index: int | None = None
    start: float | None = None
    end: float | None = None
    speaker: str | None = None
    text: str = ""


@attrs.frozen(kw_only=True)
class InputAudioBufferSpeechStarted(ServerEventBase):
    """Server VAD heard the user start speaking; ``item_id`` names the future user item."""

    TYPE: ClassVar[str] = "input_audio_buffer.speech_started"
    item_id: str | None = None
    audio_start_ms: int | None = None


@attrs.frozen(kw_only=True)
class InputAudioBufferSpeechStopped(ServerEventBase):
    """Server VAD heard the user stop speaking."""

    TYPE: ClassVar[str] = "input_audio_buffer.speech_stopped"
    item_id: str | None = None
    audio_end_ms: int | None = None


@attrs.frozen(kw_only=True)
class InputAudioBufferCommitted(ServerEventBase):
    """The input buffer became a user item."""

    TYPE: ClassVar[str] = "input_audio_buffer.committed"
    item_id: str | None = None
    previous_item_id: str | None = None


@attrs.frozen(kw_only=True)
class InputAudioBufferCleared(ServerEventBase):
    """The input buffer was emptied."""

    TYPE: ClassVar[str] = "input_audio_buffer.cleared"


@attrs.frozen(kw_only=True)
class InputAudioBufferTimeoutTriggered(ServerEventBase):
    """Server VAD's idle timeout fired."""

    TYPE: ClassVar[str] = "input_audio_buffer.timeout_triggered"
    item_id: str | None = None
    audio_start_ms: int | None = None
    audio_end_ms: int | None = None


@attrs.frozen(kw_only=True)
class InputAudioBufferDtmfEventReceived(ServerEventBase):
    """A DTMF key press (SIP only)."""

    TYPE: ClassVar[str] = "input_audio_buffer.dtmf_event_received"
    event: str | None = None
    received_at: int | None = None


@attrs.frozen(kw_only=True)
class _OutputBufferEvent(ServerEventBase):
    response_id: str | None = None


@attrs.frozen(kw_only=True)
class OutputAudioBufferStarted(_OutputBufferEvent):
    """Server-side playback started (WebRTC/SIP only)."""

    TYPE: ClassVar[str] = "output_audio_buffer.started"


@attrs.frozen(kw_only=True)
class OutputAudioBufferStopped(_OutputBufferEvent):
    """Server-side playback stopped (WebRTC/SIP only)."""

    TYPE: ClassVar[str] = "output_audio_buffer.stopped"


@attrs.frozen(kw_only=True)
class OutputAudioBufferCleared(_OutputBufferEvent):
    """Server-side playback buffer cleared (WebRTC/SIP only)."""

    TYPE: ClassVar[str] = "output_audio_buffer.cleared"


@attrs.frozen(kw_only=True)
class RateLimitsUpdated(ServerEventBase):
    """Rate limits at the start of a response (OpenAI only)."""

    TYPE: ClassVar[str] = "rate_limits.updated"
    rate_limits: tuple[RateLimit, ...] = ()


@attrs.frozen(kw_only=True)
class _McpListToolsEvent(ServerEventBase):
    item_id: str | None = None


@attrs.frozen(kw_only=True)
class McpListToolsInProgress(_McpListToolsEvent):
    """MCP tool listing started."""

    TYPE: ClassVar[str] = "mcp_list_tools.in_progress"


@attrs.frozen(kw_only=True)
class McpListToolsCompleted(_McpListToolsEvent):
    """MCP tool listing finished."""

    TYPE: ClassVar[str] = "mcp_list_tools.completed"


@attrs.frozen(kw_only=True)
class McpListToolsFailed(_McpListToolsEvent):
    """MCP tool listing failed."""

    TYPE: ClassVar[str] = "mcp_list_tools.failed"
