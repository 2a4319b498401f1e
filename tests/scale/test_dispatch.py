"""Issue 17, placed calls: the dispatcher on three call hosts (Ray actors) against a LocalServer on 127.0.0.1.

Admission never exceeds a host's capacity under a burst (the excess waits, or
is refused at its deadline); killing a host mid-call moves its calls to the
others, which resume from their checkpoints with no second greeting and every
tool call answered exactly once, counted on the server's side; ``load()`` is
answered while a host's call loop is blocked; bad input gets a specific error.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import anyio
import pytest
import ray

from engine.errors import UsageTypeError, UsageValueError
from engine.scale import dispatcher as dispatch_handle
from engine.scale.dispatcher import CallHandle, Dispatcher
from engine.scale.spec import (
    CallFailed,
    CallOutcome,
    CallRefused,
    CallSpec,
    Checkpointed,
    Endpoint,
    Event,
    Failed,
    FailedOver,
    Finished,
    Placed,
    Queued,
    Refused,
    SimulatedCaller,
    Speak,
    UnknownAgent,
)
from engine.server import LocalServer
from tests.scale.dispatch_agents import GREETING

pytestmark = [pytest.mark.ray, pytest.mark.anyio]

AGENT = "tests.scale.dispatch_agents:weather"
SCRIPT = ("hi there", "weather in Paris?", "thanks")
CAPACITY = 2


def spec(server: LocalServer, script: tuple[str, ...] = SCRIPT, **metadata: str) -> CallSpec:
    return CallSpec(
        agent=AGENT,
        caller=SimulatedCaller(script),
        endpoint=Endpoint(url=server.url(), key_env=None),
        metadata=metadata,
    )


def server_counts(server: LocalServer) -> tuple[dict[str | None, int], int]:
    """Across every connection: outputs answering each call id the server issued, and greetings.

    A restored item keeps its id on the new connection, so an item counts once by (call, id)
    (client-made ids repeat across calls: each session counts from 1).
    """
    issued: set[str | None] = set()
    outputs: set[tuple[str | None, str | None]] = set()
    greetings: set[str | None] = set()
    for connection in server.connections:
        for item in connection.conversation.items:
            if item.type == "function_call":
                issued.add(item.call_id)
            elif item.type == "function_call_output":
                outputs.add((item.call_id, item.id))
            elif item.role == "assistant" and item.text == GREETING:
                greetings.add(item.id)
    answered = {call_id: sum(1 for c, _ in outputs if c == call_id) for call_id in issued}
    return answered, len(greetings)


def expected_transcript(outcome: CallOutcome) -> None:
    said = [text for role, text in outcome.transcript]
    assert said == [
        GREETING,
        "hi there",
        "You said: hi there.",
        "weather in Paris?",
        'The result is {"city": "Paris", "temp_c": 21}.',
        "thanks",
        "You said: thanks.",
    ]
    assert len(outcome.turns) == 4 and outcome.tool_calls == 1


async def all_events(handle: CallHandle) -> list[Event]:
    return [event async for event in handle.events()]


@pytest.fixture(scope="module")
def dispatcher(ray_cluster: None) -> Iterator[Dispatcher]:
    """Three hosts of capacity 2 (zero CPUs each: a 2-core machine), shared by the module's tests."""
    started = anyio.run(functools.partial(Dispatcher.start, hosts=3, capacity=CAPACITY, host_cpus=0))
    yield started
    anyio.run(started.aclose)


async def test_a_burst_never_exceeds_any_hosts_capacity(dispatcher: Dispatcher) -> None:
    calls = 3 * CAPACITY + 3  # more than the hosts hold: the excess waits, then runs
    with anyio.fail_after(60):
        async with LocalServer(pace=0, ping_interval=None).running() as server:
            handles = [await dispatcher.submit(spec(server, tool_seconds="0.5")) for _ in range(calls)]
            outcomes: list[CallOutcome] = []
            events: list[list[Event]] = []
            for handle in handles:
                outcomes.append(await handle.outcome())
                events.append(await all_events(handle))
            loads = await dispatcher.load()
    for outcome in outcomes:
        expected_transcript(outcome)
    placed = [next(e for e in history if isinstance(e, Placed)) for history in events]
    assert len({p.host for p in placed}) == 3  # least-loaded placement used every host
    assert sum(1 for history in events if any(isinstance(e, Queued) for e in history)) >= 3
    assert all(load.peak <= CAPACITY for load in loads), loads
    assert any(load.peak == CAPACITY for load in loads), loads
    answered, greetings = server_counts(server)
    assert greetings == calls and len(answered) == calls and set(answered.values()) == {1}


async def test_a_call_waits_at_most_its_queue_timeout_then_is_refused(
    dispatcher: Dispatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatch_handle, "POLL_S", 0.2)  # the 3 s calls outlast many long polls
    with anyio.fail_after(60):
        async with LocalServer(pace=0, ping_interval=None).running() as server:
            busy = [await dispatcher.submit(spec(server, tool_seconds="3")) for _ in range(3 * CAPACITY)]
            for handle in busy:  # every slot is taken before the late calls come
                async for event in handle.events():
                    if isinstance(event, Placed):
                        break
            late = [await dispatcher.submit(spec(server), queue_timeout=0.3) for _ in range(2)]
            for handle in late:
                with pytest.raises(CallRefused, match=r"no host had a free slot within queue_timeout=0\.3s"):
                    await handle.outcome()
                kinds = [type(e) for e in await all_events(handle)]
                assert kinds == [Queued, Refused]
            for handle in busy:
                expected_transcript(await handle.outcome())
    stats = await dispatcher.stats()
    assert stats.refused >= 2 and stats.finished >= 3 * CAPACITY


async def test_load_is_answered_while_a_hosts_loop_is_blocked(dispatcher: Dispatcher) -> None:
    with anyio.fail_after(30):
        async with LocalServer(pace=0, ping_interval=None).running() as server:
            handle = await dispatcher.submit(spec(server, ("please block loop",), block_seconds="2"))
            placed = None
            async for event in handle.events():
                if isinstance(event, Placed):
                    placed = event
                    break
            assert placed is not None
            host = placed.host
            stalled = None
            while stalled is None:  # the monitor thread reports the stuck loop while it is stuck
                loads = {load.host: load for load in await dispatcher.load()}
                if not loads[host].healthy:
                    stalled = loads[host]
            outcome = await handle.outcome()
    assert stalled.loop_lag >= 0.5 and stalled.active == 1
    assert outcome.tool_calls == 1 and outcome.transcript[-1] == ("assistant", "The result is done.")


async def test_bad_input_gets_a_specific_error(dispatcher: Dispatcher) -> None:
    caller = SimulatedCaller(["hi"])
    with pytest.raises(UsageValueError, match="module:attribute"):
        CallSpec(agent="no_colon_here", caller=caller)
    with pytest.raises(UsageTypeError, match="caller must be a SimulatedCaller"):
        CallSpec(agent=AGENT, caller=["hi"])  # type: ignore[arg-type]
    with pytest.raises(UsageTypeError, match="metadata must map str to str"):
        CallSpec(agent=AGENT, caller=caller, metadata={"n": 1})
    with pytest.raises(UsageTypeError, match="caller turn 1"):
        SimulatedCaller(["hi", 3])
    with pytest.raises(UsageValueError, match="Speak seconds"):
        SimulatedCaller([Speak(0)])
    with pytest.raises(UsageTypeError, match="submit takes a CallSpec"):
        await dispatcher.submit("tests.scale.dispatch_agents:weather")  # type: ignore[arg-type]
    with pytest.raises(UnknownAgent, match=r"cannot import 'tests\.scale\.nowhere'"):
        await dispatcher.submit(CallSpec(agent="tests.scale.nowhere:agent", caller=caller))
    with pytest.raises(UnknownAgent, match="has no attribute 'missing'"):
        await dispatcher.submit(CallSpec(agent="tests.scale.dispatch_agents:missing", caller=caller))
    with pytest.raises(UnknownAgent, match=r"is a int, not an engine\.Agent"):
        await dispatcher.submit(CallSpec(agent="tests.scale.dispatch_agents:not_an_agent", caller=caller))
    with pytest.raises(UsageValueError, match="queue_timeout must be >= 0"):
        await dispatcher.submit(CallSpec(agent=AGENT, caller=caller), queue_timeout=-1)
    with pytest.raises(UsageValueError, match="hosts and capacity must be at least 1"):
        await Dispatcher.start(hosts=0)
    with pytest.raises(UsageValueError, match="the host has no API key: set ENGINE_TEST_UNSET_KEY"):
        Endpoint(url="ws://127.0.0.1:1", key_env="ENGINE_TEST_UNSET_KEY").build()
    # What only the host can find out fails the call, with the host's error.
    keyless = Endpoint(url="ws://127.0.0.1:1", key_env="ENGINE_TEST_UNSET_KEY")
    with anyio.fail_after(20):
        handle = await dispatcher.submit(CallSpec(agent=AGENT, caller=caller, endpoint=keyless))
        with pytest.raises(CallFailed, match="UsageValueError: the host has no API key"):
            await handle.outcome()
        kinds = [type(e) for e in await all_events(handle)]
    assert kinds == [Placed, Failed]


async def test_a_killed_host_fails_its_calls_over_from_their_checkpoints(ray_cluster: None) -> None:
    """Six calls on three hosts of capacity 3; the first call's host dies while its calls run a tool."""
    dispatcher = await Dispatcher.start(hosts=3, capacity=3, host_cpus=0, replace_dead=True)
    try:
        with anyio.fail_after(60):
            async with LocalServer(pace=0, ping_interval=None).running() as server:
                handles = [await dispatcher.submit(spec(server, tool_seconds="3")) for _ in range(6)]
                hosts = await dispatcher.hosts()
                where: dict[str, str] = {}
                in_tool: set[str] = set()
                seen: dict[str, list[Event]] = {h.call_id: [] for h in handles}
                victim: str | None = None
                killed = anyio.Event()

                def kill_when_ready() -> None:
                    # Every call placed, and every call on the victim inside its (slow) tool.
                    on_victim = {c for c, h in where.items() if h == victim}
                    if victim is not None and len(where) == len(handles) and on_victim <= in_tool:
                        ray.kill(hosts[victim])
                        killed.set()

                async def follow(handle: CallHandle) -> None:
                    nonlocal victim
                    async for event in handle.events():
                        seen[handle.call_id].append(event)
                        if killed.is_set():
                            continue
                        if isinstance(event, Placed):
                            where[handle.call_id] = event.host
                        if isinstance(event, Checkpointed) and event.open_calls:
                            in_tool.add(handle.call_id)
                            victim = victim or event.host
                        kill_when_ready()

                async with anyio.create_task_group() as tg:
                    for handle in handles:
                        tg.start_soon(follow, handle)
                outcomes = [await handle.outcome() for handle in handles]
                loads = await dispatcher.load()
                while len(loads) < 3:  # the replacement host joins the pool once it is up
                    loads = await dispatcher.load()
        stats = await dispatcher.stats()
    finally:
        await dispatcher.aclose()

    moved = {c for c, h in where.items() if h == victim}
    assert len(moved) == 2  # least-loaded: two calls per host
    for call_id, events in seen.items():
        failovers = [e for e in events if isinstance(e, FailedOver)]
        if call_id in moved:
            (failover,) = failovers
            assert failover.from_host == victim and failover.to_host != victim
            resumed = [e for e in events if isinstance(e, Placed)][-1]
            assert resumed.resumed and resumed.host == failover.to_host
        else:
            assert failovers == []
        assert isinstance(events[-1], Finished)
    for outcome in outcomes:
        expected_transcript(outcome)
        assert outcome.failovers == (1 if outcome.call_id in moved else 0)
    answered, greetings = server_counts(server)
    assert greetings == len(handles)  # no second greeting on the new hosts
    assert len(answered) == len(handles) and set(answered.values()) == {1}  # each tool call answered once
    assert stats.failed_over == 2 and stats.finished == 6
    (dead,) = [h for h in stats.hosts if not h.alive]
    assert dead.host == victim
    assert sorted(load.host for load in loads) == sorted({*hosts, "host-3"} - {victim})
    assert all(load.healthy for load in loads)
