"""Inworld's ``providerData`` as typed, validated settings (docs/protocol.md §4.4).

One class per documented branch (``stt``, ``tts``, ``memory``, ``backchannel``,
``responsiveness``, ``caching``) and :class:`ProviderData` for the whole
object. Every field is optional (unset: the server keeps its value, as
``providerData`` is merged key by key) and checked at construction. Each
branch and the root take ``extra``, a mapping of keys not modelled yet, sent
as given (still checked to be JSON): Inworld adds fields faster than a
library can follow.

``SessionConfig(provider_data=...)`` takes a :class:`ProviderData` or the raw
dict; either is validated through these classes and kept in its wire form,
so a raw dict keeps working and a typo in a known field fails at construction.
``text_generation_config`` stays a passthrough object: its camelCase fields
depend on the LLM provider behind Inworld's router.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from attrs import validators as v

from engine.protocol._checks import (
    _BOOL,
    _TEXT,
    ConfigError,
    _as_tuple,
    _in_range,
    _json_object,
    _named,
    _one_of,
)

_MS = 3_600_000
"""The largest duration accepted for a millisecond field (an hour)."""


def _bool(name: str) -> Any:
    return attrs.field(default=None, validator=_named(name, v.optional(_BOOL)))


def _text(name: str) -> Any:
    return attrs.field(default=None, validator=_named(name, v.optional(_TEXT)))


def _int(name: str, low: int = 0, high: int = _MS) -> Any:
    return attrs.field(default=None, validator=_in_range(name, low, high, integer=True))


def _float(name: str, low: float, high: float) -> Any:
    return attrs.field(default=None, validator=_in_range(name, low, high))


def _choice(name: str, choices: tuple[str, ...]) -> Any:
    check = _one_of(name, choices)

    def optional(instance: Any, attribute: Any, value: Any) -> None:
        if value is not None:
            check(instance, attribute, value)

    return attrs.field(default=None, validator=optional)


def _texts(name: str) -> Any:
    return attrs.field(
        default=None,
        converter=attrs.converters.optional(_as_tuple),
        validator=_named(name, v.optional(v.deep_iterable(_TEXT, v.instance_of(tuple)))),
    )


def _extra(name: str) -> Any:
    def check(instance: Any, attribute: Any, value: Any) -> None:
        _json_object(name)(instance, attribute, value)
        known = {f.name for f in attrs.fields(type(instance))} - {"extra"}
        clash = sorted(known & set(value))
        if clash:
            raise ConfigError(name, f"{clash} are typed fields: set them by name, not in extra")

    return attrs.field(factory=dict, converter=dict, validator=check)


class _Wire:
    """to_wire/from_wire for a class of optional fields plus ``extra``."""

    @classmethod
    def _nested(cls) -> dict[str, type[_Wire]]:
        return {}

    def to_wire(self) -> dict[str, Any]:
        """The branch as Inworld's JSON: set fields, then ``extra``."""
        nested = self._nested()
        out: dict[str, Any] = {}
        for field in attrs.fields(type(self)):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            if field.name == "extra" or value is None:
                continue
            if field.name in nested:
                out[field.name] = value.to_wire()
            else:
                out[field.name] = list(value) if isinstance(value, tuple) else value
        out.update(getattr(self, "extra", {}))
        return out

    @classmethod
    def from_wire(cls, data: Mapping[str, Any], where: str = "provider_data") -> Any:
        """Known keys to fields, the rest to ``extra``; a branch that is not an object is refused."""
        if not isinstance(data, Mapping):
            raise ConfigError(where, f"{data!r:.80} must be an object")
        nested = cls._nested()
        names = {f.name for f in attrs.fields(cls)} - {"extra"}  # type: ignore[arg-type]
        known: dict[str, Any] = {}
        for key in names & set(data):
            value = data[key]
            if key in nested and value is not None:
                value = nested[key].from_wire(value, f"{where}.{key}")
            known[key] = value
        build: Any = cls  # an attrs subclass: its fields are keyword arguments
        return build(**known, extra={k: val for k, val in data.items() if k not in names})


SEGMENTER_STRATEGIES = ("auto", "balanced", "sentence", "full_turn", "fast_start", "per_segment_context")
STEERING_HANDLING = ("repeat_each_chunk", "emit_once")
DELIVERY_MODES = ("STABLE", "BALANCED", "CREATIVE")
USER_TURN_MODES = ("both", "audio_only", "text_only", "none")
TIMESTAMP_TYPES = ("WORD", "CHARACTER")
TIMESTAMP_TRANSPORTS = ("SYNC", "ASYNC")

_P = "provider_data"


@attrs.frozen(kw_only=True)
class SttSettings(_Wire):
    """``providerData.stt``: transcription hints and Inworld's own end-of-turn and VAD overrides."""

    prompt: str | None = _text(f"{_P}.stt.prompt")
    voice_profile: bool | None = _bool(f"{_P}.stt.voice_profile")
    language_hints: tuple[str, ...] | None = _texts(f"{_P}.stt.language_hints")
    end_of_turn_confidence_threshold: float | None = _float(
        f"{_P}.stt.end_of_turn_confidence_threshold", 0, 1
    )
    vad_threshold: float | None = _float(f"{_P}.stt.vad_threshold", 0, 1)
    min_end_of_turn_silence: int | None = _int(f"{_P}.stt.min_end_of_turn_silence")
    max_turn_silence: int | None = _int(f"{_P}.stt.max_turn_silence")
    extra: dict[str, Any] = _extra(f"{_P}.stt.extra")


@attrs.frozen(kw_only=True)
class TtsSettings(_Wire):
    """``providerData.tts``: segmentation, steering, language, delivery and timestamps.

    ``conversational`` and ``user_turn_mode`` are fixed when the session opens;
    ``timestamp_type`` asks for word or character alignment (lip-sync, captions).
    """

    segmenter_strategy: str | None = _choice(f"{_P}.tts.segmenter_strategy", SEGMENTER_STRATEGIES)
    steering_handling: str | None = _choice(f"{_P}.tts.steering_handling", STEERING_HANDLING)
    language: str | None = _text(f"{_P}.tts.language")
    delivery_mode: str | None = _choice(f"{_P}.tts.delivery_mode", DELIVERY_MODES)
    conversational: bool | None = _bool(f"{_P}.tts.conversational")
    user_turn_mode: str | None = _choice(f"{_P}.tts.user_turn_mode", USER_TURN_MODES)
    timestamp_type: str | None = _choice(f"{_P}.tts.timestamp_type", TIMESTAMP_TYPES)
    timestamp_transport_strategy: str | None = _choice(
        f"{_P}.tts.timestamp_transport_strategy", TIMESTAMP_TRANSPORTS
    )
    extra: dict[str, Any] = _extra(f"{_P}.tts.extra")


@attrs.frozen(kw_only=True)
class MemorySettings(_Wire):
    """``providerData.memory``: periodic summaries and facts that keep long calls in context."""

    enabled: bool | None = _bool(f"{_P}.memory.enabled")
    turn_interval: int | None = _int(f"{_P}.memory.turn_interval", 1, 10_000)
    max_memory_length: int | None = _int(f"{_P}.memory.max_memory_length", 1, 10_000_000)
    max_transcript_items: int | None = _int(f"{_P}.memory.max_transcript_items", 1, 1_000_000)
    max_facts: int | None = _int(f"{_P}.memory.max_facts", 0, 1_000_000)
    trim_after_summarize: bool | None = _bool(f"{_P}.memory.trim_after_summarize")
    extra: dict[str, Any] = _extra(f"{_P}.memory.extra")


@attrs.frozen(kw_only=True)
class BackchannelSettings(_Wire):
    """``providerData.backchannel``: short interjections ("uh-huh") while the user speaks."""

    enabled: bool | None = _bool(f"{_P}.backchannel.enabled")
    small_model: str | None = _text(f"{_P}.backchannel.small_model")
    eval_interval_ms: int | None = _int(f"{_P}.backchannel.eval_interval_ms")
    min_speech_ms: int | None = _int(f"{_P}.backchannel.min_speech_ms")
    min_gap_ms: int | None = _int(f"{_P}.backchannel.min_gap_ms")
    max_per_turn: int | None = _int(f"{_P}.backchannel.max_per_turn", 0, 1000)
    hard_deadline_ms: int | None = _int(f"{_P}.backchannel.hard_deadline_ms")
    history_tail_items: int | None = _int(f"{_P}.backchannel.history_tail_items", 0, 10_000)
    temperature: float | None = _float(f"{_P}.backchannel.temperature", 0, 2)
    max_tokens: int | None = _int(f"{_P}.backchannel.max_tokens", 1, 100_000)
    volume_gain: float | None = _float(f"{_P}.backchannel.volume_gain", 0, 100)
    require_pause: bool | None = _bool(f"{_P}.backchannel.require_pause")
    allowed_phrases: tuple[str, ...] | None = _texts(f"{_P}.backchannel.allowed_phrases")
    prompt_template: str | None = _text(f"{_P}.backchannel.prompt_template")
    extra: dict[str, Any] = _extra(f"{_P}.backchannel.extra")


@attrs.frozen(kw_only=True)
class ResponsivenessSettings(_Wire):
    """``providerData.responsiveness``: filler audio ("let me think") when the LLM is slow to start."""

    enabled: bool | None = _bool(f"{_P}.responsiveness.enabled")
    small_model: str | None = _text(f"{_P}.responsiveness.small_model")
    initial_wait_timeout_ms: int | None = _int(f"{_P}.responsiveness.initial_wait_timeout_ms")
    hard_deadline_ms: int | None = _int(f"{_P}.responsiveness.hard_deadline_ms")
    history_tail_items: int | None = _int(f"{_P}.responsiveness.history_tail_items", 0, 10_000)
    temperature: float | None = _float(f"{_P}.responsiveness.temperature", 0, 2)
    max_tokens: int | None = _int(f"{_P}.responsiveness.max_tokens", 1, 100_000)
    min_filler_gap_ms: int | None = _int(f"{_P}.responsiveness.min_filler_gap_ms")
    max_initial_per_turn: int | None = _int(f"{_P}.responsiveness.max_initial_per_turn", 0, 1000)
    max_buffer_deltas: int | None = _int(f"{_P}.responsiveness.max_buffer_deltas", 0, 1_000_000)
    enable_filler_on_first_assistant_reply: bool | None = _bool(
        f"{_P}.responsiveness.enable_filler_on_first_assistant_reply"
    )
    prompt_template: str | None = _text(f"{_P}.responsiveness.prompt_template")
    pause_text: str | None = _text(f"{_P}.responsiveness.pause_text")
    extra: dict[str, Any] = _extra(f"{_P}.responsiveness.extra")


@attrs.frozen(kw_only=True)
class CachingSettings(_Wire):
    """``providerData.caching``: explicit prompt caching of the instructions and tools."""

    enabled: bool | None = _bool(f"{_P}.caching.enabled")
    ttl: str | None = _text(f"{_P}.caching.ttl")
    cache_instructions: bool | None = _bool(f"{_P}.caching.cache_instructions")
    cache_tools: bool | None = _bool(f"{_P}.caching.cache_tools")
    extra: dict[str, Any] = _extra(f"{_P}.caching.extra")


def _branch(cls: type[_Wire], name: str) -> Any:
    return attrs.field(default=None, validator=_named(f"{_P}.{name}", v.optional(v.instance_of(cls))))


def _check_metadata(_: Any, __: Any, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(x, str) for k, x in value.items()
    ):
        raise ConfigError(f"{_P}.metadata", f"{value!r:.80} must map strings to strings")
    _json_object(f"{_P}.metadata")(_, __, value)


@attrs.frozen(kw_only=True)
class ProviderData(_Wire):
    """Inworld's whole ``providerData`` object.

    Attributes:
        auto_tool_response: the server answers a tool output by itself (``engine`` sets ``False``).
        user_id: the end user, for Inworld's analytics and memory.
        metadata: a string map reported with the session (``engine`` adds ``sdk``).
        text_generation_config: LLM parameters (camelCase, provider-dependent), passed through.
        extra: top-level keys not modelled yet, sent as given.
    """

    stt: SttSettings | None = _branch(SttSettings, "stt")
    tts: TtsSettings | None = _branch(TtsSettings, "tts")
    memory: MemorySettings | None = _branch(MemorySettings, "memory")
    backchannel: BackchannelSettings | None = _branch(BackchannelSettings, "backchannel")
    responsiveness: ResponsivenessSettings | None = _branch(ResponsivenessSettings, "responsiveness")
    caching: CachingSettings | None = _branch(CachingSettings, "caching")
    auto_tool_response: bool | None = _bool(f"{_P}.auto_tool_response")
    user_id: str | None = _text(f"{_P}.user_id")
    metadata: dict[str, str] | None = attrs.field(default=None, validator=_check_metadata)
    text_generation_config: dict[str, Any] | None = attrs.field(
        default=None, validator=_json_object(f"{_P}.text_generation_config")
    )
    extra: dict[str, Any] = _extra(f"{_P}.extra")

    @classmethod
    def _nested(cls) -> dict[str, type[_Wire]]:
        return {
            "stt": SttSettings,
            "tts": TtsSettings,
            "memory": MemorySettings,
            "backchannel": BackchannelSettings,
            "responsiveness": ResponsivenessSettings,
            "caching": CachingSettings,
        }


def provider_data_wire(value: Any) -> Any:
    """``SessionConfig.provider_data``'s converter: a ProviderData becomes its wire dict."""
    return value.to_wire() if isinstance(value, ProviderData) else value


def check_provider_data(instance: Any, attribute: Any, value: Any) -> None:
    """A raw ``providerData`` dict is JSON and its known branches are valid (``ProviderData.from_wire``)."""
    _json_object(_P)(instance, attribute, value)
    if value is not None:
        ProviderData.from_wire(value)
