"""The wire layer: typed client and server events, session configuration, the codec.

Pure and stateless: nothing here does I/O or keeps state between calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.protocol import client, server, server_response
from engine.protocol.client import CLIENT_EVENTS, ClientEvent, ResponseParams
from engine.protocol.codec import (
    SERVER_EVENTS,
    AnyServerEvent,
    RepairedMessage,
    ServerEvent,
    decode,
    decode_client,
    encode,
)
from engine.protocol.config import (
    AudioFormat,
    ConfigError,
    FunctionTool,
    SemanticVad,
    ServerVad,
    SessionConfig,
    Transcription,
    TurnDetection,
)
from engine.protocol.fields import (
    ApprovalFilter,
    McpTool,
    McpToolChoice,
    NoiseReduction,
    PromptRef,
    Reasoning,
    RetentionRatio,
)
from engine.protocol.items import ContentPart, ErrorDetail, Item, RateLimit, Response, Usage
from engine.protocol.server import UnknownServerEvent

if TYPE_CHECKING:
    from engine.protocol.inworld import ProviderData


def __getattr__(name: str) -> Any:
    """``ProviderData`` loads engine.protocol.inworld on first use (PEP 562), keeping imports cheap."""
    if name == "ProviderData":
        from engine.protocol.inworld import ProviderData

        globals()[name] = ProviderData
        return ProviderData
    raise AttributeError(f"module 'engine.protocol' has no attribute {name!r}")


__all__ = [
    "CLIENT_EVENTS",
    "SERVER_EVENTS",
    "AnyServerEvent",
    "ApprovalFilter",
    "AudioFormat",
    "ClientEvent",
    "ConfigError",
    "ContentPart",
    "ErrorDetail",
    "FunctionTool",
    "Item",
    "McpTool",
    "McpToolChoice",
    "NoiseReduction",
    "PromptRef",
    "ProviderData",
    "RateLimit",
    "Reasoning",
    "RepairedMessage",
    "Response",
    "ResponseParams",
    "RetentionRatio",
    "SemanticVad",
    "ServerEvent",
    "ServerVad",
    "SessionConfig",
    "Transcription",
    "TurnDetection",
    "UnknownServerEvent",
    "Usage",
    "client",
    "decode",
    "decode_client",
    "encode",
    "server",
    "server_response",
]
