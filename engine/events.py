"""User-facing events, delivered to callbacks (``@session.on(...)``) and ``session.events()``."""

from __future__ import annotations

from engine.core.events import (
    AssistantText,
    AssistantTranscript,
    AudioOut,
    Closed,
    Error,
    Interrupted,
    ItemCreated,
    ItemUpdated,
    Reconnected,
    Reconnecting,
    ResponseDone,
    ResponseStarted,
    SessionReady,
    SpeechStarted,
    SpeechStopped,
    StateChanged,
    ToolCall,
    ToolResult,
    UserEvent,
    UserTranscript,
)

__all__ = [
    "AssistantText",
    "AssistantTranscript",
    "AudioOut",
    "Closed",
    "Error",
    "Interrupted",
    "ItemCreated",
    "ItemUpdated",
    "Reconnected",
    "Reconnecting",
    "ResponseDone",
    "ResponseStarted",
    "SessionReady",
    "SpeechStarted",
    "SpeechStopped",
    "StateChanged",
    "ToolCall",
    "ToolResult",
    "UserEvent",
    "UserTranscript",
]
