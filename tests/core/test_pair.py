"""The client core against the local-server core, with no event loop (see ``pair.py``).

Each test plays one ordering that matters (docs/protocol.md §6): a text turn,
a voice turn, tool calls, barge-in, errors, a restore after a drop. The two
sides only meet through wire JSON, so a test passes only if what the client
sends is what the server accepts, and the client's mirror of the conversation
agrees with the server's. The last test lets Hypothesis choose, message by
message, which direction of the link moves next.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core import events as ev
from engine.core.states import Phase, State
from engine.protocol import SessionConfig
from engine.protocol.config import FunctionTool
from engine.protocol.items import Item
from engine.providers import Inworld, OpenAI
from tests.core.pair import Pair, silence, tone

WEATHER = FunctionTool(
    name="get_weather",
    description="Current weather for a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
PROVIDERS = {"inworld": Inworld(api_key="local-key"), "openai": OpenAI(api_key="local-key")}


def weather(arguments: dict[str, Any]) -> dict[str, Any]:
    return {"city": arguments.get("city"), "temp_c": 21}


def pair(provider: str = "inworld", *, pace: float = 0.0, **config: Any) -> Pair:
    """A connected pair, configured as the provider's ``Session`` would configure it."""
    chosen = PROVIDERS[provider]
    session = chosen.prepare(SessionConfig(tools=(WEATHER,), **config))
    return Pair(
        session,
        options=chosen.core_options(),
        tools={"get_weather": weather},
        pace=pace,
        dialect="openai" if provider == "openai" else "inworld",
    ).connect()


def shape(items: Any) -> list[tuple[str, str | None, str]]:
    """What a conversation says, item by item, whichever side holds it."""
    return [(i.type, i.role, i.text or i.output or i.name or "") for i in items]


def agree(p: Pair) -> None:
    """The client's mirror says what the server's conversation says.

    A cut answer is the one difference allowed: both keep the same fraction of
    its text, the server by characters and the mirror by whole words, so the
    mirror's text is a prefix of the server's.
    """
    mirror, server = shape(p.client.history.items()), shape(p.server.conversation.items)
    assert [m[:2] for m in mirror] == [s[:2] for s in server], (mirror, server)
    for (_, role, ours), (_, _, theirs) in zip(mirror, server, strict=True):
        assert ours == theirs or (role == "assistant" and theirs.startswith(ours)), (ours, theirs)


def settled(p: Pair) -> None:
    """Both machines at rest, nothing the server refused, every tool call answered once."""
    assert (p.client.state, p.client.phase) == (State.SESSION_READY, Phase.IDLE)
    assert p.server.active_response_id is None
    items = p.server.conversation.items
    calls = [i.call_id for i in items if i.type == "function_call"]
    outputs = [i.call_id for i in items if i.type == "function_call_output"]
    assert sorted(calls) == sorted(outputs), "every call answered exactly once"


@pytest.mark.parametrize("provider", ["inworld", "openai"])
def test_handshake_then_a_text_turn(provider: str) -> None:
    p = pair(provider)
    assert p.received_types() == ["session.created", "conversation.created", "session.updated"]
    assert p.client.state is State.SESSION_READY
    p.command(p.client.send_text("hello there"))
    assert p.sent_types() == ["session.update", "conversation.item.create", "response.create"]
    assert p.final_answers() == ["You said: hello there."]
    assert p.server_errors() == [] and p.errors() == []
    assert shape(p.client.history.items()) == shape(p.server.conversation.items)
    settled(p)


def test_audio_before_ready_is_held_then_a_voice_turn_answered_by_the_server() -> None:
    p = Pair(Inworld(api_key="k").prepare(SessionConfig()), options=Inworld(api_key="k").core_options())
    p.speak(tone(600))  # the socket is not even open: the gate is shut
    assert p.held_audio and not p.sent
    p.connect()  # ready: the held speech goes out after session.update, in order
    p.speak(silence(900))
    p.run_until_quiet()
    assert "response.create" not in p.sent_types()  # create_response: the server answers by itself
    assert [e.text for e in p.events(ev.UserTranscript) if e.final] == ["[speech 0.60 s, loud]"]
    assert p.final_answers() == ["You said: [speech 0.60 s, loud]"]
    assert p.events(ev.SpeechStarted) and p.events(ev.SpeechStopped)
    agree(p)
    settled(p)


@pytest.mark.parametrize("provider", ["inworld", "openai"])
def test_a_tool_call_is_answered_once_and_followed_by_one_response(provider: str) -> None:
    p = pair(provider)
    p.command(p.client.send_text("What's the weather in Paris?"))
    (call,) = p.events(ev.ToolCall)
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
    types = p.sent_types()
    output_at = types.index("conversation.item.create", 2)
    assert types[output_at:] == ["conversation.item.create", "response.create"]
    assert p.final_answers() == ['The result is {"city": "Paris", "temp_c": 21}.']
    assert p.server_errors() == []
    settled(p)


def test_barge_in_truncates_the_answer_at_what_was_played() -> None:
    p = pair(pace=1.0)
    p.command(p.client.send_text("tell me something long " * 8))
    p.advance(0.8)  # the answer streams in real time; the speaker is about 0.8 s in
    p.speak(tone(400))
    p.speak(silence(700))
    (cut,) = p.events(ev.Interrupted)
    truncates = [m for m in p.sent if m["type"] == "conversation.item.truncate"]
    assert [(m["item_id"], m["audio_end_ms"]) for m in truncates] == [(cut.item_id, cut.played_ms)]
    assert 800 <= cut.played_ms < 1400
    truncated = [m for m in p.received if m["type"] == "conversation.item.truncated"]
    assert [m["audio_end_ms"] for m in truncated] == [cut.played_ms]  # the server took it
    done = [m["response"] for m in p.received if m["type"] == "response.done"]
    assert done[0]["status"] == "cancelled" and done[0]["status_details"]["reason"] == "turn_detected"
    assert "response.cancel" not in p.sent_types()  # interrupt_response: the server cancels itself
    p.run_until_quiet()
    assert p.server_errors() == [] and p.errors() == []
    agree(p)
    settled(p)


def test_barge_in_on_an_answer_never_heard_deletes_it() -> None:
    p = pair()
    p.command(p.client.send_text("hello"))
    (item_id,) = {m["item_id"] for m in p.received if m["type"] == "response.output_audio.delta"}
    p.command(p.client.audio_played(item_id, 0))  # the speaker reports nothing played yet
    p.speak(tone(400))
    assert [m["item_id"] for m in p.sent if m["type"] == "conversation.item.delete"] == [item_id]
    assert "conversation.item.truncate" not in p.sent_types()
    assert p.server.conversation.get(item_id) is None and p.client.history.get(item_id) is None
    p.speak(silence(700))
    p.run_until_quiet()
    assert p.server_errors() == []
    settled(p)


def test_a_cancel_before_created_waits_for_the_id_and_a_late_one_is_benign() -> None:
    p = pair()
    p.apply(p.client.send_text("hello"))
    p.apply(p.client.cancel_response())  # nothing is known yet: the cancel is deferred
    assert "response.cancel" not in p.sent_types()
    p.settle()  # pace 0: the server finished before the deferred cancel reached it
    assert p.sent_types()[-1] == "response.cancel"
    assert [e["code"] for e in p.server_errors()] == ["response_cancel_not_active"]
    assert p.errors() == []  # benign: not even a report
    settled(p)


def test_a_cancel_while_generating_ends_the_response_cancelled() -> None:
    p = pair(pace=1.0)
    p.command(p.client.send_text("hello " * 20))
    p.advance(0.3)
    p.command(p.client.cancel_response())
    done = [m["response"] for m in p.received if m["type"] == "response.done"]
    assert [(d["status"], d["status_details"]["reason"]) for d in done] == [("cancelled", "client_cancelled")]
    p.run_until_quiet()
    assert p.server_errors() == []
    settled(p)


def test_a_refused_commit_is_reported_and_the_conversation_goes_on() -> None:
    p = pair(turn_detection=None)
    p.command(p.client.commit_audio())  # manual turns, nothing buffered
    assert [e["code"] for e in p.server_errors()] == ["input_audio_buffer_commit_empty"]
    (error,) = p.errors()
    assert (error.code, error.fatal) == ("input_audio_buffer_commit_empty", False)
    assert p.client.state is State.SESSION_READY
    p.command(p.client.send_text("still there?"))
    assert p.final_answers() == ["You said: still there?"]
    settled(p)


def test_two_requests_are_coalesced_so_the_server_never_refuses_one() -> None:
    p = pair(pace=1.0)
    p.command(p.client.send_text("first"))
    p.command(p.client.create_response())  # while the first is generating
    p.command(p.client.create_response())
    p.run_until_quiet()
    assert p.sent_types().count("response.create") == 2  # the first, then one for both later asks
    assert p.server_errors() == []
    settled(p)


def test_a_restore_replays_the_conversation_to_a_fresh_server() -> None:
    p = pair()
    p.command(p.client.send_text("hello"))
    p.command(p.client.send_text("What's the weather in Paris?"))
    before = shape(p.server.conversation.items)
    p.run_until_quiet()  # every answer played out: nothing to cut
    p.drop()
    assert p.client.state is State.RECONNECTING
    p.connect()
    assert p.connections == 2 and p.client.state is State.SESSION_READY
    assert shape(p.server.conversation.items) == before  # assistant audio comes back as its text
    assert p.server_errors() == []
    settled(p)


def test_a_drop_mid_answer_resumes_without_a_fresh_greeting() -> None:
    p = pair(pace=1.0)
    p.command(p.client.send_text("tell me a story " * 6))
    p.advance(0.5)
    p.drop()
    (cut,) = p.events(ev.Interrupted)
    p.connect()
    notes = [i.text for i in p.server.conversation.items if i.role == "system"]
    assert len(notes) == 1 and "do not greet" in notes[0]
    p.run_until_quiet()
    assert len(p.final_answers()) == 1  # the answer after the restore (the cut one never finished)
    heard = p.client.history.get(cut.item_id)
    assert heard is not None and heard.text and len(heard.text) < len("You said: " + "tell me a story " * 6)
    assert p.server_errors() == []
    settled(p)


def test_seeded_history_reaches_the_server_before_the_first_turn() -> None:
    seeded = (Item.user_text("My name is Ada.", id="item_seed_1"),)
    chosen = PROVIDERS["inworld"]
    p = Pair(chosen.prepare(SessionConfig()), options=chosen.core_options(), history=seeded).connect()
    assert shape(p.server.conversation.items) == [("message", "user", "My name is Ada.")]
    p.command(p.client.send_text("What is my name?"))
    assert p.server_errors() == []
    settled(p)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    question=st.sampled_from(["What's the weather in Paris?", "hello there"]),
    ask_again=st.booleans(),
    tool_delay=st.sampled_from([0.0, 0.15, 1.5]),
    barge_at=st.sampled_from([None, 0.0, 0.1, 0.4, 1.0, 2.5]),
    drop_at=st.sampled_from([None, 0.05, 0.3, 1.2]),
)
def test_any_interleaving_keeps_the_rules(
    seed: int,
    question: str,
    ask_again: bool,
    tool_delay: float,
    barge_at: float | None,
    drop_at: float | None,
) -> None:
    """Whatever order the link delivers in and whenever the user or the network cuts in.

    No request the server refuses (but a cancel that crossed the response's
    end), no fatal error, every call answered once, the mirror agreeing with
    the server, both machines at rest.
    """
    p = pair(pace=1.0)
    p.choose = random.Random(seed).randrange
    p.tool_delay = tool_delay
    p.command(p.client.send_text(question))
    if ask_again:
        p.command(p.client.create_response())  # a second ask while the first is in flight
    cuts = sorted((t, what) for t, what in ((barge_at, "barge"), (drop_at, "drop")) if t is not None)
    elapsed = 0.0
    for at, what in cuts:
        p.advance(at - elapsed)
        elapsed = at
        if what == "drop":
            p.drop()
            p.connect()
        else:
            p.speak(tone(300))
            p.speak(silence(700))
            elapsed += 1.0
    p.run_until_quiet()
    refused = {e["code"] for e in p.server_errors()}
    assert not refused - {"response_cancel_not_active"}, p.server_errors()
    assert not [e for e in p.errors() if e.fatal]
    agree(p)
    settled(p)
