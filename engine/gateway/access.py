"""Who may use the browser endpoints: open on loopback, signed expiring tokens anywhere else.

A gateway bound to a loopback address serves ``/``, ``WS /browser`` and
``/calls`` to anyone who can reach it (only this machine can). Bound to any
other interface, each of them needs a token: a scope name signed with the
gateway's secret and a timestamp (itsdangerous' ``TimestampSigner``), valid
for ``max_age`` seconds. Two scopes:

* ``caller``: may open the page and talk (``GET /``, ``WS /browser``): one new
  call per socket, and only that call's events on it;
* ``operator``: everything a caller may, plus ``/calls`` and watching any call
  read-only (``WS /calls/{id}/watch``).

A refusal says why: 401 when the token is missing, expired or not ours; 403
when it is valid but its scope does not cover the endpoint. The secret comes
from ``ENGINE_GATEWAY_SECRET`` or is generated at start (tokens then die with
the process); it is never logged or shown in a repr, and tokens are not logged
either (they travel in the query string, which the gateway never logs).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Mapping

import attrs
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner

CALLER = "caller"
OPERATOR = "operator"
SCOPES = (CALLER, OPERATOR)
SECRET_VARIABLE = "ENGINE_GATEWAY_SECRET"
DEFAULT_MAX_AGE = 12 * 3600.0
"""Seconds a token stays valid (a working day)."""

# What each scope grants: an operator may do everything a caller may.
_GRANTS = {CALLER: {CALLER}, OPERATOR: {CALLER, OPERATOR}}


@attrs.frozen
class Refusal:
    """Why a request was refused: HTTP ``status`` (401 or 403) and a sentence for the body."""

    status: int
    reason: str


class _Signer(TimestampSigner):
    """A TimestampSigner reading time from an injected clock (tests move it)."""

    def __init__(self, secret: str, clock: Callable[[], float], salt: str = "engine.gateway.access") -> None:
        super().__init__(secret, salt=salt)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock())


class Access:
    """The gateway's access rule for its browser endpoints; see the module docstring.

    Args:
        open: no token needed (the gateway listens on loopback only).
        secret: the signing secret (default: ``ENGINE_GATEWAY_SECRET``, else random).
        max_age: seconds a token stays valid.
        clock: wall-clock seconds (tests inject one).
    """

    def __init__(
        self,
        *,
        open: bool,
        secret: str | None = None,
        max_age: float = DEFAULT_MAX_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_age <= 0:
            raise ValueError(f"max_age must be > 0, got {max_age!r}")
        chosen = secret or os.environ.get(SECRET_VARIABLE) or secrets.token_urlsafe(32)
        self.open = open
        self.max_age = max_age
        self._signer = _Signer(chosen, clock)
        self._secret, self._clock = chosen, clock

    def __repr__(self) -> str:
        return f"<Access open={self.open} max_age={self.max_age:g}s>"

    def signer(self, salt: str) -> TimestampSigner:
        """A timestamp signer with this gateway's secret and clock for another purpose (its own ``salt``).

        The carriers' stream tokens use it, so every gateway sharing
        ``ENGINE_GATEWAY_SECRET`` accepts the others' tokens.
        """
        return _Signer(self._secret, self._clock, salt)

    def token(self, scope: str) -> str:
        """A fresh token for ``scope`` (``caller`` or ``operator``)."""
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}; expected one of {SCOPES}")
        return self._signer.sign(scope).decode("ascii")

    def check(self, token: str | None, need: str) -> Refusal | None:
        """None when ``token`` grants ``need`` (or access is open); otherwise why not."""
        if self.open:
            return None
        if not token:
            return Refusal(401, "a token is required (add ?token=... to the URL)")
        try:
            scope = self._signer.unsign(token, max_age=int(self.max_age)).decode("utf-8", "replace")
        except SignatureExpired:
            return Refusal(401, "the token has expired; ask for a new URL")
        except BadSignature:
            return Refusal(401, "the token is not valid for this gateway")
        if need not in _GRANTS.get(scope, set()):
            return Refusal(403, f"a {scope} token does not grant {need} access")
        return None


def token_of(query: Mapping[str, str], headers: Mapping[str, str]) -> str | None:
    """The request's token: ``?token=`` (browsers cannot set WebSocket headers), or a Bearer header."""
    token = query.get("token")
    if token:
        return token
    authorization = headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None
