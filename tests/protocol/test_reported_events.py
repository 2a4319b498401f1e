"""The server events the core reports (and the local server emits) match the GA schema."""

from __future__ import annotations

import json
from typing import Any

import anyio
import attrs
import pytest

from engine.protocol import encode
from engine.protocol import server as s
from engine.server.connection import _RATE_LIMITS, ServerConnection
from tests.protocol.ga_oracle import assert_ga_server_event


def _emitted(call: str, **kwargs: Any) -> dict[str, Any]:
    """What a trigger of ServerConnection queues for its writer (no socket needed)."""
    connection = ServerConnection.__new__(ServerConnection)
    send, receive = anyio.create_memory_object_stream[Any](10)
    with send, receive:
        connection._emit, connection._emitted, connection._closed = send, 0, anyio.Event()
        getattr(connection, call)(**kwargs)
        data: dict[str, Any] = json.loads(encode(receive.receive_nowait()))
    return data


@pytest.mark.parametrize(
    ("call", "kwargs"),
    [("press", {"digit": "#", "received_at": 1733330000}), ("idle_timeout", {"audio_end_ms": 6000})],
)
def test_local_server_triggers_send_ga_events(call: str, kwargs: dict[str, Any]) -> None:
    assert_ga_server_event(_emitted(call, **kwargs))


def test_local_server_rate_limits_are_ga() -> None:
    assert_ga_server_event(json.loads(encode(attrs.evolve(_RATE_LIMITS, event_id="event_1"))))


def test_mcp_progress_events_decode_from_ga_shapes() -> None:
    for kind in ("mcp_list_tools.in_progress", "mcp_list_tools.completed", "mcp_list_tools.failed"):
        assert_ga_server_event({"type": kind, "event_id": "event_1", "item_id": "mcp_1"})
    for kind in ("response.mcp_call.in_progress", "response.mcp_call.completed", "response.mcp_call.failed"):
        assert_ga_server_event({"type": kind, "event_id": "event_2", "item_id": "mcp_2", "output_index": 0})
    assert s.McpListToolsFailed(item_id="mcp_1").TYPE == "mcp_list_tools.failed"
