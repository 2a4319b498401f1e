"""The local realtime server: an Inworld-like WebSocket endpoint with no network behind it.

It speaks the GA event protocol of docs/protocol.md with a deterministic assistant
(echo, tool calls, tool results), a real energy VAD over the audio it
receives, paced synthetic speech, and fault injection for tests. Run it with
``python -m engine.server --port 8765``, or in-process::

    server = LocalServer(pace=0)
    async with server.running():
        async with engine.transports.connect(server.url(), server.headers()) as ws:
            ...
"""

from __future__ import annotations

from engine.server.app import LocalServer
from engine.server.connection import ServerConnection
from engine.server.conversation import Conversation
from engine.server.faults import Faults, Quirks, Replay
from engine.server.session import ServerSession
from engine.server.session_config import DEFAULT_SESSION

__all__ = [
    "DEFAULT_SESSION",
    "Conversation",
    "Faults",
    "LocalServer",
    "Quirks",
    "Replay",
    "ServerConnection",
    "ServerSession",
]
