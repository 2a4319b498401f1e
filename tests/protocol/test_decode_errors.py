"""decode is tolerant where it may be and raises only ProtocolError where it must."""

from __future__ import annotations

import json
import string
import types
import typing
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import RAW_LIMIT, ProtocolError
from engine.protocol import SERVER_EVENTS, decode, decode_client, encode
from engine.protocol import server as s
from engine.protocol import server_response as r
from engine.protocol.items import ContentPart, ErrorDetail, Item, Response
from engine.protocol.server import UnknownServerEvent

FAST = settings(max_examples=200, deadline=None, database=None)


def _raises(text: str | bytes, decoder: Any = decode) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decoder(text)
    assert type(info.value) is ProtocolError
    return info.value


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"type": "ping",', "malformed JSON"),
        ("", "malformed JSON"),
        ("{'type': 'ping'}", "malformed JSON"),
        ('[{"type": "ping"}]', "expected a JSON object, got list"),
        ('"session.created"', "expected a JSON object, got str"),
        ("42", "expected a JSON object, got int"),
        ("null", "expected a JSON object, got NoneType"),
        ('{"event_id": "e1"}', "type"),
        ('{"type": 5}', "type"),
        ('{"type": null}', "type"),
        ('{"type": ""}', "type"),
        ('{"type": ["ping"]}', "type"),
    ],
)
def test_not_an_event(text: str, fragment: str) -> None:
    """Bad JSON, non-objects and a missing or non-string ``type`` are ProtocolErrors."""
    exc = _raises(text)
    assert fragment in exc.message
    assert exc.raw == text


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({"type": "response.output_audio.delta", "delta": 5}, "delta"),
        ({"type": "conversation.item.added", "item": "x"}, "item"),
        ({"type": "response.done", "response": []}, "response"),
        ({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": "10"}, "audio_end_ms"),
        ({"type": "conversation.item.truncated", "content_index": True}, "content_index"),
        ({"type": "ping", "timestamp": 1.5}, "timestamp"),
        ({"type": "error", "error": {"message": ["boom"]}}, "error.message"),
        ({"type": "rate_limits.updated", "rate_limits": {"name": "tokens"}}, "rate_limits"),
        ({"type": "rate_limits.updated", "rate_limits": [{"limit": "many"}]}, "rate_limits[0].limit"),
        ({"type": "conversation.item.done", "item": {"id": "item_1"}}, "item.type"),
        (
            {
                "type": "response.done",
                "response": {
                    "output": [{"type": "message", "content": [{"type": "output_text", "text": 7}]}]
                },
            },
            "response.output[0].content[0].text",
        ),
        ({"type": "response.done", "usage": {"total_tokens": "12"}}, "usage.total_tokens"),
        (
            {"type": "response.created", "response": {"max_output_tokens": False}},
            "response.max_output_tokens",
        ),
        ({"type": "session.created", "session": "default"}, "session"),
    ],
)
def test_wrong_field_type_names_the_path(payload: dict[str, Any], path: str) -> None:
    """A known event with a mistyped field raises ProtocolError naming the field path."""
    text = json.dumps(payload)
    exc = _raises(text)
    assert f"{path}:" in exc.message
    assert payload["type"] in exc.message
    assert exc.raw == text
    assert text in str(exc)


def test_wrong_field_type_in_client_event() -> None:
    """decode_client checks field types the same way."""
    exc = _raises(
        '{"type": "conversation.item.truncate", "item_id": "i", "audio_end_ms": "10"}', decode_client
    )
    assert "audio_end_ms:" in exc.message
    exc = _raises('{"type": "conversation.item.truncate", "item_id": "i"}', decode_client)
    assert "audio_end_ms" in exc.message


def test_unknown_client_type_is_an_error() -> None:
    """Unlike decode, decode_client refuses a type it does not know (including server types)."""
    assert "response.done" in _raises('{"type": "response.done"}', decode_client).message


def test_non_utf8_bytes() -> None:
    """Bytes that are not UTF-8 give ProtocolError with a replacement-decoded ``raw``."""
    exc = _raises(b'{"type": "ping", "note": "\xff\xfe"}')
    assert "malformed JSON" in exc.message
    assert exc.raw == '{"type": "ping", "note": "\ufffd\ufffd"}'
    assert _raises(b"\xc3\x28").raw == "\ufffd("


def test_utf8_bytes_decode() -> None:
    """Valid UTF-8 bytes decode like the equivalent text."""
    text = '{"type": "response.output_audio_transcript.delta", "delta": "Grüß 東京"}'
    assert decode(text.encode("utf-8")) == decode(text)
    assert decode(text).delta == "Grüß 東京"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "text",
    [
        "x" * 100_000,
        '{"type": "response.output_audio.delta", "delta": ' + "9" * 4000 + "}",
        json.dumps({"type": "response.output_audio.delta", "delta": 5, "pad": "A" * 100_000}),
        json.dumps([{"type": "ping"}] * 10_000),
    ],
    ids=["garbage", "huge-int", "bad-field-big", "big-array"],
)
def test_raw_is_clipped(text: str) -> None:
    """A 100 KB bad message gives a short ``raw`` (and ``str``) that starts like the message."""
    exc = _raises(text)
    assert len(exc.raw) < 1000
    assert exc.raw.startswith(text[:RAW_LIMIT])
    assert "more characters" in exc.raw


def test_message_of_bad_string_field_is_bounded() -> None:
    """A long mistyped string value is quoted clipped in the message, not whole."""
    text = json.dumps({"type": "ping", "timestamp": "T" * 100_000})
    exc = _raises(text)
    assert "timestamp:" in exc.message
    assert len(exc.message) < 200
    assert len(str(exc)) < 1000


def test_message_of_bad_number_field_is_bounded() -> None:
    """A huge mistyped number does not blow up the message either."""
    exc = _raises('{"type": "response.output_audio.delta", "delta": ' + "9" * 4000 + "}")
    assert "delta:" in exc.message
    assert len(str(exc)) < 1000


def test_bytes_raw_is_clipped() -> None:
    """The clipping applies to bytes input too."""
    exc = _raises(b"\xff" * 100_000)
    assert len(exc.raw) < 1000


@pytest.mark.parametrize(
    "text", ["[" * 100_000, '{"type": "session.created", "session": ' + '{"a": ' * 50_000]
)
def test_deep_nesting_is_a_protocol_error(text: str) -> None:
    """A pathologically nested message is a ProtocolError, not a RecursionError."""
    exc = _raises(text)
    assert len(exc.raw) < 1000


def test_unknown_type_keeps_the_raw_dict() -> None:
    """An unknown ``type`` decodes to UnknownServerEvent carrying the whole object."""
    raw = {"type": "response.audio.delta", "delta": "AAAA", "extra": {"n": [1, 2]}}
    event = decode(json.dumps(raw))
    assert isinstance(event, UnknownServerEvent)
    assert event.type == "response.audio.delta"
    assert event.raw == raw


def test_client_type_sent_by_server_is_unknown() -> None:
    """A client event type arriving from the server is not mistaken for a server event."""
    event = decode('{"type": "session.update", "session": {}}')
    assert event == UnknownServerEvent(type="session.update", raw={"type": "session.update", "session": {}})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"type": "response.done"}', r.ResponseDoneEvent()),
        ('{"type": "response.created"}', r.ResponseCreated(response=Response())),
        ('{"type": "error"}', s.ErrorEvent(error=ErrorDetail())),
        ('{"type": "error", "error": {"message": "x"}}', s.ErrorEvent(error=ErrorDetail(message="x"))),
        ('{"type": "response.output_audio.delta"}', r.ResponseOutputAudioDelta(delta="")),
        (
            '{"type": "response.function_call_arguments.done", "call_id": "c1", "arguments": "{}"}',
            r.ResponseFunctionCallArgumentsDone(call_id="c1", arguments="{}", name=None),
        ),
        ('{"type": "ping"}', s.Ping(timestamp=None)),
        ('{"type": "rate_limits.updated"}', s.RateLimitsUpdated(rate_limits=())),
        (
            '{"type": "conversation.item.added", "item": {"type": "message"}}',
            s.ConversationItemAdded(item=Item(type="message")),
        ),
        (
            '{"type": "error", "error": {"type": "server_error", "code": null, "message": "Failed."}}',
            s.ErrorEvent(error=ErrorDetail(type="server_error", message="Failed.")),
        ),
    ],
)
def test_missing_optional_fields_take_defaults(text: str, expected: Any) -> None:
    """Absent (or null) optional fields decode to their defaults."""
    assert decode(text) == expected


def test_extra_keys_are_ignored() -> None:
    """Unknown keys, top-level and nested, are ignored."""
    text = json.dumps(
        {
            "type": "response.output_item.added",
            "event_id": "event_1",
            "response_id": "resp_1",
            "output_index": 0,
            "brand_new": {"x": 1},
            "item": {
                "type": "message",
                "role": "assistant",
                "id": "item_1",
                "vendor": True,
                "content": [{"type": "audio", "transcript": "hi", "timestamps": [0, 1]}],
            },
        }
    )
    assert decode(text) == r.ResponseOutputItemAdded(
        event_id="event_1",
        response_id="resp_1",
        output_index=0,
        item=Item(
            type="message",
            role="assistant",
            id="item_1",
            content=(ContentPart(type="audio", transcript="hi"),),
        ),
    )


def test_inworld_top_level_usage_and_missing_name() -> None:
    """Inworld's top-level ``usage`` and a done event without ``name`` decode."""
    done = decode('{"type": "response.done", "response": {"id": "r"}, "usage": {"total_tokens": 9}}')
    assert isinstance(done, r.ResponseDoneEvent)
    assert done.effective_usage is not None and done.effective_usage.total_tokens == 9
    args = decode('{"type": "response.function_call_arguments.done", "call_id": "c", "arguments": "{}"}')
    assert isinstance(args, r.ResponseFunctionCallArgumentsDone) and args.name is None


# Fuzzing: decode returns an event or raises ProtocolError, never anything else.


def _decode_or_protocol_error(text: str | bytes) -> None:
    try:
        event = decode(text)
    except ProtocolError as exc:
        assert len(exc.raw) <= RAW_LIMIT + 40
        return
    assert isinstance(event, (UnknownServerEvent, *SERVER_EVENTS.values()))
    assert type(event) is UnknownServerEvent or json.loads(text)["type"] == getattr(type(event), "TYPE", None)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)


@FAST
@given(st.text())
def test_fuzz_arbitrary_text(text: str) -> None:
    """Arbitrary text: an event or a ProtocolError."""
    _decode_or_protocol_error(text)


@FAST
@given(st.binary(max_size=200))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    """Arbitrary bytes: an event or a ProtocolError."""
    _decode_or_protocol_error(data)


@FAST
@given(_json)
def test_fuzz_arbitrary_json(value: Any) -> None:
    """Arbitrary JSON values: an event or a ProtocolError."""
    _decode_or_protocol_error(json.dumps(value))


def _field_names(cls: type) -> list[str]:
    return [f.name for f in attrs.fields(cls)]


@st.composite
def _known_event_with_junk(draw: st.DrawFn) -> str:
    """A registered type with its own field names mapped to arbitrary JSON values."""
    kind = draw(st.sampled_from(sorted(SERVER_EVENTS)))
    names = _field_names(SERVER_EVENTS[kind])
    body = draw(st.dictionaries(st.sampled_from(names), _json, max_size=len(names))) if names else {}
    return json.dumps({**body, "type": kind})


@FAST
@given(_known_event_with_junk())
def test_fuzz_known_types_with_arbitrary_fields(text: str) -> None:
    """Known types with arbitrary values in their own fields: an event or a ProtocolError."""
    _decode_or_protocol_error(text)


@st.composite
def _typed_values(draw: st.DrawFn, hint: Any) -> Any:
    """A JSON value that fits a field's type hint (a small generator for the wire shapes)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return draw(_typed_values(draw(st.sampled_from(typing.get_args(hint)))))
    if hint is type(None):
        return None
    if hint is str:
        return draw(st.text(alphabet=string.printable, max_size=12))
    if hint is bool:
        return draw(st.booleans())
    if hint is int:
        return draw(st.integers(min_value=-(2**40), max_value=2**40))
    if hint is float:
        return draw(st.floats(allow_nan=False, allow_infinity=False, width=32))
    if origin is tuple:
        return draw(st.lists(_typed_values(typing.get_args(hint)[0]), max_size=2))
    if origin is dict or hint in (Any, object):
        return draw(st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))
    if attrs.has(hint):
        hints = typing.get_type_hints(hint)
        out = {
            f.name: draw(_typed_values(hints[f.name]))
            for f in attrs.fields(hint)
            if f.default is attrs.NOTHING
        }
        optional = [f.name for f in attrs.fields(hint) if f.default is not attrs.NOTHING]
        for name in draw(st.lists(st.sampled_from(optional), unique=True)) if optional else []:
            out[name] = draw(_typed_values(hints[name]))
        return out
    raise AssertionError(f"no strategy for {hint!r}")


@st.composite
def _valid_event(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    kind = draw(st.sampled_from(sorted(SERVER_EVENTS)))
    body = draw(_typed_values(SERVER_EVENTS[kind]))
    return kind, {**body, "type": kind}


@FAST
@given(_valid_event())
def test_fuzz_well_typed_events_decode_and_roundtrip(case: tuple[str, dict[str, Any]]) -> None:
    """Any well-typed payload of a known type decodes to that class and survives re-encoding."""
    kind, payload = case
    event = decode(json.dumps(payload))
    assert type(event) is SERVER_EVENTS[kind]
    assert decode(encode(event)) == event
