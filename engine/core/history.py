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
    """Items by id, in order, with transcripts filled in as they stream.

    ``max_items`` bounds the mirror for long calls: past it, the oldest items are
    forgotten locally (the server keeps them; a restore replays the newest).
    """

    def __init__(self, initial: Iterable[Item] = (), *, max_items: int | None = None) -> None:
        self._max = max_items
        self._items: dict[str, Item] = {}
        self._text: dict[str, str] = {}  # streaming assistant text by item id
        self._cut: set[str] = set()  # items cut to what was heard: server copies do not undo that
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
        if self._max is not None and len(self._items) > self._max:
            self.remove(next(iter(self._items)))
        return True

    def merge(self, item: Item) -> Item:
        """Replace an item with a newer server copy, keeping text we streamed in."""
        item_id = item.id
        if item_id is None:
            return item
        old = self._items.get(item_id)
        if old is not None and ((not item.text and old.text) or item_id in self._cut):
            item = attrs.evolve(item, content=old.content)
        self._items[item_id] = item
        return item

    def last_answer(self) -> Item | None:
        """The latest assistant message that is an answer, not a preamble (``Item.is_preamble``)."""
        for item in reversed(self.items()):
            if item.type == "message" and item.role == "assistant" and not item.is_preamble:
                return item
        return None

    def remove(self, item_id: str | None) -> None:
        """Forget an item (deleted on the server)."""
        if item_id is not None:
            self._items.pop(item_id, None)
            self._text.pop(item_id, None)
            self._cut.discard(item_id)

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

    def record_call(self, item_id: str | None, call_id: str, name: str, arguments: str) -> None:
        """Make sure a complete function call is mirrored (name and arguments filled in)."""
        item = self.get(item_id)
        if item is None:
            self.add(Item.function_call(call_id, name, arguments, id=item_id))
        elif item_id is not None:
            self._items[item_id] = attrs.evolve(item, name=item.name or name, arguments=arguments)

    def flush_streaming(self) -> None:
        """Keep what was received of text still streaming (the socket dropped mid-item)."""
        for item_id in list(self._text):
            if item_id:
                self.finish_text(item_id, None)
        self._text.clear()

    def unheard_user_audio(self) -> list[str]:
        """User audio messages without any transcript (a restore cannot carry them)."""
        return [
            item_id
            for item_id, item in self._items.items()
            if item.role == "user"
            and not item.text
            and any(p.type == "input_audio" for p in item.content or ())
        ]

    def prune_empty(self) -> None:
        """Forget messages that never got any text (an answer cut before its first word)."""
        for item_id in [k for k, item in self._items.items() if item.type == "message" and not item.text]:
            self.remove(item_id)

    def restorable(self) -> list[Item]:
        """The conversation as items a fresh server accepts (text only: GA cannot create audio)."""
        out: list[Item] = []
        for item in self._items.values():
            restored = restorable(item)
            if restored is not None:
                out.append(restored)
        return out

    def cut_heard(self, item_id: str, fraction: float) -> None:
        """Keep the part of an assistant item's text the user heard (by audio fraction, whole words)."""
        text = self._text.get(item_id)
        if text is None:
            item = self.get(item_id)
            text = item.text if item is not None else ""
        self._cut.add(item_id)
        keep = int(len(text) * max(0.0, min(1.0, fraction)))
        if keep < len(text):
            space = text.rfind(" ", 0, keep + 1)
            keep = space if space > 0 else keep
        self.cut_text(item_id, text[:keep].rstrip())


def restorable(item: Item) -> Item | None:
    """``item`` as a fresh server can take it back on a restore, or ``None`` when it cannot be restored.

    Text stays; audio is restored by its transcript (a server cannot create
    audio items); an empty message is dropped. The reconnect restore and a
    placed call resumed on another host (engine.scale) both use it.
    """
    item_id = None if (item.id or "").startswith("local_") else item.id
    if item.type == "message":
        text = item.text
        images = [p for p in item.content or () if p.type == "input_image" and p.image_url]
        if item.role == "user" and images:  # the model must still see what it was shown
            parts = [ContentPart(type="input_image", image_url=p.image_url, detail=p.detail) for p in images]
            if text:
                parts.append(ContentPart(type="input_text", text=text))
            return Item(type="message", id=item_id, role="user", content=tuple(parts))
        if not text:
            return None
        if item.role == "user":
            return Item.user_text(text, id=item_id)
        if item.role == "assistant":
            return Item.assistant_text(text, id=item_id)
        if item.role == "system":
            return Item.system_text(text, id=item_id)
        return None
    if item.type == "function_call" and item.call_id and item.name and item.arguments is not None:
        return Item.function_call(item.call_id, item.name, item.arguments, id=item_id)
    if item.type == "function_call_output" and item.call_id and item.output is not None:
        return Item.function_call_output(item.call_id, item.output, id=item_id)
    return None


def _with_text(item: Item, text: str, default_type: str) -> Item:
    parts = item.content or (ContentPart(type=default_type),)
    first = parts[0]
    if first.type in ("input_text", "output_text", "text"):
        new = attrs.evolve(first, text=text)
    else:
        new = attrs.evolve(first, transcript=text)
    return attrs.evolve(item, content=(new, *parts[1:]))
