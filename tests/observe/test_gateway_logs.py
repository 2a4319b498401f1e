"""Issue 16: a phone call's log records (gateway and session alike) carry the call's and the carrier's ids."""

from __future__ import annotations

import logging

import anyio
import pytest

from engine.core import events as ev
from engine.observe import CallFilter
from tests.gateway.carrier import silence_ulaw, speech_ulaw
from tests.gateway.serving import Seen, phone_call, running_gateway, weather_agent

pytestmark = pytest.mark.anyio


async def test_every_record_of_a_phone_call_names_the_call() -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    handler.addFilter(CallFilter())
    logger = logging.getLogger("engine")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    agent = weather_agent()
    seen = Seen()
    agent.on()(seen)
    try:
        with anyio.fail_after(10):
            async with running_gateway(agent) as served, phone_call(served, speed=8) as phone:
                served.server.say_next("What's the weather in Paris?")
                await phone.speak(speech_ulaw())
                await phone.speak(silence_ulaw(600))
                await seen.until(lambda: seen.of(ev.TurnMetrics))
                (live,) = served.gateway.registry.live
                call_id = live.id
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    # The session's records (its socket to the realtime server) and the gateway's for the call;
    # the test's phone and the local server log outside any call.
    carrier = f" carrier_call_id={phone.call_sid} carrier_stream_id={phone.stream_sid}"
    session_side = [r for r in records if r.name == "engine.transports" and "/realtime/" in r.getMessage()]
    started = [r for r in records if r.name == "engine.gateway.calls" and "call started" in r.getMessage()]
    assert len(session_side) >= 2 and len(started) == 1
    assert {(r.call_id, r.carrier_ids) for r in session_side + started} == {(call_id, carrier)}  # type: ignore[attr-defined]
    outside = [r for r in records if r.name.startswith("engine.server") or "/twilio/" in r.getMessage()]
    assert outside and all(r.call_id == "-" for r in outside)  # type: ignore[attr-defined]
    assert all("local-key" not in r.getMessage() for r in records)  # the gateway's key never logged
