"""The four typical event sequences of docs/protocol.md §6, driven through the real core.

Each test feeds realistic wire events and checks, step by step, the exact client
events sent, the exact user events emitted and where both machines stand.
"""

from __future__ import annotations

import pytest

from engine.core import events as ev
from engine.core.conversation import CoreOptions
from engine.core.effects import (
    ArmTimer,
    CancelTimer,
    CancelTools,
    DropAudioOut,
    Effect,
    Emit,
    GateAudio,
    StartTool,
)
from engine.core.states import Phase, State
from engine.protocol import AudioFormat, FunctionTool, SemanticVad, SessionConfig
from engine.protocol.items import ContentPart, Item, RateLimit, Usage
from tests.core.driver import (
    Driver,
    assistant_item,
    emitted,
    emitted_types,
    function_call_item,
    of_type,
    pcm_b64,
    response,
    sent,
    sent_types,
    unb64,
    user_audio_item,
)

C, P = State, Phase
WEATHER = FunctionTool(
    name="get_weather",
    description="Current weather for a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
ARGS = '{"city": "Paris"}'


def _changed(old: State, new: State) -> ev.StateChanged:
    return ev.StateChanged(old=old, new=new)


# ------------------------------------------------------------------ (a) voice turn, server VAD


def test_a_voice_turn_with_server_vad() -> None:
    """Handshake, a server-handled voice turn and the whole audio reply, step by step."""
    config = SessionConfig(voice="Clive", output_format=AudioFormat(rate=16000))
    d = Driver(config)

    out = d.server("session.created", session={"type": "realtime"})
    msgs = sent(out)
    assert [m["type"] for m in msgs] == ["session.update"]
    assert msgs[0]["session"] == config.to_wire()
    assert msgs[0]["session"]["audio"]["input"]["turn_detection"] == {
        "type": "semantic_vad",
        "eagerness": "low",
        "create_response": True,
        "interrupt_response": True,
    }
    assert msgs[0]["event_id"]
    assert emitted(out) == []
    assert d.where == (C.CONNECTING, P.IDLE)

    d.server("conversation.created", conversation={"id": "conv_1", "object": "realtime.conversation"})
    out = d.server("session.updated", session={"type": "realtime", "voice": "Clive"})
    assert sent(out) == []
    assert emitted(out) == [
        _changed(C.CONNECTING, C.SESSION_READY),
        ev.SessionReady(session={"type": "realtime", "voice": "Clive"}),
    ]
    assert of_type(out, GateAudio) == [GateAudio(True)]
    assert d.where == (C.SESSION_READY, P.IDLE)
    d.take()

    out = d.server("input_audio_buffer.speech_started", item_id="item_u1", audio_start_ms=1000)
    assert emitted(out) == [
        ev.SpeechStarted(item_id="item_u1", audio_start_ms=1000),
        _changed(C.SESSION_READY, C.USER_SPEAKING),
    ]
    assert d.where == (C.USER_SPEAKING, P.IDLE)

    out = d.server("input_audio_buffer.speech_stopped", item_id="item_u1", audio_end_ms=2500)
    assert emitted(out) == [
        ev.SpeechStopped(item_id="item_u1", audio_end_ms=2500),
        _changed(C.USER_SPEAKING, C.RESPONDING),
    ]
    assert of_type(out, ArmTimer) == [ArmTimer(name="response_created", delay=10.0)]
    # A server-handled turn: the server creates the response, so nothing is sent.
    assert d.where == (C.RESPONDING, P.SERVER_OWED)

    assert d.server("input_audio_buffer.committed", item_id="item_u1", previous_item_id=None) == []
    out = d.server("conversation.item.added", previous_item_id=None, item=user_audio_item("item_u1"))
    assert emitted_types(out) == ["ItemCreated"]
    assert emitted(out)[0].item.id == "item_u1"
    out = d.server("conversation.item.done", previous_item_id=None, item=user_audio_item("item_u1"))
    assert emitted_types(out) == ["ItemUpdated"]

    transcript = {"item_id": "item_u1", "content_index": 0}
    out = d.server("conversation.item.input_audio_transcription.delta", **transcript, delta="What's the")
    out += d.server("conversation.item.input_audio_transcription.delta", **transcript, delta=" weather?")
    assert emitted(out) == [
        ev.UserTranscript(item_id="item_u1", text="What's the", final=False, delta="What's the"),
        ev.UserTranscript(item_id="item_u1", text="What's the weather?", final=False, delta=" weather?"),
    ]

    out = d.server("response.created", response=response("resp_1"))
    assert emitted(out) == [ev.ResponseStarted(response_id="resp_1")]
    assert of_type(out, CancelTimer) == [CancelTimer(name="response_created")]
    assert d.where == (C.RESPONDING, P.GENERATING)
    assert d.conv.response_id == "resp_1"

    out = d.server("rate_limits.updated", rate_limits=[{"name": "requests", "limit": 10, "remaining": 9}])
    out += d.server(
        "response.output_item.added", response_id="resp_1", output_index=0, item=assistant_item("item_a1")
    )
    limit = RateLimit(name="requests", limit=10, remaining=9)
    assert out == [Emit(ev.RateLimits(rate_limits=(limit,)))]  # reported, nothing else
    out = d.server("conversation.item.added", previous_item_id="item_u1", item=assistant_item("item_a1"))
    assert emitted_types(out) == ["ItemCreated"]  # announced once, though two events carried it
    part = {"response_id": "resp_1", "item_id": "item_a1", "output_index": 0, "content_index": 0}
    assert d.server("response.content_part.added", **part, part={"type": "audio", "transcript": ""}) == []

    chunk1, chunk2 = pcm_b64(960, value=7), pcm_b64(480, value=9)
    out = d.server("response.output_audio.delta", **part, delta=chunk1)
    out += d.server("response.output_audio_transcript.delta", **part, delta="It is")
    # The final user transcript is asynchronous: here it lands in the middle of the reply.
    out += d.server(
        "conversation.item.input_audio_transcription.completed",
        **transcript,
        transcript=" What's the weather? ",
    )
    out += d.server("response.output_audio.delta", **part, delta=chunk2)
    out += d.server("response.output_audio_transcript.delta", **part, delta=" sunny.")
    assert emitted(out) == [
        ev.AudioOut(pcm=unb64(chunk1), sample_rate=16000, item_id="item_a1", response_id="resp_1"),
        ev.AssistantTranscript(item_id="item_a1", response_id="resp_1", delta="It is", text="It is"),
        ev.UserTranscript(item_id="item_u1", text="What's the weather?", final=True),
        ev.AudioOut(pcm=unb64(chunk2), sample_rate=16000, item_id="item_a1", response_id="resp_1"),
        ev.AssistantTranscript(item_id="item_a1", response_id="resp_1", delta=" sunny.", text="It is sunny."),
    ]
    assert emitted(out)[0].pcm == b"\x07" * 960
    assert emitted(out)[0].duration_ms == 30.0

    out = d.server("response.output_audio.done", **part)
    out += d.server("response.output_audio_transcript.done", **part, transcript="It is sunny.")
    out += d.server(
        "response.content_part.done", **part, part={"type": "audio", "transcript": "It is sunny."}
    )
    done_item = assistant_item("item_a1", "It is sunny.", status="completed")
    out += d.server("response.output_item.done", response_id="resp_1", output_index=0, item=done_item)
    out += d.server("conversation.item.done", previous_item_id="item_u1", item=done_item)
    assert emitted_types(out) == ["AssistantTranscript", "ItemUpdated"]
    assert emitted(out)[0] == ev.AssistantTranscript(
        item_id="item_a1", response_id="resp_1", delta="", text="It is sunny.", final=True
    )
    assert d.where == (C.RESPONDING, P.GENERATING)

    usage = {"total_tokens": 120, "input_tokens": 80, "output_tokens": 40}
    out = d.server("response.done", response=response("resp_1", "completed", [done_item], usage=usage))
    assert emitted(out) == [
        ev.ResponseDone(
            response_id="resp_1",
            status="completed",
            usage=Usage(total_tokens=120, input_tokens=80, output_tokens=40),
        ),
        _changed(C.RESPONDING, C.SESSION_READY),
        ev.TurnMetrics(
            turn=1,
            response_id="resp_1",
            user_speech_ended=0.0,
            response_created=0.0,
            first_audio_received=0.0,
            response_done=0.0,
            usage=Usage(total_tokens=120, input_tokens=80, output_tokens=40),
        ),
    ]
    assert d.where == (C.SESSION_READY, P.IDLE)
    assert d.conv.response_id is None

    # The whole server-handled turn sent nothing: no response.create, no cancel.
    assert sent(d.take()) == []
    history = d.conv.history.items()
    assert [(i.id, i.role) for i in history] == [("item_u1", "user"), ("item_a1", "assistant")]
    assert history[0].content == (ContentPart(type="input_audio", transcript="What's the weather?"),)
    assert history[1].text == "It is sunny."


def test_a_handshake_then_audio_turn_with_helpers() -> None:
    """The same turn through the driver helpers: exactly one AudioOut per delta, nothing sent."""
    d = Driver()
    d.ready()
    d.user_turn("item_u1", transcript="Hi")
    assert d.where == (C.RESPONDING, P.SERVER_OWED)
    d.start_reply("resp_1", "item_a1")
    audio = [d.audio("resp_1", "item_a1", pcm_b64(480, v), "x") for v in (1, 2, 3)]
    pcm = [e.pcm for out in audio for e in emitted(out) if isinstance(e, ev.AudioOut)]
    assert pcm == [bytes([v]) * 480 for v in (1, 2, 3)]
    assert {e.sample_rate for out in audio for e in emitted(out) if isinstance(e, ev.AudioOut)} == {24000}
    d.finish_reply("resp_1", "item_a1", "xxx")
    assert d.where == (C.SESSION_READY, P.IDLE)
    assert sent(d.take()) == []


# ------------------------------------------------------------------ (b) text turn


def test_b_text_turn_with_text_modality() -> None:
    """send_text sends the item then response.create; output_text streams as AssistantText."""
    d = Driver(SessionConfig(output_modalities=("text",)))
    assert sent(d.ready())[0]["session"]["output_modalities"] == ["text"]

    out = d.do(d.conv.send_text("Hello there"))
    msgs = sent(out)
    assert [m["type"] for m in msgs] == ["conversation.item.create", "response.create"]
    item = msgs[0]["item"]
    assert item["type"] == "message"
    assert item["role"] == "user"
    assert item["content"] == [{"type": "input_text", "text": "Hello there"}]
    assert item["id"]
    assert msgs[1]["event_id"]
    assert "response" not in msgs[1]  # a bare create: the session's modalities apply
    assert emitted(out) == [_changed(C.SESSION_READY, C.RESPONDING)]
    assert d.where == (C.RESPONDING, P.REQUESTED)

    # The server echoes our item: added, then done; no input_audio_buffer events in a text turn.
    echo = {**item, "object": "realtime.item", "status": "completed"}
    assert emitted_types(d.server("conversation.item.added", previous_item_id=None, item=echo)) == [
        "ItemCreated"
    ]
    d.server("conversation.item.done", previous_item_id=None, item=echo)
    assert d.where == (C.RESPONDING, P.REQUESTED)

    out = d.server("response.created", response=response("resp_1", output_modalities=["text"]))
    assert emitted(out) == [ev.ResponseStarted(response_id="resp_1")]
    assert d.where == (C.RESPONDING, P.GENERATING)

    message = {**assistant_item("item_a1"), "content": []}
    d.server("response.output_item.added", response_id="resp_1", output_index=0, item=message)
    d.server("conversation.item.added", previous_item_id=item["id"], item=message)
    part = {"response_id": "resp_1", "item_id": "item_a1", "output_index": 0, "content_index": 0}
    d.server("response.content_part.added", **part, part={"type": "text", "text": ""})
    out = d.server("response.output_text.delta", **part, delta="Hi")
    out += d.server("response.output_text.delta", **part, delta=", how can I help?")
    out += d.server("response.output_text.done", **part, text="Hi, how can I help?")
    assert emitted(out) == [
        ev.AssistantText(item_id="item_a1", response_id="resp_1", delta="Hi", text="Hi"),
        ev.AssistantText(
            item_id="item_a1", response_id="resp_1", delta=", how can I help?", text="Hi, how can I help?"
        ),
        ev.AssistantText(
            item_id="item_a1", response_id="resp_1", delta="", text="Hi, how can I help?", final=True
        ),
    ]
    assert not [e for e in emitted(out) if isinstance(e, ev.AudioOut | ev.AssistantTranscript)]

    final = {
        **message,
        "status": "completed",
        "content": [{"type": "output_text", "text": "Hi, how can I help?"}],
    }
    d.server("response.content_part.done", **part, part={"type": "text", "text": "Hi, how can I help?"})
    d.server("response.output_item.done", response_id="resp_1", output_index=0, item=final)
    d.server("conversation.item.done", previous_item_id=item["id"], item=final)
    out = d.server("response.done", response=response("resp_1", "completed", [final]))
    assert emitted(out) == [
        ev.ResponseDone(response_id="resp_1", status="completed"),
        _changed(C.RESPONDING, C.SESSION_READY),
        ev.TurnMetrics(
            turn=1, response_id="resp_1", response_requested=0.0, response_created=0.0, response_done=0.0
        ),
    ]
    assert sent(out) == []
    assert d.where == (C.SESSION_READY, P.IDLE)
    history = d.conv.history.items()
    assert [(i.role, i.text) for i in history] == [
        ("user", "Hello there"),
        ("assistant", "Hi, how can I help?"),
    ]


# ------------------------------------------------------------------ (c) function call


def _tool_driver(options: CoreOptions | None = None) -> Driver:
    d = Driver(SessionConfig(tools=(WEATHER,)), options=options)
    d.ready()
    d.do(d.conv.send_text("What's the weather in Paris?"))
    d.server("response.created", response=response("resp_1"))
    d.take()
    return d


def _done_with_calls(d: Driver, rid: str, *calls: str) -> list[Effect]:
    items = [function_call_item(c, "get_weather", ARGS, status="completed") for c in calls]
    return d.server("response.done", response=response(rid, "completed", items))


@pytest.mark.parametrize("name_on_done", [True, False], ids=["ga", "inworld-no-name"])
def test_c_function_call_result_and_follow_up(name_on_done: bool) -> None:
    """A call runs on arguments.done, its output goes out, then exactly one response.create."""
    d = _tool_driver()

    out = d.server(
        "response.output_item.added",
        response_id="resp_1",
        output_index=0,
        item=function_call_item("call_1", "get_weather"),
    )
    assert out == []
    out = d.server(
        "conversation.item.added", previous_item_id=None, item=function_call_item("call_1", "get_weather")
    )
    assert emitted_types(out) == ["ItemCreated"]
    where = {"response_id": "resp_1", "item_id": "item_call_1", "output_index": 0}
    for piece in ('{"city": ', '"Paris"}'):
        assert (
            d.server("response.function_call_arguments.delta", **where, call_id="call_1", delta=piece) == []
        )

    done = {**where, "call_id": "call_1", "arguments": ARGS}
    if name_on_done:
        done["name"] = "get_weather"
    out = d.server("response.function_call_arguments.done", **done)
    # Inworld may omit the name: it comes from the function_call item tracked earlier.
    assert emitted(out) == [
        ev.ToolCall(call_id="call_1", name="get_weather", arguments=ARGS, response_id="resp_1")
    ]
    assert of_type(out, StartTool) == [StartTool(call_id="call_1", name="get_weather", arguments=ARGS)]
    assert sent(out) == []
    assert d.where == (C.RESPONDING, P.GENERATING)

    completed = function_call_item("call_1", "get_weather", ARGS, status="completed")
    d.server("response.output_item.done", response_id="resp_1", output_index=0, item=completed)
    d.server("conversation.item.done", previous_item_id=None, item=completed)
    out = d.server("response.done", response=response("resp_1", "completed", [completed]))
    assert emitted(out) == [
        ev.ResponseDone(response_id="resp_1", status="completed"),
        _changed(C.RESPONDING, C.AWAITING_TOOL),
    ]
    assert of_type(out, StartTool) == []  # already started: not run twice
    assert sent(out) == []
    assert d.where == (C.AWAITING_TOOL, P.IDLE)

    out = d.do(d.conv.tool_result("call_1", '{"temp_c": 21}'))
    msgs = sent(out)
    assert [m["type"] for m in msgs] == ["conversation.item.create", "response.create"]
    assert msgs[0]["item"]["type"] == "function_call_output"
    assert msgs[0]["item"]["call_id"] == "call_1"
    assert msgs[0]["item"]["output"] == '{"temp_c": 21}'
    assert emitted(out) == [
        ev.ToolResult(call_id="call_1", name="get_weather", output='{"temp_c": 21}'),
        _changed(C.AWAITING_TOOL, C.RESPONDING),
    ]
    assert d.where == (C.RESPONDING, P.REQUESTED)

    # §6.3 step 9: the second response proceeds as in §6.1.
    d.take()
    output_echo = {"id": "item_out1", "type": "function_call_output", "call_id": "call_1", "output": "{}"}
    d.server("conversation.item.added", previous_item_id="item_call_1", item=output_echo)
    d.start_reply("resp_2", "item_a2")
    assert d.where == (C.RESPONDING, P.GENERATING)
    out = d.audio("resp_2", "item_a2", pcm_b64(480), "It is 21 degrees.")
    assert emitted_types(out) == ["AudioOut", "AssistantTranscript"]
    d.finish_reply("resp_2", "item_a2", "It is 21 degrees.")
    assert d.where == (C.SESSION_READY, P.IDLE)
    assert sent_types(d.take()) == []
    assert d.conv.calls.open() == []


def test_c_two_parallel_calls_one_follow_up() -> None:
    """Both calls start; the first answer sends only its output, the second adds one response.create."""
    d = _tool_driver()
    starts = []
    for index, call in enumerate(("call_1", "call_2")):
        d.announce_call("resp_1", call, "get_weather", index=index)
        starts += of_type(d.call_arguments("resp_1", call, "get_weather", ARGS, index=index), StartTool)
    assert [s.call_id for s in starts] == ["call_1", "call_2"]
    _done_with_calls(d, "resp_1", "call_1", "call_2")
    assert d.where == (C.AWAITING_TOOL, P.IDLE)
    d.take()

    out = d.do(d.conv.tool_result("call_1", '"sunny"'))
    assert sent_types(out) == ["conversation.item.create"]
    assert sent(out)[0]["item"]["call_id"] == "call_1"
    assert emitted_types(out) == ["ToolResult"]
    assert d.where == (C.AWAITING_TOOL, P.IDLE)

    out = d.do(d.conv.tool_result("call_2", '"rainy"'))
    assert sent_types(out) == ["conversation.item.create", "response.create"]
    assert sent(out)[0]["item"]["call_id"] == "call_2"
    assert d.where == (C.RESPONDING, P.REQUESTED)


def test_c_fast_tool_answered_before_response_done() -> None:
    """The output goes out at once; response.create only after response.done."""
    d = _tool_driver()
    d.announce_call("resp_1", "call_1", "get_weather")
    d.call_arguments("resp_1", "call_1", "get_weather", ARGS)

    out = d.do(d.conv.tool_result("call_1", '"sunny"'))
    assert sent_types(out) == ["conversation.item.create"]
    assert sent(out)[0]["item"]["call_id"] == "call_1"
    assert d.where == (C.RESPONDING, P.GENERATING)

    out = _done_with_calls(d, "resp_1", "call_1")
    assert sent_types(out) == ["response.create"]
    assert emitted_types(out) == ["ResponseDone"]
    assert d.where == (C.RESPONDING, P.REQUESTED)
    assert sent_types(d.take()).count("response.create") == 1


def test_c_duplicate_tool_result_is_dropped() -> None:
    """A second answer to the same call sends nothing and reports a local Error."""
    d = _tool_driver()
    d.announce_call("resp_1", "call_1", "get_weather")
    d.call_arguments("resp_1", "call_1", "get_weather", ARGS)
    _done_with_calls(d, "resp_1", "call_1")
    d.do(d.conv.tool_result("call_1", '"sunny"'))
    where = d.where

    out = d.do(d.conv.tool_result("call_1", '"sunny again"'))
    assert sent(out) == []
    [error] = emitted(out)
    assert isinstance(error, ev.Error)
    assert (error.code, error.source, error.fatal) == ("duplicate_tool_output", "local", False)
    assert "call_1" in error.message
    assert d.where == where


def test_c_server_continues_after_tools() -> None:
    """With auto tool responses the output is sent alone and the server's response.created is taken."""
    d = _tool_driver(CoreOptions(server_continues_after_tools=True))
    d.announce_call("resp_1", "call_1", "get_weather")
    d.call_arguments("resp_1", "call_1", "get_weather", ARGS)
    _done_with_calls(d, "resp_1", "call_1")
    assert d.where == (C.AWAITING_TOOL, P.IDLE)

    out = d.do(d.conv.tool_result("call_1", '"sunny"'))
    assert sent_types(out) == ["conversation.item.create"]
    assert of_type(out, ArmTimer) == [ArmTimer(name="response_created", delay=10.0)]
    assert emitted(out)[-1] == _changed(C.AWAITING_TOOL, C.RESPONDING)
    assert d.where == (C.RESPONDING, P.SERVER_OWED)

    out = d.server("response.created", response=response("resp_2"))
    assert emitted(out) == [ev.ResponseStarted(response_id="resp_2")]
    assert sent(out) == []
    assert d.where == (C.RESPONDING, P.GENERATING)
    d.finish_reply("resp_2", "item_a2", "Sunny.")
    assert d.where == (C.SESSION_READY, P.IDLE)
    assert "response.create" not in sent_types(d.take())


# ------------------------------------------------------------------ (d) barge-in


def _speaking_driver(config: SessionConfig | None = None) -> Driver:
    d = Driver(config)
    d.ready()
    d.user_turn("item_u1")
    d.start_reply("resp_1", "item_a1")
    out = d.audio("resp_1", "item_a1", pcm_b64(960), "Let me tell you")
    assert emitted_types(out) == ["AudioOut", "AssistantTranscript"]
    d.take()
    d.clock.now += 0.012  # 12 of the 20 ms received have played (no acknowledgements: the clock)
    return d


TRUNCATE_12 = {
    "type": "conversation.item.truncate",
    "item_id": "item_a1",
    "content_index": 0,
    "audio_end_ms": 12,
}


def test_d_barge_in_server_cancels() -> None:
    """speech_started mid-reply: Interrupted at once, queued audio dropped, no response.cancel."""
    d = _speaking_driver()

    out = d.server("input_audio_buffer.speech_started", item_id="item_u2", audio_start_ms=5000)
    assert emitted(out) == [
        ev.SpeechStarted(item_id="item_u2", audio_start_ms=5000),
        ev.Interrupted(item_id="item_a1", response_id="resp_1", played_ms=12),
        _changed(C.RESPONDING, C.USER_SPEAKING),
    ]
    assert of_type(out, DropAudioOut) == [DropAudioOut(response_id="resp_1")]
    # interrupt_response=True: the server cancels by itself; we only truncate to what was heard.
    assert sent(out) == [TRUNCATE_12]
    assert d.conv.history.get("item_a1").text == "Let me"
    assert d.where == (C.USER_SPEAKING, P.CANCELLING)

    # Late deltas of the cut-off response are discarded.
    out = d.audio("resp_1", "item_a1", pcm_b64(960), " about the")
    assert out == []

    out = d.finish_reply(
        "resp_1",
        "item_a1",
        "Let me tell you about the",
        status="cancelled",
        status_details={"type": "cancelled", "reason": "turn_detected"},
    )
    assert emitted(out) == [
        ev.ItemUpdated(
            item=Item(
                type="message",
                id="item_a1",
                object="realtime.item",
                status="incomplete",
                role="assistant",
                content=(ContentPart(type="output_audio", transcript="Let me"),),
            )
        ),
        ev.ResponseDone(
            response_id="resp_1",
            status="cancelled",
            status_details={"type": "cancelled", "reason": "turn_detected"},
        ),
        ev.TurnMetrics(
            turn=1,
            response_id="resp_1",
            user_speech_ended=0.0,
            response_created=0.0,
            first_audio_received=0.0,
            response_done=0.012,
        ),
    ]
    assert sent(out) == []
    assert d.where == (C.USER_SPEAKING, P.IDLE)

    # The new user turn continues as in (a).
    out = d.server("input_audio_buffer.speech_stopped", item_id="item_u2", audio_end_ms=6000)
    assert emitted(out) == [
        ev.SpeechStopped(item_id="item_u2", audio_end_ms=6000),
        _changed(C.USER_SPEAKING, C.RESPONDING),
    ]
    assert d.where == (C.RESPONDING, P.SERVER_OWED)
    d.start_reply("resp_2", "item_a2")
    out = d.audio("resp_2", "item_a2", pcm_b64(480, value=5))
    assert emitted(out) == [
        ev.AudioOut(pcm=b"\x05" * 480, sample_rate=24000, item_id="item_a2", response_id="resp_2")
    ]
    d.finish_reply("resp_2", "item_a2", "Sure.")
    assert d.where == (C.SESSION_READY, P.IDLE)
    assert sent(d.take()) == [TRUNCATE_12]  # nothing else, and no response.create for the VAD turn


def test_d_barge_in_without_server_interrupt_sends_cancel() -> None:
    """With interrupt_response=False the client cancels the response by id."""
    d = _speaking_driver(SessionConfig(turn_detection=SemanticVad(interrupt_response=False)))
    out = d.server("input_audio_buffer.speech_started", item_id="item_u2", audio_start_ms=5000)
    assert sent(out) == [{"type": "response.cancel", "response_id": "resp_1"}, TRUNCATE_12]
    assert emitted_types(out) == ["SpeechStarted", "Interrupted", "StateChanged"]
    assert of_type(out, DropAudioOut) == [DropAudioOut(response_id="resp_1")]
    assert d.where == (C.USER_SPEAKING, P.CANCELLING)
    d.finish_reply("resp_1", "item_a1", "Let me", status="cancelled")
    assert d.where == (C.USER_SPEAKING, P.IDLE)


def test_d_interrupt_command() -> None:
    """interrupt() emits Interrupted and sends response.cancel; response.done frees the floor."""
    d = _speaking_driver()
    out = d.do(d.conv.interrupt())
    assert emitted(out) == [ev.Interrupted(item_id="item_a1", response_id="resp_1", played_ms=12)]
    assert sent(out) == [{"type": "response.cancel", "response_id": "resp_1"}, TRUNCATE_12]
    assert of_type(out, DropAudioOut) == [DropAudioOut(response_id="resp_1")]
    assert d.where == (C.RESPONDING, P.CANCELLING)
    assert d.audio("resp_1", "item_a1", pcm_b64(960)) == []
    out = d.finish_reply("resp_1", "item_a1", "Let me", status="cancelled")
    assert emitted(out)[-2] == _changed(C.RESPONDING, C.SESSION_READY)
    assert isinstance(emitted(out)[-1], ev.TurnMetrics)
    assert d.where == (C.SESSION_READY, P.IDLE)


def test_d_barge_in_cancels_running_tools() -> None:
    """Calls of the interrupted response that are running appear in CancelTools('interrupted')."""
    d = Driver(SessionConfig(tools=(WEATHER,)))
    d.ready()
    d.user_turn("item_u1")
    d.server("response.created", response=response("resp_1"))
    for index, call in enumerate(("call_1", "call_2")):
        d.announce_call("resp_1", call, "get_weather", index=index)
        d.call_arguments("resp_1", call, "get_weather", ARGS, index=index)
    d.do(d.conv.tool_result("call_2", '"done fast"'))  # answered: no longer running
    d.take()

    out = d.server("input_audio_buffer.speech_started", item_id="item_u2", audio_start_ms=5000)
    assert of_type(out, CancelTools) == [CancelTools(call_ids=("call_1",), reason="interrupted")]
    assert sent(out) == []
    assert d.where == (C.USER_SPEAKING, P.CANCELLING)
