"""An assistant preamble (``phase: "commentary"``) is spoken but is never the turn's answer."""

from __future__ import annotations

from engine.core import events as ev
from tests.core.driver import Driver, emitted, pcm_b64


def _message(item_id: str, phase: str | None) -> dict[str, object]:
    item: dict[str, object] = {"id": item_id, "type": "message", "role": "assistant", "content": []}
    if phase is not None:
        item["phase"] = phase
    return item


def _speak(d: Driver, item_id: str, phase: str | None, text: str) -> None:
    d.server("response.output_item.added", response_id="r1", output_index=0, item=_message(item_id, phase))
    d.server("response.output_audio.delta", response_id="r1", item_id=item_id, delta=pcm_b64(480))
    d.server("response.output_audio_transcript.done", response_id="r1", item_id=item_id, transcript=text)


def test_preamble_audio_is_timed_apart_and_history_answer_skips_it() -> None:
    d = Driver()
    d.ready()
    d.clock.now = 1.0
    d.do(d.conv.send_text("book me a table"))
    d.clock.now = 1.25
    d.server("response.created", response={"id": "r1"})
    d.clock.now = 1.5
    _speak(d, "pre1", "commentary", "Let me check that for you.")
    d.clock.now = 3.0
    _speak(d, "ans1", "final_answer", "You're booked for eight.")
    d.clock.now = 3.5
    out = d.server("response.done", response={"id": "r1", "status": "completed"})
    (m,) = [e for e in emitted(out) if isinstance(e, ev.TurnMetrics)]
    assert m.preamble_audio_received == 1.5
    assert m.first_audio_received == 3.0
    assert m.time_to_first_audio == 2.0  # from the request to the answer, not to the preamble
    preamble = d.conv.history.get("pre1")
    assert preamble is not None and preamble.is_preamble  # kept: it was said
    answer = d.conv.history.last_answer()
    assert answer is not None and answer.id == "ans1" and answer.text == "You're booked for eight."


def test_without_phase_every_assistant_message_is_an_answer() -> None:
    d = Driver()
    d.ready()
    d.clock.now = 1.0
    d.do(d.conv.send_text("hi"))
    d.server("response.created", response={"id": "r1"})
    d.clock.now = 2.0
    _speak(d, "a1", None, "Hello!")
    out = d.server("response.done", response={"id": "r1", "status": "completed"})
    (m,) = [e for e in emitted(out) if isinstance(e, ev.TurnMetrics)]
    assert (m.first_audio_received, m.preamble_audio_received) == (2.0, None)
    answer = d.conv.history.last_answer()
    assert answer is not None and answer.id == "a1"


def test_a_turn_that_is_only_a_preamble_has_no_answer_audio() -> None:
    d = Driver()
    d.ready()
    d.do(d.conv.send_text("hm"))
    d.server("response.created", response={"id": "r1"})
    d.clock.now = 0.5
    _speak(d, "pre1", "commentary", "One moment.")
    out = d.server("response.done", response={"id": "r1", "status": "completed"})
    (m,) = [e for e in emitted(out) if isinstance(e, ev.TurnMetrics)]
    assert (m.first_audio_received, m.preamble_audio_received) == (None, 0.5)
    assert d.conv.history.last_answer() is None
