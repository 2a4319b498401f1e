"""The rules around the transitions: the response slot, errors, updates, illegal input, lifecycle.

They come from docs/protocol.md §7, §10 and §6 and from the pain points in docs/peers.md
§2.1, §2.3 and §2.6 (the single response slot, every call answered once, voice locks).
The tests in the last section pin down engine bugs found (and fixed) while writing them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from engine.core import events as ev
from engine.core.conversation import Conversation, CoreOptions
from engine.core.effects import (
    ArmTimer,
    CancelTimer,
    CancelTools,
    DropAudioOut,
    Effect,
    GateAudio,
    StartTool,
)
from engine.core.states import Phase, State
from engine.errors import UpdateRejected
from engine.protocol import FunctionTool, SessionConfig
from engine.protocol.items import Item
from tests.core.driver import (
    Driver,
    emitted,
    emitted_types,
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


def _ready(config: SessionConfig | None = None, **kw: Any) -> Driver:
    d = Driver(config, **kw)
    d.ready()
    return d


def _generating(config: SessionConfig | None = None, **kw: Any) -> Driver:
    """Ready, with resp_1 generating after a text turn; effects taken."""
    d = _ready(config, **kw)
    d.do(d.conv.send_text("Hi"))
    d.server("response.created", response=response("resp_1"))
    d.take()
    return d


def _error(d: Driver, type_: str | None, code: str | None, **detail: Any) -> list[Effect]:
    body: dict[str, Any] = {"message": f"{code or type_} happened", **detail}
    if type_ is not None:
        body["type"] = type_
    if code is not None:
        body["code"] = code
    return d.server("error", event_id="event_srv_1", error=body)


# ------------------------------------------------------------------ one response in flight


def test_create_twice_before_created_sends_one() -> None:
    """A second request while the first is unacknowledged is coalesced."""
    d = _ready()
    first = d.do(d.conv.create_response())
    second = d.do(d.conv.create_response())
    assert sent_types(first) == ["response.create"]
    assert second == []
    assert d.where == (C.RESPONDING, P.REQUESTED)
    d.server("response.created", response=response("resp_1"))
    out = d.server("response.done", response=response("resp_1", "completed"))
    # The second request was coalesced into one owed create, sent once the slot frees.
    assert sent_types(out) == ["response.create"]


@pytest.mark.parametrize("requests", [1, 3])
def test_requests_while_generating_wait_for_done(requests: int) -> None:
    """Requests during a response go out after response.done, as exactly one response.create."""
    d = _generating()
    for _ in range(requests):
        assert sent(d.do(d.conv.create_response())) == []
    assert d.where == (C.RESPONDING, P.GENERATING)
    out = d.server("response.done", response=response("resp_1", "completed"))
    assert sent_types(out) == ["response.create"]
    assert sent(out)[0]["event_id"]
    assert emitted_types(out) == ["ResponseDone"]  # no detour through session_ready
    assert d.where == (C.RESPONDING, P.REQUESTED)
    d.server("response.created", response=response("resp_2"))
    out = d.server("response.done", response=response("resp_2", "completed"))
    assert sent(out) == []
    assert d.where == (C.SESSION_READY, P.IDLE)


def test_request_before_ready_follows_initial_history() -> None:
    """An early response.create goes out after session.updated and after the history items, in order."""
    history = (Item.user_text("My name is Ada."), Item.assistant_text("Hello Ada!"))
    d = Driver(history=history)
    out = d.do(d.conv.create_response())
    assert out == []
    assert d.where == (C.CONNECTING, P.IDLE)

    assert sent_types(d.server("session.created", session={})) == ["session.update"]
    out = d.server("session.updated", session={"type": "realtime"})
    msgs = sent(out)
    assert [m["type"] for m in msgs] == [
        "conversation.item.create",
        "conversation.item.create",
        "response.create",
    ]
    assert msgs[0]["item"] == {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "My name is Ada."}],
    }
    assert msgs[1]["item"] == {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "Hello Ada!"}],
    }
    assert of_type(out, GateAudio) == [GateAudio(True)]
    assert d.where == (C.RESPONDING, P.REQUESTED)


def test_initial_history_is_sent_once() -> None:
    """A second session.updated (an update's answer) does not resend the history."""
    d = Driver(history=(Item.user_text("Hi"),))
    assert sent_types(d.ready()) == ["session.update", "conversation.item.create"]
    assert sent(d.server("session.updated", session={"type": "realtime"})) == []
    assert d.where == (C.SESSION_READY, P.IDLE)


def test_send_text_before_ready_is_held() -> None:
    """Text typed while connecting waits, then goes out with its response.create."""
    d = Driver()
    assert d.do(d.conv.send_text("Are you there?")) == []
    assert sent(d.server("session.created", session={}))[0]["type"] == "session.update"
    out = d.server("session.updated", session={"type": "realtime"})
    msgs = sent(out)
    assert [m["type"] for m in msgs] == ["conversation.item.create", "response.create"]
    assert msgs[0]["item"]["content"] == [{"type": "input_text", "text": "Are you there?"}]
    assert d.where == (C.RESPONDING, P.REQUESTED)


def test_cancel_before_created_is_deferred() -> None:
    """Cancel in `requested` sends nothing; response.created then sends response.cancel with its id."""
    d = _ready()
    d.do(d.conv.send_text("Tell me a story"))
    d.take()
    out = d.do(d.conv.cancel_response())
    assert sent(out) == []
    assert d.where == (C.RESPONDING, P.CANCEL_DEFERRED)

    out = d.server("response.created", response=response("resp_9"))
    assert sent(out) == [{"type": "response.cancel", "response_id": "resp_9"}]
    assert d.where == (C.RESPONDING, P.CANCELLING)
    # Its audio is never played.
    delta = {"response_id": "resp_9", "item_id": "item_a9", "output_index": 0, "content_index": 0}
    assert d.server("response.output_audio.delta", **delta, delta=pcm_b64(480)) == []

    out = d.server("response.done", response=response("resp_9", "cancelled"))
    assert sent(out) == []
    assert d.where == (C.SESSION_READY, P.IDLE)


def test_cancel_while_idle_is_a_no_op() -> None:
    """Nothing to cancel: nothing sent, nothing reported."""
    d = _ready()
    assert d.do(d.conv.cancel_response()) == []
    assert d.where == (C.SESSION_READY, P.IDLE)


def test_cancel_drops_an_owed_request() -> None:
    """A cancel also forgets a request that was waiting for the slot."""
    d = _generating()
    d.do(d.conv.create_response())
    out = d.do(d.conv.cancel_response())
    assert sent(out) == [{"type": "response.cancel", "response_id": "resp_1"}]
    out = d.server("response.done", response=response("resp_1", "cancelled"))
    assert sent(out) == []
    assert d.where == (C.SESSION_READY, P.IDLE)


# ----------------------------------------------------- errors (docs/protocol.md §10)


@pytest.mark.parametrize("code", ["response_cancel_not_active", "conversation_already_has_active_response"])
def test_benign_errors_are_silent(code: str) -> None:
    """The two benign codes produce no Error event and do not disturb the response."""
    d = _generating()
    out = _error(d, "invalid_request_error", code)
    assert errors(out) == []
    assert sent(out) == []
    assert d.where == (C.RESPONDING, P.GENERATING)


def test_active_response_race_retries_after_the_other_response() -> None:
    """Our create refused because the server started one itself: retry once that one is done."""
    d = _ready()
    d.do(d.conv.create_response())
    d.take()
    out = _error(d, "invalid_request_error", "conversation_already_has_active_response")
    assert errors(out) == []
    assert of_type(out, ArmTimer) == [ArmTimer(name="retry_response", delay=0.5)]
    assert d.conv.phase is P.IDLE
    d.server("response.created", response=response("resp_auto"))
    assert d.where == (C.RESPONDING, P.GENERATING)
    out = d.server("response.done", response=response("resp_auto", "completed"))
    assert sent_types(out) == ["response.create"]
    assert d.do(d.conv.timer_fired("retry_response")) == []  # the slot is taken again: no second create


@pytest.mark.parametrize(
    ("type_", "code"),
    [
        ("invalid_request_error", "input_audio_buffer_commit_empty"),
        ("server_error", None),
        ("invalid_request_error", "invalid_value"),
    ],
)
def test_other_errors_are_reported_not_fatal(type_: str, code: str | None) -> None:
    """Any other error is reported as a non-fatal server Error; the state is kept."""
    d = _generating()
    out = _error(d, type_, code)
    assert errors(out) == [
        ev.Error(code=code or type_, message=f"{code or type_} happened", fatal=False, source="server")
    ]
    assert d.where == (C.RESPONDING, P.GENERATING)


def test_bad_transcription_model_while_connecting_is_fatal() -> None:
    """The server refused our session.update: retrying the same config cannot help."""
    d = Driver()
    d.server("session.created", session={})
    detail = {"param": "session.audio.input.transcription.model"}
    [error] = errors(_error(d, "invalid_request_error", "invalid_value", **detail))
    assert error.fatal
    assert error.code == "invalid_value"
    assert d.where == (C.CONNECTING, P.IDLE)


def test_bad_session_param_after_ready_is_not_fatal() -> None:
    """The same refusal for a later update is only reported."""
    d = _ready()
    detail = {"param": "session.audio.input.transcription.model"}
    [error] = errors(_error(d, "invalid_request_error", "invalid_value", **detail))
    assert not error.fatal


@pytest.mark.parametrize(
    ("type_", "code"),
    [
        ("authentication_error", None),
        ("permission_error", "forbidden"),
        ("invalid_request_error", "invalid_api_key"),
    ],
)
def test_credential_errors_are_fatal(type_: str, code: str | None) -> None:
    """A refused credential ends the session whatever the state."""
    d = _generating()
    [error] = errors(_error(d, type_, code))
    assert error.fatal
    assert error.source == "server"


def test_failed_response_is_an_error() -> None:
    """response.done with status failed reports the server's error."""
    d = _generating()
    details = {
        "type": "failed",
        "error": {"type": "server_error", "code": "model_overloaded", "message": "busy"},
    }
    out = d.server("response.done", response=response("resp_1", "failed", status_details=details))
    assert emitted_types(out) == ["ResponseDone", "Error", "StateChanged", "TurnMetrics"]
    [error] = errors(out)
    assert (error.code, error.message, error.fatal) == ("model_overloaded", "busy", False)
    assert d.where == (C.SESSION_READY, P.IDLE)


def test_failed_response_without_details() -> None:
    """A failed response without an error object still yields an Error."""
    d = _generating()
    [error] = errors(d.server("response.done", response=response("resp_1", "failed")))
    assert error.code == "response_failed"
    assert not error.fatal


def test_response_done_twice() -> None:
    """The second response.done is reported and changes nothing."""
    d = _generating()
    d.server("response.done", response=response("resp_1", "completed"))
    where = d.where
    out = d.server("response.done", response=response("resp_1", "completed"))
    [error] = errors(out)
    assert not error.fatal
    assert error.code == "unexpected_event"
    assert emitted_types(out) == ["Error"]
    assert sent(out) == []
    assert d.where == where == (C.SESSION_READY, P.IDLE)


# ----------------------------------------------------- update (docs/peers.md §2.6)


def test_voice_change_after_audio_is_rejected() -> None:
    """Once assistant audio exists, a new voice raises UpdateRejected and sends nothing."""
    d = _generating(SessionConfig(voice="Clive"))
    d.server("response.output_audio.delta", response_id="resp_1", item_id="item_a1", delta=pcm_b64(480))
    d.take()
    with pytest.raises(UpdateRejected, match="voice"):
        d.conv.update(SessionConfig(voice="Sarah"))
    assert d.take() == []
    assert d.conv.config.voice == "Clive"
    # The same voice with other changes is still fine.
    out = d.do(d.conv.update(SessionConfig(voice="Clive", instructions="Be brief.")))
    assert sent(out)[0]["session"]["instructions"] == "Be brief."


def test_voice_change_before_audio_is_sent() -> None:
    """Before any audio the new voice goes out as a session.update."""
    d = _generating(SessionConfig(voice="Clive"))
    new = SessionConfig(voice="Sarah")
    out = d.do(d.conv.update(new))
    assert sent(out) == [
        {"type": "session.update", "session": new.to_wire(), "event_id": d.conv.pending_updates[0]}
    ]
    assert d.conv.config is new


def test_voice_lock_can_be_disabled() -> None:
    """Providers without the lock accept the change."""
    d = _generating(SessionConfig(voice="Clive"), options=CoreOptions(voice_locked_after_audio=False))
    d.server("response.output_audio.delta", response_id="resp_1", item_id="item_a1", delta=pcm_b64(480))
    assert sent_types(d.do(d.conv.update(SessionConfig(voice="Sarah")))) == ["session.update"]


# ------------------------------------------------------------------ illegal input


def test_speech_started_while_connecting_is_reported() -> None:
    """An illegal trigger is a non-fatal Error; the machines stay where they were."""
    d = Driver()
    out = d.server("input_audio_buffer.speech_started", item_id="item_u1", audio_start_ms=0)
    [error] = errors(out)
    assert (error.code, error.fatal) == ("illegal_transition", False)
    assert d.where == (C.CONNECTING, P.IDLE)


def test_speech_stopped_without_start_is_reported() -> None:
    """speech_stopped while the session is idle does not invent a turn."""
    d = _ready()
    out = d.server("input_audio_buffer.speech_stopped", item_id="item_u1", audio_end_ms=0)
    assert [e.code for e in errors(out)] == ["illegal_transition"]
    assert sent(out) == []
    assert d.where == (C.SESSION_READY, P.IDLE)


def test_session_created_twice_is_reported() -> None:
    """A second session.created on a live socket sends no second session.update."""
    d = _ready()
    out = d.server("session.created", session={})
    assert [e.code for e in errors(out)] == ["unexpected_event"]
    assert sent(out) == []


def test_response_created_while_generating_is_reported() -> None:
    """A second response.created without a done is reported, not accepted as a new slot."""
    d = _generating()
    out = d.server("response.created", response=response("resp_2"))
    assert [e.code for e in errors(out)] == ["unexpected_event"]
    assert d.where == (C.RESPONDING, P.GENERATING)


def _closed() -> Driver:
    d = _generating()
    d.do(d.conv.close())
    d.take()
    return d


def test_send_text_after_close_is_reported() -> None:
    """A command after close is a non-fatal local Error; nothing is sent."""
    d = _closed()
    commands: list[Callable[[], list[Effect]]] = [
        lambda: d.conv.send_text("hello?"),
        lambda: d.conv.create_response(),
    ]
    for command in commands:
        out = d.do(command())
        assert sent(out) == []
        [error] = errors(out)
        assert (error.code, error.source, error.fatal) == ("session_closed", "local", False)
        assert d.conv.state is C.CLOSED


def test_server_events_after_close_are_ignored() -> None:
    """The socket may still deliver events after close; they change nothing."""
    d = _closed()
    assert d.server("response.done", response=response("resp_1", "completed")) == []
    assert d.server("input_audio_buffer.speech_started", item_id="item_u2") == []
    assert d.conv.state is C.CLOSED


_AFTER_CLOSE: dict[str, Callable[[Conversation], list[Effect]]] = {
    "commit_audio": lambda c: c.commit_audio(),
    "clear_audio": lambda c: c.clear_audio(),
    "add_item": lambda c: c.add_item(Item.user_text("late")),
    "interrupt": lambda c: c.interrupt(),
    "cancel_response": lambda c: c.cancel_response(),
    "update": lambda c: c.update(SessionConfig(instructions="late")),
}


@pytest.mark.parametrize(
    "name",
    [
        "commit_audio",
        "clear_audio",
        "add_item",
        "interrupt",
        "cancel_response",
        "update",
    ],
)
def test_nothing_is_sent_after_close(name: str) -> None:
    """No command sends a client event once the conversation is closed (closed mid-response)."""
    d = _closed()
    out = d.do(_AFTER_CLOSE[name](d.conv))
    assert sent(out) == []
    assert not of_type(out, DropAudioOut)
    assert d.conv.state is C.CLOSED


@pytest.mark.parametrize("name", sorted(_AFTER_CLOSE))
def test_command_after_close_is_reported(name: str) -> None:
    """Every command after close is reported, as send_text is."""
    d = _closed()
    out = d.do(_AFTER_CLOSE[name](d.conv))
    assert [(e.source, e.fatal) for e in errors(out)] == [("local", False)]
    assert d.conv.state is C.CLOSED


# ------------------------------------------------------------------ timers and lifecycle


def test_response_timeout_frees_the_slot() -> None:
    """No response.created in time: the slot is idle again and a response_timeout Error is emitted."""
    d = _ready()
    d.do(d.conv.send_text("Hello?"))
    out = d.do(d.conv.timer_fired("response_created"))
    [error] = errors(out)
    assert (error.code, error.fatal) == ("response_timeout", False)
    assert d.where == (C.SESSION_READY, P.IDLE)
    # The slot really is free: the next request goes out.
    assert sent_types(d.do(d.conv.create_response())) == ["response.create"]


def test_response_timer_is_ignored_once_created() -> None:
    """A stale timer after response.created does nothing."""
    d = _generating()
    assert d.do(d.conv.timer_fired("response_created")) == []
    assert d.where == (C.RESPONDING, P.GENERATING)


def test_connection_lost() -> None:
    """A dropped socket: reconnecting, caller audio gated, the response forgotten."""
    d = _generating()
    out = d.do(d.conv.connection_lost())
    assert of_type(out, GateAudio) == [GateAudio(False)]
    assert of_type(out, DropAudioOut) == [DropAudioOut(response_id="resp_1")]
    assert emitted(out) == [
        ev.Interrupted(item_id=None, response_id="resp_1", played_ms=0),
        ev.StateChanged(old=C.RESPONDING, new=C.RECONNECTING),
    ]
    assert sent(out) == []
    assert d.where == (C.RECONNECTING, P.IDLE)
    assert d.do(d.conv.connection_lost()) == []  # already reconnecting


def test_handshake_after_connection_lost_restores_and_resumes() -> None:
    """The new socket's handshake: ready again, the history replayed, the cut-off reply re-asked once."""
    d = _generating()
    d.do(d.conv.connection_lost())
    d.take()
    assert sent_types(d.server("session.created", session={})) == ["session.update"]
    out = d.server("session.updated", session={"type": "realtime"})
    assert of_type(out, GateAudio) == [GateAudio(True)]
    msgs = sent(out)
    assert msgs[0] == {
        "type": "conversation.item.create",
        "item": {**msgs[0]["item"], "role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
    }
    assert [m["type"] for m in msgs[1:]] == ["conversation.item.create", "response.create"]
    assert msgs[1]["item"]["role"] == "system"  # the resume note
    assert d.where == (C.RESPONDING, P.REQUESTED)


def test_handshake_after_idle_connection_lost_asks_nothing() -> None:
    """Lost while idle: ready again without a response.create."""
    d = _ready()
    d.do(d.conv.connection_lost())
    out = d.ready()
    assert "response.create" not in sent_types(out)
    assert d.where == (C.SESSION_READY, P.IDLE)


def test_close_cancels_running_tools() -> None:
    """close: closed, running calls cancelled with reason 'closed', audio gated."""
    d = _generating(SessionConfig(tools=(WEATHER,)))
    for call in ("call_1", "call_2"):
        d.announce_call("resp_1", call, "get_weather")
        d.call_arguments("resp_1", call, "get_weather", ARGS)
    d.do(d.conv.tool_result("call_2", '"ok"'))
    d.take()
    out = d.do(d.conv.close())
    assert of_type(out, CancelTools) == [CancelTools(call_ids=("call_1",), reason="closed")]
    assert of_type(out, GateAudio) == [GateAudio(False)]
    # Every deadline armed is disarmed (the generating response has its stall deadline).
    assert of_type(out, CancelTimer) == [CancelTimer(name="response_stall")]
    assert emitted(out) == [ev.StateChanged(old=C.RESPONDING, new=C.CLOSED)]
    assert sent(out) == []
    assert d.conv.state is C.CLOSED
    assert d.do(d.conv.close()) == []


# ------------------------------------------------------------------ manual turns


def test_manual_turns_speech_events_are_reported_only() -> None:
    """turn_detection=None: speech events are emitted but neither change state nor barge in."""
    d = _generating(SessionConfig(turn_detection=None))
    out = d.server("input_audio_buffer.speech_started", item_id="item_u2", audio_start_ms=10)
    assert emitted(out) == [ev.SpeechStarted(item_id="item_u2", audio_start_ms=10)]
    assert sent(out) == []
    assert not of_type(out, DropAudioOut)
    assert d.where == (C.RESPONDING, P.GENERATING)
    out = d.server("input_audio_buffer.speech_stopped", item_id="item_u2", audio_end_ms=20)
    assert emitted(out) == [ev.SpeechStopped(item_id="item_u2", audio_end_ms=20)]
    assert d.where == (C.RESPONDING, P.GENERATING)
    delta = {"response_id": "resp_1", "item_id": "item_a1"}
    assert emitted_types(d.server("response.output_audio.delta", **delta, delta=pcm_b64(4))) == ["AudioOut"]


def test_manual_turn_needs_commit_and_create() -> None:
    """In manual mode the app commits and asks; speech_stopped alone starts nothing."""
    d = _ready(SessionConfig(turn_detection=None))
    d.server("input_audio_buffer.speech_started", item_id="item_u1")
    d.server("input_audio_buffer.speech_stopped", item_id="item_u1")
    assert d.where == (C.SESSION_READY, P.IDLE)
    assert sent_types(d.do(d.conv.commit_audio())) == ["input_audio_buffer.commit"]
    assert sent_types(d.do(d.conv.create_response())) == ["response.create"]
    assert d.where == (C.RESPONDING, P.REQUESTED)


# ------------------------------------------------------------------ regressions of fixed engine bugs


def test_tool_answered_during_barge_in_gets_no_extra_response() -> None:
    """The server-handled turn after a barge-in already carries the tool output: no extra create."""
    d = _ready(SessionConfig(tools=(WEATHER,)))
    d.server("input_audio_buffer.speech_started", item_id="item_u1")
    d.server("input_audio_buffer.speech_stopped", item_id="item_u1")
    d.server("response.created", response=response("resp_1"))
    d.announce_call("resp_1", "call_1", "get_weather")
    d.call_arguments("resp_1", "call_1", "get_weather", ARGS)
    out = d.server("input_audio_buffer.speech_started", item_id="item_u2")
    assert of_type(out, CancelTools) == [CancelTools(call_ids=("call_1",), reason="interrupted")]
    d.do(d.conv.tool_result("call_1", '"cancelled"', is_error=True))
    done_call = function_call_item("call_1", "get_weather", ARGS, status="incomplete")
    d.server("response.done", response=response("resp_1", "cancelled", [done_call]))
    d.server("input_audio_buffer.speech_stopped", item_id="item_u2")
    d.server("response.created", response=response("resp_2"))
    d.take()
    out = d.server("response.done", response=response("resp_2", "completed"))
    assert sent(out) == []
    assert d.where == (C.SESSION_READY, P.IDLE)


def test_request_while_tools_run_is_answered_by_the_follow_up() -> None:
    """create_response() while a tool runs is coalesced into the follow-up: one create, not two."""
    d = _ready(SessionConfig(tools=(WEATHER,)))
    d.do(d.conv.send_text("Weather?"))
    d.start_reply("resp_1", "item_a1")
    d.announce_call("resp_1", "call_1", "get_weather")
    d.call_arguments("resp_1", "call_1", "get_weather", ARGS)
    done_call = function_call_item("call_1", "get_weather", ARGS, status="completed")
    d.server("response.done", response=response("resp_1", "completed", [done_call]))
    assert d.where == (C.AWAITING_TOOL, P.IDLE)
    assert sent(d.do(d.conv.create_response())) == []  # owed: the tool is still running
    out = d.do(d.conv.tool_result("call_1", '"sunny"'))
    assert sent_types(out) == ["conversation.item.create", "response.create"]
    d.server("response.created", response=response("resp_2"))
    out = d.server("response.done", response=response("resp_2", "completed"))
    assert sent(out) == []
    assert d.where == (C.SESSION_READY, P.IDLE)


def test_late_error_for_a_timed_out_create_leaves_the_next_request_alone() -> None:
    """After a response timeout, an error naming the old create must not free a newer request."""
    d = _ready()
    d.do(d.conv.send_text("Hello?"))
    (create,) = [m for m in sent(d.take()) if m["type"] == "response.create"]
    d.do(d.conv.timer_fired("response_created"))
    d.server("input_audio_buffer.speech_started", item_id="item_u2")
    d.server("input_audio_buffer.speech_stopped", item_id="item_u2")
    assert d.where == (C.RESPONDING, P.SERVER_OWED)  # the server owes this turn's response
    error = {
        "type": "invalid_request_error",
        "code": "late",
        "message": "late",
        "event_id": create["event_id"],
    }
    out = d.server("error", error=error)
    assert [e.code for e in errors(out)] == ["late"]
    assert of_type(out, CancelTimer) == []  # the server's response is still awaited
    assert d.where == (C.RESPONDING, P.SERVER_OWED)


def test_restored_function_call_does_not_block_responses() -> None:
    """History with an answered call: its echo must not be mistaken for a new, open call."""
    history = (
        Item.user_text("Weather?", id="item_h1"),
        Item.function_call("call_0", "get_weather", ARGS, id="item_h2"),
        Item.function_call_output("call_0", '"sunny"', id="item_h3"),
    )
    d = Driver(SessionConfig(tools=(WEATHER,)), history=history)
    assert sent_types(d.ready()).count("conversation.item.create") == 3
    echo = function_call_item("call_0", "get_weather", ARGS, status="completed", item_id="item_h2")
    d.server("conversation.item.added", previous_item_id="item_h1", item=echo)
    d.server(
        "conversation.item.added",
        previous_item_id="item_h2",
        item={"id": "item_h3", "type": "function_call_output", "call_id": "call_0", "output": '"sunny"'},
    )
    out = d.do(d.conv.send_text("And tomorrow?"))
    assert sent_types(out) == ["conversation.item.create", "response.create"]


def test_duplicate_arguments_done_after_answer_runs_nothing() -> None:
    """A late duplicate of arguments.done must not re-run an answered call."""
    d = _generating(SessionConfig(tools=(WEATHER,)))
    d.announce_call("resp_1", "call_1", "get_weather")
    d.call_arguments("resp_1", "call_1", "get_weather", ARGS)
    d.server(
        "response.done",
        response=response(
            "resp_1", "completed", [function_call_item("call_1", "get_weather", ARGS, status="completed")]
        ),
    )
    d.do(d.conv.tool_result("call_1", '"sunny"'))
    dup = {"response_id": "resp_1", "item_id": "item_call_1", "output_index": 0, "call_id": "call_1"}
    out = d.server("response.function_call_arguments.done", **dup, name="get_weather", arguments=ARGS)
    assert of_type(out, StartTool) == []
    d.conv.tool_result("call_1", '"sunny"')
    assert [o["call_id"] for o in outputs(d.take())] == ["call_1"]


def test_missed_response_created_does_not_rerun_calls() -> None:
    """A garbled response.created must not make the core run and answer a call twice."""
    d = _ready(SessionConfig(tools=(WEATHER,)))
    out = d.raw('{"type": "response.created", "response": null}')
    assert [(e.code, e.source) for e in errors(out)] == [("protocol_error", "protocol")]
    d.announce_call("resp_1", "call_1", "get_weather")
    assert len(of_type(d.call_arguments("resp_1", "call_1", "get_weather", ARGS), StartTool)) == 1
    d.do(d.conv.tool_result("call_1", '"sunny"'))
    completed = function_call_item("call_1", "get_weather", ARGS, status="completed")
    d.server("response.output_item.done", response_id="resp_1", output_index=0, item=completed)
    out = d.server("response.done", response=response("resp_1", "completed", [completed]))
    assert of_type(out, StartTool) == []
    assert [o["call_id"] for o in outputs(d.take())] == ["call_1"]


def test_barge_in_before_server_response_does_not_cancel_the_next_turn() -> None:
    """The user resumes before the server created its response; the next turn's reply must survive."""
    d = _ready()
    d.server("input_audio_buffer.speech_started", item_id="item_u1")
    d.server("input_audio_buffer.speech_stopped", item_id="item_u1")
    assert d.where == (C.RESPONDING, P.SERVER_OWED)
    d.server("input_audio_buffer.speech_started", item_id="item_u2")
    d.do(d.conv.timer_fired("response_created"))
    assert d.conv.phase is P.IDLE
    d.server("input_audio_buffer.speech_stopped", item_id="item_u2")
    out = d.server("response.created", response=response("resp_2"))
    assert sent(out) == []
    assert d.where == (C.RESPONDING, P.GENERATING)


def test_refused_response_create_frees_the_floor() -> None:
    """Our response.create refused: like a timeout, the floor goes back and owed work proceeds."""
    d = _ready()
    first = sent(d.do(d.conv.create_response()))[0]
    d.do(d.conv.create_response())  # owed behind the first
    d.take()
    out = _error(d, "invalid_request_error", "invalid_value", event_id=first["event_id"])
    assert [e.code for e in errors(out)] == ["invalid_value"]
    assert sent_types(out) == ["response.create"]
    assert d.where == (C.RESPONDING, P.REQUESTED)


def test_tool_answered_while_reconnecting_continues_after_restore() -> None:
    """An output given while the socket is down is replayed once, then one response.create follows."""
    d = _generating(SessionConfig(tools=(WEATHER,)))
    d.announce_call("resp_1", "call_1", "get_weather")
    d.call_arguments("resp_1", "call_1", "get_weather", ARGS)
    completed = function_call_item("call_1", "get_weather", ARGS, status="completed")
    d.server("response.done", response=response("resp_1", "completed", [completed]))
    assert d.where == (C.AWAITING_TOOL, P.IDLE)
    d.do(d.conv.connection_lost())
    assert sent(d.do(d.conv.tool_result("call_1", '"sunny"'))) == []
    d.take()
    msgs = sent(d.ready())
    assert msgs[0]["type"] == "session.update"
    assert [m["type"] for m in msgs].count("response.create") == 1
    assert msgs[-1]["type"] == "response.create"
    items = [m["item"] for m in msgs if m["type"] == "conversation.item.create"]
    assert [i["call_id"] for i in items if i["type"] == "function_call_output"] == ["call_1"]
    assert [i["call_id"] for i in items if i["type"] == "function_call"] == ["call_1"]
    assert d.where == (C.RESPONDING, P.REQUESTED)


def test_restore_echo_of_an_answered_call_does_not_block_responses() -> None:
    """Reconnect after a finished tool round: the replayed call's echo must not reopen it."""
    d = _generating(SessionConfig(tools=(WEATHER,)))
    d.announce_call("resp_1", "call_1", "get_weather")
    d.call_arguments("resp_1", "call_1", "get_weather", ARGS)
    completed = function_call_item("call_1", "get_weather", ARGS, status="completed")
    d.server("response.done", response=response("resp_1", "completed", [completed]))
    d.do(d.conv.tool_result("call_1", '"sunny"'))
    d.start_reply("resp_2", "item_a2")
    d.finish_reply("resp_2", "item_a2", "Sunny.")
    assert d.where == (C.SESSION_READY, P.IDLE)
    d.do(d.conv.connection_lost())
    d.ready()
    d.server("conversation.item.added", previous_item_id=None, item=completed)
    out = d.do(d.conv.send_text("And tomorrow?"))
    assert sent_types(out) == ["conversation.item.create", "response.create"]


def test_non_ascii_audio_delta_is_a_protocol_error() -> None:
    """Garbage audio is reported as invalid_audio, never raised."""
    d = _generating()
    delta = {"response_id": "resp_1", "item_id": "item_a1", "output_index": 0, "content_index": 0}
    out = d.server("response.output_audio.delta", **delta, delta="Zm9v\u00e9")
    assert [(e.code, e.source) for e in errors(out)] == [("invalid_audio", "protocol")]


def test_ascii_garbage_audio_delta_is_a_protocol_error() -> None:
    """Non-base64 ASCII audio is reported, not played and not raised."""
    d = _generating()
    delta = {"response_id": "resp_1", "item_id": "item_a1", "output_index": 0, "content_index": 0}
    out = d.server("response.output_audio.delta", **delta, delta="not base64!")
    assert [(e.code, e.source, e.fatal) for e in errors(out)] == [("invalid_audio", "protocol", False)]
    assert emitted_types(out) == ["Error"]


def test_history_mirror_is_bounded_for_long_calls() -> None:
    """Past max_history_items the oldest mirrored items go; the newest stay, in order."""
    d = Driver(options=CoreOptions(max_history_items=5))
    d.ready()
    for n in range(12):
        d.do(d.conv.send_text(f"message {n}"))
        d.server("response.created", response=response(f"resp_{n}"))
        d.server("response.done", response=response(f"resp_{n}", "completed"))
    texts = [item.text for item in d.conv.history.items()]
    assert texts == [f"message {n}" for n in range(7, 12)]
