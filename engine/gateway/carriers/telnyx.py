"""Telnyx media streaming, sans-IO: the second dialect over the same seam, and its TeXML answer.

Telnyx's WebSocket protocol has Twilio's shape with its own names (see
docs/carriers.md): ``connected``, ``start`` (``stream_id``, ``call_control_id``,
``media_format`` with ``encoding`` PCMU or PCMA and ``sample_rate``),
``media`` (base64 RTP payload, ``chunk``/``timestamp``), ``dtmf``, ``mark``,
``stop`` and ``error`` in; ``media``, ``mark`` and ``clear`` out once the call
streams bidirectionally (``bidirectionalMode="rtp"``). The state table, the
receive path and the field checks are shared with Twilio's
(:mod:`engine.gateway.carriers._common`); only the names differ.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from engine.gateway.carriers._common import (
    Bad,
    JsonMediaStream,
    clip,
    digit_field,
    json_string,
    mono_8k,
    section,
    text_field,
    xml_attribute,
)
from engine.gateway.carriers.base import (
    CarrierEvent,
    CarrierFailure,
    Connected,
    Dtmf,
    MarkDone,
    MediaFormat,
    Started,
    Stopped,
)

ENCODINGS = {"PCMU": "audio/pcmu", "PCMA": "audio/pcma"}
"""Telnyx's ``media_format.encoding`` names we pass through untouched -> ours (both 8 kHz)."""


class TelnyxStream(JsonMediaStream):
    """One Telnyx media stream (one call), sans-IO."""

    name = "telnyx"
    ID_KEY = "stream_id"

    def __init__(self) -> None:
        super().__init__()
        self.started: Started | None = None
        """The ``start`` metadata once it arrived."""

    def media(self, audio: bytes) -> str:
        """A ``media`` frame that plays ``audio`` (the call's codec, 8 kHz, no RTP header)."""
        self._check_streaming("media")
        payload = binascii.b2a_base64(audio, newline=False).decode("ascii")
        return '{"event":"media","media":{"payload":"' + payload + '"}}'

    def mark(self, name: str) -> str:
        """A ``mark`` frame: Telnyx echoes ``name`` when the audio sent before it has played."""
        self._check_streaming("mark")
        if not isinstance(name, str) or not name:
            raise TypeError(f"a mark name is a non-empty string, got {name!r}")
        return '{"event":"mark","mark":{"name":' + json_string(name) + "}}"

    def clear(self) -> str:
        """A ``clear`` frame: Telnyx drops the audio it still holds."""
        self._check_streaming("clear")
        return '{"event":"clear"}'

    def _connected(self, frame: Mapping[str, Any]) -> CarrierEvent:
        return Connected(version=text_field(frame, "version", "connected", required=False))

    def _start(self, frame: Mapping[str, Any]) -> CarrierEvent:
        start = section(frame, "start")
        stream_id = frame.get("stream_id") or start.get("stream_id")
        if not isinstance(stream_id, str) or not stream_id:
            raise Bad("'stream_id' is not a non-empty string")
        fmt = section(start, "media_format")
        encoding = ENCODINGS.get(fmt.get("encoding"))  # type: ignore[arg-type]
        if encoding is None:
            raise Bad(f"'start.media_format.encoding' {clip(str(fmt.get('encoding')))!r} is not PCMU or PCMA")
        mono_8k(fmt, "sample_rate", "start.media_format", default_rate=8000)
        user = start.get("user_id")
        started = Started(
            stream_id=stream_id,
            call_id=text_field(start, "call_control_id", "start"),
            account_id=user if isinstance(user, str) and user else None,
            media_format=MediaFormat(encoding=encoding, rate=8000, channels=1),
            custom_parameters=_parameters(start.get("custom_parameters")),
        )
        self.started, self._stream_id = started, stream_id
        return started

    def _dtmf(self, frame: Mapping[str, Any]) -> CarrierEvent:
        return Dtmf(digit=digit_field(section(frame, "dtmf"), "dtmf"))

    def _mark(self, frame: Mapping[str, Any]) -> CarrierEvent:
        return MarkDone(name=text_field(section(frame, "mark"), "name", "mark"))

    def _stop(self, frame: Mapping[str, Any]) -> CarrierEvent:
        return Stopped(reason="stop")

    def _error(self, frame: Mapping[str, Any]) -> CarrierEvent:
        payload = section(frame, "payload")
        code = payload.get("code")
        if isinstance(code, bool) or not isinstance(code, int | str):
            raise Bad("'payload.code' is not a number or a string")
        title = text_field(payload, "title", "payload", required=False)
        detail = text_field(payload, "detail", "payload", required=False)
        return CarrierFailure(code=str(code), message=clip(": ".join(p for p in (title, detail) if p)))

    HANDLERS: ClassVar[dict[str, Callable[[Any, Mapping[str, Any]], CarrierEvent]]] = {
        "connected": _connected,
        "start": _start,
        "media": JsonMediaStream._media_event,
        "dtmf": _dtmf,
        "mark": _mark,
        "stop": _stop,
        "error": _error,
    }


def _parameters(value: Any) -> dict[str, str]:
    # Telnyx's Call Control takes custom parameters as a list of {name, value};
    # accept that or an object of strings.
    if value is None:
        return {}
    if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return dict(value)
    if isinstance(value, list) and all(
        isinstance(p, dict) and isinstance(p.get("name"), str) and isinstance(p.get("value"), str)
        for p in value
    ):
        return {p["name"]: p["value"] for p in value}
    raise Bad("'start.custom_parameters' is neither an object of strings nor a list of {name, value}")


def connect_texml(url: str, parameters: Mapping[str, str] | None = None, *, codec: str = "PCMU") -> str:
    """The TeXML answering a Telnyx call: a bidirectional ``<Connect><Stream>`` in RTP mode.

    TeXML follows TwiML; ``bidirectionalMode="rtp"`` lets us send audio back,
    and ``bidirectionalCodec`` sets what we send (PCMU, the default, or PCMA).
    Custom parameters are written as TwiML's ``<Parameter>`` children.

    Raises:
        ValueError: as :func:`engine.gateway.carriers.twilio.connect_twiml`, or an unknown codec.
    """
    if codec not in ENCODINGS:
        raise ValueError(f"codec must be one of {sorted(ENCODINGS)}, got {codec!r}")
    if not url.startswith(("wss://", "ws://")):
        raise ValueError(f"the stream URL must be wss://host/path, got {url!r}")
    children = []
    for key, value in (parameters or {}).items():
        if not isinstance(key, str) or not isinstance(value, str) or not key:
            raise ValueError(f"custom parameters are non-empty names with string values: {key!r}={value!r}")
        children.append(f"<Parameter name={xml_attribute(key)} value={xml_attribute(value)}/>")
    stream = f'<Stream url={xml_attribute(url)} bidirectionalMode="rtp" bidirectionalCodec="{codec}">'
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Response><Connect>{stream}{''.join(children)}</Stream></Connect></Response>"
    )
