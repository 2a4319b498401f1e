"""Inworld's providerData typed: each branch validated, unknown keys passed through, raw dicts still work."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest

import engine
from engine.protocol import client as c
from engine.protocol import encode
from engine.protocol.config import ConfigError, SessionConfig, config_from_wire
from engine.protocol.inworld import (
    BackchannelSettings,
    CachingSettings,
    MemorySettings,
    ProviderData,
    ResponsivenessSettings,
    SttSettings,
    TtsSettings,
)
from tests.protocol.ga_oracle import assert_ga_client_event

TYPED = ProviderData(
    stt=SttSettings(language_hints=["en", "fr"], vad_threshold=0.4, min_end_of_turn_silence=300),
    tts=TtsSettings(
        delivery_mode="CREATIVE",
        segmenter_strategy="full_turn",
        steering_handling="emit_once",
        timestamp_type="WORD",
        timestamp_transport_strategy="ASYNC",
    ),
    memory=MemorySettings(enabled=True, turn_interval=4, max_facts=20),
    backchannel=BackchannelSettings(enabled=True, allowed_phrases=("uh-huh", "I see"), max_per_turn=2),
    responsiveness=ResponsivenessSettings(enabled=True, initial_wait_timeout_ms=800),
    caching=CachingSettings(enabled=True, ttl="300s", cache_tools=True),
    user_id="caller-42",
    metadata={"tenant": "acme"},
    text_generation_config={"topP": 0.9, "reasoning": {"effort": "LOW"}},
)
RAW: dict[str, Any] = {
    "stt": {"language_hints": ["en", "fr"], "vad_threshold": 0.4, "min_end_of_turn_silence": 300},
    "tts": {
        "segmenter_strategy": "full_turn",
        "steering_handling": "emit_once",
        "delivery_mode": "CREATIVE",
        "timestamp_type": "WORD",
        "timestamp_transport_strategy": "ASYNC",
    },
    "memory": {"enabled": True, "turn_interval": 4, "max_facts": 20},
    "backchannel": {"enabled": True, "max_per_turn": 2, "allowed_phrases": ["uh-huh", "I see"]},
    "responsiveness": {"enabled": True, "initial_wait_timeout_ms": 800},
    "caching": {"enabled": True, "ttl": "300s", "cache_tools": True},
    "user_id": "caller-42",
    "metadata": {"tenant": "acme"},
    "text_generation_config": {"topP": 0.9, "reasoning": {"effort": "LOW"}},
}


def test_typed_settings_render_inworlds_json() -> None:
    """A ProviderData renders exactly the documented keys, and the config keeps that wire form."""
    assert TYPED.to_wire() == RAW
    config = SessionConfig(provider_data=TYPED)
    assert config.provider_data == RAW
    assert config.to_wire()["providerData"] == RAW
    assert_ga_client_event(json.loads(encode(c.SessionUpdate(session=config.to_wire()))))


def test_raw_dict_keeps_working_and_reads_typed() -> None:
    """The raw-dict form is accepted as before, and provider_settings reads it back typed."""
    config = SessionConfig(provider_data=RAW)
    assert config == SessionConfig(provider_data=TYPED)
    assert config.provider_settings == TYPED
    assert config_from_wire(config.to_wire()) == config


def test_unmodelled_keys_pass_through_untouched() -> None:
    """Unknown branches and unknown keys inside a branch go to ``extra`` and come out as given."""
    raw = {
        "tts": {"delivery_mode": "STABLE", "new_knob": 3},
        "future_branch": {"on": True},
        "auto_tool_response": False,
    }
    typed = ProviderData.from_wire(raw)
    assert typed.extra == {"future_branch": {"on": True}}
    assert typed.tts is not None and typed.tts.extra == {"new_knob": 3}
    assert typed.to_wire() == raw
    assert SessionConfig(provider_data=raw).provider_data == raw
    built = ProviderData(tts=TtsSettings(language="de", extra={"new_knob": 1}), extra={"x": [1]})
    assert built.to_wire() == {"tts": {"language": "de", "new_knob": 1}, "x": [1]}


@pytest.mark.parametrize(
    ("param", "raw"),
    [
        ("provider_data.tts.delivery_mode", {"tts": {"delivery_mode": "LOUD"}}),
        ("provider_data.tts.timestamp_type", {"tts": {"timestamp_type": "word"}}),
        ("provider_data.tts.conversational", {"tts": {"conversational": "yes"}}),
        ("provider_data.stt", {"stt": 5}),
        ("provider_data.stt.vad_threshold", {"stt": {"vad_threshold": 2}}),
        ("provider_data.stt.language_hints", {"stt": {"language_hints": [1]}}),
        ("provider_data.stt.max_turn_silence", {"stt": {"max_turn_silence": -5}}),
        ("provider_data.memory.enabled", {"memory": {"enabled": 1}}),
        ("provider_data.memory.turn_interval", {"memory": {"turn_interval": 0}}),
        ("provider_data.backchannel.temperature", {"backchannel": {"temperature": 9}}),
        ("provider_data.responsiveness.hard_deadline_ms", {"responsiveness": {"hard_deadline_ms": 1.5}}),
        ("provider_data.caching.ttl", {"caching": {"ttl": 300}}),
        ("provider_data.auto_tool_response", {"auto_tool_response": "false"}),
        ("provider_data.user_id", {"user_id": 42}),
        ("provider_data.metadata", {"metadata": {"n": 1}}),
        ("provider_data.text_generation_config", {"text_generation_config": [1]}),
        ("provider_data", {"x": float("nan")}),
    ],
)
def test_invalid_known_fields_are_refused_in_raw_dicts_too(param: str, raw: dict[str, Any]) -> None:
    """A typo or wrong type in a documented field fails at construction, naming its path."""
    with pytest.raises(ConfigError) as info:
        SessionConfig(provider_data=raw)
    assert info.value.param == param


def test_extra_cannot_shadow_a_typed_field() -> None:
    """``extra`` is for keys not modelled: a typed key there is refused (one place per field)."""
    with pytest.raises(ConfigError) as info:
        TtsSettings(extra={"delivery_mode": "STABLE"})
    assert info.value.param == "provider_data.tts.extra"


@pytest.mark.parametrize(
    "cls",
    [
        SttSettings,
        TtsSettings,
        MemorySettings,
        BackchannelSettings,
        ResponsivenessSettings,
        CachingSettings,
        ProviderData,
    ],
)
def test_every_field_has_a_validator(cls: Any) -> None:
    """A field added without a validator fails here."""
    assert [f.name for f in attrs.fields(cls) if f.validator is None] == []


def test_inworld_provider_keeps_its_defaults_beside_typed_settings() -> None:
    """engine.Inworld merges its sdk metadata and auto_tool_response=false over typed settings."""
    prepared = engine.Inworld(api_key="local-key-0001").prepare(
        SessionConfig(provider_data=ProviderData(tts=TtsSettings(delivery_mode="BALANCED")))
    )
    assert prepared.provider_data is not None
    assert prepared.provider_data["auto_tool_response"] is False
    assert prepared.provider_data["tts"] == {"delivery_mode": "BALANCED"}
    assert prepared.provider_data["metadata"]["sdk"] == "engine"
