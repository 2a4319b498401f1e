"""The seam between a carrier's media stream and the bridge: events in, messages out.

Every carrier dialect (Twilio Media Streams, Telnyx media streaming) is a
small sans-IO module, in the spirit of :mod:`engine.protocol`: a
:class:`CarrierStream` takes the carrier's text frames in and returns typed
:data:`CarrierEvent` values, and builds the text frames to send back. It does
no I/O and reads no clock; the bridge actor owns the socket.

A peer fault is an event, not an exception (as in wsproto): a frame that is not
JSON, not an object, of an unknown ``event``, or missing a field becomes
:class:`Malformed` with the reason and the clipped raw text, and the stream
goes on. Local misuse (sending media before ``start``) raises
:class:`CarrierStateError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import attrs

from engine.errors import EngineError


class CarrierStateError(EngineError):
    """The bridge asked for something the stream's state does not allow (e.g. media before ``start``)."""


@attrs.frozen(kw_only=True)
class MediaFormat:
    """The call's audio as the carrier sends and expects it: ``audio/pcmu``, ``audio/pcma``, ``audio/pcm``."""

    encoding: str
    rate: int
    channels: int = 1


@attrs.frozen(kw_only=True)
class Connected:
    """The carrier opened the stream (Twilio's and Telnyx's ``connected``)."""

    protocol: str = ""
    version: str = ""


@attrs.frozen(kw_only=True)
class Started:
    """The call's metadata: ids, the audio format and the custom parameters passed through."""

    stream_id: str
    call_id: str
    account_id: str | None = None
    media_format: MediaFormat
    custom_parameters: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class Media:
    """Caller audio (decoded from base64), in the call's media format."""

    payload: bytes = attrs.field(repr=lambda p: f"<{len(p)} bytes>")
    chunk: int | None = None
    timestamp_ms: int | None = None


@attrs.frozen(kw_only=True)
class Dtmf:
    """The caller pressed a key."""

    digit: str


@attrs.frozen(kw_only=True)
class MarkDone:
    """The carrier reached a mark we sent: the audio before it has played, or ``clear`` dropped it."""

    name: str


@attrs.frozen(kw_only=True)
class Stopped:
    """The stream ended (the caller hung up, or the call was redirected)."""

    reason: str = "stop"


@attrs.frozen(kw_only=True)
class CarrierFailure:
    """The carrier reported an error of its own (Telnyx's ``error`` frame)."""

    code: str
    message: str


@attrs.frozen(kw_only=True)
class Malformed:
    """A frame we could not use; ``raw`` is clipped. The stream goes on."""

    reason: str
    raw: str = ""


CarrierEvent = Connected | Started | Media | Dtmf | MarkDone | Stopped | CarrierFailure | Malformed


class CarrierStream(Protocol):
    """One carrier media stream, sans-IO. One object per call."""

    name: str
    """The dialect's name (``twilio``, ``telnyx``): used in metrics, logs and routes."""

    def receive(self, text: str) -> list[CarrierEvent]:
        """Decode one text frame from the carrier into events (a bad frame is :class:`Malformed`)."""
        ...

    def receive_bytes(self, data: bytes) -> list[CarrierEvent]:
        """A binary frame from the carrier (neither dialect sends one): a :class:`Malformed` event."""
        ...

    def media(self, audio: bytes) -> str:
        """A frame that plays ``audio`` (in the call's media format) to the caller."""
        ...

    def mark(self, name: str) -> str:
        """A frame asking the carrier to echo ``name`` once the audio sent before it has played."""
        ...

    def clear(self) -> str:
        """A frame that drops the audio the carrier still holds (barge-in)."""
        ...


class MissingExtra(EngineError):
    """An optional dependency is not installed; the message names the extra to install."""


@attrs.frozen(kw_only=True)
class SignedRequest:
    """What a carrier's signature check may look at: one webhook POST or one stream upgrade.

    Checks are pure (no clock): the app passes the time in as ``now``.

    Attributes:
        url: the public URL the carrier requested (the scheme a TLS proxy reported).
        headers: the request's headers, names in lower case.
        body: the exact bytes of the body (``b""`` for an upgrade); never re-serialized.
        form: the parsed form of a webhook; ``None`` for a WebSocket upgrade.
        now: wall-clock Unix seconds when the request arrived.
    """

    url: str
    headers: Mapping[str, str] = attrs.field(repr=False)
    body: bytes = attrs.field(default=b"", repr=lambda b: f"<{len(b)} bytes>")
    form: Mapping[str, str] | None = attrs.field(default=None, repr=False)
    now: float

    @property
    def upgrade(self) -> bool:
        """True for a WebSocket upgrade (no form)."""
        return self.form is None
