"""The codec: client events to JSON text, JSON text to server events (and back, for servers).

``decode`` is tolerant in what it accepts and strict in what it promises: an
unknown ``type`` becomes :class:`UnknownServerEvent`, missing optional fields
take defaults, and everything else that is wrong (bad JSON, not an object, no
``type``, a field of the wrong type, nesting deeper than :data:`MAX_DEPTH`)
raises exactly one exception, :class:`~engine.errors.ProtocolError`, carrying
the clipped raw text. Text UTF-8 cannot carry (a lone surrogate escape such as
``"\\ud83d"``) is repaired to U+FFFD and the event still comes out, inside a
:class:`RepairedMessage` (a ``ProtocolError`` to report, then ``event`` to use).
``encode`` never returns text UTF-8 cannot encode.
"""

from __future__ import annotations

import binascii
import json
import logging
import types
import typing
from collections.abc import Callable
from typing import Any, ClassVar, Union

from engine.errors import ErrorCode, ProtocolError
from engine.protocol import server as s
from engine.protocol import server_response as r
from engine.protocol._wire import WireTypeError, decoder_for, from_wire, to_wire
from engine.protocol.client import CLIENT_EVENTS, ClientEvent
from engine.protocol.text import depth_exceeds, repair_data, repair_text

log = logging.getLogger(__name__)

MAX_DEPTH = 64
"""Deepest nesting of arrays and objects accepted in a server message.

GA events nest a few levels (a tool's JSON schema echoed back a few more);
anything near Python's recursion limit would fail later, when the event is
copied or recorded, so it is refused here as a protocol error.
"""


ServerEvent = (
    s.ErrorEvent
    | s.Ping
    | s.SessionCreated
    | s.SessionUpdated
    | s.ConversationCreated
    | s.ConversationItemAdded
    | s.ConversationItemDone
    | s.ConversationItemCreated
    | s.ConversationItemRetrieved
    | s.ConversationItemTruncated
    | s.ConversationItemDeleted
    | s.InputAudioTranscriptionDelta
    | s.InputAudioTranscriptionCompleted
    | s.InputAudioTranscriptionFailed
    | s.InputAudioTranscriptionSegment
    | s.InputAudioBufferSpeechStarted
    | s.InputAudioBufferSpeechStopped
    | s.InputAudioBufferCommitted
    | s.InputAudioBufferCleared
    | s.InputAudioBufferTimeoutTriggered
    | s.InputAudioBufferDtmfEventReceived
    | s.OutputAudioBufferStarted
    | s.OutputAudioBufferStopped
    | s.OutputAudioBufferCleared
    | s.RateLimitsUpdated
    | s.McpListToolsInProgress
    | s.McpListToolsCompleted
    | s.McpListToolsFailed
    | r.ResponseCreated
    | r.ResponseDoneEvent
    | r.ResponseOutputItemAdded
    | r.ResponseOutputItemDone
    | r.ResponseContentPartAdded
    | r.ResponseContentPartDone
    | r.ResponseOutputTextDelta
    | r.ResponseOutputTextDone
    | r.ResponseOutputAudioDelta
    | r.ResponseOutputAudioDone
    | r.ResponseOutputAudioTranscriptDelta
    | r.ResponseOutputAudioTranscriptDone
    | r.ResponseFunctionCallArgumentsDelta
    | r.ResponseFunctionCallArgumentsDone
    | r.ResponseMcpCallArgumentsDelta
    | r.ResponseMcpCallArgumentsDone
    | r.ResponseMcpCallInProgress
    | r.ResponseMcpCallCompleted
    | r.ResponseMcpCallFailed
)
"""Every modelled server event: the 46 GA ones plus Inworld's ``ping``."""

AnyServerEvent = ServerEvent | s.UnknownServerEvent


class RepairedMessage(ProtocolError):
    """A server message that decoded only after repairs: report it, then use ``event``.

    Raised by :func:`decode` when strings held lone surrogates (replaced by
    U+FFFD); ``code`` is the ``Error`` code to report.
    """

    code = ErrorCode.INVALID_TEXT

    def __init__(self, message: str, raw: str, event: AnyServerEvent) -> None:
        super().__init__(message, raw)
        self.event = event


SERVER_EVENTS: dict[str, type[ServerEvent]] = {
    cls.TYPE: cls
    for cls in (
        s.ErrorEvent, s.Ping, s.SessionCreated, s.SessionUpdated, s.ConversationCreated,
        s.ConversationItemAdded, s.ConversationItemDone, s.ConversationItemCreated,
        s.ConversationItemRetrieved, s.ConversationItemTruncated, s.ConversationItemDeleted,
        s.InputAudioTranscriptionDelta, s.InputAudioTranscriptionCompleted,
        s.InputAudioTranscriptionFailed, s.InputAudioTranscriptionSegment,
        s.InputAudioBufferSpeechStarted, s.InputAudioBufferSpeechStopped, s.InputAudioBufferCommitted,
        s.InputAudioBufferCleared, s.InputAudioBufferTimeoutTriggered,
        s.InputAudioBufferDtmfEventReceived, s.OutputAudioBufferStarted,
        s.OutputAudioBufferStopped, s.OutputAudioBufferCleared, s.RateLimitsUpdated,
        s.McpListToolsInProgress, s.McpListToolsCompleted, s.McpListToolsFailed,
        r.ResponseCreated, r.ResponseDoneEvent, r.ResponseOutputItemAdded, r.ResponseOutputItemDone,
        r.ResponseContentPartAdded, r.ResponseContentPartDone, r.ResponseOutputTextDelta,
        r.ResponseOutputTextDone, r.ResponseOutputAudioDelta, r.ResponseOutputAudioDone,
        r.ResponseOutputAudioTranscriptDelta, r.ResponseOutputAudioTranscriptDone,
        r.ResponseFunctionCallArgumentsDelta, r.ResponseFunctionCallArgumentsDone,
        r.ResponseMcpCallArgumentsDelta, r.ResponseMcpCallArgumentsDone,
        r.ResponseMcpCallInProgress, r.ResponseMcpCallCompleted, r.ResponseMcpCallFailed,
    )
}  # fmt: skip
"""Every server event class by its wire ``type``."""

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def encode(event: ClientEvent | AnyServerEvent) -> str:
    """Serialise an event to the exact JSON text the peer expects (no ``null`` noise).

    The text is always encodable as UTF-8: a lone surrogate that got this far
    (the edges refuse or repair them first) becomes U+FFFD instead of a
    message the socket cannot send.
    """
    text: str = _dumps(event.raw if isinstance(event, s.UnknownServerEvent) else to_wire(event))
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            log.warning(
                "a %s held text UTF-8 cannot encode; replaced by U+FFFD", getattr(event, "TYPE", "message")
            )
            text = repair_text(text)
    return text


def encode_audio_append(pcm: bytes) -> str:
    """The ``input_audio_buffer.append`` message for raw audio bytes, as :func:`encode` would write it.

    The sending hot path: base64 output needs no JSON escaping, so the text is
    put together directly (no event object, no character checks).
    """
    audio = binascii.b2a_base64(pcm, newline=False).decode("ascii")
    return '{"type":"input_audio_buffer.append","audio":"' + audio + '"}'


_raw_decode = json.JSONDecoder().raw_decode


def _parse(text: str | bytes) -> tuple[str, dict[str, Any]]:
    try:
        # raw_decode skips json.loads' whitespace scans; anything unusual takes the full path.
        data, end = _raw_decode(text) if type(text) is str else (None, -1)
        if end != len(text):
            data = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ProtocolError(f"malformed JSON: {type(exc).__name__}: {exc}", _as_text(text)) from None
    if not isinstance(data, dict):
        raise ProtocolError(f"expected a JSON object, got {type(data).__name__}", _as_text(text))
    if depth_exceeds(data, MAX_DEPTH):
        raise ProtocolError(f"message nested deeper than {MAX_DEPTH} levels", _as_text(text))
    kind = data.get("type")
    if not isinstance(kind, str) or not kind:
        raise ProtocolError("message has no string 'type' field", _as_text(text))
    return kind, data


def _as_text(text: str | bytes) -> str:
    return repair_text(text) if isinstance(text, str) else text.decode("utf-8", "replace")


def _may_hold_surrogates(text: str) -> bool:
    """True when ``text`` has a ``\\ud...`` escape (the only way a surrogate gets into decoded text).

    Transports decode UTF-8 strictly, so raw text never holds one itself; most
    messages have no escape at all, which one short search settles.
    """
    return "\\ud" in text or "\\uD" in text


def _is_flat(cls: type) -> bool:
    """True when every field of ``cls`` is a scalar: no nesting can reach the decoded event."""
    scalars = {str, int, float, bool, type(None)}
    for hint in typing.get_type_hints(cls).values():
        if hint is ClassVar or typing.get_origin(hint) is ClassVar:
            continue
        args = typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else (hint,)
        if not all(a in scalars for a in args):
            return False
    return True


def _build(cls: type[Any], kind: str, data: dict[str, Any], text: str | bytes) -> Any:
    try:
        return from_wire(cls, data)
    except (WireTypeError, TypeError, ValueError) as exc:  # ValueError: a validator refused a value
        raise ProtocolError(f"bad {kind!r} event: {exc}", _as_text(text)) from None


_AUDIO_DELTA = r.ResponseOutputAudioDelta
_AUDIO_TYPE = '"type":"response.output_audio.delta"'
_DELTA_KEY = '"delta":"'
_decoders: dict[str, Callable[[dict[str, Any], str], Any]] = {}


def _decoder(kind: str) -> Callable[[dict[str, Any], str], Any] | None:
    decoder = _decoders.get(kind)
    if decoder is None:
        cls = SERVER_EVENTS.get(kind)
        if cls is None:
            return None
        decoder = _decoders[kind] = decoder_for(cls)
    return decoder


def _decode_audio(text: str) -> AnyServerEvent | None:
    """An audio delta decoded without running its payload through the JSON scanner, or None.

    Most of the traffic is audio, and most of an audio message is its payload:
    taking the payload out with ``find`` spares the scanner a copy and a scan
    of it. Base64 holds no quote or backslash, so the first quote after the key
    closes the string; anything else (an escape, a second ``"delta":"``, a
    nested one) returns None and the message takes the general path.
    """
    at = text.find(_DELTA_KEY)
    if at < 0:
        return None
    start = at + len(_DELTA_KEY)
    end = text.find('"', start)
    if end < 0 or text.find(_DELTA_KEY, end) >= 0:
        return None
    payload = text[start:end]
    if "\\" in payload:
        return None
    rest = text[:start] + text[end:]
    if "\\" in rest and _may_hold_surrogates(rest):  # an escaped id: the careful path checks it
        return None
    data, stop = _raw_decode(rest)
    # The key found must be the top-level one (a nested "delta" leaves the top one absent).
    if stop != len(rest) or type(data) is not dict or data.get("type") != _AUDIO_DELTA.TYPE:
        return None
    if data.get("delta") != "":
        return None
    data["delta"] = payload
    result: AnyServerEvent = _audio_decoder(data, "")
    return result


def _decode_fast(text: str) -> AnyServerEvent | None:
    """The common case in as few steps as possible; None (or any exception) means: take the careful path."""
    if text.find(_AUDIO_TYPE, 0, 64) >= 0:
        event = _decode_audio(text)
        if event is not None:
            return event
    if "\\" in text and _may_hold_surrogates(text):  # inlined memchr test: most text has no escape
        return None
    data, end = _raw_decode(text)
    if end != len(text) or type(data) is not dict:
        return None
    kind = data.get("type")
    if type(kind) is not str:
        return None
    decoder = _decoders.get(kind) or _decoder(kind)
    if kind not in _FLAT and depth_exceeds(data, MAX_DEPTH):
        return None  # the careful path refuses it
    if decoder is None:
        return s.UnknownServerEvent(type=kind, raw=data) if kind else None
    result: AnyServerEvent = decoder(data, "")
    return result


def decode(text: str | bytes) -> AnyServerEvent:
    """Parse one server message. Raises :class:`~engine.errors.ProtocolError` and nothing else.

    A :class:`RepairedMessage` (lone surrogates replaced) carries the event.
    """
    if type(text) is str:
        try:
            event = _decode_fast(text)
        except Exception:  # the careful path below says what is wrong
            event = None
        if event is not None:
            return event
    kind, data = _parse(text)
    data, repaired = repair_data(data)
    kind = data["type"]
    cls = SERVER_EVENTS.get(kind)
    result: AnyServerEvent = (
        s.UnknownServerEvent(type=kind, raw=data) if cls is None else _build(cls, kind, data, text)
    )
    if repaired:
        raise RepairedMessage(
            f"{kind!r} event: {repaired} string(s) held a lone surrogate (an unpaired UTF-16 half), "
            "replaced by U+FFFD",
            _as_text(text),
            result,
        )
    return result


def decode_client(text: str | bytes) -> ClientEvent:
    """Parse one client message (the server side's view). Unknown types are a ``ProtocolError``."""
    kind, data = _parse(text)
    cls = CLIENT_EVENTS.get(kind)
    if cls is None:
        raise ProtocolError(f"unknown client event type {kind!r}", _as_text(text))
    result: ClientEvent = _build(cls, kind, data, text)
    return result


_audio_decoder = decoder_for(_AUDIO_DELTA)
_FLAT = frozenset(kind for kind, cls in SERVER_EVENTS.items() if _is_flat(cls))
"""Event types whose fields are all scalars: deep nesting is dropped with the unknown keys, unseen."""
