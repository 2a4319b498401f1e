"""The API key never shows: not in DEBUG logs (client and server side), reprs, or errors."""

from __future__ import annotations

import logging
import traceback
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import engine
from engine.events import ResponseDone
from tests.actors.helpers import collect_until, inworld, make_session
from tests.actors.peer import function_call_response, running_peer
from tests.reliability.support import logged_text, shown_by

pytestmark = pytest.mark.anyio

SECRET = "sk-TEST-9f8e7d"


async def test_the_api_key_never_appears(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    shown: list[str] = []
    with anyio.fail_after(5):
        async with running_peer() as peer:

            @peer.on("response.create")
            def answer(_: dict[str, Any]) -> list[dict[str, Any]]:
                if peer.responses == 0:
                    peer.responses += 1
                    return function_call_response("resp_1", [("call_1", "get_weather", '{"city":"Paris"}')])
                return peer.next_audio_response()

            session = make_session(peer, provider=inworld(peer, key=SECRET))

            @session.tool
            async def get_weather(city: str) -> dict[str, str]:
                """Current weather in a city."""
                return {"city": city, "sky": "grey"}

            async with session.connect():
                stream = session.events()
                await session.send_text("weather?")  # a tool turn
                await collect_until(
                    stream, lambda e: isinstance(e, ResponseDone) and e.response_id == "resp_2"
                )
                await session.send_text("thanks")  # a plain text turn
                await collect_until(
                    stream, lambda e: isinstance(e, ResponseDone) and e.response_id == "resp_3"
                )
                shown += shown_by(session, [], None)
            assert peer.headers[0]["authorization"] == f"Basic {SECRET}"  # it was really used

            # A refused handshake: the exception, its chain and its traceback.
            peer.refuse = (401, "invalid credentials")
            for provider in (
                inworld(peer, key=SECRET),
                engine.OpenAI(api_key=SECRET, url=f"ws://127.0.0.1:{peer.port}/v1"),
            ):
                refused = engine.Session(provider, settings=session.settings)
                with pytest.raises(engine.HandshakeError) as caught:
                    async with refused.connect():
                        await anyio.lowlevel.checkpoint()
                shown += [str(caught.value), repr(caught.value), repr(provider)]
                shown.append("".join(traceback.format_exception(caught.value)))

    logged = logged_text(caplog)
    # DEBUG logging really ran, down to the handshake headers (redacted).
    assert "{'Authorization': '***'}" in logged
    leaks = [text for text in [logged, *shown] if SECRET in text]
    assert leaks == [], f"the API key leaked in: {leaks[0][:2000]}"
