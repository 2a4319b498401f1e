"""Issue 6: one short conversation in both dialects, Inworld and OpenAI Realtime GA.

Both providers talk to the local server, each in its own URL form (the OpenAI
provider at ``server.openai_url()``, to which it adds its ``model=``; the server
accepts both forms of the handshake). What differs is checked on the wire:
URL, ``Authorization`` scheme and the ``session.update`` extensions. What must
not differ: every client event of both is valid GA (Inworld's documented
extensions allowed for Inworld only), and both conversations complete. Each
profile's limits are enforced locally: OpenAI refuses ``["audio", "text"]``
output and a voice change once audio exists; Inworld allows both.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest

import engine
from engine import events as ev
from tests.e2e.helpers import (
    KEY,
    SETTINGS,
    Recorder,
    Wire,
    collect_until,
    inworld,
    make_server,
    play_all,
    speech,
    stream_audio,
    turn_done,
)
from tests.protocol.ga_oracle import assert_ga_client_event

pytestmark = pytest.mark.anyio

CONFIG = engine.SessionConfig(instructions="be brief")


def openai(server: Any, key: str = KEY) -> engine.OpenAI:
    """An OpenAI provider pointed at the local server."""
    return engine.OpenAI(api_key=key, url=server.openai_url())


def _turn_end(event: Any) -> bool:
    return isinstance(event, ev.TurnMetrics)


async def _short_call(server: Any, provider: Any) -> tuple[Wire, Recorder, list[str]]:
    """A text turn and a voice turn; returns the wire, the events and the assistant's answers."""
    wire, recorder = Wire(), Recorder()
    session = engine.Session(provider, CONFIG, settings=SETTINGS, connector=wire)
    session.on()(recorder)
    async with session.connect():
        stream = session.events()
        await session.send_text("Hello there!")
        play_all(session, await collect_until(stream, _turn_end))
        server.say_next("How are you?")
        await stream_audio(session, speech(1.0))
        await turn_done(stream)
    answers = [e.text for e in recorder.of_type(ev.AssistantTranscript) if e.final]
    return wire, recorder, answers


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


async def test_inworld_dialect_on_the_wire() -> None:
    server = make_server()
    with anyio.fail_after(10):
        async with server.running():
            wire, recorder, answers = await _short_call(server, inworld(server))

    assert answers == ["You said: Hello there!", "You said: How are you?"]
    assert recorder.of_type(ev.Error) == []
    (connection,) = wire.connections
    query = _query(connection.url)
    assert query["protocol"] == ["realtime"]
    (session_key,) = query["key"]
    assert session_key.startswith("engine-realtime-")  # a fresh session key per connection
    assert "model" not in query
    assert connection.headers["Authorization"] == f"Basic {KEY}"
    update = connection.sent[0]
    assert update["type"] == "session.update"
    session = update["session"]
    assert session["providerData"]["auto_tool_response"] is False
    assert session["audio"]["output"]["model"] == "inworld-tts-2"
    assert session["audio"]["input"]["transcription"]["model"] == "inworld/inworld-stt-1"
    kinds = {m["type"] for m in connection.sent}
    assert {"conversation.item.create", "response.create", "input_audio_buffer.append"} <= kinds
    for payload in connection.sent:
        assert_ga_client_event(payload)  # Inworld's documented extensions allowed
    # The server took the configuration as sent.
    assert server.connections[0].session["audio"]["output"]["voice"] == "Clive"


async def test_openai_dialect_on_the_wire() -> None:
    server = make_server()
    with anyio.fail_after(10):
        async with server.running():
            provider = openai(server)
            wire, recorder, answers = await _short_call(server, provider)

    assert answers == ["You said: Hello there!", "You said: How are you?"]
    assert recorder.of_type(ev.Error) == []
    (connection,) = wire.connections
    assert _query(connection.url) == {"model": [provider.model]}  # nothing of Inworld's form
    assert urlsplit(connection.url).path == "/v1/realtime"
    assert connection.headers["Authorization"] == f"Bearer {KEY}"
    update = connection.sent[0]
    assert update["type"] == "session.update"
    session = update["session"]
    assert "providerData" not in session
    assert "temperature" not in session
    assert "model" not in session["audio"]["output"]
    assert "inworld" not in str(update)
    for payload in connection.sent:
        assert_ga_client_event(payload, allowed_extras=())  # strict GA: no extension at all


async def test_openai_refuses_audio_and_text_output_locally() -> None:
    both = engine.SessionConfig(instructions="be brief", output_modalities=("audio", "text"))
    server = make_server()
    with anyio.fail_after(10):
        async with server.running():
            session = engine.Session(openai(server), both, settings=SETTINGS)
            with pytest.raises(engine.ConfigError) as refused:
                async with session.connect():
                    pytest.fail("OpenAI accepts 'audio' or 'text', not both")
            assert refused.value.param == "output_modalities"
            assert server.connections == []  # refused before any socket was opened

            # Refused on update as well, and nothing goes out.
            wire = Wire()
            session = engine.Session(openai(server), CONFIG, settings=SETTINGS, connector=wire)
            async with session.connect():
                with pytest.raises(engine.ConfigError):
                    await session.update(both)
                await session.send_text("Hello there!")
                await turn_done(session.events())
            assert wire.connections[0].types().count("session.update") == 1


async def test_inworld_allows_audio_and_text_output() -> None:
    both = engine.SessionConfig(instructions="be brief", output_modalities=("audio", "text"))
    server = make_server()
    with anyio.fail_after(10):
        async with server.running():
            wire = Wire()
            session = engine.Session(inworld(server), both, settings=SETTINGS, connector=wire)
            async with session.connect():
                stream = session.events()
                await session.send_text("Hello there!")
                await turn_done(stream)
    assert wire.connections[0].sent[0]["session"]["output_modalities"] == ["audio", "text"]
    assert server.connections[0].session["output_modalities"] == ["audio", "text"]


@pytest.mark.parametrize("dialect", ["openai", "inworld"])
async def test_voice_change_after_audio(dialect: str) -> None:
    server = make_server()
    recorder = Recorder()
    with anyio.fail_after(10):
        async with server.running():
            provider = openai(server) if dialect == "openai" else inworld(server)
            wire = Wire()
            session = engine.Session(provider, CONFIG, settings=SETTINGS, connector=wire)
            session.on()(recorder)
            async with session.connect():
                stream = session.events()
                # Before any audio a voice change is fine for both.
                await session.update(engine.SessionConfig(instructions="be brief", voice="alloy"))
                await session.send_text("Hello there!")
                await turn_done(stream)
                assert recorder.of_type(ev.AudioOut)
                marin = engine.SessionConfig(instructions="be brief", voice="marin")
                if dialect == "openai":
                    with pytest.raises(engine.UpdateRejected):
                        await session.update(marin)
                else:
                    await session.update(marin)
                await session.send_text("Still there?")
                await turn_done(stream)
            updates = wire.connections[0].of_type("session.update")
            voices = [m["session"]["audio"]["output"].get("voice") for m in updates]
            effective = server.connections[0].session["audio"]["output"]["voice"]

    first = None if dialect == "openai" else "Clive"  # Inworld's default voice
    if dialect == "openai":
        assert voices == [first, "alloy"]
        assert effective == "alloy"
    else:
        assert voices == [first, "alloy", "marin"]
        assert effective == "marin"
    assert recorder.of_type(ev.Error) == []
