"""SessionConfig and its parts: validation at construction, the GA wire layout, immutability."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from engine.protocol import (
    AudioFormat,
    ConfigError,
    FunctionTool,
    SemanticVad,
    ServerVad,
    SessionConfig,
    Transcription,
)
from engine.protocol.config import PCM_RATES

TOOL = FunctionTool(
    name="get_weather",
    description="Current weather for a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def _invalid(param: str, build: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        build()
    assert isinstance(info.value, ValueError)
    assert info.value.param == param
    assert str(info.value).startswith(f"{param}:")
    return info.value


def test_config_error_is_a_value_error() -> None:
    """ConfigError is a ValueError subclass exported from engine.protocol."""
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(
    ("param", "build"),
    [
        ("format.rate", lambda: AudioFormat(type="audio/pcm", rate=22050)),
        ("format.rate", lambda: AudioFormat(rate=0)),
        ("format.rate", lambda: AudioFormat(type="audio/pcmu", rate=16000)),
        ("format.rate", lambda: AudioFormat(type="audio/pcma", rate=24000)),
        ("format.type", lambda: AudioFormat(type="audio/opus")),
        ("format.type", lambda: AudioFormat(type="pcm16")),
        ("turn_detection.eagerness", lambda: SemanticVad(eagerness="eager")),
        ("turn_detection.threshold", lambda: ServerVad(threshold=1.5)),
        ("turn_detection.silence_duration_ms", lambda: ServerVad(silence_duration_ms=-1)),
        ("turn_detection.idle_timeout_ms", lambda: ServerVad(idle_timeout_ms=0)),
        ("temperature", lambda: SessionConfig(temperature=3.0)),
        ("temperature", lambda: SessionConfig(temperature=-0.1)),
        ("temperature", lambda: SessionConfig(temperature=True)),
        ("temperature", lambda: SessionConfig(temperature=float("nan"))),
        ("speed", lambda: SessionConfig(speed=0.1)),
        ("max_output_tokens", lambda: SessionConfig(max_output_tokens=0)),
        ("max_output_tokens", lambda: SessionConfig(max_output_tokens=5000)),
        ("max_output_tokens", lambda: SessionConfig(max_output_tokens="lots")),
        ("max_output_tokens", lambda: SessionConfig(max_output_tokens=True)),
        ("max_output_tokens", lambda: SessionConfig(max_output_tokens=100.0)),  # type: ignore[arg-type]
        ("output_modalities", lambda: SessionConfig(output_modalities=())),
        ("output_modalities", lambda: SessionConfig(output_modalities=("video",))),
        ("output_modalities", lambda: SessionConfig(output_modalities=("audio", "audio"))),
        ("output_modalities", lambda: SessionConfig(output_modalities="audio")),
        ("tools", lambda: SessionConfig(tools=(TOOL, FunctionTool(name="get_weather")))),
        ("tools.name", lambda: FunctionTool(name="get weather")),
        ("tools.name", lambda: FunctionTool(name="")),
        ("tools.name", lambda: FunctionTool(name="x" * 65)),
        ("tools.name", lambda: FunctionTool(name="get.weather")),
        ("tool_choice", lambda: SessionConfig(tool_choice="")),
    ],
)
def test_invalid_values_raise_config_error_naming_the_field(param: str, build: Any) -> None:
    """Each invalid value is refused at construction with the field named."""
    _invalid(param, build)


def test_duplicate_tool_names_are_listed() -> None:
    """The duplicate-tools error names the offending tool."""
    exc = _invalid("tools", lambda: SessionConfig(tools=[TOOL, FunctionTool(name="b"), TOOL]))
    assert "get_weather" in str(exc)
    assert "'b'" not in str(exc)


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 32000, 44100, 48000])
def test_all_pcm_rates_are_accepted(rate: int) -> None:
    """The six Inworld PCM rates construct and render with their rate."""
    fmt = AudioFormat(type="audio/pcm", rate=rate)
    assert fmt.to_wire() == {"type": "audio/pcm", "rate": rate}
    assert fmt.bytes_per_second == 2 * rate
    wire = SessionConfig(input_format=fmt, output_format=fmt).to_wire()
    assert (
        wire["audio"]["input"]["format"]
        == wire["audio"]["output"]["format"]
        == {"type": "audio/pcm", "rate": rate}
    )


def test_pcm_rates_constant_matches_the_fact_sheet() -> None:
    """PCM_RATES is exactly the list of docs/protocol.md §4.1."""
    assert PCM_RATES == (8000, 16000, 24000, 32000, 44100, 48000)


@pytest.mark.parametrize("kind", ["audio/pcmu", "audio/pcma"])
def test_g711_wire_forms_carry_no_rate(kind: str) -> None:
    """G.711 formats are 8 kHz, one byte a sample, and their wire form has no ``rate``."""
    fmt = AudioFormat(type=kind, rate=8000)
    assert fmt.to_wire() == {"type": kind}
    assert fmt.bytes_per_second == 8000
    wire = SessionConfig(input_format=fmt).to_wire()
    assert wire["audio"]["input"]["format"] == {"type": kind}


@pytest.mark.parametrize("kind", ["audio/pcmu", "audio/pcma"])
def test_g711_without_explicit_rate(kind: str) -> None:
    """Asking for a G.711 format without naming a rate gives the only valid one, 8 kHz."""
    fmt = AudioFormat(type=kind)
    assert fmt.rate == 8000
    assert fmt.to_wire() == {"type": kind}


def test_inworld_config_matches_appendix_b() -> None:
    """An Inworld-style config renders to the ``session`` of docs/protocol.md §4.3, key by key."""
    config = SessionConfig(
        model="openai/gpt-4.1-mini",
        voice="Clive",
        tts_model="inworld-tts-2",
        output_modalities=("audio", "text"),
        input_format=AudioFormat(type="audio/pcm", rate=24000),
        output_format=AudioFormat(type="audio/pcm", rate=24000),
        transcription=Transcription(model="inworld/inworld-stt-1"),
        turn_detection=SemanticVad(eagerness="low"),
        tools=(TOOL,),
        provider_data={"metadata": {"sdk": "pipecat-realtime"}, "auto_tool_response": False},
    )
    wire = config.to_wire()
    assert set(wire) == {"type", "model", "output_modalities", "audio", "tools", "providerData"}
    assert wire["type"] == "realtime"
    assert wire["model"] == "openai/gpt-4.1-mini"
    assert wire["output_modalities"] == ["audio", "text"]
    assert set(wire["audio"]) == {"input", "output"}
    audio_in, audio_out = wire["audio"]["input"], wire["audio"]["output"]
    assert set(audio_in) == {"format", "transcription", "turn_detection"}
    assert audio_in["format"] == {"type": "audio/pcm", "rate": 24000}
    assert audio_in["transcription"] == {"model": "inworld/inworld-stt-1"}
    assert audio_in["turn_detection"] == {
        "type": "semantic_vad",
        "eagerness": "low",
        "create_response": True,
        "interrupt_response": True,
    }
    assert set(audio_out) == {"format", "model", "voice"}
    assert audio_out["format"] == {"type": "audio/pcm", "rate": 24000}
    assert audio_out["model"] == "inworld-tts-2"
    assert audio_out["voice"] == "Clive"
    assert wire["tools"] == [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        }
    ]
    assert wire["providerData"] == {"metadata": {"sdk": "pipecat-realtime"}, "auto_tool_response": False}
    assert "provider_data" not in wire and "temperature" not in wire


def test_default_config_wire_form() -> None:
    """Defaults: semantic VAD low, 24 kHz PCM, audio output, and nothing unset on the wire."""
    assert SessionConfig().to_wire() == {
        "type": "realtime",
        "output_modalities": ["audio"],
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "turn_detection": {
                    "type": "semantic_vad",
                    "eagerness": "low",
                    "create_response": True,
                    "interrupt_response": True,
                },
            },
            "output": {"format": {"type": "audio/pcm", "rate": 24000}},
        },
    }


def test_manual_turns_wire_form() -> None:
    """``turn_detection=None`` keeps the key with value None (sent as null)."""
    config = SessionConfig(turn_detection=None)
    audio_in = config.to_wire()["audio"]["input"]
    assert "turn_detection" in audio_in and audio_in["turn_detection"] is None
    assert not config.server_creates_response and not config.server_interrupts_response


def test_server_vad_wire_form_and_flags() -> None:
    """ServerVad renders every threshold; idle_timeout_ms only when set; flags follow it."""
    vad = ServerVad(threshold=0.4, prefix_padding_ms=250, silence_duration_ms=600, create_response=False)
    assert vad.to_wire() == {
        "type": "server_vad",
        "threshold": 0.4,
        "prefix_padding_ms": 250,
        "silence_duration_ms": 600,
        "create_response": False,
        "interrupt_response": True,
    }
    assert ServerVad(idle_timeout_ms=8000).to_wire()["idle_timeout_ms"] == 8000
    config = SessionConfig(turn_detection=vad)
    assert not config.server_creates_response and config.server_interrupts_response


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        ("get_weather", {"type": "function", "name": "get_weather"}),
    ],
)
def test_tool_choice_wire_form(choice: str, expected: Any) -> None:
    """The three modes are strings; any other value names a function."""
    assert SessionConfig(tools=(TOOL,), tool_choice=choice).to_wire()["tool_choice"] == expected


def test_optional_fields_appear_only_when_set() -> None:
    """instructions, temperature, speed, transcription language/prompt, max tokens render when set."""
    wire = SessionConfig(
        instructions="Be brief.",
        temperature=0.0,
        speed=1.25,
        max_output_tokens="inf",
        transcription=Transcription(model="whisper-1", language="de", prompt="Hallo"),
    ).to_wire()
    assert wire["instructions"] == "Be brief."
    assert wire["temperature"] == 0.0
    assert wire["audio"]["output"]["speed"] == 1.25
    assert wire["max_output_tokens"] == "inf"
    assert wire["audio"]["input"]["transcription"] == {
        "model": "whisper-1",
        "language": "de",
        "prompt": "Hallo",
    }
    assert "tools" not in SessionConfig().to_wire()


def test_sequences_are_converted_to_tuples() -> None:
    """Lists given for output_modalities and tools become tuples (hashable, immutable)."""
    config = SessionConfig(output_modalities=["text"], tools=[TOOL])
    assert config.output_modalities == ("text",)
    assert config.tools == (TOOL,)
    assert hash(SessionConfig(output_modalities=["text"])) == hash(SessionConfig(output_modalities=("text",)))


@pytest.mark.parametrize(
    ("obj", "attr", "value"),
    [
        (SessionConfig(), "voice", "Sarah"),
        (SessionConfig(), "turn_detection", None),
        (AudioFormat(), "rate", 16000),
        (Transcription(model="inworld/inworld-stt-1"), "model", "x"),
        (SemanticVad(), "eagerness", "high"),
        (ServerVad(), "threshold", 0.9),
        (TOOL, "name", "other"),
    ],
    ids=lambda v: type(v).__name__ if attrs.has(type(v)) else str(v),
)
def test_config_classes_are_frozen(obj: Any, attr: str, value: Any) -> None:
    """Assigning to any config attribute raises FrozenInstanceError and changes nothing."""
    before = getattr(obj, attr)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        setattr(obj, attr, value)
    assert getattr(obj, attr) == before


def test_evolve_revalidates() -> None:
    """Derived configs (attrs.evolve) go through the same validation."""
    base = SessionConfig(voice="Clive")
    assert attrs.evolve(base, voice="Sarah").voice == "Sarah"
    with pytest.raises(ConfigError):
        attrs.evolve(base, temperature=9.0)


# ---------------------------------------------------------------------- wrong types (issue 11)

_WRONG_TYPES: list[tuple[str, Any]] = [
    ("voice", lambda: SessionConfig(voice=123)),
    ("instructions", lambda: SessionConfig(instructions=123)),
    ("model", lambda: SessionConfig(model=["x"])),
    ("tts_model", lambda: SessionConfig(tts_model=b"inworld-tts-2")),
    ("tool_choice", lambda: SessionConfig(tool_choice=5)),
    ("tool_choice", lambda: SessionConfig(tool_choice=True)),
    ("speed", lambda: SessionConfig(speed="fast")),
    ("temperature", lambda: SessionConfig(temperature="0.5")),
    ("input_format", lambda: SessionConfig(input_format="audio/pcm")),
    ("output_format", lambda: SessionConfig(output_format={"type": "audio/pcm"})),
    ("transcription", lambda: SessionConfig(transcription="inworld/inworld-stt-1")),
    ("turn_detection", lambda: SessionConfig(turn_detection="semantic_vad")),
    ("turn_detection", lambda: SessionConfig(turn_detection=SemanticVad)),  # the class, not an instance
    ("tools", lambda: SessionConfig(tools=5)),
    ("tools", lambda: SessionConfig(tools=["get_weather"])),
    ("tools", lambda: SessionConfig(tools=[TOOL, {"name": "x"}])),
    ("output_modalities", lambda: SessionConfig(output_modalities=5)),
    ("output_modalities", lambda: SessionConfig(output_modalities=[["audio"]])),  # unhashable element
    ("output_modalities", lambda: SessionConfig(output_modalities=[b"audio"])),
    ("provider_data", lambda: SessionConfig(provider_data=[("a", 1)])),
    ("provider_data", lambda: SessionConfig(provider_data={1: "x"})),
    ("provider_data", lambda: SessionConfig(provider_data={"x": float("nan")})),
    ("provider_data", lambda: SessionConfig(provider_data={"x": object()})),
    ("turn_detection.create_response", lambda: SemanticVad(create_response="no")),
    ("turn_detection.create_response", lambda: ServerVad(create_response="no")),
    ("turn_detection.create_response", lambda: SemanticVad(create_response=1)),  # bool is an int, not back
    ("turn_detection.interrupt_response", lambda: SemanticVad(interrupt_response=None)),
    ("turn_detection.interrupt_response", lambda: ServerVad(interrupt_response=0)),
    ("turn_detection.eagerness", lambda: SemanticVad(eagerness=["low"])),  # unhashable
    ("turn_detection.threshold", lambda: ServerVad(threshold="0.5")),
    ("turn_detection.prefix_padding_ms", lambda: ServerVad(prefix_padding_ms=300.5)),
    ("turn_detection.silence_duration_ms", lambda: ServerVad(silence_duration_ms=True)),
    ("turn_detection.idle_timeout_ms", lambda: ServerVad(idle_timeout_ms="8000")),
    ("format.type", lambda: AudioFormat(type=["audio/pcm"])),
    ("format.rate", lambda: AudioFormat(rate="24000")),
    ("format.rate", lambda: AudioFormat(rate=24000.0)),
    ("format.rate", lambda: AudioFormat(type="audio/pcmu", rate=True)),
    ("transcription.model", lambda: Transcription(model=None)),
    ("transcription.model", lambda: Transcription(model="")),
    ("transcription.language", lambda: Transcription(model="m", language=1)),
    ("transcription.prompt", lambda: Transcription(model="m", prompt=["a"])),
    ("tools.name", lambda: FunctionTool(name=5)),
    ("tools.name", lambda: FunctionTool(name=None)),
    ("tools.description", lambda: FunctionTool(name="a", description=None)),
    ("tools.parameters", lambda: FunctionTool(name="a", parameters=[])),
    ("tools.parameters", lambda: FunctionTool(name="a", parameters={"type": "object", "x": {1, 2}})),
    # Lone surrogates cannot be encoded as UTF-8: refused where they are given, not at the socket.
    ("instructions", lambda: SessionConfig(instructions="be brief \ud83d")),
    ("voice", lambda: SessionConfig(voice="\udc00")),
    ("tools.description", lambda: FunctionTool(name="a", description="\ud83d")),
    ("tools.parameters", lambda: FunctionTool(name="a", parameters={"description": "\ud83d"})),
    ("provider_data", lambda: SessionConfig(provider_data={"\ud83d": 1})),
    ("transcription.prompt", lambda: Transcription(model="m", prompt="\ud800")),
]


@pytest.mark.parametrize(("param", "build"), _WRONG_TYPES)
def test_wrong_types_are_refused_naming_the_field(param: str, build: Any) -> None:
    """Wrong types (or text UTF-8 cannot carry) never reach the wire: ConfigError names the field."""
    _invalid(param, build)


@pytest.mark.parametrize(
    "build",
    [
        lambda: SessionConfig(temperature=1, speed=1),  # ints where floats are declared
        lambda: ServerVad(threshold=1, prefix_padding_ms=0),
        lambda: SessionConfig(tools=[TOOL], output_modalities=["text", "audio"], tool_choice="get_weather"),
        lambda: SessionConfig(instructions="emoji \U0001f600 and \u00e9", voice="Clive"),  # paired: fine
        lambda: SessionConfig(turn_detection=None, transcription=None, provider_data={"a": [1, None]}),
    ],
)
def test_right_values_of_neighbouring_types_are_accepted(build: Any) -> None:
    """The validators refuse wrong types only: ints for floats and real non-ASCII text are fine."""
    build()


@pytest.mark.parametrize(
    "cls", [SessionConfig, AudioFormat, Transcription, SemanticVad, ServerVad, FunctionTool]
)
def test_every_config_field_has_a_validator(cls: Any) -> None:
    """A new field without a validator fails here, so every field stays checked at construction."""
    missing = [f.name for f in attrs.fields(cls) if f.validator is None]
    assert missing == [], f"{cls.__name__} fields without a validator: {missing}"
