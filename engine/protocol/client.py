"""Client events: the 11 members of the GA ``RealtimeClientEvent`` union.

Each class names its wire ``type`` in ``TYPE``; fields are the GA fields. Every
event may carry an ``event_id`` (the server echoes it in errors, which is how a
failure is tied back to the request that caused it).
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from engine.protocol.items import Item


@attrs.frozen(kw_only=True)
class ResponseParams:
    """Per-response overrides for ``response.create`` (all optional)."""

    output_modalities: tuple[str, ...] | None = None
    instructions: str | None = None
    tools: tuple[dict[str, Any], ...] | None = None
    tool_choice: str | dict[str, Any] | None = None
    max_output_tokens: int | str | None = None
    conversation: str | None = None
    input: tuple[Item, ...] | None = None
    metadata: dict[str, Any] | None = None


@attrs.frozen(kw_only=True)
class SessionUpdate:
    """Change the session configuration; ``session`` is the wire form of a ``SessionConfig``."""

    TYPE: ClassVar[str] = "session.update"
    session: dict[str, Any]
    event_id: str | None = None


@attrs.frozen(kw_only=True)
class InputAudioBufferAppend:
    """Append base64 audio, in the session's input format, to the input buffer."""

    TYPE: ClassVar[str] = "input_audio_buffer.append"
    audio: str
    event_id: str | None = None


@attrs.frozen(kw_only=True)
class InputAudioBufferCommit:
    """Commit the input buffer as a user item (only needed without server VAD)."""

    TYPE: ClassVar[str] = "input_audio_buffer.commit"
    event_id: str | None = None


@attrs.frozen(kw_only=True)
class InputAudioBufferClear:
    """Discard the input buffer."""

    TYPE: ClassVar[str] = "input_audio_buffer.clear"
    event_id: str | None = None


@attrs.frozen(kw_only=True)
class OutputAudioBufferClear:
    """Cut off server-buffered output audio (WebRTC/SIP only; never sent over WebSocket)."""

    TYPE: ClassVar[str] = "output_audio_buffer.clear"
    event_id: str | None = None


@attrs.frozen(kw_only=True)
class ConversationItemCreate:
    """Add an item; ``previous_item_id="root"`` inserts it first, unset appends it."""

    TYPE: ClassVar[str] = "conversation.item.create"
    item: Item
    previous_item_id: str | None = None
    event_id: str | None = None


@attrs.frozen(kw_only=True)
class ConversationItemTruncate:
    """Trim an assistant audio item to what was actually played."""

    TYPE: ClassVar[str] = "conversation.item.truncate"
    item_id: str
    content_index: int = 0
    audio_end_ms: int
    event_id: str | None = None


@attrs.frozen(kw_only=True)
class ConversationItemDelete:
    """Remove an item from the server conversation."""

    TYPE: ClassVar[str] = "conversation.item.delete"
    item_id: str
    event_id: str | None = None


@attrs.frozen(kw_only=True)
class ConversationItemRetrieve:
    """Ask for the server's copy of an item."""

    TYPE: ClassVar[str] = "conversation.item.retrieve"
    item_id: str
    event_id: str | None = None


@attrs.frozen(kw_only=True)
class ResponseCreate:
    """Start inference, optionally with per-response overrides."""

    TYPE: ClassVar[str] = "response.create"
    response: ResponseParams | None = None
    event_id: str | None = None


@attrs.frozen(kw_only=True)
class ResponseCancel:
    """Cancel the in-progress response (or the one named by ``response_id``)."""

    TYPE: ClassVar[str] = "response.cancel"
    response_id: str | None = None
    event_id: str | None = None


ClientEvent = (
    SessionUpdate
    | InputAudioBufferAppend
    | InputAudioBufferCommit
    | InputAudioBufferClear
    | OutputAudioBufferClear
    | ConversationItemCreate
    | ConversationItemTruncate
    | ConversationItemDelete
    | ConversationItemRetrieve
    | ResponseCreate
    | ResponseCancel
)

CLIENT_EVENTS: dict[str, type[ClientEvent]] = {
    cls.TYPE: cls
    for cls in (
        SessionUpdate,
        InputAudioBufferAppend,
        InputAudioBufferCommit,
        InputAudioBufferClear,
        OutputAudioBufferClear,
        ConversationItemCreate,
        ConversationItemTruncate,
        ConversationItemDelete,
        ConversationItemRetrieve,
        ResponseCreate,
        ResponseCancel,
    )
}
"""Every client event class by its wire ``type``."""
