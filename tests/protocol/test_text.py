"""Text UTF-8 cannot carry and JSON nested too deep: repaired or refused at the codec, never a crash.

Lone surrogates (unpaired UTF-16 halves) are legal in Python strings and in
escaped JSON (``"\\ud83d"``) but not in UTF-8. From the server they are
replaced by U+FFFD and reported (:class:`RepairedMessage` carries the event);
``encode`` never returns text the socket cannot send; nesting beyond
``MAX_DEPTH`` is a ``ProtocolError`` whose raw text is clipped.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.errors import ProtocolError
from engine.protocol import client as c
from engine.protocol import server as s
from engine.protocol import server_response as r
from engine.protocol.codec import MAX_DEPTH, RepairedMessage, decode, encode
from engine.protocol.items import Item
from engine.protocol.text import check_text, repair_text

WHERE = {"response_id": "r", "item_id": "i", "output_index": 0, "content_index": 0}


def _repaired(event: dict[str, Any]) -> RepairedMessage:
    with pytest.raises(RepairedMessage) as info:
        decode(json.dumps(event))  # json.dumps escapes a lone surrogate as \\udXXX, as a server would
    assert info.value.code == "invalid_text"
    assert isinstance(info.value, ProtocolError)
    return info.value


@pytest.mark.parametrize(
    ("event", "read"),
    [
        (
            {"type": "response.output_audio_transcript.delta", **WHERE, "delta": "hi \ud83d"},
            lambda e: e.delta,
        ),
        (
            {"type": "response.output_audio_transcript.delta", **WHERE, "delta": "\ude00 lone low half"},
            lambda e: e.delta,
        ),
        ({"type": "response.output_text.delta", **WHERE, "delta": "x\udbff"}, lambda e: e.delta),
        (
            {"type": "response.function_call_arguments.done", **WHERE, "call_id": "call_\ud83d",
             "name": "f", "arguments": "{}"},
            lambda e: e.call_id,
        ),
        ({"type": "response.output_audio.delta", **WHERE, "item_id": "item_\ud83d", "delta": "AAAA"},
         lambda e: e.item_id),
        ({"type": "error", "error": {"type": "x", "message": "bad \ud800"}}, lambda e: e.error.message),
        ({"type": "vendor.thing", "note": "\ud83d"}, lambda e: e.raw["note"]),
        ({"type": "vendor.thing", "\ud83d": 1}, lambda e: "".join(e.raw)),
    ],
)  # fmt: skip
def test_lone_surrogates_from_the_server_are_replaced_and_the_event_still_comes_out(
    event: dict[str, Any], read: Any
) -> None:
    """Every string (ids, text, raw vendor data, keys) is repaired; the event is usable and encodable."""
    repaired = _repaired(event)
    value = read(repaired.event)
    assert "\ufffd" in value
    value.encode("utf-8")  # would raise before the fix
    assert len(repaired.raw) <= 600  # clipped for the report


def test_a_well_formed_escaped_pair_is_one_character_and_no_error() -> None:
    """A pair written as two escapes is an emoji, not a repair: no slow-path false alarm."""
    event = decode('{"type":"response.output_text.delta","response_id":"r","item_id":"i",'
                   '"output_index":0,"content_index":0,"delta":"\\ud83d\\ude00 \\uD83D\\uDE00"}')  # fmt: skip
    assert isinstance(event, r.ResponseOutputTextDelta)
    assert event.delta == "\U0001f600 \U0001f600"


def test_the_audio_fast_path_still_takes_plain_deltas() -> None:
    """The surrogate guard costs the audio path nothing: a plain delta is decoded as before."""
    event = decode('{"type":"response.output_audio.delta","response_id":"r","item_id":"i",'
                   '"output_index":0,"content_index":0,"delta":"AAAA"}')  # fmt: skip
    assert isinstance(event, r.ResponseOutputAudioDelta) and event.delta == "AAAA"


@pytest.mark.parametrize(
    "event",
    [
        c.ConversationItemCreate(item=Item.user_text("hi \ud83d")),
        c.ConversationItemCreate(item=Item.function_call_output("call_\udc00", '{"a":"\ud83d"}')),
        c.SessionUpdate(session={"instructions": "\ud83d"}),
        s.UnknownServerEvent(type="x", raw={"type": "x", "\ud83d": "\ude00"}),
    ],
)
def test_encode_never_returns_text_utf8_cannot_carry(event: Any) -> None:
    """The last guard before the socket: the text always encodes (a failure there once looked fatal)."""
    text = encode(event)
    text.encode("utf-8")
    assert "\ufffd" in text
    json.loads(text)


def test_check_text_refuses_and_repair_text_replaces() -> None:
    """The helpers the edges use: a ValueError naming the index, or U+FFFD for each lone half."""
    check_text("fine \U0001f600")
    with pytest.raises(ValueError, match=r"lone surrogate .* index 2"):
        check_text("ab\ud83d", "send_text()")
    assert repair_text("a\ud83d\ude00b\ud83dc\ude00") == "a\U0001f600b\ufffdc\ufffd"
    assert repair_text("plain") == "plain"


def _nested(depth: int, kind: str = "vendor.thing") -> str:
    return '{"type":"' + kind + '","conversation":' + "[" * depth + "]" * depth + "}"


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 500, 990, 5_000, 200_000])
@pytest.mark.parametrize("kind", ["vendor.thing", "conversation.created"])
def test_deep_nesting_is_a_clipped_protocol_error(depth: int, kind: str) -> None:
    """Deep JSON is refused at decode (no RecursionError later, when it is copied or recorded)."""
    with pytest.raises(ProtocolError) as info:
        decode(_nested(depth, kind))
    assert not isinstance(info.value, RepairedMessage)
    assert len(str(info.value)) < 1_000


def test_nesting_up_to_the_limit_is_accepted() -> None:
    """Real messages nest a few levels; the limit leaves room for echoed JSON schemas."""
    text = (
        '{"type":"conversation.created","conversation":{"a":'
        + "[" * (MAX_DEPTH - 2)
        + "]" * (MAX_DEPTH - 2)
        + "}}"
    )
    assert isinstance(decode(text), s.ConversationCreated)
    assert isinstance(decode(text.encode()), s.ConversationCreated)  # bytes take the careful path
