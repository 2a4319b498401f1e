"""The owed, user_turn and voice machines, watched through the core's public states.

Each test plays a short sequence and reads ``Conversation.owed`` / ``user_turn``
and the ``voice`` state where the former flags used to be: which response is owed
and why, whether the user's turn is open, whether the voice is locked.
"""

from __future__ import annotations

import pytest

from engine.core.conversation import CoreOptions
from engine.core.states import Owed, Phase, State, UserTurn
from engine.errors import UpdateRejected
from engine.protocol import FunctionTool, SessionConfig
from engine.protocol.config import SemanticVad
from tests.core.driver import Driver, errors, function_call_item, pcm_b64, response, sent, sent_types

C, P, W = State, Phase, Owed
WEATHER = FunctionTool(name="get_weather", parameters={"type": "object", "properties": {}})
ARGS = '{"city": "Paris"}'


def _ready(config: SessionConfig | None = None, options: CoreOptions | None = None) -> Driver:
    d = Driver(config, options=options)
    d.ready()
    return d


def test_a_request_while_the_slot_is_busy_is_owed_then_sent_once() -> None:
    d = _ready()
    d.do(d.conv.send_text("Hi"))
    assert (d.conv.phase, d.conv.owed) == (P.REQUESTED, W.NONE)
    d.do(d.conv.create_response())
    d.do(d.conv.create_response())  # coalesced with the first owed request
    assert d.conv.owed is W.OWED
    d.start_reply("resp_1", "item_a1")
    out = d.finish_reply("resp_1", "item_a1", "Hello")
    assert sent_types(out) == ["response.create"]
    assert (d.conv.phase, d.conv.owed) == (P.REQUESTED, W.NONE)


def test_a_tool_output_is_owed_a_follow_up_until_a_response_sees_it() -> None:
    d = _ready(SessionConfig(tools=(WEATHER,)))
    d.do(d.conv.send_text("Weather?"))
    d.start_reply("resp_1", "item_a1")
    call = function_call_item("call_1", "get_weather", ARGS, status="completed")
    d.server("response.done", response=response("resp_1", "completed", [call]))
    assert d.where == (C.AWAITING_TOOL, P.IDLE)
    out = d.do(d.conv.tool_result("call_1", '"sunny"'))
    assert sent_types(out) == ["conversation.item.create", "response.create"]
    assert d.conv.owed is W.NONE  # the follow-up was asked for at once


def test_a_follow_up_left_to_the_server_from_session_ready_makes_the_conversation_respond() -> None:
    """The user spoke over the tool run (no server reply): the server's follow-up still counts."""
    config = SessionConfig(tools=(WEATHER,), turn_detection=SemanticVad(create_response=False))
    d = _ready(config, CoreOptions(server_continues_after_tools=True))
    d.do(d.conv.send_text("Weather?"))
    d.start_reply("resp_1", "item_a1")
    call = function_call_item("call_1", "get_weather", ARGS, status="completed")
    d.server("response.done", response=response("resp_1", "completed", [call]))
    d.user_turn("item_u2")
    assert d.where == (C.SESSION_READY, P.IDLE)
    d.take()
    out = d.do(d.conv.tool_result("call_1", '"sunny"'))
    assert sent_types(out) == ["conversation.item.create"]  # the server continues by itself
    assert d.where == (C.RESPONDING, P.SERVER_OWED)
    assert d.conv.owed is W.SERVER_FOLLOWUP
    assert errors(out) == []
    d.clock.now = 11.0
    out = d.do(d.conv.timer_fired("response_created"))
    assert sent_types(out) == ["response.create"]  # it did not: the client asks
    assert (d.conv.phase, d.conv.owed) == (P.REQUESTED, W.NONE)


def test_a_drop_mid_turn_is_resumed_and_lost_words_ask_the_user_to_repeat() -> None:
    d = _ready()
    d.do(d.conv.send_text("Hi"))
    d.do(d.conv.connection_lost())
    assert d.conv.owed is W.RESUME
    d.take()
    out = d.ready()
    notes = [m["item"] for m in sent(out) if m.get("item", {}).get("role") == "system"]
    assert "Continue the conversation" in notes[0]["content"][0]["text"]
    assert sent_types(out)[-1] == "response.create" and d.conv.owed is W.NONE

    d.server("input_audio_buffer.speech_started", item_id="item_u9", audio_start_ms=0)
    assert d.conv.user_turn is UserTurn.OPEN
    d.do(d.conv.connection_lost())
    assert (d.conv.owed, d.conv.user_turn) == (W.LOST_TURN, UserTurn.NONE)
    notes = [m["item"] for m in sent(d.ready()) if m.get("item", {}).get("role") == "system"]
    assert "ask the user to repeat" in notes[0]["content"][0]["text"]


def test_the_user_turn_closes_when_its_transcript_is_final() -> None:
    d = _ready()
    d.server("input_audio_buffer.speech_started", item_id="item_u1", audio_start_ms=0)
    assert d.conv.user_turn is UserTurn.OPEN
    d.user_turn("item_u1", transcript="Hello there")
    assert d.conv.user_turn is UserTurn.NONE


def test_without_turn_detection_speech_moves_no_machine() -> None:
    d = _ready(SessionConfig(turn_detection=None))
    d.server("input_audio_buffer.speech_started", item_id="item_u1", audio_start_ms=0)
    d.server("input_audio_buffer.speech_stopped", item_id="item_u1", audio_end_ms=900)
    assert d.where == (C.SESSION_READY, P.IDLE)
    assert d.conv.user_turn is UserTurn.NONE and errors(d.effects) == []


@pytest.mark.parametrize("locks", [True, False])
def test_the_voice_locks_on_the_first_audio_where_the_server_refuses_a_change(locks: bool) -> None:
    d = _ready(SessionConfig(voice="Clive"), CoreOptions(voice_locked_after_audio=locks))
    d.do(d.conv.send_text("Hi"))
    d.start_reply("resp_1", "item_a1")
    assert d.conv.states["voice"] == "free"
    d.audio("resp_1", "item_a1", pcm_b64(480))
    assert d.conv.states["voice"] == ("locked" if locks else "free")
    if locks:
        with pytest.raises(UpdateRejected):
            d.conv.update(SessionConfig(voice="Ashley"))
    else:
        assert sent_types(d.do(d.conv.update(SessionConfig(voice="Ashley")))) == ["session.update"]
