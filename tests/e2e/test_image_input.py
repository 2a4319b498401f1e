"""send_image: an ``input_image`` part on OpenAI (GA-exact on the wire), refused locally on Inworld."""

from __future__ import annotations

import base64
from typing import Any

import anyio
import pytest
from openai.types.realtime import RealtimeClientEvent

import engine
from engine import events as ev
from tests.e2e.helpers import SETTINGS, Recorder, Wire, collect_until, inworld, make_server
from tests.e2e.test_profiles import openai
from tests.protocol.ga_oracle import assert_ga_valid

pytestmark = pytest.mark.anyio

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


def _turn_end(event: Any) -> bool:
    return isinstance(event, ev.TurnMetrics)


async def test_openai_sends_the_image_as_a_ga_input_image_part() -> None:
    server = make_server()
    wire, recorder = Wire(), Recorder()
    with anyio.fail_after(10):
        async with server.running():
            session = engine.Session(
                openai(server), engine.SessionConfig(), settings=SETTINGS, connector=wire
            )
            session.on()(recorder)
            async with session.connect():
                stream = session.events()
                await session.send_image(PNG, mime="image/png", detail="low", text="What is this?")
                await session.send_text("Describe it.")
                await collect_until(stream, _turn_end)
                history = list(session.history)

    (create, *_) = wire.connections[0].of_type("conversation.item.create")
    assert_ga_valid(create, RealtimeClientEvent, allowed_extras=())
    image, caption = create["item"]["content"]
    assert image == {
        "type": "input_image",
        "image_url": "data:image/png;base64," + base64.b64encode(PNG).decode("ascii"),
        "detail": "low",
    }
    assert caption == {"type": "input_text", "text": "What is this?"}
    assert recorder.of_type(ev.Error) == []
    assert any(p.type == "input_image" for item in history for p in (item.content or ()))


async def test_inworld_refuses_images_locally_and_the_call_goes_on() -> None:
    server = make_server()
    wire = Wire()
    with anyio.fail_after(10):
        async with server.running():
            session = engine.Session(
                inworld(server), engine.SessionConfig(), settings=SETTINGS, connector=wire
            )
            async with session.connect():
                stream = session.events()
                with pytest.raises(engine.ConfigError, match="inworld does not support image input"):
                    await session.send_image(PNG)
                await session.send_text("Still there?")
                await collect_until(stream, _turn_end)
    sent = wire.connections[0].of_type("conversation.item.create")
    assert [m["item"]["content"][0]["type"] for m in sent] == ["input_text"]


async def test_bad_or_oversized_images_are_refused_before_sending() -> None:
    server = make_server()
    wire = Wire()
    settings = engine.SessionSettings(close_timeout=0.5, max_item_bytes=1024)
    with anyio.fail_after(10):
        async with server.running():
            session = engine.Session(
                openai(server), engine.SessionConfig(), settings=settings, connector=wire
            )
            async with session.connect():
                with pytest.raises(ValueError, match="max_item_bytes"):
                    await session.send_image(bytes(2048))
                with pytest.raises(ValueError, match="mime"):
                    await session.send_image(PNG, mime="image/gif")
                with pytest.raises(ValueError, match="not both"):
                    await session.send_image(PNG, url="https://example.com/a.png")
                with pytest.raises(ValueError, match="detail"):
                    await session.send_image(PNG, detail="max")
                with pytest.raises(TypeError):
                    await session.send_image("not bytes")  # type: ignore[arg-type]
                await session.send_image(url="https://example.com/a.png")
    sent = wire.connections[0].of_type("conversation.item.create")
    assert [m["item"]["content"][0].get("image_url") for m in sent] == ["https://example.com/a.png"]
