"""The GA session fields beyond the core set: validated at construction, GA-exact, refused per profile."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from openai.types.realtime import RealtimeClientEvent

import engine
from engine.profiles import GA_FEATURES, INWORLD, OPENAI
from engine.protocol import client as c
from engine.protocol import encode
from engine.protocol.config import ConfigError, FunctionTool, SessionConfig, config_from_wire
from engine.protocol.fields import (
    ApprovalFilter,
    McpTool,
    McpToolChoice,
    NoiseReduction,
    PromptRef,
    Reasoning,
    RetentionRatio,
)
from engine.redaction import redact
from tests.protocol.ga_oracle import assert_ga_valid

TOKEN = "mcp-bearer-0123456789abcdef"
MCP = McpTool(
    server_label="docs",
    server_url="https://mcp.example.com/sse",
    allowed_tools=["search", "fetch"],
    require_approval=ApprovalFilter(never=["search"], always=["fetch"]),
    headers={"Authorization": f"Bearer {TOKEN}"},
    description="Product documentation.",
)

GA_CONFIGS: dict[str, SessionConfig] = {
    "noise_near": SessionConfig(noise_reduction=NoiseReduction(type="near_field")),
    "noise_far_strength": SessionConfig(noise_reduction=NoiseReduction(type="far_field", strength=0.5)),
    "reasoning": SessionConfig(reasoning=Reasoning(effort="low")),
    "truncation_auto": SessionConfig(truncation="auto"),
    "truncation_disabled": SessionConfig(truncation="disabled"),
    "retention": SessionConfig(truncation=RetentionRatio(retention_ratio=0.8, post_instructions=5000)),
    "retention_bare": SessionConfig(truncation=RetentionRatio(retention_ratio=0.5)),
    "prompt": SessionConfig(prompt=PromptRef(id="pmpt_123", version="2", variables={"city": "Paris"})),
    "prompt_input_var": SessionConfig(
        prompt=PromptRef(id="pmpt_123", variables={"greeting": {"type": "input_text", "text": "hi"}})
    ),
    "include": SessionConfig(include=["item.input_audio_transcription.logprobs"]),
    "mcp": SessionConfig(tools=[MCP, FunctionTool(name="get_weather")], tool_choice="required"),
    "mcp_minimal": SessionConfig(tools=[McpTool(server_label="x", server_url="https://x.example")]),
    "mcp_approval_mode": SessionConfig(
        tools=[McpTool(server_label="x", server_url="https://x.example", require_approval="never")],
        tool_choice=McpToolChoice(server_label="x", name="lookup"),
    ),
    "mcp_choice_any": SessionConfig(
        tools=[McpTool(server_label="x", server_url="https://x.example", authorization="oauth-token-xyz")],
        tool_choice=McpToolChoice(server_label="x"),
    ),
}


def _update(config: SessionConfig) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(encode(c.SessionUpdate(session=config.to_wire())))
    return data


@pytest.mark.parametrize("name", sorted(GA_CONFIGS))
def test_new_fields_are_strictly_ga(name: str) -> None:
    """Each field renders to a GA ``session.update`` with no key GA lacks (no Inworld exceptions)."""
    assert_ga_valid(_update(GA_CONFIGS[name]), RealtimeClientEvent, allowed_extras=())


@pytest.mark.parametrize("name", sorted(GA_CONFIGS))
def test_new_fields_survive_the_wire_round_trip(name: str) -> None:
    """config_from_wire(to_wire()) rebuilds the same config (recordings replay through it)."""
    config = GA_CONFIGS[name]
    assert config_from_wire(config.to_wire()) == config


def test_wire_shapes() -> None:
    """Where each field lands on the wire, key by key."""
    wire = SessionConfig(
        noise_reduction=NoiseReduction(type="far_field", strength=0.5),
        reasoning=Reasoning(effort="high"),
        truncation=RetentionRatio(retention_ratio=0.8, post_instructions=5000),
        prompt=PromptRef(id="pmpt_1"),
        include=("item.input_audio_transcription.logprobs",),
        tools=[MCP],
        tool_choice=McpToolChoice(server_label="docs", name="search"),
    ).to_wire()
    assert wire["audio"]["input"]["noise_reduction"] == {"type": "far_field", "strength": 0.5}
    assert wire["reasoning"] == {"effort": "high"}
    assert wire["truncation"] == {
        "type": "retention_ratio",
        "retention_ratio": 0.8,
        "token_limits": {"post_instructions": 5000},
    }
    assert wire["prompt"] == {"id": "pmpt_1"}
    assert wire["include"] == ["item.input_audio_transcription.logprobs"]
    assert wire["tool_choice"] == {"type": "mcp", "server_label": "docs", "name": "search"}
    assert wire["tools"] == [
        {
            "type": "mcp",
            "server_label": "docs",
            "server_url": "https://mcp.example.com/sse",
            "allowed_tools": ["search", "fetch"],
            "require_approval": {"always": {"tool_names": ["fetch"]}, "never": {"tool_names": ["search"]}},
            "headers": {"Authorization": f"Bearer {TOKEN}"},
            "server_description": "Product documentation.",
        }
    ]
    unset = SessionConfig().to_wire()
    assert not {"reasoning", "truncation", "prompt", "include"} & set(unset)
    assert "noise_reduction" not in unset["audio"]["input"]


_INVALID: list[tuple[str, Any]] = [
    ("noise_reduction.type", lambda: NoiseReduction(type="studio")),
    ("noise_reduction.type", lambda: NoiseReduction(type=None)),
    ("noise_reduction.strength", lambda: NoiseReduction(type="near_field", strength=-1)),
    ("noise_reduction.strength", lambda: NoiseReduction(type="near_field", strength="high")),
    ("noise_reduction", lambda: SessionConfig(noise_reduction="near_field")),
    ("reasoning.effort", lambda: Reasoning(effort="max")),
    ("reasoning", lambda: SessionConfig(reasoning="low")),
    ("truncation", lambda: SessionConfig(truncation="sometimes")),
    ("truncation", lambda: SessionConfig(truncation={"type": "retention_ratio", "retention_ratio": 0.5})),
    ("truncation.retention_ratio", lambda: RetentionRatio(retention_ratio=1.5)),
    ("truncation.retention_ratio", lambda: RetentionRatio(retention_ratio=None)),
    (
        "truncation.token_limits.post_instructions",
        lambda: RetentionRatio(retention_ratio=0.5, post_instructions=0),
    ),
    ("prompt.id", lambda: PromptRef(id="")),
    ("prompt.version", lambda: PromptRef(id="p", version=2)),
    ("prompt.variables", lambda: PromptRef(id="p", variables=["a"])),
    ("prompt.variables.n", lambda: PromptRef(id="p", variables={"n": 3})),
    ("prompt", lambda: SessionConfig(prompt={"id": "p"})),
    ("include", lambda: SessionConfig(include=["item.everything"])),
    ("include", lambda: SessionConfig(include=5)),
    ("tools", lambda: SessionConfig(tools=[MCP, MCP])),
    ("tools.server_label", lambda: McpTool(server_label="", server_url="https://x")),
    ("tools.server_url", lambda: McpTool(server_label="x", server_url="ftp://x")),
    ("tools.server_url", lambda: McpTool(server_label="x", server_url=None)),
    ("tools.allowed_tools", lambda: McpTool(server_label="x", server_url="https://x", allowed_tools=[1])),
    (
        "tools.require_approval",
        lambda: McpTool(server_label="x", server_url="https://x", require_approval="yes"),
    ),
    ("tools.headers", lambda: McpTool(server_label="x", server_url="https://x", headers={"X-Key": ""})),
    ("tools.headers", lambda: McpTool(server_label="x", server_url="https://x", headers=[("a", "b")])),
    ("tools.authorization", lambda: McpTool(server_label="x", server_url="https://x", authorization=5)),
    ("tool_choice.server_label", lambda: McpToolChoice(server_label="")),
    ("tool_choice", lambda: SessionConfig(tool_choice={"type": "mcp", "server_label": "x"})),
]


@pytest.mark.parametrize(("param", "build"), _INVALID)
def test_invalid_values_are_refused_naming_the_field(param: str, build: Any) -> None:
    """Bad values never reach the wire: a ConfigError whose param names the field."""
    with pytest.raises(ConfigError) as info:
        build()
    assert info.value.param == param


@pytest.mark.parametrize(
    "cls", [NoiseReduction, Reasoning, RetentionRatio, PromptRef, ApprovalFilter, McpTool, McpToolChoice]
)
def test_every_new_field_has_a_validator(cls: Any) -> None:
    """A field added without a validator fails here."""
    assert [f.name for f in attrs.fields(cls) if f.validator is None] == []


def test_mcp_credentials_hide_from_reprs_and_recordings() -> None:
    """Headers and the OAuth token are Secrets: not in repr, redacted from any text written out."""
    tool = attrs.evolve(MCP, authorization="oauth-token-0123456789")
    config = SessionConfig(tools=[tool])
    for text in (repr(tool), repr(config), str(config)):
        assert TOKEN not in text and "oauth-token-0123456789" not in text
    line = encode(c.SessionUpdate(session=config.to_wire()))  # what a recording line holds before redact()
    assert TOKEN in line
    assert TOKEN not in redact(line) and "oauth-token-0123456789" not in redact(line)


@pytest.mark.parametrize("name", sorted(GA_CONFIGS))
def test_openai_profile_accepts_every_ga_field(name: str) -> None:
    """OpenAI declares every GA feature."""
    assert set(GA_FEATURES) <= set(OPENAI.features)
    OPENAI.check(GA_CONFIGS[name])


@pytest.mark.parametrize(
    ("name", "param"),
    [
        ("noise_near", "noise_reduction"),
        ("reasoning", "reasoning"),
        ("retention", "truncation"),
        ("prompt", "prompt"),
        ("include", "include"),
        ("mcp", "tools"),
        ("mcp_choice_any", "tools"),
    ],
)
def test_inworld_refuses_what_it_does_not_document_locally(name: str, param: str) -> None:
    """Inworld refuses each GA field it lacks before connecting, naming the field and the provider."""
    with pytest.raises(ConfigError) as info:
        engine.Inworld(api_key="local-key-0001").prepare(GA_CONFIGS[name])
    assert info.value.param == param
    assert "inworld does not support" in str(info.value)


def test_inworld_accepts_tool_choice_modes_and_functions() -> None:
    """Inworld documents tool_choice: the modes and a function name pass its check."""
    for choice in ("auto", "none", "required", "get_weather"):
        INWORLD.check(SessionConfig(tools=[FunctionTool(name="get_weather")], tool_choice=choice))
