"""The server's view of the session configuration: the GA dict, merged and validated.

``session.update`` changes only the fields present (GA semantics; docs/protocol.md
§4). ``audio``, ``audio.input``, ``audio.output`` and Inworld's
``providerData`` merge key by key; every other value is replaced whole, except
that a ``turn_detection`` of the same ``type`` merges. The merged result is
validated and normalised (formats and turn detection get every field, through
the value classes of :mod:`engine.protocol.config`); if anything is invalid
the update is refused with the GA path of the first bad value
(``session.audio.input.format.rate``) and *nothing* is applied, as Inworld
documents.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import attrs

from engine.protocol.config import (
    MAX_OUTPUT_TOKENS,
    MODALITIES,
    SPEED_RANGE,
    TEMPERATURE_RANGE,
    TOOL_CHOICES,
    AudioFormat,
    ConfigError,
    FunctionTool,
    SemanticVad,
    ServerVad,
)

DEFAULT_SESSION: dict[str, Any] = {
    "type": "realtime",
    "model": "openai/gpt-4.1-mini",
    "instructions": "",
    "output_modalities": ["audio", "text"],
    "audio": {
        "input": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "transcription": {"model": "inworld/inworld-stt-1"},
            "turn_detection": {
                "type": "semantic_vad",
                "eagerness": "low",
                "create_response": True,
                "interrupt_response": True,
            },
        },
        "output": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "model": "inworld-tts-2",
            "voice": "Clive",
        },
    },
    "tools": [],
    "tool_choice": "auto",
    "max_output_tokens": "inf",
}
"""Inworld's defaults as pipecat sees them (docs/protocol.md §4.3), in GA layout."""


class UnknownParameter(ConfigError):
    """A key the session does not have (``session.foo``)."""


_KEYS: dict[str, frozenset[str]] = {
    "session": frozenset(
        {
            "type", "model", "instructions", "output_modalities", "audio", "tools", "tool_choice",
            "max_output_tokens", "temperature", "providerData", "include", "tracing", "truncation",
            "prompt", "reasoning", "parallel_tool_calls",
        }
    ),
    "session.audio": frozenset({"input", "output"}),
    "session.audio.input": frozenset({"format", "transcription", "turn_detection", "noise_reduction"}),
    "session.audio.output": frozenset({"format", "voice", "speed", "model"}),
}  # fmt: skip
"""Keys the server knows at each level: GA's plus Inworld's extensions."""
_MERGED = frozenset({"session.audio", "session.audio.input", "session.audio.output", "session.providerData"})
_NULLABLE = frozenset(
    {
        "session.audio.input.turn_detection",
        "session.audio.input.transcription",
        "session.audio.input.noise_reduction",
        "session.tracing",
    }
)


def default_session(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A fresh copy of the default session, with ``overrides`` merged in (and validated)."""
    session = copy.deepcopy(DEFAULT_SESSION)
    return apply_update(session, overrides) if overrides else session


def apply_update(current: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """The session after ``patch``; ``current`` is left untouched.

    Raises:
        ConfigError: an unknown key or an invalid value; ``param`` is its GA path.
    """
    if not isinstance(patch, Mapping):
        raise ConfigError("session", "must be an object")
    merged = _merge(copy.deepcopy(dict(current)), patch, "session")
    return normalise(merged)


def _merge(target: dict[str, Any], patch: Mapping[str, Any], path: str) -> dict[str, Any]:
    known = _KEYS.get(path)
    for key, value in patch.items():
        where = f"{path}.{key}"
        if known is not None and key not in known:
            raise UnknownParameter(where, f"Unknown parameter: '{where}'.")
        old = target.get(key)
        if value is None and where not in _NULLABLE:
            raise ConfigError(where, f"Invalid value for '{where}': null is not allowed.")
        if where in _MERGED and isinstance(value, Mapping) and isinstance(old, dict):
            target[key] = _merge(old, value, where)
        elif (
            where.endswith(".turn_detection")
            and isinstance(value, Mapping)
            and isinstance(old, dict)
            and value.get("type", old.get("type")) == old.get("type")
        ):
            target[key] = {**old, **copy.deepcopy(dict(value))}
        else:
            target[key] = copy.deepcopy(value)
    return target


def normalise(session: dict[str, Any]) -> dict[str, Any]:
    """Validate a whole session and fill in what the value classes default. Raises ``ConfigError``."""
    if session.get("type", "realtime") != "realtime":
        raise ConfigError("session.type", "Only 'realtime' sessions are supported by the local server.")
    session["type"] = "realtime"
    for key in ("model", "instructions"):
        if key in session:
            _string(session[key], f"session.{key}", empty_ok=key == "instructions")
    _modalities(session.get("output_modalities", ["audio"]))
    audio = session.setdefault("audio", {})
    _object(audio, "session.audio")
    audio_in = audio.setdefault("input", {})
    audio_out = audio.setdefault("output", {})
    _object(audio_in, "session.audio.input")
    _object(audio_out, "session.audio.output")
    audio_in["format"] = _format(audio_in.get("format", {}), "session.audio.input.format")
    audio_out["format"] = _format(audio_out.get("format", {}), "session.audio.output.format")
    if audio_in.get("transcription") is not None:
        _transcription(audio_in["transcription"])
    if "turn_detection" in audio_in and audio_in["turn_detection"] is not None:
        audio_in["turn_detection"] = _turn_detection(audio_in["turn_detection"])
    elif "turn_detection" not in audio_in:
        audio_in["turn_detection"] = SemanticVad().to_wire()
    if audio_in.get("noise_reduction") is not None:
        _noise_reduction(audio_in["noise_reduction"])
    if "voice" in audio_out:
        _voice(audio_out["voice"])
    if "model" in audio_out:
        _string(audio_out["model"], "session.audio.output.model")
    if "speed" in audio_out:
        _number(audio_out["speed"], "session.audio.output.speed", *SPEED_RANGE)
    if "temperature" in session:
        _number(session["temperature"], "session.temperature", *TEMPERATURE_RANGE)
    tools = session.setdefault("tools", [])
    _tools(tools)
    _tool_choice(session.get("tool_choice", "auto"), tools)
    _max_tokens(session.get("max_output_tokens", "inf"))
    if "providerData" in session:
        _object(session["providerData"], "session.providerData")
    return session


def _object(value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise ConfigError(path, f"Invalid type for '{path}': expected an object.")


def _string(value: Any, path: str, *, empty_ok: bool = False) -> None:
    if not isinstance(value, str) or (not value and not empty_ok):
        raise ConfigError(path, f"Invalid value for '{path}': expected a non-empty string, got {value!r}.")


def _number(value: Any, path: str, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(path, f"Invalid value for '{path}': {value!r} is not a number in [{low}, {high}].")


def _bool(value: Any, path: str) -> None:
    if not isinstance(value, bool):
        raise ConfigError(path, f"Invalid type for '{path}': expected a boolean, got {value!r}.")


def _modalities(value: Any) -> None:
    path = "session.output_modalities"
    if (
        not isinstance(value, list)
        or not value
        or len(set(map(str, value))) != len(value)
        or any(m not in MODALITIES for m in value)
    ):
        raise ConfigError(path, f"Invalid value for '{path}': {value!r}; use 'audio', 'text' or both.")


def _format(value: Any, path: str) -> dict[str, Any]:
    _object(value, path)
    kind = value.get("type", "audio/pcm")
    rate = value.get("rate", 24000 if kind == "audio/pcm" else 8000)
    if not isinstance(rate, int) or isinstance(rate, bool):
        raise ConfigError(f"{path}.rate", f"Invalid type for '{path}.rate': expected an integer.")
    try:
        return AudioFormat(type=kind, rate=rate).to_wire()
    except ConfigError as exc:
        param = f"{path}.{exc.param.removeprefix('format.')}"
        raise ConfigError(param, f"Invalid value for '{param}': {reason(exc)}") from None


def _transcription(value: Any) -> None:
    path = "session.audio.input.transcription"
    _object(value, path)
    _string(value.get("model"), f"{path}.model")
    for key in ("language", "prompt"):
        if key in value:
            _string(value[key], f"{path}.{key}", empty_ok=True)


def _turn_detection(value: Any) -> dict[str, Any]:
    path = "session.audio.input.turn_detection"
    _object(value, path)
    fields = dict(value)
    kind = fields.pop("type", None)
    classes: dict[Any, type[SemanticVad] | type[ServerVad]] = {
        "semantic_vad": SemanticVad,
        "server_vad": ServerVad,
    }
    cls = classes.get(kind)
    if cls is None:
        raise ConfigError(f"{path}.type", f"Invalid value for '{path}.type': {kind!r}.")
    allowed = {f.name for f in attrs.fields(cls)}
    for key, item in fields.items():
        if key not in allowed:
            raise UnknownParameter(f"{path}.{key}", f"Unknown parameter: '{path}.{key}' for {kind}.")
        if key in ("create_response", "interrupt_response"):
            _bool(item, f"{path}.{key}")
    try:
        return cls(**fields).to_wire()
    except ConfigError as exc:
        param = f"session.audio.input.{exc.param}"
        raise ConfigError(param, f"Invalid value for '{param}': {reason(exc)}") from None


def _noise_reduction(value: Any) -> None:
    path = "session.audio.input.noise_reduction"
    _object(value, path)
    if value.get("type") not in ("near_field", "far_field"):
        raise ConfigError(f"{path}.type", f"Invalid value for '{path}.type': {value.get('type')!r}.")


def _voice(value: Any) -> None:
    path = "session.audio.output.voice"
    if isinstance(value, dict):
        _string(value.get("id"), f"{path}.id")
    else:
        _string(value, path)


def _tools(value: Any) -> None:
    path = "session.tools"
    if not isinstance(value, list):
        raise ConfigError(path, f"Invalid type for '{path}': expected an array.")
    names: set[str] = set()
    for i, tool in enumerate(value):
        where = f"{path}[{i}]"
        _object(tool, where)
        if tool.get("type", "function") != "function":
            raise ConfigError(f"{where}.type", f"Invalid value for '{where}.type': only 'function' tools.")
        name = tool.get("name")
        try:
            FunctionTool(name=name if isinstance(name, str) else "")
        except ConfigError as exc:
            raise ConfigError(f"{where}.name", f"Invalid value for '{where}.name': {reason(exc)}") from None
        if name in names:
            raise ConfigError(f"{where}.name", f"Duplicate tool name {name!r}.")
        names.add(name)
        if "parameters" in tool:
            _object(tool["parameters"], f"{where}.parameters")


def _tool_choice(value: Any, tools: list[dict[str, Any]]) -> None:
    path = "session.tool_choice"
    if value in TOOL_CHOICES:
        return
    if isinstance(value, dict) and value.get("type") == "function":
        if value.get("name") not in {t.get("name") for t in tools}:
            raise ConfigError(
                f"{path}.name", f"Invalid value for '{path}.name': no tool {value.get('name')!r}."
            )
        return
    raise ConfigError(path, f"Invalid value for '{path}': {value!r}.")


def _max_tokens(value: Any) -> None:
    path = "session.max_output_tokens"
    if value == "inf":
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_OUTPUT_TOKENS:
        raise ConfigError(path, f"Invalid value for '{path}': {value!r}; use 1-{MAX_OUTPUT_TOKENS} or 'inf'.")


def reason(exc: ConfigError) -> str:
    """The message of a ``ConfigError`` without its ``param:`` prefix."""
    return str(exc).removeprefix(f"{exc.param}: ")


@attrs.frozen(kw_only=True)
class Effective:
    """What the server acts on, read once from a normalised session dict.

    Attributes:
        vad: ``"server_vad"``, ``"semantic_vad"`` or ``None`` (manual turns).
        threshold: frame RMS that counts as speech (server_vad's ``threshold``
            0.5 maps to the detector's default).
        silence_ms: silence that ends a turn (semantic_vad: 500 ms whatever the eagerness).
        auto_tool_response: Inworld's ``providerData.auto_tool_response``
            (default true: the server answers a tool output by itself).
    """

    input_type: str
    input_rate: int
    voice: Any
    modalities: tuple[str, ...]
    vad: str | None
    threshold: float
    silence_ms: int
    create_response: bool
    interrupt_response: bool
    tools: tuple[dict[str, Any], ...]
    tool_choice: Any
    max_output_tokens: int | str
    auto_tool_response: bool


def effective(session: Mapping[str, Any]) -> Effective:
    """The :class:`Effective` settings of a normalised session."""
    audio_in = session["audio"]["input"]
    audio_out = session["audio"]["output"]
    turn = audio_in.get("turn_detection")
    provider = session.get("providerData") or {}
    vad = None if turn is None else str(turn["type"])
    threshold = 0.02
    silence_ms = 500
    if turn is not None and vad == "server_vad":
        threshold = max(0.001, 0.04 * float(turn["threshold"]))
        silence_ms = int(turn["silence_duration_ms"])
    return Effective(
        input_type=audio_in["format"]["type"],
        input_rate=int(audio_in["format"].get("rate", 8000)),
        voice=audio_out.get("voice"),
        modalities=tuple(session.get("output_modalities", ["audio"])),
        vad=vad,
        threshold=threshold,
        silence_ms=silence_ms,
        create_response=bool(turn and turn.get("create_response", True)),
        interrupt_response=bool(turn and turn.get("interrupt_response", True)),
        tools=tuple(session.get("tools", ())),
        tool_choice=session.get("tool_choice", "auto"),
        max_output_tokens=session.get("max_output_tokens", "inf"),
        auto_tool_response=provider.get("auto_tool_response", True) is not False,
    )
