"""Issue 6: barge-in against the local server streaming its answer in real time (``pace=1``).

The user cuts a long answer off by speaking. The playback ledger decides what
the user heard: the application's acknowledgement (``audio_played``) when
there is one, otherwise the wall clock since the first delta. The server is
told to forget the rest (``conversation.item.truncate`` to what was heard, or
``conversation.item.delete`` when nothing was), late audio of the cut
response is never delivered, and ``response.cancel`` is sent only when the
server will not cancel by itself (``interrupt_response=False``).
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import engine
from engine import events as ev
from tests.e2e.helpers import (
    SETTINGS,
    Recorder,
    Wire,
    collect_until,
    inworld,
    make_server,
    next_event,
    speech,
    stream_audio,
)

pytestmark = pytest.mark.anyio

LONG = "Tell me a long story about the sea, the ships and the lighthouse keepers of the north."
FULL_ANSWER = f"You said: {LONG}"
FULL_AUDIO_MS = len(FULL_ANSWER) * 60  # the local server speaks ~60 ms per character


def _session(server: Any, wire: Wire, config: engine.SessionConfig | None = None) -> engine.Session:
    return engine.Session(
        inworld(server),
        config or engine.SessionConfig(instructions="Tell long stories."),
        settings=SETTINGS,
        connector=wire,
    )


async def _audio_of_response(stream: Any, at_least_ms: float) -> list[ev.AudioOut]:
    """``AudioOut`` of the answer in progress until ``at_least_ms`` of it arrived."""
    chunks: list[ev.AudioOut] = []
    while sum(c.duration_ms for c in chunks) < at_least_ms:
        chunks.append(await next_event(stream, ev.AudioOut))
    return chunks


def _answered(cut: str | None) -> Any:
    """The end of the turn after the cut one (all the user's audio has gone out by then)."""
    return lambda e: isinstance(e, ev.TurnMetrics) and e.response_id != cut


def _after(events: list[Any], marker: Any) -> list[Any]:
    return events[events.index(marker) + 1 :]


def _audio(events: list[Any], response_id: str | None) -> list[ev.AudioOut]:
    """The ``AudioOut`` of one response among ``events``."""
    return [e for e in events if isinstance(e, ev.AudioOut) and e.response_id == response_id]


async def test_barge_in_truncates_to_the_acknowledged_playback() -> None:
    server = make_server(pace=1.0)
    wire = Wire()
    recorder = Recorder()
    with anyio.fail_after(15):
        async with server.running():
            session = _session(server, wire)
            session.on()(recorder)
            async with session.connect():
                stream = session.events()
                await session.send_text(LONG)
                (first, *_) = await _audio_of_response(stream, 480)  # 8 chunks: 420 ms of wall clock
                item_id, response_id = first.item_id, first.response_id
                assert item_id is not None
                session.audio_played(item_id, 300)  # the speaker lags: 300 ms played
                server.say_next("Stop.")
                await stream_audio(session, speech(0.8))
                rest = await collect_until(stream, _answered(response_id))
                history = {item.id: item for item in session.history}
            connection = server.connections[0]
            server_item = connection.conversation.get(item_id)

    (interrupted,) = [e for e in rest if isinstance(e, ev.Interrupted)]
    # The acknowledged value, not the wall clock (at least 420 ms since the first delta).
    assert (interrupted.item_id, interrupted.response_id) == (item_id, response_id)
    assert interrupted.played_ms == 300
    truncates = wire.connections[0].of_type("conversation.item.truncate")
    assert [(t["item_id"], t["content_index"], t["audio_end_ms"]) for t in truncates] == [(item_id, 0, 300)]
    assert "conversation.item.truncate" in connection.received_types
    assert "conversation.item.truncated" in connection.sent_types
    assert connection.conversation.audio_ms[item_id] == 300
    # Server VAD cancels by itself (interrupt_response defaults to true): no response.cancel.
    assert "response.cancel" not in connection.received_types
    (done,) = [e for e in rest if isinstance(e, ev.ResponseDone) and e.response_id == response_id]
    assert done.status == "cancelled"
    # No audio of the cut response is delivered after Interrupted, to streams or callbacks.
    assert _audio(_after(rest, interrupted), response_id) == []
    everything = recorder.events
    (seen,) = [e for e in everything if isinstance(e, ev.Interrupted)]
    assert _audio(_after(everything, seen), response_id) == []
    assert sum(e.duration_ms for e in _audio(everything, response_id)) < FULL_AUDIO_MS
    # Both transcripts keep only the start of the answer.
    assert server_item is not None
    assert 0 < len(server_item.text) < len(FULL_ANSWER)
    assert FULL_ANSWER.startswith(history[item_id].text)
    assert len(history[item_id].text) < len(FULL_ANSWER)
    # The user's interruption became the next turn, answered normally.
    assert [e.text for e in rest if isinstance(e, ev.UserTranscript) and e.final] == ["Stop."]
    assert recorder.of_type(ev.Error) == []


async def test_barge_in_before_anything_was_heard_deletes_the_item() -> None:
    """The player acknowledged 0 ms (still buffering): nothing was heard, so the item is deleted."""
    server = make_server(pace=1.0)
    wire = Wire()
    recorder = Recorder()
    with anyio.fail_after(15):
        async with server.running():
            session = _session(server, wire)
            session.on()(recorder)
            async with session.connect():
                stream = session.events()
                await session.send_text(LONG)
                (first,) = await _audio_of_response(stream, 1)
                assert first.item_id is not None
                session.audio_played(first.item_id, 0)
                server.say_next("Wait.")
                await stream_audio(session, speech(0.8))
                interrupted = await next_event(stream, ev.Interrupted)
                await collect_until(stream, _answered(first.response_id))
                history_ids = [item.id for item in session.history]
            connection = server.connections[0]

    assert (interrupted.item_id, interrupted.played_ms) == (first.item_id, 0)
    sent = wire.connections[0]
    assert [d["item_id"] for d in sent.of_type("conversation.item.delete")] == [first.item_id]
    assert sent.of_type("conversation.item.truncate") == []
    assert "conversation.item.deleted" in connection.sent_types
    assert connection.conversation.get(first.item_id) is None
    assert first.item_id not in history_ids
    assert "response.cancel" not in connection.received_types
    assert recorder.of_type(ev.Error) == []


async def test_barge_in_without_acknowledgements_uses_the_wall_clock() -> None:
    """No acknowledgement at all: playback is estimated from the time since the first delta."""
    server = make_server(pace=1.0)
    wire = Wire()
    with anyio.fail_after(15):
        async with server.running():
            session = _session(server, wire)
            async with session.connect():
                stream = session.events()
                await session.send_text(LONG)
                (first,) = await _audio_of_response(stream, 1)
                first_at = anyio.current_time()
                server.say_next("Wait.")
                await stream_audio(session, speech(0.8))
                interrupted = await next_event(stream, ev.Interrupted)
                elapsed_ms = (anyio.current_time() - first_at) * 1000
                await collect_until(stream, _answered(first.response_id))
            connection = server.connections[0]

    assert interrupted.item_id == first.item_id
    played = interrupted.played_ms
    assert played is not None
    # The estimate counts from the first delta's arrival, which came before our first_at.
    assert 0 <= played <= elapsed_ms + 100
    sent = wire.connections[0]
    if played == 0:
        assert [d["item_id"] for d in sent.of_type("conversation.item.delete")] == [first.item_id]
    else:
        truncates = [(t["item_id"], t["audio_end_ms"]) for t in sent.of_type("conversation.item.truncate")]
        assert truncates == [(first.item_id, played)]
        assert connection.conversation.audio_ms[first.item_id] == played


async def test_barge_in_cancels_when_the_server_does_not() -> None:
    """``interrupt_response=False``: the server keeps talking, so the client sends ``response.cancel``."""
    server = make_server(pace=1.0)
    wire = Wire()
    config = engine.SessionConfig(
        instructions="Tell long stories.", turn_detection=engine.SemanticVad(interrupt_response=False)
    )
    with anyio.fail_after(15):
        async with server.running():
            session = _session(server, wire, config)
            async with session.connect():
                stream = session.events()
                await session.send_text(LONG)
                chunks = await _audio_of_response(stream, 360)
                item_id, response_id = chunks[0].item_id, chunks[0].response_id
                assert item_id is not None
                session.audio_played(item_id, 300)
                server.say_next("Stop.")
                await stream_audio(session, speech(0.8))
                rest = await collect_until(stream, _answered(response_id))
            connection = server.connections[0]

    (interrupted,) = [e for e in rest if isinstance(e, ev.Interrupted)]
    assert interrupted.played_ms == 300
    cancels = wire.connections[0].of_type("response.cancel")
    assert [c.get("response_id") for c in cancels] == [response_id]
    assert connection.received_types.count("response.cancel") == 1
    (done,) = [e for e in rest if isinstance(e, ev.ResponseDone) and e.response_id == response_id]
    assert done.status == "cancelled"
    assert (done.status_details or {}).get("reason") == "client_cancelled"
    assert _audio(_after(rest, interrupted), response_id) == []
