"""Representative wire events: one or more realistic instances of every event class.

Shared by the round-trip tests and the GA schema tests. Values follow the GA
shapes in docs/protocol.md §3 and §5 (ids like ``item_…``, ``resp_…``, base64 PCM).
"""

from __future__ import annotations

import base64
import math
import struct
from typing import Any

from engine.protocol import client as c
from engine.protocol import server as s
from engine.protocol import server_response as r
from engine.protocol.client import ResponseParams
from engine.protocol.config import (
    AudioFormat,
    FunctionTool,
    SemanticVad,
    ServerVad,
    SessionConfig,
    Transcription,
)
from engine.protocol.items import ContentPart, ErrorDetail, Item, RateLimit, Response, Usage


def pcm16_b64(samples: int = 480, rate: int = 24000, hz: float = 440.0) -> str:
    """Base64 of a 16-bit little-endian mono sine tone (20 ms at 24 kHz by default)."""
    frames = (int(12000 * math.sin(2 * math.pi * hz * i / rate)) for i in range(samples))
    return base64.b64encode(struct.pack(f"<{samples}h", *frames)).decode("ascii")


AUDIO_B64 = pcm16_b64()

USER_AUDIO_ITEM = Item(
    type="message",
    id="item_CJx1user0001",
    object="realtime.item",
    status="completed",
    role="user",
    content=(ContentPart(type="input_audio", transcript="What's the weather in Paris?"),),
)
ASSISTANT_AUDIO_ITEM = Item(
    type="message",
    id="item_CJx2asst0002",
    object="realtime.item",
    status="completed",
    role="assistant",
    content=(ContentPart(type="output_audio", transcript="It's sunny and 21 degrees in Paris."),),
)
ASSISTANT_IN_PROGRESS = Item(
    type="message",
    id="item_CJx2asst0002",
    object="realtime.item",
    status="in_progress",
    role="assistant",
    content=(),
)
FUNCTION_CALL_ITEM = Item(
    type="function_call",
    id="item_CJx3call0003",
    object="realtime.item",
    status="completed",
    call_id="call_9f8e7d6c",
    name="get_weather",
    arguments='{"city": "Paris", "unit": "celsius"}',
)
FUNCTION_OUTPUT_ITEM = Item(
    type="function_call_output",
    id="5f1c0a9e3b7d4c2a8e6f1b0d9c7a5e3f",
    object="realtime.item",
    status="completed",
    call_id="call_9f8e7d6c",
    output='{"temperature": 21, "sky": "clear"}',
)
SYSTEM_ITEM = Item.system_text("Keep answers under two sentences.", id="sys_0001")

USAGE = Usage(
    total_tokens=1187,
    input_tokens=923,
    output_tokens=264,
    input_token_details={
        "text_tokens": 611,
        "audio_tokens": 312,
        "image_tokens": 0,
        "cached_tokens": 576,
        "cached_tokens_details": {"text_tokens": 512, "audio_tokens": 64, "image_tokens": 0},
    },
    output_token_details={"text_tokens": 61, "audio_tokens": 203},
)
RESPONSE_IN_PROGRESS = Response(
    id="resp_CJx9resp0009",
    object="realtime.response",
    status="in_progress",
    output=(),
    conversation_id="conv_CJx0conv0000",
    output_modalities=("audio",),
    audio={"output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"}},
    max_output_tokens="inf",
    metadata={"turn": "3"},
)
RESPONSE_COMPLETED = Response(
    id="resp_CJx9resp0009",
    object="realtime.response",
    status="completed",
    output=(ASSISTANT_AUDIO_ITEM, FUNCTION_CALL_ITEM),
    usage=USAGE,
    conversation_id="conv_CJx0conv0000",
    output_modalities=("audio",),
    audio={"output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"}},
    max_output_tokens=4096,
    metadata={"turn": "3"},
)
RESPONSE_CANCELLED = Response(
    id="resp_CJxAresp0010",
    object="realtime.response",
    status="cancelled",
    status_details={"type": "cancelled", "reason": "turn_detected"},
    output=(ASSISTANT_AUDIO_ITEM,),
    usage=Usage(total_tokens=40, input_tokens=30, output_tokens=10),
)
RESPONSE_FAILED = Response(
    id="resp_CJxBresp0011",
    object="realtime.response",
    status="failed",
    status_details={
        "type": "failed",
        "error": {"type": "server_error", "code": "internal", "message": "The model failed."},
    },
)
SESSION = {
    "type": "realtime",
    "model": "gpt-realtime",
    "instructions": "You are a helpful voice assistant.",
    "output_modalities": ["audio"],
    "audio": {
        "input": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "transcription": {"model": "gpt-4o-mini-transcribe", "language": "en"},
            "turn_detection": {
                "type": "server_vad",
                "threshold": 0.5,
                "prefix_padding_ms": 300,
                "silence_duration_ms": 500,
                "create_response": True,
                "interrupt_response": True,
            },
        },
        "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin", "speed": 1.0},
    },
    "tools": [],
    "tool_choice": "auto",
    "max_output_tokens": "inf",
}

_PART: dict[str, Any] = {
    "response_id": "resp_CJx9resp0009",
    "item_id": "item_CJx2asst0002",
    "output_index": 0,
}

SERVER_EXAMPLES: list[s.ServerEventBase] = [
    s.ErrorEvent(
        event_id="event_E001",
        error=ErrorDetail(
            type="invalid_request_error",
            code="response_cancel_not_active",
            message="Cancellation failed: no active response found",
            event_id="client_evt_0042",
        ),
    ),
    s.ErrorEvent(
        event_id="event_E002",
        error=ErrorDetail(
            type="invalid_request_error",
            code="invalid_value",
            message="Invalid transcription model.",
            param="session.audio.input.transcription.model",
        ),
    ),
    s.Ping(event_id="event_P001", timestamp=1_767_225_600_123),
    s.SessionCreated(event_id="event_S001", session=SESSION),
    s.SessionUpdated(event_id="event_S002", session={**SESSION, "instructions": "Be brief."}),
    s.ConversationCreated(
        event_id="event_C001", conversation={"id": "conv_CJx0conv0000", "object": "realtime.conversation"}
    ),
    s.ConversationItemAdded(event_id="event_C002", item=USER_AUDIO_ITEM, previous_item_id="item_prev0000"),
    s.ConversationItemAdded(event_id="event_C003", item=FUNCTION_OUTPUT_ITEM),
    s.ConversationItemDone(event_id="event_C004", item=USER_AUDIO_ITEM, previous_item_id="item_prev0000"),
    s.ConversationItemCreated(event_id="event_C005", item=SYSTEM_ITEM, previous_item_id="root"),
    s.ConversationItemRetrieved(event_id="event_C006", item=ASSISTANT_AUDIO_ITEM),
    s.ConversationItemTruncated(
        event_id="event_C007", item_id="item_CJx2asst0002", content_index=0, audio_end_ms=1530
    ),
    s.ConversationItemDeleted(event_id="event_C008", item_id="item_CJx1user0001"),
    s.InputAudioTranscriptionDelta(
        event_id="event_T001",
        item_id="item_CJx1user0001",
        content_index=0,
        delta="What's the wea",
        logprobs=[{"token": "What", "logprob": -0.01, "bytes": [87, 104, 97, 116]}],
    ),
    s.InputAudioTranscriptionCompleted(
        event_id="event_T002",
        item_id="item_CJx1user0001",
        content_index=0,
        transcript="What's the weather in Paris?",
        usage={
            "type": "tokens",
            "input_tokens": 42,
            "output_tokens": 9,
            "total_tokens": 51,
            "input_token_details": {"text_tokens": 0, "audio_tokens": 42},
        },
        languages=[{"code": "en"}],
    ),
    s.InputAudioTranscriptionCompleted(
        event_id="event_T003",
        item_id="item_CJx1user0002",
        content_index=0,
        transcript="Thanks.",
        usage={"type": "duration", "seconds": 0.82},
    ),
    s.InputAudioTranscriptionFailed(
        event_id="event_T004",
        item_id="item_CJx1user0003",
        content_index=0,
        error=ErrorDetail(type="transcription_error", code="audio_unintelligible", message="No speech."),
    ),
    s.InputAudioTranscriptionSegment(
        event_id="event_T005",
        id="seg_0001",
        item_id="item_CJx1user0001",
        content_index=0,
        start=0.0,
        end=1.92,
        speaker="A",
        text="What's the weather in Paris?",
    ),
    s.InputAudioBufferSpeechStarted(event_id="event_V001", item_id="item_CJx1user0001", audio_start_ms=1200),
    s.InputAudioBufferSpeechStopped(event_id="event_V002", item_id="item_CJx1user0001", audio_end_ms=3150),
    s.InputAudioBufferCommitted(
        event_id="event_V003", item_id="item_CJx1user0001", previous_item_id="item_prev0000"
    ),
    s.InputAudioBufferCleared(event_id="event_V004"),
    s.InputAudioBufferTimeoutTriggered(
        event_id="event_V005", item_id="item_CJx1user0004", audio_start_ms=9000, audio_end_ms=15000
    ),
    s.InputAudioBufferDtmfEventReceived(event="5", received_at=1_767_225_600),
    s.OutputAudioBufferStarted(event_id="event_O001", response_id="resp_CJx9resp0009"),
    s.OutputAudioBufferStopped(event_id="event_O002", response_id="resp_CJx9resp0009"),
    s.OutputAudioBufferCleared(event_id="event_O003", response_id="resp_CJx9resp0009"),
    s.RateLimitsUpdated(
        event_id="event_L001",
        rate_limits=(
            RateLimit(name="requests", limit=5000, remaining=4999, reset_seconds=0.012),
            RateLimit(name="tokens", limit=400_000, remaining=398_813, reset_seconds=0.178),
        ),
    ),
    s.McpListToolsInProgress(event_id="event_M001", item_id="mcp_list_0001"),
    s.McpListToolsCompleted(event_id="event_M002", item_id="mcp_list_0001"),
    s.McpListToolsFailed(event_id="event_M003", item_id="mcp_list_0001"),
    r.ResponseCreated(event_id="event_R001", response=RESPONSE_IN_PROGRESS),
    r.ResponseDoneEvent(event_id="event_R002", response=RESPONSE_COMPLETED),
    r.ResponseDoneEvent(event_id="event_R003", response=RESPONSE_CANCELLED),
    r.ResponseDoneEvent(event_id="event_R004", response=RESPONSE_FAILED),
    r.ResponseOutputItemAdded(
        event_id="event_R005", response_id="resp_CJx9resp0009", output_index=0, item=ASSISTANT_IN_PROGRESS
    ),
    r.ResponseOutputItemDone(
        event_id="event_R006", response_id="resp_CJx9resp0009", output_index=1, item=FUNCTION_CALL_ITEM
    ),
    r.ResponseContentPartAdded(
        event_id="event_R007", content_index=0, part=ContentPart(type="audio", transcript=""), **_PART
    ),
    r.ResponseContentPartDone(
        event_id="event_R008",
        content_index=0,
        part=ContentPart(type="audio", transcript="It's sunny and 21 degrees in Paris."),
        **_PART,
    ),
    r.ResponseOutputTextDelta(event_id="event_R009", content_index=0, delta="It's sunny", **_PART),
    r.ResponseOutputTextDone(
        event_id="event_R010", content_index=0, text="It's sunny and 21 degrees in Paris.", **_PART
    ),
    r.ResponseOutputAudioDelta(event_id="event_R011", content_index=0, delta=AUDIO_B64, **_PART),
    r.ResponseOutputAudioDone(event_id="event_R012", content_index=0, **_PART),
    r.ResponseOutputAudioTranscriptDelta(event_id="event_R013", content_index=0, delta="It's sun", **_PART),
    r.ResponseOutputAudioTranscriptDone(
        event_id="event_R014", content_index=0, transcript="It's sunny and 21 degrees in Paris.", **_PART
    ),
    r.ResponseFunctionCallArgumentsDelta(
        event_id="event_R015",
        response_id="resp_CJx9resp0009",
        item_id="item_CJx3call0003",
        output_index=1,
        call_id="call_9f8e7d6c",
        delta='{"city": "Pa',
    ),
    r.ResponseFunctionCallArgumentsDone(
        event_id="event_R016",
        response_id="resp_CJx9resp0009",
        item_id="item_CJx3call0003",
        output_index=1,
        call_id="call_9f8e7d6c",
        name="get_weather",
        arguments='{"city": "Paris", "unit": "celsius"}',
    ),
    r.ResponseMcpCallArgumentsDelta(
        event_id="event_R017",
        response_id="resp_CJx9resp0009",
        item_id="mcp_call_0001",
        output_index=0,
        delta='{"q": "par',
        obfuscation="x7Q",
    ),
    r.ResponseMcpCallArgumentsDone(
        event_id="event_R018",
        response_id="resp_CJx9resp0009",
        item_id="mcp_call_0001",
        output_index=0,
        arguments='{"q": "paris"}',
    ),
    r.ResponseMcpCallInProgress(event_id="event_R019", item_id="mcp_call_0001", output_index=0),
    r.ResponseMcpCallCompleted(event_id="event_R020", item_id="mcp_call_0001", output_index=0),
    r.ResponseMcpCallFailed(event_id="event_R021", item_id="mcp_call_0001", output_index=0),
]
"""At least one instance of each of the 47 server event classes; all but ``ping`` are GA-valid."""

INWORLD_STYLE_CONFIG = SessionConfig(
    model="openai/gpt-4.1-mini",
    voice="Clive",
    tts_model="inworld-tts-2",
    output_modalities=("audio", "text"),
    transcription=Transcription(model="inworld/inworld-stt-1"),
    turn_detection=SemanticVad(eagerness="low"),
    provider_data={"metadata": {"sdk": "engine"}, "auto_tool_response": False},
)

WEATHER_TOOL = FunctionTool(
    name="get_weather",
    description="Current weather for a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius"]}},
        "required": ["city"],
    },
)

SESSION_CONFIGS: dict[str, SessionConfig] = {
    "defaults": SessionConfig(),
    "manual_turns": SessionConfig(turn_detection=None),
    "server_vad": SessionConfig(
        turn_detection=ServerVad(
            threshold=0.6,
            prefix_padding_ms=200,
            silence_duration_ms=700,
            idle_timeout_ms=6000,
            create_response=False,
            interrupt_response=False,
        )
    ),
    "transcription": SessionConfig(
        transcription=Transcription(model="gpt-4o-mini-transcribe", language="en", prompt="weather, Paris")
    ),
    "tools_auto": SessionConfig(tools=(WEATHER_TOOL,), tool_choice="auto"),
    "tools_named": SessionConfig(tools=(WEATHER_TOOL,), tool_choice="get_weather"),
    "max_tokens_100": SessionConfig(max_output_tokens=100),
    "max_tokens_inf": SessionConfig(max_output_tokens="inf"),
    "text_only": SessionConfig(output_modalities=("text",), instructions="Answer in text."),
    "g711": SessionConfig(
        input_format=AudioFormat(type="audio/pcmu", rate=8000),
        output_format=AudioFormat(type="audio/pcma", rate=8000),
        voice="marin",
        speed=1.1,
        model="gpt-realtime",
    ),
    "inworld_style": INWORLD_STYLE_CONFIG,
    "inworld_temperature": SessionConfig(temperature=0.7, tts_model="inworld-tts-1.5-max"),
}
"""Session configurations the project can send; all use 24 kHz PCM or G.711 so GA accepts them."""

CLIENT_EXAMPLES: list[c.ClientEvent] = [
    *(
        c.SessionUpdate(session=cfg.to_wire(), event_id=f"evt_su_{name}")
        for name, cfg in SESSION_CONFIGS.items()
    ),
    c.InputAudioBufferAppend(audio=AUDIO_B64),
    c.InputAudioBufferAppend(audio=AUDIO_B64, event_id="evt_append_1"),
    c.InputAudioBufferCommit(),
    c.InputAudioBufferCommit(event_id="evt_commit_1"),
    c.InputAudioBufferClear(),
    c.OutputAudioBufferClear(event_id="evt_oclear_1"),
    c.ConversationItemCreate(item=Item.user_text("What's the weather in Paris?", id="a1b2c3d4")),
    c.ConversationItemCreate(item=Item.system_text("Be brief."), previous_item_id="root"),
    c.ConversationItemCreate(item=Item.assistant_text("Sure, one moment.")),
    c.ConversationItemCreate(
        item=Item.function_call("call_9f8e7d6c", "get_weather", '{"city": "Paris"}', id="fc_0001")
    ),
    c.ConversationItemCreate(
        item=Item.function_call_output("call_9f8e7d6c", '{"temperature": 21}', id="fco_0001"),
        event_id="evt_create_5",
    ),
    c.ConversationItemTruncate(item_id="item_CJx2asst0002", content_index=0, audio_end_ms=1530),
    c.ConversationItemDelete(item_id="item_CJx1user0001", event_id="evt_delete_1"),
    c.ConversationItemRetrieve(item_id="item_CJx1user0001", event_id="rci_item_CJx1user0001"),
    c.ResponseCreate(),
    c.ResponseCreate(
        response=ResponseParams(output_modalities=("audio",), instructions="Greet the user warmly."),
        event_id="evt_rc_2",
    ),
    c.ResponseCreate(
        response=ResponseParams(
            output_modalities=("text",),
            tools=(WEATHER_TOOL.to_wire(),),
            tool_choice="required",
            max_output_tokens=256,
            conversation="none",
            input=(Item.user_text("Summarise our chat."),),
            metadata={"purpose": "summary"},
        )
    ),
    c.ResponseCancel(),
    c.ResponseCancel(response_id="resp_CJx9resp0009"),
]
"""Client events as the project emits them (every class at least once)."""
