"""Short-lived credentials, minted where the provider documents a way.

A provider's ``api_key`` may be a callable that returns the key: it is called
on every dial, so each socket (a reconnect included) gets a fresh credential
and the long-lived key stays on the backend. :class:`OpenAIClientSecrets` is
such a callable: it mints an OpenAI client secret (``POST
/v1/realtime/client_secrets``, docs/protocol.md §1.2) for every dial::

    provider = engine.OpenAI(api_key=OpenAIClientSecrets(api_key=root_key))

Inworld documents session tokens (a JWT minted from the key with a signed
request) but not the signature scheme in a form this library can follow, so
no Inworld helper is offered: pass a callable that asks your backend for a
JWT, with ``Inworld(auth="bearer", api_key=fetch_jwt)``.

The HTTP request is one POST over anyio with h11 (already under the WebSocket
libraries), so minting needs no extra dependency and runs under trio or asyncio.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
import attrs
import h11

from engine.errors import HandshakeError, TransportError
from engine.protocol import ConfigError
from engine.redaction import Secret, keep_secret, redact

__all__ = ["OPENAI_CLIENT_SECRETS_URL", "ClientSecret", "MintError", "OpenAIClientSecrets"]

OPENAI_CLIENT_SECRETS_URL = "https://api.openai.com/v1/realtime/client_secrets"

_MAX_BODY = 1 << 20
"""The largest answer read from a minting endpoint (a client secret is a few hundred bytes)."""


class MintError(HandshakeError):
    """The minting endpoint refused. Counts like a refused handshake: 401/403 end the session."""


@attrs.frozen
class ClientSecret:
    """A minted credential: the secret, when it expires (seconds since the epoch), the session it is for."""

    value: Secret
    expires_at: int
    session: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)


def _root_key(value: str | Secret) -> Secret:
    from engine.providers import _checked_key

    return _checked_key(value)


def _seconds(_: Any, __: Any, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 10 <= value <= 7200:
        raise ConfigError("expires_after.seconds", f"must be an integer from 10 to 7200, got {value!r}")


@attrs.frozen(kw_only=True)
class OpenAIClientSecrets:
    """A key callable that mints an OpenAI client secret on every call.

    Args:
        api_key: the long-lived API key the secrets are minted with (never sent to the realtime socket).
        model: the realtime model, used when ``session`` is not given.
        session: the GA session object the secret is bound to
            (default ``{"type": "realtime", "model": model}``).
        expires_after: the secret's lifetime in seconds (10 to 7200); a session it opened outlives it.
        url: the endpoint; point it at :class:`engine.server.minting.MintingEndpoint` for tests.
        timeout: seconds for the whole request.
    """

    api_key: Secret = attrs.field(converter=_root_key)
    model: str = "gpt-realtime-2.1"
    session: Mapping[str, Any] | None = attrs.field(default=None, repr=False)
    expires_after: int = attrs.field(default=600, validator=_seconds)
    url: str = OPENAI_CLIENT_SECRETS_URL
    timeout: float = 10.0

    async def __call__(self) -> Secret:
        """A fresh client secret (what the provider dials with)."""
        return (await self.mint()).value

    def request_body(self) -> dict[str, Any]:
        """The JSON body of the minting request."""
        session = (
            dict(self.session) if self.session is not None else {"type": "realtime", "model": self.model}
        )
        return {"expires_after": {"anchor": "created_at", "seconds": self.expires_after}, "session": session}

    async def mint(self) -> ClientSecret:
        """POST the request; the answer's ``value`` as a :class:`Secret`, or :class:`MintError`."""
        headers = {"Authorization": f"Bearer {self.api_key.reveal()}"}
        status, answer = await post_json(self.url, headers, self.request_body(), limit=self.timeout)
        if status != 200:
            raise MintError(f"the client secrets endpoint answered {status}: {_message(answer)}", status)
        value, expires_at = answer.get("value"), answer.get("expires_at")
        if not isinstance(value, str) or not value or not isinstance(expires_at, int):
            raise TransportError("the client secrets endpoint answered without a value and expires_at")
        secret = Secret(value)
        keep_secret(secret)
        session = answer.get("session")
        return ClientSecret(secret, expires_at, session if isinstance(session, dict) else {})


def _message(answer: Mapping[str, Any]) -> str:
    error = answer.get("error")
    message = error.get("message") if isinstance(error, dict) else None
    return redact(str(message)) if message else "no error message"


async def post_json(
    url: str, headers: Mapping[str, str], body: Mapping[str, Any], *, limit: float
) -> tuple[int, dict[str, Any]]:
    """POST ``body`` as JSON to an ``http(s)://`` URL within ``limit`` seconds; status and JSON answer.

    Errors are :class:`~engine.errors.TransportError` (redacted): unreachable,
    timed out, a malformed or oversized answer.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("url", f"expected an http(s):// URL, got {redact(url)!r}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    data = json.dumps(body).encode()
    request = h11.Request(
        method="POST",
        target=target,
        headers=[
            ("Host", parts.netloc),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Connection", "close"),
            ("User-Agent", "engine"),
            *headers.items(),
        ],
    )
    connection = h11.Connection(h11.CLIENT)
    try:
        with anyio.fail_after(limit):
            stream: anyio.abc.ByteStream
            if tls:
                context = ssl.create_default_context()
                stream = await anyio.connect_tcp(parts.hostname, port, ssl_context=context)
            else:
                stream = await anyio.connect_tcp(parts.hostname, port)
            async with stream:
                for event in (request, h11.Data(data=data), h11.EndOfMessage()):
                    await stream.send(connection.send(event) or b"")
                return await _read_answer(connection, stream)
    except TimeoutError:
        raise TransportError(f"no answer from {redact(url)} within {limit:g}s") from None
    except (OSError, anyio.BrokenResourceError, h11.ProtocolError, ValueError) as exc:
        raise TransportError(f"POST {redact(url)} failed: {redact(str(exc)) or type(exc).__name__}") from None


async def _read_answer(
    connection: h11.Connection, stream: anyio.abc.ByteStream
) -> tuple[int, dict[str, Any]]:
    status, body = 0, bytearray()
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            try:
                connection.receive_data(await stream.receive())
            except anyio.EndOfStream:
                connection.receive_data(b"")
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > _MAX_BODY:
                raise ValueError(f"the answer is over {_MAX_BODY} bytes")
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            break
    answer = json.loads(body) if body else {}
    return status, answer if isinstance(answer, dict) else {}
