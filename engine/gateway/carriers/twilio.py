"""Twilio Media Streams, sans-IO: the stream codec and state machine, the TwiML answer, the signature check.

The facts this module relies on (message fields, TwiML ``<Connect><Stream>``,
the ``X-Twilio-Signature`` algorithm) are summarised in docs/carriers.md with
links to Twilio's pages. In short: Twilio sends ``connected``, ``start``,
``media`` (base64 μ-law, 8 kHz mono), ``dtmf``, ``mark`` (the echo of ours)
and ``stop``; on a bidirectional stream (``<Connect><Stream>``) we send
``media``, ``mark`` and ``clear``, each with the ``streamSid``.

The state machine and the receive path are shared with the Telnyx dialect
(:mod:`engine.gateway.carriers._common`); ``receive`` runs for every 20 ms
frame of every call, so a ``media`` frame costs one ``json.loads``, one strict
base64 decode and a few lookups. The frames we send are built by
concatenation around the JSON-encoded ``streamSid`` computed once at ``start``.
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
    parameters_field,
    section,
    text_field,
    xml_attribute,
)
from engine.gateway.carriers.base import (
    CarrierEvent,
    Connected,
    Dtmf,
    MarkDone,
    MediaFormat,
    MissingExtra,
    SignedRequest,
    Started,
    Stopped,
)

ENCODINGS = {"audio/x-mulaw": "audio/pcmu"}
"""Twilio's ``mediaFormat.encoding`` names -> ours (Twilio streams μ-law only)."""
SIGNATURE_HEADER = "x-twilio-signature"
"""The header carrying Twilio's signature (lower case, as the app passes header names)."""
PARAMETER_LIMIT = 500
"""Twilio's limit on a custom parameter's name and value together, in characters."""


class TwilioStream(JsonMediaStream):
    """One Twilio Media Stream (one call), sans-IO; see the module docstring."""

    name = "twilio"
    ID_KEY = "streamSid"

    def __init__(self) -> None:
        super().__init__()
        self.started: Started | None = None
        """The ``start`` metadata once it arrived."""
        self._media_prefix = ""
        self._mark_prefix = ""
        self._clear = ""

    def media(self, audio: bytes) -> str:
        """A ``media`` frame that plays ``audio`` (μ-law 8 kHz, no header) to the caller."""
        self._check_streaming("media")
        return self._media_prefix + binascii.b2a_base64(audio, newline=False).decode("ascii") + '"}}'

    def mark(self, name: str) -> str:
        """A ``mark`` frame: Twilio echoes ``name`` when the audio sent before it has played."""
        self._check_streaming("mark")
        if not isinstance(name, str) or not name:
            raise TypeError(f"a mark name is a non-empty string, got {name!r}")
        return self._mark_prefix + json_string(name) + "}}"

    def clear(self) -> str:
        """A ``clear`` frame: Twilio drops the audio it holds and echoes the marks it dropped."""
        self._check_streaming("clear")
        return self._clear

    # Handlers: one per event Twilio sends; they raise Bad for a field that does not fit.

    def _connected(self, frame: Mapping[str, Any]) -> CarrierEvent:
        return Connected(
            protocol=text_field(frame, "protocol", "connected", required=False),
            version=text_field(frame, "version", "connected", required=False),
        )

    def _start(self, frame: Mapping[str, Any]) -> CarrierEvent:
        start = section(frame, "start")
        sid = text_field(start, "streamSid", "start")
        fmt = section(start, "mediaFormat")
        encoding = ENCODINGS.get(fmt.get("encoding"))  # type: ignore[arg-type]
        if encoding is None:
            raise Bad(f"'start.mediaFormat.encoding' {clip(str(fmt.get('encoding')))!r} is not audio/x-mulaw")
        mono_8k(fmt, "sampleRate", "start.mediaFormat", default_rate=None)
        account = start.get("accountSid")
        started = Started(
            stream_id=sid,
            call_id=text_field(start, "callSid", "start"),
            account_id=account if isinstance(account, str) and account else None,
            media_format=MediaFormat(encoding=encoding, rate=8000, channels=1),
            custom_parameters=parameters_field(start, "customParameters", "start"),
        )
        self.started, self._stream_id = started, sid
        quoted = json_string(sid)
        self._media_prefix = '{"event":"media","streamSid":' + quoted + ',"media":{"payload":"'
        self._mark_prefix = '{"event":"mark","streamSid":' + quoted + ',"mark":{"name":'
        self._clear = '{"event":"clear","streamSid":' + quoted + "}"
        return started

    def _dtmf(self, frame: Mapping[str, Any]) -> CarrierEvent:
        return Dtmf(digit=digit_field(section(frame, "dtmf"), "dtmf"))

    def _mark(self, frame: Mapping[str, Any]) -> CarrierEvent:
        return MarkDone(name=text_field(section(frame, "mark"), "name", "mark"))

    def _stop(self, frame: Mapping[str, Any]) -> CarrierEvent:
        return Stopped(reason="stop")

    HANDLERS: ClassVar[dict[str, Callable[[Any, Mapping[str, Any]], CarrierEvent]]] = {
        "connected": _connected,
        "start": _start,
        "media": JsonMediaStream._media_event,
        "dtmf": _dtmf,
        "mark": _mark,
        "stop": _stop,
    }


def connect_twiml(url: str, parameters: Mapping[str, str] | None = None) -> str:
    """The TwiML answering a voice webhook: ``<Connect><Stream url=...>`` with custom parameters.

    ``<Connect>`` makes the stream bidirectional (``<Start>`` would not let us
    speak). Twilio passes the parameters back in ``start.customParameters``;
    its stream URL takes no query string, so parameters are the way to carry
    per-call data.

    Raises:
        ValueError: ``url`` is not a ``wss://`` (or, for local tests, ``ws://``) URL
            without a query string, or a parameter is empty, too long, or holds a
            character XML cannot carry.
    """
    if not url.startswith(("wss://", "ws://")) or "?" in url:
        raise ValueError(f"the stream URL must be wss://host/path without a query string, got {url!r}")
    children = []
    for key, value in (parameters or {}).items():
        if not isinstance(key, str) or not isinstance(value, str) or not key:
            raise ValueError(f"custom parameters are non-empty names with string values: {key!r}={value!r}")
        if len(key) + len(value) >= PARAMETER_LIMIT:
            raise ValueError(f"custom parameter {key!r} is too long (name and value under {PARAMETER_LIMIT})")
        children.append(f"<Parameter name={xml_attribute(key)} value={xml_attribute(value)}/>")
    stream = f"<Stream url={xml_attribute(url)}>{''.join(children)}</Stream>"
    return f'<?xml version="1.0" encoding="UTF-8"?><Response><Connect>{stream}</Connect></Response>'


def say_twiml(text: str) -> str:
    """TwiML that says ``text`` and hangs up (e.g. when the gateway is full)."""
    said = xml_attribute(text)[1:-1]  # escaped as an attribute value is as safe in element text
    return f'<?xml version="1.0" encoding="UTF-8"?><Response><Say>{said}</Say><Hangup/></Response>'


class TwilioSignature:
    """Checks ``X-Twilio-Signature`` on the voice webhook and on the media stream's upgrade.

    Twilio signs each request with HMAC-SHA1 keyed by the account's auth token,
    over the full URL it requested followed by the form parameters (sorted
    by name, each name then its value); the stream's upgrade is a GET, signed
    over its URL alone. The check is the ``twilio`` package's
    ``RequestValidator`` (the ``engine[twilio]`` extra), imported only when a
    token is configured. The token never appears in a repr or an error.
    """

    def __init__(self, auth_token: str) -> None:
        if not isinstance(auth_token, str) or not auth_token:
            raise ValueError("the Twilio auth token must be a non-empty string")
        try:
            from twilio.request_validator import (  # type: ignore[import-untyped, unused-ignore]
                RequestValidator,
            )
        except ImportError:
            raise MissingExtra(
                "checking Twilio signatures needs the 'twilio' package: pip install 'engine[twilio]'"
            ) from None
        self._validator = RequestValidator(auth_token)

    def __repr__(self) -> str:
        return "<TwilioSignature token=***>"

    def check(self, request: SignedRequest) -> bool:
        """True when ``request`` (a webhook or a stream upgrade) carries a valid ``X-Twilio-Signature``."""
        signature = request.headers.get(SIGNATURE_HEADER)
        if request.form is None:
            return self.upgrade(request.url, signature)
        return self.webhook(request.url, request.form, signature)

    def webhook(self, url: str, params: Mapping[str, str], signature: str | None) -> bool:
        """True when ``signature`` signs this form POST to ``url`` (the URL Twilio requested)."""
        if not signature:
            return False
        return bool(self._validator.validate(url, dict(params), signature))

    def upgrade(self, url: str, signature: str | None) -> bool:
        """True when ``signature`` signs the stream's WebSocket upgrade to ``url`` (no body)."""
        if not signature:
            return False
        return bool(self._validator.validate(url, {}, signature))
