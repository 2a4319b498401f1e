"""A user's image survives a restore: the model must still see what it was shown."""

from __future__ import annotations

from engine.core.history import History
from engine.protocol.items import ContentPart, Item

URL = "data:image/png;base64,iVBORw0KGgo="


def test_image_messages_are_restored_with_their_image_and_text() -> None:
    history = History(
        [
            Item.user_image(URL, detail="low", text="What is this?", id="img1"),
            Item.user_image(URL, id="img2"),
            Item.assistant_text("A cat.", id="a1"),
        ]
    )
    restored = history.restorable()
    assert restored[0] == Item(
        type="message",
        id="img1",
        role="user",
        content=(
            ContentPart(type="input_image", image_url=URL, detail="low"),
            ContentPart(type="input_text", text="What is this?"),
        ),
    )
    assert restored[1].content == (ContentPart(type="input_image", image_url=URL),)  # no text: still kept
    assert restored[2] == Item.assistant_text("A cat.", id="a1")
