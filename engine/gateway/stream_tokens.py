"""Short-lived tokens guarding a carrier's media stream when the carrier does not sign the upgrade.

Telnyx signs its webhooks but not the WebSocket upgrade of the media stream
that follows. So, once a webhook's signature has checked out, the gateway
answers with a stream URL carrying a token it signed itself
(``/telnyx/stream/<token>``), and the upgrade must bring a valid one back, else
it is refused with 403 before any call starts. The token is the carrier's name
signed with the gateway's secret (``ENGINE_GATEWAY_SECRET``, shared by every
replica behind one load balancer) under its own salt, with a timestamp: it
stays valid for :data:`MAX_AGE` seconds, the time between the webhook and the
stream's start. It travels in the path because whether Telnyx keeps a query
string on ``<Stream url>`` is not documented. Tokens are never logged.
"""

from __future__ import annotations

from itsdangerous import BadSignature, TimestampSigner

SALT = "engine.gateway.stream"
MAX_AGE = 300
"""Seconds a stream token stays valid after the webhook answered (the carrier connects within seconds)."""


class StreamTokens:
    """Issues and checks stream tokens for one gateway.

    Args:
        signer: a timestamp signer with the gateway's secret and its own salt
            (:meth:`engine.gateway.access.Access.signer`).
        max_age: seconds a token stays valid.
    """

    def __init__(self, signer: TimestampSigner, *, max_age: int = MAX_AGE) -> None:
        if max_age <= 0:
            raise ValueError(f"max_age must be > 0, got {max_age!r}")
        self._signer = signer
        self.max_age = max_age

    def __repr__(self) -> str:
        return f"<StreamTokens max_age={self.max_age}s>"

    def issue(self, carrier: str) -> str:
        """A fresh token admitting one stream of ``carrier`` (URL-safe: letters, digits, ``-_.``)."""
        return self._signer.sign(carrier).decode("ascii")

    def valid(self, token: str | None, carrier: str) -> bool:
        """True when ``token`` is ours, for ``carrier``, and not older than ``max_age``."""
        if not token:
            return False
        try:
            signed = self._signer.unsign(token, max_age=self.max_age)
        except BadSignature:  # also SignatureExpired, its subclass
            return False
        return signed == carrier.encode("utf-8")
