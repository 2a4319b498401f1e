"""The Agent: a user's module-level object that builds one Session per call with the Session's API."""

from __future__ import annotations

import anyio
import pytest

import engine
from engine.core import events as ev
from engine.gateway.agent import Agent, Call
from tests.gateway.serving import Seen, phone_call, running_gateway

PCMU = engine.AudioFormat(type="audio/pcmu", rate=8000)
PCMA = engine.AudioFormat(type="audio/pcma", rate=8000)


def call(**overrides: object) -> Call:
    fields: dict[str, object] = {"id": "call-1", "carrier": "twilio", "call_id": "CA1", "stream_id": "MZ1"}
    fields.update(overrides)
    return Call(**fields)  # type: ignore[arg-type]


def test_the_agent_registers_like_a_session_and_builds_a_fresh_one_per_call() -> None:
    agent = Agent(
        config=engine.SessionConfig(instructions="You are a terse weather bot.", voice="Clive"),
        provider=engine.Inworld(api_key="local-key", url="ws://127.0.0.1:9/realtime"),
    )

    @agent.tool
    async def get_weather(city: str) -> dict[str, object]:
        """Current weather for a city.

        Args:
            city: the city name.
        """
        return {"city": city}

    @agent.on(engine.events.AssistantTranscript)
    def show(event: engine.events.AssistantTranscript) -> None:
        pass

    first, second = agent.session(), agent.session()
    assert first is not second
    for session in (first, second):
        assert session._tools["get_weather"].name == "get_weather"
        assert session._callbacks == [((engine.events.AssistantTranscript,), show)]
    assert "get_weather" in repr(agent) and "local-key" not in repr(agent)


def test_without_a_provider_the_agent_says_so() -> None:
    with pytest.raises(ValueError, match="no provider"):
        Agent().session()
    with pytest.raises(TypeError, match="SessionConfig"):
        Agent(config={"instructions": "hi"})  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_on_call_hooks_choose_the_config_and_the_call_format_wins() -> None:
    agent = Agent(config=engine.SessionConfig(instructions="default"))
    seen: list[Call] = []

    @agent.on_call
    def by_parameter(c: Call) -> engine.SessionConfig | None:
        seen.append(c)
        if c.custom_parameters.get("agent") == "sales":
            return engine.SessionConfig(instructions="sales", input_format=engine.AudioFormat())
        return None

    @agent.on_call
    async def keep(c: Call) -> None:
        return None

    config = await agent.config_for(call(custom_parameters={"agent": "sales"}, audio=PCMA))
    assert config.instructions == "sales"
    assert (config.input_format, config.output_format) == (PCMA, PCMA)  # G.711 end to end, no transcoding
    config = await agent.config_for(call(audio=PCMU))
    assert config.instructions == "default" and config.output_format == PCMU
    assert [c.call_id for c in seen] == ["CA1", "CA1"]

    @agent.on_call
    def wrong(c: Call) -> object:
        return "not a config"

    with pytest.raises(TypeError, match="on_call hook must return"):
        await agent.config_for(call())


@pytest.mark.anyio
async def test_custom_parameters_reach_on_call_and_a_refusing_hook_ends_only_that_call() -> None:
    agent = Agent(
        config=engine.SessionConfig(instructions="x"), settings=engine.SessionSettings(close_timeout=1)
    )
    calls: list[Call] = []
    seen = Seen()
    agent.on()(seen)

    @agent.on_call
    def choose(c: Call) -> None:
        calls.append(c)
        if c.custom_parameters.get("refuse") == "yes":
            raise RuntimeError("no such customer")

    with anyio.fail_after(10):
        async with running_gateway(agent) as served:
            async with phone_call(served, parameters={"refuse": "yes"}) as refused:
                await refused.until(lambda: refused.closed is not None)
            async with phone_call(served, parameters={"customer": "42"}) as phone:
                await seen.until(lambda: seen.of(ev.SessionReady))
                assert calls[-1].custom_parameters == {"customer": "42"}
                assert (calls[-1].call_id, calls[-1].stream_id) == (phone.call_sid, phone.stream_sid)
                assert calls[-1].audio == PCMU
                assert served.gateway.registry.live  # the gateway serves on
            assert served.gateway.metrics.calls_failed.labels(carrier="twilio")._value.get() == 1


@pytest.mark.anyio
async def test_a_callback_taking_the_session_acts_on_its_own_call() -> None:
    agent = Agent(config=engine.SessionConfig(instructions="x"))
    seen = Seen()
    agent.on()(seen)
    sessions: list[engine.Session] = []

    @agent.on(engine.events.Dtmf)
    async def pressed(event: engine.events.Dtmf, session: engine.Session) -> None:
        sessions.append(session)
        await session.send_text(f"the caller pressed {event.digit}")

    with anyio.fail_after(10):
        async with running_gateway(agent) as served, phone_call(served) as phone:
            await seen.until(lambda: seen.of(ev.SessionReady))
            await phone.press("7")
            await seen.until(lambda: seen.of(ev.TurnMetrics))
            (connection,) = served.server.connections
            texts = [
                part.text
                for item in connection.conversation.items
                if item.type == "message" and item.role == "user"
                for part in item.content
            ]
            assert "the caller pressed 7" in texts
    assert len(sessions) == 1 and sessions[0].state is engine.State.CLOSED


def test_a_callback_that_cannot_take_an_event_is_refused_at_registration() -> None:
    agent = Agent()
    with pytest.raises(TypeError, match=r"\(event\) or \(event, session\)"):

        @agent.on(engine.events.Dtmf)
        def three(event: object, session: object, extra: object) -> None:
            pass
