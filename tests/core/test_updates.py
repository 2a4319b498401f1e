"""The update machine (acknowledged session.update) and the events the core only reports."""

from __future__ import annotations

from engine.core import events as ev
from engine.core.effects import ArmTimer, CancelTimer, Emit
from engine.core.states import State, UpdateAck
from engine.core.updates import UPDATE_TIMER
from engine.protocol import SessionConfig
from engine.protocol.items import RateLimit
from tests.core.driver import Driver, emitted, errors, of_type, sent


def _ready() -> Driver:
    d = Driver(SessionConfig(instructions="one"))
    d.ready()
    return d


def test_an_update_is_pending_until_session_updated_applies_it() -> None:
    d = _ready()
    new = SessionConfig(instructions="two")
    out = d.do(d.conv.update(new))
    (event_id,) = d.conv.pending_updates
    assert sent(out)[0]["event_id"] == event_id
    assert d.conv.update_state is UpdateAck.PENDING
    assert ArmTimer(name=UPDATE_TIMER, delay=10.0) in out

    out = d.server("session.updated", session=new.to_wire())
    assert emitted(out) == [ev.ConfigApplied(event_id=event_id, session=new.to_wire(), config=new)]
    assert CancelTimer(name=UPDATE_TIMER) in out
    assert d.conv.update_state is UpdateAck.NONE and d.conv.pending_updates == ()
    assert d.conv.config == new


def test_answers_come_in_order_and_an_error_names_the_update_it_refuses() -> None:
    d = _ready()
    first, second = SessionConfig(instructions="two"), SessionConfig(instructions="three")
    d.do(d.conv.update(first))
    d.do(d.conv.update(second))
    id1, id2 = d.conv.pending_updates

    error = {"type": "invalid_request_error", "code": "invalid_value", "message": "no", "param": "session.x"}
    out = d.server("error", error={**error, "event_id": id2})
    assert of_type(out, Emit)[-1].event == ev.ConfigRejected(
        event_id=id2, code="invalid_value", message="no", param="session.x"
    )
    assert [e.fatal for e in errors(out)] == [False]
    assert d.conv.config == first  # the server kept the configuration it had
    assert d.conv.update_state is UpdateAck.PENDING  # the first is still unanswered

    out = d.server("session.updated", session=first.to_wire())
    assert [e.event_id for e in emitted(out)] == [id1]
    assert d.conv.update_state is UpdateAck.NONE


def test_no_answer_in_time_refuses_every_pending_update() -> None:
    d = _ready()
    d.do(d.conv.update(SessionConfig(instructions="two")))
    (event_id,) = d.conv.pending_updates
    out = d.conv.timer_fired(UPDATE_TIMER)
    rejected = [e for e in emitted(out) if isinstance(e, ev.ConfigRejected)]
    assert [(e.event_id, e.code) for e in rejected] == [(event_id, "update_timeout")]
    assert d.conv.update_state is UpdateAck.NONE
    assert d.conv.timer_fired(UPDATE_TIMER) == []  # a stale timer does nothing


def test_an_update_before_ready_is_answered_by_the_handshake() -> None:
    d = Driver(SessionConfig(instructions="one"))
    d.server("session.created", session={})
    out = d.do(d.conv.update(SessionConfig(instructions="two")))
    assert sent(out) == []  # session.created already sent the configuration; the ready answer covers it
    (event_id,) = d.conv.pending_updates
    out = d.server("session.updated", session={"type": "realtime"})
    assert [type(e).__name__ for e in emitted(out)][:2] == ["StateChanged", "SessionReady"]
    assert emitted(out)[-1].event_id == event_id
    assert d.conv.update_state is UpdateAck.NONE and d.conv.state is State.SESSION_READY


def test_a_later_session_updated_reaches_the_application_and_the_config() -> None:
    d = _ready()
    effective = SessionConfig(instructions="changed by the server")
    out = d.server("session.updated", session=effective.to_wire())
    assert emitted(out) == [ev.ConfigApplied(event_id=None, session=effective.to_wire(), config=effective)]
    assert d.conv.config == effective


def test_closing_gives_up_pending_updates() -> None:
    d = _ready()
    d.do(d.conv.update(SessionConfig(instructions="two")))
    d.conv.close()
    assert d.conv.update_state is UpdateAck.NONE and d.conv.pending_updates == ()


def test_reported_events_reach_the_application() -> None:
    d = _ready()
    out = d.server("input_audio_buffer.timeout_triggered", item_id="i1", audio_start_ms=0, audio_end_ms=5000)
    assert emitted(out) == [ev.IdleTimeout(item_id="i1", audio_start_ms=0, audio_end_ms=5000)]
    out = d.server("input_audio_buffer.dtmf_event_received", event="5", received_at=17)
    assert emitted(out) == [ev.Dtmf(digit="5", received_at=17)]
    out = d.server("rate_limits.updated", rate_limits=[{"name": "tokens", "limit": 9, "remaining": 3}])
    assert emitted(out) == [ev.RateLimits(rate_limits=(RateLimit(name="tokens", limit=9, remaining=3),))]
    out = d.server("mcp_list_tools.failed", item_id="m1")
    assert emitted(out) == [ev.McpProgress(stage="list_tools", status="failed", item_id="m1")]
    out = d.server("response.mcp_call.completed", item_id="m2", output_index=0)
    assert emitted(out) == [ev.McpProgress(stage="call", status="completed", item_id="m2")]
    assert d.conv.states["conversation"] == "session_ready"  # reported, nothing moved


def test_raw_events_only_when_asked_for() -> None:
    d = _ready()
    assert d.server("vendor.thing", x=1) == []
    assert d.server("input_audio_buffer.committed", item_id="i1") == []
    d.conv.raw_events = True
    (raw,) = emitted(d.server("vendor.thing", x=1))
    assert raw.type == "vendor.thing" and raw.event.raw == {"type": "vendor.thing", "x": 1}
    (raw,) = emitted(d.server("input_audio_buffer.committed", item_id="i1"))
    assert raw.type == "input_audio_buffer.committed" and raw.event.item_id == "i1"
    # A modelled event is never raw.
    assert emitted(d.server("rate_limits.updated", rate_limits=[])) == [ev.RateLimits()]
