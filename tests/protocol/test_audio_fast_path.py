"""The audio-delta fast path of ``decode`` agrees with the general path on every input.

``decode`` takes a str audio delta apart with ``find`` before parsing; bytes
always take the general path, so ``decode(text.encode())`` is the oracle.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ProtocolError
from engine.protocol import codec, decode, decode_client, encode
from engine.protocol import server_response as r
from engine.protocol.client import InputAudioBufferAppend

FAST = settings(max_examples=300, deadline=None, database=None)
PCM = bytes(range(256)) * 3
B64 = base64.b64encode(PCM).decode()


def _outcome(text: str | bytes) -> Any:
    try:
        return decode(text)
    except ProtocolError as exc:
        return ("error", str(exc))


def _agrees(text: str) -> Any:
    fast, general = _outcome(text), _outcome(text.encode())
    assert fast == general
    return fast


def test_plain_delta_takes_the_payload_whole() -> None:
    text = json.dumps(
        {"type": "response.output_audio.delta", "response_id": "r", "item_id": "i", "delta": B64},
        separators=(",", ":"),
    )
    assert codec._decode_audio(text) is not None  # the fast path took it
    event = _agrees(text)
    assert isinstance(event, r.ResponseOutputAudioDelta)
    assert event.delta == B64 and event.item_id == "i"


@pytest.mark.parametrize(
    "text",
    [
        # a JSON escape inside the payload: the first quote is not the end of the string
        '{"type":"response.output_audio.delta","delta":"AAAA\\/AAA","item_id":"i"}',
        '{"type":"response.output_audio.delta","delta":"AA\\"AA","item_id":"i"}',
        # a nested "delta" before the real one, and a nested one alone
        '{"type":"response.output_audio.delta","x":{"delta":"BBBB"},"delta":"AAAA"}',
        '{"type":"response.output_audio.delta","x":{"delta":"BBBB"}}',
        # duplicate keys: JSON keeps the last
        '{"type":"response.output_audio.delta","delta":"AAAA","delta":"BBBB"}',
        # the type named in a nested object, the message is something else
        '{"x":{"type":"response.output_audio.delta"},"type":"ping","delta":"AAAA"}',
        '{"type":"response.output_audio.delta","delta":"AAAA"',  # truncated
        '{"type":"response.output_audio.delta","delta":"AAAA',
        '{"type":"response.output_audio.delta","delta":"AAAA","item_id":7}',  # wrong field type
        '{"type":"response.output_audio.delta","delta":""}',
        '{"type":"response.output_audio.delta"}',
        '{ "type" : "response.output_audio.delta", "delta" : "AAAA" }',
        '{"type":"response.output_audio.delta","delta":"AAAA"} trailing',
    ],
)
def test_awkward_messages_agree_with_the_general_path(text: str) -> None:
    _agrees(text)


def test_duplicate_delta_keeps_the_last() -> None:
    event = _agrees('{"type":"response.output_audio.delta","delta":"AAAA","delta":"BBBB"}')
    assert event.delta == "BBBB"


_keys = st.sampled_from(["delta", "type", "k"])
_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner),
    max_leaves=6,
)


@FAST
@given(
    extra=st.dictionaries(
        st.sampled_from(["item_id", "response_id", "output_index", "event_id", "x", "delta"]), _values
    ),
    payload=st.text(alphabet='AB+/=\\"\u00e9', max_size=16) | st.just(B64),
    first=st.booleans(),
    spaced=st.booleans(),
)
def test_generated_deltas_agree(extra: dict[str, Any], payload: str, first: bool, spaced: bool) -> None:
    fields: dict[str, Any] = {"delta": payload, **extra}
    kind = {"type": "response.output_audio.delta"}
    message = {**kind, **fields} if first else {**fields, **kind}
    separators = (", ", ": ") if spaced else (",", ":")
    _agrees(json.dumps(message, separators=separators, ensure_ascii=False))


@FAST
@given(pcm=st.binary(max_size=4000))
def test_append_shortcut_writes_what_encode_writes(pcm: bytes) -> None:
    audio = base64.b64encode(pcm).decode()
    text = codec.encode_audio_append(pcm)
    assert text == encode(InputAudioBufferAppend(audio=audio))
    assert decode_client(text) == InputAudioBufferAppend(audio=audio)
