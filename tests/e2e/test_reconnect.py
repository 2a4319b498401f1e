"""Issue 5: the session survives a dropped socket, gives up when it must, and rolls over on time.

The local server drops connections on purpose (:class:`~engine.server.faults.Faults`)
and refuses handshakes (``refuse_next``). The client must reconnect with
backoff, restore the conversation on the new socket (``session.update``, then
the mirrored history as ``conversation.item.create``), report the response the
drop cut off, answer each tool call exactly once across sockets, hold caller
audio while no socket is up (up to ``hold_limit_ms``, then by ``hold_policy``),
stop at once on 401, stop after ``max_attempts`` refusals, and move to a fresh
socket between turns when ``max_session_duration`` is reached.

Four tests pin engine bugs found while writing them (fixed since).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import anyio
import pytest

import engine
from engine import events as ev
from engine.server.faults import Faults
from tests.e2e.helpers import (
    CHUNK_BYTES,
    Recorder,
    Wire,
    collect_until,
    inworld,
    make_server,
    next_event,
    outputs_per_call,
    play_all,
    turn_done,
)

pytestmark = pytest.mark.anyio

QUICK = engine.ReconnectPolicy(initial_delay=0.01, jitter=0)
WEATHER = {"city": "Paris", "temp_c": 21}


def _settings(policy: engine.ReconnectPolicy = QUICK, **extra: Any) -> engine.SessionSettings:
    return engine.SessionSettings(close_timeout=0.5, reconnect=policy, **extra)


def _session(server: Any, wire: Wire, recorder: Recorder, settings: engine.SessionSettings) -> engine.Session:
    session = engine.Session(
        inworld(server), engine.SessionConfig(instructions="be brief"), settings=settings, connector=wire
    )
    session.on()(recorder)
    return session


def _states(recorder: Recorder) -> list[tuple[engine.State, engine.State]]:
    return [(e.old, e.new) for e in recorder.of_type(ev.StateChanged)]


def _created_items(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["item"] for m in messages if m["type"] == "conversation.item.create"]


# ---------------------------------------------------------------------- 1. drop mid-response


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(Faults(drop_at="response.output_audio.delta"), id="abort-1006-at-first-audio"),
        pytest.param(Faults(drop_after=12, close_code=1011), id="close-1011-after-12-events"),
    ],
)
async def test_drop_mid_response_reconnects_and_restores(fault: Faults) -> None:
    server = make_server()
    server.inject(fault, index=0)
    wire, recorder = Wire(), Recorder()
    with anyio.fail_after(10):
        async with server.running():
            session = _session(server, wire, recorder, _settings())
            async with session.connect():
                stream = session.events()
                await session.send_text("Hello there")
                cut = await next_event(stream, ev.Interrupted)
                await next_event(stream, ev.Reconnected)
                resumed = await turn_done(stream)
                await session.send_text("And again")
                again = await collect_until(stream, lambda e: isinstance(e, ev.TurnMetrics))
                assert session.state is engine.State.SESSION_READY
                history = session.history
    first, second = server.connections

    assert first.dropped
    (reconnecting,) = recorder.of_type(ev.Reconnecting)
    (reconnected,) = recorder.of_type(ev.Reconnected)
    assert (reconnecting.attempt, reconnected.attempt) == (1, 1)
    # The interrupted response is reported before the reconnect, then the state goes round.
    milestones = ev.Interrupted | ev.Reconnecting | ev.Reconnected
    order = [type(e) for e in recorder.events if isinstance(e, milestones)]
    assert order == [ev.Interrupted, ev.Reconnecting, ev.Reconnected]
    assert cut.response_id is not None and cut.response_id.startswith("resp_L0")
    states = _states(recorder)
    assert (engine.State.RESPONDING, engine.State.RECONNECTING) in states
    assert (engine.State.RECONNECTING, engine.State.SESSION_READY) in states

    # The restore: session.update first, then the mirrored history in order (what has
    # words: a cut-off answer is kept as far as it got), then a "go on" note and a response.
    restore = wire.connections[1].sent
    assert restore[0]["type"] == "session.update"
    created = _created_items(restore)
    (note,) = [i for i in history if i.role == "system"]
    ids = [i.id for i in history]
    mirrored = [i.id for i in history[: ids.index(note.id)] if i.text]
    assert [i.get("id") for i in created[: len(mirrored) + 1]] == [*mirrored, note.id]
    assert created[0]["content"][0]["text"] == "Hello there"
    kinds = list(second.received_types)
    assert kinds[: len(mirrored) + 3] == [
        "session.update",
        *["conversation.item.create"] * (len(mirrored) + 1),
        "response.create",
    ]
    assert resumed.reconnect_seconds is not None

    # The next text turn completes on the new socket.
    answer = [e.text for e in again if isinstance(e, ev.AssistantTranscript) and e.final]
    assert answer == ["You said: And again."]
    user_texts = [i.text for i in second.conversation.items if i.role == "user"]
    assert user_texts == ["Hello there", "And again"]
    assert [e for e in recorder.of_type(ev.Error) if e.fatal] == []


async def test_drop_before_the_answer_started_blames_no_earlier_answer() -> None:
    server = make_server()
    wire, recorder = Wire(), Recorder()
    with anyio.fail_after(10):
        async with server.running():
            session = _session(server, wire, recorder, _settings())
            async with session.connect():
                stream = session.events()
                await session.send_text("Hello there")
                first_turn = await collect_until(stream, lambda e: isinstance(e, ev.TurnMetrics))
                heard = play_all(session, first_turn)  # the first answer was heard in full
                # From now on the first socket dies instead of announcing the next response.
                server.connections[0].faults = Faults(drop_at="response.created")
                await session.send_text("And again")
                dropped = await collect_until(stream, lambda e: isinstance(e, ev.Reconnected))
                again = await collect_until(stream, lambda e: isinstance(e, ev.TurnMetrics))

    answers = [e.text for e in again if isinstance(e, ev.AssistantTranscript) and e.final]
    assert answers == ["You said: And again."]  # the lost request was made again on the new socket
    (previous,) = heard
    cuts = [e for e in dropped if isinstance(e, ev.Interrupted)]
    assert [c.item_id for c in cuts if c.item_id == previous] == [], cuts


# ---------------------------------------------------------------------- 2. tool call across a drop


@pytest.mark.parametrize("answer_when", ["after-restore", "while-reconnecting"])
async def test_tool_output_is_sent_exactly_once_across_a_drop(answer_when: str) -> None:
    server = make_server()
    # Drop instead of sending response.done of the function-call response: the call is
    # complete (arguments.done arrived), so the tool is already running when the socket dies.
    server.inject(Faults(drop_at="response.done"), index=0)
    wire, recorder = Wire(), Recorder()
    policy = engine.ReconnectPolicy(initial_delay=0.3, jitter=0)  # a window to answer in
    release = anyio.Event()
    with anyio.fail_after(10):
        async with server.running():
            session = _session(server, wire, recorder, _settings(policy))

            @session.tool
            async def get_weather(city: str) -> dict[str, Any]:
                """Current weather.

                Args:
                    city: the city.
                """
                await release.wait()
                return {**WEATHER, "city": city}

            async with session.connect():
                stream = session.events()
                await session.send_text("What's the weather in Paris?")
                call = await next_event(stream, ev.ToolCall)
                if answer_when == "while-reconnecting":
                    await next_event(stream, ev.Reconnecting)
                    release.set()
                    await next_event(stream, ev.ToolResult)
                    assert session.state is engine.State.RECONNECTING
                    await next_event(stream, ev.Reconnected)
                else:
                    await next_event(stream, ev.Reconnected)
                    release.set()
                events = await collect_until(stream, lambda e: isinstance(e, ev.TurnMetrics))
    first, second = server.connections

    assert first.dropped
    (result,) = recorder.of_type(ev.ToolResult)
    assert result.call_id == call.call_id
    # Exactly one output, on the new connection; none anywhere else, none twice on the wire.
    assert outputs_per_call(second.conversation.items) == {call.call_id: 1}
    assert [i for i in first.conversation.items if i.type == "function_call_output"] == []
    outputs = [i for i in _created_items(wire.sent()) if i["type"] == "function_call_output"]
    assert [o["call_id"] for o in outputs] == [call.call_id]
    assert [o["call_id"] for o in _created_items(wire.connections[1].sent) if "call_id" in o] == [
        call.call_id,
        call.call_id,
    ]  # the restored function_call, then its one output
    # The follow-up answer quotes the tool's output.
    answers = [e.text for e in events if isinstance(e, ev.AssistantTranscript) and e.final]
    assert answers and result.output in answers[-1]
    assert json.loads(result.output) == WEATHER


# ---------------------------------------------------------------------- 3. giving up


async def test_gives_up_after_max_attempts_following_a_drop() -> None:
    server = make_server()
    server.inject(Faults(drop_at="response.output_audio.delta"), index=0)
    wire, recorder = Wire(), Recorder()
    settings = _settings(engine.ReconnectPolicy(max_attempts=2, initial_delay=0.01))
    with anyio.fail_after(10):
        async with server.running():
            session = _session(server, wire, recorder, settings)
            with pytest.raises(engine.SessionClosed):
                async with session.connect():
                    # More refusals than the policy allows attempts, yet few enough that a
                    # session that never gives up gets through (and fails here fast, not by hanging).
                    server.refuse_next(3, status=503)
                    await session.send_text("Hello there")
                    await session.wait_for(ev.Reconnected)  # a session that gave up cancels this

    assert [e.attempt for e in recorder.of_type(ev.Reconnecting)] == [1, 2]
    assert server.refused == 2
    assert len(server.connections) == 1
    (closed,) = recorder.of_type(ev.Closed)
    assert closed.error is not None and closed.error.fatal
    assert closed.error.code == "connection_failed"
    assert "2 attempts" in closed.error.message
    assert session.state is engine.State.CLOSED


async def test_gives_up_after_max_attempts_when_the_first_connect_fails() -> None:
    """The same policy before any socket worked: two retries, then the handshake error itself."""
    server = make_server()
    server.refuse_next(10, status=503)
    wire, recorder = Wire(), Recorder()
    settings = _settings(engine.ReconnectPolicy(max_attempts=2, initial_delay=0.01))
    with anyio.fail_after(10):
        async with server.running():
            session = _session(server, wire, recorder, settings)
            with pytest.raises(engine.HandshakeError) as refused:
                async with session.connect():
                    pytest.fail("the session must not become ready")

    assert refused.value.status == 503
    assert [e.attempt for e in recorder.of_type(ev.Reconnecting)] == [1, 2]
    assert server.refused == 3  # the first try and two retries
    assert server.connections == []


async def test_401_at_reconnect_is_fatal_without_retry() -> None:
    server = make_server()
    server.inject(Faults(drop_at="response.output_audio.delta"), index=0)
    wire, recorder = Wire(), Recorder()
    with anyio.fail_after(10):
        async with server.running():
            session = _session(server, wire, recorder, _settings())
            with pytest.raises(engine.SessionClosed):
                async with session.connect():
                    server.refuse_next(1, status=401)
                    await session.send_text("Hello there")
                    await anyio.sleep_forever()  # the session cancels the body when it gives up

    assert [e.attempt for e in recorder.of_type(ev.Reconnecting)] == [1]
    assert server.refused == 1
    assert len(server.connections) == 1
    (closed,) = recorder.of_type(ev.Closed)
    assert closed.error is not None and closed.error.fatal
    assert "401" in closed.error.message


# ---------------------------------------------------------------------- 4. audio while reconnecting


async def test_audio_sent_while_reconnecting_is_held_then_delivered_after_the_restore() -> None:
    server = make_server()
    server.inject(Faults(drop_at="response.output_audio.delta"), index=0)
    wire, recorder = Wire(), Recorder()
    policy = engine.ReconnectPolicy(initial_delay=0.3, jitter=0)
    chunks = 10
    with anyio.fail_after(10):
        async with server.running():
            session = _session(server, wire, recorder, _settings(policy))
            async with session.connect():
                stream = session.events()
                await session.send_text("Hello there")
                await next_event(stream, ev.Reconnecting)
                assert session.state is engine.State.RECONNECTING
                await session.send_audio(bytes(CHUNK_BYTES * chunks))  # 600 ms of silence
                await next_event(stream, ev.Reconnected)
                await turn_done(stream)  # the resumed answer: everything before it was sent
    first, second = server.connections

    assert "input_audio_buffer.append" not in first.received_types
    sent = wire.connections[1]
    assert sent.appended_bytes() == CHUNK_BYTES * chunks
    kinds = sent.types()
    appends = [i for i, kind in enumerate(kinds) if kind == "input_audio_buffer.append"]
    history = [i for i, kind in enumerate(kinds) if kind == "conversation.item.create"]
    assert kinds[0] == "session.update"
    assert history and max(history) < min(appends), kinds
    assert list(second.received_types).count("input_audio_buffer.append") == chunks
    assert session.statistics().audio_chunks_dropped == 0


@pytest.mark.parametrize(("policy", "kept"), [("drop_oldest", range(6, 11)), ("drop_newest", range(1, 6))])
async def test_audio_held_beyond_the_limit_is_dropped_by_policy(policy: str, kept: range) -> None:
    server = make_server()
    server.inject(Faults(drop_at="response.output_audio.delta"), index=0)
    wire, recorder = Wire(), Recorder()
    settings = _settings(
        engine.ReconnectPolicy(initial_delay=0.3, jitter=0), hold_limit_ms=300, hold_policy=policy
    )
    with anyio.fail_after(10):
        async with server.running():
            session = _session(server, wire, recorder, settings)
            async with session.connect():
                stream = session.events()
                await session.send_text("Hello there")
                await next_event(stream, ev.Reconnecting)
                for number in range(1, 11):  # ten 60 ms chunks, each filled with its number
                    await session.send_audio(bytes([number]) * CHUNK_BYTES)
                await next_event(stream, ev.Reconnected)
                await turn_done(stream)

    delivered = [
        base64.b64decode(m["audio"]) for m in wire.connections[1].of_type("input_audio_buffer.append")
    ]
    assert [chunk[0] for chunk in delivered] == list(kept)  # 300 ms held: five chunks
    assert session.statistics().audio_chunks_dropped == 5
    (dropped,) = recorder.of_type(ev.Error)
    assert (dropped.code, dropped.fatal, dropped.source) == ("audio_dropped", False, "local")


async def test_every_overflow_episode_is_reported() -> None:
    server = make_server()
    for index in (0, 1):  # two drops: two reconnects, two windows of held audio
        server.inject(Faults(drop_at="response.output_audio.delta"), index=index)
    wire, recorder = Wire(), Recorder()
    settings = _settings(engine.ReconnectPolicy(initial_delay=0.3, jitter=0), hold_limit_ms=300)
    with anyio.fail_after(10):
        async with server.running():
            session = _session(server, wire, recorder, settings)
            async with session.connect():
                stream = session.events()
                await session.send_text("Hello there")
                for _ in range(2):
                    await next_event(stream, ev.Reconnecting)
                    await session.send_audio(bytes(CHUNK_BYTES * 10))
                    await next_event(stream, ev.Reconnected)
                await turn_done(stream)

    assert session.statistics().audio_chunks_dropped == 10
    assert [e.code for e in recorder.of_type(ev.Error)] == ["audio_dropped", "audio_dropped"]


async def test_drop_while_audio_is_going_out_still_reconnects() -> None:
    server = make_server()
    # The drop comes 0.2 s after the text turn starts, while the audio below is stuck going out.
    server.inject(Faults(drop_at="response.output_audio.delta", delay={"response.created": 0.2}), index=0)
    wire, recorder = Wire(stall_audio_on=(0,)), Recorder()  # a stalled uplink on the first socket
    with anyio.fail_after(10):
        async with server.running():
            session = _session(server, wire, recorder, _settings(outbox_size=1))
            async with session.connect():
                stream = session.events()
                await session.send_text("Hello there")
                await session.send_audio(bytes(CHUNK_BYTES * 4))  # the user keeps talking
                await wire.audio_stalled.wait()
                await next_event(stream, ev.Reconnected)
                await turn_done(stream)
    assert len(server.connections) == 2
    assert [e.attempt for e in recorder.of_type(ev.Reconnecting)] == [1]
    assert [e.reason for e in recorder.of_type(ev.Closed)] == ["closed by the application"]


# ---------------------------------------------------------------------- 5. proactive rollover


async def test_rollover_moves_to_a_new_socket_between_turns() -> None:
    server = make_server()
    wire, recorder = Wire(), Recorder()
    settings = _settings(max_session_duration=0.3)
    with anyio.fail_after(10):
        async with server.running():
            session = _session(server, wire, recorder, settings)
            async with session.connect():
                stream = session.events()
                await session.send_text("Hello there")
                await turn_done(stream)
                await next_event(stream, ev.Reconnected)
                await session.send_text("And again")
                again = await collect_until(stream, lambda e: isinstance(e, ev.TurnMetrics))
    first, second = server.connections[:2]

    assert not first.dropped  # closed by the client on purpose, not by a fault
    assert recorder.of_type(ev.Interrupted) == []
    rollover = recorder.of_type(ev.Reconnecting)[0]
    assert rollover.delay == 0
    # The whole first turn was answered on the first socket, then restored on the second.
    assert [(i.role, i.text) for i in first.conversation.items] == [
        ("user", "Hello there"),
        ("assistant", "You said: Hello there."),
    ]
    assert [(i.role, i.text) for i in second.conversation.items] == [
        ("user", "Hello there"),
        ("assistant", "You said: Hello there."),
        ("user", "And again"),
        ("assistant", "You said: And again."),
    ]  # no "go on" note: nothing was interrupted
    assert wire.connections[1].types()[:3] == [
        "session.update",
        "conversation.item.create",
        "conversation.item.create",
    ]
    answer = [e.text for e in again if isinstance(e, ev.AssistantTranscript) and e.final]
    assert answer == ["You said: And again."]
    assert recorder.of_type(ev.Error) == []
