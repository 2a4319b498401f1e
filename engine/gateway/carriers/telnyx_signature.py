"""Telnyx's webhook signature check (Ed25519), sans-IO: the time comes in as an argument.

Telnyx signs every webhook delivery with the account's Ed25519 key (see
docs/carriers.md). Two headers carry it: ``telnyx-signature-ed25519`` (the
64-byte signature, base64) and ``telnyx-timestamp`` (Unix seconds). The
signed message is the timestamp, a ``|``, then the raw request body exactly as
sent. A timestamp further than :data:`TOLERANCE` from now, either way, is
refused so that a captured delivery cannot be replayed later.

Telnyx does not sign the media stream's WebSocket upgrade: the gateway guards
the stream with a token of its own instead (:mod:`engine.gateway.stream_tokens`).
The Ed25519 arithmetic is the ``cryptography`` package's (the ``serve`` extra).
"""

from __future__ import annotations

import binascii
from typing import TYPE_CHECKING

from engine.gateway.carriers.base import MissingExtra, SignedRequest

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"
TOLERANCE = 300.0
"""Seconds a signed timestamp may lie from the gateway's clock, either way (5 minutes, as Telnyx's SDKs)."""
SIGNATURE_BYTES = 64
_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
"""The DER header of an Ed25519 SubjectPublicKeyInfo: a key copied in that form is accepted too."""


class TelnyxSignature:
    """Checks ``telnyx-signature-ed25519`` on the voice webhook against the account's public key.

    Args:
        public_key: the account's Ed25519 public key, base64, as Mission Control
            shows it (32 raw bytes; the 44-byte DER form is accepted too).
        tolerance: seconds the signed timestamp may differ from ``now``.

    Raises:
        ValueError: the key is not base64 of an Ed25519 public key, or the tolerance is not positive.
        MissingExtra: the ``cryptography`` package is not installed.
    """

    def __init__(self, public_key: str, *, tolerance: float = TOLERANCE) -> None:
        if not isinstance(public_key, str) or not public_key.strip():
            raise ValueError("the Telnyx public key must be a non-empty base64 string")
        if not tolerance > 0:
            raise ValueError(f"the timestamp tolerance must be > 0 seconds, got {tolerance!r}")
        try:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        except ImportError:
            raise MissingExtra(
                "checking Telnyx signatures needs the 'cryptography' package: pip install 'engine[serve]'"
            ) from None
        try:
            raw = binascii.a2b_base64(public_key.strip(), strict_mode=True)
        except binascii.Error:
            raise ValueError("the Telnyx public key is not valid base64") from None
        if len(raw) == len(_SPKI_PREFIX) + 32 and raw.startswith(_SPKI_PREFIX):
            raw = raw[len(_SPKI_PREFIX) :]
        if len(raw) != 32:
            raise ValueError(
                f"the Telnyx public key must be a 32-byte Ed25519 key in base64, got {len(raw)} bytes"
            )
        self._key: Ed25519PublicKey = Ed25519PublicKey.from_public_bytes(raw)
        self.tolerance = float(tolerance)
        self._shown = public_key.strip()[:8]

    def __repr__(self) -> str:
        return f"<TelnyxSignature key={self._shown}… tolerance={self.tolerance:g}s>"

    def check(self, request: SignedRequest) -> bool:
        """True when ``request`` is a webhook Telnyx signed; an upgrade is never signed by Telnyx."""
        if request.form is None:
            return False
        headers = request.headers
        return self.webhook(
            request.body, headers.get(SIGNATURE_HEADER), headers.get(TIMESTAMP_HEADER), now=request.now
        )

    def webhook(self, body: bytes, signature: str | None, timestamp: str | None, *, now: float) -> bool:
        """True when ``signature`` signs ``timestamp|body`` and ``timestamp`` lies within the tolerance."""
        if not signature or not timestamp:
            return False
        if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
            return False
        if abs(now - int(timestamp)) > self.tolerance:
            return False
        try:
            raw = binascii.a2b_base64(signature.strip(), strict_mode=True)
        except binascii.Error:
            return False
        if len(raw) != SIGNATURE_BYTES:
            return False
        from cryptography.exceptions import InvalidSignature

        try:
            self._key.verify(raw, timestamp.encode("ascii") + b"|" + body)
        except InvalidSignature:
            return False
        return True
