"""The browser routes over real sockets: open on loopback, tokens elsewhere, 401/403; /calls and watchers."""

from __future__ import annotations

import json
import logging

import anyio
import pytest

import engine
from engine.core import events as ev
from engine.gateway.access import CALLER, OPERATOR, Access
from engine.transports import connect
from tests.gateway.serving import (
    Seen,
    Served,
    http,
    phone_call,
    running_gateway,
    ulaw_silence,
    ulaw_speech,
    weather_agent,
)

pytestmark = pytest.mark.anyio
SETTINGS = engine.TransportSettings(close_timeout=1)


class Clock:
    now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def closed(served: Served, clock: Clock | None = None) -> Access:
    """Turn the served gateway's browser routes to token-only (as if bound off loopback)."""
    access = Access(open=False, secret="route-secret", max_age=60, clock=clock or Clock())
    served.gateway.access = access
    return access


async def upgrade_status(served: Served, path: str) -> int | None:
    """The HTTP status of a refused WebSocket upgrade to ``path`` (None when it was accepted)."""
    try:
        async with connect(f"{served.ws}{path}", {}, SETTINGS):
            return None
    except engine.HandshakeError as refused:
        return refused.status


async def test_on_loopback_the_page_calls_and_assets_are_open() -> None:
    with anyio.fail_after(10):
        async with running_gateway() as served:
            for path, kind in [
                ("/", "text/html"),
                ("/calls", "text/html"),
                ("/calls.json", "application/json"),
                ("/diagram.svg", "image/svg+xml"),
                ("/static/app.js", "javascript"),
                ("/static/player-worklet.js", "javascript"),
            ]:
                status, headers, _ = await http(served.port, "GET", path)
                assert status == 200, path
                assert kind in headers["content-type"], path
            _, _, listing = await http(served.port, "GET", "/calls.json")
            assert json.loads(listing) == {"calls": []}


async def test_off_loopback_each_refusal_says_why(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    clock = Clock()
    with anyio.fail_after(10):
        async with running_gateway() as served:
            access = closed(served, clock)
            caller, operator = access.token(CALLER), access.token(OPERATOR)
            status, _, body = await http(served.port, "GET", "/")
            assert (status, body) == (401, b"a token is required (add ?token=... to the URL)\n")
            status, _, body = await http(served.port, "GET", "/?token=caller.forged.sig")
            assert (status, body) == (401, b"the token is not valid for this gateway\n")
            assert (await http(served.port, "GET", f"/?token={caller}"))[0] == 200
            status, _, body = await http(served.port, "GET", f"/calls?token={caller}")
            assert (status, body) == (403, b"a caller token does not grant operator access\n")
            assert (await http(served.port, "GET", f"/calls.json?token={caller}"))[0] == 403
            assert (await http(served.port, "GET", f"/?watch=call-1&token={caller}"))[0] == 403
            assert (await http(served.port, "GET", f"/calls?token={operator}"))[0] == 200
            headers = {"Authorization": f"Bearer {operator}"}
            assert (await http(served.port, "GET", "/calls.json", headers=headers))[0] == 200
            # The sockets: the upgrade is answered with the same statuses.
            assert await upgrade_status(served, "/browser") == 401
            assert await upgrade_status(served, f"/calls/call-1/watch?token={caller}") == 403
            assert await upgrade_status(served, f"/calls/call-9/watch?token={operator}") == 404
            clock.now += 61
            status, _, body = await http(served.port, "GET", f"/calls?token={operator}")
            assert (status, body) == (401, b"the token has expired; ask for a new URL\n")
            assert await upgrade_status(served, f"/browser?token={caller}") == 401
            assert served.gateway.registry.live == ()  # no refused socket became a call
    assert caller not in caplog.text and operator not in caplog.text
    assert "route-secret" not in caplog.text


async def test_a_phone_call_is_listed_and_watched_read_only() -> None:
    agent, seen_by_agent = weather_agent(), Seen()
    agent.on(ev.SessionReady)(seen_by_agent)
    with anyio.fail_after(15):
        async with running_gateway(agent) as served:
            access = closed(served)
            operator = access.token(OPERATOR)
            async with phone_call(served, speed=4) as phone:
                await seen_by_agent.until(lambda: seen_by_agent.events)  # the call's session is up
                url = f"{served.ws}/calls/call-1/watch?token={operator}"
                async with connect(url, {}, SETTINGS) as watcher:
                    hello = json.loads(await watcher.receive())
                    assert hello["type"] == "hello" and hello["watch"] and hello["kind"] == "twilio"
                    served.server.say_next("hello there")
                    await phone.speak(ulaw_speech())
                    await phone.speak(ulaw_silence(600))
                    seen: list[dict[str, object]] = []
                    while not any(e["kind"] == "metrics" for e in seen):
                        message = json.loads(await watcher.receive())
                        assert message["type"] == "event"
                        seen.append(message["event"])
                users = [e["text"] for e in seen if e["kind"] == "user" and e["final"]]
                assert users == ["hello there"]
                moves = [e["new"] for e in seen if e["kind"] == "state" and e["machine"] == "conversation"]
                assert moves[:3] == ["session_ready", "user_speaking", "responding"]  # the history first
                _, _, listing = await http(served.port, "GET", f"/calls.json?token={operator}")
                (call,) = json.loads(listing)["calls"]
                assert (call["id"], call["kind"], call["turns"]) == ("call-1", "twilio", 1)
                assert call["states"]["conversation"] == "session_ready"
                assert call["last_turn"]["turn"] == 1 and call["last_turn"]["total_ms"] > 0
                await phone.hang_up()
            await served.gateway.registry.wait_idle()
            assert served.gateway.registry.feeds.get("call-1") is None
