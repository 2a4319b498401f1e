"""Checking and normalising the items a client creates (``conversation.item.create``).

GA item shapes (docs/protocol.md §5.1): system messages hold ``input_text``; user
messages ``input_text``, ``input_audio`` or ``input_image``; assistant
messages ``output_text`` only (GA cannot create assistant audio). A
``function_call`` needs ``name`` and ``arguments``, a ``function_call_output``
``call_id`` and ``output``. Inworld's legacy content type ``text`` is accepted
and stored under its GA name. The echo never carries audio bytes.
"""

from __future__ import annotations

from typing import Any

import attrs

from engine.protocol.items import ContentPart, Item

_PARTS = {
    "user": frozenset({"input_text", "input_audio", "input_image"}),
    "system": frozenset({"input_text"}),
    "assistant": frozenset({"output_text"}),
}
_LEGACY_TEXT = {"user": "input_text", "system": "input_text", "assistant": "output_text"}


class ItemProblem(ValueError):
    """An item the server refuses; ``param`` is its path (``item.content[0].type``)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


def normalise_item(item: Item, item_id: str, call_id: str) -> Item:
    """The item as stored and echoed: id, ``object``, ``status``; no audio bytes.

    ``call_id`` is used when a ``function_call`` comes without one.

    Raises:
        ItemProblem: the item does not have a GA shape.
    """
    base: dict[str, Any] = {"id": item_id, "object": "realtime.item", "status": "completed"}
    if item.type == "message":
        return attrs.evolve(item, content=_content(item), **base)
    if item.type == "function_call":
        if not item.name:
            raise ItemProblem("item.name", "Missing required parameter: 'item.name'.")
        if item.arguments is None:
            raise ItemProblem("item.arguments", "Missing required parameter: 'item.arguments'.")
        return attrs.evolve(item, call_id=item.call_id or call_id, **base)
    if item.type == "function_call_output":
        if not item.call_id:
            raise ItemProblem("item.call_id", "Missing required parameter: 'item.call_id'.")
        if item.output is None:
            raise ItemProblem("item.output", "Missing required parameter: 'item.output'.")
        return attrs.evolve(item, **base)
    raise ItemProblem(
        "item.type",
        f"Invalid value: '{item.type}'. Supported values are: 'message', 'function_call' and "
        "'function_call_output'.",
    )


def _content(item: Item) -> tuple[ContentPart, ...]:
    role = item.role or ""
    allowed = _PARTS.get(role)
    if allowed is None:
        raise ItemProblem(
            "item.role", f"Invalid value: '{role}'. Supported values are: 'user', 'system', 'assistant'."
        )
    if not item.content:
        raise ItemProblem("item.content", "Missing required parameter: 'item.content'.")
    parts: list[ContentPart] = []
    for index, part in enumerate(item.content):
        kind = _LEGACY_TEXT[role] if part.type == "text" else part.type
        if kind not in allowed:
            detail = " (assistant audio cannot be created)" if kind in ("output_audio", "audio") else ""
            raise ItemProblem(
                f"item.content[{index}].type",
                f"Invalid value: '{part.type}' for a {role} message{detail}. "
                f"Supported values are: {', '.join(sorted(allowed))}.",
            )
        parts.append(attrs.evolve(part, type=kind, audio=None))
    return tuple(parts)
