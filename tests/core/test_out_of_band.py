"""Out-of-band responses (``ask``): beside the slot, never in the history, machines or metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from engine.core import commands as cmd
from engine.core import events as ev
from engine.core.effects import ArmTimer, CancelTimer, Effect, Send
from engine.core.out_of_band import ASK_TIMER
from engine.core.states import Phase, State
from engine.errors import UsageTypeError, UsageValueError
from engine.protocol.codec import encode
from tests.core.driver import Driver, assistant_item, emitted, errors, pcm_b64, response, sent


def _ready() -> Driver:
    d = Driver()
    d.ready()
    return d


def _ask(d: Driver, prompt: str = "Summarise the call.", **options: Any) -> str:
    d.do(d.conv.ask(prompt, **options))
    assert d.conv.newest_ask is not None
    return d.conv.newest_ask


def _aside_created(d: Driver, request: str, rid: str = "resp_oob") -> list[Effect]:
    meta = {"metadata": {"engine_oob": request}, "conversation_id": None}
    return d.server("response.created", response=response(rid, **meta))


def _aside_text(d: Driver, rid: str, words: list[str]) -> None:
    item = {"id": "item_oob", "type": "message", "role": "assistant", "status": "in_progress", "content": []}
    d.server("response.output_item.added", response_id=rid, output_index=0, item=item)
    part = {"response_id": rid, "item_id": "item_oob", "output_index": 0, "content_index": 0}
    d.server("response.content_part.added", **part, part={"type": "text", "text": ""})
    for word in words:
        d.server("response.output_text.delta", **part, delta=word)
    d.server("response.output_text.done", **part, text="".join(words))


def _aside_done(d: Driver, request: str, rid: str, status: str = "completed", **extra: Any) -> list[Effect]:
    meta = {"metadata": {"engine_oob": request}, "conversation_id": None, **extra}
    return d.server("response.done", response=response(rid, status, **meta))


def _turn(d: Driver, between: Callable[[int], None]) -> None:
    """A voice turn with an audio answer; ``between(k)`` runs at five points inside it."""
    d.user_turn("item_u1", transcript="what time is it")
    between(0)
    d.start_reply("resp_1", "item_a1")
    between(1)
    d.audio("resp_1", "item_a1", pcm_b64(4800), words="It is ")
    between(2)
    d.audio("resp_1", "item_a1", pcm_b64(4800), words="noon.")
    between(3)
    d.finish_reply("resp_1", "item_a1", "It is noon.", usage={"total_tokens": 20, "output_tokens": 12})
    between(4)


def _picture(d: Driver, effects: list[Effect]) -> dict[str, Any]:
    """What an out-of-band answer must leave alone."""
    inband = [e for e in emitted(effects) if not isinstance(e, ev.OutOfBandDone | ev.OutOfBandFailed)]
    return {
        "states": d.conv.states,
        "history": d.conv.history.items(),
        "slot": (d.conv.phase, d.conv.response_id),
        "events": inband,
        "sent": [m for m in sent(effects) if m.get("response", {}).get("conversation") != "none"],
    }


def test_an_aside_interleaved_with_a_turn_changes_nothing_of_it() -> None:
    plain = _ready()
    _turn(plain, lambda _: None)
    without = _picture(plain, plain.take())

    d = _ready()
    request = ""

    def aside(k: int) -> None:
        nonlocal request
        if k == 0:
            request = _ask(d)
        elif k == 1:
            assert _aside_created(d, request) == []
            assert d.where == (State.RESPONDING, Phase.GENERATING) and d.conv.response_id == "resp_1"
        elif k == 2:
            _aside_text(d, "resp_oob", ["Caller ", "asked ", "the time."])
        elif k == 3:
            out = _aside_done(d, request, "resp_oob", usage={"total_tokens": 7, "output_tokens": 5})
            (done,) = emitted(out)
            assert done == ev.OutOfBandDone(
                request_id=request,
                response_id="resp_oob",
                text="Caller asked the time.",
                usage=done.usage,
            )
            assert done.usage is not None and done.usage.total_tokens == 7
            assert d.conv.response_id == "resp_1"  # the slot still holds the turn's response

    _turn(d, aside)
    effects = d.take()
    assert _picture(d, effects) == without  # states, history, slot, every event and TurnMetrics
    (metrics,) = [e for e in emitted(effects) if isinstance(e, ev.TurnMetrics)]
    assert metrics.usage is not None and metrics.usage.total_tokens == 20
    assert d.conv.pending_asks == () and errors(effects) == []


def test_the_ask_is_a_tagged_text_response_outside_the_conversation() -> None:
    d = _ready()
    request = _ask(d, "Is the caller angry?", timeout=5)
    (create,) = [m for m in sent(d.effects)]
    assert create == {
        "type": "response.create",
        "event_id": create["event_id"],
        "response": {
            "conversation": "none",
            "output_modalities": ["text"],
            "instructions": "Is the caller angry?",
            "metadata": {"engine_oob": request},
        },
    }
    assert ArmTimer(name=ASK_TIMER + request, delay=5) in d.effects
    assert d.conv.phase is Phase.IDLE and d.conv.pending_asks == (request,)

    d.take()
    _ask(d, "Translate: bonjour", instructions="Answer in English.", context="none")
    (create,) = sent(d.take())
    assert create["response"]["instructions"] == "Answer in English."
    assert create["response"]["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Translate: bonjour"}]}
    ]


def test_an_aside_while_the_slot_is_idle_never_takes_it() -> None:
    d = _ready()
    request = _ask(d)
    _aside_created(d, request)
    assert d.conv.phase is Phase.IDLE and d.conv.state is State.SESSION_READY
    # A request made now goes out: the slot was never busy.
    assert [m["type"] for m in sent(d.do(d.conv.create_response()))] == ["response.create"]
    _aside_text(d, "resp_oob", ["yes"])
    out = _aside_done(d, request, "resp_oob")
    assert [e.text for e in emitted(out)] == ["yes"]
    assert CancelTimer(name=ASK_TIMER + request) in out
    assert d.conv.phase is Phase.REQUESTED and d.conv.history.items() == ()


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_a_failed_or_cancelled_aside_fails_the_ask(status: str) -> None:
    d = _ready()
    request = _ask(d)
    _aside_created(d, request)
    details = {"type": status, "error": {"message": "overloaded"}} if status == "failed" else None
    out = _aside_done(d, request, "resp_oob", status, status_details=details)
    (failed,) = emitted(out)
    assert isinstance(failed, ev.OutOfBandFailed)
    assert (failed.request_id, failed.code, failed.response_id) == (request, "ask_failed", "resp_oob")
    assert status in failed.message
    assert d.conv.pending_asks == () and d.conv.phase is Phase.IDLE


def test_an_error_naming_the_ask_fails_it_and_leaves_the_slot() -> None:
    d = _ready()
    d.do(d.conv.send_text("hi"))
    assert d.conv.phase is Phase.REQUESTED
    request = _ask(d)
    create = sent(d.take())[-1]
    error = {"type": "invalid_request_error", "code": "invalid_value", "message": "bad metadata"}
    out = d.server("error", error={**error, "event_id": create["event_id"]})
    failed = [e for e in emitted(out) if isinstance(e, ev.OutOfBandFailed)]
    assert [(f.request_id, f.code, f.message) for f in failed] == [(request, "invalid_value", "bad metadata")]
    assert [e.fatal for e in errors(out)] == [False]
    assert d.conv.phase is Phase.REQUESTED  # our in-band request is still waiting
    assert CancelTimer(name=ASK_TIMER + request) in out


def test_no_answer_in_time_fails_the_ask_and_its_late_events_are_dropped() -> None:
    d = _ready()
    request = _ask(d, timeout=2.0)
    out = d.conv.timer_fired(ASK_TIMER + request)
    assert [(e.code, e.request_id) for e in emitted(out)] == [("ask_timeout", request)]
    assert d.conv.pending_asks == ()
    # The response comes after all: it is still nobody's, and never the slot's.
    d.take()
    _aside_created(d, request)
    _aside_text(d, "resp_oob", ["late"])
    _aside_done(d, request, "resp_oob")
    assert emitted(d.take()) == [] and d.conv.phase is Phase.IDLE
    assert d.conv.timer_fired(ASK_TIMER + request) == []  # a stale timer does nothing


def test_a_dropped_socket_fails_the_pending_asks_and_restores_none() -> None:
    d = _ready()
    first = _ask(d)
    _aside_created(d, first)
    second = _ask(d)
    d.take()
    out = d.conv.connection_lost()
    failed = [e for e in emitted(out) if isinstance(e, ev.OutOfBandFailed)]
    assert [(f.request_id, f.code) for f in failed] == [(first, "ask_lost"), (second, "ask_lost")]
    assert failed[0].response_id == "resp_oob"
    assert {CancelTimer(name=ASK_TIMER + first), CancelTimer(name=ASK_TIMER + second)} <= set(out)
    # While reconnecting an ask fails at once; after the restore nothing of them is sent again.
    out = d.conv.ask("anyone there?")
    assert [e.code for e in emitted(out)] == ["ask_lost"] and sent(out) == []
    d.server("session.created", session={})
    restored = d.server("session.updated", session={"type": "realtime"})
    assert [m for m in sent(restored) if m["type"] == "response.create"] == []
    assert d.conv.pending_asks == ()


def test_a_barge_in_during_an_aside_neither_cuts_nor_cancels_it() -> None:
    d = _ready()
    d.user_turn("item_u1", transcript="hello")
    d.start_reply("resp_1", "item_a1")
    request = _ask(d)
    _aside_created(d, request)
    d.audio("resp_1", "item_a1", pcm_b64(4800), words="Hel")
    _aside_text(d, "resp_oob", ["still ", "here"])
    d.take()
    out = d.server("input_audio_buffer.speech_started", item_id="item_u2", audio_start_ms=3000)
    interrupted = [e for e in emitted(out) if isinstance(e, ev.Interrupted)]
    assert [e.response_id for e in interrupted] == ["resp_1"]
    assert all(m.get("response_id") != "resp_oob" for m in sent(out))  # no cancel, no truncate of it
    d.finish_reply("resp_1", "item_a1", "Hel", status="cancelled")
    out = _aside_done(d, request, "resp_oob")
    assert [e.text for e in emitted(out)] == ["still here"]


def test_an_aside_without_deltas_takes_its_text_from_the_output() -> None:
    d = _ready()
    request = _ask(d)
    _aside_created(d, request)
    item = assistant_item("item_oob", status="completed")
    item["content"] = [{"type": "output_text", "text": "from the output"}]
    out = _aside_done(d, request, "resp_oob", "incomplete", output=[item])
    assert [(e.text, e.status) for e in emitted(out)] == [("from the output", "incomplete")]


def test_close_forgets_the_asks_and_ask_after_close_is_refused() -> None:
    d = _ready()
    request = _ask(d)
    out = d.conv.close()
    assert CancelTimer(name=ASK_TIMER + request) in out and d.conv.pending_asks == ()
    out = d.conv.ask("hello?")
    assert [e.code for e in errors(out)] == ["session_closed"] and sent(out) == []


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"prompt": 3}, UsageTypeError),
        ({"prompt": "  "}, UsageValueError),
        ({"prompt": "x", "instructions": 1}, UsageTypeError),
        ({"prompt": "x", "context": "all"}, UsageValueError),
        ({"prompt": "x", "timeout": 0}, UsageValueError),
        ({"prompt": "x", "timeout": float("nan")}, UsageValueError),
        ({"prompt": "x", "timeout": True}, UsageTypeError),
    ],
)
def test_bad_arguments_raise_before_anything_changes(options: dict[str, Any], error: type) -> None:
    d = _ready()
    before = (d.conv.states, d.conv.pending_asks, d.conv.newest_ask)
    with pytest.raises(error, match=r"ask\(\)"):
        d.conv.handle(cmd.Ask(**options))
    assert (d.conv.states, d.conv.pending_asks, d.conv.newest_ask) == before


def test_the_command_records_and_replays() -> None:
    command = cmd.Ask(prompt="p", instructions="i", context="none", timeout=3.5)
    record = cmd.to_record(command)
    assert record == {"type": "ask", "prompt": "p", "instructions": "i", "context": "none", "timeout": 3.5}
    assert cmd.from_record(record) == command
    d = _ready()
    effects = d.conv.handle(cmd.from_record(record))
    assert [type(e) for e in effects] == [Send, ArmTimer]
    assert '"engine_oob"' in encode(effects[0].event)  # type: ignore[union-attr]
