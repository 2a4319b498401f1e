"""What the project emits, and what it expects to receive, matches the GA schema."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types.realtime import RealtimeClientEvent

from engine.protocol import FunctionTool, ResponseParams, ServerVad, SessionConfig, Transcription, encode
from engine.protocol import client as c
from engine.protocol import server as s
from engine.protocol.items import Item
from tests.protocol.examples import AUDIO_B64, CLIENT_EXAMPLES, SERVER_EXAMPLES, SESSION_CONFIGS
from tests.protocol.ga_oracle import (
    INWORLD_EXTRAS,
    assert_ga_client_event,
    assert_ga_server_event,
    assert_ga_valid,
)


def _wire(event: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(encode(event))
    return data


def _session_update(config: SessionConfig) -> dict[str, Any]:
    return _wire(c.SessionUpdate(session=config.to_wire()))


# The oracle itself: it must catch what plain pydantic validation lets through.


def test_oracle_catches_invented_session_key() -> None:
    """``session.bogus`` validates in pydantic (extra="allow") but the oracle rejects it."""
    payload = _session_update(SessionConfig())
    payload["session"]["bogus"] = True
    with pytest.raises(AssertionError, match=r"session\.bogus"):
        assert_ga_client_event(payload)


def test_oracle_catches_invented_nested_and_list_keys() -> None:
    """Undeclared keys deep in the audio config and inside list elements are caught too."""
    payload = _session_update(SessionConfig(tools=(FunctionTool(name="f"),)))
    payload["session"]["audio"]["input"]["turn_detection"]["silence_ms"] = 500
    payload["session"]["tools"][0]["strict"] = True
    with pytest.raises(AssertionError) as info:
        assert_ga_client_event(payload)
    assert "session.audio.input.turn_detection.silence_ms" in str(info.value)
    assert "session.tools[0].strict" in str(info.value)


def test_oracle_catches_wrong_value_types() -> None:
    """Validation is strict: a rate GA does not allow, or a numeric string, fails."""
    payload = _session_update(SessionConfig())
    payload["session"]["audio"]["input"]["format"]["rate"] = 16000
    with pytest.raises(AssertionError, match="not valid GA"):
        assert_ga_client_event(payload)
    with pytest.raises(AssertionError, match="not valid GA"):
        assert_ga_client_event(
            {"type": "conversation.item.truncate", "item_id": "i", "content_index": 0, "audio_end_ms": "10"}
        )


def test_inworld_extras_only_pass_as_documented_exceptions() -> None:
    """temperature, audio.output.model and providerData are flagged without the exceptions."""
    config = SessionConfig(temperature=0.8, tts_model="inworld-tts-2", provider_data={"user_id": "u1"})
    payload = _session_update(config)
    assert_ga_client_event(payload)
    with pytest.raises(AssertionError) as info:
        assert_ga_valid(payload, RealtimeClientEvent, allowed_extras=())
    for path in INWORLD_EXTRAS:
        assert path in str(info.value)


def test_temperature_in_response_create_is_not_excused() -> None:
    """The exceptions are paths: ``response.temperature`` (not GA) is still rejected."""
    with pytest.raises(AssertionError, match=r"response\.temperature"):
        assert_ga_client_event({"type": "response.create", "response": {"temperature": 0.7}})


# Client events the project emits.


@pytest.mark.parametrize("name", sorted(SESSION_CONFIGS))
def test_session_update_configs_are_ga(name: str) -> None:
    """Every example SessionConfig renders to a GA ``session.update``."""
    model = assert_ga_client_event(_session_update(SESSION_CONFIGS[name]))
    assert model.session.type == "realtime"


def test_defaults_session_update_shape() -> None:
    """The default config is semantic VAD, 24 kHz PCM both ways, audio output."""
    session = assert_ga_client_event(_session_update(SessionConfig())).session
    assert session.audio.input.turn_detection.type == "semantic_vad"
    assert session.audio.input.format.rate == 24000
    assert session.audio.output.format.type == "audio/pcm"
    assert session.output_modalities == ["audio"]


def test_manual_turns_send_null_turn_detection() -> None:
    """``turn_detection=None`` is GA's explicit ``null`` (VAD off), set and validated."""
    payload = _session_update(SessionConfig(turn_detection=None))
    assert payload["session"]["audio"]["input"]["turn_detection"] is None
    session = assert_ga_client_event(payload).session
    assert "turn_detection" in session.audio.input.model_fields_set
    assert session.audio.input.turn_detection is None


def test_server_vad_thresholds_are_ga() -> None:
    """ServerVad thresholds land in GA's server_vad fields."""
    vad = ServerVad(threshold=0.3, prefix_padding_ms=100, silence_duration_ms=900, idle_timeout_ms=5000)
    td = assert_ga_client_event(_session_update(SessionConfig(turn_detection=vad))).session.audio.input
    assert td.turn_detection.type == "server_vad"
    assert (td.turn_detection.threshold, td.turn_detection.silence_duration_ms) == (0.3, 900)
    assert td.turn_detection.idle_timeout_ms == 5000


def test_transcription_is_ga() -> None:
    """Transcription model, language and prompt are GA fields."""
    config = SessionConfig(transcription=Transcription(model="whisper-1", language="fr", prompt="Bonjour"))
    tr = assert_ga_client_event(_session_update(config)).session.audio.input.transcription
    assert (tr.model, tr.language, tr.prompt) == ("whisper-1", "fr", "Bonjour")


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        ("lookup", {"type": "function", "name": "lookup"}),
    ],
)
def test_tools_and_tool_choice_are_ga(choice: str, expected: Any) -> None:
    """FunctionTool and every tool_choice form validate; a tool name becomes a function choice."""
    tools = (FunctionTool(name="lookup", description="Look up.", parameters={"type": "object"}),)
    payload = _session_update(SessionConfig(tools=tools, tool_choice=choice))
    assert payload["session"]["tool_choice"] == expected
    session = assert_ga_client_event(payload).session
    assert session.tools[0].name == "lookup"


@pytest.mark.parametrize("tokens", [100, 1, 4096, "inf"])
def test_max_output_tokens_is_ga(tokens: int | str) -> None:
    """max_output_tokens is an int or ``"inf"`` on the wire."""
    session = assert_ga_client_event(_session_update(SessionConfig(max_output_tokens=tokens))).session
    assert session.max_output_tokens == tokens


def test_text_output_modality_is_ga() -> None:
    """output_modalities text validates."""
    session = assert_ga_client_event(_session_update(SessionConfig(output_modalities=("text",)))).session
    assert session.output_modalities == ["text"]


def test_inworld_only_fields_pass_only_as_exceptions() -> None:
    """The Inworld extensions are exactly the allowed extras; nothing else is undeclared."""
    config = SessionConfig(
        temperature=1.1, tts_model="inworld-tts-2", provider_data={"memory": {"enabled": True}}
    )
    payload = _session_update(config)
    assert payload["session"]["temperature"] == 1.1
    assert payload["session"]["audio"]["output"]["model"] == "inworld-tts-2"
    assert payload["session"]["providerData"] == {"memory": {"enabled": True}}
    assert_ga_client_event(payload)


def _item_events() -> list[c.ConversationItemCreate]:
    return [
        c.ConversationItemCreate(item=Item.user_text("Hi there", id="u1")),
        c.ConversationItemCreate(item=Item.system_text("Be terse."), previous_item_id="root"),
        c.ConversationItemCreate(item=Item.assistant_text("Hello!")),
        c.ConversationItemCreate(item=Item.function_call("call_1", "lookup", '{"q": "x"}')),
        c.ConversationItemCreate(item=Item.function_call_output("call_1", '{"ok": true}', id="o1")),
    ]


@pytest.mark.parametrize(
    "event",
    [
        c.InputAudioBufferAppend(audio=AUDIO_B64),
        c.InputAudioBufferAppend(audio=AUDIO_B64, event_id="evt_1"),
        c.InputAudioBufferCommit(),
        c.InputAudioBufferClear(event_id="evt_2"),
        *_item_events(),
        c.ConversationItemTruncate(item_id="item_1", audio_end_ms=1200),
        c.ConversationItemDelete(item_id="item_1"),
        c.ConversationItemRetrieve(item_id="item_1", event_id="rci_item_1"),
        c.ResponseCreate(),
        c.ResponseCreate(response=ResponseParams(output_modalities=("audio",), instructions="Say hi.")),
        c.ResponseCancel(),
        c.ResponseCancel(response_id="resp_1"),
        c.OutputAudioBufferClear(),
    ],
    ids=lambda e: type(e).TYPE,
)
def test_client_event_is_ga(event: Any) -> None:
    """Each client event the project emits is GA with no undeclared key (no extras allowed)."""
    model = assert_ga_valid(_wire(event), RealtimeClientEvent, allowed_extras=())
    assert model.event_id == getattr(event, "event_id", None)


def test_item_create_payloads_are_ga_item_kinds() -> None:
    """Each Item helper lands in the intended GA item class (role-checked)."""
    kinds = [type(assert_ga_client_event(_wire(e)).item).__name__ for e in _item_events()]
    assert kinds == [
        "RealtimeConversationItemUserMessage",
        "RealtimeConversationItemSystemMessage",
        "RealtimeConversationItemAssistantMessage",
        "RealtimeConversationItemFunctionCall",
        "RealtimeConversationItemFunctionCallOutput",
    ]


@pytest.mark.parametrize("event", CLIENT_EXAMPLES, ids=lambda e: type(e).TYPE)
def test_client_example_table_is_ga(event: Any) -> None:
    """Every client example (used by the round-trip tests too) is GA."""
    assert_ga_client_event(_wire(event))


# Server events: our field names match GA's.


@pytest.mark.parametrize(
    "event", [e for e in SERVER_EXAMPLES if not isinstance(e, s.Ping)], ids=lambda e: e.TYPE
)
def test_server_example_is_ga(event: Any) -> None:
    """The encoded example validates against RealtimeServerEvent with no undeclared key."""
    assert_ga_server_event(_wire(event))


def test_ping_is_not_ga() -> None:
    """``ping`` is Inworld-only: the GA union has no member for it."""
    with pytest.raises(AssertionError, match="not valid GA"):
        assert_ga_server_event(_wire(s.Ping(event_id="e", timestamp=1)))
