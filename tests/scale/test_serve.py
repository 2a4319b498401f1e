"""Issue 17, inbound sockets: the gateway as a Ray Serve application (two replicas of capacity K).

One deployment for the module (on the session's local Ray cluster); each test
runs its own local realtime server on the port the replicas dial. Simulated
Twilio calls go through Serve's proxy on 127.0.0.1.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import attrs
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
    # Ray Serve's own pydantic models use deprecated Field arguments (Ray's warning, not the engine's).
    pytest.mark.filterwarnings(r"ignore::DeprecationWarning:ray\..*"),
]

K = 3
"""Calls per replica."""
REPLICAS = 2
SPEED = 10.0
DRAIN = 4.0
KEY = "sk-engine-test-0d1e2a3b4c5d6e7f"
"""The local server's key: it must never show in Ray's logs, status or the metrics."""

AGENT = weather_agent(settings=engine.SessionSettings(ready_timeout=5, close_timeout=1))
"""Loaded on each replica from ``tests.scale.test_serve:AGENT`` (as ``engine serve`` loads APP)."""


def local_key() -> str:
    """The provider's key callable: pickled to the replicas by reference, so the key is never in Ray."""
    return KEY


@pytest.fixture(scope="module")
def deployed(ray_cluster: None) -> Iterator[Deployed]:
    from ray import serve

    from engine.scale.serve import application, deploy

    server_port = free_port()
    unstarted = LocalServer()
    unstarted.port = server_port
    options: dict[str, Any] = {
        "capacity": K,
        "drain_timeout": DRAIN,
        "provider": engine.Inworld(api_key=local_key, url=unstarted.url()),
        "bridge": BridgeOptions(start_timeout=5.0, close_timeout=1.0),
        "num_cpus": 0.5,
        "version": "test",  # a redeploy to 1 replica drains one, not both (a rolling upgrade)
    }
    port = free_port()
    url = deploy("tests.scale.test_serve:AGENT", port=port, replicas=REPLICAS, **options)

    def scale(replicas: int) -> None:
        app = application("tests.scale.test_serve:AGENT", replicas=replicas, **options)
        serve.run(app, name="engine", route_prefix="/")

    try:
        yield Deployed(url=url, port=port, server_port=server_port, key=KEY, scale=scale)
    finally:
        serve.delete("engine")
        serve.shutdown()


@attrs.define
class Burst:
    """The callers of a burst: who was refused (close code), who was admitted (their phone)."""

    phones: dict[int, TwilioCarrier] = attrs.Factory(dict)
    refused: dict[int, int] = attrs.Factory(dict)
    watching: dict[int, anyio.CancelScope] = attrs.Factory(dict)
    changed: anyio.Event = attrs.Factory(anyio.Event)

    async def until(self, done: Callable[[], bool]) -> None:
        while not done():
            self.changed = anyio.Event()
            await self.changed.wait()

    async def call(self, url: str, index: int) -> None:
        """One caller: refused at once (recorded), or admitted: waits to be let go, talks, hangs up."""
        try:
            async with twilio_call(url, speed=SPEED, call_sid=f"CA{index:032d}") as phone:
                self.phones[index] = phone
                with anyio.CancelScope() as self.watching[index]:
                    await phone.until(lambda: phone.closed is not None)
                    self.refused[index] = getattr(phone.closed, "code", -1)
                    self.changed.set()
                    return
                await talk(phone)
                await phone.hang_up()
        except* engine.ConnectionClosed as group:  # closed while the carrier was still sending `start`
            self.refused[index] = getattr(group.exceptions[0], "code", -1)
            self.changed.set()


async def talk(phone: TwilioCarrier) -> None:
    """One voice turn asking for the weather; returns once the answer (after the tool's output) has played."""
    await phone.speak(ulaw_speech())
    await phone.speak(ulaw_silence(600))
    await phone.until(lambda: phone.media() and phone.queued_ms == 0 and phone.played)


async def replica_metrics(deployed: Deployed, replicas: int) -> dict[str, str]:
    """Each replica's /metrics text, by its label (asked until every replica has answered once)."""
    seen: dict[str, str] = {}
    while len(seen) < replicas:
        _, _, body = await http(deployed.port, "GET", "/metrics")
        text = body.decode()
        label = text.split('replica="', 1)[1].split('"', 1)[0]
        seen[label] = text
    return seen


async def until_stopping() -> None:
    """Once Serve is stopping a replica of the gateway (its status is polled: Serve notifies no one)."""
    from ray import serve

    def stopping() -> bool:
        states = serve.status().applications["engine"].deployments["gateway"].replica_states
        return any(str(getattr(state, "value", state)) == "STOPPING" for state in states)

    while not await anyio.to_thread.run_sync(stopping):  # noqa: ASYNC110  (remote state, polled)
        await anyio.sleep(0.05)


def live(text: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("engine_live_calls{")
    )


@pytest.mark.anyio
async def test_a_burst_fills_each_replica_to_capacity_and_the_rest_are_refused_at_once(
    deployed: Deployed,
) -> None:
    callers = REPLICAS * K + 3
    burst = Burst()
    with anyio.fail_after(40):
        async with deployed.server() as server, anyio.create_task_group() as tg:
            for _ in range(callers):
                server.say_next("What's the weather in Paris?")
            for i in range(callers):
                tg.start_soon(burst.call, deployed.stream, i)
            await server.wait_for_connection(REPLICAS * K - 1)
            await burst.until(lambda: len(burst.refused) == callers - REPLICAS * K)
            # Refused at once, with the gateway's status, while every admitted call is still live.
            assert set(burst.refused.values()) == {1013}
            admitted = [i for i in range(callers) if i not in burst.refused]
            assert len(admitted) == REPLICAS * K
            assert all(burst.phones[i].closed is None for i in admitted)
            # Every replica holds exactly K (its own registry's count, labelled with the replica).
            per_replica = await replica_metrics(deployed, REPLICAS)
            assert sorted(live(text) for text in per_replica.values()) == [K] * REPLICAS
            for i in admitted:  # the admitted calls go on: a turn each (the tool answered), then hang up
                burst.watching[i].cancel()
        assert len(server.connections) == REPLICAS * K  # one session per admitted call, no more
        for connection in server.connections:
            counts = outputs_per_call(connection.conversation.items)
            assert len(counts) == 1 and set(counts.values()) == {1}  # one tool call, answered once


@pytest.mark.anyio
async def test_a_draining_replica_keeps_its_calls_then_ends_them_cleanly_at_the_drain_timeout(
    deployed: Deployed,
) -> None:
    with anyio.fail_after(60):
        async with deployed.server() as server:
            server.say_next("What's the weather in Paris?")
            server.say_next("What's the weather in Oslo?")
            async with (
                twilio_call(deployed.stream, speed=SPEED) as first,
                twilio_call(deployed.stream, speed=SPEED, call_sid="CA" + "2" * 32) as second,
            ):
                await server.wait_for_connection(1)
                per_replica = await replica_metrics(deployed, REPLICAS)
                assert sorted(live(text) for text in per_replica.values()) == [1, 1]  # one call each
                started = time.monotonic()
                async with anyio.create_task_group() as scaling:
                    scaling.start_soon(anyio.to_thread.run_sync, deployed.scale, 1)  # 2 -> 1: one drains
                    await until_stopping()
                    assert first.closed is None and second.closed is None  # no call lost to the downscale
                    async with anyio.create_task_group() as turns:  # both go on, the draining one too
                        turns.start_soon(talk, first)
                        turns.start_soon(talk, second)
                    assert time.monotonic() - started < DRAIN  # the turns ran during the drain
                    with anyio.move_on_after(DRAIN + 4):
                        await first.until(lambda: first.closed is not None)
                    with anyio.move_on_after(0.1 if first.closed is not None else DRAIN + 4):
                        await second.until(lambda: second.closed is not None)
                drained = [p for p in (first, second) if p.closed is not None]
                # The drained replica's call was ended at its drain timeout by the gateway (close
                # 1000 after its session closed), not killed with the replica; the other goes on.
                assert len(drained) == 1, [p.closed for p in (first, second)]
                assert getattr(drained[0].closed, "code", None) == 1000
                assert time.monotonic() - started >= DRAIN
            assert len(server.connections) == 2
            for connection in server.connections:
                await connection.wait_closed()
                assert list(outputs_per_call(connection.conversation.items).values()) == [1]
        await anyio.to_thread.run_sync(deployed.scale, REPLICAS)


def test_keys_stay_out_of_ray_and_a_provider_holding_its_key_is_refused(deployed: Deployed) -> None:
    import ray
    from ray import serve

    from engine.scale.serve import application

    with pytest.raises(TypeError, match="never sent to Ray") as refused:
        application(provider=engine.Inworld(api_key=KEY, url="wss://example.invalid/"))
    assert KEY not in str(refused.value) and KEY not in repr(refused.value)
    assert KEY not in repr(serve.status())
    client = serve.context._get_global_client()
    assert KEY not in repr(client.get_serve_details())
    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    texts = {p.name: p.read_bytes() for p in logs.rglob("*") if p.is_file()}
    assert [name for name, text in texts.items() if KEY.encode() in text] == []
    # The replicas' own log lines were written, each saying which replica wrote it.
    lines = [line for text in texts.values() for line in text.splitlines() if b"call started id=" in line]
    assert lines and all(b"engine.gateway.calls replica=" in line for line in lines)


def test_the_deployment_maps_capacity_drain_and_autoscaling_to_serve(ray_installed: None) -> None:
    from engine.scale.serve import DEFAULT_HEADROOM, WAIT_LOOP_S, application

    fixed = application(capacity=5, replicas=3, drain_timeout=3)._bound_deployment._deployment_config
    assert fixed.num_replicas == 3 and fixed.autoscaling_config is None
    # Serve never holds a call back while the gateway has room: the gateway refuses at its cap.
    assert fixed.max_ongoing_requests == 5 + DEFAULT_HEADROOM
    assert fixed.max_queued_requests == 5
    # Serve's kill comes after the drain timeout and the calls' clean closing.
    assert fixed.graceful_shutdown_timeout_s > 3 + 1.0 + 2 * WAIT_LOOP_S
    assert fixed.request_router_config.request_router_class == "engine.scale.router:LeastInFlightRouter"
    scaled = application(capacity=10, min_replicas=2, max_replicas=6)._bound_deployment._deployment_config
    auto = scaled.autoscaling_config
    assert (auto.min_replicas, auto.max_replicas, auto.target_ongoing_requests) == (2, 6, 7.0)
    for bad, message in [
        ({"capacity": 0}, "capacity must be at least 1"),
        ({"min_replicas": 3, "max_replicas": 2}, "max_replicas must be at least"),
        ({"drain_timeout": -1}, "drain_timeout must be >= 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            application(**bad)
