"""Issue 17, Serve's autoscaling end to end: 1 -> 2 replicas under live calls, none dropped, then back to 1.

One deployment for the module (on the package's local Ray cluster): min 1,
max 2 replicas of capacity K, a target of one call per replica, and Serve's
autoscaler made quick through ``autoscaling_overrides`` (no upscale delay, a
short look-back and metrics interval, a short downscale delay). Simulated
Twilio calls go through Serve's proxy to a local realtime server in the test
process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AsyncExitStack

import anyio
import pytest

import engine
from engine.gateway.app import BridgeOptions
from engine.server import LocalServer
from tests.e2e.helpers import outputs_per_call
from tests.gateway.carrier import TwilioCarrier, twilio_call
from tests.gateway.serving import http, ulaw_silence, ulaw_speech, weather_agent
from tests.scale.serving import Deployed, free_port

pytestmark = [
    pytest.mark.ray,
    # Ray Serve's own pydantic models use deprecated Field arguments, and Serve deprecates
    # AutoscalingConfig.metrics_interval_s (Ray's warnings, not the engine's).
    pytest.mark.filterwarnings(r"ignore::DeprecationWarning:ray\..*"),
]

K = 3
"""Calls per replica."""
SPEED = 10.0
DRAIN = 2.0
QUICK = {
    "upscale_delay_s": 0.0,
    "downscale_delay_s": 1.0,
    "metrics_interval_s": 0.25,
    "look_back_period_s": 0.5,
}
"""Serve's autoscaler made quick for the test (Serve's defaults: 30 s, 600 s, 10 s, 30 s)."""
KEY = "sk-engine-test-autoscale-9f8e7d6c"

AGENT = weather_agent(settings=engine.SessionSettings(ready_timeout=5, close_timeout=1))
"""Loaded on each replica from ``tests.scale.test_serve_autoscale:AGENT``."""


def local_key() -> str:
    """The provider's key callable (pickled to the replicas by reference)."""
    return KEY


@pytest.fixture(scope="module")
def deployed(ray_cluster: None) -> Iterator[Deployed]:
    from ray import serve

    from engine.scale.serve import deploy

    server_port = free_port()
    unstarted = LocalServer()
    unstarted.port = server_port
    port = free_port()
    url = deploy(
        "tests.scale.test_serve_autoscale:AGENT",
        port=port,
        capacity=K,
        min_replicas=1,
        max_replicas=2,
        target_calls=1,
        autoscaling_overrides=QUICK,
        drain_timeout=DRAIN,
        provider=engine.Inworld(api_key=local_key, url=unstarted.url()),
        bridge=BridgeOptions(start_timeout=5.0, close_timeout=1.0),
        num_cpus=0.5,  # two replicas take 1 of the cluster's 4 logical CPUs
    )
    try:
        yield Deployed(url=url, port=port, server_port=server_port, key=KEY)
    finally:
        serve.delete("engine")
        serve.shutdown()


def replica_states() -> dict[str, int]:
    """The gateway's replicas by state (``RUNNING``, ``STARTING``, ``STOPPING``...), from serve.status()."""
    from ray import serve

    states = serve.status().applications["engine"].deployments["gateway"].replica_states
    return {str(getattr(state, "value", state)): count for state, count in states.items()}


async def until_replicas(running: int) -> None:
    """Until exactly ``running`` replicas run and none starts or stops (Serve notifies no one: polled)."""
    while await anyio.to_thread.run_sync(replica_states) != {"RUNNING": running}:  # noqa: ASYNC110
        await anyio.sleep(0.1)


async def metrics(deployed: Deployed) -> tuple[str, float]:
    """One /metrics through the proxy: the replica that answered, and its live calls."""
    _, _, body = await http(deployed.port, "GET", "/metrics")
    text = body.decode()
    label = text.split('replica="', 1)[1].split('"', 1)[0]
    live = sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("engine_live_calls{")
    )
    return label, live


async def dial(calls: AsyncExitStack, deployed: Deployed, prefix: str) -> list[TwilioCarrier]:
    """K calls through the proxy, each open until ``calls`` closes (then it hangs up)."""
    return [
        await calls.enter_async_context(
            twilio_call(deployed.stream, speed=SPEED, call_sid=f"{prefix}{i:032d}")
        )
        for i in range(K)
    ]


async def talk(phone: TwilioCarrier) -> None:
    """One voice turn asking for the weather; returns once the answer (after the tool's output) has played."""
    await phone.speak(ulaw_speech())
    await phone.speak(ulaw_silence(600))
    await phone.until(lambda: phone.media() and phone.queued_ms == 0 and phone.played)


@pytest.mark.anyio
async def test_serve_adds_a_replica_under_live_calls_drops_none_and_scales_back_after_them(
    deployed: Deployed,
) -> None:
    with anyio.fail_after(45):
        await until_replicas(1)  # a previous backend's run ended with its downscale
        async with deployed.server() as server, AsyncExitStack() as calls:
            for _ in range(2 * K):
                server.say_next("What's the weather in Paris?")
            phones = await dial(calls, deployed, "CA")
            await server.wait_for_connection(K - 1)
            started = time.monotonic()
            first, live = await metrics(deployed)
            assert live == K  # the one replica is full: K calls against a target of 1
            await until_replicas(2)
            scaled_up = time.monotonic() - started
            # Once the proxy's router knows the new replica it sends the next request there (none in flight).
            while (reply := await metrics(deployed))[0] == first:  # noqa: ASYNC110  (the proxy's routing, polled)
                await anyio.sleep(0.05)
            assert reply == (reply[0], 0.0)
            assert all(phone.closed is None for phone in phones)  # the upscale dropped no call
            # K more calls: the full first replica would refuse them; the new one takes them all.
            phones += await dial(calls, deployed, "CB")
            await server.wait_for_connection(2 * K - 1)
            seen: dict[str, float] = {}
            while len(seen) < 2:
                label, live = await metrics(deployed)
                seen[label] = live
            assert seen == {first: K, reply[0]: K}
            async with anyio.create_task_group() as turns:  # every call completes a turn on its replica
                for phone in phones:
                    turns.start_soon(talk, phone)
            assert all(phone.closed is None for phone in phones)
        # Every call hung up by itself: one session each, its tool call answered once.
        assert len(server.connections) == 2 * K
        for connection in server.connections:
            await connection.wait_closed()
            assert list(outputs_per_call(connection.conversation.items).values()) == [1]
        started = time.monotonic()
        await until_replicas(1)  # no call left: Serve drains the extra replica after its downscale delay
        scaled_down = time.monotonic() - started
    print(f"scaled up in {scaled_up:.1f} s, down in {scaled_down:.1f} s")


def test_autoscaling_overrides_reach_serve_and_bad_ones_are_refused(ray_installed: None) -> None:
    from engine.scale.serve import application

    auto = application(capacity=4, min_replicas=1, max_replicas=3, autoscaling_overrides=QUICK)
    config = auto._bound_deployment._deployment_config.autoscaling_config
    assert {name: getattr(config, name) for name in QUICK} == QUICK
    assert (config.min_replicas, config.max_replicas, config.target_ongoing_requests) == (1, 3, 2.8)
    # Without overrides Serve's own defaults stay.
    plain = application(capacity=4, min_replicas=1, max_replicas=3)._bound_deployment._deployment_config
    assert (plain.autoscaling_config.upscale_delay_s, plain.autoscaling_config.downscale_delay_s) == (30, 600)
    for bad, message in [
        ({"upscale_delay": 0}, "AutoscalingConfig has no upscale_delay"),
        ({"max_replicas": 9}, "cannot set max_replicas"),
    ]:
        with pytest.raises(ValueError, match=message):
            application(min_replicas=1, max_replicas=2, autoscaling_overrides=bad)
    with pytest.raises(ValueError, match="needs autoscaling"):
        application(replicas=2, autoscaling_overrides={"upscale_delay_s": 0})
