"""Issue 16: one call's trace and metrics, generated from the session's events.

The demo conversation against the local server over a real socket (a text turn,
a voice turn calling the weather tool, a barge-in on a long answer of which
500 ms were heard, a rollover by ``reset()`` and a dropped socket that is
reconnected), exported with the OpenTelemetry SDK's in-memory span exporter
and metric reader, then asserted shape by shape.
"""

from __future__ import annotations

import itertools
import json
import logging
from typing import Any

import anyio
import attrs
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import engine
import engine.observe
from engine import events as ev
from engine.core.metrics import Prices
from engine.core.states import CORE_MACHINES, State
from engine.profiles import INWORLD
from engine.server.faults import Faults
from tests.e2e.helpers import (
    KEY,
    Recorder,
    collect_until,
    inworld,
    make_server,
    next_event,
    play_all,
    speech,
    stream_audio,
)

pytestmark = pytest.mark.anyio

QUICK = engine.ReconnectPolicy(initial_delay=0.01, jitter=0)
SETTINGS = engine.SessionSettings(close_timeout=0.5, reconnect=QUICK)
PRICES = Prices(input_text=1_000_000.0, output_text=2_000_000.0)  # 1 and 2 per token: easy sums
HELLO = "Hello there!"
CONNECTING = ev.StateChanged(old=State.CONNECTING, new=State.CONNECTING)  # where every call starts


def _is_turn_end(event: Any) -> bool:
    return isinstance(event, ev.TurnMetrics)


@attrs.define
class Call:
    spans: list[ReadableSpan]
    metrics: dict[str, list[Any]]
    recorder: Recorder
    usage: engine.observe.CallUsage
    logs: list[logging.LogRecord]
    barge_in: ev.Interrupted


async def _scripted_call(capture_text: bool = False) -> Call:
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[reader])
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    handler.addFilter(engine.observe.CallFilter())
    logger = logging.getLogger("engine")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    server = make_server()
    server.inject(Faults(drop_at="response.created"), index=1)  # the socket after the rollover drops
    recorder = Recorder()
    try:
        with anyio.fail_after(20):
            async with server.running():
                provider = attrs.evolve(inworld(server), profile=attrs.evolve(INWORLD, prices=PRICES))
                config = engine.SessionConfig(instructions="brief")
                session = engine.Session(provider, config, settings=SETTINGS)
                session.on()(recorder)

                @session.tool
                async def get_weather(city: str) -> dict[str, Any]:
                    """Current weather for a city.

                    Args:
                        city: the city name.
                    """
                    return {"city": city, "temp_c": 21}

                with engine.observe.call_context("call-7", call_sid="CA123"):
                    observer = engine.observe.instrument(
                        session,
                        tracer_provider=tracer_provider,
                        meter_provider=meter_provider,
                        capture_text=capture_text,
                    )
                    async with session.connect():
                        stream = session.events()
                        await session.send_text(HELLO)  # 1. a text turn
                        play_all(session, await collect_until(stream, _is_turn_end))
                        server.say_next("What's the weather in Paris?")  # 2. a tool turn
                        await stream_audio(session, speech(1.2))
                        play_all(session, await collect_until(stream, _is_turn_end))
                        await session.send_text("Tell me a long story about the sea and the ships.")
                        long_turn = await collect_until(stream, _is_turn_end)  # 3. a barge-in
                        (long_item,) = {e.item_id for e in long_turn if isinstance(e, ev.AudioOut)}
                        session.audio_played(long_item, 500)
                        server.say_next("Stop, please.")
                        await stream_audio(session, speech(0.8))
                        barge_in = await next_event(stream, ev.Interrupted)
                        play_all(session, await collect_until(stream, _is_turn_end))
                        await session.reset()  # 4. a rollover onto connection 1
                        await session.send_text("And now?")  # 5. connection 1 drops: a reconnect
                        await next_event(stream, ev.Reconnected)
                        await session.send_text("Still there?")
                        play_all(session, await collect_until(stream, _is_turn_end))
                        await session.aclose()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert session.usage() == observer.usage()  # the session's own ledger, instrumented or not
    data = reader.get_metrics_data()
    metrics: dict[str, list[Any]] = {}
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                metrics.setdefault(metric.name, []).extend(metric.data.data_points)
    return Call(list(exporter.get_finished_spans()), metrics, recorder, observer.usage(), records, barge_in)


def _server_side(record: logging.LogRecord) -> bool:
    return record.name.startswith("engine.server") or record.name == "engine.transports.listen"


def _children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def _value(points: list[Any], **attributes: Any) -> float:
    return sum(p.value for p in points if all(p.attributes.get(k) == v for k, v in attributes.items()))


async def test_the_span_tree_of_a_call() -> None:
    call = await _scripted_call()
    spans, recorder = call.spans, call.recorder
    (root,) = [s for s in spans if s.parent is None]
    assert root.name == "call"
    assert all(s.context.trace_id == root.context.trace_id for s in spans)
    assert {s.parent.span_id for s in spans if s.parent is not None} <= {s.context.span_id for s in spans}
    assert root.attributes is not None
    assert root.attributes["gen_ai.system"] == "inworld"
    assert root.attributes["gen_ai.request.model"] == "openai/gpt-4.1-mini"
    assert root.attributes["engine.call.id"] == "call-7"

    # The conversation's state intervals tile the call: no gap, no overlap, in order.
    states = [s for s in _children(spans, root) if s.name.startswith("conversation ")]
    states.sort(key=lambda s: s.start_time or 0)
    assert states[0].start_time == root.start_time and states[-1].end_time == root.end_time
    for before, after in itertools.pairwise(states):
        assert before.end_time == after.start_time
    changes = recorder.of_type(ev.StateChanged)
    assert [s.name for s in states] == [f"conversation {c.new.value}" for c in [CONNECTING, *changes]]
    assert (
        "conversation reconnecting" in [s.name for s in states] and states[-1].name == "conversation closed"
    )

    # So do every other core machine's (from the core's on_step hook).
    machines: dict[str, list[ReadableSpan]] = {}
    for span in _children(spans, root):
        if span.attributes and "engine.machine" in span.attributes:
            machines.setdefault(str(span.attributes["engine.machine"]), []).append(span)
    assert set(machines) == {*CORE_MACHINES, "lifecycle"}
    for tiles in machines.values():
        tiles.sort(key=lambda s: s.start_time or 0)
        assert tiles[0].start_time == root.start_time and tiles[-1].end_time == root.end_time
        assert all(a.end_time == b.start_time for a, b in itertools.pairwise(tiles))
    phases = [s.name for s in machines["response"]]
    assert phases[:3] == ["response idle", "response requested", "response generating"]  # the text turn
    assert "response server_owed" in phases  # a voice turn: the server starts the response itself
    lives = [s.name.split()[1] for s in machines["lifecycle"]]
    assert lives[:3] == ["new", "connecting", "open"] and lives[-1] == "closing"  # closed comes after Closed
    assert lives[3:8] == ["rolling_over", "reconnecting", "open", "reconnecting", "open"]

    # One span per turn, carrying its TurnMetrics; the tool call is a child of its turn.
    turns = [s for s in _children(spans, root) if s.name == "turn"]
    metrics = recorder.of_type(ev.TurnMetrics)
    assert [t.attributes["engine.turn"] for t in turns] == [m.turn for m in metrics]  # type: ignore[index]
    for span, m in zip(turns, metrics, strict=True):
        assert span.attributes is not None
        assert span.attributes.get("engine.turn.total") == m.total_seconds
        assert span.attributes.get("engine.turn.time_to_first_audio") == m.time_to_first_audio
        assert span.attributes["gen_ai.usage.output_tokens"] == (m.usage.output_tokens if m.usage else 0)
        assert span.attributes["engine.cost"] == m.cost
        assert m.cost is not None and m.usage is not None
        assert m.cost == pytest.approx((m.usage.input_tokens or 0) + 2 * (m.usage.output_tokens or 0))
    (tool,) = [s for s in spans if s.name == "execute_tool get_weather"]
    (call_event,) = recorder.of_type(ev.ToolCall)
    (result_event,) = recorder.of_type(ev.ToolResult)
    assert tool.parent is not None and tool.parent.span_id in {t.context.span_id for t in turns}
    assert tool.attributes is not None
    assert tool.attributes["engine.tool.outcome"] == "ok"
    assert tool.attributes["gen_ai.tool.call.id"] == call_event.call_id
    assert tool.attributes["engine.tool.arguments_bytes"] == len(call_event.arguments)
    assert tool.attributes["engine.tool.result_bytes"] == len(result_event.output)

    # The interruption event: its milliseconds are the ledger's (what the app acknowledged).
    # (The response the dropped socket cut off is reported as Interrupted too.)
    interrupted = call.barge_in
    cuts = [e for e in root.events if e.name == "interruption"]
    assert len(cuts) == len(recorder.of_type(ev.Interrupted))
    (cut,) = [e for e in cuts if e.attributes and e.attributes["gen_ai.item.id"] == interrupted.item_id]
    assert cut.attributes is not None and cut.attributes["engine.played_ms"] == interrupted.played_ms == 500
    assert any(e.name == "interruption" and e.attributes == cut.attributes for t in turns for e in t.events)

    # One rollover (reset) and one reconnect (the dropped socket), inside the call.
    (rollover,) = [s for s in spans if s.name == "rollover"]
    (reconnect,) = [s for s in spans if s.name == "reconnect"]
    assert reconnect.attributes is not None and reconnect.attributes["engine.reconnect.attempts"] >= 1
    for span in (rollover, reconnect):
        assert root.start_time and root.end_time and span.start_time and span.end_time
        assert root.start_time <= span.start_time <= span.end_time <= root.end_time

    # Usage and cost: the call span's and session usage() are the sums of the turns'.
    usage = call.usage
    assert len(usage.turns) == len(metrics)
    assert usage.output_tokens == sum(m.usage.output_tokens or 0 for m in metrics if m.usage)
    assert root.attributes["gen_ai.usage.output_tokens"] == usage.output_tokens
    assert root.attributes["engine.cost"] == pytest.approx(usage.cost)
    assert usage.tokens["output_text"] == usage.output_tokens  # the local server gives no breakdown

    # The metrics from the same call.
    m = call.metrics
    assert _value(m["engine.interruptions"]) == len(recorder.of_type(ev.Interrupted))
    ok = {"gen_ai.tool.name": "get_weather", "engine.tool.outcome": "ok"}
    assert _value(m["engine.tool.calls"], **ok) == 1
    assert _value(m["engine.reconnects"], **{"engine.reconnect.kind": "rollover"}) == 1
    assert _value(m["engine.reconnects"], **{"engine.reconnect.kind": "reconnect"}) == 1
    assert sum(p.count for p in m["engine.turn.duration"]) == len(metrics)
    assert sum(p.count for p in m["engine.tool.duration"]) == 1
    assert _value(m["engine.sessions"]) == 0  # closed: no longer live in any state
    errors = recorder.of_type(ev.Error)
    assert _value(m.get("engine.errors", [])) == len(errors)
    assert _value(m["engine.cost"]) == pytest.approx(usage.cost)

    # Every record the call logged names the call and its carrier ids.
    # (The local server logs too, outside the call: its tasks were started before it.)
    ours = [r for r in call.logs if r.threadName == "MainThread" and not _server_side(r)]
    assert ours
    assert {(r.call_id, r.carrier_ids) for r in ours} == {("call-7", " call_sid=CA123")}  # type: ignore[attr-defined]

    # Redaction: no key, no words (not opted in) in any span, metric or log record.
    exported = json.dumps([json.loads(s.to_json()) for s in spans]) + repr(m)
    exported += "".join(r.getMessage() + repr(r.args) for r in call.logs)
    assert KEY not in exported
    assert HELLO not in exported and "Paris" not in exported


async def test_the_words_are_on_the_spans_only_when_asked_for() -> None:
    call = await _scripted_call(capture_text=True)
    (root,) = [s for s in call.spans if s.parent is None]
    words = [e.attributes["engine.text"] for e in root.events if e.name == "user_transcript"]  # type: ignore[index]
    assert words == ["What's the weather in Paris?", "Stop, please."]  # spoken turns (text has no transcript)
    said = [e for e in root.events if e.name == "assistant_transcript"]
    assert said and all(e.attributes and e.attributes["engine.text"] for e in said)
    (tool,) = [s for s in call.spans if s.name == "execute_tool get_weather"]
    assert tool.attributes is not None and json.loads(str(tool.attributes["gen_ai.tool.call.arguments"])) == {
        "city": "Paris"
    }
    assert KEY not in json.dumps([json.loads(s.to_json()) for s in call.spans])


async def test_a_refused_call_ends_its_trace_with_the_error() -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    server = make_server(expected_key="another-key")
    with anyio.fail_after(10):
        async with server.running():
            session = engine.Session(inworld(server), settings=SETTINGS)
            engine.observe.instrument(session, tracer_provider=tracer_provider, metrics=False)
            with pytest.raises(engine.HandshakeError):
                async with session.connect():
                    pass
    spans = exporter.get_finished_spans()
    (root,) = [s for s in spans if s.parent is None]
    assert root.status.status_code is StatusCode.ERROR
    (error,) = [e for e in root.events if e.name == "error"]
    assert error.attributes is not None and error.attributes["engine.error.fatal"] is True
    assert error.attributes["error.type"] == "connection_failed"
    # The refused socket counts as lost: the conversation was reconnecting when the session gave up.
    machine = [
        s for s in spans if s.attributes and s.attributes.get("engine.machine") not in (None, "conversation")
    ]
    assert [s.name for s in spans if s.parent is not None and s not in machine] == [
        "conversation connecting",
        "conversation reconnecting",
        "reconnect",
        "conversation closed",
    ]
    (down,) = [s for s in spans if s.name == "reconnect"]
    assert down.attributes is not None and down.attributes["engine.reconnect.outcome"] == "closed"
    assert KEY not in json.dumps([json.loads(s.to_json()) for s in spans])


def test_without_an_sdk_no_span_is_even_built() -> None:
    session = engine.Session(engine.Inworld(api_key=KEY, url="ws://127.0.0.1:9/x"))
    observer = engine.observe.instrument(session)  # the global providers: the API's no-ops here
    assert observer.trace is None and observer.meters is not None
    assert session._lifecycle.on_step is None  # nothing hooked into the machines either
