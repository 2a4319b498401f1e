"""Per-turn metrics on a fake clock, with exact values."""

from __future__ import annotations

from engine.core import events as ev
from engine.protocol.items import Usage
from tests.core.driver import Driver, emitted, pcm_b64


def _metrics(out: list) -> list[ev.TurnMetrics]:  # type: ignore[type-arg]
    return [e for e in emitted(out) if isinstance(e, ev.TurnMetrics)]


def test_voice_turn_metrics_exact() -> None:
    d = Driver()
    d.ready()
    d.clock.now = 10.0
    d.server("input_audio_buffer.speech_started", item_id="u1", audio_start_ms=0)
    d.clock.now = 11.0
    d.server("input_audio_buffer.speech_stopped", item_id="u1", audio_end_ms=1000)
    d.clock.now = 11.25
    d.server("response.created", response={"id": "r1", "status": "in_progress"})
    d.clock.now = 11.5
    d.server("response.output_audio.delta", response_id="r1", item_id="a1", delta=pcm_b64(4800))
    d.clock.now = 11.75
    d.do(d.conv.audio_played("a1", 20))
    d.clock.now = 12.0
    d.do(d.conv.audio_played("a1", 100))  # only the first played audio counts
    d.clock.now = 13.0
    out = d.server(
        "response.done", response={"id": "r1", "status": "completed", "usage": {"total_tokens": 9}}
    )
    (m,) = _metrics(out)
    assert m == ev.TurnMetrics(
        turn=1,
        response_id="r1",
        user_speech_ended=11.0,
        response_requested=None,
        response_created=11.25,
        first_audio_received=11.5,
        first_audio_played=11.75,
        response_done=13.0,
        tool_seconds=None,
        reconnect_seconds=None,
        usage=Usage(total_tokens=9),
    )
    assert m.time_to_first_audio == 0.5
    assert m.time_to_first_played == 0.75
    assert m.total_seconds == 2.0


def test_tool_turn_spans_both_responses_and_counts_tool_time() -> None:
    d = Driver()
    d.ready()
    d.clock.now = 1.0
    d.do(d.conv.send_text("weather?"))
    d.clock.now = 1.5
    d.server("response.created", response={"id": "r1"})
    d.server(
        "response.output_item.added",
        response_id="r1",
        item={"id": "f1", "type": "function_call", "call_id": "c1", "name": "w", "arguments": ""},
    )
    d.clock.now = 2.0
    d.server(
        "response.function_call_arguments.done", response_id="r1", item_id="f1", call_id="c1", arguments="{}"
    )
    out = d.server(
        "response.done", response={"id": "r1", "status": "completed", "usage": {"total_tokens": 5}}
    )
    assert _metrics(out) == []  # the turn goes on: the tool must be answered
    d.clock.now = 2.75
    d.do(d.conv.tool_result("c1", '"sunny"'))
    d.clock.now = 3.0
    d.server("response.created", response={"id": "r2"})
    d.clock.now = 3.5
    d.server("response.output_audio.delta", response_id="r2", item_id="a2", delta=pcm_b64(480))
    d.clock.now = 4.0
    out = d.server(
        "response.done", response={"id": "r2", "status": "completed", "usage": {"total_tokens": 7}}
    )
    (m,) = _metrics(out)
    assert (m.turn, m.response_id) == (1, "r2")
    assert (m.user_speech_ended, m.response_requested, m.response_created) == (None, 1.0, 1.5)
    assert (m.first_audio_received, m.first_audio_played, m.response_done) == (3.5, None, 4.0)
    assert m.tool_seconds == 0.75
    assert m.reconnect_seconds is None
    assert m.usage == Usage(total_tokens=12)


def test_reconnect_downtime_is_counted_in_the_turn() -> None:
    d = Driver()
    d.ready()
    d.clock.now = 1.0
    d.do(d.conv.send_text("hello"))
    d.clock.now = 2.0
    d.do(d.conv.connection_lost())
    d.clock.now = 3.5
    d.server("session.created", session={})
    d.server("session.updated", session={})
    d.server("response.created", response={"id": "r1"})
    d.clock.now = 4.0
    (m,) = _metrics(d.server("response.done", response={"id": "r1", "status": "completed"}))
    assert m.reconnect_seconds == 1.5
    assert m.tool_seconds is None
    assert m.turn == 1


def test_turns_are_numbered_and_nothing_is_a_sentinel() -> None:
    d = Driver()
    d.ready()
    for n in (1, 2, 3):
        d.do(d.conv.send_text(f"t{n}"))
        d.server("response.created", response={"id": f"r{n}"})
        (m,) = _metrics(d.server("response.done", response={"id": f"r{n}", "status": "completed"}))
        assert m.turn == n
        assert m.first_audio_received is None and m.time_to_first_audio is None
        assert m.usage is None
