"""encode then decode gives back the same event, for every event class."""

from __future__ import annotations

import base64
import json
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.protocol import CLIENT_EVENTS, SERVER_EVENTS, SessionConfig, decode, decode_client, encode
from engine.protocol import client as c
from engine.protocol import server_response as r
from engine.protocol.items import Item
from engine.protocol.server import UnknownServerEvent
from tests.protocol.examples import AUDIO_B64, CLIENT_EXAMPLES, SERVER_EXAMPLES, SESSION_CONFIGS

FAST = settings(max_examples=200, deadline=None, database=None)


def _id(event: Any) -> str:
    return str(type(event).TYPE)


def _nulls(value: Any, path: str = "") -> list[str]:
    """Paths of every ``null`` in a decoded JSON value."""
    if value is None:
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _nulls(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nulls(v, f"{path}[{i}]")]
    return []


def test_tables_cover_every_event_class() -> None:
    """The example tables hold at least one instance of every registered class."""
    assert {type(e) for e in SERVER_EXAMPLES} == set(SERVER_EVENTS.values())
    assert {type(e) for e in CLIENT_EXAMPLES} == set(CLIENT_EVENTS.values())


@pytest.mark.parametrize("event", SERVER_EXAMPLES, ids=_id)
def test_server_event_roundtrip(event: Any) -> None:
    """A server event survives encode -> decode unchanged, and its text is a typed JSON object."""
    text = encode(event)
    data = json.loads(text)
    assert data["type"] == type(event).TYPE
    assert decode(text) == event
    assert decode(text.encode("utf-8")) == event


@pytest.mark.parametrize("event", CLIENT_EXAMPLES, ids=_id)
def test_client_event_roundtrip(event: Any) -> None:
    """A client event survives encode -> decode_client unchanged."""
    text = encode(event)
    assert json.loads(text)["type"] == type(event).TYPE
    assert decode_client(text) == event


@pytest.mark.parametrize("event", [*SERVER_EXAMPLES, *CLIENT_EXAMPLES], ids=_id)
def test_encode_emits_no_null_except_turn_detection(event: Any) -> None:
    """``None`` fields are dropped; the only ``null`` allowed is a disabled turn_detection."""
    nulls = _nulls(json.loads(encode(event)))
    assert set(nulls) <= {"session.audio.input.turn_detection"}
    if isinstance(event, c.SessionUpdate) and event.session["audio"]["input"]["turn_detection"] is None:
        assert nulls == ["session.audio.input.turn_detection"]


def test_manual_turns_are_sent_as_null() -> None:
    """``turn_detection=None`` is on the wire as ``"turn_detection": null``, not left out."""
    data = json.loads(encode(c.SessionUpdate(session=SessionConfig(turn_detection=None).to_wire())))
    assert "turn_detection" in data["session"]["audio"]["input"]
    assert data["session"]["audio"]["input"]["turn_detection"] is None
    assert _nulls(data) == ["session.audio.input.turn_detection"]


@pytest.mark.parametrize("name", sorted(n for n in SESSION_CONFIGS if n != "manual_turns"))
def test_vad_configs_have_no_null(name: str) -> None:
    """A config with turn detection encodes without any ``null``."""
    assert _nulls(json.loads(encode(c.SessionUpdate(session=SESSION_CONFIGS[name].to_wire())))) == []


def test_append_is_exactly_the_expected_json() -> None:
    """The audio fast path gives the same JSON as ``json.dumps`` of the expected dict."""
    text = encode(c.InputAudioBufferAppend(audio=AUDIO_B64))
    expected = json.dumps({"type": "input_audio_buffer.append", "audio": AUDIO_B64})
    assert json.loads(text) == json.loads(expected)
    with_id = encode(c.InputAudioBufferAppend(audio=AUDIO_B64, event_id="e1"))
    assert json.loads(with_id) == {"type": "input_audio_buffer.append", "audio": AUDIO_B64, "event_id": "e1"}


def test_encode_is_compact_and_keeps_unicode() -> None:
    """No whitespace padding, and non-ASCII text is not escaped."""
    text = encode(c.ConversationItemCreate(item=Item.user_text("Grüß dich 東京")))
    assert ", " not in text and ": " not in text
    assert "Grüß dich 東京" in text


def test_unknown_server_event_roundtrip() -> None:
    """An unknown event re-encodes as its raw object and decodes to an equal value."""
    raw = {"type": "vendor.custom", "event_id": "event_X1", "payload": {"a": [1, 2.5, None, True]}}
    event = decode(json.dumps(raw))
    assert event == UnknownServerEvent(type="vendor.custom", raw=raw)
    assert json.loads(encode(event)) == raw
    assert decode(encode(event)) == event


# Hypothesis round trips with generated values.

_ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", max_size=24)
_opt_ids = st.none() | _ids
_ints = st.integers(min_value=0, max_value=2**53)
_b64 = st.binary(max_size=600).map(lambda b: base64.b64encode(b).decode("ascii"))


@FAST
@given(
    delta=_b64,
    response_id=_opt_ids,
    item_id=_opt_ids,
    output_index=st.none() | _ints,
    content_index=st.none() | _ints,
    event_id=_opt_ids,
)
def test_audio_delta_roundtrip(**kwargs: Any) -> None:
    """Generated ``response.output_audio.delta`` events round-trip; the audio decodes as sent."""
    event = r.ResponseOutputAudioDelta(**kwargs)
    back = decode(encode(event))
    assert back == event
    assert isinstance(back, r.ResponseOutputAudioDelta)
    assert base64.b64decode(back.delta) == base64.b64decode(kwargs["delta"])


@FAST
@given(delta=st.text(), item_id=_opt_ids, content_index=st.none() | _ints, event_id=_opt_ids)
def test_transcript_delta_roundtrip(**kwargs: Any) -> None:
    """Arbitrary unicode transcript text (quotes, escapes, control characters) round-trips."""
    event = r.ResponseOutputAudioTranscriptDelta(**kwargs)
    assert decode(encode(event)) == event


@FAST
@given(
    call_id=_opt_ids,
    name=st.none() | st.text(min_size=1, max_size=64),
    arguments=st.text() | st.dictionaries(st.text(max_size=8), st.integers()).map(json.dumps),
    output_index=st.none() | _ints,
)
def test_function_call_arguments_done_roundtrip(**kwargs: Any) -> None:
    """``response.function_call_arguments.done`` round-trips, with or without ``name``."""
    event = r.ResponseFunctionCallArgumentsDone(**kwargs)
    back = decode(encode(event))
    assert back == event
    assert "name" in json.loads(encode(event)) or kwargs["name"] is None


@FAST
@given(text=st.text(), item_id=st.none() | _ids, previous=st.none() | st.just("root") | _ids)
def test_user_text_item_create_roundtrip(text: str, item_id: str | None, previous: str | None) -> None:
    """``conversation.item.create`` with a generated user text item round-trips."""
    event = c.ConversationItemCreate(item=Item.user_text(text, id=item_id), previous_item_id=previous)
    back = decode_client(encode(event))
    assert back == event
    assert isinstance(back, c.ConversationItemCreate)
    assert back.item.text == text


@FAST
@given(audio=_b64, event_id=_opt_ids)
def test_append_roundtrip(audio: str, event_id: str | None) -> None:
    """Base64 audio through both encode paths (with and without event_id) round-trips."""
    event = c.InputAudioBufferAppend(audio=audio, event_id=event_id)
    assert decode_client(encode(event)) == event


@FAST
@given(item_id=_ids, content_index=_ints, audio_end_ms=_ints)
def test_truncate_roundtrip(item_id: str, content_index: int, audio_end_ms: int) -> None:
    """Generated ints survive as ints (no float coercion)."""
    event = c.ConversationItemTruncate(
        item_id=item_id, content_index=content_index, audio_end_ms=audio_end_ms
    )
    back = decode_client(encode(event))
    assert back == event
    assert type(back.audio_end_ms) is int


@pytest.mark.parametrize("audio", ['ab"cd', "ab\\cd", "ab\ncd"])
def test_append_with_non_base64_text_is_still_valid_json(audio: str) -> None:
    """encode must produce valid JSON (or refuse) whatever string ``audio`` holds."""
    assert json.loads(encode(c.InputAudioBufferAppend(audio=audio, event_id="e")))["audio"] == audio
    assert json.loads(encode(c.InputAudioBufferAppend(audio=audio)))["audio"] == audio


def test_events_are_frozen() -> None:
    """Events are immutable values."""
    event = c.InputAudioBufferAppend(audio=AUDIO_B64)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.audio = ""  # type: ignore[misc]
