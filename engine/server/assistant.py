"""The deterministic assistant: a few rules instead of a model.

Reading the conversation from the end:

1. If the latest input is a ``function_call_output``, answer with it:
   ``"The result is {output}."``.
2. If the latest input is a user message (text, or the transcript of audio)
   and a declared tool fits it (its name, or a word of its name such as
   ``weather`` in ``get_weather``, appears in the text), call that tool, with
   arguments built from its JSON schema and words of the text (a ``city``
   gets the word after "in"). ``tool_choice`` is honoured: ``none`` never
   calls, ``required`` calls the first tool when none fits, a named function
   is always called. A user message already followed by a call is answered
   in words, so a tool is never called twice for one question.
3. Otherwise echo: ``"You said: {text}."``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from engine.protocol.items import Item

_FILLER = frozenset(
    {"get", "set", "fetch", "lookup", "look", "up", "find", "query", "search", "check", "do", "make", "the"}
)
_PLACE_PARAMS = ("city", "location", "place", "country", "destination", "town", "where", "region")
_PLACE_WORDS = ("in", "at", "for", "to", "near", "from")


@attrs.frozen(kw_only=True)
class Say:
    """Answer with words."""

    text: str


@attrs.frozen(kw_only=True)
class Call:
    """Call a function; ``arguments`` is the JSON string."""

    name: str
    arguments: str


Reply = Say | Call


def decide(items: Sequence[Item], tools: Sequence[Mapping[str, Any]], tool_choice: Any = "auto") -> Reply:
    """The reply to a conversation; see the module docstring."""
    called_since_user = False
    for item in reversed(items):
        if item.type == "function_call_output":
            return Say(text=f"The result is {item.output or ''}.")
        if item.type == "function_call":
            called_since_user = True
            continue
        if item.type == "message" and item.role == "user":
            text = _user_text(item)
            if not called_since_user:
                tool = _choose_tool(text, tools, tool_choice)
                if tool is not None:
                    return Call(name=str(tool["name"]), arguments=json.dumps(build_arguments(tool, text)))
            return Say(text=echo(text))
    return Say(text="Hello! How can I help you?")


def echo(text: str) -> str:
    """``You said: ...`` with one final stop."""
    text = text.strip()
    if not text:
        return "I did not catch that."
    return f"You said: {text}" + ("" if text[-1] in ".!?]" else ".")


def _user_text(item: Item) -> str:
    parts = item.content or ()
    return " ".join((p.text if p.text is not None else p.transcript) or "" for p in parts).strip()


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def tool_matches(name: str, text: str) -> bool:
    """True when ``text`` names the tool: ``get_weather`` fits "weather" and "get weather"."""
    words = set(_words(text))
    spaced = " ".join(_words(re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name)))
    if spaced and f" {spaced} " in f" {' '.join(_words(text))} ":
        return True
    parts = [p for p in spaced.split() if p not in _FILLER and len(p) >= 3]
    return any(p in words or f"{p}s" in words for p in parts)


def _choose_tool(text: str, tools: Sequence[Mapping[str, Any]], tool_choice: Any) -> Mapping[str, Any] | None:
    functions = [t for t in tools if t.get("type", "function") == "function" and t.get("name")]
    if not functions or tool_choice == "none":
        return None
    if isinstance(tool_choice, Mapping):
        return next((t for t in functions if t["name"] == tool_choice.get("name")), None)
    match = next((t for t in functions if tool_matches(str(t["name"]), text)), None)
    if match is None and tool_choice == "required":
        return functions[0]
    return match


def build_arguments(tool: Mapping[str, Any], text: str) -> dict[str, Any]:
    """Arguments for ``tool`` from the words of ``text``, guided by its JSON schema.

    Each property gets a value only when the text supplies one, or when the
    schema requires it (then a neutral value: the first enum value, ``""``,
    ``0`` or ``false``).
    """
    schema = tool.get("parameters") or {}
    properties: Mapping[str, Any] = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    tokens = re.findall(r"[A-Za-z0-9][A-Za-z0-9'\-.]*[A-Za-z0-9]|[A-Za-z0-9]", text)
    out: dict[str, Any] = {}
    for name, spec in properties.items():
        value = _value_for(str(name), spec if isinstance(spec, Mapping) else {}, tokens)
        if value is None and name in required:
            value = _neutral(spec if isinstance(spec, Mapping) else {})
        if value is not None:
            out[str(name)] = value
    return out


def _value_for(name: str, spec: Mapping[str, Any], tokens: list[str]) -> Any:
    kind = spec.get("type", "string")
    lowered = [t.lower() for t in tokens]
    enum = spec.get("enum")
    if isinstance(enum, list) and enum:
        return next((v for v in enum if str(v).lower() in lowered), None)
    if kind in ("integer", "number"):
        for token in tokens:
            try:
                return int(token) if kind == "integer" else float(token)
            except ValueError:
                continue
        return None
    if kind == "boolean":
        return True if {"yes", "true", "on", "enable"} & set(lowered) else None
    if kind != "string":
        return None
    key = name.lower()
    if key in lowered[:-1]:  # "... city Paris", "... name is Bob"
        index = lowered.index(key) + 1
        if lowered[index] == "is" and index + 1 < len(tokens):
            index += 1
        return tokens[index]
    if any(p in key for p in _PLACE_PARAMS):
        for index, word in enumerate(lowered[:-1]):
            if word in _PLACE_WORDS:
                return _place(tokens[index + 1 :])
    return None


def _place(tokens: list[str]) -> str:
    """The place after a preposition: ``New York`` from "in New York today"."""
    words = [tokens[0]]
    for token in tokens[1:]:
        if not token[:1].isupper():
            break
        words.append(token)
    return " ".join(words)


def _neutral(spec: Mapping[str, Any]) -> Any:
    enum = spec.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    return {"integer": 0, "number": 0, "boolean": False}.get(str(spec.get("type", "string")), "")
