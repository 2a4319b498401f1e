"""A call policy ends a phone call: the gateway hangs up the carrier once the goodbye was played,
and the call's end reason names the policy."""

from __future__ import annotations

import anyio
import pytest

import engine
from engine.core import events as ev
from tests.gateway.serving import Seen, phone_call, running_gateway, weather_agent

pytestmark = pytest.mark.anyio


async def test_an_idle_caller_is_said_goodbye_to_and_hung_up_on() -> None:
    # The estimate's margin (30 s) is beyond the test's bound: the carrier's marks end it.
    policy = engine.CallPolicy(idle_after=0.3, reprompts=0, drain_margin=30)
    agent = weather_agent(
        settings=engine.SessionSettings(ready_timeout=3, close_timeout=1, call_policy=policy)
    )
    seen = Seen()
    agent.on()(seen)
    with anyio.fail_after(10):
        async with running_gateway(agent) as served, phone_call(served, speed=8) as phone:
            await seen.until(lambda: seen.of(ev.Closed))
            live = served.gateway.registry.live[0]
            await served.gateway.registry.wait_idle()
            assert phone.media() and phone.echoes  # the goodbye was sent and played
    assert live.end_reason == "call ended by policy: idle" and not live.failed
    assert seen.of(ev.Closed)[0] == ev.Closed(reason="call ended by policy: idle")
