"""Keys that are odd, and peers that echo them back.

A key that cannot go in an HTTP header as it is (CR/LF could inject a header;
control and non-ASCII characters are refused, then logged, by the WebSocket
libraries) is refused when the provider is built, with a ``ConfigError`` that
does not show it. A server that echoes the credentials back (an ``error``
event's message, a close reason, an HTTP error body, a response header) must
not get them into a log record (the library's or the WebSocket libraries', at
any level), an exception, an event or a recording, in any form they were sent
in: the Basic key, a Bearer token, or Inworld's per-connection session key.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

import anyio
import anyio.abc
import pytest

import engine
from engine import events as ev
from engine.errors import HandshakeError
from engine.protocol.config import ConfigError
from engine.redaction import Secret, redact
from tests.actors.helpers import make_session
from tests.actors.peer import Peer, Reply, running_peer
from tests.reliability.support import exception_text, logged_text, shown_by

pytestmark = pytest.mark.anyio

KEY = "sk-HOSTILE-7d41c9e2"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJob3N0aWxlIn0.c2lnbmF0dXJlLWhvc3RpbGU"

BAD_KEYS = {
    "CR LF (header injection)": "sk-HOSTILE\r\nX-Injected: 1",
    "LF": "sk-HOSTILE-abc\n",
    "NUL": "sk-HOSTILE\x00abc",
    "DEL": "sk-HOSTILE\x7fabc",
    "non-Latin-1": "sk-HOSTILE-\u043a\u043b\u044e\u0447",
    "Latin-1 but not ASCII": "sk-HOSTILE-cl\u00e9",
    "space": "sk-HOSTILE abc",
    "tab": "sk-HOSTILE\tabc",
}


def _providers(key: str, url: str = "ws://127.0.0.1:1/session") -> dict[str, Any]:
    return {
        "inworld basic": lambda: engine.Inworld(api_key=key, url=url),
        "inworld bearer": lambda: engine.Inworld(api_key=key, url=url, auth="bearer"),
        "openai": lambda: engine.OpenAI(api_key=key, url=url),
    }


@pytest.mark.parametrize("provider", list(_providers("x")))
@pytest.mark.parametrize("name", list(BAD_KEYS))
def test_a_key_that_cannot_go_in_a_header_is_refused_without_showing_it(name: str, provider: str) -> None:
    key = BAD_KEYS[name]
    with pytest.raises(ConfigError, match="api_key") as caught:
        _providers(key)[provider]()
    text = exception_text(caught.value)
    assert "HOSTILE" not in text  # no part of the key, not even before the bad character
    assert "key not shown" in str(caught.value)


@pytest.mark.parametrize("key", [KEY, JWT, "aWQ6c2VjcmV0LWhvc3RpbGU=", "sk-proj_A.b~c+d/e="])
def test_ordinary_keys_are_accepted(key: str) -> None:
    for build in _providers(key).values():
        assert build().api_key.reveal() == key


def test_redaction_covers_the_forms_a_key_is_sent_in() -> None:
    secret = Secret("aWQ6c2VjcmV0LWhvc3RpbGU=")  # Base64 of "id:secret-hostile", as a Basic key is
    text = redact(f"{secret.reveal()} | id:secret-hostile | secret-hostile | {base64.b64encode(b'x' * 9)!r}")
    assert "aWQ6" not in text and "secret-hostile" not in text
    assert "eHh4" in text  # unrelated Base64 is left alone
    del secret


def test_redaction_covers_a_key_escaped_in_json_and_percent_encoded_in_a_query() -> None:
    secret = Secret('sk-HOSTILE"q\\b+s/e=&x')
    key = secret.reveal()
    echoes = {
        "json": json.dumps({"message": f"bad key {key}"}),
        "query": f"wss://h/session?key={quote(key, safe='')}&protocol=realtime",
        "form": f"key={quote_plus(key)}",
    }
    for where, text in echoes.items():
        assert json.dumps(key)[1:-1] in text or quote(key, safe="") in text or quote_plus(key) in text
        assert "HOSTILE" not in redact(text), where
    assert redact("sk-HOSTILE is a prefix") == "sk-HOSTILE is a prefix"  # a part alone is not the key
    del secret


class EchoingPeer(Peer):
    """Echoes the Authorization header and the path (with the session key) back, once.

    On the first socket: in an ``error`` event's message (at ``session.update``),
    then in the close reason of a close that makes the client reconnect. The
    second socket behaves.
    """

    def answer(self, message: dict[str, Any]) -> Reply:
        reply = super().answer(message)
        if message["type"] == "session.update" and len(self.paths) == 1:
            echo = f"invalid Authorization header: {self.headers[-1]['authorization']} on {self.paths[-1]}"
            reply.append({"type": "error", "error": {"type": "invalid_request_error", "code": "bad_header",
                                                     "message": echo}})  # fmt: skip
        return reply

    async def push(self, events: Reply) -> None:
        await super().push(events)
        if len(self.paths) == 1 and any(e["type"] == "error" for e in events):
            assert self.transport is not None
            await self.transport.aclose(4000, self.headers[-1]["authorization"][:120])


def _session_keys(paths: list[str]) -> list[str]:
    return [key for path in paths for key in parse_qs(urlsplit(path).query).get("key", [])]


@pytest.mark.parametrize("provider", ["inworld basic", "inworld bearer", "openai"])
async def test_a_peer_that_echoes_the_key_never_gets_it_shown(
    provider: str, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    # Before the fix the echo reached the Error event's message and the WARNING/DEBUG logs.
    caplog.set_level(logging.DEBUG)
    key = JWT if provider == "inworld bearer" else KEY
    peer = EchoingPeer()
    seen: list[Any] = []
    with anyio.fail_after(5):
        async with running_peer(peer):
            url = f"ws://127.0.0.1:{peer.port}/session"
            session = make_session(
                peer,
                provider=_providers(key, url)[provider](),
                settings=engine.SessionSettings(
                    close_timeout=0.5, reconnect=engine.ReconnectPolicy(initial_delay=0.01, jitter=0)
                ),
                record=tmp_path / "call.jsonl",
            )
            session.on()(seen.append)
            async with session.connect():
                await session.wait_for(ev.Reconnected, timeout=2)
                await session.send_text("hello")
                await session.wait_for(ev.ResponseDone, timeout=2)
    assert key in peer.headers[0]["authorization"]  # really sent, really echoed
    errors = [e for e in seen if isinstance(e, ev.Error)]
    assert [e.code for e in errors] == ["bad_header"] and "***" in errors[0].message
    shown = [*shown_by(session, seen, None), logged_text(caplog), (tmp_path / "call.jsonl").read_text()]
    secrets = [key, *_session_keys(peer.paths)]
    assert len(secrets) == (1 if provider == "openai" else 3)  # and both sockets' Inworld session keys
    for secret in secrets:
        assert not [text for text in shown if secret in text], secret


async def test_a_refusal_that_echoes_the_key_in_a_header_and_the_body_never_shows_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)

    async def refuse(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            request = b""
            while b"\r\n\r\n" not in request:
                request += await stream.receive()
            found = re.search(rb"authorization: ([^\r\n]+)", request, re.IGNORECASE)
            assert found is not None
            body = b"invalid Authorization header: " + found.group(1)
            await stream.send(
                b"HTTP/1.1 401 Unauthorized\r\nX-Echo: " + found.group(1) + b"\r\nContent-Length: "
                + str(len(body)).encode() + b"\r\nContent-Type: text/plain\r\n\r\n" + body
            )  # fmt: skip

    with anyio.fail_after(5):
        async with (
            await anyio.create_tcp_listener(local_host="127.0.0.1") as listener,
            anyio.create_task_group() as group,
        ):
            group.start_soon(listener.serve, refuse)
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            provider = engine.Inworld(api_key=KEY, url=f"ws://127.0.0.1:{port}/session")
            session = engine.Session(provider, settings=engine.SessionSettings(close_timeout=0.5))
            with pytest.raises(HandshakeError) as caught:
                async with session.connect():
                    pytest.fail("the server refuses")
            group.cancel_scope.cancel()
    assert caught.value.status == 401
    text = exception_text(caught.value) + logged_text(caplog)
    assert KEY not in text
