"""Acknowledged updates, nothing dropped, send_raw: end to end against the local server, both dialects."""

from __future__ import annotations

from typing import Any

import anyio
import attrs
import pytest

import engine
from engine import events as ev
from engine.errors import ProtocolError
from engine.protocol.server import UnknownServerEvent
from tests.e2e.helpers import SETTINGS, Recorder, Wire, inworld, make_server, next_event, turn_done

pytestmark = pytest.mark.anyio
DIALECTS = pytest.mark.parametrize("dialect", ["openai", "inworld"])
CONFIG = engine.SessionConfig(instructions="be brief")


def _provider(server: Any, dialect: str) -> engine.Inworld | engine.OpenAI:
    if dialect == "openai":
        return engine.OpenAI(api_key="e2e-local-key", url=server.openai_url())
    return inworld(server)


@DIALECTS
async def test_update_returns_once_the_server_applied_it(dialect: str) -> None:
    server = make_server()
    with anyio.fail_after(10):
        async with server.running():
            session = engine.Session(_provider(server, dialect), CONFIG, settings=SETTINGS)
            async with session.connect():
                applied = await session.update(engine.SessionConfig(instructions="be very brief"))
                assert server.connections[0].session["instructions"] == "be very brief"  # already there
                assert applied.event_id is not None and applied.session["instructions"] == "be very brief"
                assert applied.config is not None and applied.config.instructions == "be very brief"
                assert session.config.instructions == "be very brief"
                assert session.states["update"] == "none"


@DIALECTS
async def test_update_refused_by_the_server_raises_with_its_param(dialect: str) -> None:
    server = make_server()
    recorder = Recorder()
    with anyio.fail_after(10):
        async with server.running():
            session = engine.Session(_provider(server, dialect), CONFIG, settings=SETTINGS)
            session.on()(recorder)
            async with session.connect():
                # The local server, as the real ones, refuses a tool_choice naming no declared tool.
                with pytest.raises(engine.UpdateRejected) as refused:
                    await session.update(engine.SessionConfig(instructions="x", tool_choice="lookup"))
                assert refused.value.param == "session.tool_choice.name"
                assert "lookup" in refused.value.message
                assert session.config.instructions == "be brief"  # the server kept what it had
                stream = session.events()
                await session.send_text("Hello there!")  # the call goes on
                await turn_done(stream)
    rejected = recorder.of_type(ev.ConfigRejected)
    assert [(r.code, r.param) for r in rejected] == [("invalid_value", "session.tool_choice.name")]
    assert not [e for e in recorder.of_type(ev.Error) if e.fatal]


@DIALECTS
async def test_dtmf_idle_timeout_and_rate_limits_reach_the_application(dialect: str) -> None:
    server = make_server()
    with anyio.fail_after(10):
        async with server.running():
            session = engine.Session(_provider(server, dialect), CONFIG, settings=SETTINGS)
            async with session.connect():
                stream = session.events(ev.Dtmf, ev.IdleTimeout, ev.RateLimits, ev.TurnMetrics)
                connection = await server.wait_for_connection(0)
                connection.press("7", received_at=1733330000)
                assert await next_event(stream, ev.Dtmf) == ev.Dtmf(digit="7", received_at=1733330000)
                connection.idle_timeout(audio_start_ms=100, audio_end_ms=6100)
                idle = await next_event(stream, ev.IdleTimeout)
                assert (idle.audio_start_ms, idle.audio_end_ms) == (100, 6100)
                await session.send_text("Hello there!")
                seen = [e async for e in _until_turn_done(stream)]
    limits = [e for e in seen if isinstance(e, ev.RateLimits)]
    if dialect == "openai":  # OpenAI reports its rate limits as each response starts
        assert [limit.name for limit in limits[0].rate_limits] == ["requests", "tokens"]
    else:
        assert limits == []


async def _until_turn_done(stream: Any) -> Any:
    async for event in stream:
        yield event
        if isinstance(event, ev.TurnMetrics):
            return


@DIALECTS
async def test_unmodelled_events_reach_only_who_asked(dialect: str) -> None:
    server = make_server()
    everything = Recorder()
    with anyio.fail_after(10):
        async with server.running():
            session = engine.Session(_provider(server, dialect), CONFIG, settings=SETTINGS)
            session.on()(everything)  # a catch-all does not turn raw events on
            async with session.connect():
                connection = await server.wait_for_connection(0)
                connection.emit(UnknownServerEvent(type="vendor.before", raw={"type": "vendor.before"}))
                await session.send_text("Hello there!")  # everything before its turn is delivered
                await turn_done(session.events())
                raws = session.events(ev.RawEvent)  # from now on
                memory = {"type": "vendor.memory", "facts": ["likes tea"]}
                connection.emit(UnknownServerEvent(type="vendor.memory", raw=memory))
                raw = await next_event(raws, ev.RawEvent)
    assert raw.type == "vendor.memory" and raw.event.raw == memory
    assert [e.type for e in everything.of_type(ev.RawEvent)] == ["vendor.memory"]


@DIALECTS
async def test_send_raw_goes_through_the_core(dialect: str) -> None:
    server = make_server()
    recorder = Recorder()
    with anyio.fail_after(10):
        async with server.running():
            wire = Wire()
            session = engine.Session(_provider(server, dialect), CONFIG, settings=SETTINGS, connector=wire)
            session.on()(recorder)
            async with session.connect():
                stream = session.events(ev.TurnMetrics, ev.ResponseDone)
                await session.send_text("Hello there!")
                # A raw response.create while one is in flight is coalesced, as create_response is.
                await session.send_raw({"type": "response.create"})
                await next_event(stream, ev.ResponseDone)
                await next_event(stream, ev.ResponseDone)
                # A raw session.update is an update: laid over the config, awaited, mirrored.
                await session.send_raw({"type": "session.update", "session": {"instructions": "raw"}})
                assert session.config.instructions == "raw"
                assert server.connections[0].session["instructions"] == "raw"
                # Refused before anything is sent.
                with pytest.raises(TypeError):
                    await session.send_raw({"no": "type"})
                with pytest.raises(ProtocolError):
                    await session.send_raw({"type": "response.create", "response": 5})
                with pytest.raises(ValueError, match="not modelled"):
                    await session.send_raw({"type": "session.update", "session": {"vendor_knob": 1}})
                # An unknown type goes out as given.
                await session.send_raw({"type": "vendor.ping", "n": 1})
                await session.send_text("Still there?")
                await turn_done(session.events())
    sent = wire.connections[0].types()
    assert sent.count("response.create") == 3  # the text turn, the coalesced raw one, the last turn
    assert wire.connections[0].of_type("vendor.ping") == [{"type": "vendor.ping", "n": 1}]
    assert "vendor.ping" in server.connections[0].received_types
    codes = [e.code for e in recorder.of_type(ev.Error)]
    assert "conversation_already_has_active_response" not in codes
    assert sent.count("session.update") == 2


async def test_raw_events_setting_turns_them_on_for_every_subscriber() -> None:
    server = make_server()
    everything = Recorder()
    settings = attrs.evolve(SETTINGS, raw_events=True)
    with anyio.fail_after(10):
        async with server.running():
            session = engine.Session(inworld(server), CONFIG, settings=settings)
            session.on()(everything)
            async with session.connect():
                connection = await server.wait_for_connection(0)
                connection.emit(UnknownServerEvent(type="vendor.memory", raw={"type": "vendor.memory"}))
                await session.send_text("Hello there!")
                await turn_done(session.events())
    kinds = [e.type for e in everything.of_type(ev.RawEvent)]
    assert "vendor.memory" in kinds
    assert "conversation.item.input_audio_transcription.delta" not in kinds  # modelled: never raw
