"""The Twilio dialect, sans-IO: frames in, events out, frames back; TwiML; signatures.

The frames here are written from Twilio's "Media Streams - WebSocket Messages"
page (docs/carriers.md), not from the codec.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from engine.gateway.carriers.base import (
    CarrierStateError,
    Connected,
    Dtmf,
    Malformed,
    MarkDone,
    Media,
    MediaFormat,
    Started,
    Stopped,
)
from engine.gateway.carriers.twilio import TwilioSignature, TwilioStream, connect_twiml, say_twiml

SID = "MZ18ad3ab5a668481ce02b83e7395059f0"
CONNECTED = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
START = {
    "event": "start",
    "sequenceNumber": "1",
    "start": {
        "accountSid": "AC00000000000000000000000000000000",
        "streamSid": SID,
        "callSid": "CA00000000000000000000000000000000",
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {"caller": "+15550100", "lang": "fr"},
    },
    "streamSid": SID,
}
FRAME_20MS = bytes(range(160))


def media(chunk: int = 1, payload: bytes = FRAME_20MS, **media_fields: Any) -> dict[str, Any]:
    body = {
        "track": "inbound",
        "chunk": str(chunk),
        "timestamp": str(20 * (chunk - 1)),
        "payload": base64.b64encode(payload).decode(),
    }
    body.update(media_fields)
    return {"event": "media", "sequenceNumber": str(chunk + 1), "media": body, "streamSid": SID}


DTMF = {
    "event": "dtmf",
    "streamSid": SID,
    "sequenceNumber": "5",
    "dtmf": {"track": "inbound_track", "digit": "7"},
}
MARK = {"event": "mark", "sequenceNumber": "4", "streamSid": SID, "mark": {"name": "m1"}}
STOP = {
    "event": "stop",
    "sequenceNumber": "9",
    "streamSid": SID,
    "stop": {"accountSid": START["start"]["accountSid"], "callSid": START["start"]["callSid"]},  # type: ignore[index]
}


def feed(stream: TwilioStream, *frames: dict[str, Any] | str) -> list[Any]:
    out: list[Any] = []
    for frame in frames:
        out += stream.receive(frame if isinstance(frame, str) else json.dumps(frame))
    return out


def streaming() -> TwilioStream:
    stream = TwilioStream()
    feed(stream, CONNECTED, START)
    return stream


def test_a_whole_call_decodes_to_typed_events() -> None:
    stream = TwilioStream()
    events = feed(stream, CONNECTED, START, media(1), media(2), DTMF, MARK, STOP)
    assert events == [
        Connected(protocol="Call", version="1.0.0"),
        Started(
            stream_id=SID,
            call_id="CA00000000000000000000000000000000",
            account_id="AC00000000000000000000000000000000",
            media_format=MediaFormat(encoding="audio/pcmu", rate=8000, channels=1),
            custom_parameters={"caller": "+15550100", "lang": "fr"},
        ),
        Media(payload=FRAME_20MS, chunk=1, timestamp_ms=0),
        Media(payload=FRAME_20MS, chunk=2, timestamp_ms=20),
        Dtmf(digit="7"),
        MarkDone(name="m1"),
        Stopped(reason="stop"),
    ]
    assert stream.state == "stopped"


def test_start_without_connected_is_accepted() -> None:
    stream = TwilioStream()
    assert isinstance(feed(stream, START)[0], Started)
    assert stream.state == "streaming"


def test_frames_we_send_carry_the_stream_sid() -> None:
    stream = streaming()
    assert json.loads(stream.media(b"\xff\x7f")) == {
        "event": "media",
        "streamSid": SID,
        "media": {"payload": base64.b64encode(b"\xff\x7f").decode()},
    }
    assert json.loads(stream.mark('a "quoted" name')) == {
        "event": "mark",
        "streamSid": SID,
        "mark": {"name": 'a "quoted" name'},
    }
    assert json.loads(stream.clear()) == {"event": "clear", "streamSid": SID}


def test_a_stream_sid_needing_escapes_still_builds_valid_json() -> None:
    stream = TwilioStream()
    start = json.loads(json.dumps(START))
    start["start"]["streamSid"] = start["streamSid"] = 'MZ"\\\u2028'
    feed(stream, start)
    assert json.loads(stream.clear())["streamSid"] == 'MZ"\\\u2028'


@pytest.mark.parametrize("send", [lambda s: s.media(b"x"), lambda s: s.mark("m"), lambda s: s.clear()])
def test_sending_outside_the_stream_is_local_misuse(send: Any) -> None:
    stream = TwilioStream()
    with pytest.raises(CarrierStateError, match="awaiting_start"):
        send(stream)
    feed(stream, START, STOP)
    with pytest.raises(CarrierStateError, match="stopped"):
        send(stream)


def test_a_mark_name_must_be_a_non_empty_string() -> None:
    with pytest.raises(TypeError):
        streaming().mark("")


ORDER = [
    ("media before start", [media(1)], "'media' before start"),
    ("dtmf before start", [DTMF], "'dtmf' before start"),
    ("mark before start", [MARK], "'mark' before start"),
    ("second start", [START, START], "'start' while streaming"),
    ("connected while streaming", [START, CONNECTED], "'connected' while streaming"),
    ("media after stop", [START, STOP, media(1)], "'media' after stop"),
    ("stop after stop", [START, STOP, STOP], "'stop' after stop"),
    ("start after stop", [START, STOP, START], "'start' after stop"),
]


def _cases(table: list[Any]) -> pytest.MarkDecorator:
    cases = [(frames, reason) for _, frames, reason in table]
    return pytest.mark.parametrize(("frames", "reason"), cases, ids=[name for name, _, _ in table])


@_cases(ORDER)
def test_out_of_order_events_are_malformed_and_change_nothing(frames: list[Any], reason: str) -> None:
    stream = TwilioStream()
    events = feed(stream, *frames)
    last = events[-1]
    assert isinstance(last, Malformed)
    assert reason in last.reason
    state_before = stream.state
    feed(stream, json.dumps(frames[-1]))  # still refused, the state never moved
    assert stream.state == state_before


def _with(frame: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    frame = json.loads(json.dumps(frame))
    *parents, key = path.split(".")
    target = frame
    for p in parents:
        target = target[p]
    if value is _DELETE:
        del target[key]
    else:
        target[key] = value
    return frame


_DELETE = object()

BAD_FRAMES = [
    ("not json", "{nope", "not JSON"),
    ("json array", "[1, 2]", "not a JSON object"),
    ("json string", '"media"', "not a JSON object"),
    ("no event", "{}", "no string 'event'"),
    ("event not a string", '{"event": 3}', "no string 'event'"),
    ("unknown event", '{"event": "dance"}', "unknown event"),
    ("telnyx error frame", '{"event": "error"}', "unknown event"),
    ("media not an object", _with(media(1), "media", "x"), "'media' is not an object"),
    ("payload not base64", _with(media(1), "media.payload", "!!!notbase64"), "not base64"),
    ("payload missing", _with(media(1), "media.payload", _DELETE), "'media.payload' is not a string"),
    ("payload a number", _with(media(1), "media.payload", 12), "'media.payload' is not a string"),
    ("chunk not a number", _with(media(1), "media.chunk", "one"), "'media.chunk'"),
    ("chunk negative", _with(media(1), "media.chunk", -1), "'media.chunk'"),
    ("chunk a bool", _with(media(1), "media.chunk", True), "'media.chunk'"),
    ("timestamp a float", _with(media(1), "media.timestamp", 1.5), "'media.timestamp'"),
    ("dtmf digit bad", _with(DTMF, "dtmf.digit", "x"), "DTMF digit"),
    ("dtmf digit two", _with(DTMF, "dtmf.digit", "12"), "DTMF digit"),
    ("dtmf missing", _with(DTMF, "dtmf", _DELETE), "'dtmf' is not an object"),
    ("mark without name", _with(MARK, "mark", {}), "'mark.name'"),
    ("mark name a number", _with(MARK, "mark.name", 5), "'mark.name'"),
    ("other stream", _with(media(1), "streamSid", "MZother"), "another stream"),
]


@_cases(BAD_FRAMES)
def test_bad_frames_while_streaming_are_malformed_and_the_stream_goes_on(frames: Any, reason: str) -> None:
    frame = frames
    stream = streaming()
    (event,) = feed(stream, frame)
    assert isinstance(event, Malformed)
    assert reason in event.reason
    assert len(event.raw) <= 203
    assert stream.state == "streaming"
    assert feed(stream, media(2)) == [Media(payload=FRAME_20MS, chunk=2, timestamp_ms=20)]


BAD_STARTS = [
    ("no start object", _with(START, "start", _DELETE), "'start' is not an object"),
    ("no streamSid", _with(START, "start.streamSid", _DELETE), "'start.streamSid'"),
    ("no callSid", _with(START, "start.callSid", ""), "'start.callSid'"),
    ("alaw", _with(START, "start.mediaFormat.encoding", "audio/x-alaw"), "not audio/x-mulaw"),
    ("16 kHz", _with(START, "start.mediaFormat.sampleRate", 16000), "not 8000"),
    ("rate as text", _with(START, "start.mediaFormat.sampleRate", "8000"), "not 8000"),
    ("stereo", _with(START, "start.mediaFormat.channels", 2), "not 1"),
    ("no mediaFormat", _with(START, "start.mediaFormat", _DELETE), "'mediaFormat' is not an object"),
    ("parameters a list", _with(START, "start.customParameters", ["a"]), "customParameters"),
    ("parameter value a number", _with(START, "start.customParameters", {"a": 1}), "customParameters"),
]


@_cases(BAD_STARTS)
def test_a_bad_start_is_malformed_and_a_good_one_still_starts(frames: Any, reason: str) -> None:
    frame = frames
    stream = TwilioStream()
    (event,) = feed(stream, frame)
    assert isinstance(event, Malformed)
    assert reason in event.reason
    assert stream.state == "awaiting_start"
    assert isinstance(feed(stream, START)[0], Started)


def test_huge_and_deep_frames_are_malformed_with_a_clipped_raw() -> None:
    stream = streaming()
    (deep,) = stream.receive("[" * 100_000 + "]" * 100_000)
    assert isinstance(deep, Malformed)
    (huge,) = stream.receive('{"event": "' + "x" * 100_000 + '"}')
    assert isinstance(huge, Malformed)
    assert len(huge.raw) <= 203 and len(huge.reason) < 300


def test_binary_frames_are_malformed() -> None:
    (event,) = streaming().receive_bytes(b"\x00\x01")
    assert isinstance(event, Malformed)
    assert "binary" in event.reason


def test_media_repr_hides_the_audio() -> None:
    (event,) = feed(streaming(), media(1))
    assert "160 bytes" in repr(event)


# TwiML


def test_connect_twiml_passes_custom_parameters_escaped() -> None:
    twiml = connect_twiml(
        "wss://example.com/twilio/stream", {"caller": "+1 <555> & \"co\" 'x'", "multi": "a\nb"}
    )
    root = ET.fromstring(twiml)
    assert root.tag == "Response"
    (connect,) = root
    assert connect.tag == "Connect"
    (stream,) = connect
    assert stream.tag == "Stream"
    assert stream.attrib == {"url": "wss://example.com/twilio/stream"}
    assert [(p.tag, p.attrib) for p in stream] == [
        ("Parameter", {"name": "caller", "value": "+1 <555> & \"co\" 'x'"}),
        ("Parameter", {"name": "multi", "value": "a\nb"}),
    ]


def test_connect_twiml_without_parameters() -> None:
    assert connect_twiml("wss://h/twilio/stream").endswith(
        '<Response><Connect><Stream url="wss://h/twilio/stream"></Stream></Connect></Response>'
    )


@pytest.mark.parametrize(
    ("url", "parameters"),
    [
        ("https://example.com/stream", None),
        ("wss://example.com/stream?token=1", None),
        ("wss://example.com/stream", {"": "x"}),
        ("wss://example.com/stream", {"a": "\x00"}),
        ("wss://example.com/stream", {"a": "x" * 500}),
    ],
)
def test_connect_twiml_refuses_what_twilio_cannot_take(url: str, parameters: dict[str, str] | None) -> None:
    with pytest.raises(ValueError):
        connect_twiml(url, parameters)


def test_say_twiml_escapes_text() -> None:
    root = ET.fromstring(say_twiml("busy <now> & later"))
    assert [(e.tag, e.text) for e in root] == [("Say", "busy <now> & later"), ("Hangup", None)]


# Signatures

DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOC_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675310",
    "Digits": "1234",
    "From": "+14158675310",
    "To": "+18005551212",
}
DOC_SIGNATURE = "GvWf1cFY/Q7PnoempGyD5oXAezc="
"""Twilio's worked example in "Secure webhooks" (auth token 12345): see docs/carriers.md."""


def _hmac_sha1(token: str, data: str) -> str:
    # The documented algorithm, written out independently of the validator.
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def test_the_documented_example_verifies() -> None:
    check = TwilioSignature("12345")
    assert check.webhook(DOC_URL, DOC_PARAMS, DOC_SIGNATURE)
    signed = DOC_URL + "".join(k + DOC_PARAMS[k] for k in sorted(DOC_PARAMS))
    assert _hmac_sha1("12345", signed) == DOC_SIGNATURE


@pytest.mark.parametrize(
    ("url", "params", "signature"),
    [
        (DOC_URL, {**DOC_PARAMS, "Digits": "1235"}, DOC_SIGNATURE),  # a parameter changed
        (DOC_URL, {**DOC_PARAMS, "Extra": "1"}, DOC_SIGNATURE),  # a parameter added
        ("https://mycompany.com/myapp.php?foo=1&bar=3", DOC_PARAMS, DOC_SIGNATURE),  # another URL
        (DOC_URL, DOC_PARAMS, "GvWf1cFY/Q7PnoempGyD5oXAezd="),  # a forged signature
        (DOC_URL, DOC_PARAMS, ""),
        (DOC_URL, DOC_PARAMS, None),
    ],
)
def test_anything_else_is_refused(url: str, params: dict[str, str], signature: str | None) -> None:
    assert not TwilioSignature("12345").webhook(url, params, signature)


def test_a_wrong_token_is_refused() -> None:
    assert not TwilioSignature("54321").webhook(DOC_URL, DOC_PARAMS, DOC_SIGNATURE)


def test_the_stream_upgrade_is_signed_over_its_url_alone() -> None:
    url = "wss://example.com/twilio/stream"
    signature = _hmac_sha1("secret-token", url)
    check = TwilioSignature("secret-token")
    assert check.upgrade(url, signature)
    assert not check.upgrade("wss://example.com/twilio/other", signature)
    assert not check.upgrade(url, None)


def test_check_reads_the_header_and_tells_a_webhook_from_an_upgrade() -> None:
    from engine.gateway.carriers.base import SignedRequest

    check = TwilioSignature("12345")
    signed = {"x-twilio-signature": DOC_SIGNATURE}
    assert check.check(SignedRequest(url=DOC_URL, headers=signed, form=DOC_PARAMS, now=0.0))
    assert not check.check(SignedRequest(url=DOC_URL, headers={}, form=DOC_PARAMS, now=0.0))
    # The same signature on an upgrade (no form) is checked over the URL alone, and fails.
    assert not check.check(SignedRequest(url=DOC_URL, headers=signed, now=0.0))
    url = "wss://example.com/twilio/stream"
    upgrade = SignedRequest(url=url, headers={"x-twilio-signature": _hmac_sha1("12345", url)}, now=0.0)
    assert check.check(upgrade)


def test_the_token_never_shows() -> None:
    check = TwilioSignature("very-secret-token")
    assert "very-secret-token" not in repr(check)
    assert "very-secret-token" not in str(vars(check))


def test_an_empty_token_is_refused() -> None:
    with pytest.raises(ValueError):
        TwilioSignature("")


def test_without_the_twilio_package_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from engine.gateway.carriers.twilio import MissingExtra

    monkeypatch.setitem(sys.modules, "twilio.request_validator", None)
    with pytest.raises(MissingExtra, match=r"engine\[twilio\]"):
        TwilioSignature("12345")
