"""Every gateway call is traced with OpenTelemetry (engine.observe), labelled with its gateway's attributes.

On Ray Serve each replica labels its calls ``engine.replica``; here a gateway is
given the same attribute and its own in-memory providers.
"""

from __future__ import annotations

import anyio
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from engine.core import events as ev
from engine.gateway.calls import Tracing
from tests.gateway.serving import Seen, phone_call, running_gateway, ulaw_silence, ulaw_speech, weather_agent

pytestmark = pytest.mark.anyio


async def test_a_phone_call_is_traced_with_the_gateway_attributes() -> None:
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(
        attributes={"engine.replica": "replica-7"},
        tracer_provider=tracer_provider,
        meter_provider=MeterProvider(metric_readers=[reader]),
    )
    agent = weather_agent()
    seen = Seen()
    agent.on()(seen)
    with anyio.fail_after(15):
        async with running_gateway(agent, tracing=tracing) as served:
            async with phone_call(served, speed=8) as phone:
                served.server.say_next("What's the weather in Paris?")
                await phone.speak(ulaw_speech())
                await phone.speak(ulaw_silence(600))
                await seen.until(lambda: seen.of(ev.TurnMetrics))
                live_id = served.gateway.registry.live[0].id
            await served.gateway.registry.wait_idle()
    spans = exporter.get_finished_spans()
    (call,) = [s for s in spans if s.name == "call"]
    assert call.attributes is not None
    assert call.attributes["engine.call.id"] == live_id
    assert call.attributes["engine.carrier"] == "twilio"
    assert call.attributes["engine.replica"] == "replica-7"
    assert [s for s in spans if s.name == "execute_tool get_weather"]  # the call's tool, in its trace
    points = [
        point.attributes
        for metric in reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics
        for point in metric.data.data_points
    ]
    assert points and all(p.get("engine.replica") == "replica-7" for p in points)

