"""engine: voice agents on realtime speech-to-speech WebSocket APIs, under trio or asyncio.

Start with :class:`Session`; see the README for a walk-through.
"""

from __future__ import annotations

from engine import events
from engine.actors.session import Session
from engine.actors.settings import SessionSettings
from engine.core.states import Phase, State
from engine.errors import (
    ConnectionClosed,
    EngineError,
    HandshakeError,
    ProtocolError,
    SessionClosed,
    TransportError,
    UpdateRejected,
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
from engine.protocol.items import Item
from engine.providers import Inworld, OpenAI, Secret
from engine.tools import Tool
from engine.transports.base import TransportSettings


def diagram() -> str:
    """The Mermaid diagram of the conversation and response state machines."""
    from engine.core.states import diagram as _diagram

    return _diagram()


__all__ = [
    "AudioFormat",
    "ConfigError",
    "ConnectionClosed",
    "EngineError",
    "FunctionTool",
    "HandshakeError",
    "Inworld",
    "Item",
    "OpenAI",
    "Phase",
    "ProtocolError",
    "ResponseParams",
    "Secret",
    "SemanticVad",
    "ServerVad",
    "Session",
    "SessionClosed",
    "SessionConfig",
    "SessionSettings",
    "State",
    "Tool",
    "Transcription",
    "TransportError",
    "TransportSettings",
    "UpdateRejected",
    "diagram",
    "events",
]
