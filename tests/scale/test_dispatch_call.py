"""One placed call without Ray (``run_placed_call``): the simulated caller, checkpoints, and resuming.

What a host runs, against a LocalServer on 127.0.0.1: text and audio turns,
a checkpoint after each turn and around each tool call, and a call resumed
from a checkpoint (no greeting, the open tool call answered once, the script
going on from the caller's position).
"""

from __future__ import annotations

import functools
import logging

import anyio
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from engine.observe.logs import CallFilter
from engine.scale.dispatch_call import observe_call, run_placed_call
from engine.scale.spec import CallSpec, Checkpoint, Endpoint, SimulatedCaller, Speak, current_call
from engine.server import LocalServer
from tests.scale.dispatch_agents import GREETING

pytestmark = pytest.mark.anyio

AGENT = "tests.scale.dispatch_agents:weather"


def spec(server: LocalServer, *turns: str | Speak) -> CallSpec:
    return CallSpec(
        agent=AGENT, caller=SimulatedCaller(turns), endpoint=Endpoint(url=server.url(), key_env=None)
    )


async def run(
    spec: CallSpec, checkpoint: Checkpoint | None = None, attempt: int = 0
) -> tuple[list[Checkpoint], str]:
    taken: list[Checkpoint] = []

    async def report(point: Checkpoint) -> None:
        taken.append(point)

    outcome = await run_placed_call("call_x", "host-x", spec, checkpoint, attempt, report)
    return taken, outcome.transcript[-1][1]


async def test_text_and_audio_turns_with_a_checkpoint_after_each() -> None:
    with anyio.fail_after(10):
        async with LocalServer(pace=0, ping_interval=None).running() as server:
            call = spec(server, Speak(0.6), "weather in Oslo?")
            taken: list[Checkpoint] = []

            async def report(point: Checkpoint) -> None:
                taken.append(point)

            outcome = await run_placed_call("call_x", "host-x", call, None, 0, report)
    assert [text for _, text in outcome.transcript] == [
        GREETING,
        "[speech 0.60 s, loud]",
        "You said: [speech 0.60 s, loud]",
        "weather in Oslo?",
        'The result is {"city": "Oslo", "temp_c": 21}.',
    ]
    # greeting, turn 1, the tool call (open), its answer, turn 2
    assert [(p.sent, p.done, p.greeted, len(p.open_calls()), p.tool_calls) for p in taken] == [
        (0, 0, True, 0, 0),
        (1, 1, True, 0, 0),
        (2, 1, True, 1, 0),
        (2, 1, True, 0, 1),
        (2, 2, True, 0, 1),
    ]
    assert outcome.tool_calls == 1 and len(outcome.turns) == 3 and outcome.failovers == 0
    assert all(t.total is not None for t in outcome.turns)


async def test_a_resumed_call_answers_the_open_tool_call_once_and_never_greets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="engine.scale")
    caplog.handler.addFilter(CallFilter())
    with anyio.fail_after(10):
        async with LocalServer(pace=0, ping_interval=None).running() as server:
            call = spec(server, "hi", "weather in Oslo?", "bye")
            taken, _ = await run(call)
            (open_point,) = [p for p in taken if p.open_calls()]
            (pending,) = open_point.open_calls()
            resumed, last = await run(call, open_point, attempt=1)
    _, second = server.connections
    items = second.conversation.items
    outputs = [i for i in items if i.type == "function_call_output"]
    assert [o.call_id for o in outputs] == [pending.call_id]  # answered once, on the new host
    fresh = [i for i in items if i.role == "assistant" and i.id not in {j.id for j in open_point.items}]
    assert [i.text for i in fresh] == ['The result is {"city": "Oslo", "temp_c": 21}.', "You said: bye."]
    assert [i.text for i in items if i.role == "system"] and GREETING not in [i.text for i in fresh]
    assert [i.text for i in items if i.role == "user"] == [
        "hi",
        "weather in Oslo?",
        "bye",
    ]  # nothing said twice
    assert last == "You said: bye."
    assert resumed[0].tool_calls == 1 and resumed[-1].done == 3
    # The host's log records name the call, the host and the attempt.
    (rerun,) = [r for r in caplog.records if "running the open tool call" in r.getMessage()]
    assert rerun.call_id == "call_x" and rerun.carrier_ids == " host=host-x attempt=1"  # type: ignore[attr-defined]


async def test_a_call_resumed_between_turns_goes_on_with_the_next_turn() -> None:
    with anyio.fail_after(10):
        async with LocalServer(pace=0, ping_interval=None).running() as server:
            call = spec(server, "one", "two")
            taken, _ = await run(call)
            after_one = taken[1]
            assert (after_one.sent, after_one.done) == (1, 1)
            resumed, last = await run(call, after_one, attempt=1)
    second = server.connections[1]
    assert [i.text for i in second.conversation.items if i.role == "user"] == ["one", "two"]
    assert last == "You said: two." and [p.done for p in resumed] == [2]
    assert server.connections[1].received_types.count("response.create") == 1  # only the caller's turn


async def test_an_audio_turn_with_manual_turns_is_committed_by_the_caller() -> None:
    with anyio.fail_after(10):
        async with LocalServer(pace=0, ping_interval=None).running() as server:
            call = CallSpec(
                agent="tests.scale.dispatch_agents:manual",
                caller=SimulatedCaller([Speak(0.4)]),
                endpoint=Endpoint(url=server.url(), key_env=None),
            )
            _, last = await run(call)
    assert last == "You said: [speech 1.40 s, normal]"  # the whole buffer: speech and its silences
    assert server.connections[0].received_types.count("input_audio_buffer.commit") == 1


async def test_a_placed_calls_spans_and_metrics_name_its_host() -> None:
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[reader])
    observe = functools.partial(observe_call, tracer_provider=tracer_provider, meter_provider=meter_provider)
    with anyio.fail_after(10):
        async with LocalServer(pace=0, ping_interval=None).running() as server:
            call = spec(server, "weather in Oslo?")
            await run_placed_call("call_x", "host-x", call, None, 2, _ignore, observe)
    (span,) = [s for s in exporter.get_finished_spans() if s.attributes and "engine.call.id" in s.attributes]
    assert span.attributes is not None
    assert (span.attributes["engine.call.id"], span.attributes["engine.host"]) == ("call_x", "host-x")
    data = reader.get_metrics_data()
    assert data is not None
    points = [
        (metric.name, dict(point.attributes or {}))
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.data.data_points
    ]
    names = {name for name, _ in points}
    assert {"engine.turn.duration", "engine.tool.calls"} <= names, names
    assert all(a["engine.host"] == "host-x" and a["engine.call.attempt"] == "2" for _, a in points)


async def _ignore(point: Checkpoint) -> None:
    pass


def test_current_call_outside_a_call_is_a_lookup_error() -> None:
    with pytest.raises(LookupError):
        current_call()


async def test_a_call_the_agent_ends_by_policy_is_finished_with_that_reason_not_failed() -> None:
    """The agent's ``end_call`` ends the call mid-script: a normal end, and the rest is not spoken."""
    with anyio.fail_after(10):
        async with LocalServer(pace=0, ping_interval=None).running() as server:
            call = CallSpec(
                agent="tests.scale.dispatch_agents:hangs_up",
                caller=SimulatedCaller(["please end the call", "are you still there?"]),
                endpoint=Endpoint(url=server.url(), key_env=None),
            )

            async def report(point: Checkpoint) -> None:
                pass

            outcome = await run_placed_call("call_x", "host-x", call, None, 0, report)
            (connection,) = server.connections
            said = [p.text for i in connection.conversation.items if i.role == "user" for p in i.content]
    assert outcome.end_reason == "call ended by policy: end_call"
    assert said == ["please end the call"]  # the second turn was never spoken
    assert outcome.tool_calls == 1
