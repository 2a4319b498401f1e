"""Each call logs one start line and one end line (ids, duration, turns, reason), and never a secret."""

from __future__ import annotations

import logging
import re

import anyio
import pytest

from engine.core import events as ev
from tests.gateway.carrier import silence_ulaw, speech_ulaw
from tests.gateway.serving import Seen, phone_call, running_gateway, weather_agent
from tests.gateway.test_app import twilio_signature

pytestmark = pytest.mark.anyio

API_KEY = "sk-realtime-key-that-must-never-be-logged"
TOKEN = "twilio-auth-token-that-must-never-be-logged"


async def test_one_start_and_one_end_line_per_call_with_ids_and_no_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger at every level: the transports' too
    agent = weather_agent()
    seen = Seen()
    agent.on()(seen)
    with anyio.fail_after(10):
        async with running_gateway(
            agent, secrets={"twilio": TOKEN}, expected_key=API_KEY, api_key=API_KEY
        ) as served:
            url = f"ws://127.0.0.1:{served.port}/twilio/stream"
            signed = {"X-Twilio-Signature": twilio_signature(url, {}, token=TOKEN)}
            async with phone_call(served, headers=signed, speed=8) as phone:
                served.server.say_next("What's the weather in Paris?")
                await phone.speak(speech_ulaw())
                await phone.speak(silence_ulaw(600))
                await seen.until(lambda: seen.of(ev.TurnMetrics))
                await phone.hang_up()
                await served.gateway.registry.wait_idle()
    lines = [r.getMessage() for r in caplog.records if r.name == "engine.gateway.calls"]
    started = [line for line in lines if line.startswith("call started")]
    ended = [line for line in lines if line.startswith("call ended")]
    assert started == [
        f"call started id=call-1 carrier=twilio call_id={phone.call_sid} stream_id={phone.stream_sid}"
    ]
    assert len(ended) == 1
    found = re.fullmatch(
        rf"call ended id=call-1 carrier=twilio call_id={phone.call_sid} stream_id={phone.stream_sid} "
        r"duration_s=(\d+\.\d) turns=(\d+) reason='caller hung up'",
        ended[0],
    )
    assert found is not None, ended[0]
    assert 0 < float(found[1]) < 10 and int(found[2]) >= 1
    everything = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert API_KEY not in everything and TOKEN not in everything
