"""Key callables: a fresh credential on every dial, one refresh after a 401, minted client secrets.

The local server's minting endpoint (engine.server.minting) rotates: each
minted secret is the only key the realtime server accepts from then on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio
import pytest
from openai.types.realtime import ClientSecretCreateResponse
from openai.types.realtime.client_secret_create_params import ClientSecretCreateParams

import engine
from engine import events as ev
from engine.credentials import MintError, OpenAIClientSecrets
from engine.providers import dial, endpoint_url
from engine.server import Faults, LocalServer
from engine.server.minting import MintingEndpoint
from tests.actors.helpers import next_event
from tests.reliability.support import logged_text, shown_by

pytestmark = pytest.mark.anyio

ROOT = "sk-ROOT-5a7c1d9e"
QUICK = engine.SessionSettings(close_timeout=0.5, reconnect=engine.ReconnectPolicy(initial_delay=0, jitter=0))
CUT = Faults(drop_at="response.created", close_code=1011)  # a ready session, cut at the first turn


class Watched(LocalServer):
    """A local server that keeps each handshake's ``Authorization`` (accepted or not)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.authorizations: list[str] = []

    def check_handshake(self, path: str, headers: Mapping[str, str]) -> tuple[int, str] | None:
        self.authorizations += [v for k, v in headers.items() if k.lower() == "authorization"]
        return super().check_handshake(path, headers)


async def test_minted_secrets_rotate_across_a_reconnect(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    server = Watched(pace=0, ping_interval=None, expected_key="nobody-has-this-yet")
    with anyio.fail_after(10):
        async with server.running(), MintingEndpoint(server, api_key=ROOT).running() as mint:
            server.inject(CUT, index=0)
            minter = OpenAIClientSecrets(api_key=ROOT, url=mint.url, expires_after=60)
            provider = engine.OpenAI(api_key=minter, url=server.openai_url())
            session = engine.Session(provider, settings=QUICK, record=tmp_path / "call.jsonl")
            async with session.events() as stream, session.connect():
                await session.send_text("hello")
                await next_event(stream, ev.Reconnected)
                shown = shown_by(session, [], None)
            # Two dials, two secrets; each socket used the one minted for it.
            assert len(mint.minted) == 2
            assert server.authorizations == [f"Bearer {key}" for key in mint.minted]
            # The rotation is real: the first secret is refused now.
            headers = {"Authorization": f"Bearer {mint.minted[0]}"}
            assert server.check_handshake("/v1/realtime?model=m", headers) == (
                401,
                "Unauthorized: invalid credentials",
            )
            # What was sent is what OpenAI's API takes, and the answer parses as OpenAI's response.
            assert set(mint.requests[0]) <= set(ClientSecretCreateParams.__annotations__)
            assert mint.requests[0]["expires_after"] == {"anchor": "created_at", "seconds": 60}
            minted = await minter.mint()
            assert minted.expires_at > 0 and minted.value.reveal() == mint.minted[-1]

    recorded = (tmp_path / "call.jsonl").read_text()
    texts = [logged_text(caplog), recorded, *shown, repr(minter), repr(minted)]
    for key in [ROOT, *mint.minted]:
        assert [t for t in texts if key in t] == [], "a key leaked"
    assert "minted client secret 2" in caplog.text  # DEBUG logging really ran on both sides


async def test_the_local_endpoint_answers_like_openai() -> None:
    server = LocalServer(pace=0, ping_interval=None)
    with anyio.fail_after(5):
        async with MintingEndpoint(server, api_key=ROOT).running() as mint:
            from engine.credentials import post_json

            status, answer = await post_json(
                mint.url, {"Authorization": f"Bearer {ROOT}"}, {"session": {"type": "realtime"}}, limit=5
            )
            assert status == 200
            ClientSecretCreateResponse.model_validate(answer)
            assert server.expected_key == answer["value"]
            with pytest.raises(MintError) as refused:
                await OpenAIClientSecrets(api_key="sk-wrong-root-key", url=mint.url).mint()
            assert refused.value.status == 401 and refused.value.is_auth_failure
            assert "sk-wrong-root-key" not in str(refused.value)
            status, answer = await post_json(
                mint.url, {"Authorization": f"Bearer {ROOT}"}, {"expires_after": {"seconds": 5}}, limit=5
            )
            assert (status, answer["error"]["param"]) == (400, "expires_after.seconds")


async def test_a_401_on_reconnect_refreshes_once() -> None:
    """A stale key (rotated out of band) gets 401: the callable is asked again at once, and it works."""
    server = LocalServer(pace=0, ping_interval=None, expected_key="key-one-valid")
    keys = iter(["key-one-valid", "key-one-valid", "key-two-valid"])
    calls: list[str] = []

    async def fetch() -> str:  # an async callable; its cache still holds the revoked key at the reconnect
        calls.append(key := next(keys))
        if len(calls) == 2:
            server.expected_key = "key-two-valid"  # the first key is revoked
        return key

    with anyio.fail_after(10):
        async with server.running():
            server.inject(CUT, index=0)
            session = engine.Session(engine.OpenAI(api_key=fetch, url=server.openai_url()), settings=QUICK)
            async with session.events() as stream, session.connect():
                await session.send_text("hello")
                first = await next_event(stream, ev.Reconnecting)
                refresh = await next_event(stream, ev.Reconnecting)
                await next_event(stream, ev.Reconnected)
    assert calls == ["key-one-valid", "key-one-valid", "key-two-valid"]
    assert refresh.delay == 0 and first.attempt < refresh.attempt
    assert server.refused == 0 and len(server.connections) == 2  # the 401 came from the handshake check


async def test_a_second_401_is_fatal() -> None:
    server = LocalServer(pace=0, ping_interval=None, expected_key="key-one-valid")
    calls: list[int] = []

    def fetch() -> str:  # a sync callable that keeps handing out the key revoked at the reconnect
        calls.append(1)
        if len(calls) == 2:
            server.expected_key = "key-two-valid"
        return "key-one-valid"

    with anyio.fail_after(10):
        async with server.running():
            server.inject(CUT, index=0)
            session = engine.Session(engine.Inworld(api_key=fetch, url=server.url()), settings=QUICK)
            seen: list[Any] = []
            session.on(ev.Reconnecting, ev.Closed)(seen.append)
            with pytest.raises(engine.SessionClosed, match="HTTP 401"):
                async with session.connect():
                    await session.send_text("hello")
                    await anyio.sleep_forever()  # until the fatal end cancels the body
    assert len(calls) == 3  # the first dial, the reconnect, one refresh; then no more
    assert [type(e) for e in seen] == [ev.Reconnecting, ev.Reconnecting, ev.Closed]
    assert seen[1].delay == 0  # the refresh is immediate
    assert seen[2].error is not None and "refused the credentials (HTTP 401)" in seen[2].error.message


async def test_what_a_callable_returns_is_checked() -> None:
    async def bad() -> Any:
        return "key\r\nX-Injected: 1"

    provider = engine.OpenAI(api_key=bad, url="ws://127.0.0.1:1/v1")
    with pytest.raises(engine.ConfigError, match="line break") as caught:
        await dial(provider)
    assert "X-Injected" not in str(caught.value)
    with pytest.raises(engine.ConfigError, match="expected a string"):
        await dial(engine.OpenAI(api_key=lambda: 42, url="ws://127.0.0.1:1/v1"))
    with pytest.raises(engine.ConfigError, match="callable"):
        provider.endpoint()  # a static endpoint needs a resolved key
    assert endpoint_url(provider) == "ws://127.0.0.1:1/v1?model=gpt-realtime-2.1"

    def broken() -> str:
        raise RuntimeError("backend down; it said sk-ROOT-5a7c1d9e")

    root = engine.Secret(ROOT)  # known (while referenced), so redacted
    with pytest.raises(engine.TransportError) as failed:
        await dial(engine.OpenAI(api_key=broken))
    assert "backend down" in str(failed.value) and ROOT not in str(failed.value)
    del root
    _url, headers = await dial(engine.OpenAI(api_key=lambda: engine.Secret("sk-fresh-0001")))
    assert headers == {"Authorization": "Bearer sk-fresh-0001"}


def test_a_url_that_already_carries_the_query_gets_each_parameter_once() -> None:
    """``Inworld(url=server.url())`` copies ``?key=...&protocol=realtime``: replaced, never repeated."""
    copied = "ws://127.0.0.1:1/api/v1/realtime/session?key=old-session&protocol=realtime&region=eu"
    url, _ = engine.Inworld(api_key="k-static-12345", url=copied).endpoint()
    query = parse_qsl(urlsplit(url).query)
    assert [k for k, _ in query].count("key") == 1 and [k for k, _ in query].count("protocol") == 1
    assert dict(query)["key"] != "old-session" and ("region", "eu") in query  # fresh key, others kept
    url, _ = engine.OpenAI(api_key="sk-x-12345678", url="ws://127.0.0.1:1/v1?model=old&x=1").endpoint()
    assert parse_qsl(urlsplit(url).query) == [("x", "1"), ("model", "gpt-realtime-2.1")]
