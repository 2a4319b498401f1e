"""engine: voice agents on realtime speech-to-speech WebSocket APIs, under trio or asyncio.

Start with :class:`Session`; see the README for a walk-through. The runtime
(anyio, sockets) is imported on first use, so ``import engine`` stays cheap and
the pure core (``engine.protocol``, ``engine.core``) can be used without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from engine import events
from engine.core.states import Phase, State
from engine.errors import (
    AskFailed,
    ConnectionClosed,
    EngineError,
    ErrorCode,
    ErrorSource,
    HandshakeError,
    NotConnected,
    ProtocolError,
    SessionClosed,
    TransportError,
    UpdateRejected,
    UsageError,
)
from engine.protocol.client import ResponseParams
from engine.protocol.config import (
    AudioFormat,
    ConfigError,
    FunctionTool,
    SemanticVad,
    ServerVad,
    SessionConfig,
    Transcription,
)
from engine.protocol.fields import (
    McpTool,
    McpToolChoice,
    NoiseReduction,
    PromptRef,
    Reasoning,
    RetentionRatio,
)
from engine.protocol.items import Item
from engine.providers import Inworld, OpenAI, Secret
from engine.tools import Tool

if TYPE_CHECKING:
    from engine.actors.session import Session
    from engine.actors.settings import SessionSettings
    from engine.actors.values import SessionStatistics
    from engine.core.lifecycle import Lifecycle
    from engine.core.policy import CallPolicy
    from engine.core.reconnect import ReconnectPolicy
    from engine.credentials import OpenAIClientSecrets
    from engine.gateway.agent import Agent
    from engine.protocol.inworld import ProviderData
    from engine.transports.base import TransportSettings

_LAZY = {
    "Agent": "engine.gateway.agent",
    "Session": "engine.actors.session",
    "SessionSettings": "engine.actors.settings",
    "SessionStatistics": "engine.actors.values",
    "Lifecycle": "engine.core.lifecycle",
    "ReconnectPolicy": "engine.core.reconnect",
    "CallPolicy": "engine.core.policy",
    "OpenAIClientSecrets": "engine.credentials",
    "ProviderData": "engine.protocol.inworld",
    "TransportSettings": "engine.transports.base",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def diagram() -> str:
    """The Mermaid diagram of the conversation and response state machines."""
    from engine.core.diagram import diagram as _diagram

    return _diagram()


__all__ = [
    "Agent",
    "AskFailed",
    "AudioFormat",
    "CallPolicy",
    "ConfigError",
    "ConnectionClosed",
    "EngineError",
    "ErrorCode",
    "ErrorSource",
    "FunctionTool",
    "HandshakeError",
    "Inworld",
    "Item",
    "Lifecycle",
    "McpTool",
    "McpToolChoice",
    "NoiseReduction",
    "NotConnected",
    "OpenAI",
    "OpenAIClientSecrets",
    "Phase",
    "PromptRef",
    "ProtocolError",
    "ProviderData",
    "Reasoning",
    "ReconnectPolicy",
    "ResponseParams",
    "RetentionRatio",
    "Secret",
    "SemanticVad",
    "ServerVad",
    "Session",
    "SessionClosed",
    "SessionConfig",
    "SessionSettings",
    "SessionStatistics",
    "State",
    "Tool",
    "Transcription",
    "TransportError",
    "TransportSettings",
    "UpdateRejected",
    "UsageError",
    "diagram",
    "events",
]
