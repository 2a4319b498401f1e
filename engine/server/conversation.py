"""One connection's conversation: the items, in order, as the server holds them.

Tests read it (``server.connections[-1].conversation.items``); the session
core keeps it in step with the events it sends. Besides the items it remembers
how many milliseconds of audio each assistant item carries, which is what
``conversation.item.truncate`` is checked against.
"""

from __future__ import annotations

import attrs

from engine.protocol.items import ContentPart, Item

ROOT = "root"
"""``previous_item_id`` that inserts an item first (GA)."""


class Conversation:
    """Ordered items of one conversation, looked up by id."""

    def __init__(self, conversation_id: str) -> None:
        self.id = conversation_id
        self._items: list[Item] = []
        self.audio_ms: dict[str, int] = {}
        """Milliseconds of assistant audio per item id (after any truncation)."""

    @property
    def items(self) -> list[Item]:
        """A copy of the items, first to last."""
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def get(self, item_id: str) -> Item | None:
        """The item with ``item_id``, or ``None``."""
        return next((item for item in self._items if item.id == item_id), None)

    def last_id(self) -> str | None:
        """The id of the last item, or ``None`` when empty."""
        return self._items[-1].id if self._items else None

    def previous_id(self, item_id: str) -> str | None:
        """The id of the item before ``item_id`` (``None`` for the first or an unknown one)."""
        ids = [item.id for item in self._items]
        if item_id not in ids:
            return None
        index = ids.index(item_id)
        return ids[index - 1] if index > 0 else None

    def insert(self, item: Item, previous_item_id: str | None = None) -> str | None:
        """Insert ``item`` after ``previous_item_id`` (``None``: at the end; ``"root"``: first).

        Returns the id of the item now before it. Raises ``KeyError`` for an unknown
        ``previous_item_id``.
        """
        if previous_item_id is None:
            before = self.last_id()
            self._items.append(item)
            return before
        if previous_item_id == ROOT:
            self._items.insert(0, item)
            return None
        for index, existing in enumerate(self._items):
            if existing.id == previous_item_id:
                self._items.insert(index + 1, item)
                return previous_item_id
        raise KeyError(previous_item_id)

    def replace(self, item: Item) -> bool:
        """Put ``item`` in place of the item with the same id; ``False`` if it is gone."""
        for index, existing in enumerate(self._items):
            if existing.id == item.id:
                self._items[index] = item
                return True
        return False

    def delete(self, item_id: str) -> bool:
        """Remove an item; ``False`` if there is none with that id."""
        for index, existing in enumerate(self._items):
            if existing.id == item_id:
                del self._items[index]
                self.audio_ms.pop(item_id, None)
                return True
        return False

    def set_transcript(self, item_id: str, transcript: str, content_index: int = 0) -> None:
        """Fill in the transcript of one content part (user audio once transcribed, or truncated)."""
        item = self.get(item_id)
        if item is None or not item.content or content_index >= len(item.content):
            return
        parts = list(item.content)
        parts[content_index] = attrs.evolve(parts[content_index], transcript=transcript)
        self.replace(attrs.evolve(item, content=tuple(parts)))


def user_audio_item(item_id: str, transcript: str | None = None) -> Item:
    """A committed user audio turn, as echoed: ``input_audio`` content without the audio bytes."""
    return Item(
        type="message",
        id=item_id,
        object="realtime.item",
        status="completed",
        role="user",
        content=(ContentPart(type="input_audio", transcript=transcript),),
    )
