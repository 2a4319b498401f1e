"""The phone bridge end to end: a Twilio-like phone, the gateway (hypercorn), the local realtime server."""

from __future__ import annotations

import logging

import anyio
import pytest

import engine
from engine.core import events as ev
from engine.gateway.calls import CALLER_HUNG_UP
from engine.gateway.events import Dtmf
from tests.gateway.carrier import silence_ulaw, speech_ulaw
from tests.gateway.serving import (
    Seen,
    frames,
    phone_call,
    running_gateway,
    ulaw_silence,
    ulaw_speech,
    weather_agent,
)

pytestmark = pytest.mark.anyio

FAST = engine.SessionSettings(ready_timeout=3, close_timeout=1)


def recording_agent() -> tuple[engine.Agent, Seen]:
    agent = weather_agent(settings=FAST)
    seen = Seen()
    agent.on()(seen)
    return agent, seen


async def test_a_voice_turn_with_a_tool_call_in_g711_end_to_end() -> None:
    agent, seen = recording_agent()
    with anyio.fail_after(10):
        async with running_gateway(agent) as served, phone_call(served, speed=8) as phone:
            served.server.say_next("What's the weather in Paris?")
            await phone.speak(speech_ulaw())
            await phone.speak(silence_ulaw(600))
            await seen.until(lambda: seen.of(ev.TurnMetrics))
            await phone.until(lambda: phone.echoes and phone.queued_ms == 0 and phone.played)
            assert agent.calls == ["Paris"]  # type: ignore[attr-defined]
            # μ-law passed through: the session was configured for it, in and out.
            connection = served.server.connections[0]
            media = phone.media()
            assert media and all(m["streamSid"] == phone.stream_sid for m in media)
            # A mark after each chunk; each echoed once played, none dropped.
            assert len(frames(phone, "mark")) == len(media)
            await phone.until(lambda: len(phone.echoes) == len(media))
            assert not any(echo.dropped for echo in phone.echoes)
            turn = seen.of(ev.TurnMetrics)[0]
            assert turn.time_to_first_audio is not None
            assert connection is not None
            metrics = served.gateway.metrics.render().decode()
            assert 'engine_tool_calls_total{tool="get_weather"} 1.0' in metrics
            assert "engine_turn_first_audio_seconds_count 1.0" in metrics
            assert "engine_turn_total_seconds_count 1.0" in metrics
            assert 'engine_calls_started_total{carrier="twilio"} 1.0' in metrics
            assert 'engine_live_calls{state="active"} 1.0' in metrics


async def test_dtmf_reaches_the_agent_as_a_typed_event() -> None:
    agent, seen = recording_agent()
    with anyio.fail_after(10):
        async with running_gateway(agent) as served, phone_call(served) as phone:
            await seen.until(lambda: seen.of(ev.SessionReady))
            for digit in "1#":
                await phone.press(digit)
            await seen.until(lambda: len(seen.of(Dtmf)) == 2)
            live = served.gateway.registry.live[0]
            assert seen.of(Dtmf) == [
                Dtmf(digit="1", call_id=live.id),
                Dtmf(digit="#", call_id=live.id),
            ]


async def test_garbage_from_the_carrier_is_logged_and_the_call_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent, seen = recording_agent()
    with anyio.fail_after(10):
        async with running_gateway(agent) as served, phone_call(served) as phone:
            await seen.until(lambda: seen.of(ev.SessionReady))
            with caplog.at_level(logging.WARNING, logger="engine.gateway"):
                for junk in ("not json", "[1, 2]", '{"event": "party"}', '{"event": "media", "media": {}}'):
                    await phone.send_text(junk)
                await phone.press("5")
                await seen.until(lambda: seen.of(Dtmf))
            logged = [
                r.getMessage() for r in caplog.records if "unusable frame from the carrier" in r.getMessage()
            ]
            assert len(logged) == 4
            errors = served.gateway.metrics.render().decode()
            assert 'engine_errors_total{code="carrier_malformed"} 4.0' in errors
            assert served.gateway.registry.live and phone.closed is None  # the call goes on


async def test_caller_hang_up_mid_response_closes_cleanly_with_the_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent, seen = recording_agent()
    with anyio.fail_after(10), caplog.at_level(logging.INFO, logger="engine.gateway.calls"):
        async with running_gateway(agent, pace=1.0) as served, phone_call(served) as phone:
            await seen.until(lambda: seen.of(ev.SessionReady))
            served.server.say_next("Tell me a long story about the sea and the wind.")
            await phone.speak(speech_ulaw())
            await phone.speak(silence_ulaw(600))
            await phone.until(lambda: bool(phone.media()))  # the assistant is speaking
            live = served.gateway.registry.live[0]
            await phone.hang_up()  # stop, then the carrier closes its socket
            await served.gateway.registry.wait_idle()
        assert live.end_reason == CALLER_HUNG_UP and not live.failed
        closed = seen.of(ev.Closed)
        assert len(closed) == 1 and closed[0].error is None
        ended = [r.getMessage() for r in caplog.records if r.getMessage().startswith("call ended")]
        assert len(ended) == 1
        assert f"call_id={phone.call_sid} stream_id={phone.stream_sid}" in ended[0]
        assert "reason='caller hung up'" in ended[0]


async def test_barge_in_truncates_at_what_the_carrier_played_within_one_mark() -> None:
    agent, seen = recording_agent()
    with anyio.fail_after(10):
        async with running_gateway(agent) as served, phone_call(served, speed=4) as phone:
            await seen.until(lambda: seen.of(ev.SessionReady))
            served.server.say_next(
                "Please tell me a long story about the sea, the wind and the old lighthouse."
            )
            await phone.speak(speech_ulaw())
            await phone.speak(silence_ulaw(600))
            await phone.until(lambda: phone.played_ms >= 300)  # the caller has heard some of the answer
            await phone.speak(speech_ulaw(0.8))  # and cuts in
            await seen.until(lambda: seen.of(ev.Interrupted))
            await phone.until(lambda: phone.clears)
            cut = seen.of(ev.Interrupted)[0]
            assert cut.played_ms is not None
            mark_ms = max(len(m["media"]["payload"]) * 3 // 4 for m in phone.media()) / 8
            played_at_clear = phone.clears[0]
            # The truncation is what the carrier acknowledged: behind what it played, by one mark at most.
            assert played_at_clear - mark_ms - 1 <= cut.played_ms <= played_at_clear + 1
            # The marks that clear dropped were echoed at once; the truncation ignored them.
            dropped = [echo for echo in phone.echoes if echo.dropped]
            assert dropped and all(echo.played_ms == played_at_clear for echo in dropped)
            assert served.gateway.registry.live  # the call goes on


async def test_a_session_that_cannot_go_on_apologises_then_ends_the_call() -> None:
    agent, _ = recording_agent()
    with anyio.fail_after(10):
        # The realtime server refuses the key (401): fatal, never retried.
        async with running_gateway(agent, expected_key="another-key") as served, phone_call(served) as phone:
            await phone.until(lambda: phone.closed is not None)
            await served.gateway.registry.wait_idle()
            assert phone.media() and frames(phone, "mark")[-1]["mark"]["name"] == "apology"
            assert phone.echoes[-1].name == "apology"  # the socket closed only once the tones had played
            assert isinstance(phone.closed, engine.ConnectionClosed) and phone.closed.code == 1000
            assert served.gateway.metrics.calls_failed.labels(carrier="twilio")._value.get() == 1


async def test_hang_up_while_a_tool_runs_cancels_it_by_its_policy() -> None:
    agent, seen = recording_agent()
    started, cancelled = anyio.Event(), anyio.Event()

    @agent.tool
    async def book_table(city: str) -> str:
        """Book a table (slow).

        Args:
            city: where.
        """
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()
        return "never"

    with anyio.fail_after(10):
        async with running_gateway(agent) as served, phone_call(served, speed=8) as phone:
            served.server.say_next("Please book table in Rome")
            await phone.speak(speech_ulaw())
            await phone.speak(silence_ulaw(600))
            await started.wait()
            live = served.gateway.registry.live[0]
            await phone.hang_up()
            await cancelled.wait()
            await served.gateway.registry.wait_idle()
        assert live.end_reason == CALLER_HUNG_UP and not live.failed
        assert seen.of(ev.Closed)[0].error is None


async def test_telnyx_the_same_bridge_in_a_law_with_dtmf() -> None:
    agent, seen = recording_agent()
    with anyio.fail_after(10):
        async with running_gateway(agent) as served, phone_call(served, speed=8, dialect="telnyx") as phone:
            await seen.until(lambda: seen.of(ev.SessionReady))
            session_format = served.server.connections[0]
            served.server.say_next("What's the weather in Oslo?")
            await phone.speak(ulaw_speech(kind="audio/pcma"))
            await phone.speak(ulaw_silence(600, kind="audio/pcma"))
            await seen.until(lambda: seen.of(ev.TurnMetrics))
            await phone.until(lambda: phone.echoed and not phone.events("media")[len(phone.echoed) :])
            assert agent.calls == ["Oslo"]  # type: ignore[attr-defined]
            assert phone.events("media") and len(phone.events("mark")) == len(phone.events("media"))
            await phone.press("7")
            await seen.until(lambda: seen.of(Dtmf))
            # The session spoke A-law in and out: no transcoding anywhere on the path.
            audio = session_format.core._config["audio"]  # type: ignore[union-attr]
            assert audio["input"]["format"]["type"] == audio["output"]["format"]["type"] == "audio/pcma"
            assert served.gateway.metrics.calls_started.labels(carrier="telnyx")._value.get() == 1


async def test_a_session_lost_mid_call_apologises_then_ends_the_call() -> None:
    from engine.server.faults import Faults

    agent, seen = recording_agent()
    with anyio.fail_after(10):
        async with running_gateway(agent) as served:
            served.server.inject(Faults(drop_at="response.created", close_code=1011), index=0)
            async with phone_call(served, speed=8) as phone:
                await seen.until(lambda: seen.of(ev.SessionReady))
                live = served.gateway.registry.live[0]
                served.server.refuse_next(10, status=401)  # the reconnect is refused: fatal
                served.server.say_next("What's the weather in Paris?")
                await phone.speak(speech_ulaw())
                await phone.speak(silence_ulaw(600))
                await phone.until(lambda: phone.closed is not None)
            await served.gateway.registry.wait_idle()
        assert seen.of(ev.Reconnecting) and seen.of(ev.Closed)[0].error is not None
        assert frames(phone, "mark")[-1]["mark"]["name"] == "apology" and phone.echoes[-1].name == "apology"
        assert isinstance(phone.closed, engine.ConnectionClosed) and phone.closed.code == 1000
        assert live.failed and live.end_reason is not None and live.end_reason.startswith("session failed")
