"""The sans-IO session core, driven synchronously: events in, events out, time as an argument."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest

from engine.protocol import encode
from engine.server import ServerSession
from engine.server.audio import CHUNK_MS
from engine.server.handshake import dialect_of
from tests.server.helpers import (
    AUDIO_RESPONSE,
    CANCELLED_AUDIO,
    TEXT_RESPONSE,
    appends,
    check_server_event,
    collapse,
    silence,
    tone,
)

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


class Driver:
    """A session core plus a clock; every event it produces is checked against the GA schema."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("pace", 0)
        options.setdefault("ping_interval", None)
        self.now = 0.0
        self.core = ServerSession(now=self.now, **options)
        self.greeting = self._check(self.core.open(self.now))

    @staticmethod
    def _check(events: list[Any]) -> list[dict[str, Any]]:
        return [check_server_event(encode(event)) for event in events]

    def send(self, event: dict[str, Any], at: float | None = None) -> list[dict[str, Any]]:
        if at is not None:
            self.now = at
        return self._check(self.core.receive_text(json.dumps(event), self.now))

    def send_all(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [out for event in events for out in self.send(event)]

    def poll(self, at: float) -> list[dict[str, Any]]:
        self.now = at
        return self._check(self.core.poll(at))

    def update(self, session: dict[str, Any]) -> list[dict[str, Any]]:
        return self.send({"type": "session.update", "session": session})

    def user_text(self, text: str, **item: Any) -> list[dict[str, Any]]:
        body = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}], **item}
        return self.send({"type": "conversation.item.create", "item": body})


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def only(events: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [e for e in events if e["type"] == kind]
    assert len(found) == 1, types(events)
    return found[0]


# -- session ---------------------------------------------------------------------------------


def test_connect_sends_session_created_then_conversation_created_with_inworld_defaults() -> None:
    driver = Driver()
    assert types(driver.greeting) == ["session.created", "conversation.created"]
    session = driver.greeting[0]["session"]
    assert session["audio"]["input"]["turn_detection"] == {
        "type": "semantic_vad",
        "eagerness": "low",
        "create_response": True,
        "interrupt_response": True,
    }
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["output"]["voice"] == "Clive"
    assert driver.greeting[1]["conversation"]["id"] == driver.core.conversation.id


def test_session_update_changes_only_the_fields_present() -> None:
    driver = Driver()
    before = driver.core.session
    (updated,) = driver.update({"audio": {"output": {"voice": "Sarah"}}})
    assert updated["type"] == "session.updated"
    assert updated["session"]["audio"]["output"]["voice"] == "Sarah"
    assert updated["session"]["audio"]["input"] == before["audio"]["input"]
    assert updated["session"]["audio"]["output"]["format"] == before["audio"]["output"]["format"]
    (again,) = driver.update({"instructions": "Be brief."})
    assert again["session"]["audio"]["output"]["voice"] == "Sarah"
    assert again["session"]["instructions"] == "Be brief."
    assert again["session"] == driver.core.session


def test_turn_detection_merges_within_a_type_and_is_replaced_across_types() -> None:
    driver = Driver()
    (first,) = driver.update({"audio": {"input": {"turn_detection": {"type": "server_vad"}}}})
    turn = first["session"]["audio"]["input"]["turn_detection"]
    assert turn["type"] == "server_vad" and turn["silence_duration_ms"] == 500 and "eagerness" not in turn
    (second,) = driver.update({"audio": {"input": {"turn_detection": {"silence_duration_ms": 300}}}})
    turn = second["session"]["audio"]["input"]["turn_detection"]
    assert (turn["type"], turn["silence_duration_ms"], turn["threshold"]) == ("server_vad", 300, 0.5)
    (third,) = driver.update({"audio": {"input": {"turn_detection": None}}})
    assert third["session"]["audio"]["input"]["turn_detection"] is None


@pytest.mark.parametrize(
    ("patch", "param", "code"),
    [
        (
            {"audio": {"input": {"format": {"type": "audio/pcm", "rate": 12345}}}},
            "session.audio.input.format.rate",
            "invalid_value",
        ),
        (
            {"audio": {"output": {"format": {"type": "audio/opus"}}}},
            "session.audio.output.format.type",
            "invalid_value",
        ),
        (
            {"audio": {"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "eager"}}}},
            "session.audio.input.turn_detection.eagerness",
            "invalid_value",
        ),
        (
            {"audio": {"input": {"transcription": {"model": ""}}}},
            "session.audio.input.transcription.model",
            "invalid_value",
        ),
        ({"output_modalities": ["video"]}, "session.output_modalities", "invalid_value"),
        ({"tools": [{"type": "function", "name": "bad name"}]}, "session.tools[0].name", "invalid_value"),
        ({"max_output_tokens": 0}, "session.max_output_tokens", "invalid_value"),
        ({"temperature": 3}, "session.temperature", "invalid_value"),
        ({"voice": "Sarah"}, "session.voice", "unknown_parameter"),
    ],
)
def test_invalid_session_update_is_an_error_and_applies_nothing(
    patch: dict[str, Any], param: str, code: str
) -> None:
    driver = Driver()
    before = driver.core.session
    (error,) = driver.send(
        {"type": "session.update", "event_id": "evt_1", "session": {"instructions": "changed", **patch}}
    )
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert (error["error"]["code"], error["error"]["param"]) == (code, param)
    assert error["error"]["event_id"] == "evt_1"
    assert driver.core.session == before


# -- voice turns -----------------------------------------------------------------------------


def test_voice_turn_detects_speech_commits_transcribes_and_answers_in_ga_order() -> None:
    driver = Driver()
    out = driver.send_all(appends(silence(1030) + tone(1000) + silence(800)))
    kinds = collapse(types(out))
    assert kinds[:7] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "<deltas>",
        "conversation.item.input_audio_transcription.completed",
    ]
    assert kinds[7:] == AUDIO_RESPONSE
    started, stopped = out[0], out[1]
    assert abs(started["audio_start_ms"] - 1030) <= 100
    assert abs(stopped["audio_end_ms"] - 2030) <= 100
    item_id = started["item_id"]
    assert stopped["item_id"] == item_id == only(out, "input_audio_buffer.committed")["item_id"]
    added = next(e for e in out if e["type"] == "conversation.item.added")["item"]
    assert added == {**added, "id": item_id, "role": "user", "content": [{"type": "input_audio"}]}
    completed = only(out, "conversation.item.input_audio_transcription.completed")
    assert re.fullmatch(r"\[speech 1\.\d\d s, loud\]", completed["transcript"])
    deltas = [e["delta"] for e in out if e["type"] == "conversation.item.input_audio_transcription.delta"]
    assert "".join(deltas) == completed["transcript"]
    user, assistant = driver.core.conversation.items
    assert (
        user.id == item_id
        and user.content is not None
        and user.content[0].transcript == completed["transcript"]
    )
    assert assistant.role == "assistant" and assistant.text == f"You said: {completed['transcript']}"


def test_audio_response_streams_pcm_at_the_output_rate_with_the_transcript_between_deltas() -> None:
    driver = Driver()
    driver.update({"audio": {"output": {"format": {"type": "audio/pcm", "rate": 16000}}}})
    driver.user_text("hello")
    out = driver.send({"type": "response.create"})
    assert collapse(types(out)) == AUDIO_RESPONSE
    audio = [base64.b64decode(e["delta"]) for e in out if e["type"] == "response.output_audio.delta"]
    assert all(len(chunk) == 2 * 16000 * CHUNK_MS // 1000 for chunk in audio)
    assert len(audio) == len("You said: hello.")  # ~60 ms of audio per character
    transcript = "".join(e["delta"] for e in out if e["type"] == "response.output_audio_transcript.delta")
    assert (
        transcript == only(out, "response.output_audio_transcript.done")["transcript"] == "You said: hello."
    )
    streamed = [e["type"] for e in out if e["type"].endswith(".delta")]
    assert streamed[0] == "response.output_audio.delta" and len(set(streamed[:4])) == 2  # interleaved
    done = only(out, "response.done")["response"]
    assert done["status"] == "completed"
    assert done["usage"]["total_tokens"] == done["usage"]["input_tokens"] + done["usage"]["output_tokens"]


def test_scripted_transcript_replaces_the_description_of_the_audio() -> None:
    driver = Driver()
    driver.core.say_next("good morning")
    out = driver.send_all(appends(tone(500) + silence(700)))
    assert only(out, "conversation.item.input_audio_transcription.completed")["transcript"] == "good morning"
    assert only(out, "response.output_audio_transcript.done")["transcript"] == "You said: good morning."


def test_manual_turns_have_no_vad_and_commit_on_request() -> None:
    driver = Driver()
    driver.update({"audio": {"input": {"turn_detection": None}}})
    (error,) = driver.send({"type": "input_audio_buffer.commit", "event_id": "c1"})
    assert (error["error"]["code"], error["error"]["event_id"]) == ("input_audio_buffer_commit_empty", "c1")
    assert driver.send_all(appends(tone(40))) == []
    (small,) = driver.send({"type": "input_audio_buffer.commit"})
    assert "buffer too small" in small["error"]["message"]
    assert driver.send_all(appends(tone(1000) + silence(1000))) == []
    out = driver.send({"type": "input_audio_buffer.commit"})
    assert collapse(types(out)) == [
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "<deltas>",
        "conversation.item.input_audio_transcription.completed",
    ]
    assert "response.created" not in types(out)  # manual turns: the client asks for the response


def test_clear_discards_the_buffer() -> None:
    driver = Driver()
    driver.update({"audio": {"input": {"turn_detection": None}}})
    driver.send_all(appends(tone(500)))
    assert types(driver.send({"type": "input_audio_buffer.clear"})) == ["input_audio_buffer.cleared"]
    (error,) = driver.send({"type": "input_audio_buffer.commit"})
    assert error["error"]["code"] == "input_audio_buffer_commit_empty"


def test_speech_during_a_paced_response_cancels_it_as_turn_detected() -> None:
    driver = Driver(pace=1.0)
    driver.user_text("tell me something rather long, please")
    first = driver.send({"type": "response.create"}, at=0.0)
    assert types(first)[:4] == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
    ]
    driver.poll(0.2)  # four chunks of audio sent by now
    out = driver.send_all(appends(tone(200)))
    assert out[0]["type"] == "input_audio_buffer.speech_started"
    assert types(out[1:]) == CANCELLED_AUDIO
    done = out[-1]["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    item = only(out, "response.output_item.done")["item"]
    assert item["status"] == "incomplete"
    spoken = only(out, "response.output_audio_transcript.done")["transcript"]
    assert spoken and "You said: tell me something rather long, please.".startswith(spoken)
    assert driver.core.conversation.audio_ms[item["id"]] == 4 * CHUNK_MS
    assert driver.core.active_response_id is None


def test_pacing_releases_audio_in_real_time() -> None:
    driver = Driver(pace=1.0)
    driver.user_text("abcdefghij")  # "You said: abcdefghij." is 21 characters: 21 chunks
    out = driver.send({"type": "response.create"}, at=10.0)
    assert sum(e["type"] == "response.output_audio.delta" for e in out) == 1
    assert driver.core.next_deadline() == pytest.approx(10.06)
    assert sum(e["type"] == "response.output_audio.delta" for e in driver.poll(10.5)) == 8
    rest = driver.poll(11.2)
    assert sum(e["type"] == "response.output_audio.delta" for e in rest) == 12
    assert rest[-1]["type"] == "response.done" and driver.core.next_deadline() is None


def test_ping_carries_a_millisecond_timestamp_at_the_configured_interval() -> None:
    driver = Driver(ping_interval=1.0, epoch_ms=1_700_000_000_000)
    assert driver.core.next_deadline() == 1.0
    assert driver.poll(0.5) == []
    (ping,) = driver.poll(1.0)
    assert ping["type"] == "ping" and ping["timestamp"] == 1_700_000_001_000
    assert driver.core.next_deadline() == 2.0


# -- text and tool turns ---------------------------------------------------------------------


def test_text_turn_in_text_modality() -> None:
    driver = Driver()
    driver.update({"output_modalities": ["text"]})
    added = driver.user_text("hello there")
    assert types(added) == ["conversation.item.added", "conversation.item.done"]
    out = driver.send({"type": "response.create"})
    assert collapse(types(out)) == TEXT_RESPONSE
    text = "".join(e["delta"] for e in out if e["type"] == "response.output_text.delta")
    assert text == only(out, "response.output_text.done")["text"] == "You said: hello there."
    assert only(out, "response.content_part.added")["part"]["type"] == "text"


def test_per_response_modalities_override_the_session() -> None:
    driver = Driver()
    driver.user_text("hi")
    out = driver.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
    assert collapse(types(out)) == TEXT_RESPONSE


def test_tool_call_turn_then_answer_with_the_output() -> None:
    driver = Driver()
    driver.update({"tools": [WEATHER_TOOL], "providerData": {"auto_tool_response": False}})
    driver.user_text("What's the weather in Paris?")
    out = driver.send({"type": "response.create"})
    assert collapse(types(out)) == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "<deltas>",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    done = only(out, "response.function_call_arguments.done")
    assert done["name"] == "get_weather" and json.loads(done["arguments"]) == {"city": "Paris"}
    streamed = "".join(e["delta"] for e in out if e["type"] == "response.function_call_arguments.delta")
    assert streamed == done["arguments"]
    (call,) = only(out, "response.done")["response"]["output"]
    assert (call["type"], call["call_id"], call["status"]) == ("function_call", done["call_id"], "completed")
    output = {"type": "function_call_output", "call_id": done["call_id"], "output": '{"temperature": 21}'}
    echoed = driver.send({"type": "conversation.item.create", "item": output})
    assert types(echoed) == ["conversation.item.added", "conversation.item.done"]  # no automatic answer
    answer = driver.send({"type": "response.create"})
    transcript = only(answer, "response.output_audio_transcript.done")["transcript"]
    assert transcript == 'The result is {"temperature": 21}.'


def test_inworld_answers_a_tool_output_by_itself_by_default() -> None:
    driver = Driver()
    driver.update({"tools": [WEATHER_TOOL]})
    driver.user_text("weather in Oslo")
    call = only(driver.send({"type": "response.create"}), "response.function_call_arguments.done")
    assert json.loads(call["arguments"]) == {"city": "Oslo"}
    item = {"type": "function_call_output", "call_id": call["call_id"], "output": "rain"}
    out = driver.send({"type": "conversation.item.create", "item": item})
    assert types(out)[:3] == ["conversation.item.added", "conversation.item.done", "response.created"]
    assert only(out, "response.output_audio_transcript.done")["transcript"] == "The result is rain."


def test_openai_dialect_never_answers_a_tool_output_by_itself() -> None:
    # A GA server waits for response.create after a tool output, whatever providerData says.
    driver = Driver(dialect="openai")
    driver.update({"tools": [WEATHER_TOOL], "providerData": {"auto_tool_response": True}})
    driver.user_text("weather in Oslo")
    call = only(driver.send({"type": "response.create"}), "response.function_call_arguments.done")
    item = {"type": "function_call_output", "call_id": call["call_id"], "output": "rain"}
    out = driver.send({"type": "conversation.item.create", "item": item})
    assert types(out) == ["conversation.item.added", "conversation.item.done"]


def test_the_handshake_names_the_dialect() -> None:
    assert dialect_of("/v1/realtime?model=gpt-realtime") == "openai"
    assert dialect_of("/api/v1/realtime/session?key=s1&protocol=realtime") == "inworld"
    assert dialect_of("/v1/realtime?model=m&key=s1") == "inworld"


def test_out_of_band_response_leaves_the_conversation_alone() -> None:
    driver = Driver()
    driver.user_text("hi")
    out = driver.send(
        {"type": "response.create", "response": {"conversation": "none", "metadata": {"topic": "x"}}}
    )
    assert "conversation.item.added" not in types(out) and "conversation.item.done" not in types(out)
    done = only(out, "response.done")["response"]
    assert "conversation_id" not in done and done["metadata"] == {"topic": "x"}
    assert len(driver.core.conversation) == 1


# -- responses: cancel and conflicts ---------------------------------------------------------


def test_response_cancel_closes_the_response_as_client_cancelled() -> None:
    driver = Driver(pace=1.0)
    driver.user_text("hello")
    driver.send({"type": "response.create"})
    busy = driver.send({"type": "response.create", "event_id": "again"})
    assert busy[0]["error"]["code"] == "conversation_already_has_active_response"
    assert busy[0]["error"]["event_id"] == "again"
    out = driver.send({"type": "response.cancel"}, at=0.1)
    assert types(out)[-len(CANCELLED_AUDIO) :] == CANCELLED_AUDIO
    assert out[-1]["response"]["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    (error,) = driver.send({"type": "response.cancel", "event_id": "c2"})
    assert error["error"] == {
        "type": "invalid_request_error",
        "code": "response_cancel_not_active",
        "message": "Cancellation failed: no active response found",
        "event_id": "c2",
    }


# -- protocol errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code", "param"),
    [
        ("{not json", "invalid_json", None),
        ("[1, 2]", "invalid_json", None),
        ('{"type": "session.frobnicate", "event_id": "e1"}', "invalid_value", "type"),
        ('{"type": "input_audio_buffer.append", "audio": 5, "event_id": "e1"}', "invalid_value", None),
        (
            '{"type": "input_audio_buffer.append", "audio": "@@not base64@@", "event_id": "e1"}',
            "invalid_value",
            "audio",
        ),
        ('{"type": "output_audio_buffer.clear", "event_id": "e1"}', "invalid_value", "type"),
    ],
)
def test_bad_client_messages_are_answered_with_an_error_event(
    text: str, code: str, param: str | None
) -> None:
    driver = Driver()
    (error,) = [check_server_event(encode(e)) for e in driver.core.receive_text(text, 0.0)]
    assert error["type"] == "error"
    assert (error["error"]["type"], error["error"]["code"], error["error"].get("param")) == (
        "invalid_request_error",
        code,
        param,
    )
    if '"e1"' in text:
        assert error["error"]["event_id"] == "e1"
    assert types(driver.update({"instructions": "still fine"})) == ["session.updated"]


# -- conversation items ----------------------------------------------------------------------


def test_item_create_generates_ids_keeps_client_ids_and_honours_previous_item_id() -> None:
    driver = Driver()
    (added, done) = driver.user_text("first")
    generated = added["item"]["id"]
    assert done["item"] == added["item"] and added["item"]["status"] == "completed"
    (added2, _) = driver.user_text("second", id="client_id_2")
    assert added2["item"]["id"] == "client_id_2" and added2["previous_item_id"] == generated
    system = {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "Be kind."}]}
    (root, _) = driver.send({"type": "conversation.item.create", "previous_item_id": "root", "item": system})
    assert "previous_item_id" not in root
    assert [i.id for i in driver.core.conversation.items] == [root["item"]["id"], generated, "client_id_2"]
    (missing,) = driver.send(
        {"type": "conversation.item.create", "previous_item_id": "nope", "event_id": "e9", "item": system}
    )
    assert (missing["error"]["param"], missing["error"]["event_id"]) == ("previous_item_id", "e9")
    (duplicate,) = driver.user_text("again", id="client_id_2")
    assert duplicate["error"]["param"] == "item.id"


@pytest.mark.parametrize(
    ("item", "param"),
    [
        (
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_audio", "transcript": "x"}],
            },
            "item.content[0].type",
        ),
        ({"type": "message", "role": "robot", "content": [{"type": "input_text", "text": "x"}]}, "item.role"),
        ({"type": "function_call_output", "output": "x"}, "item.call_id"),
        ({"type": "function_call", "arguments": "{}"}, "item.name"),
        ({"type": "mystery"}, "item.type"),
    ],
)
def test_item_create_refuses_shapes_ga_does_not_allow(item: dict[str, Any], param: str) -> None:
    driver = Driver()
    (error,) = driver.send({"type": "conversation.item.create", "item": item})
    assert (error["error"]["code"], error["error"]["param"]) == ("invalid_value", param)
    assert len(driver.core.conversation) == 0


def test_truncate_delete_and_retrieve() -> None:
    driver = Driver()
    (user, _) = driver.user_text("hello")
    out = driver.send({"type": "response.create"})
    assistant_id = only(out, "response.output_item.done")["item"]["id"]
    total = driver.core.conversation.audio_ms[assistant_id]
    assert total == len("You said: hello.") * CHUNK_MS
    (too_long,) = driver.send(
        {
            "type": "conversation.item.truncate",
            "item_id": assistant_id,
            "content_index": 0,
            "audio_end_ms": 5000,
        }
    )
    assert too_long["error"]["message"] == f"Audio content of {total}ms is already shorter than 5000ms"
    (truncated,) = driver.send(
        {
            "type": "conversation.item.truncate",
            "item_id": assistant_id,
            "content_index": 0,
            "audio_end_ms": 480,
        }
    )
    assert truncated == {**truncated, "type": "conversation.item.truncated", "audio_end_ms": 480}
    (retrieved,) = driver.send({"type": "conversation.item.retrieve", "item_id": assistant_id})
    assert retrieved["item"]["content"][0]["transcript"] == "You said"  # 480 of 960 ms: half the text
    (not_audio,) = driver.send(
        {
            "type": "conversation.item.truncate",
            "item_id": user["item"]["id"],
            "content_index": 0,
            "audio_end_ms": 0,
        }
    )
    assert not_audio["error"]["message"] == "Only model output audio messages can be truncated."
    (deleted,) = driver.send({"type": "conversation.item.delete", "item_id": user["item"]["id"]})
    assert deleted == {**deleted, "type": "conversation.item.deleted", "item_id": user["item"]["id"]}
    assert [i.id for i in driver.core.conversation.items] == [assistant_id]
    for kind, code in [
        ("conversation.item.delete", "item_delete_invalid_item_id"),
        ("conversation.item.retrieve", "item_retrieve_invalid_item_id"),
    ]:
        (error,) = driver.send({"type": kind, "item_id": "gone", "event_id": "x"})
        assert (error["error"]["code"], error["error"]["event_id"]) == (code, "x")
    (unknown,) = driver.send(
        {"type": "conversation.item.truncate", "item_id": "gone", "content_index": 0, "audio_end_ms": 0}
    )
    assert unknown["error"]["code"] == "item_truncate_invalid_item_id"


# -- Inworld quirks --------------------------------------------------------------------------


def test_quirk_speech_events_in_manual_mode_commit_nothing() -> None:
    from engine.server import Quirks

    driver = Driver(quirks=Quirks(manual_vad_events=True))
    driver.update({"audio": {"input": {"turn_detection": None}}})
    out = driver.send_all(appends(tone(500) + silence(700)))
    assert types(out) == ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped"]
    committed = only(driver.send({"type": "input_audio_buffer.commit"}), "input_audio_buffer.committed")
    assert committed["item_id"] == out[0]["item_id"]


def test_quirk_function_call_done_without_name() -> None:
    from engine.server import Quirks

    driver = Driver(quirks=Quirks(omit_call_name=True))
    driver.update({"tools": [WEATHER_TOOL]})
    driver.user_text("weather in Rome")
    out = [json.loads(encode(e)) for e in driver.core.receive_text('{"type": "response.create"}', 0.0)]
    done = only(out, "response.function_call_arguments.done")
    assert "name" not in done  # GA requires it: this event is deliberately not GA-valid
    assert only(out, "response.output_item.added")["item"]["name"] == "get_weather"


def test_a_type_that_is_not_a_string_is_an_error() -> None:
    driver = Driver()
    (error,) = driver.send({"type": ["session.update"], "event_id": "t1"})
    assert (error["error"]["code"], error["error"]["param"], error["error"]["event_id"]) == (
        "invalid_value",
        "type",
        "t1",
    )
