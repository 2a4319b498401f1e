"""The wire layer: typed client and server events, session configuration, the codec.

Pure and stateless: nothing here does I/O or keeps state between calls.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from engine.protocol import client
from engine.protocol.client import CLIENT_EVENTS, ClientEvent, ResponseParams
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

if TYPE_CHECKING:
    from engine.protocol import server, server_response
    from engine.protocol.codec import (
        SERVER_EVENTS,
        AnyServerEvent,
        RepairedMessage,
        ServerEvent,
        decode,
        decode_client,
        encode,
    )
    from engine.protocol.inworld import ProviderData
    from engine.protocol.server import UnknownServerEvent

# Loaded on first use (PEP 562): the server events and the codec are most of the
# wire layer's import time, and ``import engine`` needs neither.
_LAZY = {
    "server": ("engine.protocol.server", None),
    "server_response": ("engine.protocol.server_response", None),
    "UnknownServerEvent": ("engine.protocol.server", "UnknownServerEvent"),
    "ProviderData": ("engine.protocol.inworld", "ProviderData"),
    **{
        name: ("engine.protocol.codec", name)
        for name in (
            "SERVER_EVENTS",
            "AnyServerEvent",
            "RepairedMessage",
            "ServerEvent",
            "decode",
            "decode_client",
            "encode",
        )
    },
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'engine.protocol' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


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
