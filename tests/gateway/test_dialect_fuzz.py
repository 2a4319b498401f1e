"""Both dialects under arbitrary input: no exception, one event per frame, states moved only by the table.

Deterministic (derandomized) so CI runs the same cases every time.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.gateway.carriers._common import TRANSITIONS
from engine.gateway.carriers.base import Malformed, Media
from engine.gateway.carriers.telnyx import TelnyxStream
from engine.gateway.carriers.twilio import TwilioStream
from tests.gateway import test_telnyx, test_twilio

DETERMINISTIC = settings(derandomize=True, max_examples=100, deadline=None, database=None)
DIALECTS = {"twilio": (TwilioStream, test_twilio.START), "telnyx": (TelnyxStream, test_telnyx.START)}

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=30)
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=8,
)
_events = st.sampled_from(["connected", "start", "media", "dtmf", "mark", "stop", "error", "clear", "x"])
_frames = st.one_of(
    st.text(max_size=80),  # not JSON at all, mostly
    _json.map(json.dumps),  # JSON of any shape
    st.builds(  # the right event names with random bodies: reaches the field checks
        lambda event, body, extra: json.dumps({"event": event, **body, **extra}),
        _events,
        st.dictionaries(st.sampled_from(["media", "start", "dtmf", "mark", "payload"]), _json, max_size=3),
        st.dictionaries(st.sampled_from(["streamSid", "stream_id", "sequenceNumber"]), _scalars, max_size=2),
    ),
)


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
@settings(DETERMINISTIC, max_examples=60)
@given(frames=st.lists(_frames, max_size=6), started=st.booleans())
def test_any_input_gives_one_event_per_frame_and_legal_states(
    dialect: str, frames: list[str], started: bool
) -> None:
    cls, start = DIALECTS[dialect]
    stream = cls()
    if started:
        stream.receive(json.dumps(start))
    for text in frames:
        before = stream.state
        events = stream.receive(text)
        assert len(events) == 1
        if isinstance(events[0], Malformed):
            assert stream.state == before
            assert len(events[0].raw) <= 203
        else:
            assert stream.state in TRANSITIONS[before].values()


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
@DETERMINISTIC
@given(
    payload=st.binary(max_size=400),
    chunk=st.one_of(st.integers(0, 10**6), st.integers(0, 10**6).map(str)),
    timestamp=st.one_of(st.integers(0, 10**9), st.integers(0, 10**9).map(str)),
)
def test_valid_media_decodes_the_same_on_the_short_and_the_general_path(
    dialect: str, payload: bytes, chunk: Any, timestamp: Any
) -> None:
    cls, start = DIALECTS[dialect]
    stream = cls()
    stream.receive(json.dumps(start))
    key = "streamSid" if dialect == "twilio" else "stream_id"
    frame = {
        "event": "media",
        key: json.loads(json.dumps(start))[key],
        "media": {"track": "inbound", "chunk": chunk, "timestamp": timestamp,
                  "payload": base64.b64encode(payload).decode()},
    }  # fmt: skip
    expected = [Media(payload=payload, chunk=int(chunk), timestamp_ms=int(timestamp))]
    assert stream.receive(json.dumps(frame)) == expected  # strings take the short path, ints the general
    assert stream.HANDLERS["media"](stream, frame) == expected[0]  # the general path alone
