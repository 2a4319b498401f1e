"""send_raw's validation (engine.actors.raw.route): misuse is the library's usage errors, nothing sent."""

from __future__ import annotations

from typing import Any

import pytest

from engine.actors.raw import route
from engine.core import commands as cmd
from engine.errors import ProtocolError, UsageTypeError, UsageValueError
from engine.protocol.config import SessionConfig


@pytest.mark.parametrize("event", [{"no": "type"}, {"type": ""}, {"type": 5}, ["type"]])
def test_an_event_without_a_string_type_is_a_usage_type_error(event: Any) -> None:
    with pytest.raises(UsageTypeError, match="non-empty string 'type'"):
        route(event, SessionConfig())


@pytest.mark.parametrize(
    ("event", "match"),
    [
        ({"type": "vendor.x", "n": float("nan")}, "not JSON"),
        ({"type": "vendor.x", "b": b"bytes"}, "not JSON"),
        ({"type": "conversation.item.create", "previous_item_id": "i0",
          "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}},
         "previous_item_id"),
        ({"type": "input_audio_buffer.append", "audio": "not base64!"}, "base64"),
        ({"type": "session.update", "session": {"vendor_knob": 1}}, "not modelled"),
    ],
)
def test_a_bad_value_is_a_usage_value_error(event: dict[str, Any], match: str) -> None:
    with pytest.raises(UsageValueError, match=match):
        route(event, SessionConfig())


def test_a_malformed_known_event_is_refused_as_the_codec_refuses_it() -> None:
    with pytest.raises(ProtocolError):
        route({"type": "response.create", "response": 5}, SessionConfig())


def test_a_known_event_becomes_the_command_that_guards_it() -> None:
    assert route({"type": "response.cancel"}, SessionConfig()) == cmd.CancelResponse()
    assert route({"type": "input_audio_buffer.append", "audio": "AAA="}, SessionConfig()) == b"\x00\x00"
    assert route({"type": "vendor.ping"}, SessionConfig()) == '{"type": "vendor.ping"}'
