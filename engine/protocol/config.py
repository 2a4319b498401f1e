"""Session configuration: frozen, validated at construction, rendered to the GA shape.

``SessionConfig`` is the one place a session's settings live. ``to_wire()``
gives the ``session`` object of ``session.update`` (GA layout: ``audio.input``
/ ``audio.output``; Inworld extensions ``temperature``, ``audio.output.model``
and ``providerData`` only when set). Invalid values raise :class:`ConfigError`,
a ``ValueError`` whose ``param`` names the field.
``None`` always means "not set: keep the server's value", except for
``turn_detection``, where ``None`` means manual turns and is sent as ``null``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import attrs
from attrs import validators as v

from engine.protocol._checks import (
    _BOOL,
    _INT,
    _TEXT,
    _as_tuple,
    _clip,
    _in_range,
    _json_object,
    _named,
    _one_of,
)
from engine.protocol._checks import ConfigError as ConfigError  # re-exported: its public home
from engine.protocol._wire import to_wire
from engine.protocol.fields import (
    INCLUDE_VALUES,
    McpTool,
    McpToolChoice,
    NoiseReduction,
    PromptRef,
    Reasoning,
    Truncation,
    _check_truncation,
    truncation_from_wire,
    truncation_to_wire,
)

if TYPE_CHECKING:
    from engine.protocol.inworld import ProviderData


def _provider_data_wire(value: Any) -> Any:
    """Converter: a ``ProviderData`` becomes its wire dict (engine.protocol.inworld loads on first use)."""
    if value is None or isinstance(value, dict):
        return value
    from engine.protocol.inworld import provider_data_wire

    return provider_data_wire(value)


def _check_provider_data(instance: Any, attribute: Any, value: Any) -> None:
    """Validator: see ``engine.protocol.inworld.check_provider_data`` (imported only when set)."""
    if value is None:
        return
    from engine.protocol.inworld import check_provider_data

    check_provider_data(instance, attribute, value)


def _as_wire(value: Any) -> dict[str, Any]:
    """A config object as its GA JSON object, by the wire layer's rules (``None`` fields left out)."""
    out: dict[str, Any] = to_wire(value)
    return out


PCM_RATES = (8000, 16000, 24000, 32000, 44100, 48000)
"""PCM sample rates Inworld accepts (OpenAI accepts 24000 only)."""
FORMAT_TYPES = ("audio/pcm", "audio/pcmu", "audio/pcma")
EAGERNESS = ("low", "medium", "high", "auto")
MODALITIES = ("audio", "text")
TOOL_CHOICES = ("auto", "none", "required")
SPEED_RANGE = (0.25, 4.0)
TEMPERATURE_RANGE = (0.0, 2.0)
MAX_OUTPUT_TOKENS = 4096
"""The largest integer ``max_output_tokens`` (or ``"inf"``)."""


@attrs.frozen(kw_only=True)
class AudioFormat:
    """``audio/pcm`` (16-bit little-endian mono) at ``rate``, or G.711 ``pcmu``/``pcma`` at 8 kHz."""

    type: str = attrs.field(default="audio/pcm", validator=_one_of("format.type", FORMAT_TYPES))
    rate: int = attrs.field(
        default=attrs.Factory(lambda self: 24000 if self.type == "audio/pcm" else 8000, takes_self=True),
        validator=_named("format.rate", _INT),
    )

    @rate.validator
    def _check_rate(self, _: Any, value: int) -> None:
        if self.type == "audio/pcm":
            if value not in PCM_RATES:
                raise ConfigError("format.rate", f"{value!r} is not a PCM rate; use one of {PCM_RATES}")
        elif value != 8000:
            raise ConfigError("format.rate", f"{self.type} is fixed at 8000 Hz, got {value!r}")

    @property
    def bytes_per_second(self) -> int:
        """Bytes of audio per second in this format (PCM16 is 2 bytes a sample, G.711 one)."""
        return self.rate * (2 if self.type == "audio/pcm" else 1)

    def to_wire(self) -> dict[str, Any]:
        """GA format object (G.711 formats carry no rate)."""
        if self.type == "audio/pcm":
            return {"type": self.type, "rate": self.rate}
        return {"type": self.type}


@attrs.frozen(kw_only=True)
class Transcription:
    """Input transcription: the STT model (e.g. ``inworld/inworld-stt-1``), optional language and prompt."""

    model: str = attrs.field(validator=_named("transcription.model", _TEXT, v.min_len(1)))
    language: str | None = attrs.field(
        default=None, validator=_named("transcription.language", v.optional(_TEXT))
    )
    prompt: str | None = attrs.field(
        default=None, validator=_named("transcription.prompt", v.optional(_TEXT))
    )

    def to_wire(self) -> dict[str, Any]:
        """GA transcription object."""
        return _as_wire(self)


@attrs.frozen(kw_only=True)
class SemanticVad:
    """Semantic turn detection (Inworld's default)."""

    TYPE: ClassVar[str] = "semantic_vad"
    eagerness: str = attrs.field(default="low", validator=_one_of("turn_detection.eagerness", EAGERNESS))
    create_response: bool = attrs.field(
        default=True, validator=_named("turn_detection.create_response", _BOOL)
    )
    interrupt_response: bool = attrs.field(
        default=True, validator=_named("turn_detection.interrupt_response", _BOOL)
    )

    def to_wire(self) -> dict[str, Any]:
        """GA ``semantic_vad`` object."""
        return _as_wire(self)


@attrs.frozen(kw_only=True)
class ServerVad:
    """Energy-based server turn detection with its thresholds."""

    TYPE: ClassVar[str] = "server_vad"
    threshold: float = attrs.field(default=0.5, validator=_in_range("turn_detection.threshold", 0.0, 1.0))
    prefix_padding_ms: int = attrs.field(
        default=300, validator=_in_range("turn_detection.prefix_padding_ms", 0, 10_000, integer=True)
    )
    silence_duration_ms: int = attrs.field(
        default=500, validator=_in_range("turn_detection.silence_duration_ms", 0, 10_000, integer=True)
    )
    idle_timeout_ms: int | None = attrs.field(
        default=None, validator=_in_range("turn_detection.idle_timeout_ms", 1, 3_600_000, integer=True)
    )
    create_response: bool = attrs.field(
        default=True, validator=_named("turn_detection.create_response", _BOOL)
    )
    interrupt_response: bool = attrs.field(
        default=True, validator=_named("turn_detection.interrupt_response", _BOOL)
    )

    def to_wire(self) -> dict[str, Any]:
        """GA ``server_vad`` object (``idle_timeout_ms`` only when set)."""
        return _as_wire(self)


TurnDetection = SemanticVad | ServerVad


@attrs.frozen(kw_only=True)
class FunctionTool:
    """A function the model may call: name, description and a JSON-schema ``parameters`` object."""

    TYPE: ClassVar[str] = "function"
    name: str = attrs.field()
    description: str = attrs.field(default="", validator=_named("tools.description", _TEXT))
    parameters: dict[str, Any] = attrs.field(
        factory=lambda: {"type": "object", "properties": {}}, validator=_json_object("tools.parameters")
    )

    @name.validator
    def _check_name(self, _: Any, value: str) -> None:
        if (
            not isinstance(value, str)
            or not value
            or not all(c.isalnum() or c in "_-" for c in value)
            or len(value) > 64
        ):
            raise ConfigError("tools.name", f"{value!r} must be 1-64 letters, digits, '_' or '-'")

    def to_wire(self) -> dict[str, Any]:
        """GA function tool object."""
        return _as_wire(self)


def _check_modalities(_: Any, __: Any, value: tuple[str, ...]) -> None:
    if (
        not isinstance(value, tuple)
        or not value
        or not all(isinstance(m, str) and m in MODALITIES for m in value)
        or len(set(value)) != len(value)
    ):
        raise ConfigError("output_modalities", f"{_clip(value)} must be 'audio', 'text' or both, once each")


def _check_max_tokens(_: Any, __: Any, value: int | str | None) -> None:
    if value is None or value == "inf":
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_OUTPUT_TOKENS:
        raise ConfigError(
            "max_output_tokens", f"{value!r} must be an integer in [1, {MAX_OUTPUT_TOKENS}] or 'inf'"
        )


def _check_tool_choice(_: Any, __: Any, value: str | McpToolChoice | None) -> None:
    if isinstance(value, McpToolChoice):
        return
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(
            "tool_choice", "must be 'auto', 'none', 'required', a tool name or an McpToolChoice"
        )


def _check_include(_: Any, __: Any, value: tuple[str, ...]) -> None:
    if not isinstance(value, tuple) or not all(isinstance(i, str) and i in INCLUDE_VALUES for i in value):
        raise ConfigError("include", f"{_clip(value)} may only hold {INCLUDE_VALUES}")


Tool = FunctionTool | McpTool
"""A tool declaration: a function we answer, or an MCP server the provider calls."""


@attrs.frozen(kw_only=True)
class SessionConfig:
    """Everything a session can configure. ``None`` leaves the server's default in place.

    Attributes:
        instructions: the system prompt.
        model: the LLM (Inworld: ``provider/model`` or a router; OpenAI: fixed at connect).
        voice: the output voice (``Clive``, ``Sarah``, ``marin``...).
        tts_model: Inworld's TTS model (``inworld-tts-2``); an Inworld extension.
        temperature: sampling temperature; an Inworld extension (GA has none).
        speed: speaking rate of the output audio.
        output_modalities: ``("audio",)``, ``("text",)`` or, on Inworld, both.
        input_format / output_format: audio formats of the two directions.
        transcription: input transcription settings (``None``: server default).
        turn_detection: ``SemanticVad``, ``ServerVad`` or ``None`` for manual turns.
        tools: function tools the model may call, and MCP servers (``McpTool``).
        tool_choice: ``auto``, ``none``, ``required``, the name of one function or an ``McpToolChoice``.
        max_output_tokens: 1-4096 or ``"inf"``.
        provider_data: Inworld's ``providerData``: a ``ProviderData`` or the raw dict, validated
            either way and kept as its wire dict.
        noise_reduction: input noise reduction (``NoiseReduction``); GA only.
        reasoning: reasoning effort (``Reasoning``) of reasoning models; GA only.
        truncation: ``"auto"``, ``"disabled"`` or ``RetentionRatio``; GA only.
        prompt: a stored prompt template (``PromptRef``); GA only.
        include: extra server outputs (``"item.input_audio_transcription.logprobs"``); GA only.
    """

    instructions: str | None = attrs.field(default=None, validator=_named("instructions", v.optional(_TEXT)))
    model: str | None = attrs.field(default=None, validator=_named("model", v.optional(_TEXT)))
    voice: str | None = attrs.field(default=None, validator=_named("voice", v.optional(_TEXT)))
    tts_model: str | None = attrs.field(default=None, validator=_named("tts_model", v.optional(_TEXT)))
    temperature: float | None = attrs.field(
        default=None, validator=_in_range("temperature", *TEMPERATURE_RANGE)
    )
    speed: float | None = attrs.field(default=None, validator=_in_range("speed", *SPEED_RANGE))
    output_modalities: tuple[str, ...] = attrs.field(
        default=("audio",), converter=_as_tuple, validator=_check_modalities
    )
    input_format: AudioFormat = attrs.field(
        default=AudioFormat(), validator=_named("input_format", v.instance_of(AudioFormat))
    )
    output_format: AudioFormat = attrs.field(
        default=AudioFormat(), validator=_named("output_format", v.instance_of(AudioFormat))
    )
    transcription: Transcription | None = attrs.field(
        default=None, validator=_named("transcription", v.optional(v.instance_of(Transcription)))
    )
    turn_detection: TurnDetection | None = attrs.field(
        default=SemanticVad(),
        validator=_named("turn_detection", v.optional(v.instance_of((SemanticVad, ServerVad)))),
    )
    tools: tuple[Tool, ...] = attrs.field(
        default=(),
        converter=_as_tuple,
        validator=_named(
            "tools", v.deep_iterable(v.instance_of((FunctionTool, McpTool)), v.instance_of(tuple))
        ),
    )
    tool_choice: str | McpToolChoice | None = attrs.field(default=None, validator=_check_tool_choice)
    max_output_tokens: int | str | None = attrs.field(default=None, validator=_check_max_tokens)
    provider_data: dict[str, Any] | None = attrs.field(
        default=None, converter=_provider_data_wire, validator=_check_provider_data
    )
    noise_reduction: NoiseReduction | None = attrs.field(
        default=None, validator=_named("noise_reduction", v.optional(v.instance_of(NoiseReduction)))
    )
    reasoning: Reasoning | None = attrs.field(
        default=None, validator=_named("reasoning", v.optional(v.instance_of(Reasoning)))
    )
    truncation: Truncation | None = attrs.field(default=None, validator=_check_truncation)
    prompt: PromptRef | None = attrs.field(
        default=None, validator=_named("prompt", v.optional(v.instance_of(PromptRef)))
    )
    include: tuple[str, ...] = attrs.field(default=(), converter=_as_tuple, validator=_check_include)

    @tools.validator
    def _check_tools(self, _: Any, value: tuple[Tool, ...]) -> None:
        names = [t.name if isinstance(t, FunctionTool) else f"mcp:{t.server_label}" for t in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError("tools", f"duplicate tool names {dupes}")

    @property
    def provider_settings(self) -> ProviderData | None:
        """``provider_data`` as typed Inworld settings (unset: ``None``)."""
        if self.provider_data is None:
            return None
        from engine.protocol.inworld import ProviderData

        settings: ProviderData = ProviderData.from_wire(self.provider_data)
        return settings

    @property
    def function_tools(self) -> tuple[FunctionTool, ...]:
        """The tools this library answers (MCP tools are called by the provider)."""
        return tuple(t for t in self.tools if isinstance(t, FunctionTool))

    def to_wire(self) -> dict[str, Any]:
        """The ``session`` object of a full ``session.update``."""
        audio_in: dict[str, Any] = {"format": self.input_format.to_wire()}
        if self.transcription is not None:
            audio_in["transcription"] = self.transcription.to_wire()
        # null is meaningful here: it turns server VAD off (manual turns).
        audio_in["turn_detection"] = None if self.turn_detection is None else self.turn_detection.to_wire()
        if self.noise_reduction is not None:
            audio_in["noise_reduction"] = self.noise_reduction.to_wire()
        audio_out: dict[str, Any] = {"format": self.output_format.to_wire()}
        for key, value in (("voice", self.voice), ("model", self.tts_model), ("speed", self.speed)):
            if value is not None:
                audio_out[key] = value
        out: dict[str, Any] = {"type": "realtime"}
        for key, value in (("model", self.model), ("instructions", self.instructions)):
            if value is not None:
                out[key] = value
        out["output_modalities"] = list(self.output_modalities)
        out["audio"] = {"input": audio_in, "output": audio_out}
        if self.temperature is not None:
            out["temperature"] = self.temperature
        if self.tools:
            out["tools"] = [t.to_wire() for t in self.tools]
        if self.tool_choice is not None:
            out["tool_choice"] = _tool_choice_to_wire(self.tool_choice)
        if self.max_output_tokens is not None:
            out["max_output_tokens"] = self.max_output_tokens
        if self.provider_data is not None:
            out["providerData"] = self.provider_data
        if self.reasoning is not None:
            out["reasoning"] = self.reasoning.to_wire()
        if self.truncation is not None:
            out["truncation"] = truncation_to_wire(self.truncation)
        if self.prompt is not None:
            out["prompt"] = self.prompt.to_wire()
        if self.include:
            out["include"] = list(self.include)
        return out

    @property
    def server_creates_response(self) -> bool:
        """True when the server starts a response by itself at the end of a user turn."""
        return self.turn_detection is not None and self.turn_detection.create_response

    @property
    def server_interrupts_response(self) -> bool:
        """True when the server cancels a response by itself when the user barges in."""
        return self.turn_detection is not None and self.turn_detection.interrupt_response


def _tool_choice_to_wire(choice: str | McpToolChoice) -> Any:
    if isinstance(choice, McpToolChoice):
        return choice.to_wire()
    return choice if choice in TOOL_CHOICES else {"type": "function", "name": choice}


def _tool_choice_from_wire(choice: Any) -> str | McpToolChoice | None:
    if isinstance(choice, dict) and choice.get("type") == "mcp":
        return McpToolChoice(server_label=choice.get("server_label"), name=choice.get("name"))  # type: ignore[arg-type]
    out: str | None = choice["name"] if isinstance(choice, dict) else choice
    return out


def _tool_from_wire(t: dict[str, Any]) -> Tool:
    if t.get("type") == McpTool.TYPE:
        return McpTool.from_wire(t)
    return FunctionTool(
        name=t["name"], description=t.get("description", ""), parameters=t.get("parameters", {})
    )


def config_from_wire(session: dict[str, Any]) -> SessionConfig:
    """Rebuild a ``SessionConfig`` from the ``session`` object ``to_wire`` produced.

    The inverse of :meth:`SessionConfig.to_wire` (used to replay recordings);
    invalid values raise :class:`ConfigError` as at construction.
    """
    audio = session.get("audio") or {}
    audio_in, audio_out = audio.get("input") or {}, audio.get("output") or {}
    detection = audio_in.get("turn_detection", SemanticVad().to_wire())
    turn_detection: TurnDetection | None = None
    if detection is not None:
        kind = detection.get("type")
        fields = {k: v for k, v in detection.items() if k != "type"}
        turn_detection = ServerVad(**fields) if kind == "server_vad" else SemanticVad(**fields)
    transcription = audio_in.get("transcription")
    noise = audio_in.get("noise_reduction")
    reasoning, truncation, prompt = session.get("reasoning"), session.get("truncation"), session.get("prompt")
    return SessionConfig(
        instructions=session.get("instructions"),
        model=session.get("model"),
        voice=audio_out.get("voice"),
        tts_model=audio_out.get("model"),
        temperature=session.get("temperature"),
        speed=audio_out.get("speed"),
        output_modalities=tuple(session.get("output_modalities") or ("audio",)),
        input_format=AudioFormat(**(audio_in.get("format") or {})),
        output_format=AudioFormat(**(audio_out.get("format") or {})),
        transcription=Transcription(**transcription) if transcription else None,
        turn_detection=turn_detection,
        tools=tuple(_tool_from_wire(t) for t in session.get("tools") or ()),
        tool_choice=_tool_choice_from_wire(session.get("tool_choice")),
        max_output_tokens=session.get("max_output_tokens"),
        provider_data=session.get("providerData"),
        noise_reduction=NoiseReduction.from_wire(noise) if noise else None,
        reasoning=Reasoning(effort=reasoning.get("effort")) if reasoning else None,
        truncation=truncation_from_wire(truncation) if truncation is not None else None,
        prompt=PromptRef.from_wire(prompt) if prompt else None,
        include=tuple(session.get("include") or ()),
    )
