"""The local mirror of the server conversation.

It holds what a restore needs and what ``session.history`` shows: user text,
user transcripts, assistant transcripts and text, function calls and their
outputs, in conversation order. Audio bytes are never kept.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from engine.protocol.items import ContentPart, Item


class History:
    """Items by id, in order, with transcripts filled in as they stream."""

    def __init__(self, initial: Iterable[Item] = ()) -> None:
        self._items: dict[str, Item] = {}
        self._text: dict[str, str] = {}  # streaming assistant text by item id
        self._last_assistant: str | None = None
        self._anonymous = 0
        for item in initial:
            self.add(item)

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> tuple[Item, ...]:
        """Every item, in conversation order."""
        return tuple(self._items.values())

    def get(self, item_id: str | None) -> Item | None:
        """The item with this id, if mirrored."""
        return None if item_id is None else self._items.get(item_id)

    def add(self, item: Item) -> bool:
        """Mirror an item; False if it was already there (then it is merged)."""
        if item.id is None:
            self._anonymous += 1
            item = attrs.evolve(item, id=f"local_{self._anonymous}")
        item_id = item.id
        assert item_id is not None
        if item_id in self._items:
            self.merge(item)
            return False
        self._items[item_id] = item
        if item.role == "assistant":
            self._last_assistant = item_id
        return True

    def merge(self, item: Item) -> Item:
        """Replace an item with a newer server copy, keeping text we streamed in."""
        item_id = item.id
        if item_id is None:
            return item
        old = self._items.get(item_id)
        if old is not None and not item.text and old.text:
            item = attrs.evolve(item, content=old.content)
        self._items[item_id] = item
        return item

    def remove(self, item_id: str | None) -> None:
        """Forget an item (deleted on the server)."""
        if item_id is not None:
            self._items.pop(item_id, None)
            self._text.pop(item_id, None)

    def set_transcript(self, item_id: str | None, text: str) -> None:
        """Record the final transcript of a user audio item."""
        item = self.get(item_id)
        if item is None or item_id is None:
            return
        self._items[item_id] = _with_text(item, text, "input_audio")

    def append_text(self, item_id: str | None, delta: str) -> str:
        """Add streamed assistant text; returns the item's text so far."""
        key = item_id or ""
        text = self._text.get(key, "") + delta
        self._text[key] = text
        if item_id is not None and item_id not in self._items:
            self.add(Item(type="message", id=item_id, role="assistant"))
        return text

    def finish_text(self, item_id: str | None, final: str | None) -> str:
        """Close an item's streamed text (the server's whole text wins when given)."""
        key = item_id or ""
        text = final if final is not None else self._text.get(key, "")
        self._text.pop(key, None)
        item = self.get(item_id)
        if item is not None and item_id is not None:
            self._items[item_id] = _with_text(item, text, "output_audio")
        return text

    def cut_text(self, item_id: str | None, text: str) -> None:
        """Replace an assistant item's text by what the user actually heard."""
        item = self.get(item_id)
        if item is not None and item_id is not None:
            self._items[item_id] = _with_text(item, text, "output_audio")
            self._text.pop(item_id, None)

    def last_assistant_id(self) -> str | None:
        """The most recent assistant message id."""
        return self._last_assistant


def _with_text(item: Item, text: str, default_type: str) -> Item:
    parts = item.content or (ContentPart(type=default_type),)
    first = parts[0]
    if first.type in ("input_text", "output_text", "text"):
        new = attrs.evolve(first, text=text)
    else:
        new = attrs.evolve(first, transcript=text)
    return attrs.evolve(item, content=(new, *parts[1:]))
