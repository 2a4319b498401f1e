"""Issue 16: the gateway's /metrics serves engine.observe's metrics, from the same CallMeters."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry

from engine import events as ev
from engine.core.states import State
from engine.gateway.metrics import GatewayMetrics
from engine.observe.meters import CallMeters, instruments_of
from engine.observe.prometheus import PrometheusInstruments
from engine.protocol.items import Usage

S = 1_000_000_000  # ns


def _call() -> list[tuple[Any, int]]:
    return [
        (ev.StateChanged(old=State.CONNECTING, new=State.SESSION_READY), 1 * S),
        (ev.ToolCall(call_id="c1", name="get_weather", arguments="{}"), 2 * S),
        (ev.ToolResult(call_id="c1", name="get_weather", output="{}"), 3 * S),
        (ev.ToolCall(call_id="c2", name="get_weather", arguments="{}"), 3 * S),
        (
            ev.ToolResult(call_id="c2", name="get_weather", output='"timed out after 1s"', is_error=True),
            5 * S,
        ),
        (
            ev.TurnMetrics(
                turn=1,
                user_speech_ended=1.0,
                first_audio_received=1.25,
                response_done=2.0,
                usage=Usage(input_tokens=10, output_tokens=4),
                cost=0.5,
            ),
            6 * S,
        ),
        (ev.Interrupted(item_id="i1", response_id="r1", played_ms=300), 7 * S),
        (ev.Error(code="audio_dropped", message="", source="local"), 7 * S),
        (ev.Reconnecting(attempt=1, delay=0.1), 8 * S),
        (ev.Reconnected(attempt=1), 9 * S),
        (ev.StateChanged(old=State.SESSION_READY, new=State.CLOSED), 10 * S),
    ]


def test_prometheus_and_opentelemetry_tell_the_same_story() -> None:
    registry = CollectorRegistry()
    reader = InMemoryMetricReader()
    prom = CallMeters(PrometheusInstruments(registry), {})
    otel = CallMeters(
        instruments_of(MeterProvider(metric_readers=[reader]).get_meter("t")), {"gen_ai.system": "x"}
    )
    live = lambda: registry.get_sample_value("engine_sessions", {"state": "session_ready"})  # noqa: E731
    for event, now in _call():
        prom.handle(event, now)
        otel.handle(event, now)
        if isinstance(event, ev.ToolCall) and event.call_id == "c1":
            assert live() == 1.0  # a live session, in its state
    prom.handle(ev.Closed(reason="closed"), 11 * S)
    otel.handle(ev.Closed(reason="closed"), 11 * S)
    value = registry.get_sample_value
    ok, slow = {"tool": "get_weather", "outcome": "ok"}, {"tool": "get_weather", "outcome": "timeout"}
    assert value("engine_tool_calls_total", {"tool": "get_weather"}) == 2
    assert value("engine_tool_seconds_count", ok) == 1 and value("engine_tool_seconds_sum", ok) == 1.0
    assert value("engine_tool_seconds_sum", slow) == 2.0
    assert value("engine_turn_first_audio_seconds_sum") == 0.25
    assert value("engine_turn_total_seconds_sum") == 1.0
    assert value("engine_interruptions_total") == 1
    assert value("engine_errors_total", {"code": "audio_dropped"}) == 1
    assert value("engine_audio_dropped_total") == 1
    assert value("engine_reconnects_total", {"kind": "reconnect"}) == 1
    assert value("engine_turn_tokens_sum", {"type": "output"}) == 4
    assert value("engine_cost_total") == 0.5
    assert live() == 0.0 and value("engine_sessions", {"state": "closed"}) == 0.0

    data = reader.get_metrics_data()
    assert data is not None
    points = {
        m.name: list(m.data.data_points)
        for r in data.resource_metrics
        for s in r.scope_metrics
        for m in s.metrics
    }
    tools = {(p.attributes["engine.tool.outcome"], p.value) for p in points["engine.tool.calls"]}
    assert tools == {("ok", 1), ("timeout", 1)}
    assert [p.sum for p in points["engine.turn.time_to_first_audio"]] == [0.25]
    assert sum(p.value for p in points["engine.sessions"]) == 0
    assert all(p.attributes["gen_ai.system"] == "x" for p in points["engine.interruptions"])


def test_the_gateway_counts_its_own_errors_with_the_sessions() -> None:
    metrics = GatewayMetrics()
    callback = metrics.for_call()
    callback(ev.Error(code="server_error", message="boom"))
    metrics.error("carrier_malformed")
    text = metrics.render().decode()
    assert 'engine_errors_total{code="carrier_malformed"} 1.0' in text
    assert 'engine_errors_total{code="server_error"} 1.0' in text
    assert 'engine_sessions{state="connecting"} 1.0' in text  # a call not closed yet is live
