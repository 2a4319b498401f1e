"""The local server's out-of-band responses: a second stream beside the conversation's response."""

from __future__ import annotations

from typing import Any

from tests.server.helpers import appends, collapse, tone
from tests.server.test_session import Driver, only, types

ASIDE_RESPONSE = [
    "response.created",
    "response.output_item.added",
    "response.content_part.added",
    "<deltas>",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.done",
]
"""A text response outside the conversation: no ``conversation.item.*`` event."""


def _aside(instructions: str, **response: Any) -> dict[str, Any]:
    body = {
        "conversation": "none",
        "output_modalities": ["text"],
        "instructions": instructions,
        "metadata": {"engine_oob": "ask_1"},
        **response,
    }
    return {"type": "response.create", "event_id": "evt_ask", "response": body}


def _of(events: list[dict[str, Any]], rid: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("response_id") == rid or e.get("response", {}).get("id") == rid]


def test_an_aside_runs_beside_the_active_response_and_adds_nothing() -> None:
    driver = Driver(pace=1.0)
    driver.user_text("tell me something rather long, please")
    inband = only(driver.send({"type": "response.create"}, at=0.0), "response.created")["response"]["id"]
    items_before = [item.id for item in driver.core.conversation.items]

    out = driver.send(_aside("Be terse.\n\nWhat did the caller want?"), at=0.1)
    assert "error" not in types(out)
    created = only(out, "response.created")["response"]
    rid = created["id"]
    assert rid != inband and created["metadata"] == {"engine_oob": "ask_1"}
    assert created.get("conversation_id") is None
    assert driver.core.active_response_id == inband  # the slot's response goes on

    rest = out + driver.poll(0.5) + driver.poll(30.0)
    aside = _of(rest, rid)
    assert collapse(types(aside)) == ASIDE_RESPONSE
    done = aside[-1]["response"]
    assert done["status"] == "completed" and done["metadata"] == {"engine_oob": "ask_1"}
    text = only(aside, "response.output_text.done")["text"]
    # The context is the conversation so far: the user's message and the answer being spoken.
    assert (
        text == f"Aside: What did the caller want? ({len(items_before)} items in context)"
        and len(items_before) == 2
    )
    assert "".join(e["delta"] for e in aside if e["type"] == "response.output_text.delta") == text
    assert _of(rest, inband)[-1]["response"]["status"] == "completed"  # the in-band one ended normally
    assert [item.id for item in driver.core.conversation.items] == items_before


def test_an_explicit_input_is_the_whole_context() -> None:
    driver = Driver()
    driver.user_text("hello")
    user = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "Translate: merci"}],
    }
    out = driver.send(_aside("ignored", input=[user]))
    assert only(out, "response.output_text.done")["text"] == "Aside: Translate: merci (1 items in context)"
    assert len(driver.core.conversation.items) == 1


def test_speech_cancels_the_conversations_response_but_not_the_aside() -> None:
    driver = Driver(pace=1.0)
    driver.user_text("tell me something rather long, please")
    inband = only(driver.send({"type": "response.create"}, at=0.0), "response.created")["response"]["id"]
    rid = only(driver.send(_aside("Long question " * 40), at=0.0), "response.created")["response"]["id"]
    driver.poll(0.2)
    out = driver.send_all(appends(tone(200)))
    assert [e["response"]["id"] for e in out if e["type"] == "response.done"] == [inband]
    done = only(driver.poll(60.0), "response.done")["response"]
    assert (done["id"], done["status"]) == (rid, "completed")
