"""The Telnyx dialect, sans-IO: the same events from Telnyx's names (written from its AsyncAPI page)."""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from engine.gateway.carriers.base import (
    CarrierFailure,
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
from engine.gateway.carriers.telnyx import TelnyxStream, connect_texml

STREAM_ID = "32DE0DEA-53CB-4B21-89A4-9E1819C043BC"
CONNECTED = {"event": "connected", "version": "1.0.0"}
START = {
    "event": "start",
    "sequence_number": "1",
    "start": {
        "user_id": "3E6F995F-85F7-4705-9741-53B116D28237",
        "call_control_id": "v3:MdI91X4lWFEs7IgbBEOT9M4AigoY08M0WWZFISt1Yw2axZ_IiE4pqg",
        "client_state": "aGF2ZSBhIG5pY2UgZGF5ID1d",
        "media_format": {"encoding": "PCMA", "sample_rate": 8000, "channels": 1},
    },
    "stream_id": STREAM_ID,
}
AUDIO = bytes(range(160))


def media(chunk: int) -> dict[str, Any]:
    return {
        "event": "media",
        "sequence_number": str(chunk + 1),
        "media": {
            "track": "inbound",
            "chunk": str(chunk),
            "timestamp": str(20 * chunk),
            "payload": base64.b64encode(AUDIO).decode(),
        },
        "stream_id": STREAM_ID,
    }


DTMF = {"event": "dtmf", "stream_id": STREAM_ID, "dtmf": {"digit": "#"}}
MARK = {"event": "mark", "sequence_number": "6", "stream_id": STREAM_ID, "mark": {"name": "m3"}}
ERROR = {
    "event": "error",
    "sequence_number": "7",
    "stream_id": STREAM_ID,
    "payload": {"code": 100003, "title": "malformed_frame", "detail": "The frame is not valid JSON"},
}
STOP = {
    "event": "stop",
    "sequence_number": "8",
    "stop": {"user_id": "3E6F995F", "call_control_id": START["start"]["call_control_id"]},  # type: ignore[index]
    "stream_id": STREAM_ID,
}


def with_format(fmt: dict[str, Any]) -> dict[str, Any]:
    start = json.loads(json.dumps(START))
    start["start"]["media_format"] = fmt
    return start  # type: ignore[no-any-return]


def feed(stream: TelnyxStream, *frames: dict[str, Any] | str) -> list[Any]:
    out: list[Any] = []
    for frame in frames:
        out += stream.receive(frame if isinstance(frame, str) else json.dumps(frame))
    return out


def test_a_whole_call_decodes_to_the_same_events_as_twilio() -> None:
    stream = TelnyxStream()
    assert feed(stream, CONNECTED, START, media(1), DTMF, MARK, ERROR, media(2), STOP) == [
        Connected(version="1.0.0"),
        Started(
            stream_id=STREAM_ID,
            call_id=START["start"]["call_control_id"],  # type: ignore[index]
            account_id="3E6F995F-85F7-4705-9741-53B116D28237",
            media_format=MediaFormat(encoding="audio/pcma", rate=8000, channels=1),
        ),
        Media(payload=AUDIO, chunk=1, timestamp_ms=20),
        Dtmf(digit="#"),
        MarkDone(name="m3"),
        CarrierFailure(code="100003", message="malformed_frame: The frame is not valid JSON"),
        Media(payload=AUDIO, chunk=2, timestamp_ms=40),
        Stopped(reason="stop"),
    ]


def test_outgoing_frames() -> None:
    stream = TelnyxStream()
    with pytest.raises(CarrierStateError):
        stream.media(b"\x01")
    feed(stream, START)
    assert json.loads(stream.media(b"\x01\x02")) == {"event": "media", "media": {"payload": "AQI="}}
    assert json.loads(stream.mark("m1")) == {"event": "mark", "mark": {"name": "m1"}}
    assert json.loads(stream.clear()) == {"event": "clear"}


def test_custom_parameters_as_a_list_or_an_object() -> None:
    for given in ([{"name": "lang", "value": "fr"}], {"lang": "fr"}):
        start = json.loads(json.dumps(START))
        start["start"]["custom_parameters"] = given
        (event,) = feed(TelnyxStream(), start)
        assert isinstance(event, Started)
        assert event.custom_parameters == {"lang": "fr"}


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ([media(1)], "before start"),
        ([START, STOP, ERROR], "after stop"),
        ([START, {"event": "error", "payload": "boom"}], "'payload' is not an object"),
        ([START, {**ERROR, "payload": {"code": [1]}}], "'payload.code'"),
        ([with_format({"encoding": "OPUS"})], "not PCMU or PCMA"),
        ([with_format({"encoding": "PCMU", "sample_rate": 16000})], "not 8000"),
        ([{k: v for k, v in START.items() if k != "stream_id"}], "'stream_id'"),
        ([START, {**media(1), "stream_id": "another"}], "another stream"),
        ([START, {"event": "media", "media": {"payload": "%%%"}}], "not base64"),
        ([START, "not json"], "not JSON"),
    ],
)
def test_bad_and_out_of_order_frames_are_malformed(frames: list[Any], reason: str) -> None:
    stream = TelnyxStream()
    last = feed(stream, *frames)[-1]
    assert isinstance(last, Malformed)
    assert reason in last.reason


def test_texml_answer_streams_bidirectionally() -> None:
    root = ET.fromstring(connect_texml("wss://gw.example.com/telnyx/stream", {"who": "<a&b>"}))
    (connect,) = root
    (stream,) = connect
    assert (root.tag, connect.tag, stream.tag) == ("Response", "Connect", "Stream")
    assert stream.attrib == {
        "url": "wss://gw.example.com/telnyx/stream",
        "bidirectionalMode": "rtp",
        "bidirectionalCodec": "PCMU",
    }
    assert [p.attrib for p in stream] == [{"name": "who", "value": "<a&b>"}]
    with pytest.raises(ValueError):
        connect_texml("https://x/telnyx/stream")
    with pytest.raises(ValueError):
        connect_texml("wss://x/telnyx/stream", codec="OPUS")
