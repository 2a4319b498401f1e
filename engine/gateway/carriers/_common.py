"""What the carrier dialects share: the stream's state table, frame parsing, field checks.

Theory of operation: a carrier media stream has three states. It waits for
``start`` (``connected`` may come first), then streams (media, DTMF, mark
echoes) until ``stop``, then is over. :data:`TRANSITIONS` is the whole
machine: for each state, the events it accepts and the state they lead to. An
event that the table does not list for the current state (media before
``start``, anything after ``stop``, a second ``start``) is out of order: the
dialect reports it as :class:`~engine.gateway.carriers.base.Malformed` and the
state does not change. Unknown events are malformed in every state.
"""

from __future__ import annotations

import binascii
import html
import json
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from engine.gateway.carriers.base import CarrierEvent, CarrierStateError, Malformed, Media

AWAITING_START = "awaiting_start"
STREAMING = "streaming"
STOPPED = "stopped"

TRANSITIONS: dict[str, dict[str, str]] = {
    AWAITING_START: {
        "connected": AWAITING_START, "start": STREAMING, "stop": STOPPED, "error": AWAITING_START,
    },
    STREAMING: {
        "media": STREAMING, "dtmf": STREAMING, "mark": STREAMING, "stop": STOPPED, "error": STREAMING,
    },
    STOPPED: {},
}  # fmt: skip
"""state -> {event accepted in it -> next state}; ``error`` is Telnyx's (Twilio sends none)."""

RAW_LIMIT = 200
"""Characters of a bad frame kept in :class:`Malformed` (enough to see what it was, never a whole payload)."""

DTMF_DIGITS = frozenset("0123456789*#ABCD")


class Bad(Exception):
    """A field check failed; the dialect turns it into :class:`Malformed`. Never leaves the package."""


def clip(text: str) -> str:
    """``text`` cut to :data:`RAW_LIMIT` characters."""
    return text if len(text) <= RAW_LIMIT else text[:RAW_LIMIT] + "..."


def parse(text: str) -> dict[str, Any] | Malformed:
    """A frame as a JSON object with a string ``event``, or the reason it is not one."""
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return Malformed(reason=f"not JSON: {exc}", raw=clip(text))
    if not isinstance(frame, dict):
        return Malformed(reason=f"not a JSON object but {type(frame).__name__}", raw=clip(text))
    if not isinstance(frame.get("event"), str):
        return Malformed(reason="no string 'event' field", raw=clip(text))
    return frame


def out_of_order(event: str, state: str, text: str) -> Malformed:
    """The Malformed for an event the state table refuses in ``state``."""
    if state == STOPPED:
        reason = f"'{event}' after stop"
    elif state == AWAITING_START:
        reason = f"'{event}' before start"
    else:
        reason = f"'{event}' while streaming (already started)"
    return Malformed(reason=reason, raw=clip(text))


def section(frame: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """The object under ``key``."""
    value = frame.get(key)
    if not isinstance(value, dict):
        raise Bad(f"'{key}' is not an object")
    return value


def text_field(obj: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str:
    """A string field (``""`` when optional and absent)."""
    value = obj.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise Bad(f"'{where}.{key}' is not a non-empty string")
    return value


def number_field(obj: Mapping[str, Any], key: str, where: str) -> int | None:
    """A counter both carriers send as a decimal string ("1"), or an integer; None when absent."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdecimal() and len(value) <= 18:
        return int(value)
    raise Bad(f"'{where}.{key}' is not a non-negative integer")


def payload_field(obj: Mapping[str, Any], where: str) -> bytes:
    """The base64 audio of a media frame, strictly decoded."""
    payload = obj.get("payload")
    if not isinstance(payload, str):
        raise Bad(f"'{where}.payload' is not a string")
    try:
        return binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise Bad(f"'{where}.payload' is not base64: {exc}") from None


def digit_field(obj: Mapping[str, Any], where: str) -> str:
    """A DTMF digit: one of 0-9, *, #, A-D."""
    digit = obj.get("digit")
    if not isinstance(digit, str) or digit not in DTMF_DIGITS:
        raise Bad(f"'{where}.digit' is not a DTMF digit (0-9, *, #, A-D)")
    return digit


def mono_8k(fmt: Mapping[str, Any], rate_key: str, where: str, *, default_rate: int | None) -> None:
    """Refuse a media format that is not 8 kHz mono (both dialects carry G.711 only at that rate)."""
    rate, channels = fmt.get(rate_key, default_rate), fmt.get("channels", 1)
    if rate != 8000 or isinstance(rate, bool):
        raise Bad(f"'{where}.{rate_key}' is {clip(str(rate))!r}, not 8000")
    if channels != 1 or isinstance(channels, bool):
        raise Bad(f"'{where}.channels' is {clip(str(channels))!r}, not 1")


def parameters_field(obj: Mapping[str, Any], key: str, where: str) -> dict[str, str]:
    """Custom parameters: an object of strings (absent means none)."""
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise Bad(f"'{where}.{key}' is not an object of strings")
    return dict(value)


def xml_attribute(value: str) -> str:
    """``value`` as a quoted XML attribute. Raises ``ValueError`` for a character XML 1.0 cannot carry."""
    if any(ord(c) < 0x20 and c not in "\t\n\r" for c in value):
        raise ValueError(f"{value!r} holds a control character XML cannot carry")
    # html.escape covers & < > " '; XML would turn a literal newline or tab in an
    # attribute into a space, so those are written as character references.
    # (xml.sax.saxutils would do the same but imports urllib.request, and with it socket.)
    escaped = html.escape(value, quote=True)
    return '"' + escaped.replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;") + '"'


def json_string(value: str) -> str:
    """``value`` as a JSON string literal (for frames built by concatenation)."""
    return json.dumps(value, ensure_ascii=False)


class JsonMediaStream:
    """The receive side both dialects share: JSON text frames with an ``event``, checked against the table.

    A dialect sets :attr:`name`, :attr:`ID_KEY` (the frame field naming the
    stream) and :attr:`HANDLERS` (one per event it receives; a handler raises
    :class:`Bad` for a field that does not fit), and builds its own outgoing
    frames. ``receive`` runs for every 20 ms frame of every call: a
    well-formed ``media`` frame takes a short path of a few lookups; anything
    else takes the general path, which says precisely what is wrong.
    """

    name: ClassVar[str] = ""
    ID_KEY: ClassVar[str] = ""
    HANDLERS: ClassVar[dict[str, Callable[[Any, Mapping[str, Any]], CarrierEvent]]] = {}

    def __init__(self) -> None:
        self.state = AWAITING_START
        self._stream_id = ""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.state} stream={self._stream_id or None}>"

    def receive(self, text: str) -> list[CarrierEvent]:
        """Decode one text frame; a bad or out-of-order frame is :class:`Malformed`."""
        if self.state == STREAMING:
            fast = self._fast_media(text)
            if fast is not None:
                return [fast]
        frame = parse(text)
        if isinstance(frame, Malformed):
            return [frame]
        event: str = frame["event"]
        handler = self.HANDLERS.get(event)
        if handler is None:
            return [Malformed(reason=f"unknown event {clip(event)!r}", raw=clip(text))]
        after = TRANSITIONS[self.state].get(event)
        if after is None:
            return [out_of_order(event, self.state, text)]
        stream_id = frame.get(self.ID_KEY)
        if self._stream_id and stream_id is not None and stream_id != self._stream_id:
            reason = f"'{event}' for another stream: {clip(str(stream_id))!r}"
            return [Malformed(reason=reason, raw=clip(text))]
        try:
            out = handler(self, frame)
        except Bad as exc:
            return [Malformed(reason=str(exc), raw=clip(text))]
        self.state = after
        return [out]

    def _fast_media(self, text: str) -> Media | None:
        try:
            frame = json.loads(text)
        except (ValueError, RecursionError):
            return None
        if type(frame) is not dict or frame.get("event") != "media":
            return None
        if frame.get(self.ID_KEY, self._stream_id) != self._stream_id:
            return None
        media = frame.get("media")
        if type(media) is not dict:
            return None
        payload, chunk, timestamp = media.get("payload"), media.get("chunk"), media.get("timestamp")
        if (
            type(payload) is not str
            or type(chunk) is not str
            or type(timestamp) is not str
            or not (chunk.isdecimal() and chunk.isascii() and len(chunk) <= 18)
            or not (timestamp.isdecimal() and timestamp.isascii() and len(timestamp) <= 18)
        ):
            return None
        try:
            audio = binascii.a2b_base64(payload, strict_mode=True)
        except (binascii.Error, ValueError):
            return None
        return Media(payload=audio, chunk=int(chunk), timestamp_ms=int(timestamp))

    def receive_bytes(self, data: bytes) -> list[CarrierEvent]:
        """Both carriers send JSON text frames only."""
        return [Malformed(reason=f"binary frame ({len(data)} bytes); {self.name} sends JSON text")]

    def _check_streaming(self, what: str) -> None:
        if self.state != STREAMING:
            raise CarrierStateError(f"cannot send {what} to {self.name} in state {self.state}")

    def _media_event(self, frame: Mapping[str, Any]) -> CarrierEvent:
        media = frame.get("media")
        if not isinstance(media, dict):
            raise Bad("'media' is not an object")
        return Media(
            payload=payload_field(media, "media"),
            chunk=number_field(media, "chunk", "media"),
            timestamp_ms=number_field(media, "timestamp", "media"),
        )
