"""Stuck states and state-before-validation, driven through the pure core (issue 11).

* Every waiting phase of the response slot has a deadline and a declared way
  out: ``requested`` (``response_created_timeout``), ``generating``
  (``stall_timeout``), ``cancelling`` (``cancel_timeout``). Time is an input:
  the core arms named timers, the test fires them after moving the clock.
* Every command checks its arguments before anything changes: a bad call
  raises at once and leaves both machines, the history and the effects as they
  were, so the next valid command works as if it never happened.
* Response-scoped events that do not fit the slot are reported and ignored:
  they never start a tool, never reach the application, never enter history.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from engine.core import events as ev
from engine.core.conversation import Conversation, CoreOptions
from engine.core.effects import ArmTimer, CancelTimer, StartTool
from engine.core.states import RESPONSE_TRANSITIONS, Phase, State
from engine.protocol import FunctionTool, SessionConfig
from engine.protocol.client import ResponseParams
from engine.protocol.items import Item
from tests.core.driver import (
    Driver,
    emitted,
    errors,
    function_call_item,
    of_type,
    outputs,
    pcm_b64,
    response,
    sent,
    sent_types,
)

C, P = State, Phase
WEATHER = FunctionTool(name="get_weather", parameters={"type": "object", "properties": {}})
ARGS = '{"city": "Paris"}'
OPTIONS = CoreOptions(response_created_timeout=10.0, stall_timeout=30.0, cancel_timeout=5.0)


def _ready(config: SessionConfig | None = None, options: CoreOptions = OPTIONS) -> Driver:
    d = Driver(config, options=options)
    d.ready()
    return d


def _generating(config: SessionConfig | None = None, options: CoreOptions = OPTIONS) -> Driver:
    """resp_1 generating after a text turn, with one audio delta already heard; effects taken."""
    d = _ready(config, options)
    d.do(d.conv.send_text("Hi"))
    d.start_reply("resp_1", "item_a1")
    d.audio("resp_1", "item_a1", pcm_b64(480), words="Hel")
    d.take()
    return d


def _fire(d: Driver, name: str, after: float) -> list[Any]:
    """Move the clock by ``after`` seconds and fire the timer ``name``."""
    d.clock.now += after
    return d.do(d.conv.timer_fired(name))


# ------------------------------------------------------------------ the table declares the ways out


def test_every_waiting_phase_has_a_timeout_trigger_in_the_table() -> None:
    """The diagram shows the way out: each waiting phase has a timeout transition to a freer phase."""
    ways_out = {
        (t["trigger"], s)
        for t in RESPONSE_TRANSITIONS
        for s in (t["source"] if isinstance(t["source"], list) else [t["source"]])
    }
    assert ("created_timeout", P.REQUESTED) in ways_out
    assert ("stalled", P.GENERATING) in ways_out
    assert ("cancel_timeout", P.CANCELLING) in ways_out


# ------------------------------------------------------------------ cancelling


def test_interrupt_of_a_stalled_response_frees_the_slot_after_cancel_timeout() -> None:
    """The issue's case: no response.done ever comes after interrupt(); the slot is freed and reported."""
    d = _generating()
    out = d.do(d.conv.interrupt())
    assert sent_types(out)[0] == "response.cancel"
    assert ArmTimer(name="response_cancel", delay=5.0) in of_type(out, ArmTimer)
    assert d.conv.phase is P.CANCELLING
    d.take()
    d.do(d.conv.send_text("Are you there?"))  # owed: the slot is still taken
    assert sent_types(d.take()) == ["conversation.item.create"]

    out = _fire(d, "response_cancel", 5.0)
    assert [(e.code, e.source, e.fatal) for e in errors(out)] == [("cancel_timeout", "server", False)]
    assert sent_types(out) == ["response.create"]  # the owed response goes out at once
    assert d.where == (C.RESPONDING, P.REQUESTED)

    d.take()
    d.start_reply("resp_2", "item_a2")
    d.finish_reply("resp_2", "item_a2", "Yes.")
    assert d.where == (C.SESSION_READY, P.IDLE)


def test_cancel_timeout_without_owed_work_hands_the_floor_back() -> None:
    d = _generating()
    d.do(d.conv.cancel_response())
    out = _fire(d, "response_cancel", 5.0)
    assert [e.code for e in errors(out)] == ["cancel_timeout"]
    assert sent(out) == []
    assert d.where == (C.SESSION_READY, P.IDLE)
    out = d.do(d.conv.send_text("Hello?"))
    assert sent_types(out) == ["conversation.item.create", "response.create"]


def test_late_events_of_a_response_given_up_are_dropped_silently() -> None:
    """After cancel_timeout, the old response's late deltas and done neither play nor free the new request."""
    d = _generating()
    d.do(d.conv.interrupt())
    _fire(d, "response_cancel", 5.0)
    d.do(d.conv.send_text("Again"))
    d.take()
    assert d.conv.phase is P.REQUESTED
    out = d.audio("resp_1", "item_a1", pcm_b64(480), words="lo")
    out += d.server("response.done", response=response("resp_1", "cancelled"))
    assert emitted(out) == []
    assert d.conv.phase is P.REQUESTED  # the new request still waits for its own response


def test_response_done_in_time_disarms_the_cancel_deadline() -> None:
    d = _generating()
    d.do(d.conv.interrupt())
    out = d.finish_reply("resp_1", "item_a1", "Hel", status="cancelled")
    assert CancelTimer(name="response_cancel") in of_type(out, CancelTimer)
    assert _fire(d, "response_cancel", 5.0) == []  # a stale firing changes nothing
    assert d.where == (C.SESSION_READY, P.IDLE)


def test_cancel_before_created_waits_for_the_id_then_has_its_own_deadline() -> None:
    """A cancel deferred until response.created: the deadline starts when response.cancel goes out."""
    d = _ready()
    d.do(d.conv.send_text("Hi"))
    d.do(d.conv.cancel_response())
    assert d.conv.phase is P.CANCEL_DEFERRED
    assert _fire(d, "response_cancel", 5.0) == []  # not armed yet: the id is unknown
    out = d.server("response.created", response=response("resp_1"))
    assert sent_types(out) == ["response.cancel"]
    assert ArmTimer(name="response_cancel", delay=5.0) in of_type(out, ArmTimer)
    out = _fire(d, "response_cancel", 5.0)
    assert [e.code for e in errors(out)] == ["cancel_timeout"]
    assert d.where == (C.SESSION_READY, P.IDLE)


def test_cancel_before_created_that_never_comes_ends_with_the_response_timeout() -> None:
    d = _ready()
    d.do(d.conv.send_text("Hi"))
    d.do(d.conv.cancel_response())
    out = _fire(d, "response_created", 10.0)
    assert [e.code for e in errors(out)] == ["response_timeout"]
    assert d.where == (C.SESSION_READY, P.IDLE)


def test_barge_in_the_server_cancels_has_the_cancel_deadline_too() -> None:
    """The server cancels by itself (interrupt_response); without its response.done the slot is freed."""
    d = _generating()
    out = d.server("input_audio_buffer.speech_started", item_id="item_u2", audio_start_ms=10)
    assert "response.cancel" not in sent_types(out)
    assert ArmTimer(name="response_cancel", delay=5.0) in of_type(out, ArmTimer)
    out = _fire(d, "response_cancel", 5.0)
    assert [e.code for e in errors(out)] == ["cancel_timeout"]
    assert d.where == (C.USER_SPEAKING, P.IDLE)
    d.server("input_audio_buffer.speech_stopped", item_id="item_u2", audio_end_ms=900)
    assert d.where == (C.RESPONDING, P.SERVER_OWED)  # the next turn's reply is awaited as usual


def test_cancel_timeout_answers_the_calls_of_the_response_given_up() -> None:
    """A call of the response given up still gets exactly one output: awaiting_tool is never stuck."""
    d = _ready(SessionConfig(tools=(WEATHER,)))
    d.do(d.conv.send_text("Weather?"))
    d.server("response.created", response=response("resp_1"))
    d.announce_call("resp_1", "call_1", "get_weather")
    d.do(d.conv.interrupt())
    d.take()
    out = _fire(d, "response_cancel", 5.0)
    assert [o["call_id"] for o in outputs(out)] == ["call_1"]
    assert of_type(out, StartTool) == []
    assert d.conv.state is not C.AWAITING_TOOL
    assert d.conv.calls.open() == []


# ------------------------------------------------------------------ generating


def test_a_response_that_goes_quiet_is_cancelled_and_reported() -> None:
    d = _generating()
    out = _fire(d, "response_stall", 30.0)
    assert [(e.code, e.fatal) for e in errors(out)] == [("response_stalled", False)]
    assert sent(out) == [{"type": "response.cancel", "response_id": "resp_1"}]
    assert d.conv.phase is P.CANCELLING
    assert ArmTimer(name="response_cancel", delay=5.0) in of_type(out, ArmTimer)
    # The server answers the cancel: the slot frees as usual, and a new turn works.
    d.server("response.done", response=response("resp_1", "cancelled"))
    assert d.where == (C.SESSION_READY, P.IDLE)
    assert sent_types(d.do(d.conv.send_text("Hello?")))[-1] == "response.create"


def test_a_stalled_response_whose_cancel_is_ignored_is_given_up() -> None:
    """Both deadlines in a row: stalled, then no response.done for the cancel."""
    d = _generating()
    _fire(d, "response_stall", 30.0)
    out = _fire(d, "response_cancel", 5.0)
    assert [e.code for e in errors(out)] == ["cancel_timeout"]
    assert d.where == (C.SESSION_READY, P.IDLE)


def test_events_of_the_response_push_the_stall_deadline_back() -> None:
    """One timer per response, not one per delta: a firing while events still come re-arms for the rest."""
    d = _generating()
    d.clock.now += 20.0
    out = d.audio("resp_1", "item_a1", pcm_b64(480))
    assert of_type(out, ArmTimer) == []  # no timer traffic on the hot path
    out = _fire(d, "response_stall", 10.0)
    assert errors(out) == []
    assert of_type(out, ArmTimer) == [ArmTimer(name="response_stall", delay=20.0)]
    assert d.conv.phase is P.GENERATING
    out = _fire(d, "response_stall", 20.0)
    assert [e.code for e in errors(out)] == ["response_stalled"]


def test_the_stall_deadline_can_be_disabled() -> None:
    d = _ready(options=CoreOptions(stall_timeout=None))
    d.do(d.conv.send_text("Hi"))
    out = d.server("response.created", response=response("resp_1"))
    assert of_type(out, ArmTimer) == []
    assert _fire(d, "response_stall", 1e6) == []
    assert d.conv.phase is P.GENERATING


# ------------------------------------------------------------------ requested


def test_a_follow_up_the_server_owed_after_tools_is_asked_for_when_it_never_comes() -> None:
    """Inworld continues after tool outputs by itself; if it does not, the client asks."""
    d = _ready(SessionConfig(tools=(WEATHER,)), CoreOptions(server_continues_after_tools=True))
    d.do(d.conv.send_text("Weather?"))
    d.server("response.created", response=response("resp_1"))
    d.announce_call("resp_1", "call_1", "get_weather")
    d.call_arguments("resp_1", "call_1", "get_weather", ARGS)
    d.server(
        "response.done",
        response=response(
            "resp_1", "completed", [function_call_item("call_1", "get_weather", ARGS, status="completed")]
        ),
    )
    out = d.do(d.conv.tool_result("call_1", '"sunny"'))
    assert "response.create" not in sent_types(out)  # the server owes it
    assert d.where == (C.RESPONDING, P.SERVER_OWED)
    out = _fire(d, "response_created", 10.0)
    assert [e.code for e in errors(out)] == ["response_timeout"]
    assert sent_types(out) == ["response.create"]
    assert d.where == (C.RESPONDING, P.REQUESTED)


def test_a_server_vad_turn_the_server_never_answers_hands_the_floor_back() -> None:
    """The server owed a VAD turn's reply: after the deadline nothing is invented, the floor is free."""
    d = _ready()
    d.user_turn("item_u1")
    assert d.where == (C.RESPONDING, P.SERVER_OWED)
    out = _fire(d, "response_created", 10.0)
    assert [e.code for e in errors(out)] == ["response_timeout"]
    assert sent(out) == []
    assert d.where == (C.SESSION_READY, P.IDLE)


# ------------------------------------------------------------------ arguments before state


def _snapshot(conv: Conversation) -> tuple[Any, ...]:
    return (
        conv.state,
        conv.phase,
        conv.response_id,
        conv.history.items(),
        [(c.call_id, c.started, c.answered) for c in conv.calls.open()],
        conv.config,
    )


BAD_CALLS: dict[str, tuple[Callable[[Conversation], Any], type[Exception]]] = {
    "send_text(bytes)": (lambda c: c.send_text(b"bytes"), TypeError),  # type: ignore[arg-type]
    "send_text(None)": (lambda c: c.send_text(None), TypeError),  # type: ignore[arg-type]
    "send_text(123)": (lambda c: c.send_text(123), TypeError),  # type: ignore[arg-type]
    "send_text(['hi'])": (lambda c: c.send_text(["hi"]), TypeError),  # type: ignore[arg-type]
    "add_item(dict)": (lambda c: c.add_item({"role": "user"}), TypeError),  # type: ignore[arg-type]
    "add_item(bytes text)": (
        lambda c: c.add_item(Item.user_text(b"hi")),  # type: ignore[arg-type]
        TypeError,
    ),
    "create_response(str)": (lambda c: c.create_response("now"), TypeError),  # type: ignore[arg-type]
    "create_response(NaN metadata)": (
        lambda c: c.create_response(ResponseParams(metadata={"x": math.nan})),
        ValueError,
    ),
    "create_response(bytes instructions)": (
        lambda c: c.create_response(ResponseParams(instructions=b"be brief")),  # type: ignore[arg-type]
        TypeError,
    ),
    "update(dict)": (lambda c: c.update({"voice": "Clive"}), TypeError),  # type: ignore[arg-type]
    "tool_result(int call_id)": (lambda c: c.tool_result(1, '"x"'), TypeError),  # type: ignore[arg-type]
    "tool_result(dict output)": (lambda c: c.tool_result("call_1", {"x": 1}), TypeError),  # type: ignore[arg-type]
    "audio_played(None item)": (lambda c: c.audio_played(None, 10), TypeError),  # type: ignore[arg-type]
    "audio_played(str ms)": (lambda c: c.audio_played("item_a1", "10"), TypeError),  # type: ignore[arg-type]
    "audio_played(bool ms)": (lambda c: c.audio_played("item_a1", True), TypeError),
    "audio_played(-1)": (lambda c: c.audio_played("item_a1", -1), ValueError),
    "audio_played(nan)": (lambda c: c.audio_played("item_a1", math.nan), ValueError),
    "audio_played(inf)": (lambda c: c.audio_played("item_a1", math.inf), ValueError),
}


@pytest.mark.parametrize("where", ["idle", "generating", "awaiting_tool"])
@pytest.mark.parametrize("name", list(BAD_CALLS))
def test_a_bad_argument_raises_before_anything_changes(name: str, where: str) -> None:
    """The call raises, nothing changed, nothing came out; the next valid send_text is answered."""
    d = _ready(SessionConfig(tools=(WEATHER,)))
    if where == "generating":
        d.do(d.conv.send_text("Hi"))
        d.start_reply("resp_1", "item_a1")
        d.audio("resp_1", "item_a1", pcm_b64(480))
    elif where == "awaiting_tool":
        d.do(d.conv.send_text("Weather?"))
        d.server("response.created", response=response("resp_1"))
        d.announce_call("resp_1", "call_1", "get_weather")
        d.call_arguments("resp_1", "call_1", "get_weather", ARGS)
        d.server(
            "response.done",
            response=response(
                "resp_1", "completed", [function_call_item("call_1", "get_weather", ARGS, status="completed")]
            ),
        )
        assert d.conv.state is C.AWAITING_TOOL
    d.take()
    before = _snapshot(d.conv)
    call, error = BAD_CALLS[name]
    with pytest.raises(error) as raised:
        call(d.conv)
    assert "()" in str(raised.value)  # names the command
    assert _snapshot(d.conv) == before
    assert d.conv._flush() == []  # no effect was left queued for the next command

    # The conversation goes on as if the bad call never happened.
    if where == "generating":
        d.finish_reply("resp_1", "item_a1", "Hello")
    elif where == "awaiting_tool":
        d.do(d.conv.tool_result("call_1", '"sunny"'))
        d.server("response.created", response=response("resp_2"))
        d.server("response.done", response=response("resp_2", "completed"))
    assert d.where == (C.SESSION_READY, P.IDLE)
    out = d.do(d.conv.send_text("Hello?"))
    assert sent_types(out) == ["conversation.item.create", "response.create"]


# ------------------------------------------------------------------ events that do not fit


def _call_done(rid: str | None, call_id: str = "call_x") -> dict[str, Any]:
    fields: dict[str, Any] = {"item_id": f"item_{call_id}", "output_index": 0, "call_id": call_id}
    if rid is not None:
        fields["response_id"] = rid
    return {**fields, "name": "get_weather", "arguments": ARGS}


def _not_run(out: list[Any]) -> None:
    assert of_type(out, StartTool) == []
    assert outputs(out) == []
    assert not [e for e in emitted(out) if isinstance(e, ev.ToolCall | ev.ToolResult)]


@pytest.mark.parametrize("rid", ["resp_ghost", None])
def test_arguments_done_for_a_call_never_made_runs_nothing_while_idle(rid: str | None) -> None:
    """The issue's case: no announced item, no response in flight: reported, nothing runs, nothing sent."""
    d = _ready(SessionConfig(tools=(WEATHER,)))
    out = d.server("response.function_call_arguments.done", **_call_done(rid))
    _not_run(out)
    assert [(e.code, e.source, e.fatal) for e in errors(out)] == [("unexpected_event", "protocol", False)]
    assert d.where == (C.SESSION_READY, P.IDLE)
    assert d.conv.calls.open() == []
    assert sent_types(d.do(d.conv.send_text("Hi"))) == ["conversation.item.create", "response.create"]


def test_arguments_done_for_another_response_than_the_one_generating_runs_nothing() -> None:
    d = _generating(SessionConfig(tools=(WEATHER,)))
    out = d.server("response.function_call_arguments.done", **_call_done("resp_other"))
    _not_run(out)
    assert [e.code for e in errors(out)] == ["unexpected_event"]
    d.finish_reply("resp_1", "item_a1", "Hello")
    assert d.where == (C.SESSION_READY, P.IDLE)


def test_arguments_done_while_only_requested_runs_nothing() -> None:
    d = _ready(SessionConfig(tools=(WEATHER,)))
    d.do(d.conv.send_text("Hi"))
    d.take()
    out = d.server("response.function_call_arguments.done", **_call_done("resp_1"))
    _not_run(out)
    assert d.conv.phase is P.REQUESTED


def test_arguments_done_of_the_generating_response_runs_even_unannounced() -> None:
    """Attributable: the slot's response, by id or without one (Inworld may omit ids)."""
    for rid in ("resp_1", None):
        d = _generating(SessionConfig(tools=(WEATHER,)))
        out = d.server("response.function_call_arguments.done", **_call_done(rid))
        assert [s.call_id for s in of_type(out, StartTool)] == ["call_x"]
        assert errors(out) == []


@pytest.mark.parametrize(
    "kind",
    [
        "response.output_audio.delta",
        "response.output_audio_transcript.delta",
        "response.output_audio_transcript.done",
        "response.output_text.delta",
        "response.output_text.done",
        "response.output_audio.done",
        "response.content_part.added",
        "response.content_part.done",
        "response.function_call_arguments.delta",
        "response.output_item.added",
        "response.output_item.done",
    ],
)
@pytest.mark.parametrize("where", ["idle", "other response"])
def test_response_events_that_do_not_fit_are_reported_and_ignored(kind: str, where: str) -> None:
    """Every response-scoped event of a response not in flight: one protocol Error, nothing else."""
    d = (
        _ready(SessionConfig(tools=(WEATHER,)))
        if where == "idle"
        else _generating(SessionConfig(tools=(WEATHER,)))
    )
    history = d.conv.history.items()
    part = {"response_id": "resp_ghost", "item_id": "item_g", "output_index": 0, "content_index": 0}
    fields: dict[str, Any] = {
        "response.output_audio.delta": {**part, "delta": pcm_b64(480)},
        "response.output_audio_transcript.delta": {**part, "delta": "boo"},
        "response.output_audio_transcript.done": {**part, "transcript": "boo"},
        "response.output_text.delta": {**part, "delta": "boo"},
        "response.output_text.done": {**part, "text": "boo"},
        "response.output_audio.done": part,
        "response.content_part.added": {**part, "part": {"type": "audio", "transcript": ""}},
        "response.content_part.done": {**part, "part": {"type": "audio", "transcript": "boo"}},
        "response.function_call_arguments.delta": {**part, "call_id": "call_g", "delta": "{"},
        "response.output_item.added": {
            "response_id": "resp_ghost",
            "output_index": 0,
            "item": function_call_item("call_g", "get_weather"),
        },
        "response.output_item.done": {
            "response_id": "resp_ghost",
            "output_index": 0,
            "item": function_call_item("call_g", "get_weather", ARGS, status="completed"),
        },
    }[kind]
    out = d.server(kind, **fields)
    assert [(type(e).__name__, e.code, e.source) for e in emitted(out)] == [
        ("Error", "unexpected_event", "protocol")
    ]
    assert sent(out) == [] and of_type(out, StartTool) == []
    assert d.conv.history.items() == history
    assert d.conv.calls.open() == []


def test_events_of_an_interrupted_response_are_dropped_silently() -> None:
    """After a barge-in the old response's stream is expected: no error, no audio, no history."""
    d = _generating()
    d.server("input_audio_buffer.speech_started", item_id="item_u2", audio_start_ms=10)
    history = d.conv.history.items()
    out = d.audio("resp_1", "item_a1", pcm_b64(480), words="lo there")
    out += d.server(
        "response.output_audio_transcript.done",
        response_id="resp_1",
        item_id="item_a1",
        output_index=0,
        content_index=0,
        transcript="Hello there",
    )
    assert emitted(out) == []
    assert d.conv.history.items() == history


def test_a_missed_response_created_still_runs_an_announced_call() -> None:
    """Legitimate: response.created was lost, but the call was announced in the conversation."""
    d = _ready(SessionConfig(tools=(WEATHER,)))
    d.server("conversation.item.added", item=function_call_item("call_1", "get_weather"))
    out = d.server("response.function_call_arguments.done", **_call_done("resp_1", "call_1"))
    assert [s.call_id for s in of_type(out, StartTool)] == ["call_1"]
